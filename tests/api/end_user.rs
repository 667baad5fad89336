//! The backend pattern: a login backend calls otpd for all its users from
//! one address, and asserts each user's own IP (`end_user.client_ip`) with
//! a key allowed to (`assert_end_user`). Per-IP limits then apply to the
//! user, not the backend (ABU-2, RL-1); a key not allowed to assert gets
//! 403 and changes nothing.

use serde_json::{json, Value};

use crate::support::{
    json_of, problem, settings_with_default_limits, RedisServer, TestApp, API_KEY, DEMO_ONLY_KEY,
};

/// The `n`th of a set of mobile numbers, each in its own range.
fn number(n: u32) -> String {
    format!("+8190{:02}{:02}0000", 30 + n / 100, n % 100)
}

async fn start(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.http
        .post(app.url("/v1/services/demo/verifications"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("sent")
}

fn backend_settings(redis: &RedisServer) -> otpd::config::Settings {
    let mut settings = settings_with_default_limits(Some(redis));
    let backend = settings
        .api_keys
        .iter_mut()
        .find(|key| key.id == "all")
        .expect("the key for every service");
    backend.assert_end_user = true;
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_users_behind_one_backend_are_limited_each_on_their_own_ip() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&backend_settings(&redis)).await;
    // 30 users, each from an address of their own, who enter their codes:
    // the default per-IP limit (10 starts a minute) would have refused the
    // 11th.
    for n in 0..30 {
        let body = json!({ "to": number(n), "channel": "sms",
                           "end_user": { "client_ip": format!("203.0.113.{n}") } });
        let started = start(&app, API_KEY, body).await;
        assert_eq!(started.status(), 201, "user {n}");
        let id = json_of(started).await["id"]
            .as_str()
            .expect("id")
            .to_owned();
        assert_eq!(app.check(&id, &app.code_for(&id).await).await.status(), 200);
    }
    // One abusive user is refused at their own limit, the others are not.
    let abuser = |n: u32| {
        json!({ "to": number(100 + n), "channel": "sms",
                                  "end_user": { "client_ip": "198.51.100.7" } })
    };
    for n in 0..10 {
        assert_eq!(start(&app, API_KEY, abuser(n)).await.status(), 201);
    }
    let refused = start(&app, API_KEY, abuser(10)).await;
    let body = problem(refused, 429, "rate-limited").await;
    assert_eq!(body["scope"], "ip");
    let other = json!({ "to": number(200), "channel": "sms",
                        "end_user": { "client_ip": "203.0.113.200" } });
    assert_eq!(start(&app, API_KEY, other).await.status(), 201);
}

/// Per-device and per-user limits beside the per-IP ones: one device (or
/// one account) hopping across addresses is stopped at 5 starts in 15
/// minutes, while other devices and users go on; checks likewise at 30 a
/// minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_device_or_user_across_many_addresses_is_limited_on_its_own() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&backend_settings(&redis)).await;
    let hopping = |n: u32, who: Value| {
        let mut end_user = json!({ "client_ip": format!("198.51.100.{n}") });
        end_user
            .as_object_mut()
            .expect("object")
            .extend(who.as_object().expect("object").clone());
        json!({ "to": number(300 + n), "channel": "sms", "end_user": end_user })
    };
    for (scope, who, other) in [
        (
            "device",
            json!({ "device_id": "install-1" }),
            json!({ "device_id": "install-2" }),
        ),
        (
            "user",
            json!({ "user_id": "account-1" }),
            json!({ "user_id": "account-2" }),
        ),
    ] {
        let base = if scope == "device" { 0 } else { 20 };
        for n in base..base + 5 {
            assert_eq!(
                start(&app, API_KEY, hopping(n, who.clone())).await.status(),
                201
            );
        }
        let body = problem(
            start(&app, API_KEY, hopping(base + 5, who.clone())).await,
            429,
            "rate-limited",
        )
        .await;
        assert_eq!(body["scope"], scope);
        assert_eq!(
            start(&app, API_KEY, hopping(base + 6, other))
                .await
                .status(),
            201
        );
    }
    // Checks of a verification that does not exist: no failures counted.
    let id = "AAAAAAAAAAAAAAAAAAAAAAAA";
    let check = |n: u32| {
        app.http
            .post(app.url(&format!("/v1/services/demo/verifications/{id}/check")))
            .bearer_auth(API_KEY)
            .json(&json!({ "code": "000000", "end_user": {
                "client_ip": format!("192.0.2.{n}"), "user_id": "account-3" } }))
            .send()
    };
    let mut statuses = Vec::new();
    for n in 0..30 {
        statuses.push(check(n).await.expect("sent").status().as_u16());
    }
    assert!(
        statuses[..30].iter().all(|status| *status != 429),
        "{statuses:?}"
    );
    let body = problem(check(31).await.expect("sent"), 429, "rate-limited").await;
    assert_eq!(body["scope"], "user");
}

