//! Abuse protection over HTTP: each limit at its boundary with an honest
//! `Retry-After`, refusals that leave nothing behind, trusted client IPs,
//! SMS pumping and brute force (ABU-*, RL-*, SEC-8, SEC-9).

use std::time::Duration;

use futures_util::future::join_all;
use otpd::carrier::RecordingCarrier;
use otpd::config::{RateSetting, Settings};
use otpd::domain::ManualClock;
use serde_json::{json, Value};

use crate::support::{
    assert_has_lines, json_of, problem, wrong, Backend, RedisServer, TestApp, API_KEY, PHONE,
};

crate::on_redis_and_cluster!(
    number_sends_stop_at_five_per_fifteen_minutes_however_the_number_is_written,
    starts_per_ip_stop_at_ten_per_minute,
    checks_per_ip_stop_at_sixty_per_minute,
    a_range_over_its_limit_is_blocked_for_twelve_hours,
    two_replicas_share_every_limit,
    a_refused_request_leaves_no_verification_and_no_counters,
    brute_force_across_verifications_and_replicas_stops_at_twenty_failures,
    country_service_and_global_caps_hold_at_their_boundary,
    budgets_refuse_at_their_cap_and_report_crossings,
    rotating_the_code_secret_keeps_limits_failures_and_pending_verifications,
);

/// The `n`th of a set of mobile numbers, each in its own range.
fn number(set: u32, n: u32) -> String {
    format!("+8190{:02}{:02}0000", 10 + set, n)
}

fn rate(count: u32, seconds: u64) -> RateSetting {
    RateSetting {
        count,
        period: Duration::from_secs(seconds),
    }
}

/// Default limits, with a change to the `demo` service's.
fn with_demo(backend: &Backend, change: impl FnOnce(&mut Settings)) -> Settings {
    let mut settings = backend.settings_with_default_limits();
    change(&mut settings);
    settings
}

fn demo(settings: &mut Settings) -> &mut otpd::config::LimitSettings {
    &mut settings.services.get_mut("demo").expect("demo").limits
}

/// For tests of other rules that send many codes nobody enters: the
/// conversion rule (which would stop them first) is not judged.
fn without_conversion(settings: &mut Settings) {
    demo(settings).conversion.country_min_sends = 0;
    demo(settings).conversion.range_min_sends = 0;
}

async fn start_from(
    app: &TestApp,
    to: &str,
    forwarded_for: Option<&str>,
    binding: Option<&str>,
) -> reqwest::Response {
    let mut body = json!({ "to": to, "channel": "sms" });
    if let Some(binding) = binding {
        body["binding"] = json!(binding);
    }
    let mut request = app
        .http
        .post(app.url("/v1/services/demo/verifications"))
        .bearer_auth(API_KEY)
        .json(&body);
    if let Some(ip) = forwarded_for {
        request = request.header("x-forwarded-for", ip);
    }
    request.send().await.expect("sent")
}

/// A 429 `rate-limited` for `scope`, with an honest `Retry-After` and, by
/// default, the draft RateLimit fields (RL-4, RL-5): in full for the
/// tenant's own quotas (`budget`, `api-key`), by name only for the fraud
/// limits, whose thresholds stay private (ABU-11); returns the
/// `Retry-After` seconds.
async fn limited(response: reqwest::Response, scope: &str) -> u64 {
    let headers = response.headers().clone();
    let body = problem(
        response,
        429,
        if scope == "budget" {
            "budget-exhausted"
        } else {
            "rate-limited"
        },
    )
    .await;
    assert_eq!(body["scope"], scope, "{body}");
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    if scope != "ip" || headers.get("ratelimit").is_some() {
        let policy = headers["ratelimit-policy"].to_str().expect("ascii");
        let state = headers["ratelimit"].to_str().expect("ascii");
        if matches!(scope, "budget" | "api-key") {
            assert!(
                policy.starts_with('"') && policy.contains(";q=") && policy.contains(";w="),
                "{policy}"
            );
            assert!(state.contains(";r=0;t="), "{state}");
        } else {
            assert_eq!(policy, format!("\"{scope}\""), "no threshold disclosed");
            assert_eq!(state, format!("\"{scope}\";t={retry}"));
        }
        assert!(
            state.ends_with(&format!(";t={retry}")),
            "RateLimit agrees with Retry-After: {state}"
        );
    }
    retry
}

