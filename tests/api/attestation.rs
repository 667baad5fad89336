//! ABU-8: a service may require an attestation before an SMS is paid for.
//! Each provider is asked through its siteverify API, here a local server
//! that answers as the providers document (`fake_siteverify`). A missing
//! or refused token gets 403 and sends nothing; a provider that does not
//! answer gets 503 and sends nothing (fail closed); monitor mode reports
//! and sends.

use std::time::Duration;

use otpd::attestation::{AttestationSettings, ProviderSettings};
use otpd::config::{SecretValue, Settings};
use serde_json::{json, Value};

use crate::fake_siteverify::{FakeSiteverify, Solved, API_KEY, PROJECT, SECRET};
use crate::support::{assert_has_lines, problem, RedisServer, TestApp};

fn provider(url: String) -> ProviderSettings {
    ProviderSettings {
        secret: SecretValue(SECRET.into()),
        url: Some(url),
        hostnames: vec!["login.example.com".into()],
        action: Some("login".into()),
        min_score: None,
        project: None,
        site_key: None,
    }
}

/// The demo service with `attestation`; the backend's key may assert the
/// end user, whose address goes to the provider as `remoteip`.
fn settings(redis: &RedisServer, attestation: AttestationSettings) -> Settings {
    let mut settings = crate::support::settings(Some(redis));
    settings.services.get_mut("demo").expect("demo").attestation = attestation;
    for key in &mut settings.api_keys {
        key.assert_end_user = true;
    }
    settings
}

fn turnstile(base: &str) -> AttestationSettings {
    AttestationSettings {
        required: true,
        turnstile: Some(provider(format!("{base}/turnstile/v0/siteverify"))),
        ..AttestationSettings::default()
    }
}

async fn start(app: &TestApp, attestation: Option<Value>) -> reqwest::Response {
    let mut body = json!({ "to": "090-1234-5678", "channel": "sms",
                           "end_user": { "client_ip": "203.0.113.9" } });
    if let Some(attestation) = attestation {
        body["attestation"] = attestation;
    }
    app.post("/v1/services/demo/verifications", body).await
}

/// A start with this token gets 403 `attestation-failed`, saying `why`.
async fn refused(app: &TestApp, provider: &str, sent: &str, why: &str) {
    let refused = problem(
        start(app, token(provider, sent)).await,
        403,
        "attestation-failed",
    )
    .await;
    let detail = refused["detail"].as_str().expect("detail");
    assert!(detail.contains(why), "{sent}: {refused}");
}

