//! One Prometheus registry and its typed instruments. Labels stay bounded:
//! route patterns, status codes, services, outcomes, carriers — never a
//! number, a code or an id (OBS-1).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::attestation::Refusal;
use crate::domain::{Channel, Phone};
use crate::otp::Service;
use crate::ratelimit::Scope;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    unauthorized: IntCounterVec,
    http_duration: HistogramVec,
    started: IntCounterVec,
    checks: IntCounterVec,
    sends: IntCounterVec,
    approvals: IntCounterVec,
    rate_limited: IntCounterVec,
    blocked: IntCounterVec,
    attestations: IntCounterVec,
    clock_skew: prometheus::Gauge,
    budget: IntCounterVec,
    carrier_duration: HistogramVec,
    outbox_depth: IntGauge,
    dead_letters: IntCounter,
    reroutes: IntCounterVec,
    circuits: IntGaugeVec,
    receipts: IntCounterVec,
    send_to_delivery: HistogramVec,
    outbox_oldest: prometheus::Gauge,
    time_to_approve: HistogramVec,
    redis_duration: HistogramVec,
    redis_errors: IntCounterVec,
    grpc_requests: IntCounterVec,
    grpc_duration: HistogramVec,
    events: IntCounterVec,
    event_delay: HistogramVec,
}

/// Which API a start, resend or check came through, as a metric label: a
/// team moving from Twilio Verify watches its traffic move surface by
/// surface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// `/v1`, otpd's own HTTP API.
    Http,
    Grpc,
    /// `/v2`, the Twilio Verify surface.
    TwilioVerify,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Http => "http",
            Surface::Grpc => "grpc",
            Surface::TwilioVerify => "twilio_verify",
        }
    }
}

/// What became of a check, as a metric label.
#[derive(Clone, Copy, Debug)]
pub enum CheckOutcome {
    Approved,
    Wrong,
    /// A wrong code that used up the last attempt.
    Failed,
    NotFound,
    Conflict,
}

impl CheckOutcome {
    const ALL: [CheckOutcome; 5] = [
        CheckOutcome::Approved,
        CheckOutcome::Wrong,
        CheckOutcome::Failed,
        CheckOutcome::NotFound,
        CheckOutcome::Conflict,
    ];

    fn label(self) -> &'static str {
        match self {
            CheckOutcome::Approved => "approved",
            CheckOutcome::Wrong => "wrong",
            CheckOutcome::Failed => "failed",
            CheckOutcome::NotFound => "not-found",
            CheckOutcome::Conflict => "conflict",
        }
    }
}

fn mode(monitor: bool) -> &'static str {
    if monitor {
        "monitor"
    } else {
        "enforce"
    }
}

