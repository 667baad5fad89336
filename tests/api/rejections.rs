//! Refused requests are seen: 401, 403 and 429 from any layer (the key
//! check and flood shedding run before routing ends) carry a request id,
//! are counted in `otpd_http_requests_total` by route, and are logged at
//! most `REJECTIONS_LOGGED_PER_SECOND` lines a second (OBS-1); 401s count
//! per API key id they claim, for the alert on a surge (ASVS V2.2.1).

use std::time::Instant;

use serde_json::json;

use crate::support::{
    assert_has_lines, problem, settings, CapturedLogs, TestApp, API_KEY, DEMO_ONLY_KEY, PHONE,
};

const START: &str = "/v1/services/{service}/verifications";

#[tokio::test]
async fn rejections_carry_a_request_id_and_are_counted_by_route() {
    let mut settings = settings(None);
    settings.http.flood_per_second = 1;
    settings.http.flood_burst = 3;
    // Scrapes on a listener of their own, which sheds no floods.
    settings.http.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
    let app = TestApp::spawn(&settings).await;
    let body = json!({ "to": PHONE, "channel": "sms" });
    let url = app.url("/v1/services/demo/verifications");
    problem(
        app.http.post(&url).json(&body).send().await.expect("sent"),
        401,
        "unauthorized",
    )
    .await;
    let other = app.url("/v1/services/other/verifications");
    let forbidden = app.http.post(&other).bearer_auth(DEMO_ONLY_KEY).json(&body);
    problem(
        forbidden.send().await.expect("sent"),
        403,
        "service-forbidden",
    )
    .await;
    let status = app.url("/v1/services/demo/verifications/AAAAAAAAAAAAAAAAAAAAAAAA");
    let mut shed = 0;
    for _ in 0..4 {
        let answer = app
            .http
            .get(&status)
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("sent");
        if answer.status() == 429 {
            problem(answer, 429, "rate-limited").await;
            shed += 1;
        }
    }
    assert!(shed >= 1, "the flood is shed");
    assert_has_lines(
        &app.metrics().await,
        [
            format!(r#"otpd_http_requests_total{{route="{START}",status="401"}} 1"#),
            format!(r#"otpd_http_requests_total{{route="{START}",status="403"}} 1"#),
            format!(r#"otpd_http_requests_total{{route="{START}/{{id}}",status="429"}} {shed}"#),
        ],
    );
}

#[tokio::test]
async fn unauthorized_calls_count_per_api_key_id_they_claim() {
    let app = TestApp::spawn(&settings(None)).await;
    let url = app.url("/v1/services/demo/verifications/AAAAAAAAAAAAAAAAAAAAAAAA");
    // `all` is a configured key id; its keys look like otpd_all_<secret>.
    for presented in ["otpd_all_not-the-secret", "otpd_all_guess", "nonsense"] {
        let answer = app
            .http
            .get(&url)
            .bearer_auth(presented)
            .send()
            .await
            .expect("sent");
        problem(answer, 401, "unauthorized").await;
    }
    assert_has_lines(
        &app.metrics().await,
        [
            r#"otpd_http_unauthorized_total{api_key="all"} 2"#,
            r#"otpd_http_unauthorized_total{api_key="unknown"} 1"#,
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_stuffing_run_is_logged_without_flooding_the_log() {
    let logs = CapturedLogs::install();
    let app = TestApp::spawn(&settings(None)).await;
    let url = app.url("/v1/services/demo/verifications/AAAAAAAAAAAAAAAAAAAAAAAA");
    let started = Instant::now();
    for attempt in 0..300 {
        let answer = app
            .http
            .get(&url)
            .bearer_auth(format!("otpd_guess_{attempt}"))
            .send()
            .await
            .expect("sent");
        assert_eq!(answer.status(), 401);
    }
    let seconds = started.elapsed().as_secs() + 1;
    let text = logs.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("request rejected"))
        .collect();
    let allowed = otpd::http::REJECTIONS_LOGGED_PER_SECOND as u64 * (seconds + 1);
    assert!(!lines.is_empty(), "rejections are logged");
    assert!(
        (lines.len() as u64) <= allowed,
        "{} lines for 300 rejections in {seconds} s",
        lines.len()
    );
    assert!(
        lines[0].contains("\"status\":401") && lines[0].contains("request_id"),
        "{}",
        lines[0]
    );
    assert!(
        lines.iter().any(|line| line.contains("\"left_out\":")),
        "the lines say how many were left out"
    );
    assert!(!text.contains("otpd_guess_"), "no presented key is logged");
}