/// RL-5: the RateLimit fields follow `http.ratelimit_fields`: `off` sends
/// none, `full` the policies with their quotas and windows; `Retry-After`
/// always.
#[tokio::test]
async fn ratelimit_fields_follow_their_setting() {
    for (fields, expected) in [
        (otpd::config::RateLimitFields::Off, None),
        (otpd::config::RateLimitFields::Full, Some(";q=10;w=60")),
    ] {
        let redis = RedisServer::start();
        let mut settings = redis.apply(crate::support::settings_with_default_limits(None));
        settings.http.ratelimit_fields = fields;
        let app = TestApp::spawn(&settings).await;
        for n in 0..10 {
            assert_eq!(
                start_from(&app, &number(1, n), None, None).await.status(),
                201
            );
        }
        let refused = start_from(&app, &number(1, 10), None, None).await;
        let headers = refused.headers().clone();
        problem(refused, 429, "rate-limited").await;
        assert!(headers.contains_key("retry-after"));
        let policy = headers
            .get("ratelimit-policy")
            .map(|v| v.to_str().expect("ascii").to_owned());
        match expected {
            None => assert_eq!(policy, None, "{fields:?}"),
            Some(quota) => assert!(policy.expect("a policy").contains(quota), "{fields:?}"),
        }
    }
}

/// Keys that hold verifications.
fn verification_keys(backend: &Backend) -> usize {
    backend
        .keys()
        .iter()
        .filter(|key| key.contains(":v:"))
        .count()
}

/// ABU-3: five sends per number in 15 minutes; one number however written.
async fn number_sends_stop_at_five_per_fifteen_minutes_however_the_number_is_written(
    backend: &Backend,
) {
    let app = TestApp::spawn(&backend.settings_with_default_limits()).await;
    let forms = [
        "090-1234-5678",
        "+81 90 1234 5678",
        "+819012345678",
        "０９０１２３４５６７８",
        "09012345678",
    ];
    for (at, form) in forms.iter().enumerate() {
        // A new binding each time: a new verification, a new send.
        let response = start_from(&app, form, None, Some(&format!("session-{at}"))).await;
        assert_eq!(response.status(), 201, "send {}", at + 1);
        app.delivered_to(PHONE, at + 1).await;
    }
    let keys = backend.keys();
    let retry = limited(
        start_from(&app, PHONE, None, Some("session-6")).await,
        "number",
    )
    .await;
    assert_eq!(retry, 180, "one send every 3 minutes");
    backend.assert_no_new_keys(&keys, "a refused start");
    assert_eq!(app.sent_to(PHONE).await.len(), 5);
    app.clock.advance(Duration::from_secs(retry));
    assert_eq!(
        start_from(&app, PHONE, None, Some("session-7"))
            .await
            .status(),
        201,
        "Retry-After was honest"
    );
}

/// ABU-5: ten starts per client IP per minute.
async fn starts_per_ip_stop_at_ten_per_minute(backend: &Backend) {
    let app = TestApp::spawn(&backend.settings_with_default_limits()).await;
    for n in 0..10 {
        assert_eq!(
            start_from(&app, &number(1, n), None, None).await.status(),
            201
        );
    }
    let retry = limited(start_from(&app, &number(1, 99), None, None).await, "ip").await;
    assert_eq!(retry, 6);
    app.clock.advance(Duration::from_secs(6));
    assert_eq!(
        start_from(&app, &number(1, 99), None, None).await.status(),
        201
    );
}

async fn checks_per_ip_stop_at_sixty_per_minute(backend: &Backend) {
    // Failures are not what this test is about.
    let settings = with_demo(backend, |s| demo(s).failed_checks.free = 99);
    let settings = {
        let mut settings = settings;
        demo(&mut settings).failed_checks.max = 100;
        settings
    };
    let app = TestApp::spawn(&settings).await;
    let id = app.started(PHONE).await;
    for _ in 0..60 {
        assert_ne!(app.check(&id, "000000").await.status(), 429);
    }
    let retry = limited(app.check(&id, "000000").await, "ip").await;
    assert_eq!(retry, 1);
}

