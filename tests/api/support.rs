//! Test harness: a private redis-server per test, otpd built in-process on a
//! free port with a manual clock and a recording carrier, and helpers that
//! read like the API.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otpd::carrier::RecordingCarrier;
use otpd::config::{
    self, ApiKeySettings, RateSetting, SecretSettings, SecretValue, ServiceSettings, Settings,
};
use otpd::domain::ManualClock;
use otpd::otp::Otp;
use otpd::startup::{App, Overrides};
use serde_json::{json, Value};
use tempfile::TempDir;

/// Tests start Redis themselves: a private redis-server on a free port,
/// killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    /// Arguments beyond the defaults (cluster mode, replication …).
    extra: Vec<String>,
    security: Security,
}

/// A password and TLS for a server (and what its clients need to know).
#[derive(Clone, Default)]
pub struct Security {
    pub password: Option<String>,
    pub tls: Option<Arc<crate::topology::TestCa>>,
}

impl Security {
    /// The server arguments: TLS only (on the server's port), and the
    /// password for clients and for replicas of a primary.
    fn arguments(&self, port: u16) -> Vec<String> {
        let mut arguments = Vec::new();
        if let Some(ca) = &self.tls {
            arguments.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
            ]);
            arguments.extend(ca.server_arguments());
        }
        if let Some(password) = &self.password {
            arguments.extend(["--requirepass".into(), password.clone()]);
            arguments.extend(["--masterauth".into(), password.clone()]);
        }
        arguments
    }
}

