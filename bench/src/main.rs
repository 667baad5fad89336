//! otpd-bench: how close otpd runs to its floor, and what it costs.
//!
//! `bench/run` builds this and otpd in release mode and runs `otpd-bench
//! run`: a private redis-server, the floors (bench/src/floor.rs), then otpd
//! (production mode, the `null` carrier) under each scenario, and the Redis
//! memory of pending verifications; the report goes to bench/results/.
//! `otpd-bench floor` is the floor server itself, started by `run`.

mod capture;
mod deliverability;
mod floor;
mod memory;
mod process;
mod report;
mod run;
mod scenario;
mod servers;
mod world;
mod wrk;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Benchmarks otpd against its floors in one run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every scenario and writes the report.
    Run(run::Options),
    /// The deliverability simulation: two replicas, three faulty carriers,
    /// kills; writes bench/results/deliverability.md.
    Deliverability(deliverability::Options),
    /// Serves a floor: (b) one EVALSHA per request, or (c) a constant.
    Floor {
        #[arg(long)]
        listen: String,
        #[arg(long, value_enum)]
        mode: floor::Mode,
        #[arg(long)]
        redis: String,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(options) => run::run(&options),
        Command::Deliverability(options) => deliverability::run(&options),
        Command::Floor {
            listen,
            mode,
            redis,
        } => actix_web::rt::System::new().block_on(floor::serve(&listen, mode, &redis)),
    }
}

/// The repository's root (bench/..), where the results and the wrk script live.
fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let seconds: u64 = text
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{text}: give whole seconds, e.g. 15s"))?;
    Ok(Duration::from_secs(seconds))
}
