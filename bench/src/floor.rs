//! The floors otpd is measured against, in the same run:
//! (b) a minimal actix-web handler that parses the check request's JSON body
//!     and makes one EVALSHA of otpd's own check script (a wrong code
//!     against a pending verification) over a multiplexed Redis connection;
//! (c) the same handler answering a constant (the HTTP stack alone);
//! (a) redis-benchmark running otpd's scripts by EVALSHA.
//! Not a route of the product: `otpd-bench floor` serves (b) or (c).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use redis::aio::ConnectionManager;
use serde::Deserialize;

use crate::servers::SERVICE;

/// otpd's check script, exactly as otpd sends it.
const CHECK_SCRIPT: &str = concat!(
    include_str!("../../src/store/lua/common.lua"),
    include_str!("../../src/store/lua/check.lua")
);
/// otpd's limit script (every request's first round trip).
const LIMIT_SCRIPT: &str = concat!(
    include_str!("../../src/store/lua/common.lua"),
    include_str!("../../src/store/lua/limit.lua")
);

/// Verifications the floor's checks cycle through.
pub const FLOOR_VERIFICATIONS: u64 = 100_000;
/// A digest no code has: every floor check is a wrong code.
const OTHER_DIGEST: &str = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum Mode {
    /// (b): one EVALSHA of the check script per request.
    Redis,
    /// (c): a constant answer.
    Constant,
}

#[derive(Deserialize)]
struct CheckBody {
    code: String,
}

struct State {
    redis: Option<ConnectionManager>,
    script: redis::Script,
}

/// Serves the floor until killed.
pub async fn serve(listen: &str, mode: Mode, redis_url: &str) -> anyhow::Result<()> {
    let redis = match mode {
        Mode::Redis => Some(ConnectionManager::new(redis::Client::open(redis_url)?).await?),
        Mode::Constant => None,
    };
    let state = web::Data::new(State {
        redis,
        script: redis::Script::new(CHECK_SCRIPT),
    });
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(HttpResponse::Ok))
            .route(
                "/v1/services/{service}/verifications/{id}/check",
                web::post().to(check),
            )
    })
    .bind(listen)?
    .run()
    .await?;
    Ok(())
}

async fn check(
    path: web::Path<(String, String)>,
    body: web::Json<CheckBody>,
    state: web::Data<State>,
) -> HttpResponse {
    let Some(redis) = &state.redis else {
        return HttpResponse::Ok().json(serde_json::json!({"valid": false}));
    };
    let id = &path.1;
    let tag = id.get(..4).unwrap_or("0000");
    // The record's number key is its id (see `prepare`).
    let mut invocation = state.script.key(format!("floor:{{{tag}}}:v:{id}"));
    invocation
        .key(format!("floor:{{{tag}}}:f:{id}"))
        .arg(SERVICE)
        .arg(now_ms())
        .arg(id)
        .arg(&failure_policy()[..])
        .arg(&["bench", &format!("{:B<43}", body.code), ""][..]);
    match invocation
        .invoke_async::<redis::Value>(&mut redis.clone())
        .await
    {
        Ok(redis::Value::Array(reply)) => {
            let outcome = match reply.first() {
                Some(redis::Value::BulkString(bytes)) => {
                    String::from_utf8_lossy(bytes).into_owned()
                }
                _ => String::new(),
            };
            HttpResponse::Ok().json(serde_json::json!({"outcome": outcome}))
        }
        _ => HttpResponse::ServiceUnavailable().finish(),
    }
}

/// Failures never throttle the floor: max and free out of reach.
fn failure_policy() -> [u64; 5] {
    [1_000_000_000_000, 999_999_999_999, 1000, 1000, 3_600_000]
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_millis() as u64)
        .unwrap_or(0)
}

/// The floor's id for sequence number `n`: a 4-hex-digit slot tag first.
pub fn floor_id(n: u64) -> String {
    format!("{:04x}{n:012}", n % 0x1_0000)
}

