//! The report: one Markdown table and the same numbers as JSON, with the
//! machine they were measured on and each target met or missed.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::wrk::Summary;

#[derive(Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub kernel: String,
    pub memory: String,
    pub redis: String,
    pub wrk: String,
    pub rustc: String,
}

/// One scenario or floor.
#[derive(Default, Serialize)]
pub struct Row {
    pub name: String,
    /// Closed loop, `connections` at once.
    pub per_second: f64,
    /// Latency of the open-loop run at half of `per_second`.
    pub open_loop_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// CPU seconds per 1,000 requests of the server (otpd or the floor).
    pub server_cpu_per_1k: Option<f64>,
    pub redis_cpu_per_1k: f64,
    /// Redis calls per request on the request path (otpd's own metrics).
    pub round_trips: Option<f64>,
    /// per_second ÷ floor (b).
    pub ratio_to_floor: Option<f64>,
    /// Resident memory of the server, mean of the first and the last 5 s.
    pub rss_first_mb: Option<f64>,
    pub rss_last_mb: Option<f64>,
    /// Answers by HTTP status, and checks by outcome (otpd's metrics).
    pub statuses: BTreeMap<String, f64>,
    pub outcomes: BTreeMap<String, f64>,
    /// Sends the delivery workers finished during the closed-loop run (all
    /// outcomes): below the starts when delivery falls behind.
    pub sends: f64,
    pub closed: Summary,
    pub open: Summary,
}

#[derive(Serialize)]
pub struct MemoryKind {
    pub kind: String,
    pub keys: u64,
    pub mean_bytes: f64,
}

#[derive(Serialize)]
pub struct Memory {
    pub verifications: u64,
    pub used_memory_before: u64,
    pub used_memory_after: u64,
    pub bytes_per_verification: f64,
    pub kinds: Vec<MemoryKind>,
}

#[derive(Serialize)]
pub struct Target {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Serialize)]
pub struct Report {
    pub date: String,
    pub command: String,
    pub duration_s: u64,
    pub connections: u32,
    pub machine: Machine,
    pub rows: Vec<Row>,
    pub memory: Option<Memory>,
    pub targets: Vec<Target>,
}

fn optional(value: Option<f64>, digits: usize) -> String {
    value.map_or("–".into(), |v| format!("{v:.digits$}"))
}

impl Report {
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(out, "# otpd benchmark, {}\n", self.date);
        let _ = writeln!(
            out,
            "`{}` — {} cores ({}), kernel {}, {} RAM; {}; {}; {}. Load generator, otpd \
             and Redis share the machine. Closed loop: {} connections for {} s; latency: \
             open loop at 50% of that rate for {} s.\n",
            self.command,
            m.cores,
            m.cpu,
            m.kernel,
            m.memory,
            m.redis,
            m.wrk,
            m.rustc,
            self.connections,
            self.duration_s,
            self.duration_s
        );
        out.push_str(
            "| scenario | requests/s | p50 ms | p99 ms | p99.9 ms | server CPU s / 1k req | \
             Redis CPU s / 1k req | Redis round trips / req | ÷ floor (b) | errors |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for row in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {} | {} | {} | {} | {:.3} | {} | {} | {} |",
                row.name,
                row.per_second,
                latency(row.p50_ms, row),
                latency(row.p99_ms, row),
                latency(row.p999_ms, row),
                optional(row.server_cpu_per_1k, 3),
                row.redis_cpu_per_1k,
                optional(row.round_trips, 2),
                row.ratio_to_floor
                    .map_or("–".into(), |r| format!("{:.0} %", r * 100.0)),
                errors(row),
            );
        }
        if let Some(memory) = &self.memory {
            let _ = writeln!(
                out,
                "\n**Memory**: {} pending verifications took {:.0} bytes each in Redis \
                 (`INFO memory` used_memory {} → {}, all keys included). By key kind \
                 (`MEMORY USAGE`, sampled):\n\n| key kind | keys | mean bytes |\n|---|---:|---:|",
                memory.verifications,
                memory.bytes_per_verification,
                memory.used_memory_before,
                memory.used_memory_after
            );
            for kind in &memory.kinds {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} |",
                    kind.kind, kind.keys, kind.mean_bytes
                );
            }
        }
        out.push_str(
            "\n**otpd during each closed-loop run**: resident memory (mean of the first and \
             of the last 5 s), verifications started (201) and sends the delivery workers \
             finished (fewer sends than starts: the outbox grew).\n\n\
             | scenario | first MB | last MB | started | sends finished |\n|---|---:|---:|---:|---:|\n",
        );
        for row in self.rows.iter().filter(|row| row.rss_first_mb.is_some()) {
            let started = row.statuses.get("201").copied().unwrap_or(0.0);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {started:.0} | {:.0} |",
                row.name,
                optional(row.rss_first_mb, 1),
                optional(row.rss_last_mb, 1),
                row.sends,
            );
        }
        out.push_str("\n**Targets**\n\n| target | measured | met |\n|---|---|---|\n");
        for target in &self.targets {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                target.target,
                target.measured,
                if target.met { "yes" } else { "**no**" }
            );
        }
        out
    }
}

/// Answers of 400 or more and transport errors, closed and open loop.
fn errors(row: &Row) -> String {
    let runs = [&row.closed, &row.open];
    let requests: u64 = runs.iter().map(|run| run.requests).sum();
    if requests == 0 {
        return "–".into();
    }
    let failed: u64 = runs
        .iter()
        .map(|run| run.status_errors + run.transport_errors())
        .sum();
    format!("{:.2} %", failed as f64 * 100.0 / requests as f64)
}

fn latency(ms: f64, row: &Row) -> String {
    if row.open.requests == 0 {
        "–".into()
    } else {
        format!("{ms:.2}")
    }
}