/// ABU-4: 20 sends per range per hour, then the range is blocked for 12 h;
/// other ranges are not affected.
async fn a_range_over_its_limit_is_blocked_for_twelve_hours(backend: &Backend) {
    let app = TestApp::spawn(&with_demo(backend, |s| {
        s.http.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
        without_conversion(s);
    }))
    .await;
    for n in 0..20 {
        let response = start_from(
            &app,
            &format!("+81901234{n:04}"),
            Some(&format!("198.51.100.{n}")),
            None,
        )
        .await;
        assert_eq!(response.status(), 201, "send {n}");
    }
    let retry = limited(
        start_from(&app, "+819012349999", Some("198.51.100.200"), None).await,
        "range",
    )
    .await;
    assert_eq!(retry, 12 * 3600);
    assert_eq!(
        start_from(&app, "+819055550000", Some("198.51.100.201"), None)
            .await
            .status(),
        201,
        "another range"
    );
    app.clock.advance(Duration::from_secs(3600));
    let still = limited(
        start_from(&app, "+819012349998", Some("198.51.100.202"), None).await,
        "range",
    )
    .await;
    assert_eq!(still, 11 * 3600, "the block does not slide");
    app.clock.advance(Duration::from_secs(11 * 3600));
    assert_eq!(
        start_from(&app, "+819012349997", Some("198.51.100.203"), None)
            .await
            .status(),
        201
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"otpd_blocked_total{mode="enforce",reason="range",service="demo"} 2"#),
        "{metrics}"
    );
}

/// ABU-1: a service sends only to the countries it lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_countries_are_refused_unless_listed_or_monitored() {
    let backend = &Backend::Server(RedisServer::start());
    let app = TestApp::spawn(&backend.settings_with_default_limits()).await;
    let keys = backend.keys();
    problem(
        start_from(&app, "+447400123456", None, None).await,
        422,
        "country-not-allowed",
    )
    .await;
    backend.assert_no_new_keys(&keys, "a start to another country");
    assert_eq!(app.sent_count().await, 0);

    let listed = TestApp::spawn(&with_demo(backend, |s| {
        demo(s).countries = vec!["JP".into(), "GB".into()]
    }))
    .await;
    assert_eq!(
        start_from(&listed, "+447400123456", None, None)
            .await
            .status(),
        201
    );
    let monitored = TestApp::spawn(&with_demo(backend, |s| {
        demo(s).monitor = vec!["country".into()]
    }))
    .await;
    assert_eq!(
        start_from(&monitored, "+447400123457", None, None)
            .await
            .status(),
        201
    );
    let metrics = monitored.metrics().await;
    assert!(
        metrics.contains(r#"otpd_blocked_total{mode="monitor",reason="country",service="demo"} 1"#),
        "{metrics}"
    );
}

/// Country, service-wide and global caps, each at its boundary.
async fn country_service_and_global_caps_hold_at_their_boundary(backend: &Backend) {
    let trusted =
        |s: &mut Settings| s.http.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
    type Change = Box<dyn Fn(&mut Settings)>;
    let cases: [(&str, Change, u64); 3] = [
        (
            "country",
            Box::new(|s| {
                demo(s)
                    .country_sends
                    .insert("JP".into(), vec![rate(3, 3600)]);
            }),
            1200,
        ),
        (
            "global",
            Box::new(|s| demo(s).service_sends = vec![rate(3, 60)]),
            20,
        ),
        (
            "global",
            Box::new(|s| s.limits.global_sends = vec![rate(3, 60)]),
            20,
        ),
    ];
    for (scope, change, expected_retry) in cases {
        let app = TestApp::spawn(&with_demo(backend, |s| {
            trusted(s);
            change(s);
        }))
        .await;
        let prefix = 20 + app.sent_count().await as u32;
        for n in 0..3 {
            let to = number(prefix, n);
            assert_eq!(
                start_from(&app, &to, Some(&format!("203.0.113.{n}")), None)
                    .await
                    .status(),
                201,
                "{scope} {n}"
            );
        }
        let retry = limited(
            start_from(&app, &number(prefix, 99), Some("203.0.113.9"), None).await,
            scope,
        )
        .await;
        assert_eq!(retry, expected_retry, "{scope}");
        backend.flush();
    }
}