fn token(provider: &str, token: &str) -> Option<Value> {
    Some(json!({ "provider": provider, "token": token }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turnstile_gates_every_sms_and_each_token_buys_one() {
    let (redis, fake) = (RedisServer::start(), FakeSiteverify::default());
    let base = fake.start();
    let app = TestApp::spawn(&settings(&redis, turnstile(&base))).await;
    fake.issue("good", Solved::default());
    fake.issue(
        "expired",
        Solved {
            expired: true,
            ..Solved::default()
        },
    );
    fake.issue(
        "elsewhere",
        Solved {
            hostname: "evil.example",
            ..Solved::default()
        },
    );
    fake.issue(
        "signup",
        Solved {
            action: "signup",
            ..Solved::default()
        },
    );
    let keys = redis.keys();

    let missing = problem(start(&app, None).await, 403, "attestation-required").await;
    assert!(missing["detail"]
        .as_str()
        .expect("detail")
        .contains("requires an attestation"));
    assert!(fake.asked().is_empty(), "nothing to ask");
    for (sent, why) in [
        ("forged", "refused by its provider"),
        ("expired", "expired"),
        ("elsewhere", "another site"),
        ("signup", "another action"),
    ] {
        refused(&app, "turnstile", sent, why).await;
    }
    redis.assert_no_new_keys(&keys, "refused attestations");
    assert_eq!(app.sent_count().await, 0);

    assert_eq!(start(&app, token("turnstile", "good")).await.status(), 201);
    app.delivered_to("+819012345678", 1).await;
    let asked = fake.asked();
    let last = asked.last().expect("asked");
    assert_eq!(
        (last.token.as_str(), last.remote_ip.as_deref()),
        ("good", Some("203.0.113.9"))
    );
    // A token buys one start: the replay is the provider's duplicate.
    app.clock.advance(Duration::from_secs(30));
    problem(
        start(&app, token("turnstile", "good")).await,
        403,
        "attestation-failed",
    )
    .await;

    assert_has_lines(
        &app.metrics().await,
        [
            r#"otpd_attestations_total{mode="enforce",outcome="passed",provider="turnstile",service="demo"} 1"#,
            r#"otpd_attestations_total{mode="enforce",outcome="missing",provider="none",service="demo"} 1"#,
            r#"otpd_attestations_total{mode="enforce",outcome="invalid",provider="turnstile",service="demo"} 1"#,
            r#"otpd_attestations_total{mode="enforce",outcome="expired",provider="turnstile",service="demo"} 2"#,
            r#"otpd_attestations_total{mode="enforce",outcome="hostname",provider="turnstile",service="demo"} 1"#,
            r#"otpd_attestations_total{mode="enforce",outcome="action",provider="turnstile",service="demo"} 1"#,
            r#"otpd_attestations_total{mode="enforce",outcome="unavailable",provider="turnstile",service="demo"} 0"#,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recaptcha_scores_and_enterprise_assessments_are_judged() {
    let (redis, fake) = (RedisServer::start(), FakeSiteverify::default());
    let base = fake.start();
    let attestation = AttestationSettings {
        required: true,
        recaptcha: Some(ProviderSettings {
            min_score: Some(0.5),
            ..provider(format!("{base}/recaptcha/api/siteverify"))
        }),
        recaptcha_enterprise: Some(ProviderSettings {
            secret: SecretValue(API_KEY.into()),
            project: Some(PROJECT.into()),
            site_key: Some("6Lc-site-key".into()),
            min_score: Some(0.5),
            ..provider(format!("{base}/v1/projects/{PROJECT}/assessments"))
        }),
        ..AttestationSettings::default()
    };
    let app = TestApp::spawn(&settings(&redis, attestation)).await;
    fake.issue(
        "bot",
        Solved {
            score: 0.1,
            ..Solved::default()
        },
    );
    fake.issue("human", Solved::default());
    fake.issue(
        "enterprise-bot",
        Solved {
            score: 0.2,
            ..Solved::default()
        },
    );
    fake.issue(
        "enterprise-expired",
        Solved {
            expired: true,
            ..Solved::default()
        },
    );
    fake.issue("enterprise-human", Solved::default());

    refused(&app, "recaptcha", "bot", "score").await;
    for (sent, why) in [
        ("enterprise-bot", "score"),
        ("enterprise-expired", "expired"),
        ("made-up", "refused"),
    ] {
        refused(&app, "recaptcha_enterprise", sent, why).await;
    }
    assert_eq!(app.sent_count().await, 0);
    assert_eq!(start(&app, token("recaptcha", "human")).await.status(), 201);
    app.clock.advance(Duration::from_secs(30));
    assert_eq!(
        start(&app, token("recaptcha_enterprise", "enterprise-human"))
            .await
            .status(),
        200,
        "the pending verification is resent"
    );
    let asked = fake.asked();
    let enterprise = asked.last().expect("asked");
    assert_eq!(
        (enterprise.path.as_str(), enterprise.token.as_str()),
        (
            format!("/v1/projects/{PROJECT}/assessments").as_str(),
            "enterprise-human"
        )
    );
    // A provider the service does not list is a bad request.
    problem(
        start(&app, token("turnstile", "human")).await,
        400,
        "invalid-attestation",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_does_not_answer_fails_closed() {
    let (redis, fake) = (RedisServer::start(), FakeSiteverify::default());
    let base = fake.start();
    let mut attestation = turnstile(&base);
    attestation.timeout = Duration::from_millis(200);
    // The operator's own verifier, with a secret it does not accept.
    attestation.http = Some(ProviderSettings {
        secret: SecretValue("not-the-secret".into()),
        ..provider(format!("{base}/verify"))
    });
    let app = TestApp::spawn(&settings(&redis, attestation)).await;
    fake.issue(
        "slow",
        Solved {
            delay: Duration::from_secs(5),
            ..Solved::default()
        },
    );
    fake.issue("good", Solved::default());

    let slow = start(&app, token("turnstile", "slow")).await;
    assert!(slow.headers().contains_key("retry-after"));
    problem(slow, 503, "attestation-unavailable").await;
    problem(
        start(&app, token("http", "good")).await,
        503,
        "attestation-unavailable",
    )
    .await;
    assert_eq!(app.sent_count().await, 0);
    assert_has_lines(
        &app.metrics().await,
        [
            r#"otpd_attestations_total{mode="enforce",outcome="unavailable",provider="turnstile",service="demo"} 1"#,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_own_verifier_and_monitor_mode() {
    let (redis, fake) = (RedisServer::start(), FakeSiteverify::default());
    let base = fake.start();
    let attestation = AttestationSettings {
        required: true,
        monitor: true,
        http: Some(ProviderSettings {
            hostnames: Vec::new(),
            action: None,
            ..provider(format!("{base}/verify"))
        }),
        ..AttestationSettings::default()
    };
    let app = TestApp::spawn(&settings(&redis, attestation)).await;
    fake.issue("app-attested", Solved::default());
    assert_eq!(
        start(&app, token("http", "app-attested")).await.status(),
        201
    );
    // Monitor mode: a missing or forged token is reported, and sent.
    let other = |to: &str| json!({ "to": to, "channel": "sms" });
    assert_eq!(
        app.post("/v1/services/demo/verifications", other("090-1111-2222"))
            .await
            .status(),
        201
    );
    let mut forged = other("090-3333-4444");
    forged["attestation"] = json!({ "provider": "http", "token": "forged" });
    assert_eq!(
        app.post("/v1/services/demo/verifications", forged)
            .await
            .status(),
        201
    );
    app.delivered_to("+819033334444", 1).await;
    assert_has_lines(
        &app.metrics().await,
        [
            r#"otpd_attestations_total{mode="enforce",outcome="passed",provider="http",service="demo"} 1"#,
            r#"otpd_attestations_total{mode="monitor",outcome="missing",provider="none",service="demo"} 1"#,
            r#"otpd_attestations_total{mode="monitor",outcome="invalid",provider="http",service="demo"} 1"#,
        ],
    );
}
