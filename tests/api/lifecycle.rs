//! The verification lifecycle over HTTP, on the in-process store and on
//! Redis alike.

use std::time::Duration;

use serde_json::json;

use crate::on_every_store;
use crate::support::{json_of, problem, wrong, TestApp, PHONE};

on_every_store!(
    a_right_code_is_approved_once_and_a_replay_conflicts,
    national_numbers_are_read_with_the_default_region,
    a_code_expires_with_its_ttl,
    wrong_codes_use_up_the_attempts,
    a_resend_replaces_the_code_and_keeps_the_attempt_count,
    resends_wait_for_the_cooldown_and_stop_at_max_sends,
    a_repeated_start_resends_the_pending_verification,
    a_canceled_verification_takes_no_more_actions,
    a_binding_must_match_at_check,
    a_start_with_another_binding_replaces_the_pending_one,
    a_number_can_be_checked_without_the_id,
    a_failed_send_leaves_a_verification_that_can_still_complete,
    services_do_not_see_each_others_verifications,
);

/// SEC-4: single use; a replay after approval is a conflict.
async fn a_right_code_is_approved_once_and_a_replay_conflicts(app: &TestApp) {
    let response = app.start(PHONE).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let started = json_of(response).await;
    let id = started["id"].as_str().expect("id");
    assert_eq!(location, format!("/v1/services/demo/verifications/{id}"));
    assert_eq!(started["to"], "+81 90-****-5678");
    assert_eq!(started["status"], "pending");
    assert_eq!(
        (started["sends"].as_u64(), started["attempts_left"].as_u64()),
        (Some(1), Some(5))
    );
    assert_eq!(started["channel"], "sms");
    assert_eq!(started["service"], "demo");
    for field in ["created_at", "expires_at", "resend_after"] {
        assert!(
            started[field].as_str().expect(field).ends_with('Z'),
            "{field}: RFC 3339 UTC"
        );
    }

    let code = app.sent_code(PHONE).await;
    let checked = app.check(id, &code).await;
    assert_eq!(checked.status(), 200);
    let checked = json_of(checked).await;
    assert_eq!(
        (checked["valid"].as_bool(), checked["status"].as_str()),
        (Some(true), Some("approved"))
    );

    problem(app.check(id, &code).await, 409, "verification-approved").await;
    let status = json_of(app.status(id).await).await;
    assert_eq!(status["status"], "approved");
}

async fn national_numbers_are_read_with_the_default_region(app: &TestApp) {
    let id = app.started("090-1234-5678").await;
    let code = app.sent_code(PHONE).await;
    assert_eq!(json_of(app.check(&id, &code).await).await["valid"], true);
}

/// SEC-3: valid until its expiry, then gone.
async fn a_code_expires_with_its_ttl(app: &TestApp) {
    let id = app.started(PHONE).await;
    let code = app.sent_code(PHONE).await;
    app.clock.advance(Duration::from_secs(300));
    problem(app.check(&id, &code).await, 404, "verification-not-found").await;
    problem(app.status(&id).await, 404, "verification-not-found").await;
}

/// SEC-7: five wrong codes fail the verification; the right one is then refused.
async fn wrong_codes_use_up_the_attempts(app: &TestApp) {
    let id = app.started(PHONE).await;
    let code = app.sent_code(PHONE).await;
    for left in (0..5).rev() {
        let checked = json_of(app.check(&id, &wrong(&code)).await).await;
        assert_eq!(checked["valid"], false);
        assert_eq!(checked["attempts_left"], left);
        assert_eq!(
            checked["status"],
            if left == 0 { "failed" } else { "pending" }
        );
    }
    problem(app.check(&id, &code).await, 409, "verification-failed").await;
}

/// SEC-6: a resend invalidates the old code and never resets the attempts.
async fn a_resend_replaces_the_code_and_keeps_the_attempt_count(app: &TestApp) {
    let id = app.started(PHONE).await;
    let old = app.sent_code(PHONE).await;
    assert_eq!(
        json_of(app.check(&id, &wrong(&old)).await).await["attempts_left"],
        4
    );
    app.clock.advance(Duration::from_secs(30));
    let resent = app.resend(&id).await;
    assert_eq!(resent.status(), 200);
    let resent = json_of(resent).await;
    assert_eq!(
        (resent["sends"].as_u64(), resent["attempts_left"].as_u64()),
        (Some(2), Some(4))
    );
    assert_eq!(app.sent_to(PHONE).await.len(), 2);
    let new = app.sent_code(PHONE).await;
    if new != old {
        let stale = json_of(app.check(&id, &old).await).await;
        assert_eq!(
            (stale["valid"].as_bool(), stale["attempts_left"].as_u64()),
            (Some(false), Some(3))
        );
    }
    assert_eq!(json_of(app.check(&id, &new).await).await["valid"], true);
}

