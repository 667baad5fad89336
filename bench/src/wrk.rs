//! Runs wrk (Debian's package) with `bench/wrk.lua` and reads the summary
//! the script writes: closed loop at a fixed connection count, or open
//! loop at a fixed rate.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What one wrk run did, as `done()` in wrk.lua reports it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Summary {
    pub requests: u64,
    pub duration_us: u64,
    pub connect_errors: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    /// Answers with a status of 400 or more.
    pub status_errors: u64,
    pub timeouts: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// The first sequence number no thread used: where the next run of the
    /// scenario starts.
    pub next_offset: u64,
}

impl Summary {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }

    /// Errors of the transport (not statuses, which otpd's metrics tell).
    pub fn transport_errors(&self) -> u64 {
        self.connect_errors + self.read_errors + self.write_errors + self.timeouts
    }
}

/// The requests of one scenario.
#[derive(Clone, Debug)]
pub struct Load {
    /// `start`, `check-right`, `check-wrong` or `mixed` (wrk.lua).
    pub kind: &'static str,
    /// National prefix of the numbers started ("70", "90" …).
    pub prefix: &'static str,
    /// "<id> <code>" lines for checks.
    pub checks: Option<PathBuf>,
    /// "<id> <code>" lines for resends (mixed).
    pub resends: Option<PathBuf>,
}

impl Load {
    /// New verifications to numbers +81 `prefix` 1000 0000, 0001, ….
    pub fn starts(prefix: &'static str) -> Load {
        Load {
            kind: "start",
            prefix,
            checks: None,
            resends: None,
        }
    }

    /// Checks of the verifications in `file` ("<id> <code>" lines).
    pub fn checks(kind: &'static str, file: &Path) -> Load {
        Load {
            kind,
            prefix: "90",
            checks: Some(file.to_path_buf()),
            resends: None,
        }
    }
}

pub struct Wrk {
    pub script: PathBuf,
    pub scratch: PathBuf,
    pub threads: u32,
    pub connections: u32,
}

impl Wrk {
    /// One run against `base`; `rate` 0 is a closed loop. `offset` is the
    /// first sequence number, so runs of one scenario use fresh numbers
    /// and fresh verifications.
    pub fn run(
        &self,
        base: &str,
        load: &Load,
        duration: Duration,
        rate: f64,
        offset: u64,
    ) -> anyhow::Result<Summary> {
        let out = self.scratch.join("wrk.json");
        let _ = std::fs::remove_file(&out);
        let mut command = Command::new("wrk");
        command
            .args(["-t", &self.threads.to_string()])
            .args(["-c", &self.connections.to_string()])
            .args(["-d", &format!("{}s", duration.as_secs().max(1))])
            .args(["--timeout", "10s", "-s"])
            .arg(&self.script)
            .arg(base)
            .env("BENCH_KIND", load.kind)
            .env("BENCH_SERVICE", crate::servers::SERVICE)
            .env("BENCH_KEY", crate::servers::API_KEY)
            .env("BENCH_THREADS", self.threads.to_string())
            .env("BENCH_OFFSET", offset.to_string())
            .env("BENCH_RATE", format!("{rate:.0}"))
            .env("BENCH_PREFIX", load.prefix)
            .env("BENCH_CHECKS", path_or_empty(&load.checks))
            .env("BENCH_RESENDS", path_or_empty(&load.resends))
            .env("BENCH_OUT", &out);
        let output = command.output().context("run wrk")?;
        anyhow::ensure!(
            output.status.success(),
            "wrk failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = std::fs::read_to_string(&out).context("wrk wrote no summary")?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn path_or_empty(path: &Option<PathBuf>) -> &Path {
    path.as_deref().unwrap_or(Path::new(""))
}
