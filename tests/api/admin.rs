//! The admin API and `otpd admin`: the relying party reads and lifts a
//! number's failure lockout (SEC-8) and its range's block (ABU-4) with an
//! admin key, which may do nothing else; API keys may not do this.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::{json_of, problem, wrong, RedisServer, TestApp, ADMIN_KEY, API_KEY};

async fn admin(app: &TestApp, key: &str, path: &str, body: Value) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/admin/v1/services/demo/numbers/{path}")))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("sent")
}

/// `otpd admin <args>` against `app`'s demo service, with `key`.
fn cli(app: &TestApp, key: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_otpd"))
        .args(["admin", "--url", &app.url(""), "--service", "demo"])
        .args(args)
        .env("OTPD_ADMIN_KEY", key)
        .output()
        .expect("otpd runs")
}

fn settings(redis: &RedisServer) -> otpd::config::Settings {
    let mut settings = crate::support::settings(Some(redis));
    let limits = &mut settings.services.get_mut("demo").expect("demo").limits;
    limits.failed_checks.max = 3;
    limits.failed_checks.free = 2;
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_reads_and_lifts_a_lockout_and_a_range_block() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&settings(&redis)).await;
    let to = json!({ "to": "090-1234-5678" });
    // Three wrong codes lock the number (max = 3).
    let id = app.started("090-1234-5678").await;
    let code = app.code_for(&id).await;
    for _ in 0..3 {
        assert_eq!(app.check(&id, &wrong(&code)).await.status(), 200);
    }
    problem(app.check(&id, &code).await, 429, "rate-limited").await;

    // Keys keep to their side.
    problem(
        admin(&app, API_KEY, "state", to.clone()).await,
        403,
        "admin-key-required",
    )
    .await;
    let start = app
        .http
        .post(app.url("/v1/services/demo/verifications"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "to": "090-1234-5678", "channel": "sms" }))
        .send()
        .await
        .expect("sent");
    problem(start, 403, "admin-key").await;
    let other = app
        .http
        .post(app.url("/admin/v1/services/other/numbers/state"))
        .bearer_auth(ADMIN_KEY)
        .json(&to)
        .send()
        .await
        .expect("sent");
    problem(other, 403, "service-forbidden").await;

    let state = json_of(admin(&app, ADMIN_KEY, "state", to.clone()).await).await;
    assert_eq!(state["masked_to"], "+81 90-****-5678");
    assert_eq!(
        (
            state["lockout"]["failures"].clone(),
            state["lockout"]["locked"].clone()
        ),
        (json!(3), json!(true)),
        "{state}"
    );
    assert_eq!(state["blocks"], json!([]));
    let lifted = admin(
        &app,
        ADMIN_KEY,
        "lift",
        json!({ "to": "090-1234-5678", "blocks": false }),
    );
    assert_eq!(json_of(lifted.await).await["lockout"]["failures"], 3);
    assert_eq!(json_of(app.check(&id, &code).await).await["valid"], true);
    let state = json_of(admin(&app, ADMIN_KEY, "state", to).await).await;
    assert_eq!(state["lockout"], Value::Null);

    // 20 sends block the range (ABU-4); the CLI lifts it.
    for n in 0..20 {
        assert_eq!(app.start(&format!("+81905555{n:04}")).await.status(), 201);
    }
    let refused = problem(app.start("+819055559999").await, 429, "rate-limited").await;
    assert_eq!(refused["scope"], "range");
    let state =
        json_of(admin(&app, ADMIN_KEY, "state", json!({ "to": "+819055559999" })).await).await;
    assert_eq!(state["blocks"][0]["scope"], "range", "{state}");

    let printed = cli(&app, ADMIN_KEY, &["lift", "--to", "+819055559999"]);
    let said = String::from_utf8_lossy(&printed.stdout);
    assert!(
        printed.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&printed.stderr)
    );
    assert!(said.contains("\"scope\": \"range\""), "{said}");
    assert_eq!(app.start("+819055559999").await.status(), 201);
    let read = cli(&app, API_KEY, &["state", "--to", "+819055559999"]);
    assert!(!read.status.success(), "an API key is refused");
}

/// The safe list: a range the relying party vouches for passes the range
/// limit and the conversion rule, never the attempt limits; taken off
/// (here with the CLI), both apply again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_range_skips_the_destination_rules_but_not_the_attempt_limits() {
    let redis = RedisServer::start();
    let mut settings = settings(&redis);
    let limits = &mut settings.services.get_mut("demo").expect("demo").limits;
    limits.conversion.range_min_sends = 10;
    let app = TestApp::spawn(&settings).await;
    let listed = admin(
        &app,
        ADMIN_KEY,
        "safe-list",
        json!({ "to": "+819077770000", "range": true, "days": 7 }),
    )
    .await;
    assert_eq!(
        json_of(listed).await["safe"],
        json!({ "number": false, "range": false })
    );
    // 30 codes nobody enters, past the range limit (20) and the range's
    // conversion rule (10).
    for n in 0..30 {
        assert_eq!(
            app.start(&format!("+81907777{n:04}")).await.status(),
            201,
            "{n}"
        );
    }
    let state =
        json_of(admin(&app, ADMIN_KEY, "state", json!({ "to": "+819077770001" })).await).await;
    assert_eq!(state["safe"], json!({ "number": false, "range": true }));
    // The attempt limits still hold: three wrong codes lock the number.
    let id = app.started("+819077779999").await;
    let code = app.code_for(&id).await;
    for _ in 0..3 {
        assert_eq!(app.check(&id, &wrong(&code)).await.status(), 200);
    }
    problem(app.check(&id, &code).await, 429, "rate-limited").await;

    let off = cli(
        &app,
        ADMIN_KEY,
        &["unsafe", "--range", "--to", "+819077770000"],
    );
    assert!(
        off.status.success(),
        "{}",
        String::from_utf8_lossy(&off.stderr)
    );
    // Counted afresh: ten more unentered codes, then the conversion block.
    for n in 100..110 {
        assert_eq!(
            app.start(&format!("+81907777{n:04}")).await.status(),
            201,
            "{n}"
        );
    }
    let refused = problem(app.start("+819077770200").await, 429, "rate-limited").await;
    assert_eq!(refused["scope"], "conversion");
    problem(
        admin(
            &app,
            ADMIN_KEY,
            "safe-list",
            json!({ "to": "+819077770000", "days": 0 }),
        )
        .await,
        400,
        "invalid-days",
    )
    .await;
}
