//! The real `otpd` binary, as the README runs it: dev mode prints a banner
//! with an API key, and the console carrier prints each SMS.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::code_in;

/// The binary in dev mode, its standard output and error read line by line.
struct Otpd {
    child: Child,
    lines: mpsc::Receiver<String>,
}

fn forward(stream: impl Read + Send + 'static, lines: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
}

impl Otpd {
    fn dev_mode(args: &[&str]) -> Self {
        Self::dev_mode_with(args, &[])
    }

    fn dev_mode_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_otpd"))
            .args(args)
            .envs(env.iter().copied())
            .env("OTPD_HTTP__LISTEN", "127.0.0.1:0")
            .env("OTPD_GRPC__LISTEN", "127.0.0.1:0")
            .env("OTPD_HTTP__WORKERS", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("otpd binary");
        let (send, lines) = mpsc::channel();
        forward(child.stdout.take().expect("stdout"), send.clone());
        forward(child.stderr.take().expect("stderr"), send);
        Otpd { child, lines }
    }

    /// The first line for which `pick` gives a value, within 20 s.
    fn find<T>(&self, what: &str, pick: impl Fn(&str) -> Option<T>) -> T {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no {what}"));
            if let Some(found) = pick(&line) {
                return found;
            }
        }
    }

    /// What follows `prefix` on the next line that starts with it.
    fn line_starting(&self, prefix: &str) -> String {
        self.find(prefix, |line| {
            line.trim_start_matches(['│', ' '])
                .strip_prefix(prefix)
                .map(|rest| rest.trim().to_owned())
        })
    }
}