/// ABU-7: budgets in messages and money; 50/80/100 % crossings are metrics.
async fn budgets_refuse_at_their_cap_and_report_crossings(backend: &Backend) {
    let app = TestApp::spawn(&with_demo(backend, |s| {
        s.pricing.insert("JP".into(), 3.0);
        let limits = demo(s);
        limits.budget.daily_cost = Some(15.0);
        limits.budget.monthly_messages = Some(100);
        limits.ip_starts = vec![rate(100, 60)];
    }))
    .await;
    for n in 0..5 {
        assert_eq!(
            start_from(&app, &number(3, n), None, None).await.status(),
            201,
            "{n}"
        );
    }
    let retry = limited(start_from(&app, &number(3, 99), None, None).await, "budget").await;
    assert!(
        retry > 0 && retry <= 86_400,
        "until the day ends in Japan: {retry}"
    );
    assert_eq!(app.sent_count().await, 5);
    let metrics = app.metrics().await;
    let crossings = [50, 80, 100].map(|threshold| {
        format!(r#"otpd_budget_threshold_crossed_total{{budget="budget-cost-day",service="demo",threshold="{threshold}"}} 1"#)
    });
    assert_has_lines(&metrics, crossings);
    assert!(!metrics.contains(r#"budget="budget-messages-month",service="demo",threshold="50""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_can_be_capped_per_second() {
    let backend = &Backend::Server(RedisServer::start());
    let app = TestApp::spawn(&with_demo(backend, |s| {
        s.api_keys[0].requests_per_second = Some(3)
    }))
    .await;
    for _ in 0..3 {
        assert_eq!(
            app.get("/v1/services/demo/verifications/AAAAAAAAAAAAAAAAAAAAAAAA")
                .await
                .status(),
            404
        );
    }
    let retry = limited(
        app.get("/v1/services/demo/verifications/AAAAAAAAAAAAAAAAAAAAAAAA")
            .await,
        "api-key",
    )
    .await;
    assert_eq!(retry, 1);
    assert_eq!(
        app.public("/healthz").await.status(),
        200,
        "health is not limited"
    );
}

/// ABU-9: a monitored limit reports what it would have refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitored_limits_report_without_refusing() {
    let backend = &Backend::Server(RedisServer::start());
    let app = TestApp::spawn(&with_demo(backend, |s| {
        demo(s).monitor = vec!["number".into()]
    }))
    .await;
    for at in 0..7 {
        assert_eq!(
            start_from(&app, PHONE, None, Some(&format!("s{at}")))
                .await
                .status(),
            201,
            "send {at}"
        );
    }
    let metrics = app.metrics().await;
    assert!(
        metrics
            .contains(r#"otpd_rate_limited_total{mode="monitor",scope="number",service="demo"} 2"#),
        "{metrics}"
    );
}

/// Limits hold across replicas: requests alternate between two otpd.
async fn two_replicas_share_every_limit(backend: &Backend) {
    let (carrier, clock) = (RecordingCarrier::new(), ManualClock::new());
    let settings = backend.settings_with_default_limits();
    let replicas = [
        TestApp::spawn_with(&settings, carrier.clone(), clock.clone()).await,
        TestApp::spawn_with(&settings, carrier.clone(), clock).await,
    ];
    for at in 0..5 {
        let response = start_from(&replicas[at % 2], PHONE, None, Some(&format!("s{at}"))).await;
        assert_eq!(response.status(), 201, "send {at}");
        replicas[0].delivered_to(PHONE, at + 1).await;
    }
    limited(
        start_from(&replicas[1], PHONE, None, Some("s5")).await,
        "number",
    )
    .await;
    limited(
        start_from(&replicas[0], PHONE, None, Some("s6")).await,
        "number",
    )
    .await;
    replicas[0].settled().await;
    assert_eq!(carrier.bodies_to(PHONE).len(), 5);
}

/// A request refused by one limit takes nothing from the others (RL-7):
/// the IP refusal below does not count as a send to the number.
async fn a_refused_request_leaves_no_verification_and_no_counters(backend: &Backend) {
    let app = TestApp::spawn(&with_demo(backend, |s| {
        s.http.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")]
    }))
    .await;
    for n in 0..10 {
        assert_eq!(
            start_from(&app, &number(4, n), Some("192.0.2.1"), None)
                .await
                .status(),
            201
        );
    }
    let verifications = verification_keys(backend);
    for _ in 0..3 {
        limited(start_from(&app, PHONE, Some("192.0.2.1"), None).await, "ip").await;
    }
    assert_eq!(
        verification_keys(backend),
        verifications,
        "no verification stored"
    );
    assert!(app.sent_to(PHONE).await.is_empty(), "nothing sent");
    for at in 0..5 {
        let response = start_from(&app, PHONE, Some("192.0.2.2"), Some(&format!("s{at}"))).await;
        assert_eq!(
            response.status(),
            201,
            "all five sends are still the number's: {at}"
        );
    }
}

/// Headers from an untrusted peer change nothing; from a trusted proxy they
/// name the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    let backend = &Backend::Server(RedisServer::start());
    let untrusted = TestApp::spawn(&with_demo(backend, without_conversion)).await;
    for n in 0..10 {
        let response = start_from(
            &untrusted,
            &number(5, n),
            Some(&format!("203.0.113.{n}")),
            None,
        )
        .await;
        assert_eq!(response.status(), 201);
    }
    limited(
        start_from(&untrusted, &number(5, 99), Some("203.0.113.77"), None).await,
        "ip",
    )
    .await;

    let trusted = TestApp::spawn(&with_demo(backend, |s| {
        s.http.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
        without_conversion(s);
    }))
    .await;
    for n in 0..11 {
        let response = start_from(
            &trusted,
            &number(6, n),
            Some(&format!("203.0.113.{n}")),
            None,
        )
        .await;
        assert_eq!(response.status(), 201, "each client has its own limit: {n}");
    }
    // The client's own claim, left of what the proxy saw, is not believed.
    for n in 0..10 {
        let spoofed = format!("10.9.9.{n}, 198.51.100.50");
        assert_eq!(
            start_from(&trusted, &number(7, n), Some(&spoofed), None)
                .await
                .status(),
            201
        );
    }
    limited(
        start_from(
            &trusted,
            &number(7, 99),
            Some("10.9.9.99, 198.51.100.50"),
            None,
        )
        .await,
        "ip",
    )
    .await;
}

/// SMS pumping: 500 starts to sequential numbers of one range from 50
/// client IPs. At most the range limit reaches the carrier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pumping_one_range_from_many_ips_reaches_the_carrier_at_most_twenty_times() {
    let backend = &Backend::Server(RedisServer::start());
    let app = TestApp::spawn(&with_demo(backend, |s| {
        s.http.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
        without_conversion(s);
    }))
    .await;
    let mut statuses = Vec::new();
    for batch in 0..50 {
        let requests = (0..10).map(|n| {
            let number = batch * 10 + n;
            let app = &app;
            async move {
                let response = start_from(
                    app,
                    &format!("+81901234{number:04}"),
                    Some(&format!("198.51.100.{batch}")),
                    None,
                )
                .await;
                let status = response.status().as_u16();
                let scope = if status == 429 {
                    json_of(response).await["scope"].as_str().map(str::to_owned)
                } else {
                    None
                };
                (status, scope)
            }
        });
        statuses.extend(join_all(requests).await);
    }
    let sent = statuses.iter().filter(|(status, _)| *status == 201).count();
    let by_range = statuses
        .iter()
        .filter(|(status, scope)| *status == 429 && scope.as_deref() == Some("range"))
        .count();
    assert_eq!(sent, 20);
    assert_eq!(by_range, 480, "every other start is refused by the range");
    assert_eq!(app.sent_count().await, 20);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            r#"otpd_rate_limited_total{mode="enforce",scope="range",service="demo"} 480"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(r#"otpd_verifications_started_total{channel="sms",country="81",kind="new",service="demo",surface="http"} 20"#));
}

/// ABU-6: a pumping run against one country (500 starts to numbers spread
/// over 500 ranges, 5 per client IP, no code ever entered) beside normal
/// traffic to another (100 users who each enter their code). With the
/// default conversion rule the pumped country is cut off after 30 SMS, and
/// no normal start is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pumped_country_is_cut_off_and_normal_traffic_is_untouched() {
    let backend = &Backend::Server(RedisServer::start());
    let app = TestApp::spawn(&with_demo(backend, |s| {
        s.http.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
        demo(s).countries = vec!["JP".into(), "GB".into()];
    }))
    .await;
    let (mut pumped_sent, mut pumped_refused, mut normal_refused) = (0, 0, 0);
    for user in 0..100u32 {
        let normal = start_from(
            &app,
            &format!("+8190{:04}1234", 1000 + user),
            Some(&format!("203.0.113.{user}")),
            None,
        )
        .await;
        if normal.status() == 201 {
            let id = json_of(normal).await["id"].as_str().expect("id").to_owned();
            let code = app.code_for(&id).await;
            let checked = app
                .http
                .post(app.url(&format!("/v1/services/demo/verifications/{id}/check")))
                .bearer_auth(API_KEY)
                .header("x-forwarded-for", format!("203.0.113.{user}"))
                .json(&json!({ "code": code }))
                .send()
                .await
                .expect("sent");
            assert_eq!(json_of(checked).await["valid"], true);
        } else {
            normal_refused += 1;
        }
        for n in 0..5 {
            let target = format!("+4479{:04}1234", user * 5 + n);
            let ip = format!("198.51.100.{user}");
            let pumped = start_from(&app, &target, Some(&ip), None).await;
            match pumped.status().as_u16() {
                201 => pumped_sent += 1,
                429 => {
                    assert_eq!(json_of(pumped).await["scope"], "conversion");
                    pumped_refused += 1;
                }
                other => panic!("unexpected {other}"),
            }
        }
    }
    eprintln!(
        "pumping run: {pumped_sent} SMS to the pumped country, {pumped_refused} refused; \
         normal starts refused: {normal_refused}"
    );
    assert_eq!(normal_refused, 0, "normal traffic is untouched");
    assert!(
        pumped_sent <= 50,
        "{pumped_sent} SMS reached the pumped country"
    );
    assert_eq!(pumped_sent + pumped_refused, 500);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(&format!(
            r#"otpd_blocked_total{{mode="enforce",reason="conversion",service="demo"}} {pumped_refused}"#
        )),
        "{metrics}"
    );
    // Refused sends count too: while the pumping goes on, the block is
    // renewed when it ends.
    app.clock.advance(Duration::from_secs(59 * 60));
    for n in 0..40 {
        let target = format!("+4479{:04}5678", n);
        let refused = start_from(&app, &target, Some(&format!("192.0.2.{n}")), None).await;
        assert_eq!(refused.status(), 429);
    }
    app.clock.advance(Duration::from_secs(61));
    let again = start_from(&app, "+447999991234", Some("198.51.100.250"), None).await;
    assert_eq!(json_of(again).await["scope"], "conversion");
    assert_eq!(app.sent_count().await, 100 + pumped_sent);
}