/// The cooldown doubles with every send (30 s, 60 s, 120 s, 240 s) and
/// `Retry-After` is honest: a resend at that time goes through.
async fn resends_wait_for_the_cooldown_and_stop_at_max_sends(app: &TestApp) {
    let id = app.started(PHONE).await;
    let early = problem(app.resend(&id).await, 429, "resend-too-soon").await;
    assert!(
        early["detail"].as_str().expect("detail").contains("30 s"),
        "{early}"
    );
    for (sends, cooldown) in [(2, 30), (3, 60), (4, 120), (5, 240)] {
        app.clock.advance(Duration::from_secs(cooldown - 1));
        let response = app.resend(&id).await;
        assert_eq!(response.headers()["retry-after"], "1", "send {sends}");
        problem(response, 429, "resend-too-soon").await;
        app.clock.advance(Duration::from_secs(1));
        let resent = json_of(app.resend(&id).await).await;
        assert_eq!(resent["sends"], sends);
    }
    let response = app.resend(&id).await;
    assert_eq!(
        response.headers()["retry-after"],
        "300",
        "until the last code expires"
    );
    problem(response, 429, "max-sends-reached").await;
    assert_eq!(app.sent_to(PHONE).await.len(), 5);
}

async fn a_repeated_start_resends_the_pending_verification(app: &TestApp) {
    let id = app.started(PHONE).await;
    problem(app.start(PHONE).await, 429, "resend-too-soon").await;
    app.clock.advance(Duration::from_secs(30));
    let again = app.start(PHONE).await;
    assert_eq!(again.status(), 200);
    assert!(again.headers().get("location").is_none());
    let again = json_of(again).await;
    assert_eq!(
        (again["id"].as_str(), again["sends"].as_u64()),
        (Some(id.as_str()), Some(2))
    );
    let code = app.sent_code(PHONE).await;
    assert_eq!(json_of(app.check(&id, &code).await).await["valid"], true);
}

async fn a_canceled_verification_takes_no_more_actions(app: &TestApp) {
    let id = app.started(PHONE).await;
    let code = app.sent_code(PHONE).await;
    let canceled = app.cancel(&id).await;
    assert_eq!(canceled.status(), 200);
    assert_eq!(json_of(canceled).await["status"], "canceled");
    app.clock.advance(Duration::from_secs(30));
    problem(app.check(&id, &code).await, 409, "verification-canceled").await;
    problem(app.resend(&id).await, 409, "verification-canceled").await;
    problem(app.cancel(&id).await, 409, "verification-canceled").await;
    assert_eq!(json_of(app.status(&id).await).await["status"], "canceled");
    // A new start for the number is a new verification.
    assert_ne!(app.started(PHONE).await, id);
}

/// SEC-5: the right code with a wrong or missing binding is a wrong code.
async fn a_binding_must_match_at_check(app: &TestApp) {
    let start = json!({ "to": PHONE, "channel": "sms", "binding": "session-a" });
    let started = json_of(app.post("/v1/services/demo/verifications", start).await).await;
    let id = started["id"].as_str().expect("id");
    let code = app.sent_code(PHONE).await;
    let path = format!("/v1/services/demo/verifications/{id}/check");
    for binding in [json!(null), json!("session-b")] {
        let body = if binding.is_null() {
            json!({ "code": code })
        } else {
            json!({ "code": code, "binding": binding })
        };
        let checked = json_of(app.post(&path, body).await).await;
        assert_eq!(checked["valid"], false, "binding {binding}");
    }
    let checked = json_of(
        app.post(&path, json!({ "code": code, "binding": "session-a" }))
            .await,
    )
    .await;
    assert_eq!(
        (
            checked["valid"].as_bool(),
            checked["attempts_left"].as_u64()
        ),
        (Some(true), Some(3))
    );
}

/// Nobody can pin a victim's number to their own session: a start with
/// another binding cancels the pending verification.
async fn a_start_with_another_binding_replaces_the_pending_one(app: &TestApp) {
    let first = app.post(
        "/v1/services/demo/verifications",
        json!({ "to": PHONE, "channel": "sms", "binding": "attacker" }),
    );
    let first = json_of(first.await).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let second = app
        .post(
            "/v1/services/demo/verifications",
            json!({ "to": PHONE, "channel": "sms", "binding": "victim" }),
        )
        .await;
    assert_eq!(second.status(), 201);
    let second = json_of(second).await["id"].as_str().expect("id").to_owned();
    assert_ne!(first, second);
    assert_eq!(
        json_of(app.status(&first).await).await["status"],
        "canceled"
    );
    let code = app.code_for(&second).await;
    let path = format!("/v1/services/demo/verifications/{second}/check");
    assert_eq!(
        json_of(
            app.post(&path, json!({ "code": code, "binding": "victim" }))
                .await
        )
        .await["valid"],
        true
    );
}

