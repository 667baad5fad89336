//! The test SMSC: node-smpp in server mode (`tests/smsc/smsc.js`), a real
//! SMPP peer otpd did not write, on a free port, driven over stdin and
//! watched over stdout.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::free_port;

pub const SYSTEM_ID: &str = "otpd";
pub const PASSWORD: &str = "secret";

pub struct Smsc {
    pub port: u16,
    child: Child,
    stdin: ChildStdin,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Smsc {
    pub fn start() -> Self {
        Self::on_port(free_port())
    }

    /// A fresh SMSC on `port` (a restart, when an earlier one was killed).
    pub fn on_port(port: u16) -> Self {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smsc");
        assert!(
            dir.join("node_modules/smpp").exists(),
            "the test SMSC is not installed: run scripts/test (it runs npm ci in tests/smsc)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("smsc.js"))
            .arg(port.to_string())
            .arg(SYSTEM_ID)
            .arg(PASSWORD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node missing: run scripts/test, which installs it");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event: Value = serde_json::from_str(&line).expect("a JSON event");
                sink.lock().expect("events").push(event);
            }
        });
        let smsc = Smsc {
            port,
            child,
            stdin,
            events,
        };
        smsc.wait_blocking("the SMSC to listen", |events| {
            !of(events, "listening").is_empty()
        });
        smsc
    }

    pub fn url(&self) -> String {
        format!("smpp://127.0.0.1:{}", self.port)
    }

    pub fn command(&mut self, command: Value) {
        writeln!(self.stdin, "{command}").expect("the SMSC reads commands");
    }

    /// The events of one kind so far (`submit_sm`, `bind`, …).
    pub fn events(&self, kind: &str) -> Vec<Value> {
        of(&self.events.lock().expect("events"), kind)
    }

    fn wait_blocking(&self, what: &str, done: impl Fn(&[Value]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(&self.events.lock().expect("events")) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (ten seconds at most) until `count` events of `kind` came.
    pub async fn until(&self, kind: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events(kind);
            if events.len() >= count {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count} {kind}: {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Asserts that no more than `count` events of `kind` come during
    /// `during`.
    pub async fn stays(&self, kind: &str, count: usize, during: Duration) {
        crate::support::holds(&format!("{count} {kind}"), during, async || {
            self.events(kind).len() <= count
        })
        .await;
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn of(events: &[Value], kind: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|event| event["event"] == kind)
        .cloned()
        .collect()
}
