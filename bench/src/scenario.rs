//! Measures one server under one load: a warm-up, a closed-loop run for
//! throughput and cost (CPU of the server and of Redis, Redis calls, the
//! server's memory over time), then an open-loop run at half that rate for
//! latency, so p99 is not a queueing artefact.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::process::{cpu_seconds, rss_bytes};
use crate::report::Row;
use crate::servers::Listening;
use crate::wrk::{Load, Summary, Wrk};

/// otpd's Redis operations on the request path (the rest are the delivery
/// workers' and the metrics sampler's).
const REQUEST_OPERATIONS: &[&str] = &[
    "limit",
    "pending_for",
    "start",
    "number_of",
    "check",
    "replicas_ack",
    "resend",
    "get",
    "cancel",
    "reserve",
    "complete",
];

/// The server under load.
pub struct Server<'a> {
    pub base: &'a str,
    pub pid: u32,
    /// otpd (metrics to read) or a floor (none).
    pub otpd: Option<&'a Listening>,
}

pub struct Measure<'a> {
    pub wrk: &'a Wrk,
    pub duration: Duration,
    pub redis_pid: u32,
}

/// Long enough for a fresh otpd to reach its steady memory (allocator
/// pages, buffers, connections), so growth during a run means something.
pub const WARM_UP: Duration = Duration::from_secs(10);

impl Measure<'_> {
    /// Runs `load` against `server`; `offset` is the next unused sequence
    /// number of the load and moves past every request sent.
    pub fn run(
        &self,
        name: &str,
        server: &Server,
        load: &Load,
        offset: &mut u64,
    ) -> anyhow::Result<Row> {
        let warm = self.wrk.run(server.base, load, WARM_UP, 0.0, *offset)?;
        *offset = warm.next_offset;

        let metrics_before = scrape(server)?;
        let (cpu_before, redis_before) = (cpu_seconds(server.pid)?, cpu_seconds(self.redis_pid)?);
        let sampler = Sampler::start(server.pid);
        let closed = self
            .wrk
            .run(server.base, load, self.duration, 0.0, *offset)?;
        let samples = sampler.stop();
        let (cpu_after, redis_after) = (cpu_seconds(server.pid)?, cpu_seconds(self.redis_pid)?);
        let metrics_after = scrape(server)?;
        *offset = closed.next_offset;

        let rate = closed.per_second() / 2.0;
        let open = self
            .wrk
            .run(server.base, load, self.duration, rate, *offset)?;
        *offset = open.next_offset;

        let thousands = closed.requests.max(1) as f64 / 1000.0;
        let (rss_first_mb, rss_last_mb) = rss_ends(&samples, self.duration);
        let mut row = Row {
            name: name.to_string(),
            per_second: closed.per_second(),
            open_loop_rate: open.per_second(),
            p50_ms: open.p50_us as f64 / 1000.0,
            p99_ms: open.p99_us as f64 / 1000.0,
            p999_ms: open.p999_us as f64 / 1000.0,
            server_cpu_per_1k: Some((cpu_after - cpu_before) / thousands),
            redis_cpu_per_1k: (redis_after - redis_before) / thousands,
            rss_first_mb,
            rss_last_mb,
            ..Row::default()
        };
        if let (Some(before), Some(after)) = (metrics_before, metrics_after) {
            let calls = |text: &str| {
                let by_operation = sum_by(text, "otpd_redis_duration_seconds_count", "operation");
                let count = |operation: &str| by_operation.get(operation).copied().unwrap_or(0.0);
                // The delivery workers read each queued send's verification
                // with `get` too, once per send they finish.
                REQUEST_OPERATIONS.iter().map(|op| count(op)).sum::<f64>() - count("finish_send")
            };
            row.round_trips =
                Some((calls(&after) - calls(&before)) / closed.requests.max(1) as f64);
            row.statuses = delta(&before, &after, "otpd_http_requests_total", "status");
            row.outcomes = delta(&before, &after, "otpd_checks_total", "outcome");
            row.sends = delta(&before, &after, "otpd_sends_total", "outcome")
                .values()
                .fold(0.0, |sum, sends| sum + sends);
        }
        report_errors(name, &closed, &open);
        row.closed = closed;
        row.open = open;
        Ok(row)
    }
}

