//! Contract tests with a client otpd did not write: schemathesis (PyPI, in
//! .venv) generates requests from the served OpenAPI document and checks
//! every answer against it: no server error, no response that breaks the
//! schema, no undocumented status or content type.

use std::path::Path;
use std::process::Command;

use crate::support::{RedisServer, TestApp, API_KEY};
use crate::verify_v2::{verifying, ACCOUNT, SERVICE, TOKEN};

/// The arguments that pick the operations and sign the requests of one run.
type Run = [String; 4];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_contract_violation() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&verifying(&redis)).await;
    let schemathesis = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "no .venv: run scripts/test, which installs schemathesis"
    );
    let runs: [Run; 2] = [
        [
            "--exclude-path-regex".into(),
            "^/v2/".into(),
            "--header".into(),
            format!("Authorization: Bearer {API_KEY}"),
        ],
        [
            "--include-path-regex".into(),
            "^/v2/".into(),
            "--auth".into(),
            format!("{ACCOUNT}:{TOKEN}"),
        ],
    ];
    for run in runs {
        let base = app.base.clone();
        let schemathesis = schemathesis.clone();
        let output = tokio::task::spawn_blocking(move || {
            // From the repository root, so schemathesis.toml applies.
            Command::new(schemathesis)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .env("OTPD_SERVICE_SID", SERVICE)
                .args(["--no-color", "run"])
                .arg(format!("{base}/openapi.json"))
                .args(["--url", &base])
                .args(&run)
                .args([
                    "--checks",
                    "all",
                    "--max-examples",
                    "25",
                    "--request-timeout",
                    "5",
                ])
                .arg("--generation-deterministic")
                .output()
                .expect("schemathesis runs")
        })
        .await
        .expect("joined");
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "schemathesis found problems:\n{report}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary = report.lines().rev().take(12).collect::<Vec<_>>();
        eprintln!(
            "schemathesis: {}",
            summary.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}
