//! The servers under test, each a process of its own on a free loopback
//! port: a private redis-server, otpd (release build, production mode) and
//! the floor servers (`otpd-bench floor`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::process::{free_port, wait_until, Process};

pub struct RedisServer {
    pub process: Process,
    pub port: u16,
}

impl RedisServer {
    /// No persistence: the run measures memory and commands, not disks.
    pub fn start(dir: &Path) -> anyhow::Result<RedisServer> {
        Self::spawn(dir, "redis", &[])
    }

    /// A replica of `primary`, in sync when this returns (the
    /// `replicas_ack` scenario).
    pub fn replica_of(dir: &Path, primary: &RedisServer) -> anyhow::Result<RedisServer> {
        let port = primary.port.to_string();
        let replica = Self::spawn(dir, "replica", &["--replicaof", "127.0.0.1", &port])?;
        wait_until("the replica's sync", Duration::from_secs(60), || {
            replica
                .info("replication", "master_link_status")
                .is_ok_and(|status| status == "up")
        })?;
        Ok(replica)
    }

    fn spawn(dir: &Path, name: &str, extra: &[&str]) -> anyhow::Result<RedisServer> {
        let port = free_port()?;
        let data = dir.join(name);
        std::fs::create_dir_all(&data)?;
        let process = Process::spawn(
            Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(extra)
                .arg("--dir")
                .arg(&data),
            &dir.join(format!("{name}.log")),
        )?;
        let server = RedisServer { process, port };
        wait_until("redis-server", Duration::from_secs(10), || {
            server.connection().is_ok()
        })?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn connection(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())?.get_connection()
    }

    /// One field of `INFO <section>`.
    pub fn info(&self, section: &str, field: &str) -> anyhow::Result<String> {
        let text: String = redis::cmd("INFO")
            .arg(section)
            .query(&mut self.connection()?)?;
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .map(|value| value.trim().to_string())
            .with_context(|| format!("INFO {section} has no {field}"))
    }
}

/// Where otpd hands its SMS.
#[derive(Clone, Copy, PartialEq)]
pub enum Carrier {
    /// Accepts and drops every SMS: the measured runs.
    Null,
    /// POSTs every SMS to the bench's capture (webhook): preparation only,
    /// to learn the codes of the verifications the checks will use.
    Capture(u16),
}

/// The API key the bench uses; its SHA-256 is in the configuration.
pub const API_KEY: &str = "otpd-bench-api-key-not-a-secret";
pub const SERVICE: &str = "bench";

/// A server process answering HTTP on a loopback port.
pub struct Listening {
    pub process: Process,
    pub base: String,
}

impl Listening {
    /// Starts `command` (listening on `port`) and waits until `probe`
    /// answers 200.
    fn spawn(command: &mut Command, log: &Path, port: u16, probe: &str) -> anyhow::Result<Self> {
        let process = Process::spawn(command, log)?;
        let server = Listening {
            process,
            base: format!("http://127.0.0.1:{port}"),
        };
        let url = format!("{}{probe}", server.base);
        wait_until(probe, Duration::from_secs(20), || http_get(&url).is_ok())?;
        Ok(server)
    }

    /// otpd's /metrics.
    pub fn metrics(&self) -> anyhow::Result<String> {
        http_get(&format!("{}/metrics", self.base))
    }
}

/// Starts otpd once /readyz answers (Redis reachable).
pub fn otpd(
    binary: &Path,
    dir: &Path,
    redis: &RedisServer,
    carrier: Carrier,
    replicas_ack: u32,
) -> anyhow::Result<Listening> {
    let port = free_port()?;
    let config = dir.join("otpd.toml");
    std::fs::write(&config, configuration(port, redis, carrier, replicas_ack))?;
    Listening::spawn(
        Command::new(binary).arg("--config").arg(&config),
        &dir.join("otpd.log"),
        port,
        "/readyz",
    )
}

