//! Replicas dying: two real otpd processes on one Redis, a webhook carrier
//! (and an events endpoint) we check signatures on, and SIGKILL on one of
//! them while its sends (or events) are pending. Every send must still
//! arrive, each once; every event at least once, in order.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use otpd::config::sha256_hex;
use serde_json::json;

use crate::gateway::{start_gateway, Gateway, SECRET};
use crate::support::{free_port, until, RedisServer};

const KEY: &str = "otpd_crash_test_key";

/// A real otpd process in production mode; SIGKILLed when dropped.
struct Replica {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Replica {
    /// A replica sending through `gateway_url`; `extra` ends its
    /// configuration.
    fn start(redis: &RedisServer, gateway_url: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = format!(
            r#"
index_secret = "{secret}"
[http]
listen = "127.0.0.1:{port}"
workers = 1
[grpc]
listen = "127.0.0.1:0"
[redis]
url = "{redis}"
[[secrets]]
id = "k1"
value = "{secret}"
[[api_keys]]
id = "crash"
sha256 = "{key_hash}"
services = ["demo"]
[delivery]
attempts = 1000
retry_base = "20ms"
retry_max = "100ms"
claim_idle = "1s"
[carriers.gateway]
kind = "webhook"
url = "{gateway_url}"
secret = "{SECRET}"
timeout = "2s"
[routing]
default = ["gateway"]
voice = ["gateway"]
circuit_cooldown = "100ms"
[services.demo]
{extra}
"#,
            redis = redis.url(),
            secret = "s".repeat(32),
            key_hash = sha256_hex(KEY),
        );
        let file = dir.path().join("otpd.toml");
        std::fs::write(&file, config).expect("config");
        let child = Command::new(env!("CARGO_BIN_EXE_otpd"))
            .arg("--config")
            .arg(&file)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("otpd binary");
        Replica {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    async fn ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http.get(format!("{}/readyz", self.base)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(Instant::now() < deadline, "otpd did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts six verifications, to `+8190<first + n>0000`; their ids.
    async fn start_six(&self, http: &reqwest::Client, first: u32) -> Vec<String> {
        let mut ids = Vec::new();
        for n in 0..6 {
            let started = http
                .post(format!("{}/v1/services/demo/verifications", self.base))
                .bearer_auth(KEY)
                .json(&json!({ "to": format!("+8190{:04}0000", first + n), "channel": "sms" }))
                .send()
                .await
                .expect("sent");
            assert_eq!(started.status(), 201);
            let body: serde_json::Value = started.json().await.expect("json");
            ids.push(body["id"].as_str().expect("id").to_owned());
        }
        ids
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL: no graceful anything
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends each consumer of the group holds, over every shard (XPENDING).
fn pending_by_consumer(redis: &RedisServer) -> HashMap<String, u64> {
    let mut connection = redis.client().get_connection().expect("connection");
    let mut held = HashMap::new();
    for stream in redis
        .keys()
        .into_iter()
        .filter(|key| key.ends_with(":outbox"))
    {
        let reply: redis::Value = redis::cmd("XPENDING")
            .arg(&stream)
            .arg("otpd")
            .query(&mut connection)
            .expect("XPENDING");
        let redis::Value::Array(summary) = reply else {
            continue;
        };
        let Some(redis::Value::Array(consumers)) = summary.get(3) else {
            continue;
        };
        for consumer in consumers {
            let (name, count): (String, u64) =
                redis::from_redis_value(consumer.clone()).expect("consumer, count");
            *held.entry(name).or_default() += count;
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_pending_on_a_killed_replica_are_delivered_once_by_the_other() {
    let redis = RedisServer::start();
    let gateway = Gateway::default();
    let url = start_gateway(gateway.clone());
    let http = reqwest::Client::new();
    let mut a = Replica::start(&redis, &url, "");
    let b = Replica::start(&redis, &url, "");
    a.ready(&http).await;
    b.ready(&http).await;
    let ids = a.start_six(&http, 3000).await;
    // Every send is being tried (the gateway says 503) by one replica or the other.
    until(
        "every send to be tried",
        Duration::from_secs(20),
        async || gateway.attempts.load(Ordering::SeqCst) >= 12,
    )
    .await;
    let held = pending_by_consumer(&redis);
    assert_eq!(
        held.values().sum::<u64>(),
        ids.len() as u64,
        "every send is claimed: {held:?}"
    );
    a.kill();
    gateway.open.store(true, Ordering::SeqCst);
    let delivered = || gateway.delivered.lock().expect("gateway").clone();
    until(
        "every send to arrive",
        Duration::from_secs(30),
        async || delivered().len() == ids.len(),
    )
    .await;
    // The gateway has each message; B records each just after its answer.
    until(
        "B to finish every send",
        Duration::from_secs(10),
        async || pending_by_consumer(&redis).values().sum::<u64>() == 0,
    )
    .await;
    for id in &ids {
        let status: serde_json::Value = http
            .get(format!("{}/v1/services/demo/verifications/{id}", b.base))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        assert_eq!(status["delivery"]["status"], "sent", "{status}");
        assert_eq!(status["delivery"]["message_id"], format!("gw-{id}-1"));
    }
    let delivered = delivered();
    let twice: Vec<_> = delivered.iter().filter(|(_, count)| **count != 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let attempts = gateway.attempts.load(Ordering::SeqCst);
    eprintln!("crash test: {} sends held by replicas {held:?}; one SIGKILLed; all delivered once; {attempts} attempts", ids.len());
}

/// Issue 15: events are delivered at least once across a replica kill. A
/// holds every events queue while the endpoint fails; A is SIGKILLed; B
/// takes the queues over once A's leases lapse, and every event arrives,
/// each verification's in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_held_by_a_killed_replica_are_delivered_by_the_other() {
    let redis = RedisServer::start();
    let gateway = Gateway::default();
    gateway.open.store(true, Ordering::SeqCst);
    let sms = start_gateway(gateway.clone());
    let receiver = Gateway::default();
    let events = format!(
        r#"
[services.demo.events]
url = "{url}"
secret = "{SECRET}"
timeout = "2s"
[events]
poll = "50ms"
lease = "500ms"
retry_base = "20ms"
retry_max = "50ms"
max_tries = 100000
"#,
        url = start_gateway(receiver.clone())
    );
    let http = reqwest::Client::new();
    let mut a = Replica::start(&redis, &sms, &events);
    a.ready(&http).await;
    let ids = a.start_six(&http, 4000).await;
    until("every SMS to go", Duration::from_secs(20), async || {
        gateway.delivered.lock().expect("gateway").len() == ids.len()
    })
    .await;
    until(
        "A to be trying the events",
        Duration::from_secs(20),
        async || receiver.attempts.load(Ordering::SeqCst) >= 12,
    )
    .await;
    let b = Replica::start(&redis, &sms, &events);
    b.ready(&http).await;
    a.kill();
    receiver.open.store(true, Ordering::SeqCst);
    let bodies = || receiver.bodies.lock().expect("receiver").clone();
    let arrived = || {
        crate::events::by_verification(&bodies())
            .into_values()
            .filter(|events| events.len() >= 2)
            .count()
    };
    until("every event", Duration::from_secs(30), async || {
        arrived() == ids.len()
    })
    .await;
    let grouped = crate::events::by_verification(&bodies());
    for id in &ids {
        let kinds: Vec<&str> = grouped[id].iter().map(|(kind, _)| kind.as_str()).collect();
        assert_eq!(kinds, ["started", "sent"], "{id}");
    }
    crate::events::assert_in_order(&bodies());
    eprintln!(
        "crash test: {} events held by the killed replica, all delivered by the other after {} tries",
        bodies().len(),
        receiver.attempts.load(Ordering::SeqCst)
    );
}

/// Issue 15: the fallback lives in Redis, not in the replica that sent the
/// SMS. A sends the SMS of a service that calls after 2 s and is
/// SIGKILLed; B places the call with the same code. The gateway tells the
/// two apart by their `webhook-id` (the call's ends in `.1`): a receiver
/// that drops duplicates keeps both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_due_on_a_killed_replica_is_called_by_the_other() {
    let redis = RedisServer::start();
    let gateway = Gateway::default();
    gateway.open.store(true, Ordering::SeqCst);
    let url = start_gateway(gateway.clone());
    let calls = r#"channels = ["sms", "voice"]
fallback = [{ channel = "voice", after = "2s" }]"#;
    let http = reqwest::Client::new();
    let mut a = Replica::start(&redis, &url, calls);
    a.ready(&http).await;
    let ids = a.start_six(&http, 5000).await;
    let sent = || gateway.delivered.lock().expect("gateway").clone();
    until("A to send every SMS", Duration::from_secs(20), async || {
        sent().len() == ids.len()
    })
    .await;
    let b = Replica::start(&redis, &url, calls);
    b.ready(&http).await;
    a.kill();
    until(
        "B to call every number",
        Duration::from_secs(20),
        async || sent().len() == 2 * ids.len(),
    )
    .await;
    let bodies = gateway.bodies.lock().expect("gateway").clone();
    for id in &ids {
        let kinds: Vec<&str> = bodies
            .iter()
            .filter(|body| body["verification_id"] == id.as_str())
            .filter_map(|body| body["type"].as_str())
            .collect();
        assert_eq!(kinds, ["sms.send", "voice.call"], "{id}");
        assert_eq!(sent().get(&format!("{id}-1.1")), Some(&1), "{id}: one call");
    }
}