/// A port nobody listens on, for a server a test starts. It is chosen
/// below the kernel's ephemeral range (32768 and up): a port the kernel
/// handed out could be given again to some outgoing connection before the
/// server binds it (a redis-server then fails to start).
pub fn free_port() -> u16 {
    use rand::Rng;
    loop {
        let port = rand::rng().random_range(20_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server started with `extra` arguments as well.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_secured(extra, Security::default())
    }

    /// Makes this server a replica of `primary`, as an operator or a
    /// returning old primary would: from then on it refuses writes.
    pub fn demote_to_replica_of(&self, primary: &RedisServer) {
        let _: String = self
            .query(redis::cmd("REPLICAOF").arg("127.0.0.1").arg(primary.port()))
            .expect("REPLICAOF");
    }

    /// A server that takes only clients with `security`'s password and TLS.
    pub fn start_secured(extra: &[&str], security: Security) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            dir,
            extra: extra.iter().map(|arg| arg.to_string()).collect(),
            security,
        };
        server.start_again();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts (again) on the same port, empty, as after a crash without AOF.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = self.dir.path().join("redis.log");
        // A configuration file (Sentinel's) must come first.
        let (file, options) = match self.extra.split_first() {
            Some((file, options)) if !file.starts_with("--") => (Some(file), options),
            _ => (None, &self.extra[..]),
        };
        let child = Command::new("redis-server")
            .args(file)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(options)
            .args(self.security.arguments(self.port))
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server missing: run scripts/test, which installs it");
        self.child = Some(child);
        self.wait_for_pong(Duration::from_secs(10), log);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One command on a fresh connection.
    pub fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> redis::RedisResult<T> {
        let mut connection = self.client().get_connection()?;
        command.query(&mut connection)
    }

    fn wait_for_pong(&self, within: Duration, log: PathBuf) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(mut connection) = self.client().get_connection() {
                if redis::cmd("PING").query::<String>(&mut connection).is_ok() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!(
            "redis-server did not answer: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// `redis://` (`rediss://` with TLS), with the password if any.
    pub fn url(&self) -> String {
        let scheme = if self.security.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let password = self
            .security
            .password
            .as_ref()
            .map(|password| format!(":{password}@"))
            .unwrap_or_default();
        format!("{scheme}://{password}127.0.0.1:{}/", self.port)
    }

    pub fn client(&self) -> redis::Client {
        match &self.security.tls {
            Some(ca) => redis::Client::build_with_tls(self.url(), ca.certificates()),
            None => redis::Client::open(self.url()),
        }
        .expect("redis url")
    }

    pub fn keys(&self) -> std::collections::BTreeSet<String> {
        let mut connection = self.client().get_connection().expect("redis connection");
        redis::cmd("KEYS")
            .arg("*")
            .query(&mut connection)
            .expect("KEYS")
    }

    pub fn assert_no_new_keys(&self, before: &std::collections::BTreeSet<String>, what: &str) {
        assert_no_new_keys(&self.keys(), before, what);
    }

    /// `settings` in production mode on this server.
    pub fn apply(&self, mut settings: Settings) -> Settings {
        settings.mode = otpd::config::Mode::Production;
        settings.redis.url = self.url();
        if let Some(ca) = &self.security.tls {
            settings.redis.tls_ca_file = ca.ca_file();
        }
        settings
    }

    pub fn security(&self) -> &Security {
        &self.security
    }

    /// Every key with its value bytes and its TTL in milliseconds.
    pub fn dump(&self) -> Vec<(String, Vec<u8>, i64)> {
        let mut connection = self.client().get_connection().expect("redis connection");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut connection)
            .expect("KEYS");
        keys.into_iter()
            .filter_map(|key| {
                let kind: String = redis::cmd("TYPE")
                    .arg(&key)
                    .query(&mut connection)
                    .expect("TYPE");
                let value: Vec<u8> = match kind.as_str() {
                    "string" => redis::cmd("GET")
                        .arg(&key)
                        .query(&mut connection)
                        .expect("GET"),
                    "hash" => {
                        let fields: Vec<Vec<u8>> = redis::cmd("HGETALL")
                            .arg(&key)
                            .query(&mut connection)
                            .expect("HGETALL");
                        fields.join(&b'\n')
                    }
                    "stream" => {
                        let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
                            .arg(&key)
                            .arg("-")
                            .arg("+")
                            .query(&mut connection)
                            .expect("XRANGE");
                        entries
                            .into_iter()
                            .flat_map(|(_, fields)| fields)
                            .collect::<Vec<_>>()
                            .join(&b'\n')
                    }
                    // A limit key that expired since KEYS.
                    "none" => return None,
                    other => panic!("unexpected key type {other} for {key}"),
                };
                let ttl: i64 = redis::cmd("PTTL")
                    .arg(&key)
                    .query(&mut connection)
                    .expect("PTTL");
                // -2: it expired meanwhile; -1 (no TTL) is kept for the caller.
                (ttl != -2).then_some((key, value, ttl))
            })
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub const API_KEY: &str = "otpd_test_key_for_every_service";
pub const DEMO_ONLY_KEY: &str = "otpd_test_key_for_demo_only";
/// The `demo` service's admin key (`/admin` only).
pub const ADMIN_KEY: &str = "otpd_ops_admin_key_for_demo";
pub const PHONE: &str = "+819012345678";

/// Settings for tests of everything but the abuse limits: the default
/// limits, except that every request comes from 127.0.0.1 (so per-IP limits
/// and flood shedding are lifted), conversion is not judged (tests start
/// more than they approve), and wrong codes are not delayed before the
/// verification's own attempts run out.
pub fn settings(redis: Option<&RedisServer>) -> Settings {
    let mut settings = settings_with_default_limits(redis);
    settings.http.flood_per_second = 100_000;
    settings.http.flood_burst = 100_000;
    for service in settings.services.values_mut() {
        let limits = &mut service.limits;
        limits.ip_starts = vec![RateSetting {
            count: 100_000,
            period: Duration::from_secs(60),
        }];
        limits.ip_checks = limits.ip_starts.clone();
        limits.conversion.country_min_sends = 0;
        limits.conversion.range_min_sends = 0;
        limits.failed_checks.free = limits.failed_checks.max - 1;
    }
    settings
}

/// Settings as the product ships them: the `demo` service plus `other`, two
/// keys, a fixed secret, a free port, and Redis when given.
pub fn settings_with_default_limits(redis: Option<&RedisServer>) -> Settings {
    let mut settings = Settings::dev("unused").expect("dev settings");
    settings.http.listen = "127.0.0.1:0".parse().expect("address");
    settings.grpc.listen = "127.0.0.1:0".into();
    settings.http.workers = 2;
    // Retries that take milliseconds, and a takeover after one second.
    settings.delivery.retry_base = Duration::from_millis(5);
    settings.delivery.retry_max = Duration::from_millis(20);
    settings.delivery.attempts = 3;
    settings.delivery.claim_idle = Duration::from_secs(1);
    settings.secrets = vec![SecretSettings {
        id: "test".into(),
        value: "s".repeat(32),
    }];
    settings.index_secret = Some(SecretValue("i".repeat(32)));
    // Test replicas run on manual clocks, which stand still and jump ahead
    // of Redis's; tests/api/clock.rs puts the bound back.
    settings.redis.max_clock_skew = Duration::from_secs(1000 * 24 * 3600);
    settings.api_keys = vec![
        ApiKeySettings {
            id: "all".into(),
            sha256: config::sha256_hex(API_KEY),
            services: vec!["*".into()],
            requests_per_second: None,
            assert_end_user: false,
            admin: false,
        },
        ApiKeySettings {
            id: "demo-only".into(),
            sha256: config::sha256_hex(DEMO_ONLY_KEY),
            services: vec!["demo".into()],
            requests_per_second: None,
            assert_end_user: false,
            admin: false,
        },
        ApiKeySettings {
            id: "ops".into(),
            sha256: config::sha256_hex(ADMIN_KEY),
            services: vec!["demo".into()],
            requests_per_second: None,
            assert_end_user: false,
            admin: true,
        },
    ];
    settings
        .services
        .insert("other".into(), ServiceSettings::default());
    match redis {
        Some(redis) => redis.apply(settings),
        None => settings,
    }
}

pub struct TestApp {
    pub base: String,
    /// The separate metrics listener, when `http.metrics_listen` is set.
    pub metrics_base: Option<String>,
    pub grpc_addr: Option<std::net::SocketAddr>,
    pub http: reqwest::Client,
    pub carrier: RecordingCarrier,
    pub clock: ManualClock,
    otp: Arc<Otp>,
    stop: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The replica's run, to wait for its shutdown.
    running: std::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
}

impl Drop for TestApp {
    /// A replica a test is done with stops serving and delivering, so that
    /// it cannot claim the sends of what runs next on the same Redis.
    fn drop(&mut self) {
        self.stop();
    }
}

impl TestApp {
    pub async fn spawn(settings: &Settings) -> Self {
        Self::spawn_with(settings, RecordingCarrier::new(), ManualClock::new()).await
    }

    /// A replica sharing `carrier` and `clock` with others.
    pub async fn spawn_with(
        settings: &Settings,
        carrier: RecordingCarrier,
        clock: ManualClock,
    ) -> Self {
        Self::spawn_routed(settings, vec![carrier], clock).await
    }

    /// A replica whose route tries `carriers` in order; `carrier` is the
    /// first.
    pub async fn spawn_routed(
        settings: &Settings,
        carriers: Vec<RecordingCarrier>,
        clock: ManualClock,
    ) -> Self {
        let carrier = carriers[0].clone();
        let carriers = carriers
            .into_iter()
            .map(|carrier| Arc::new(carrier) as Arc<dyn otpd::carrier::Carrier>)
            .collect();
        Self::spawn_inner(settings, Some(carriers), carrier, clock).await
    }

    /// A replica with the carriers and routes of `settings` (`carrier`
    /// then records nothing).
    pub async fn spawn_configured(settings: &Settings) -> Self {
        Self::spawn_inner(settings, None, RecordingCarrier::new(), ManualClock::new()).await
    }

    async fn spawn_inner(
        settings: &Settings,
        carriers: Option<Vec<Arc<dyn otpd::carrier::Carrier>>>,
        carrier: RecordingCarrier,
        clock: ManualClock,
    ) -> Self {
        let overrides = Overrides {
            clock: Some(Arc::new(clock.clone())),
            carriers,
        };
        // otpd's logs, shown by nextest when a test fails (the privacy test
        // installs its own subscriber first).
        let _ = tracing_subscriber::fmt()
            .with_env_filter("otpd=debug")
            .with_test_writer()
            .try_init();
        let app = App::build_with(settings, overrides).expect("app builds");
        let base = format!("http://{}", app.http_addr());
        let metrics_base = app.metrics_addr().map(|addr| format!("http://{addr}"));
        let grpc_addr = app.grpc_addr();
        let otp = app.otp();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        TestApp {
            base,
            metrics_base,
            grpc_addr,
            http: reqwest::Client::new(),
            carrier,
            clock,
            otp,
            stop: std::sync::Mutex::new(Some(stop)),
            running: std::sync::Mutex::new(Some(running)),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(API_KEY)
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn start(&self, to: &str) -> reqwest::Response {
        self.post(
            "/v1/services/demo/verifications",
            json!({ "to": to, "channel": "sms" }),
        )
        .await
    }

    /// Starts a verification that must be created; returns its id.
    pub async fn started(&self, to: &str) -> String {
        let response = self.start(to).await;
        let status = response.status();
        let body = json_of(response).await;
        assert_eq!(status, 201, "start: {body}");
        body["id"].as_str().expect("id").to_owned()
    }

    pub async fn check(&self, id: &str, code: &str) -> reqwest::Response {
        self.post(
            &format!("/v1/services/demo/verifications/{id}/check"),
            json!({ "code": code }),
        )
        .await
    }

    pub async fn resend(&self, id: &str) -> reqwest::Response {
        self.post(
            &format!("/v1/services/demo/verifications/{id}/resend"),
            json!({}),
        )
        .await
    }

    pub async fn cancel(&self, id: &str) -> reqwest::Response {
        self.post(
            &format!("/v1/services/demo/verifications/{id}/cancel"),
            json!({}),
        )
        .await
    }

    pub async fn status(&self, id: &str) -> reqwest::Response {
        self.get(&format!("/v1/services/demo/verifications/{id}"))
            .await
    }

    /// Stops serving and delivering (sends in flight stay where they are).
    pub fn stop(&self) {
        if let Some(stop) = self.stop.lock().expect("stop").take() {
            let _ = stop.send(());
        }
    }

    /// Stops, and waits until the replica has shut down.
    pub async fn stop_and_wait(&self) {
        self.stop();
        let running = self.running.lock().expect("running").take();
        if let Some(running) = running {
            running.await.expect("ran").expect("shut down cleanly");
        }
    }

    /// A GET without an API key (health, readiness, metrics).
    pub async fn public(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("sent")
    }

    /// The Prometheus exposition at `/metrics`.
    /// `/metrics`, from the metrics listener when there is one.
    /// A carrier's receipt naming only its message id, as its adapter hands
    /// it to otpd.
    pub async fn receipt(&self, carrier: &str, message_id: &str, delivered: bool) {
        let receipt = otpd::domain::CarrierReceipt {
            carrier: carrier.into(),
            message_id: message_id.into(),
            delivered,
            send: None,
        };
        self.otp.record_receipt(&receipt).await.expect("recorded");
    }

    pub async fn metrics(&self) -> String {
        let base = self.metrics_base.as_ref().unwrap_or(&self.base);
        let answer = self.http.get(format!("{base}/metrics")).send().await;
        answer.expect("sent").text().await.expect("text")
    }

    /// Polls `/readyz` until it answers 200 or `within` passes.
    pub async fn becomes_ready(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let response = self.http.get(self.url("/readyz")).send().await;
            if response.is_ok_and(|r| r.status() == 200) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Waits until the outbox holds nothing: every queued send was sent,
    /// given up or skipped.
    pub async fn settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.otp.outbox_depth().await.expect("outbox depth") > 0 {
            assert!(Instant::now() < deadline, "the outbox did not drain");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until `count` SMS have reached `e164`. A start that replaces a
    /// pending verification before its SMS went out skips that SMS (an old
    /// code is never sent), so tests that count sends across such starts
    /// wait for each one first.
    pub async fn delivered_to(&self, e164: &str, count: usize) {
        until(
            "the SMS to reach the number",
            Duration::from_secs(20),
            async || self.carrier.bodies_to(e164).len() >= count,
        )
        .await;
    }

    /// The SMS bodies sent to `e164` once the outbox has drained.
    pub async fn sent_to(&self, e164: &str) -> Vec<String> {
        self.settled().await;
        self.carrier.bodies_to(e164)
    }

    /// Every SMS sent once the outbox has drained.
    pub async fn sent_count(&self) -> usize {
        self.settled().await;
        self.carrier.count()
    }

    /// The code in the latest SMS of the verification `id`.
    pub async fn code_for(&self, id: &str) -> String {
        self.settled().await;
        let bodies = self.carrier.bodies_for(id);
        code_in(bodies.last().unwrap_or_else(|| panic!("no SMS for {id}")))
    }

    /// The code in the latest SMS to `e164`, read the way a user would.
    pub async fn sent_code(&self, e164: &str) -> String {
        let bodies = self.sent_to(e164).await;
        let body = bodies.last().unwrap_or_else(|| panic!("no SMS to {e164}"));
        code_in(body)
    }
}

/// Polls `ready` until it holds; fails the test, naming `what`, after
/// `within` (the one wait of the async tests: no test sleeps through time).
pub async fn until(what: &str, within: Duration, mut ready: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asserts that `holding` stays true for `during`: the one way tests show
/// that something does not happen (it can miss a late event, never invent
/// one).
pub async fn holds(what: &str, during: Duration, mut holding: impl AsyncFnMut() -> bool) {
    let end = Instant::now() + during;
    while Instant::now() < end {
        assert!(holding().await, "no longer holds: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The six-digit code in an SMS body (it may stand twice: in the text and
/// in the origin-bound line).
pub fn code_in(body: &str) -> String {
    let mut codes: Vec<&str> = body
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() == 6)
        .collect();
    codes.dedup();
    assert_eq!(codes.len(), 1, "one code in {body:?}");
    codes[0].to_owned()
}

/// Every line stands in `metrics` (Prometheus text); a failure shows them all.
pub fn assert_has_lines<S: AsRef<str>>(metrics: &str, lines: impl IntoIterator<Item = S>) {
    for line in lines {
        let line = line.as_ref();
        assert!(metrics.contains(line), "{line}\n{metrics}");
    }
}

/// The fenced block of `language` that follows `after` in the README.
pub fn readme_block(after: &str, language: &str) -> String {
    let readme = include_str!("../../README.md");
    let from = readme.find(after).expect("the README has the section");
    let fence = format!("```{language}\n");
    let start = from + readme[from..].find(&fence).expect("a block") + fence.len();
    let length = readme[start..].find("```").expect("the block ends");
    readme[start..start + length].to_owned()
}

/// A six-digit code other than `code`.
pub fn wrong(code: &str) -> String {
    let value: u32 = code.parse().expect("digits");
    format!("{:06}", (value + 1) % 1_000_000)
}

pub async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

/// Asserts a problem document with `status` and `code`, and a request id
/// (every answer has one); returns it.
pub async fn problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "status for {code}");
    assert!(
        response.headers().contains_key("x-request-id"),
        "no X-Request-Id on {status} {code}"
    );
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body = json_of(response).await;
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["type"], format!("urn:otpd:problem:{code}"));
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// Every log line otpd writes from now on, in this test's process (nextest
/// runs each test in a process of its own): JSON, all levels.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn install() -> Self {
        let captured = CapturedLogs::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .json()
            .with_current_span(true)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("the only subscriber in this process");
        captured
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The Redis a test runs on: one server of its own, or a Cluster shared by
/// every body of a file (`on_redis_and_cluster!`).
pub enum Backend {
    Server(RedisServer),
    Cluster(crate::topology::RedisCluster),
}

impl Backend {
    /// Settings for tests on this Redis (see `settings`).
    pub fn settings(&self) -> Settings {
        self.apply(settings(None))
    }

    /// The default limits on this Redis (see `settings_with_default_limits`).
    pub fn settings_with_default_limits(&self) -> Settings {
        self.apply(settings_with_default_limits(None))
    }

    fn apply(&self, settings: Settings) -> Settings {
        match self {
            Backend::Server(server) => server.apply(settings),
            Backend::Cluster(cluster) => cluster.settings(settings),
        }
    }

    pub fn keys(&self) -> std::collections::BTreeSet<String> {
        match self {
            Backend::Server(server) => server.keys(),
            Backend::Cluster(cluster) => cluster.keys(),
        }
    }

    /// Empties it.
    pub fn flush(&self) {
        match self {
            Backend::Server(server) => {
                let _: () = server.query(&redis::cmd("FLUSHALL")).expect("FLUSHALL");
            }
            Backend::Cluster(cluster) => cluster.flush(),
        }
    }

    pub fn assert_no_new_keys(&self, before: &std::collections::BTreeSet<String>, what: &str) {
        assert_no_new_keys(&self.keys(), before, what);
    }
}

/// Panics if `now` holds a key that is not in `before` (keys that expired
/// meanwhile are fine), but for the workers' outbox streams and the
/// readiness probes: what "stored nothing" means.
pub fn assert_no_new_keys(
    now: &std::collections::BTreeSet<String>,
    before: &std::collections::BTreeSet<String>,
    what: &str,
) {
    let new: Vec<&String> = now
        .difference(before)
        .filter(|key| !key.ends_with(":outbox") && !key.ends_with(":ready"))
        .collect();
    assert!(new.is_empty(), "{what} stored {new:?}");
}

/// Runs each test body on a Redis server of its own, and all of them, one
/// after another, on one shared Redis Cluster (three primaries, three
/// replicas), flushed between bodies.
#[macro_export]
macro_rules! on_redis_and_cluster {
    ($($name:ident),+ $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn all_on_cluster() {
            let backend = $crate::support::Backend::Cluster($crate::topology::RedisCluster::start());
            $(
                backend.flush();
                $name(&backend).await;
            )+
        }
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn on_redis() {
                    let backend = $crate::support::Backend::Server($crate::support::RedisServer::start());
                    super::$name(&backend).await;
                }
            }
        )+
    };
}

/// Runs each test body against the in-process store and against Redis,
/// and all of them, one after another, on one shared Redis Cluster (three
/// primaries, three replicas), each on a fresh otpd over a flushed cluster.
#[macro_export]
macro_rules! on_every_store {
    ($($name:ident),+ $(,)?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn all_on_cluster() {
            let cluster = $crate::topology::RedisCluster::start();
            $(
                cluster.flush();
                let app = $crate::support::TestApp::spawn(
                    &cluster.settings($crate::support::settings(None)),
                )
                .await;
                $name(&app).await;
                app.stop();
            )+
        }
        $(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_memory() {
                let app = $crate::support::TestApp::spawn(&$crate::support::settings(None)).await;
                super::$name(&app).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_redis() {
                let redis = $crate::support::RedisServer::start();
                let app = $crate::support::TestApp::spawn(&$crate::support::settings(Some(&redis))).await;
                super::$name(&app).await;
            }
        }
    )+ };
}
