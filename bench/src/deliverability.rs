//! The deliverability simulation (`otpd-bench deliverability`, run by
//! `bench/deliverability` and `bench/run`): a small world on this machine
//! and what became of every code sent through it.
//!
//! Two otpd replicas (release build) on one Redis; three carriers: the
//! test SMSC with faults (throttling, slow answers, dropped binds, 5 %
//! undelivered receipts), a Twilio-like API that fails half its calls for
//! a window, and a webhook gateway that loses a fifth of its receipts.
//! Routing sends Japanese numbers to `[smsc, twilio]` and the rest to the
//! gateway, with re-routing after an undelivered or missing receipt on.
//! Verifications start at a steady rate; one replica is SIGKILLed and
//! restarted during the run. The phones' side (`world::Ledger`) says what
//! was delivered, when, and how often; the report goes to
//! bench/results/deliverability.md.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use serde_json::json;

use crate::process::{free_port, output_of, wait_until, Process};
use crate::servers::{
    http_get, scratch, shared_configuration, RedisServer, API_KEY, LAX_LIMITS, SERVICE,
};
use crate::world::{self, Arrival, Heard, HttpWorld, Ledger, Replicas, Via};

#[derive(clap::Args)]
pub struct Options {
    /// Verifications to start.
    #[arg(long, default_value_t = 10_000)]
    pub verifications: usize,
    /// Starts per second.
    #[arg(long, default_value_t = 50)]
    pub rate: u32,
    /// Times one replica is SIGKILLed (and restarted) during the run.
    #[arg(long, default_value_t = 2)]
    pub kills: usize,
    /// Where the report goes.
    #[arg(long, default_value = "bench/results/deliverability.md")]
    pub report: PathBuf,
}

const TWILIO_TOKEN: &str = "deliverability-twilio-token";
const GATEWAY_SECRET: &str = "whsec_ZGVsaXZlcmFiaWxpdHktZ2F0ZXdheS1rZXktMzItYnl0ZXM=";
const PUBLIC_URL: &str = "http://otpd.simulation";
/// How long a receipt may take before the send is re-routed.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long before the carrier's accept a send may have left otpd (the
/// SMSC's slow answers).
const IN_FLIGHT: Duration = Duration::from_secs(2);
/// How long a killed replica stays down.
const DOWN_FOR: Duration = Duration::from_secs(3);
/// The share of numbers that are Japanese (routed to the SMSC first).
const JAPANESE: usize = 4; // in 5

