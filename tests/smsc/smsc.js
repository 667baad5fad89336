// An SMSC for otpd's SMPP tests: node-smpp (an implementation otpd did not
// write) in server mode, driven by the Rust tests over stdin and stdout,
// one JSON object per line.
//
//   node smsc.js <port> <system_id> <password>
//
// It prints {"event": "listening"} once it listens, then an event per PDU
// it receives (bind, submit_sm with its fields and decoded text, unbind,
// deliver_sm_resp). Commands on stdin:
//   {"cmd": "statuses", "statuses": [88, 0]}  answer the next submit_sm with these
//                                            (-1: leave that one unanswered)
//   {"cmd": "receipt", "message_id": "…", "stat": "DELIVRD"}  send a delivery receipt
//   {"cmd": "silent"}  stop answering submit_sm (responses time out)
//   {"cmd": "world", "throttle": 0.02, "slow": 0.05, "slow_ms": 800,
//    "undelivered": 0.05, "receipt_ms": [100, 1500], "drop_bind_every": 2000}
//      a carrier with faults, for the deliverability simulation: throttles
//      or answers slowly at those rates, drops the bind after every Nth
//      accepted message, and sends a receipt for every accepted message
//      after a random delay (UNDELIV at that rate, else DELIVRD), each
//      reported as an "accepted" (with whether its answer could still be
//      sent) and a "receipt_sent" event
'use strict';

const readline = require('readline');
const smpp = require('smpp');

const [port, systemId, password] = process.argv.slice(2);
const sessions = new Set();
const statuses = [];
let silent = false;
let messages = 0;
let world = null;

function receiptText(messageId, stat) {
  return `id:${messageId} sub:001 dlvrd:001 submit date:2611220400 done date:2611220401 stat:${stat} err:000 text:`;
}

// Sends a receipt on any bound session, waiting for a bind if none is up.
function sendReceipt(messageId, stat) {
  const session = [...sessions].find((s) => s.bound);
  if (!session) {
    setTimeout(() => sendReceipt(messageId, stat), 100);
    return;
  }
  session.deliver_sm({ esm_class: 4, source_addr: '819012345678', destination_addr: 'OTPD', short_message: receiptText(messageId, stat) });
  emit({ event: 'receipt_sent', message_id: messageId, stat });
}

// A faulty carrier's answer to one submit_sm (world mode).
function worldAnswer(session, pdu) {
  const roll = Math.random();
  if (roll < world.throttle) {
    session.send(pdu.response({ command_status: smpp.ESME_RTHROTTLED }));
    return;
  }
  messages += 1;
  const messageId = messages.toString(16).toUpperCase().padStart(8, '0');
  const accept = () => {
    const stat = Math.random() < world.undelivered ? 'UNDELIV' : 'DELIVRD';
    // A bind dropped meanwhile loses the answer, not the message.
    const answered = sessions.has(session);
    session.send(pdu.response({ command_status: 0, message_id: messageId }));
    emit({ event: 'accepted', message_id: messageId, destination_addr: pdu.destination_addr, text: text(pdu.short_message), stat, answered });
    const [low, high] = world.receipt_ms;
    setTimeout(() => sendReceipt(messageId, stat), low + Math.random() * (high - low));
    if (world.drop_bind_every > 0 && messages % world.drop_bind_every === 0) {
      emit({ event: 'bind_dropped' });
      setTimeout(() => session.close(), 10);
    }
  };
  if (roll < world.throttle + world.slow) {
    setTimeout(accept, world.slow_ms);
  } else {
    accept();
  }
}

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function text(field) {
  if (field === undefined || field === null) return null;
  if (typeof field === 'string') return field;
  if (Buffer.isBuffer(field)) return field.toString('hex');
  if (field.message !== undefined) return text(field.message);
  return String(field);
}

const server = smpp.createServer((session) => {
  sessions.add(session);
  session.on('close', () => sessions.delete(session));
  session.on('error', () => sessions.delete(session));
  session.on('bind_transceiver', (pdu) => {
    const ok = pdu.system_id === systemId && pdu.password === password;
    emit({ event: 'bind', system_id: pdu.system_id, interface_version: pdu.interface_version, ok });
    session.send(pdu.response({ command_status: ok ? 0 : smpp.ESME_RINVPASWD }));
    session.bound = ok;
    if (!ok) session.close();
  });
  session.on('submit_sm', (pdu) => {
    const udh = pdu.short_message && pdu.short_message.udh;
    emit({
      event: 'submit_sm',
      source_addr: pdu.source_addr,
      source_addr_ton: pdu.source_addr_ton,
      source_addr_npi: pdu.source_addr_npi,
      dest_addr_ton: pdu.dest_addr_ton,
      dest_addr_npi: pdu.dest_addr_npi,
      destination_addr: pdu.destination_addr,
      esm_class: pdu.esm_class,
      registered_delivery: pdu.registered_delivery,
      // node-smpp turns the relative time into a Date: sent as epoch ms.
      validity_period: pdu.validity_period instanceof Date ? pdu.validity_period.getTime() : pdu.validity_period,
      data_coding: pdu.data_coding,
      udh: udh ? udh.map((part) => Buffer.from(part).toString('hex')) : null,
      text: text(pdu.short_message),
    });
    if (silent) return;
    if (world) {
      worldAnswer(session, pdu);
      return;
    }
    const status = statuses.length > 0 ? statuses.shift() : 0;
    if (status === -1) return;
    messages += 1;
    const messageId = status === 0 ? messages.toString(16).toUpperCase().padStart(8, '0') : '';
    session.send(pdu.response({ command_status: status, message_id: messageId }));
  });
  session.on('deliver_sm_resp', (pdu) => {
    emit({ event: 'deliver_sm_resp', command_status: pdu.command_status });
  });
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    emit({ event: 'unbind' });
    session.send(pdu.response());
    session.close();
  });
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const command = JSON.parse(line);
  if (command.cmd === 'statuses') {
    statuses.push(...command.statuses);
  } else if (command.cmd === 'world') {
    world = command;
  } else if (command.cmd === 'silent') {
    silent = true;
  } else if (command.cmd === 'receipt') {
    const receipt = receiptText(command.message_id, command.stat);
    for (const session of sessions) {
      session.deliver_sm({ esm_class: 4, source_addr: '819012345678', destination_addr: 'OTPD', short_message: receipt });
    }
  }
});

server.listen(Number(port), '127.0.0.1', () => emit({ event: 'listening' }));