fn report_errors(name: &str, closed: &Summary, open: &Summary) {
    for (run, summary) in [("closed", closed), ("open", open)] {
        if summary.transport_errors() > 0 {
            eprintln!(
                "warning: {name} ({run} loop): {} transport errors",
                summary.transport_errors()
            );
        }
    }
}

fn scrape(server: &Server) -> anyhow::Result<Option<String>> {
    server.otpd.map(Listening::metrics).transpose()
}

/// Sums of a metric's samples by one label, from Prometheus' text format.
pub fn sum_by(text: &str, metric: &str, label: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    let needle = format!("{label}=\"");
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        if !rest.starts_with('{') && !rest.starts_with(' ') {
            continue;
        }
        let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        let key = rest
            .split_once(&needle)
            .and_then(|(_, after)| after.split_once('"'))
            .map_or(String::new(), |(value, _)| value.to_string());
        *sums.entry(key).or_insert(0.0) += value.unwrap_or(0.0);
    }
    sums
}

fn delta(before: &str, after: &str, metric: &str, label: &str) -> BTreeMap<String, f64> {
    let old = sum_by(before, metric, label);
    sum_by(after, metric, label)
        .into_iter()
        .map(|(key, value)| {
            let was = old.get(&key).copied().unwrap_or(0.0);
            (key, value - was)
        })
        .filter(|(_, value)| *value > 0.0)
        .collect()
}

/// The server's resident memory, sampled every 200 ms during a run.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Duration, u64)>>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let begun = Instant::now();
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok(rss) = rss_bytes(pid) {
                    samples.push((begun.elapsed(), rss));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            samples
        });
        Sampler { stop, thread }
    }

    fn stop(self) -> Vec<(Duration, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// Mean RSS (MB) of the first and of the last 5 s (a third of shorter runs).
fn rss_ends(samples: &[(Duration, u64)], run: Duration) -> (Option<f64>, Option<f64>) {
    let window = Duration::from_secs(5).min(run / 3);
    let end = samples.last().map_or(Duration::ZERO, |(at, _)| *at);
    let mean = |keep: &dyn Fn(Duration) -> bool| {
        let picked: Vec<f64> = samples
            .iter()
            .filter(|(at, _)| keep(*at))
            .map(|(_, rss)| *rss as f64 / 1e6)
            .collect();
        (!picked.is_empty()).then(|| picked.iter().sum::<f64>() / picked.len() as f64)
    };
    (mean(&|at| at <= window), mean(&|at| at + window >= end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_samples_by_label_and_skips_longer_names() {
        let text = "# HELP x\n\
            otpd_checks_total{service=\"a\",outcome=\"approved\"} 3\n\
            otpd_checks_total{service=\"b\",outcome=\"approved\"} 2\n\
            otpd_checks_total{service=\"a\",outcome=\"wrong\"} 1\n\
            otpd_checks_total_other{outcome=\"approved\"} 100\n";
        let sums = sum_by(text, "otpd_checks_total", "outcome");
        assert_eq!(sums.get("approved"), Some(&5.0));
        assert_eq!(sums.get("wrong"), Some(&1.0));
        assert_eq!(sums.len(), 2);
    }

    #[test]
    fn compares_the_first_and_last_seconds_of_memory() {
        let samples: Vec<(Duration, u64)> = (0..=75)
            .map(|i| {
                (
                    Duration::from_millis(200 * i),
                    if i < 40 { 10_000_000 } else { 12_000_000 },
                )
            })
            .collect();
        let (first, last) = rss_ends(&samples, Duration::from_secs(15));
        assert_eq!(first, Some(10.0));
        assert_eq!(last, Some(12.0));
    }
}