pub fn run(options: &Options) -> anyhow::Result<()> {
    ensure!(
        options.verifications > 0 && options.rate > 0,
        "nothing to run"
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let outcome = runtime.block_on(simulate(options))?;
    let report = outcome.report(options);
    let path = crate::repository().join(&options.report);
    std::fs::write(&path, &report).with_context(|| format!("write {}", path.display()))?;
    println!("{report}");
    Ok(())
}

/// One verification as the load generator saw it.
struct Started {
    number: String,
    id: String,
    at: Instant,
}

/// What the run saw, for the report.
pub struct Outcome {
    started: Vec<Started>,
    /// Starts not answered 201, by the last status (0: no answer).
    refused: std::collections::BTreeMap<u16, usize>,
    ledger: Ledger,
    kills: Vec<Instant>,
    dead_letters: u64,
    dropped_binds: usize,
    elapsed: Duration,
    /// The lifecycle events the relying party's endpoint took.
    events: Vec<Heard>,
    dead_events: u64,
}

/// The two replicas: their processes and where they listen.
struct Fleet {
    binary: PathBuf,
    dir: PathBuf,
    configs: [PathBuf; 2],
    bases: [String; 2],
    processes: Mutex<[Option<Process>; 2]>,
    replicas: Replicas,
}

impl Fleet {
    fn start(&self, which: usize) -> anyhow::Result<()> {
        let log = self.dir.join(format!("otpd-{which}.log"));
        let process = Process::spawn(
            Command::new(&self.binary)
                .arg("--config")
                .arg(&self.configs[which]),
            &log,
        )?;
        let ready = format!("{}/readyz", self.bases[which]);
        wait_until("otpd", Duration::from_secs(20), || http_get(&ready).is_ok())?;
        self.processes.lock().unwrap_or_else(|p| p.into_inner())[which] = Some(process);
        self.publish();
        Ok(())
    }

    /// SIGKILL (dropping a `Process` kills it).
    fn kill(&self, which: usize) {
        self.processes.lock().unwrap_or_else(|p| p.into_inner())[which] = None;
        self.publish();
    }

    fn publish(&self) {
        let processes = self.processes.lock().unwrap_or_else(|p| p.into_inner());
        let up = (0..2)
            .filter(|&which| processes[which].is_some())
            .map(|which| self.bases[which].clone())
            .collect();
        self.replicas.set(up);
    }

    fn is_up(&self, which: usize) -> bool {
        self.processes.lock().unwrap_or_else(|p| p.into_inner())[which].is_some()
    }
}

async fn simulate(options: &Options) -> anyhow::Result<Outcome> {
    let dir = scratch()?;
    let repository = crate::repository();
    let binary = repository.join("target/release/otpd");
    ensure!(
        binary.exists(),
        "{} is missing: cargo build --release --bin otpd",
        binary.display()
    );
    let redis = RedisServer::start(&dir)?;
    let ledger = Ledger::default();
    let drop_every = (options.verifications / 5).max(50);
    let smsc = world::Smsc::start(
        &repository,
        ledger.clone(),
        json!({
            "throttle": 0.02, "slow": 0.03, "slow_ms": 1500, "undelivered": 0.05,
            "receipt_ms": [100, 1500], "drop_bind_every": drop_every,
        }),
    )?;
    let replicas = Replicas::default();
    let run_for = Duration::from_secs_f64(options.verifications as f64 / f64::from(options.rate));
    let outage = (run_for.mul_f64(0.4), run_for.mul_f64(0.55));
    let http = Arc::new(HttpWorld::new(
        ledger.clone(),
        replicas.clone(),
        outage,
        0.2,
        TWILIO_TOKEN,
        GATEWAY_SECRET,
        PUBLIC_URL,
    )?);
    let peers = world::serve(Arc::clone(&http))?;
    let ports = [free_port()?, free_port()?];
    let configs = [0, 1].map(|which| dir.join(format!("otpd-{which}.toml")));
    for which in 0..2 {
        std::fs::write(
            &configs[which],
            configuration(ports[which], &redis, smsc.port, &peers),
        )?;
    }
    let fleet = Arc::new(Fleet {
        binary,
        dir: dir.clone(),
        configs,
        bases: ports.map(|port| format!("http://127.0.0.1:{port}")),
        processes: Mutex::new([None, None]),
        replicas,
    });
    for which in 0..2 {
        let fleet = Arc::clone(&fleet);
        tokio::task::spawn_blocking(move || fleet.start(which)).await??;
    }
    let binds = Instant::now() + Duration::from_secs(20);
    while smsc.binds() < 2 {
        ensure!(Instant::now() < binds, "otpd did not bind to the SMSC");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let client = reqwest::Client::new();
    let began = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(options.rate));
    let kill_at: Vec<usize> = (1..=options.kills)
        .map(|k| options.verifications * k / (options.kills + 1))
        .collect();
    let mut kills = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..options.verifications {
        tokio::time::sleep_until((began + interval * n as u32).into()).await;
        if kill_at.contains(&n) {
            fleet.kill(1);
            kills.push(Instant::now());
            let fleet = Arc::clone(&fleet);
            tokio::task::spawn_blocking(move || {
                std::thread::sleep(DOWN_FOR);
                if let Err(error) = fleet.start(1) {
                    eprintln!("the killed replica did not restart: {error:#}");
                }
            });
        }
        let (client, fleet) = (client.clone(), Arc::clone(&fleet));
        tasks.spawn(async move { start(&client, &fleet, n).await });
    }
    let mut started = Vec::new();
    let mut refused = std::collections::BTreeMap::new();
    while let Some(result) = tasks.join_next().await {
        match result? {
            Ok(one) => started.push(one),
            Err(status) => *refused.entry(status).or_insert(0) += 1,
        }
    }
    let restarted = Instant::now() + Duration::from_secs(30);
    while !(fleet.is_up(0) && fleet.is_up(1)) {
        ensure!(
            Instant::now() < restarted,
            "the killed replica did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle(&redis, &ledger).await?;
    let elapsed = began.elapsed();
    settle_events(&redis).await?;
    let dropped_binds = smsc.dropped_binds();
    Ok(Outcome {
        started,
        refused,
        ledger,
        kills,
        dead_letters: stream_lengths(&redis, "*:dead")?,
        dropped_binds,
        elapsed,
        events: http.events.all(),
        dead_events: stream_lengths(&redis, "*:ed")?,
    })
}

/// The `n`th number: four in five Japanese mobiles, the rest Korean.
fn number(n: usize) -> String {
    if n % 5 < JAPANESE {
        format!("+81901{n:07}")
    } else {
        format!("+82102{n:07}")
    }
}

/// Starts one verification on its replica (the other when that one is
/// down or does not answer), as a backend behind a load balancer would;
/// else the last answer's status (0: none).
async fn start(client: &reqwest::Client, fleet: &Fleet, n: usize) -> Result<Started, u16> {
    let number = number(n);
    let at = Instant::now();
    let mut status = 0;
    for attempt in 0..4 {
        let which = (n + attempt) % 2;
        if !fleet.is_up(which) {
            continue;
        }
        let answer = client
            .post(format!(
                "{}/v1/services/{SERVICE}/verifications",
                fleet.bases[which]
            ))
            .bearer_auth(API_KEY)
            .header("idempotency-key", format!("sim-{n}"))
            .json(&json!({ "to": number, "channel": "sms" }))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(answer) = answer {
            status = answer.status().as_u16();
            if status == 201 {
                let body: serde_json::Value = answer.json().await.unwrap_or_default();
                let id = body["id"].as_str().unwrap_or_default().to_owned();
                return Ok(Started { number, id, at });
            }
        }
    }
    Err(status)
}

/// Waits until the outbox is empty and no carrier took a message for a
/// receipt timeout and a bit (re-routes come that late), at most 2 min.
async fn settle(redis: &RedisServer, ledger: &Ledger) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (ledger.count(), Instant::now());
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let count = ledger.count();
        if count != last.0 {
            last = (count, Instant::now());
        }
        let quiet = last.1.elapsed() > RECEIPT_TIMEOUT + Duration::from_secs(3);
        if quiet && stream_lengths(redis, "*:outbox")? == 0 {
            return Ok(());
        }
    }
    Ok(())
}

/// Waits until every lifecycle event queued so far has been delivered
/// (the events queues are empty), at most 1 min.
async fn settle_events(redis: &RedisServer) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && stream_lengths(redis, "*:e:*")? > 0 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// The summed lengths of the streams whose keys match `pattern`.
fn stream_lengths(redis: &RedisServer, pattern: &str) -> anyhow::Result<u64> {
    let mut connection = redis.connection()?;
    // (blocking: a handful of commands, after the load)
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut connection)?;
    let mut total = 0;
    for key in keys {
        let length: u64 = redis::cmd("XLEN").arg(&key).query(&mut connection)?;
        total += length;
    }
    Ok(total)
}

