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

/// OpenAPI 3.1 §4.8.10: an operationId is unique among the document's
/// operations (the `/v1` and `/v2` surfaces both have a check; tools that
/// follow links by id, schemathesis among them, mixed the two up).
#[test]
fn every_operation_id_is_unique() {
    let document: serde_json::Value =
        serde_json::from_str(&otpd::http::openapi_document()).expect("JSON");
    let mut seen = std::collections::BTreeMap::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            let id = operation["operationId"].as_str().expect("an operationId");
            if let Some(first) = seen.insert(id.to_owned(), format!("{method} {path}")) {
                panic!("operationId {id} names both {first} and {method} {path}");
            }
        }
    }
}
