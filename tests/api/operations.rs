//! What operators rely on: request ids and health endpoints.

use crate::support::{json_of, settings, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_honoured_when_sane_and_generated_otherwise() {
    let app = TestApp::spawn(&settings(None)).await;
    let with_id = |id: &'static str| {
        app.http
            .get(app.url("/healthz"))
            .header("x-request-id", id)
            .send()
    };
    let kept = with_id("checkout-42.retry_1").await.expect("sent");
    assert_eq!(kept.headers()["x-request-id"], "checkout-42.retry_1");
    for forged in ["has spaces", "{\"json\":1}", "x"] {
        let id = if forged == "x" {
            "x".repeat(65).leak() as &str
        } else {
            forged
        };
        let response = app
            .http
            .get(app.url("/healthz"))
            .header("x-request-id", id)
            .send()
            .await
            .expect("sent");
        let replaced = response.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert_ne!(replaced, id);
        assert!(replaced.len() >= 16, "{replaced}");
    }
    let generated = app.public("/healthz").await;
    assert!(!generated.headers()["x-request-id"].is_empty());
    assert_eq!(json_of(generated).await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_the_store() {
    let app = TestApp::spawn(&settings(None)).await;
    let ready = app.public("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(json_of(ready).await["status"], "ready");
}
