//! The OpenAPI document: generated from the code, served at /openapi.json,
//! committed as openapi.json; the three must be the same.

use crate::support::{settings, TestApp};

const STALE: &str = "openapi.json is stale: run `cargo run -- openapi > openapi.json`";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_and_committed_documents_are_the_generated_one() {
    let generated = otpd::http::openapi_document();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let committed = std::fs::read_to_string(path).expect("openapi.json");
    assert!(committed == generated, "{STALE}");
    let app = TestApp::spawn(&settings(None)).await;
    let served = app.public("/openapi.json").await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.text().await.expect("text"), generated);
    let document: serde_json::Value = serde_json::from_str(&generated).expect("JSON");
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        document["openapi"]
    );
}