async fn a_number_can_be_checked_without_the_id(app: &TestApp) {
    let id = app.started(PHONE).await;
    let code = app.sent_code(PHONE).await;
    let wrong_check = app
        .post(
            "/v1/services/demo/checks",
            json!({ "to": "090-1234-5678", "code": wrong(&code) }),
        )
        .await;
    assert_eq!(json_of(wrong_check).await["attempts_left"], 4);
    let checked = json_of(
        app.post(
            "/v1/services/demo/checks",
            json!({ "to": PHONE, "code": code }),
        )
        .await,
    )
    .await;
    assert_eq!(
        (checked["id"].as_str(), checked["valid"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    let by_number = |to: &'static str, code: String| async move {
        let answer = app
            .post(
                "/v1/services/demo/checks",
                json!({ "to": to, "code": code }),
            )
            .await;
        problem(answer, 404, "verification-not-found").await
    };
    // SEC-19 in spirit: by number, a finished verification (approved, canceled,
    // failed) answers exactly as no verification does, so the API tells
    // nobody which numbers verified, gave up or were attacked.
    let unknown = by_number("+819087654321", code.clone()).await;
    assert_eq!(by_number(PHONE, code.clone()).await, unknown, "approved");
    let canceled = app.started("+819011110001").await;
    app.cancel(&canceled).await;
    assert_eq!(
        by_number("+819011110001", code.clone()).await,
        unknown,
        "canceled"
    );
    let failed = app.started("+819011110002").await;
    let failed_code = app.code_for(&failed).await;
    for _ in 0..5 {
        app.check(&failed, &wrong(&failed_code)).await;
    }
    assert_eq!(
        by_number("+819011110002", failed_code).await,
        unknown,
        "failed"
    );
}

/// Sends go out after the answer; a send that fails on every attempt shows
/// as `failed` and is taken back, so the user may ask again at once.
async fn a_failed_send_leaves_a_verification_that_can_still_complete(app: &TestApp) {
    app.carrier.fail_next(3);
    let started = app.start(PHONE).await;
    assert_eq!(
        started.status(),
        201,
        "queued: the answer does not wait for the carrier"
    );
    let started = json_of(started).await;
    assert_eq!(started["delivery"]["status"], "queued");
    let id = started["id"].as_str().expect("id").to_owned();
    assert_eq!(app.sent_count().await, 0);
    let failed = json_of(app.status(&id).await).await;
    assert_eq!(
        (
            failed["delivery"]["status"].as_str(),
            failed["sends"].as_u64()
        ),
        (Some("failed"), Some(0))
    );
    // No cooldown after a failed send: the retry goes out at once.
    let retried = app.start(PHONE).await;
    assert_eq!(retried.status(), 200);
    assert_eq!(json_of(retried).await["sends"], 1);
    let code = app.sent_code(PHONE).await;
    let sent = json_of(app.status(&id).await).await;
    assert_eq!(
        (
            sent["delivery"]["status"].as_str(),
            sent["delivery"]["carrier"].as_str()
        ),
        (Some("sent"), Some("recording"))
    );
    assert!(sent["delivery"]["message_id"]
        .as_str()
        .is_some_and(|m| m.starts_with("recorded-")));
    assert_eq!(json_of(app.check(&id, &code).await).await["valid"], true);
}

async fn services_do_not_see_each_others_verifications(app: &TestApp) {
    let id = app.started(PHONE).await;
    let code = app.sent_code(PHONE).await;
    let other = format!("/v1/services/other/verifications/{id}");
    problem(app.get(&other).await, 404, "verification-not-found").await;
    problem(
        app.post(&format!("{other}/check"), json!({ "code": code }))
            .await,
        404,
        "verification-not-found",
    )
    .await;
    let other_start = app
        .post(
            "/v1/services/other/verifications",
            json!({ "to": PHONE, "channel": "sms" }),
        )
        .await;
    assert_eq!(
        other_start.status(),
        201,
        "the other service's start is its own verification"
    );
    assert_eq!(json_of(app.status(&id).await).await["status"], "pending");
}
