//! The `otpd` binary: parse flags, load settings, start logging, run the
//! App until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use otpd::config::{self, LogFormat, Settings};
use otpd::startup::App;

/// mimalloc rather than the system allocator: a request allocates many
/// small short-lived buffers (JSON, Redis replies), where glibc's malloc
/// took about a sixth of otpd's CPU (README, "Performance").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "One-time-code verification service")]
struct Cli {
    /// Production settings (TOML). Without it otpd runs in dev mode.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format; overrides log.format.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print a new API key and the `[[api_keys]]` entry that configures it.
    NewApiKey {
        /// A service the key may use (repeat for more; "*" for every one).
        #[arg(long = "service", value_name = "NAME", required = true)]
        services: Vec<String>,
        /// The key's id, in logs and metrics [default: the first service's
        /// name, then "-backend"].
        #[arg(long)]
        id: Option<String>,
        /// An admin key: it may call only /admin (see `otpd admin`).
        #[arg(long)]
        admin: bool,
    },
    /// Read (`state`) or lift (`lift`) a number's failure lockout and the
    /// blocks on its destination, or put it (or its range) on the safe
    /// list (`safe`, `unsafe`), through the admin API of the otpd at
    /// --url, with the admin key in OTPD_ADMIN_KEY. Prints the JSON answer
    /// (for changes, the state before).
    Admin {
        #[arg(value_enum)]
        action: AdminAction,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long)]
        service: String,
        /// The number, E.164 or national.
        #[arg(long)]
        to: String,
        /// `safe`, `unsafe`: the number's whole range.
        #[arg(long)]
        range: bool,
        /// `safe`: for this many days (1 to 366).
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Print the OpenAPI document of HTTP API v1 (as /openapi.json serves it).
    Openapi,
    /// Exit 0 if the otpd at ADDR answers /healthz with 200 (for container
    /// health checks: the runtime image has no shell or curl).
    Healthcheck {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AdminAction {
    State,
    Lift,
    Safe,
    Unsafe,
}

/// `otpd admin`: one call of the admin API.
async fn admin(
    action: AdminAction,
    url: &str,
    service: &str,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    let key = std::env::var("OTPD_ADMIN_KEY").context("set OTPD_ADMIN_KEY to an admin key")?;
    let path = match action {
        AdminAction::State => "state",
        AdminAction::Lift => "lift",
        AdminAction::Safe | AdminAction::Unsafe => "safe-list",
    };
    let url = format!(
        "{}/admin/v1/services/{service}/numbers/{path}",
        url.trim_end_matches('/')
    );
    let answer = reqwest::Client::new()
        .post(&url)
        .bearer_auth(key)
        .json(&body)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await
        .with_context(|| format!("no answer from {url}"))?;
    let status = answer.status();
    let body: serde_json::Value = answer.json().await.context("an unreadable answer")?;
    let pretty = serde_json::to_string_pretty(&body)?;
    anyhow::ensure!(status.is_success(), "{status}: {pretty}");
    println!("{pretty}");
    Ok(())
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Healthcheck { addr }) = cli.command {
        let answer = reqwest::Client::new()
            .get(format!("http://{addr}/healthz"))
            .timeout(std::time::Duration::from_secs(2))
            .send()
            .await
            .with_context(|| format!("no answer from {addr}"))?;
        anyhow::ensure!(
            answer.status() == 200,
            "{addr} answered {}",
            answer.status()
        );
        return Ok(());
    }
    if let Some(Command::Openapi) = cli.command {
        print!("{}", otpd::http::openapi_document());
        return Ok(());
    }
    if let Some(Command::Admin {
        action,
        url,
        service,
        to,
        range,
        days,
    }) = &cli.command
    {
        let body = match action {
            AdminAction::State | AdminAction::Lift => serde_json::json!({ "to": to }),
            AdminAction::Safe => serde_json::json!({ "to": to, "range": range, "days": days }),
            AdminAction::Unsafe => serde_json::json!({ "to": to, "range": range, "safe": false }),
        };
        return admin(*action, url, service, body).await;
    }
    if let Some(Command::NewApiKey {
        services,
        id,
        admin,
    }) = &cli.command
    {
        let id = id
            .clone()
            .unwrap_or_else(|| format!("{}-backend", services[0].replace('*', "all")));
        let key = config::new_api_key(&id);
        let services = services
            .iter()
            .map(|service| format!("{service:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        println!("API key (give it to the caller, store it nowhere else):\n  {key}\n");
        println!(
            "Configuration:\n  [[api_keys]]\n  id = {id:?}\n  sha256 = \"{}\"\n  services = [{services}]{}",
            config::sha256_hex(&key),
            if *admin { "\n  admin = true" } else { "" }
        );
        return Ok(());
    }
    let dev_key = config::new_api_key("dev");
    let settings = match &cli.config {
        Some(path) => Settings::load(path)?,
        None => Settings::dev(&dev_key)?,
    };
    let telemetry = otpd::telemetry::init(
        cli.log_format.unwrap_or(settings.log.format),
        &settings.log.filter,
        &settings.log.otlp_endpoint,
    )?;
    let app = App::build(&settings)?;
    if cli.config.is_none() {
        print_dev_banner(&app, &dev_key);
    }
    tracing::info!(http = %app.http_addr(), mode = ?settings.mode, "otpd listening");
    app.run_until_stopped(shutdown_signal()).await?;
    tracing::info!("otpd stopped");
    telemetry.shutdown();
    Ok(())
}

fn print_dev_banner(app: &App, key: &str) {
    let addr = app.http_addr();
    println!(
        "\n\
        ================================ DEV MODE ================================\n\
        Not for real users: in-memory store, and every SMS (code included) is\n\
        printed below instead of being sent. Run with --config for production.\n\
        \n\
        API:      http://{addr}\n\
        Service:  demo (region JP, 6-digit codes)\n\
        API key:  {key}\n\
        \n\
        export OTPD_KEY={key}\n\
        ==========================================================================\n"
    );
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    interrupt.await.ok();
}