fn configuration(port: u16, redis: &RedisServer, smsc: u16, peers: &str) -> String {
    format!(
        r#"{shared}
[carriers.smsc]
kind = "smpp"
url = "smpp://127.0.0.1:{smsc}"
system_id = "otpd"
password = "secret"
source_addr = "OTPD"
window = 10
response_timeout = "2s"
reconnect_min = "100ms"
reconnect_max = "1s"
throttle_pause = "200ms"

[carriers.twilio]
kind = "twilio"
account_sid = "ACdeliverability"
auth_token = "{TWILIO_TOKEN}"
from = "+15005550006"
public_url = "{PUBLIC_URL}"
api_url = "{peers}"
timeout = "2s"

[carriers.gateway]
kind = "webhook"
url = "{peers}/sms"
secret = "{GATEWAY_SECRET}"
timeout = "2s"

[routing]
default = ["gateway"]
by_region = {{ JP = ["smsc", "twilio"] }}
circuit_failures = 5
circuit_cooldown = "2s"

[delivery]
attempts = 8
retry_base = "200ms"
retry_max = "2s"
claim_idle = "3s"
carrier_timeout = "5s"
receipt_timeout = "{timeout}s"
reroute = true

[events]
poll = "200ms"
lease = "3s"
retry_base = "100ms"
retry_max = "1s"
max_tries = 1000

[services.{SERVICE}]
ttl = "5m"

[services.{SERVICE}.events]
url = "{peers}/events"
secret = "{GATEWAY_SECRET}"
timeout = "2s"

[services.{SERVICE}.limits]
countries = ["JP", "KR"]
{lax}"#,
        shared = shared_configuration(port, redis, 0),
        lax = LAX_LIMITS,
        timeout = RECEIPT_TIMEOUT.as_secs(),
    )
}