#[tokio::test]
async fn only_keys_allowed_to_may_assert_an_end_user() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&backend_settings(&redis)).await;
    let keys = redis.keys();
    let body = json!({ "to": number(0), "channel": "sms",
                       "end_user": { "client_ip": "203.0.113.9" } });
    problem(
        start(&app, DEMO_ONLY_KEY, body).await,
        403,
        "end-user-not-allowed",
    )
    .await;
    let body = json!({ "to": number(0), "channel": "sms",
                       "end_user": { "client_ip": "not an address" } });
    problem(start(&app, API_KEY, body).await, 400, "invalid-end-user").await;
    for device_id in ["", "has space", &"x".repeat(129)] {
        let body = json!({ "to": number(0), "channel": "sms",
                           "end_user": { "client_ip": "203.0.113.9", "device_id": device_id } });
        problem(start(&app, API_KEY, body).await, 400, "invalid-end-user").await;
    }
    redis.assert_no_new_keys(&keys, "refused assertions");
}

mod grpc {
    //! The same client rules over gRPC: trusted proxies' `x-forwarded-for`
    //! metadata, the asserted end user, and flood shedding.

    use otpd::grpc::pb::verification_service_client::VerificationServiceClient;
    use otpd::grpc::pb::{EndUser, GetVerificationRequest, StartVerificationRequest};
    use tonic::transport::Channel;

    use super::number;
    use crate::support::{settings_with_default_limits, RedisServer, TestApp, API_KEY};

    async fn client(app: &TestApp) -> VerificationServiceClient<Channel> {
        let address = app.grpc_addr.expect("gRPC");
        VerificationServiceClient::connect(format!("http://{address}"))
            .await
            .expect("connects")
    }

    fn start(
        to: String,
        forwarded_for: Option<&str>,
        end_user: Option<&str>,
    ) -> tonic::Request<StartVerificationRequest> {
        let mut request = tonic::Request::new(StartVerificationRequest {
            service: "demo".into(),
            to,
            channel: "sms".into(),
            end_user: end_user.map(|ip| EndUser {
                client_ip: ip.into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let metadata = request.metadata_mut();
        metadata.insert(
            "authorization",
            format!("Bearer {API_KEY}").parse().expect("ascii"),
        );
        if let Some(ip) = forwarded_for {
            metadata.insert("x-forwarded-for", ip.parse().expect("ascii"));
        }
        request
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forwarded_and_asserted_clients_are_limited_on_their_own() {
        let redis = RedisServer::start();
        let mut settings = super::backend_settings(&redis);
        settings.http.trusted_proxies = vec!["127.0.0.0/8".parse().expect("net")];
        let app = TestApp::spawn(&settings).await;
        let mut grpc = client(&app).await;
        for n in 0..10 {
            grpc.start_verification(start(number(300 + n), Some("203.0.113.5"), None))
                .await
                .expect("started");
        }
        let refused = grpc
            .start_verification(start(number(310), Some("203.0.113.5"), None))
            .await
            .expect_err("the 11th from one forwarded client");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        grpc.start_verification(start(number(311), Some("203.0.113.6"), None))
            .await
            .expect("another forwarded client");
        grpc.start_verification(start(number(312), None, Some("198.51.100.1")))
            .await
            .expect("an asserted end user");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn floods_are_shed() {
        let redis = RedisServer::start();
        let mut settings = settings_with_default_limits(Some(&redis));
        settings.http.flood_per_second = 1;
        settings.http.flood_burst = 3;
        let app = TestApp::spawn(&settings).await;
        let mut grpc = client(&app).await;
        let mut shed = 0;
        for _ in 0..6 {
            let mut request = tonic::Request::new(GetVerificationRequest {
                service: "demo".into(),
                id: "AAAAAAAAAAAAAAAAAAAAAAAA".into(),
            });
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {API_KEY}").parse().expect("ascii"),
            );
            if let Err(status) = grpc.get_verification(request).await {
                if status.code() == tonic::Code::ResourceExhausted {
                    shed += 1;
                }
            }
        }
        assert!(shed >= 2, "{shed} of 6 shed");
    }
}