/// SEC-8, SEC-9: an attacker cycling verifications of one number, across
/// two replicas, gets 20 wrong guesses in all; delays start after the 3rd.
async fn brute_force_across_verifications_and_replicas_stops_at_twenty_failures(backend: &Backend) {
    let (carrier, clock) = (RecordingCarrier::new(), ManualClock::new());
    // Sends are not what this test is about.
    let settings = with_demo(backend, |s| {
        let limits = demo(s);
        limits.number_sends = vec![rate(1000, 60)];
        limits.range_sends = vec![rate(1000, 60)];
        limits.ip_starts = vec![rate(1000, 60)];
    });
    let replicas = [
        TestApp::spawn_with(&settings, carrier.clone(), clock.clone()).await,
        TestApp::spawn_with(&settings, carrier.clone(), clock.clone()).await,
    ];
    let mut id = replicas[0].started(PHONE).await;
    let mut wrong_answers = 0;
    let mut delays = Vec::new();
    for turn in 0..200 {
        let app = &replicas[turn % 2];
        let response = app.check(&id, &wrong(&app.sent_code(PHONE).await)).await;
        match response.status().as_u16() {
            200 => {
                wrong_answers += 1;
                if json_of(response).await["status"] == "failed" {
                    id = app.started(PHONE).await;
                }
            }
            404 => id = app.started(PHONE).await,
            429 => {
                let wait = limited(response, "check-failures").await;
                if wrong_answers == 20 {
                    break;
                }
                delays.push((wrong_answers, wait));
                clock.advance(Duration::from_secs(wait));
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(wrong_answers, 20);
    assert_eq!(
        &delays[..3],
        &[(4, 30), (5, 60), (6, 120)],
        "the delay starts after the 4th failure"
    );
    assert!(
        delays.iter().all(|(_, wait)| *wait <= 3600),
        "capped at an hour: {delays:?}"
    );
    // Locked: even the right code of a new verification is refused.
    let fresh = json_of(start_from(&replicas[1], PHONE, None, Some("fresh-session")).await).await;
    let id = fresh["id"].as_str().expect("a new verification");
    let code = replicas[1].sent_code(PHONE).await;
    let wait = limited(replicas[0].check(id, &code).await, "check-failures").await;
    assert!(wait > 23 * 3600, "until the failures decay: {wait}");
}

/// Rotating the code secret (a new one first, the old one after it) keeps
/// every counter: limits, a number's failures and its pending verification
/// are keyed with `index_secret`, which rotation does not touch.
async fn rotating_the_code_secret_keeps_limits_failures_and_pending_verifications(
    backend: &Backend,
) {
    let (carrier, clock) = (RecordingCarrier::new(), ManualClock::new());
    let settings = backend.settings_with_default_limits();
    let before = TestApp::spawn_with(&settings, carrier.clone(), clock.clone()).await;
    let id = before.started(PHONE).await;
    let code = before.sent_code(PHONE).await;
    for _ in 0..4 {
        assert_eq!(before.check(&id, &wrong(&code)).await.status(), 200);
    }
    for n in 1..9 {
        assert_eq!(
            start_from(&before, &number(2, n), None, None)
                .await
                .status(),
            201
        );
    }
    drop(before);
    let mut rotated = settings.clone();
    rotated.secrets.insert(
        0,
        otpd::config::SecretSettings {
            id: "rotated".into(),
            value: "r".repeat(32),
        },
    );
    let after = TestApp::spawn_with(&rotated, carrier, clock.clone()).await;
    let fresh = json_of(start_from(&after, PHONE, None, Some("fresh-session")).await).await;
    let fresh_id = fresh["id"].as_str().expect("a new verification");
    let fresh_code = after.sent_code(PHONE).await;
    let wait = limited(after.check(fresh_id, &fresh_code).await, "check-failures").await;
    assert_eq!(wait, 30, "the 4 failures before the rotation count");
    limited(start_from(&after, &number(2, 99), None, None).await, "ip").await;
    clock.advance(Duration::from_secs(30));
    let by_number = after
        .post(
            "/v1/services/demo/checks",
            json!({ "to": PHONE, "code": fresh_code, "binding": "fresh-session" }),
        )
        .await;
    assert_eq!(json_of(by_number).await["status"], "approved");
}

/// A check by number for a number without a pending verification answers
/// exactly like a check of an unknown id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_by_number_do_not_reveal_which_numbers_have_verifications() {
    let backend = &Backend::Server(RedisServer::start());
    let app = TestApp::spawn(&backend.settings_with_default_limits()).await;
    let by_number = app
        .post(
            "/v1/services/demo/checks",
            json!({ "to": "+819087654321", "code": "123456" }),
        )
        .await;
    let by_id = app.check("AAAAAAAAAAAAAAAAAAAAAAAA", "123456").await;
    assert_eq!(by_number.status(), by_id.status());
    let (by_number, by_id): (Value, Value) = (json_of(by_number).await, json_of(by_id).await);
    assert_eq!(by_number, by_id);
}

/// The in-process first line: a flood from one client is shed before Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_from_one_client_are_shed_in_process() {
    let backend = &Backend::Server(RedisServer::start());
    let app = TestApp::spawn(&with_demo(backend, |s| {
        s.http.flood_per_second = 1;
        s.http.flood_burst = 5;
    }))
    .await;
    let mut shed = 0;
    for _ in 0..20 {
        let response = app.public("/healthz").await;
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
            assert_eq!(json_of(response).await["scope"], "ip");
            shed += 1;
        }
    }
    assert!(
        shed >= 10,
        "a burst of 5 and 1 per second: most of 20 quick requests are shed ({shed})"
    );
}