/// Why a code reached its phone more than once.
fn why_twice(first: &Arrival, second: &Arrival, kills: &[Instant]) -> &'static str {
    // A send is in flight from its submit (before the carrier's accept)
    // until otpd records it.
    let in_flight = kills.iter().any(|&kill| {
        first
            .accepted_at
            .checked_sub(IN_FLIGHT)
            .is_none_or(|from| from <= kill)
            && kill <= second.accepted_at
    });
    let receipt_lost = first.via != second.via
        && first.receipt_at.is_some_and(|receipt| {
            kills
                .iter()
                .any(|&kill| kill >= receipt && kill <= receipt + IN_FLIGHT)
        });
    if receipt_lost {
        "its receipt reached a replica killed before recording it, so it was re-routed after receipt_timeout"
    } else if in_flight {
        "a replica was killed while the send was in flight (at the carrier, not yet recorded); another took it over"
    } else if !first.answered || !second.answered {
        "the SMSC kept it but its answer was lost with a dropped bind (outcome unknown, SMPP-3), so it went again"
    } else if first.via != second.via {
        "re-routed after its receipt was late (the first did arrive)"
    } else {
        "unexplained"
    }
}

/// What happened to one verification, for the report: each carrier's
/// accept after the start, and the kills in between.
fn story(started: &Started, arrivals: &[Arrival], kills: &[Instant]) -> String {
    let mut events: Vec<(Instant, String)> = arrivals
        .iter()
        .map(|a| {
            let fate = if a.delivered {
                "delivered"
            } else {
                "undelivered"
            };
            let receipt = a.receipt_at.map_or("no receipt".to_owned(), |at| {
                format!("receipt at +{} ms", (at - started.at).as_millis())
            });
            (
                a.accepted_at,
                format!("{} {fate} ({receipt})", a.via.name()),
            )
        })
        .collect();
    let last = arrivals.iter().map(|a| a.accepted_at).max();
    for &kill in kills {
        if kill >= started.at && last.is_some_and(|last| kill <= last) {
            events.push((kill, "replica killed".to_owned()));
        }
    }
    events.sort_by_key(|(at, _)| *at);
    if events.is_empty() {
        return format!("{}…: no carrier accepted it", &started.number[..6]);
    }
    let told: Vec<String> = events
        .into_iter()
        .map(|(at, what)| format!("+{} ms {what}", (at - started.at).as_millis()))
        .collect();
    format!("{}…: {}", &started.number[..6], told.join(", "))
}

