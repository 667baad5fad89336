//! `otpd-bench run`: every floor and scenario in one run, then the report.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::capture::{self, Capture};
use crate::floor;
use crate::memory;
use crate::process::{cpu_seconds, output_of, wait_until};
use crate::report::{Machine, Report, Row, Target};
use crate::scenario::{sum_by, Measure, Server, WARM_UP};
use crate::servers::{self, scratch, Carrier, Listening, RedisServer};
use crate::wrk::{Load, Wrk};

#[derive(clap::Args)]
pub struct Options {
    /// Length of each closed-loop and each open-loop run.
    #[arg(long, default_value = "15s", value_parser = crate::parse_duration)]
    duration: Duration,
    /// Connections of the load generator (and of redis-benchmark).
    #[arg(long, default_value_t = 64)]
    connections: u32,
    /// Pending verifications of the memory scenario.
    #[arg(long, default_value_t = 1_000_000)]
    verifications: u64,
    /// The otpd binary (a release build).
    #[arg(long, default_value = "target/release/otpd")]
    otpd: PathBuf,
    /// Where the report goes (latest.md and latest.json).
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

const FLOOR_B: &str = "floor (b): actix-web + one EVALSHA of check.lua";

pub fn run(options: &Options) -> anyhow::Result<()> {
    let root = crate::repository();
    let dir = scratch()?;
    let redis = RedisServer::start(&dir)?;
    let wrk = Wrk {
        script: root.join("bench/wrk.lua"),
        scratch: dir.clone(),
        threads: 2,
        connections: options.connections,
    };
    let measure = Measure {
        wrk: &wrk,
        duration: options.duration,
        redis_pid: redis.process.pid(),
    };
    let mut rows = floors(&measure, &redis, &dir, options)?;
    let floor_b = rows
        .iter()
        .find(|row| row.name == FLOOR_B)
        .map(|row| row.per_second)
        .context("floor (b) measured")?;
    rows.extend(scenarios(&measure, &redis, &dir, options)?);
    for row in rows.iter_mut().filter(|row| !row.name.starts_with("floor")) {
        row.ratio_to_floor = Some(row.per_second / floor_b);
    }
    eprintln!(
        "==> memory: {} pending verifications",
        options.verifications
    );
    let memory = memory_scenario(&redis, &dir, options)?;
    let targets = targets(&rows, &memory);
    let report = Report {
        date: output_of("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        command: format!(
            "bench/run --duration {}s --connections {} --verifications {}",
            options.duration.as_secs(),
            options.connections,
            options.verifications
        ),
        duration_s: options.duration.as_secs(),
        connections: options.connections,
        machine: machine(),
        rows,
        memory: Some(memory),
        targets,
    };
    write(&report, &options.out)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn floors(
    measure: &Measure,
    redis: &RedisServer,
    dir: &Path,
    options: &Options,
) -> anyhow::Result<Vec<Row>> {
    let ids = dir.join("floor-ids.txt");
    floor::prepare(&mut redis.connection()?, &ids)?;
    let load = Load::checks("check-wrong", &ids);
    let mut rows = Vec::new();
    for (mode, name, round_trips) in [
        (
            "constant",
            "floor (c): actix-web alone, constant answer",
            0.0,
        ),
        ("redis", FLOOR_B, 1.0),
    ] {
        eprintln!("==> {name}");
        let server = servers::floor(dir, mode, redis)?;
        let target = Server {
            base: &server.base,
            pid: server.process.pid(),
            otpd: None,
        };
        let mut row = measure.run(name, &target, &load, &mut 0)?;
        row.round_trips = Some(round_trips);
        rows.push(row);
    }
    let mut connection = redis.connection()?;
    for script in floor::script_loads(&mut connection)? {
        let name = format!("floor (a): redis-benchmark, EVALSHA {}", script.name);
        eprintln!("==> {name}");
        let requests = floor::benchmark_requests(options.duration);
        let before = cpu_seconds(redis.process.pid())?;
        let per_second =
            floor::redis_benchmark(redis.port, options.connections, requests, &script)?;
        let after = cpu_seconds(redis.process.pid())?;
        rows.push(Row {
            name,
            per_second,
            redis_cpu_per_1k: (after - before) / (requests as f64 / 1000.0),
            round_trips: Some(1.0),
            ..Row::default()
        });
    }
    Ok(rows)
}

/// Requests one scenario sends at `rate`: warm-up, closed and open loop.
fn requests_at(rate: f64, duration: Duration) -> u64 {
    let seconds = WARM_UP.as_secs_f64() + 1.5 * duration.as_secs_f64();
    (rate * seconds * 1.3) as u64
}

/// The check-wrong load with `redis.replicas_ack = 1` and one replica.
const ACKNOWLEDGED: &str = "check-wrong, replicas_ack 1";

fn scenarios(
    measure: &Measure,
    redis: &RedisServer,
    dir: &Path,
    options: &Options,
) -> anyhow::Result<Vec<Row>> {
    let binary = &options.otpd;
    let mut rows = Vec::new();

    eprintln!("==> start");
    let start = on_fresh_otpd(measure, redis, dir, options, &Load::starts("70"))?;
    let started_per_second = start.per_second;
    rows.push(start);

    // Codes for the checks, learned through the webhook carrier; numbers
    // from +81 80 1000 0000 on.
    let mut pool = prepare(
        binary,
        dir,
        redis,
        0,
        requests_at(started_per_second * 2.0, options.duration),
    )?;
    let pool_file = dir.join("pool.txt");
    write_pairs(&pool_file, &pool)?;

    eprintln!("==> check-wrong");
    let load = Load::checks("check-wrong", &pool_file);
    let wrong = on_fresh_otpd(measure, redis, dir, options, &load)?;
    let needed = requests_at(wrong.per_second, options.duration);
    rows.push(wrong);

    // The cost of durable checks: the same load, each wrong code waiting
    // for a replica's acknowledgement (WAIT 1) before otpd answers.
    eprintln!("==> {ACKNOWLEDGED}");
    let replica = RedisServer::replica_of(dir, redis)?;
    let otpd = servers::otpd(&options.otpd, dir, redis, Carrier::Null, 1)?;
    rows.push(measure.run(ACKNOWLEDGED, &server(&otpd), &load, &mut 0)?);
    drop((otpd, replica));

    // More codes: check-right spends one verification per request; mixed
    // needs 0.4 right checks and 0.12 resends/wrong checks per request.
    let (mixed_checks, mixed_resends) = (needed * 2 / 5, needed * 3 / 25);
    let more = needed.saturating_sub(pool.len() as u64) + mixed_checks + mixed_resends;
    let mut extra = prepare(binary, dir, redis, pool.len() as u64, more)?;
    let resends = extra.split_off(extra.len().saturating_sub(mixed_resends as usize));
    let checks = extra.split_off(extra.len().saturating_sub(mixed_checks as usize));
    pool.extend(extra);
    write_pairs(&pool_file, &pool)?;
    let (checks_file, resends_file) = (dir.join("mixed-checks.txt"), dir.join("mixed-resends.txt"));
    write_pairs(&checks_file, &checks)?;
    write_pairs(&resends_file, &resends)?;

    let mut mixed = Load::checks("mixed", &checks_file);
    mixed.resends = Some(resends_file);
    for load in [Load::checks("check-right", &pool_file), mixed] {
        eprintln!("==> {}", load.kind);
        rows.push(on_fresh_otpd(measure, redis, dir, options, &load)?);
    }
    Ok(rows)
}

/// Measures `load` on an otpd started for it.
fn on_fresh_otpd(
    measure: &Measure,
    redis: &RedisServer,
    dir: &Path,
    options: &Options,
    load: &Load,
) -> anyhow::Result<Row> {
    let otpd = servers::otpd(&options.otpd, dir, redis, Carrier::Null, 0)?;
    measure.run(load.kind, &server(&otpd), load, &mut 0)
}

fn server(otpd: &Listening) -> Server<'_> {
    Server {
        base: &otpd.base,
        pid: otpd.process.pid(),
        otpd: Some(otpd),
    }
}

/// Starts `count` verifications with otpd routed to the capture and
/// returns their (id, code) pairs.
fn prepare(
    binary: &Path,
    dir: &Path,
    redis: &RedisServer,
    first: u64,
    count: u64,
) -> anyhow::Result<Vec<(String, String)>> {
    eprintln!("==> preparing {count} verifications (codes by webhook)");
    let capture = Capture::start()?;
    let otpd = servers::otpd(binary, dir, redis, Carrier::Capture(capture.port), 0)?;
    let created = capture::start_many(&otpd.base, "80", first, count)?;
    anyhow::ensure!(
        created == count,
        "only {created} of {count} verifications started"
    );
    capture::wait_for(&capture, count as usize)?;
    Ok(capture.take())
}

fn write_pairs(path: &Path, pairs: &[(String, String)]) -> anyhow::Result<()> {
    let text: String = pairs
        .iter()
        .map(|(id, code)| format!("{id} {code}\n"))
        .collect();
    Ok(std::fs::write(path, text)?)
}

fn memory_scenario(
    redis: &RedisServer,
    dir: &Path,
    options: &Options,
) -> anyhow::Result<crate::report::Memory> {
    redis::cmd("FLUSHALL").query::<()>(&mut redis.connection()?)?;
    let otpd = servers::otpd(&options.otpd, dir, redis, Carrier::Null, 0)?;
    let before = memory::used_memory(redis)?;
    let count = options.verifications;
    let created = capture::start_many(&otpd.base, "90", 0, count)?;
    anyhow::ensure!(
        created == count,
        "only {created} of {count} verifications started"
    );
    // Every send handed to the carrier, so the outbox is as it stays.
    wait_until("sends delivered", Duration::from_secs(600), || {
        otpd.metrics()
            .map(|text| {
                sum_by(&text, "otpd_sends_total", "outcome")
                    .get("accepted")
                    .copied()
                    .unwrap_or(0.0)
                    >= count as f64
            })
            .unwrap_or(false)
    })?;
    let after = memory::used_memory(redis)?;
    memory::measure(redis, count, before, after)
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |text: &str, name: &str| {
        text.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_once(':'))
            .map(|(_, value)| value.trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    Machine {
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        cpu: field(&cpuinfo, "model name"),
        kernel: output_of("uname", &["-r"]),
        memory: field(&meminfo, "MemTotal"),
        redis: output_of("redis-server", &["--version"]),
        wrk: output_of("wrk", &["-v"])
            .lines()
            .next()
            .unwrap_or("")
            .to_string(),
        rustc: output_of("rustc", &["--version"]),
    }
}

fn targets(rows: &[Row], memory: &crate::report::Memory) -> Vec<Target> {
    let mut targets = Vec::new();
    let row = |name: &str| rows.iter().find(|row| row.name == name);
    for (name, floor_share) in [("check-right", 0.7), ("check-wrong", 0.7), ("start", 0.5)] {
        if let Some(row) = row(name) {
            let ratio = row.ratio_to_floor.unwrap_or(0.0);
            targets.push(Target {
                target: format!("{name} ≥ {:.0} % of floor (b)", floor_share * 100.0),
                measured: format!("{:.0} %", ratio * 100.0),
                met: ratio >= floor_share,
            });
        }
    }
    for row in rows.iter().filter(|row| !row.name.starts_with("floor")) {
        targets.push(Target {
            target: format!("{}: p99 ≤ 5 ms at 50 % of the maximum", row.name),
            measured: format!("{:.2} ms at {:.0}/s", row.p99_ms, row.open_loop_rate),
            met: row.p99_ms <= 5.0,
        });
    }
    for (name, most) in [("check-right", 2.0), ("check-wrong", 2.0), ("start", 3.0)] {
        if let Some(trips) = row(name).and_then(|row| row.round_trips) {
            targets.push(Target {
                target: format!("{name}: ≤ {most:.0} Redis round trips"),
                measured: format!("{trips:.2}"),
                met: trips <= most + 0.005,
            });
        }
    }
    targets.push(Target {
        target: "Redis memory ≤ 320 bytes per pending verification".into(),
        measured: format!("{:.0} bytes", memory.bytes_per_verification),
        met: memory.bytes_per_verification <= 320.0,
    });
    for row in rows.iter().filter(|row| !row.name.starts_with("floor")) {
        if let (Some(first), Some(last)) = (row.rss_first_mb, row.rss_last_mb) {
            targets.push(Target {
                target: format!(
                    "{}: otpd memory flat (last 5 s ≤ first 5 s + 2 %)",
                    row.name
                ),
                measured: format!("{first:.1} → {last:.1} MB"),
                met: last <= first * 1.02,
            });
        }
    }
    targets
}

fn write(report: &Report, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let markdown = report.markdown();
    std::fs::write(out.join("latest.md"), &markdown)?;
    std::fs::write(
        out.join("latest.json"),
        serde_json::to_string_pretty(report)? + "\n",
    )?;
    println!("{markdown}");
    Ok(())
}