/// Starts a floor server: `otpd-bench floor` in a process of its own.
pub fn floor(dir: &Path, mode: &str, redis: &RedisServer) -> anyhow::Result<Listening> {
    let port = free_port()?;
    Listening::spawn(
        Command::new(std::env::current_exe()?)
            .args(["floor", "--mode", mode])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--redis", &redis.url()]),
        &dir.join(format!("floor-{mode}.log")),
        port,
        "/healthz",
    )
}

/// otpd's configuration for the bench: the limits that would refuse a
/// load from one IP to consecutive numbers (IP, range, flood shedding,
/// conversion: most bench codes are never entered) and the outbox's cap (a million pending verifications) raised out of
/// the way; per-number limits, code length, TTL and all
/// else as shipped, except what the scenarios need (10 attempts, so a
/// verification takes several wrong codes; a 1 s resend cooldown).
fn configuration(port: u16, redis: &RedisServer, carrier: Carrier, replicas_ack: u32) -> String {
    let route = match carrier {
        Carrier::Null => "null",
        Carrier::Capture(_) => "capture",
    };
    // Preparation pushes sends as fast as it can; the capture takes them
    // more slowly than the null carrier would.
    let (capture, concurrency) = match carrier {
        Carrier::Capture(port) => (port, 128),
        Carrier::Null => (9, 32),
    };
    format!(
        r#"{shared}
[carriers.null]
kind = "null"

[carriers.capture]
kind = "webhook"
url = "http://127.0.0.1:{capture}/sms"
secret = "whsec_b3RwZC1iZW5jaC1jYXB0dXJlLWtleS1ub3QtYS1zZWNyZXQ="
timeout = "5s"

[routing]
default = ["{route}"]

[delivery]
max_queued = 10000000
concurrency = {concurrency}

[services.{SERVICE}]
ttl = "10m"
max_attempts = 10
resend_cooldown = "1s"
max_resend_cooldown = "1s"

[services.{SERVICE}.limits]
{lax}failed_checks = {{ max = 100, free = 99, delay = "1s", max_delay = "1s", decay = "1h" }}
"#,
        shared = shared_configuration(port, redis, replicas_ack),
        lax = LAX_LIMITS,
    )
}

/// What every otpd the bench starts has: its listener (gRPC off, flood
/// shedding out of the way), Redis, secrets and the bench's API key.
pub fn shared_configuration(port: u16, redis: &RedisServer, replicas_ack: u32) -> String {
    format!(
        r#"
index_secret = "b3RwZC1iZW5jaC1pbmRleC1zZWNyZXQtMzItYnl0ZXMtbm90LXJlYWw"

[http]
listen = "127.0.0.1:{port}"
flood_per_second = 100000000
flood_burst = 100000000

[grpc]
listen = ""

[log]
filter = "warn"

[redis]
url = "{redis}"
replicas_ack = {replicas_ack}

[[secrets]]
id = "bench"
value = "b3RwZC1iZW5jaC1zZWNyZXQtMzItYnl0ZXMtb3ItbW9yZS1ub3QtcmVhbA"

[[api_keys]]
id = "bench"
sha256 = "{key}"
services = ["{SERVICE}"]
"#,
        redis = redis.url(),
        key = sha256_hex(API_KEY),
    )
}

/// The limits that would refuse a load from one IP to consecutive numbers
/// whose codes are mostly never entered, raised out of the way (lines of
/// `[services.<name>.limits]`).
pub const LAX_LIMITS: &str = r#"ip_starts = [{ count = 100000000, period = "1s" }]
ip_checks = [{ count = 100000000, period = "1s" }]
range_sends = [{ count = 100000000, period = "1s" }]
conversion = { country_min_sends = 0, range_min_sends = 0 }
"#;

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A blocking GET, for probes and scrapes between load runs.
pub fn http_get(url: &str) -> anyhow::Result<String> {
    let response = reqwest::blocking::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()?
        .error_for_status()?;
    Ok(response.text()?)
}

/// The bench's scratch folder: configuration, logs, the code files.
pub fn scratch() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("otpd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