fn percentile(sorted: &[Duration], p: f64) -> String {
    if sorted.is_empty() {
        return "–".into();
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    format!("{:.0} ms", sorted[at].as_secs_f64() * 1000.0)
}

/// What the phones' side says of a run.
struct Figures {
    started: usize,
    delivered: usize,
    /// The cause of each code delivered twice.
    duplicates: Vec<&'static str>,
    /// Each duplicate's story.
    twice: Vec<String>,
    failed_over: usize,
    rerouted: usize,
    /// Each verification whose code never arrived, with its story.
    undelivered: Vec<String>,
    to_accept: Vec<Duration>,
    to_receipt: Vec<Duration>,
    receipts_missing: usize,
    events: EventFigures,
}

/// What the relying party's endpoint says of the lifecycle events.
#[derive(Debug, Default)]
struct EventFigures {
    /// Distinct events taken, and how many of each type.
    distinct: usize,
    by_kind: std::collections::BTreeMap<String, usize>,
    /// Posts of an event already taken (at least once: the same id).
    duplicates: usize,
    /// Verifications whose `started` event never came.
    without_started: usize,
    /// Verifications with an event missing between two that came.
    with_gaps: usize,
    /// Events taken after a later event of the same verification.
    out_of_order: usize,
    /// From the start's request to its `started` event.
    to_started: Vec<Duration>,
}

impl EventFigures {
    fn of(started: &[Started], heard: &[Heard]) -> Self {
        let mut figures = EventFigures::default();
        let mut seen = std::collections::HashSet::new();
        let mut by_verification: std::collections::HashMap<&str, Vec<u64>> =
            std::collections::HashMap::new();
        for event in heard {
            if !seen.insert(event.id.as_str()) {
                figures.duplicates += 1;
                continue;
            }
            *figures.by_kind.entry(event.kind.clone()).or_default() += 1;
            if let (Some(id), Some(sequence)) = (&event.verification, event.sequence) {
                let sequences = by_verification.entry(id.as_str()).or_default();
                if sequences.last().is_some_and(|last| sequence < *last) {
                    figures.out_of_order += 1;
                }
                sequences.push(sequence);
            }
        }
        figures.distinct = seen.len();
        for one in started {
            let Some(sequences) = by_verification.get(one.id.as_str()) else {
                figures.without_started += 1;
                continue;
            };
            let mut sorted = sequences.clone();
            sorted.sort_unstable();
            if sorted.first() != Some(&1) {
                figures.without_started += 1;
            } else if sorted.iter().enumerate().any(|(at, n)| *n != at as u64 + 1) {
                figures.with_gaps += 1;
            }
            let first = heard.iter().find(|event| {
                event.verification.as_deref() == Some(one.id.as_str()) && event.sequence == Some(1)
            });
            if let Some(event) = first {
                figures.to_started.push(event.at - one.at);
            }
        }
        figures.to_started.sort();
        figures
    }
}

impl Outcome {
    fn figures(&self) -> Figures {
        let mut figures = Figures {
            started: self.started.len(),
            delivered: 0,
            duplicates: Vec::new(),
            twice: Vec::new(),
            failed_over: 0,
            rerouted: 0,
            undelivered: Vec::new(),
            to_accept: Vec::new(),
            to_receipt: Vec::new(),
            receipts_missing: 0,
            events: EventFigures::of(&self.started, &self.events),
        };
        for started in &self.started {
            let arrivals = self.ledger.of(&started.number);
            let japanese = started.number.starts_with("+81");
            if let Some(first) = arrivals.first() {
                figures.to_accept.push(first.accepted_at - started.at);
                if japanese && first.via != Via::Smsc {
                    figures.failed_over += 1;
                }
            }
            let smsc_first = arrivals.first().is_some_and(|a| a.via == Via::Smsc);
            if smsc_first && arrivals.iter().any(|a| a.via == Via::Twilio) {
                figures.rerouted += 1;
            }
            let reached: Vec<&Arrival> = arrivals.iter().filter(|a| a.delivered).collect();
            match reached.first() {
                Some(first) => {
                    figures.delivered += 1;
                    match first.receipt_at {
                        Some(at) => figures.to_receipt.push(at - started.at),
                        None => figures.receipts_missing += 1,
                    }
                }
                None => figures
                    .undelivered
                    .push(story(started, &arrivals, &self.kills)),
            }
            for pair in reached.windows(2) {
                if pair[0].code == pair[1].code {
                    let cause = why_twice(pair[0], pair[1], &self.kills);
                    figures.duplicates.push(cause);
                    let told = story(started, &arrivals, &self.kills);
                    figures.twice.push(format!("{cause}: {told}"));
                }
            }
        }
        figures.to_accept.sort();
        figures.to_receipt.sort();
        figures
    }

    fn report(&self, options: &Options) -> String {
        let Figures {
            started: total,
            delivered,
            duplicates,
            twice,
            failed_over,
            rerouted,
            undelivered,
            to_accept,
            to_receipt,
            receipts_missing,
            events,
        } = self.figures();
        let ratio = delivered as f64 / total.max(1) as f64;
        let duplicate_ratio = duplicates.len() as f64 / total.max(1) as f64;
        let mut out = String::new();
        let _ = writeln!(out, "# Deliverability simulation\n");
        let _ = writeln!(
            out,
            "`bench/deliverability` (otpd-bench deliverability --verifications {} --rate {} --kills {}) on {}, {} CPUs, {}.\n",
            options.verifications,
            options.rate,
            options.kills,
            output_of("uname", &["-sr"]),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            output_of("date", &["-u", "+%Y-%m-%d"]),
        );
        let _ = writeln!(out, "The world: two otpd replicas (release build) on one Redis; `JP = [smsc, twilio]`, every other number to `gateway`; `delivery.reroute = true`, `receipt_timeout = {}s`. The SMSC (node-smpp, tests/smsc) throttles 2 % of submits, answers 3 % after 1.5 s, drops its bind every {} accepted messages and reports 5 % as `UNDELIV` after 0.1–1.5 s; the Twilio-like API fails half its calls from 40 % to 55 % of the run; the webhook gateway loses a fifth of its receipts. Replica 2 was SIGKILLed {} times and restarted {} s later. Four numbers in five are Japanese.\n", RECEIPT_TIMEOUT.as_secs(), (options.verifications / 5).max(50), self.kills.len(), DOWN_FOR.as_secs());
        let _ = writeln!(out, "| measure | figure | target |\n|---|---|---|");
        let _ = writeln!(
            out,
            "| verifications started (201) | {total} of {} (refused, by status: {:?}) | — |",
            options.verifications, self.refused
        );
        let _ = writeln!(
            out,
            "| delivered (the code reached the phone) | {delivered} ({:.3} %) | ≥ 99.9 % |",
            ratio * 100.0
        );
        let _ = writeln!(
            out,
            "| duplicates (a code delivered twice) | {} ({:.3} %) | ≤ 0.1 %, each explained |",
            duplicates.len(),
            duplicate_ratio * 100.0
        );
        let _ = writeln!(
            out,
            "| start → carrier accept, p50 / p99 | {} / {} | — |",
            percentile(&to_accept, 0.5),
            percentile(&to_accept, 0.99)
        );
        let _ = writeln!(
            out,
            "| start → delivered receipt, p50 / p99 | {} / {} ({receipts_missing} receipts lost by the world) | — |",
            percentile(&to_receipt, 0.5),
            percentile(&to_receipt, 0.99)
        );
        let _ = writeln!(
            out,
            "| Japanese sends that failed over before an accept | {failed_over} | — |"
        );
        let _ = writeln!(
            out,
            "| sends re-routed after the SMSC accepted them | {rerouted} | — |"
        );
        let _ = writeln!(out, "| dead letters | {} | — |", self.dead_letters);
        let _ = writeln!(out, "| SMSC binds dropped | {} | — |", self.dropped_binds);
        let _ = writeln!(
            out,
            "| lifecycle events taken by the relying party's endpoint (it fails 10 % of posts) | {} distinct ({}), {} posted again (at least once) | — |",
            events.distinct,
            events
                .by_kind
                .iter()
                .map(|(kind, count)| format!("{count} {}", kind.trim_start_matches("verification.")))
                .collect::<Vec<_>>()
                .join(", "),
            events.duplicates
        );
        let _ = writeln!(
            out,
            "| verifications without their `started` event / with an event missing / events out of order | {} / {} / {} | 0 / 0 / 0 |",
            events.without_started, events.with_gaps, events.out_of_order
        );
        let _ = writeln!(
            out,
            "| start → `verification.started` at the endpoint, p50 / p99 | {} / {} | — |",
            percentile(&events.to_started, 0.5),
            percentile(&events.to_started, 0.99)
        );
        let _ = writeln!(out, "| events dead-lettered | {} | 0 |\n", self.dead_events);
        let _ = writeln!(out, "Run time {:.0} s.\n", self.elapsed.as_secs_f64());
        if !duplicates.is_empty() {
            let _ = writeln!(out, "Duplicates, by cause:\n");
            let mut causes = duplicates.clone();
            causes.sort();
            causes.dedup();
            for cause in causes {
                let count = duplicates.iter().filter(|d| **d == cause).count();
                let _ = writeln!(out, "- {count}: {cause}");
            }
            let _ = writeln!(out, "\nEach (first 20):\n");
            for line in twice.iter().take(20) {
                let _ = writeln!(out, "- {line}");
            }
            let _ = writeln!(out);
        }
        if !undelivered.is_empty() {
            let _ = writeln!(out, "Not delivered, each:\n");
            for line in undelivered.iter().take(20) {
                let _ = writeln!(out, "- {line}");
            }
            let _ = writeln!(out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The simulation's parts together in a small world (300 codes, one
    /// kill, about 20 s): every start answered, every code delivered, no
    /// dead letter, every duplicate explained, and every verification's
    /// lifecycle events at the relying party's endpoint (which fails a
    /// tenth of the posts), in order and without a gap. Needs the release
    /// binary, which scripts/test builds before the tests.
    #[test]
    fn a_small_world_delivers_every_code() {
        let options = Options {
            verifications: 300,
            rate: 50,
            kills: 1,
            report: PathBuf::new(),
        };
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let outcome = runtime
            .block_on(simulate(&options))
            .expect("the world runs");
        let figures = outcome.figures();
        assert!(outcome.refused.is_empty(), "{:?}", outcome.refused);
        assert_eq!(figures.started, 300);
        assert_eq!(figures.delivered, 300, "{:?}", figures.undelivered);
        assert_eq!(outcome.dead_letters, 0);
        assert!(
            !figures.duplicates.contains(&"unexplained"),
            "{:?}",
            figures.twice
        );
        assert_eq!(outcome.kills.len(), 1);
        let events = &figures.events;
        assert_eq!(
            (
                events.without_started,
                events.with_gaps,
                events.out_of_order
            ),
            (0, 0, 0),
            "{events:?}"
        );
        assert_eq!(outcome.dead_events, 0);
        assert!(
            figures.failed_over + figures.rerouted > 0,
            "faults were injected"
        );
    }
}
