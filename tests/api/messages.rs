//! What the SMS says: the locale chosen, and the autofill lines as exact
//! strings (AUTO-1, AUTO-4, SMS-5).

use serde_json::json;

use crate::support::{problem, settings, TestApp, API_KEY, PHONE};

async fn body_sent(
    app: &TestApp,
    start: serde_json::Value,
    accept_language: Option<&str>,
) -> String {
    let mut request = app
        .http
        .post(app.url("/v1/services/demo/verifications"))
        .bearer_auth(API_KEY)
        .json(&start);
    if let Some(languages) = accept_language {
        request = request.header("accept-language", languages);
    }
    let to = start["to"].as_str().expect("to").to_owned();
    assert_eq!(request.send().await.expect("sent").status(), 201);
    app.sent_to(&to).await.pop().expect("an SMS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_locale_comes_from_the_body_then_accept_language_then_the_service() {
    let app = TestApp::spawn(&settings(None)).await;
    let cases = [
        (Some("en"), Some("ja"), "Your Demo code is"),
        (None, Some("en-US,ja;q=0.5"), "Your Demo code is"),
        (None, Some("fr-FR, en;q=0.1"), "Your Demo code is"),
        (None, Some("en;q=0, fr"), "【Demo】認証コード"),
        (None, None, "【Demo】認証コード"),
        (Some("fr"), None, "【Demo】認証コード"),
    ];
    for (n, (locale, header, opening)) in cases.into_iter().enumerate() {
        let to = format!("+8190{:04}0000", 1000 + n);
        let mut start = json!({ "to": to, "channel": "sms" });
        if let Some(locale) = locale {
            start["locale"] = json!(locale);
        }
        let body = body_sent(&app, start, header).await;
        assert!(body.starts_with(opening), "{locale:?} {header:?}: {body}");
    }
}

/// AUTO-1 and AUTO-4, exact strings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autofill_lines_end_the_message_in_a_fixed_format() {
    let mut settings = settings(None);
    settings.services.get_mut("demo").expect("demo").origin = Some("example.com".into());
    let app = TestApp::spawn(&settings).await;
    let body = body_sent(
        &app,
        json!({ "to": PHONE, "channel": "sms", "locale": "en" }),
        None,
    )
    .await;
    let code = crate::support::code_in(&body);
    assert_eq!(body, format!("Your Demo code is {code}. It expires in 5 minutes. Never share it.\n@example.com #{code}"));
    let start = json!({ "to": "+819011112222", "channel": "sms", "locale": "en", "app_hash": "FA+9qCX9VSu" });
    let body = body_sent(&app, start, None).await;
    let code = crate::support::code_in(&body);
    assert_eq!(
        body,
        format!("Your Demo code is {code}. It expires in 5 minutes. Never share it.\nFA+9qCX9VSu\n@example.com #{code}")
    );
}

/// SMS-5: a body that would not fit the service's segments is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_whose_message_would_not_fit_is_refused() {
    let mut settings = settings(None);
    settings.services.get_mut("demo").expect("demo").origin = Some("ex.jp".into());
    let app = TestApp::spawn(&settings).await;
    let start = json!({ "to": PHONE, "channel": "sms", "locale": "ja", "app_hash": "FA+9qCX9VSu" });
    let response = app.post("/v1/services/demo/verifications", start).await;
    problem(response, 422, "message-too-long").await;
    assert_eq!(app.sent_count().await, 0);
}
