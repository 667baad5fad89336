//! The real `otpd` binary, as the README runs it: dev mode prints a banner
//! with an API key, and the console carrier prints each SMS.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{code_in, readme_block, RedisServer};

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
        Self::start_with(args, &[])
    }

    /// `otpd args…` (dev mode unless they name a config), with `env`.
    fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
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

/// The README's walk-through, its shell block run by bash as written
/// (the address made this otpd's; the code, which the reader copies from
/// otpd's terminal, given on standard input where the block sets it).
#[test]
fn dev_mode_walkthrough_from_the_readme() {
    use std::io::Write;
    let otpd = Otpd::dev_mode(&[]);
    let base = otpd.line_starting("API:");
    let key = otpd.line_starting("API key:");
    assert!(key.starts_with("otpd_"), "{key}");
    let dir = tempfile::tempdir().expect("temp dir");
    let started = dir.path().join("otpd-start.json");
    let script = readme_block("## Walk-through (dev mode)", "sh")
        .replace("http://127.0.0.1:8080", &base)
        .replace("/tmp/otpd-start.json", started.to_str().expect("utf-8"));
    assert!(script.contains("CODE=123456"), "{script}");
    let script = script.replace("CODE=123456", "read -r CODE");
    let mut bash = Command::new("bash")
        .args(["-ec", &script])
        .env("OTPD_KEY", &key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("bash runs");
    let code = code_in(&otpd.line_starting("Your Demo code is"));
    let mut stdin = bash.stdin.take().expect("stdin");
    writeln!(stdin, "{code}").expect("code written");
    drop(stdin);
    let output = bash.wait_with_output().expect("bash ends");
    assert!(output.status.success());
    let output = String::from_utf8(output.stdout).expect("utf-8");
    let statuses: Vec<&str> = output
        .lines()
        .filter(|line| line.starts_with("HTTP/1.1 "))
        .collect();
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 201 Created",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 409 Conflict"
        ],
        "{output}"
    );
    assert!(
        output.contains("\"valid\":true") && output.contains("verification-approved"),
        "{output}"
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
        "index_secret = \"{}\"\n[redis]\nurl = \"redis://127.0.0.1:1/\"\n[[secrets]]\nid = \"k\"\nvalue = \"{}\"\n\
         [[api_keys]]\nid = \"a\"\nsha256 = \"{}\"\nservices = [\"*\"]\n[services.demo]\nttl = \"5m\"\n",
        "i".repeat(32),
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
    let otpd = Otpd::start_with(
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

#[test]
fn config_errors_name_the_key_and_where_it_was_set_once() {
    let stderr = refused_start("[http]\nlisten = 5\n", &[]);
    assert!(
        stderr.contains("http.listen: invalid type") && stderr.contains("otpd.toml)"),
        "{stderr}"
    );
    assert!(!stderr.contains("default."), "figment's profile: {stderr}");
    assert_eq!(stderr.matches("invalid type").count(), 1, "{stderr}");
    let stderr = refused_start("", &[("OTPD_HTTP__LISTN", "127.0.0.1:1")]);
    assert!(
        stderr.contains("http.listn: unknown field")
            && stderr.contains("environment variable OTPD_HTTP__LISTN"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("reading"),
        "not the file's fault: {stderr}"
    );
}

/// The README's Production section, run as written: install (done: this
/// is the binary under test), `otpd new-api-key …`, its entry in the
/// minimal `otpd.toml`, `otpd --config …`; then a code is started and
/// checked with that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_example_from_the_readme() {
    let commands = readme_block("## Production", "sh");
    let commands: Vec<&str> = commands
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .collect();
    assert_eq!(
        commands[0], "cargo install --locked --path .",
        "install comes first"
    );
    let new_key: Vec<&str> = commands[1].split_whitespace().collect();
    assert_eq!(new_key[..2], ["otpd", "new-api-key"]);
    let printed = Command::new(env!("CARGO_BIN_EXE_otpd"))
        .args(&new_key[1..])
        .output()
        .expect("otpd runs");
    assert!(printed.status.success());
    let printed = String::from_utf8(printed.stdout).expect("utf-8");
    let mut lines = printed.lines().map(str::trim);
    let key = lines
        .by_ref()
        .skip_while(|line| !line.starts_with("API key"))
        .nth(1)
        .expect("the key")
        .to_owned();
    let entry: Vec<&str> = lines.skip_while(|line| *line != "[[api_keys]]").collect();
    let sha256 = entry
        .iter()
        .find(|line| line.starts_with("sha256"))
        .expect("sha256");

    let mut config = readme_block("A minimal `otpd.toml`", "toml");
    for line in entry.iter().filter(|line| !line.starts_with("sha256")) {
        assert!(
            config.contains(line),
            "the README's entry has {line:?}:\n{config}"
        );
    }
    let redis = RedisServer::start();
    config = config
        .replace("sha256 = \"…from otpd new-api-key…\"", sha256)
        .replace(
            "…at least 32 bytes, e.g. from: openssl rand -base64 48…",
            &"s".repeat(48),
        )
        .replace(
            "…another 32 bytes or more, from the same command…",
            &"i".repeat(48),
        )
        .replace("redis://redis:6379/", &redis.url());
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("otpd.toml");
    std::fs::write(&file, &config).expect("config written");
    let run: Vec<&str> = commands[2].split_whitespace().collect();
    assert_eq!(run[..2], ["otpd", "--config"]);
    let otpd = Otpd::start_with(&["--config", file.to_str().expect("utf-8")], &[]);
    let base = otpd.find("the listening line", |line| {
        line.split("http=").nth(1).map(|rest| {
            format!(
                "http://{}",
                rest.split_whitespace().next().unwrap_or_default()
            )
        })
    });
    let client = reqwest::Client::new();
    let started = client
        .post(format!("{base}/v1/services/signup/verifications"))
        .bearer_auth(&key)
        .json(&json!({ "to": "090-1234-5678", "channel": "sms" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(started.status(), 201);
    let started: Value = started.json().await.expect("json");
    let banner = otpd.find("the console carrier's SMS", |line| {
        line.contains("SMS #1").then(|| line.to_owned())
    });
    assert!(
        banner.contains("not sent") && !banner.contains("dev mode"),
        "{banner}"
    );
    let code = code_in(&otpd.line_starting("【Example】"));
    let id = started["id"].as_str().expect("id");
    let check = client
        .post(format!(
            "{base}/v1/services/signup/verifications/{id}/check"
        ))
        .bearer_auth(&key)
        .json(&json!({ "code": code }));
    let answer = check.send().await.expect("sent");
    let checked: Value = answer.json().await.expect("json");
    assert_eq!(checked["valid"], true, "{checked}");
}