/// Stores the pending verifications the floor's checks use (the fields the
/// check script reads, attempts out of reach) and writes their ids in the
/// "<id> <code>" form wrk.lua reads.
pub fn prepare(connection: &mut redis::Connection, ids_file: &Path) -> anyhow::Result<()> {
    let expires = now_ms() + 24 * 3_600_000;
    let mut lines = String::new();
    let mut pipe = redis::pipe();
    for n in 0..FLOOR_VERIFICATIONS {
        let id = floor_id(n);
        let tag = &id[..4];
        pipe.hset_multiple(
            format!("floor:{{{tag}}}:v:{id}"),
            &[
                ("sv", SERVICE.to_string()),
                ("s", "pending".into()),
                ("e", expires.to_string()),
                ("k", "bench".into()),
                ("d", "A".repeat(43)),
                ("b", String::new()),
                ("nk", id.clone()),
                ("a", "1000000000".into()),
            ],
        )
        .ignore();
        lines.push_str(&format!("{id} 123456\n"));
        if pipe.len() >= 1000 {
            pipe.query::<()>(connection)?;
            pipe = redis::pipe();
        }
    }
    if !pipe.is_empty() {
        pipe.query::<()>(connection)?;
    }
    std::fs::write(ids_file, lines)?;
    Ok(())
}

/// One redis-benchmark run of an otpd script by EVALSHA, as (name, args).
pub struct ScriptLoad {
    pub name: &'static str,
    pub sha: String,
    pub args: Vec<String>,
}

/// The scripts behind one check request: the IP limit, then the check.
pub fn script_loads(connection: &mut redis::Connection) -> anyhow::Result<Vec<ScriptLoad>> {
    let load = |connection: &mut redis::Connection, text: &str| -> anyhow::Result<String> {
        Ok(redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(text)
            .query(connection)?)
    };
    let id = floor_id(1);
    let tag = &id[..4];
    let mut check = vec![
        "2".to_string(),
        format!("floor:{{{tag}}}:v:{id}"),
        format!("floor:{{{tag}}}:f:{id}"),
        SERVICE.into(),
        now_ms().to_string(),
        id.clone(),
    ];
    check.extend(failure_policy().iter().map(u64::to_string));
    check.extend(["bench".into(), OTHER_DIGEST.into(), String::new()]);
    let limit = [
        "2",
        "floor:{ip}:l:127.0.0.1",
        "floor:{ip}:b:127.0.0.1",
        &now_ms().to_string(),
        "take",
        "r",
        "1",
        "0",
        "0",
        "1",
        "1000000000000",
    ];
    Ok(vec![
        ScriptLoad {
            name: "limit.lua",
            sha: load(connection, LIMIT_SCRIPT)?,
            args: limit.iter().map(|arg| arg.to_string()).collect(),
        },
        ScriptLoad {
            name: "check.lua",
            sha: load(connection, CHECK_SCRIPT)?,
            args: check,
        },
    ])
}

/// Runs redis-benchmark for `requests` calls of one script; returns calls/s.
pub fn redis_benchmark(
    port: u16,
    connections: u32,
    requests: u64,
    script: &ScriptLoad,
) -> anyhow::Result<f64> {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &connections.to_string(), "-n", &requests.to_string()])
        .args(["--csv", "EVALSHA", &script.sha])
        .args(&script.args)
        .output()
        .context("run redis-benchmark")?;
    let text = String::from_utf8_lossy(&output.stdout);
    // "test","rps",… then one line per command.
    text.lines()
        .nth(1)
        .and_then(|line| line.split(',').nth(1))
        .map(|rps| rps.trim_matches('"').parse::<f64>())
        .context("redis-benchmark printed no rate")?
        .map_err(Into::into)
}

/// How long redis-benchmark runs a script, roughly the scenarios' duration.
pub fn benchmark_requests(duration: Duration) -> u64 {
    (duration.as_secs_f64() * 60_000.0) as u64
}