/// Registers `metric` and hands it back.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registered(registry, counter)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets);
    registered(
        registry,
        HistogramVec::new(opts, labels).expect("valid metric"),
    )
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let build = IntGaugeVec::new(
            Opts::new("otpd_build_info", "The running otpd version."),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        registry.register(Box::new(build)).expect("unique metric");
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        Metrics {
            grpc_requests: counter(
                &registry,
                "otpd_grpc_requests_total",
                "gRPC calls answered, by method and status code.",
                &["method", "code"],
            ),
            redis_errors: counter(
                &registry,
                "otpd_redis_errors_total",
                "Redis operations that failed or timed out, by operation.",
                &["operation"],
            ),
            receipts: counter(
                &registry,
                "otpd_delivery_receipts_total",
                "Carrier receipts: delivered, undelivered, or ignored (duplicate, superseded, unknown).",
                &["carrier", "status"],
            ),
            http_requests: counter(
                &registry,
                "otpd_http_requests_total",
                "HTTP requests answered.",
                &["route", "status"],
            ),
            unauthorized: counter(
                &registry,
                "otpd_http_unauthorized_total",
                "Calls refused for their API key (HTTP 401, gRPC UNAUTHENTICATED), by the configured key id the presented key claims (otpd_<id>_…), else unknown.",
                &["api_key"],
            ),
            started: counter(
                &registry,
                "otpd_verifications_started_total",
                "Verifications started; kind is new, resend, or test (a configured test number: never sent); surface is the API called (http, grpc, twilio_verify).",
                &["service", "kind", "channel", "country", "surface"],
            ),
            checks: counter(
                &registry,
                "otpd_checks_total",
                "Code checks by outcome, by the API called (surface: http, grpc, twilio_verify).",
                &["service", "outcome", "surface"],
            ),
            sends: counter(
                &registry,
                "otpd_sends_total",
                "Carrier calls by outcome: accepted, temporary (retried) or rejected.",
                &["service", "carrier", "country", "outcome"],
            ),
            approvals: counter(
                &registry,
                "otpd_approvals_total",
                "Verifications approved, by destination country (conversion = approvals / sends).",
                &["service", "country"],
            ),
            rate_limited: counter(
                &registry,
                "otpd_rate_limited_total",
                "Requests over a limit; mode monitor means reported, not refused.",
                &["service", "scope", "mode"],
            ),
            blocked: counter(
                &registry,
                "otpd_blocked_total",
                "Sends blocked by country, number range or conversion.",
                &["service", "reason", "mode"],
            ),
            clock_skew: registered(
                &registry,
                prometheus::Gauge::new(
                    "otpd_clock_skew_seconds",
                    "This replica's clock minus Redis's, at the last readiness check.",
                )
                .expect("valid metric"),
            ),
            attestations: counter(
                &registry,
                "otpd_attestations_total",
                "Start attestations by outcome: passed, missing, invalid, expired, hostname, action, score, unavailable.",
                &["service", "provider", "outcome", "mode"],
            ),
            budget: counter(
                &registry,
                "otpd_budget_threshold_crossed_total",
                "A budget passed 50, 80 or 100 percent of its cap.",
                &["service", "budget", "threshold"],
            ),
            http_duration: histogram(
                &registry,
                "otpd_http_request_duration_seconds",
                "HTTP request latency.",
                &["route"],
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ],
            ),
            carrier_duration: histogram(
                &registry,
                "otpd_carrier_request_duration_seconds",
                "Carrier call latency.",
                &["carrier"],
                vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            ),
            send_to_delivery: histogram(
                &registry,
                "otpd_send_to_delivery_seconds",
                "From the carrier's accept to its delivery receipt.",
                &["carrier"],
                vec![1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0],
            ),
            time_to_approve: histogram(
                &registry,
                "otpd_time_to_approve_seconds",
                "From a verification's start to its approval.",
                &["service"],
                vec![
                    5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0,
                ],
            ),
            redis_duration: histogram(
                &registry,
                "otpd_redis_duration_seconds",
                "Redis scripts and commands, by operation.",
                &["operation"],
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ],
            ),
            grpc_duration: histogram(
                &registry,
                "otpd_grpc_request_duration_seconds",
                "gRPC call latency, by method.",
                &["method"],
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            ),
            outbox_depth: registered(
                &registry,
                IntGauge::new("otpd_outbox_depth", "Sends queued or in flight (sampled).")
                    .expect("valid metric"),
            ),
            dead_letters: registered(
                &registry,
                IntCounter::new(
                    "otpd_dead_letters_total",
                    "Sends given up after every attempt.",
                )
                .expect("valid metric"),
            ),
            reroutes: registered(
                &registry,
                IntCounterVec::new(
                    Opts::new(
                        "otpd_delivery_reroutes_total",
                        "Accepted sends sent once more through the next carrier (REL-4), by the carrier that accepted them, why (undelivered, no_receipt) and how the second send ended (sent, failed, skipped).",
                    ),
                    &["from", "reason", "outcome"],
                )
                .expect("valid metric"),
            ),
            circuits: registered(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "otpd_carrier_circuit_open",
                        "1 while a carrier's circuit breaker is open.",
                    ),
                    &["carrier"],
                )
                .expect("valid metric"),
            ),
            outbox_oldest: registered(
                &registry,
                prometheus::Gauge::new(
                    "otpd_outbox_oldest_age_seconds",
                    "Age of the oldest send queued or in flight (sampled; 0 when empty).",
                )
                .expect("valid metric"),
            ),
            events: counter(
                &registry,
                "otpd_events_total",
                "Lifecycle event posts to services' events endpoints, by service, type and outcome (delivered, retried: a failed try, dead_lettered: the last try failed).",
                &["service", "type", "outcome"],
            ),
            event_delay: histogram(
                &registry,
                "otpd_event_delivery_seconds",
                "From a lifecycle event to its delivery to the service's endpoint.",
                &["service"],
                vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 1800.0],
            ),
            registry,
        }
    }

    pub fn http_request(&self, route: &str, status: u16, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route])
            .observe(seconds);
    }

    /// A request refused before it could be parsed (no route, no time).
    pub fn http_unparsed(&self, status: u16) {
        self.http_requests
            .with_label_values(&["unparsed", &status.to_string()])
            .inc();
    }

    pub fn unauthorized(&self, claimed_key: &str) {
        self.unauthorized.with_label_values(&[claimed_key]).inc();
    }

    /// Creates, at 0, the series of `service` whose labels are known before
    /// any event: check outcomes, limit scopes and block reasons in the
    /// service's modes, and starts and approvals per country it sends to.
    /// A rate or ratio over them then has data from the start (a
    /// destination nobody ever verifies converts at 0, not "no data");
    /// starts and checks on the `http` surface, which every replica has.
    pub fn prepare(&self, service: &Service) {
        let name = service.name.as_str();
        let http = Surface::Http.as_str();
        for outcome in CheckOutcome::ALL {
            self.checks
                .with_label_values(&[name, outcome.label(), http]);
        }
        let monitored = |scope| mode(service.limits.monitor.contains(&scope));
        for scope in Scope::ALL {
            self.rate_limited
                .with_label_values(&[name, scope.as_str(), monitored(scope)]);
        }
        let reasons = [
            ("country", Scope::Country),
            ("range", Scope::Range),
            ("conversion", Scope::Conversion),
        ];
        for (reason, scope) in reasons {
            self.blocked
                .with_label_values(&[name, reason, monitored(scope)]);
        }
        let attestation = &service.attestation;
        let refused = mode(attestation.monitor);
        if attestation.required {
            self.attestations
                .with_label_values(&[name, "none", "missing", refused]);
        }
        for provider in attestation.providers.keys() {
            let outcomes = Refusal::ALL
                .into_iter()
                .filter(|refusal| *refusal != Refusal::Missing)
                .map(Refusal::as_str);
            for outcome in outcomes.chain(["unavailable"]) {
                self.attestations
                    .with_label_values(&[name, provider.as_str(), outcome, refused]);
            }
            self.attestations
                .with_label_values(&[name, provider.as_str(), "passed", mode(false)]);
        }
        for region in &service.limits.countries {
            if let Some(code) = Phone::calling_code(region) {
                let code = code.to_string();
                for channel in &service.channels {
                    let channel = channel.as_str();
                    self.started
                        .with_label_values(&[name, "new", channel, &code, http]);
                    if !service.test_numbers.is_empty() {
                        self.started
                            .with_label_values(&[name, "test", channel, &code, http]);
                    }
                }
                self.approvals.with_label_values(&[name, &code]);
            }
        }
    }

    /// A start or resend; `kind` is `new`, `resend` or `test`.
    pub fn started(
        &self,
        service: &str,
        kind: &str,
        channel: Channel,
        country_code: u16,
        surface: Surface,
    ) {
        let country = country_code.to_string();
        self.started
            .with_label_values(&[service, kind, channel.as_str(), &country, surface.as_str()])
            .inc();
    }

    pub fn checked(&self, service: &str, outcome: CheckOutcome, surface: Surface) {
        self.checks
            .with_label_values(&[service, outcome.label(), surface.as_str()])
            .inc();
    }

    /// One carrier call: `outcome` is accepted, temporary or rejected.
    pub fn sent(&self, service: &str, carrier: &str, country_code: u16, outcome: &str) {
        self.sends
            .with_label_values(&[service, carrier, &country_code.to_string(), outcome])
            .inc();
    }

    pub fn carrier_request(&self, carrier: &str, seconds: f64) {
        self.carrier_duration
            .with_label_values(&[carrier])
            .observe(seconds);
    }

    pub fn outbox_depth(&self, depth: u64) {
        self.outbox_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    pub fn circuit_open(&self, carrier: &str, open: bool) {
        self.circuits
            .with_label_values(&[carrier])
            .set(i64::from(open));
    }

    /// A receipt, and for one that recorded an outcome, how long the
    /// message took from the carrier's accept.
    pub fn receipt(&self, carrier: &str, status: &str, took: Option<f64>) {
        self.receipts.with_label_values(&[carrier, status]).inc();
        if let Some(seconds) = took {
            self.send_to_delivery
                .with_label_values(&[carrier])
                .observe(seconds);
        }
    }

    pub fn outbox_oldest_age(&self, seconds: f64) {
        self.outbox_oldest.set(seconds);
    }

    pub fn dead_letter(&self) {
        self.dead_letters.inc();
    }

    /// A lifecycle event post; a delivered one with how long it waited.
    pub fn event(&self, service: &str, kind: &str, outcome: &str, waited: Option<f64>) {
        self.events
            .with_label_values(&[service, kind, outcome])
            .inc();
        if let Some(seconds) = waited {
            self.event_delay
                .with_label_values(&[service])
                .observe(seconds);
        }
    }

    /// A re-routed send finished (REL-4).
    pub fn reroute(&self, from: &str, reason: &str, outcome: &str) {
        self.reroutes
            .with_label_values(&[from, reason, outcome])
            .inc();
    }

    /// An approval, and how long it took from the start (the user's wait
    /// for the SMS plus typing).
    pub fn approved(&self, service: &str, country_code: u16, seconds: f64) {
        self.approvals
            .with_label_values(&[service, &country_code.to_string()])
            .inc();
        self.time_to_approve
            .with_label_values(&[service])
            .observe(seconds);
    }

    pub fn grpc_request(&self, method: &str, code: &str, seconds: f64) {
        self.grpc_requests.with_label_values(&[method, code]).inc();
        self.grpc_duration
            .with_label_values(&[method])
            .observe(seconds);
    }

    /// One Redis operation (a script or command, by use-case name).
    pub fn redis(&self, operation: &str, seconds: f64, failed: bool) {
        self.redis_duration
            .with_label_values(&[operation])
            .observe(seconds);
        // The errors' series exists from the operation's first run, at 0.
        let errors = self.redis_errors.with_label_values(&[operation]);
        if failed {
            errors.inc();
        }
    }

    pub fn rate_limited(&self, service: &str, scope: &str, monitor: bool) {
        self.rate_limited
            .with_label_values(&[service, scope, mode(monitor)])
            .inc();
    }

    pub fn blocked(&self, service: &str, reason: &str, monitor: bool) {
        self.blocked
            .with_label_values(&[service, reason, mode(monitor)])
            .inc();
    }

    pub fn clock_skew(&self, seconds: f64) {
        self.clock_skew.set(seconds);
    }

    /// A start's attestation; `monitor` when a refusal was let through.
    pub fn attested(&self, service: &str, provider: &str, outcome: &str, monitor: bool) {
        self.attestations
            .with_label_values(&[service, provider, outcome, mode(monitor)])
            .inc();
    }

    pub fn budget_crossed(&self, service: &str, budget: &str, threshold: u64) {
        self.budget
            .with_label_values(&[service, budget, &threshold.to_string()])
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("metrics are UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
