//! TLS on the API listeners (REQUIREMENTS.md SEC-20), with clients otpd did
//! not write: curl for HTTP, Python grpcio for gRPC, `openssl s_client` to
//! see which certificate is served; certificates from a CA the test makes.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use otpd::config::Settings;

use crate::grpc::{python, stubs};
use crate::support::{settings, until, TestApp, API_KEY};
use crate::topology::TestCa;

fn with_tls(ca: &TestCa, common_name: &str) -> Settings {
    let mut settings = settings(None);
    let (cert, key) = ca.issue("otpd", common_name);
    settings.tls.cert_file = cert;
    settings.tls.key_file = key;
    settings
}

fn port(app: &TestApp) -> u16 {
    app.base
        .rsplit(':')
        .next()
        .expect("port")
        .parse()
        .expect("a port")
}

/// `curl` against `path` of the app's HTTP listener over TLS, trusting
/// `ca`; its HTTP status, or None if no HTTP answer came.
fn curl_status(app: &TestApp, ca: &TestCa, path: &str, extra: &[&str]) -> Option<u16> {
    let url = format!("https://localhost:{}{path}", port(app));
    let output = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg("--cacert")
        .arg(ca.ca_file())
        .args(extra)
        .arg(&url)
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&output.stdout)
        .parse()
        .ok()
        .filter(|status| *status != 0)
}

/// A gRPC StartVerification over TLS with Python grpcio; what it printed.
fn grpc_start(app: &TestApp, ca: &TestCa, client: Option<(&str, &str)>) -> Output {
    let stubs = stubs();
    let address = format!("localhost:{}", app.grpc_addr.expect("gRPC").port());
    let (key, cert) = client.unwrap_or(("", ""));
    let script = r#"
import sys, grpc
from otp.v1 import otp_pb2, otp_pb2_grpc
address, ca, key, cert, api_key = sys.argv[1:6]
read = lambda path: open(path, "rb").read() if path else None
credentials = grpc.ssl_channel_credentials(read(ca), read(key), read(cert))
stub = otp_pb2_grpc.VerificationServiceStub(grpc.secure_channel(address, credentials))
started = stub.StartVerification(
    otp_pb2.StartVerificationRequest(service="demo", to="090-1111-2222", channel="sms"),
    metadata=[("authorization", f"Bearer {api_key}")], timeout=10)
print(otp_pb2.Status.Name(started.verification.status))
"#;
    Command::new(python())
        .args(["-c", script, &address])
        .arg(ca.ca_file())
        .args([key, cert, API_KEY])
        .env("PYTHONPATH", stubs.path())
        .output()
        .expect("python runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_grpc_speak_tls_and_refuse_plaintext() {
    let ca = TestCa::new();
    let app = TestApp::spawn(&with_tls(&ca, "otpd-a")).await;
    assert_eq!(curl_status(&app, &ca, "/healthz", &[]), Some(200));
    let start = [
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-H",
        &format!("authorization: Bearer {API_KEY}"),
        "-d",
        r#"{"to": "090-1234-5678", "channel": "sms"}"#,
    ];
    assert_eq!(
        curl_status(&app, &ca, "/v1/services/demo/verifications", &start),
        Some(201)
    );
    let plaintext = app.http.get(format!("{}/healthz", app.base)).send().await;
    assert!(
        plaintext.is_err(),
        "plaintext HTTP is answered: {plaintext:?}"
    );

    let started = grpc_start(&app, &ca, None);
    let printed = String::from_utf8_lossy(&started.stdout);
    assert!(started.status.success(), "{started:?}");
    assert_eq!(printed.trim(), "STATUS_PENDING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_its_clients_get_in() {
    let ca = TestCa::new();
    let mut settings = with_tls(&ca, "otpd-a");
    settings.tls.client_ca_file = ca.ca_file();
    let app = TestApp::spawn(&settings).await;
    let (backend_cert, backend_key) = ca.issue("backend", "backend");
    let stranger_ca = TestCa::new();
    let (stranger_cert, stranger_key) = stranger_ca.issue("stranger", "stranger");
    let with = |cert: &std::path::Path, key: &std::path::Path| {
        [
            "--cert".to_owned(),
            cert.display().to_string(),
            "--key".to_owned(),
            key.display().to_string(),
        ]
    };
    let backend = with(&backend_cert, &backend_key);
    let stranger = with(&stranger_cert, &stranger_key);
    let backend: Vec<&str> = backend.iter().map(String::as_str).collect();
    let stranger: Vec<&str> = stranger.iter().map(String::as_str).collect();
    assert_eq!(curl_status(&app, &ca, "/healthz", &backend), Some(200));
    assert_eq!(
        curl_status(&app, &ca, "/healthz", &[]),
        None,
        "no certificate"
    );
    assert_eq!(
        curl_status(&app, &ca, "/healthz", &stranger),
        None,
        "another CA's"
    );

    let key = backend_key.display().to_string();
    let cert = backend_cert.display().to_string();
    assert!(grpc_start(&app, &ca, Some((&key, &cert))).status.success());
    assert!(
        !grpc_start(&app, &ca, None).status.success(),
        "gRPC without a certificate"
    );
}

/// The subject of the certificate the HTTP listener serves now.
fn served_subject(app: &TestApp) -> String {
    let output = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{}", port(app))])
        .args(["-servername", "localhost"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    let printed = String::from_utf8_lossy(&output.stdout);
    printed
        .lines()
        .find(|line| line.starts_with("subject="))
        .unwrap_or_default()
        .to_owned()
}

async fn serves(app: &TestApp, common_name: &'static str) {
    until(common_name, Duration::from_secs(20), async || {
        served_subject(app).contains(common_name)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let ca: Arc<TestCa> = TestCa::new();
    // Files looked at every 100 ms: a change is picked up alone.
    let mut watched = with_tls(&ca, "otpd-a");
    watched.tls.reload_every = Duration::from_millis(100);
    let app = TestApp::spawn(&watched).await;
    serves(&app, "otpd-a").await;
    ca.issue("otpd", "otpd-b");
    serves(&app, "otpd-b").await;

    // Files looked at hourly: SIGHUP reloads them.
    let other_ca = TestCa::new();
    let mut hourly = with_tls(&other_ca, "otpd-c");
    hourly.tls.reload_every = Duration::from_secs(3600);
    let hourly_app = TestApp::spawn(&hourly).await;
    serves(&hourly_app, "otpd-c").await;
    other_ca.issue("otpd", "otpd-d");
    let hangup = Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(hangup.success());
    serves(&hourly_app, "otpd-d").await;
}
