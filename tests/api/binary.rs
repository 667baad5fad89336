//! The real `otpd` binary, as the README runs it: dev mode prints a banner
//! with an API key, and the console carrier prints each SMS.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::code_in;

struct Otpd {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Otpd {
    fn dev_mode() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_otpd"))
            .env("OTPD_HTTP__LISTEN", "127.0.0.1:0")
            .env("OTPD_HTTP__WORKERS", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("otpd binary");
        let stdout: ChildStdout = child.stdout.take().expect("stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Otpd { child, lines }
    }

    /// The next stdout line that starts with `prefix` (after trimming).
    fn line_starting(&self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no line {prefix:?}"));
            if let Some(rest) = line.trim_start_matches(['│', ' ']).strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
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
    let otpd = Otpd::dev_mode();
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