impl Drop for Otpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_walkthrough_from_the_readme() {
    let otpd = Otpd::dev_mode(&[]);
    let base = otpd.line_starting("API:");
    let key = otpd.line_starting("API key:");
    assert!(key.starts_with("otpd_"), "{key}");
    let post = |path: String, body: Value| {
        let request = reqwest::Client::new()
            .post(format!("{base}{path}"))
            .bearer_auth(&key)
            .json(&body);
        async move {
            request
                .send()
                .await
                .expect("sent")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let started = post(
        "/v1/services/demo/verifications".into(),
        json!({ "to": "090-1234-5678", "channel": "sms", "locale": "en" }),
    )
    .await;
    assert_eq!(started["status"], "pending", "{started}");
    let code = code_in(&otpd.line_starting("Your Demo code is"));
    let id = started["id"].as_str().expect("id");
    let checked = post(
        format!("/v1/services/demo/verifications/{id}/check"),
        json!({ "code": code }),
    )
    .await;
    assert_eq!(
        (checked["valid"].as_bool(), checked["status"].as_str()),
        (Some(true), Some("approved"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id() {
    let otpd = Otpd::dev_mode(&["--log-format", "json"]);
    let base = otpd.line_starting("API:");
    let response = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .header("x-request-id", "json-log-test")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
    let entry = otpd.find("a JSON log line of the request", |line| {
        serde_json::from_str::<Value>(line)
            .ok()
            .filter(|entry| entry["span"]["request_id"] == "json-log-test")
    });
    assert_eq!(entry["message"], "request answered", "{entry}");
    assert_eq!(entry["status"], 200, "{entry}");
    assert_eq!(entry["span"]["route"], "/healthz", "{entry}");
}

/// Runs `otpd --config <config>` with `env`, expecting it to refuse to
/// start; returns what it printed to standard error.
fn refused_start(config: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("otpd.toml");
    std::fs::write(&file, config).expect("config written");
    let output = Command::new(env!("CARGO_BIN_EXE_otpd"))
        .arg("--config")
        .arg(&file)
        .envs(env.iter().copied())
        .output()
        .expect("otpd runs");
    assert!(!output.status.success(), "otpd started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn production_mode_refuses_a_short_secret() {
    let config =
        "[redis]\nurl = \"redis://127.0.0.1:1/\"\n[[secrets]]\nid = \"k\"\nvalue = \"too short\"\n";
    let stderr = refused_start(config, &[]);
    assert!(
        stderr.contains("secrets[0].value: must be at least 32 bytes"),
        "{stderr}"
    );
}

#[test]
fn environment_variables_override_the_file() {
    let config = format!(
        "[redis]\nurl = \"redis://127.0.0.1:1/\"\n[[secrets]]\nid = \"k\"\nvalue = \"{}\"\n\
         [[api_keys]]\nid = \"a\"\nsha256 = \"{}\"\nservices = [\"*\"]\n[services.demo]\nttl = \"5m\"\n",
        "s".repeat(32),
        "0".repeat(64)
    );
    let stderr = refused_start(&config, &[("OTPD_SERVICES__DEMO__TTL", "45m")]);
    assert!(
        stderr.contains("services.demo.ttl: 45m is outside 1s..=10m"),
        "{stderr}"
    );
}

/// The container health check: `otpd healthcheck` exits 0 against a live
/// otpd and fails against a port where none listens.
#[test]
fn healthcheck_tells_a_live_otpd_from_a_dead_one() {
    let otpd = Otpd::dev_mode(&[]);
    let base = otpd.line_starting("API:");
    let healthcheck = |addr: &str| {
        Command::new(env!("CARGO_BIN_EXE_otpd"))
            .args(["healthcheck", "--addr", addr])
            .output()
            .expect("otpd binary")
            .status
    };
    assert!(healthcheck(base.trim_start_matches("http://")).success());
    let nobody = format!("127.0.0.1:{}", crate::support::free_port());
    assert!(!healthcheck(&nobody).success());
}

/// The configurations shipped under deploy/ load and validate, so the
/// compose file and the Kubernetes Secret start a real otpd.
#[test]
fn the_deploy_configurations_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["deploy/compose/otpd.toml", "deploy/kubernetes/otpd.toml"] {
        let settings = otpd::config::Settings::load(&root.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        settings
            .validate()
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

/// With `log.otlp_endpoint`, spans go to the collector over OTLP/HTTP (here
/// a local server standing in for an OpenTelemetry collector) and the JSON
/// log lines of a request carry its trace id, the same one the collector
/// receives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_the_collector_and_logs_carry_their_ids() {
    use std::sync::{Arc, Mutex};
    let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let collector = format!("http://{}", listener.local_addr().expect("address"));
    let received = Arc::clone(&bodies);
    let server = actix_web::HttpServer::new(move || {
        let received = Arc::clone(&received);
        actix_web::App::new().route(
            "/v1/traces",
            actix_web::web::post().to(move |body: actix_web::web::Bytes| {
                received.lock().expect("bodies").push(body.to_vec());
                async {
                    actix_web::HttpResponse::Ok()
                        .content_type("application/x-protobuf")
                        .finish()
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .expect("listens")
    .run();
    tokio::spawn(server);
    let otpd = Otpd::dev_mode_with(
        &["--log-format", "json"],
        &[
            ("OTPD_LOG__OTLP_ENDPOINT", &collector),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let base = otpd.line_starting("API:");
    let key = otpd.find("the API key", |line| {
        serde_json::from_str::<Value>(line).is_err().then_some(())?;
        line.trim()
            .strip_prefix("API key:")
            .map(|k| k.trim().to_owned())
    });
    let started = reqwest::Client::new()
        .post(format!("{base}/v1/services/demo/verifications"))
        .bearer_auth(&key)
        .header("x-request-id", "traced-start")
        .json(&json!({ "to": "090-1234-5678", "channel": "sms" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(started.status(), 201);
    let trace_id = otpd.find("a JSON log line with the trace id", |line| {
        let entry = serde_json::from_str::<Value>(line).ok()?;
        (entry["span"]["request_id"] == "traced-start").then_some(())?;
        entry["span"]["trace_id"].as_str().map(str::to_owned)
    });
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    let trace_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let exported = bodies.lock().expect("bodies").concat();
        let has = |needle: &[u8]| exported.windows(needle.len()).any(|w| w == needle);
        if has(&trace_bytes) && has(b"carrier") && has(b"otpd") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the collector never got the request's trace and the carrier span"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
