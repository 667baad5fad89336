//! Settings: compiled-in defaults (`config/defaults.toml`, which doubles as
//! the reference) < the `--config` file < `OTPD_*` variables, read once and
//! validated before anything starts. Without `--config` otpd runs in dev
//! mode: in-process store, console carrier, one `demo` service, and a fresh
//! API key and secret.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use rand::rngs::OsRng;
use rand::TryRngCore;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::carrier::{SmppSettings, TwilioSettings, VonageSettings, WebhookSettings};
use crate::delivery::DeliverySettings;
use crate::domain::{
    Channel, Code, DisplayName, DisplayNameError, Locale, Phone, Region, ServiceName,
};
use crate::otp::{Secret, Service};
use crate::sms::{segments, Origin, Template};
use crate::store::RedisSettings;
use crate::tls::TlsSettings;

mod limits;
mod twilio_verify;

pub use self::limits::{GlobalLimitSettings, LimitSettings, RateSetting};
pub use self::twilio_verify::{Credential, CredentialSettings, TwilioVerify, TwilioVerifySettings};

const DEFAULTS: &str = include_str!("../../config/defaults.toml");
/// SEC-3: no code outlives ten minutes.
const MAX_TTL: Duration = Duration::from_secs(600);
const MIN_SECRET_BYTES: usize = 32;

pub const DEFAULT_TEMPLATE_EN: &str =
    "Your {service} code is {code}. It expires in {minutes} minutes. Never share it.";
/// One UCS-2 segment with a 20-character display name and a 10-digit code.
pub const DEFAULT_TEMPLATE_JA: &str =
    "【{service}】認証コード：{code}（{minutes}分間有効）。このコードを他人に教えないでください。";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(skip)]
    pub mode: Mode,
    pub http: HttpSettings,
    pub grpc: GrpcSettings,
    pub tls: TlsSettings,
    pub log: LogSettings,
    pub redis: RedisSettings,
    pub idempotency: IdempotencySettings,
    pub delivery: DeliverySettings,
    /// How lifecycle events reach the services that have an endpoint.
    pub events: crate::events::EventSettings,
    pub carriers: BTreeMap<String, CarrierSettings>,
    pub routing: RoutingSettings,
    pub secrets: Vec<SecretSettings>,
    /// Keys what otpd counts and indexes (limits, failure counters, the
    /// number index, Idempotency-Keys); unlike `secrets`, never rotated.
    pub index_secret: Option<SecretValue>,
    pub api_keys: Vec<ApiKeySettings>,
    /// The Twilio Verify v2 surface (`/v2`); off without credentials.
    #[serde(default)]
    pub twilio_verify: TwilioVerifySettings,
    pub services: BTreeMap<String, ServiceSettings>,
    #[serde(default)]
    pub limits: GlobalLimitSettings,
    /// Price of one SMS segment per region, in the currency of the budgets.
    #[serde(default)]
    pub pricing: BTreeMap<String, f64>,
    /// Price of one call per region, in the same currency (a region with
    /// none: a call costs what an SMS does).
    #[serde(default)]
    pub voice_pricing: BTreeMap<String, f64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// In-process store, generated key and secret; never for real users.
    #[default]
    Dev,
    /// Redis, configured secrets and keys.
    Production,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    /// Time for a request's headers, and again for its body: slower
    /// clients get 408 and are disconnected.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// An idle keep-alive connection closes after this.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Connections one worker holds at once; more wait to be accepted.
    pub max_connections: usize,
    /// What a 429 tells of the limit in the draft RateLimit fields.
    pub ratelimit_fields: RateLimitFields,
    pub workers: usize,
    /// Peers whose `Forwarded` / `X-Forwarded-For` are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// IPv6 clients are limited per prefix of this length.
    pub ipv6_prefix: u8,
    /// In-process flood shedding per client IP, before Redis.
    pub flood_per_second: u32,
    pub flood_burst: u32,
    /// When set, `/metrics` is served here only, not on `listen`.
    pub metrics_listen: Option<SocketAddr>,
}

/// `[grpc]`: the gRPC API's listener.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcSettings {
    /// Where the gRPC API listens; empty: no gRPC API.
    pub listen: String,
    /// Time for one call, its request included: slower calls end
    /// CANCELLED.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Connections held at once; more wait to be accepted.
    pub max_connections: usize,
    /// Calls in flight on one connection (HTTP/2 SETTINGS).
    pub max_concurrent_streams: u32,
    /// A connection is asked to go away (GOAWAY) after this, and closed
    /// `request_timeout` later, so none is held for ever.
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub filter: String,
    /// OTLP/HTTP collector base URL (e.g. `http://otel-collector:4318`);
    /// empty: no traces exported.
    pub otlp_endpoint: String,
}

/// `http.ratelimit_fields`: the draft RateLimit fields (an Internet-Draft,
/// RL-5) on a 429; `Retry-After` is always sent.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitFields {
    /// None.
    Off,
    /// The tenant's own quotas (budgets, the API key's rate) in full; the
    /// fraud limits by scope name only, their thresholds undisclosed
    /// (ABU-11).
    Names,
    /// Every policy with its quota and window.
    Full,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencySettings {
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

/// `[carriers.<name>]`: one carrier, by kind.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CarrierSettings {
    /// Prints each SMS, code included: dev only.
    Console,
    /// Accepts and drops every SMS: benchmarks.
    Null,
    /// POSTs each SMS, signed, to the operator's URL.
    Webhook(WebhookSettings),
    /// Twilio Programmable Messaging.
    Twilio(TwilioSettings),
    /// The Vonage SMS API (and the Voice API, with an application).
    Vonage(VonageSettings),
    /// SMPP 3.4 to the carrier's SMSC.
    Smpp(SmppSettings),
}

impl CarrierSettings {
    /// Whether the carrier can place a call as configured.
    pub fn places_calls(&self) -> bool {
        match self {
            CarrierSettings::Console | CarrierSettings::Webhook(_) => true,
            CarrierSettings::Twilio(twilio) => twilio.from.is_some(),
            CarrierSettings::Vonage(vonage) => vonage.application_id.is_some(),
            CarrierSettings::Null | CarrierSettings::Smpp(_) => false,
        }
    }
}

/// `[routing]`: which carriers, in which order, per destination region.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSettings {
    pub default: Vec<String>,
    pub by_region: BTreeMap<String, Vec<String>>,
    /// Carriers tried in order for calls (channel `voice`).
    pub voice: Vec<String>,
    /// Try the next carrier after a rejection too (a second paid try).
    pub failover_on_rejection: bool,
    /// Consecutive failures that open a carrier's circuit …
    pub circuit_failures: u32,
    /// … for this long, then one probe.
    #[serde(with = "humantime_serde")]
    pub circuit_cooldown: Duration,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSettings {
    pub id: String,
    pub value: String,
}

impl std::fmt::Debug for SecretSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SecretSettings {{ id: {:?}, value: [redacted] }}",
            self.id
        )
    }
}

/// A secret string from the settings, never shown by `Debug`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct SecretValue(pub String);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySettings {
    pub id: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    /// Service names, or `"*"` for all.
    pub services: Vec<String>,
    /// Optional cap on this key's requests per second.
    #[serde(default)]
    pub requests_per_second: Option<u32>,
    /// The key's holder (a backend) may assert the end user's context
    /// (`end_user`); off: such a request is refused.
    #[serde(default)]
    pub assert_end_user: bool,
    /// An admin key: it may call only `/admin` (read and lift lockouts and
    /// blocks), and no admin key may call `/v1`.
    #[serde(default)]
    pub admin: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSettings {
    pub display_name: Option<String>,
    pub code_length: usize,
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    pub max_attempts: u32,
    pub max_sends: u32,
    #[serde(with = "humantime_serde")]
    pub resend_cooldown: Duration,
    #[serde(with = "humantime_serde")]
    pub max_resend_cooldown: Duration,
    pub default_region: String,
    pub default_locale: String,
    pub templates: BTreeMap<String, String>,
    /// The host of the origin-bound autofill line (`@example.com #123456`).
    pub origin: Option<String>,
    /// The most SMS segments a message may cost.
    pub max_segments: usize,
    pub limits: LimitSettings,
    /// Numbers with fixed codes (`{ "+819099990001" = "123456" }`): never
    /// sent, for app-store review and end-to-end tests.
    pub test_numbers: BTreeMap<String, String>,
    /// Production mode refuses `test_numbers` unless this is set.
    pub allow_test_numbers: bool,
    /// Tokens a start must (or may) carry before an SMS is paid for.
    pub attestation: crate::attestation::AttestationSettings,
    /// Channels a start may ask for: `["sms"]` unless `"voice"` is added.
    pub channels: Vec<Channel>,
    /// Whether calls may go to fixed lines and IP phones (050), which SMS
    /// never reaches; premium, shared-cost, toll-free and M2M never.
    pub voice_landlines: bool,
    /// Automatic fallback: while the verification is neither approved nor
    /// canceled, each step resends on its channel `after` the start (at
    /// once when the latest SMS's receipt says undelivered).
    pub fallback: Vec<FallbackStep>,
    /// Where its lifecycle events go (signed as the `webhook` carrier
    /// signs); none when unset.
    pub events: Option<crate::carrier::WebhookSettings>,
}

/// One step of a service's fallback workflow.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FallbackStep {
    pub channel: Channel,
    #[serde(with = "humantime_serde")]
    pub after: Duration,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            display_name: None,
            code_length: 6,
            ttl: Duration::from_secs(300),
            max_attempts: 5,
            max_sends: 5,
            resend_cooldown: Duration::from_secs(30),
            max_resend_cooldown: Duration::from_secs(600),
            default_region: "JP".into(),
            default_locale: "ja".into(),
            templates: BTreeMap::from([
                ("en".into(), DEFAULT_TEMPLATE_EN.into()),
                ("ja".into(), DEFAULT_TEMPLATE_JA.into()),
            ]),
            origin: None,
            max_segments: 1,
            limits: LimitSettings::default(),
            test_numbers: BTreeMap::new(),
            allow_test_numbers: false,
            attestation: Default::default(),
            channels: vec![Channel::Sms],
            voice_landlines: false,
            fallback: Vec::new(),
            events: None,
        }
    }
}

/// An invalid setting, named by its path.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// What could not be read, a line per error (`read_error`).
    #[error("{0}")]
    Read(String),
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

/// Each of figment's errors on a line of its own, once: the key as the
/// reference names it (`http.listen`, not figment's `default.http.listen`),
/// what is wrong, and where the value came from (the file, or the `OTPD_*`
/// variable by its name).
fn read_error(errors: figment::Error) -> ConfigError {
    let lines: Vec<String> = errors
        .into_iter()
        .map(|error| {
            let path = &error.path;
            let origin = match &error.metadata {
                Some(metadata) if metadata.name.contains("environment variable") => {
                    let name: Vec<String> =
                        path.iter().map(|key| key.to_ascii_uppercase()).collect();
                    format!(" (from the environment variable OTPD_{})", name.join("__"))
                }
                Some(figment::Metadata {
                    source: Some(figment::Source::File(file)),
                    ..
                }) => format!(" (in {})", file.display()),
                _ => String::new(),
            };
            let kind = error.kind.to_string();
            let problem = kind.lines().next().unwrap_or_default();
            match path.join(".") {
                key if key.is_empty() => format!("{problem}{origin}"),
                key => format!("{key}: {problem}{origin}"),
            }
        })
        .collect();
    ConfigError::Read(lines.join("\n"))
}

pub(crate) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// An API key as checked at request time.
#[derive(Clone, Debug)]
pub struct ApiKey {
    pub id: String,
    pub sha256: [u8; 32],
    /// `None` means every service.
    pub services: Option<Vec<ServiceName>>,
    pub requests_per_second: Option<u32>,
    pub assert_end_user: bool,
    pub admin: bool,
}

/// What `validate` makes of the settings: the typed pieces `startup` wires.
pub struct Validated {
    pub secrets: Vec<Secret>,
    pub index_secret: Zeroizing<Vec<u8>>,
    pub api_keys: Vec<ApiKey>,
    pub services: BTreeMap<ServiceName, Service>,
    pub twilio_verify: Option<TwilioVerify>,
}

impl Settings {
    /// Production settings: defaults < `file` < `OTPD_*`.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let figment = Figment::from(Toml::string(DEFAULTS))
            .merge(Toml::file_exact(file))
            .merge(Env::prefixed("OTPD_").split("__"));
        let mut settings: Settings = figment.extract().map_err(read_error)?;
        settings.mode = Mode::Production;
        Ok(settings)
    }

    /// Dev mode: defaults < `OTPD_*`, plus the `demo` service, a generated
    /// secret and the generated API key `dev_api_key`.
    pub fn dev(dev_api_key: &str) -> Result<Self, ConfigError> {
        let figment =
            Figment::from(Toml::string(DEFAULTS)).merge(Env::prefixed("OTPD_").split("__"));
        let mut settings: Settings = figment.extract().map_err(read_error)?;
        settings.mode = Mode::Dev;
        settings
            .services
            .entry("demo".into())
            .or_insert_with(|| ServiceSettings {
                display_name: Some("Demo".into()),
                ..ServiceSettings::default()
            });
        if settings.secrets.is_empty() {
            settings.secrets.push(SecretSettings {
                id: "dev".into(),
                value: random_token(48),
            });
        }
        if settings.index_secret.is_none() {
            settings.index_secret = Some(SecretValue(random_token(48)));
        }
        settings.api_keys.push(ApiKeySettings {
            id: "dev".into(),
            sha256: sha256_hex(dev_api_key),
            services: vec!["demo".into()],
            requests_per_second: None,
            assert_end_user: false,
            admin: false,
        });
        Ok(settings)
    }

    /// Checks every bound and builds the typed pieces; the error names the key.
    pub fn validate(&self) -> Result<Validated, ConfigError> {
        if self.mode == Mode::Production && !self.redis.is_configured() {
            return Err(invalid(
                "redis.url",
                "required in production mode (or redis.sentinel.nodes, or redis.cluster.nodes)",
            ));
        }
        if let Some((key, reason)) = self.redis.problem() {
            return Err(invalid(key, reason));
        }
        if self.redis.is_configured() && redis_prefix_invalid(&self.redis.key_prefix) {
            return Err(invalid(
                "redis.key_prefix",
                "use 1 to 32 of A-Z, a-z, 0-9, '-', '_', '.'",
            ));
        }
        self.validate_routing()?;
        self.delivery.validate()?;
        self.events.validate()?;
        if self.http.max_body_bytes < 256 {
            return Err(invalid("http.max_body_bytes", "must be at least 256"));
        }
        self.validate_connections()?;
        if let Some((key, problem)) = self.tls.problem() {
            return Err(invalid(key, problem));
        }
        let secrets = self.validate_secrets()?;
        let index_secret = match &self.index_secret {
            Some(SecretValue(value)) if value.len() >= MIN_SECRET_BYTES => {
                Zeroizing::new(value.as_bytes().to_vec())
            }
            Some(_) => return Err(invalid("index_secret", "must be at least 32 bytes")),
            None => {
                return Err(invalid(
                    "index_secret",
                    "required: 32 bytes or more, kept when secrets rotate",
                ))
            }
        };
        if self.http.ipv6_prefix > 128 || self.http.ipv6_prefix < 32 {
            return Err(invalid("http.ipv6_prefix", "between 32 and 128"));
        }
        if self.http.flood_per_second == 0 || self.http.flood_burst == 0 {
            return Err(invalid(
                "http.flood_per_second",
                "flood_per_second and flood_burst must be at least 1",
            ));
        }
        let shared = limits::Shared {
            global: &self.limits,
            pricing: &self.pricing,
            voice_pricing: &self.voice_pricing,
            ipv6_prefix: self.http.ipv6_prefix,
        };
        let services = self
            .services
            .iter()
            .map(|(name, settings)| {
                validate_service(name, settings, &shared, self.mode)
                    .map(|service| (service.name.clone(), service))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        if services.is_empty() {
            return Err(invalid("services", "configure at least one service"));
        }
        let api_keys = self.validate_api_keys(&services)?;
        let twilio_verify = self.twilio_verify.validate(&api_keys, &services)?;
        Ok(Validated {
            secrets,
            index_secret,
            api_keys,
            services,
            twilio_verify,
        })
    }

    fn validate_connections(&self) -> Result<(), ConfigError> {
        let (http, grpc) = (&self.http, &self.grpc);
        let positive = [
            ("http.request_timeout", !http.request_timeout.is_zero()),
            ("http.keep_alive", !http.keep_alive.is_zero()),
            ("http.max_connections", http.max_connections > 0),
            ("grpc.request_timeout", !grpc.request_timeout.is_zero()),
            ("grpc.max_connections", grpc.max_connections > 0),
            (
                "grpc.max_concurrent_streams",
                grpc.max_concurrent_streams > 0,
            ),
            (
                "grpc.max_connection_age",
                !grpc.max_connection_age.is_zero(),
            ),
        ];
        match positive.iter().find(|(_, valid)| !valid) {
            Some((key, _)) => Err(invalid(*key, "must be more than 0")),
            None => Ok(()),
        }
    }

    fn validate_routing(&self) -> Result<(), ConfigError> {
        let routing = &self.routing;
        if routing.default.is_empty() {
            return Err(invalid("routing.default", "name at least one carrier"));
        }
        let routes = [
            ("routing.default".to_owned(), &routing.default),
            ("routing.voice".to_owned(), &routing.voice),
        ]
        .into_iter()
        .chain(
            routing
                .by_region
                .iter()
                .map(|(region, route)| (format!("routing.by_region.{region}"), route)),
        );
        for (key, route) in routes {
            if let Some(unknown) = route.iter().find(|name| !self.carriers.contains_key(*name)) {
                return Err(invalid(
                    key,
                    format!("{unknown:?} is not a configured carrier"),
                ));
            }
        }
        for region in routing.by_region.keys() {
            region
                .parse::<Region>()
                .map_err(|e| invalid(format!("routing.by_region.{region}"), e))?;
        }
        if routing.circuit_failures == 0 {
            return Err(invalid("routing.circuit_failures", "at least 1"));
        }
        if let Some(name) = routing
            .voice
            .iter()
            .find(|name| !self.carriers[*name].places_calls())
        {
            return Err(invalid(
                "routing.voice",
                format!("{name:?} cannot place calls (twilio needs from, vonage application_id and private_key_file; smpp and null never)"),
            ));
        }
        let calls = self
            .services
            .iter()
            .find(|(_, service)| service.channels.contains(&Channel::Voice));
        if let (Some((name, _)), true) = (calls, routing.voice.is_empty()) {
            return Err(invalid(
                "routing.voice",
                format!("services.{name} takes voice: name at least one carrier that places calls"),
            ));
        }
        Ok(())
    }

    fn validate_secrets(&self) -> Result<Vec<Secret>, ConfigError> {
        if self.secrets.is_empty() {
            return Err(invalid(
                "secrets",
                "configure at least one secret of 32 bytes or more",
            ));
        }
        let mut ids = std::collections::HashSet::new();
        self.secrets
            .iter()
            .enumerate()
            .map(|(at, secret)| {
                let key = format!("secrets[{at}]");
                if secret.id.is_empty() || secret.id.len() > 32 || !ids.insert(secret.id.as_str()) {
                    return Err(invalid(format!("{key}.id"), "1 to 32 characters, unique"));
                }
                if secret.value.len() < MIN_SECRET_BYTES {
                    return Err(invalid(format!("{key}.value"), "must be at least 32 bytes"));
                }
                Ok(Secret {
                    id: secret.id.clone(),
                    value: Zeroizing::new(secret.value.as_bytes().to_vec()),
                })
            })
            .collect()
    }

    fn validate_api_keys(
        &self,
        services: &BTreeMap<ServiceName, Service>,
    ) -> Result<Vec<ApiKey>, ConfigError> {
        if self.api_keys.is_empty() {
            return Err(invalid("api_keys", "configure at least one API key"));
        }
        self.api_keys
            .iter()
            .enumerate()
            .map(|(at, key)| {
                let path = format!("api_keys[{at}]");
                let sha256 = parse_hex(&key.sha256)
                    .ok_or_else(|| invalid(format!("{path}.sha256"), "64 hex digits"))?;
                let allowed = if key.services.iter().any(|s| s == "*") {
                    None
                } else {
                    let names = key.services.iter().map(|name| {
                        name.parse::<ServiceName>()
                            .ok()
                            .filter(|name| services.contains_key(name))
                            .ok_or_else(|| {
                                invalid(
                                    format!("{path}.services"),
                                    format!("{name:?} is not a configured service"),
                                )
                            })
                    });
                    Some(names.collect::<Result<Vec<_>, _>>()?)
                };
                if key.requests_per_second == Some(0) {
                    return Err(invalid(format!("{path}.requests_per_second"), "at least 1"));
                }
                Ok(ApiKey {
                    id: key.id.clone(),
                    sha256,
                    services: allowed,
                    requests_per_second: key.requests_per_second,
                    assert_end_user: key.assert_end_user,
                    admin: key.admin,
                })
            })
            .collect()
    }
}

fn redis_prefix_invalid(prefix: &str) -> bool {
    !(1..=32).contains(&prefix.len())
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn validate_service(
    name: &str,
    settings: &ServiceSettings,
    shared: &limits::Shared<'_>,
    mode: Mode,
) -> Result<Service, ConfigError> {
    let key = |field: &str| format!("services.{name}.{field}");
    let service_name: ServiceName = name
        .parse()
        .map_err(|e| invalid(format!("services.{name}"), format!("{e}")))?;
    if !Code::LENGTHS.contains(&settings.code_length) {
        return Err(invalid(
            key("code_length"),
            format!("{} is outside 6..=10 (SEC-2)", settings.code_length),
        ));
    }
    if settings.ttl > MAX_TTL || settings.ttl < Duration::from_secs(1) {
        let shown = humantime::format_duration(settings.ttl);
        return Err(invalid(
            key("ttl"),
            format!("{shown} is outside 1s..=10m (NIST SP 800-63B, SEC-3)"),
        ));
    }
    if !(1..=10).contains(&settings.max_attempts) {
        return Err(invalid(
            key("max_attempts"),
            format!("{} is outside 1..=10", settings.max_attempts),
        ));
    }
    if !(1..=10).contains(&settings.max_sends) {
        return Err(invalid(
            key("max_sends"),
            format!("{} is outside 1..=10", settings.max_sends),
        ));
    }
    if settings.resend_cooldown > MAX_TTL || settings.max_resend_cooldown < settings.resend_cooldown
    {
        return Err(invalid(
            key("resend_cooldown"),
            "may not exceed 10m nor max_resend_cooldown",
        ));
    }
    let default_region: Region = settings
        .default_region
        .parse()
        .map_err(|e: String| invalid(key("default_region"), e))?;
    let display_name: DisplayName = settings
        .display_name
        .as_deref()
        .unwrap_or(name)
        .parse()
        .map_err(|e: DisplayNameError| invalid(key("display_name"), e.to_string()))?;
    let templates = settings
        .templates
        .iter()
        .map(|(locale, text)| {
            let path = key(&format!("templates.{locale}"));
            let locale: Locale = locale.parse().map_err(|e| invalid(&path, format!("{e}")))?;
            let template = Template::parse(text).map_err(|e| invalid(&path, format!("{e}")))?;
            Ok((locale, template))
        })
        .collect::<Result<BTreeMap<_, _>, ConfigError>>()?;
    for required in ["en", "ja"] {
        if !settings.templates.contains_key(required) {
            return Err(invalid(
                key("templates"),
                format!("a template for {required:?} is required"),
            ));
        }
    }
    let default_locale: Locale = settings
        .default_locale
        .parse()
        .map_err(|e| invalid(key("default_locale"), format!("{e}")))?;
    if !templates.contains_key(&default_locale) {
        return Err(invalid(key("default_locale"), "has no template"));
    }
    if !(1..=10).contains(&settings.max_segments) {
        return Err(invalid(
            key("max_segments"),
            "1..=10 (carriers concatenate at most 10)",
        ));
    }
    let origin = settings
        .origin
        .as_deref()
        .map(Origin::parse)
        .transpose()
        .map_err(|e| invalid(key("origin"), e.to_string()))?;
    let test_numbers = test_numbers(name, settings, default_region, mode)?;
    let service = Service {
        test_numbers,
        attestation: settings.attestation.rules(&key("attestation"))?,
        limits: settings.limits.policy(&key("limits"), shared)?,
        max_resend_cooldown: settings.max_resend_cooldown,
        name: service_name,
        display_name,
        code_length: settings.code_length,
        ttl: settings.ttl,
        max_attempts: settings.max_attempts,
        max_sends: settings.max_sends,
        resend_cooldown: settings.resend_cooldown,
        default_region,
        default_locale,
        templates,
        origin,
        max_segments: settings.max_segments,
        channels: settings.channels.iter().copied().collect(),
        voice_landlines: settings.voice_landlines,
        fallback: fallback(&key("fallback"), settings)?,
    };
    // SMS-5: every template, with its autofill line, fits the segments allowed.
    for locale in service.templates.keys() {
        let count = segments(
            service
                .body(
                    locale,
                    &service.display_name,
                    &Code::generate(service.code_length),
                    None,
                )
                .text(),
        );
        if count > service.max_segments {
            let problem = format!(
                "renders to {count} SMS segments; max_segments is {} (SMS-5)",
                service.max_segments
            );
            return Err(invalid(key(&format!("templates.{locale}")), problem));
        }
    }
    Ok(service)
}

/// A service's test numbers, by E.164, with their fixed codes.
/// The fallback steps: each on a channel the service offers (the first on
/// a channel other than SMS), later than the one before, and within the
/// code's life.
fn fallback(path: &str, settings: &ServiceSettings) -> Result<Vec<FallbackStep>, ConfigError> {
    if settings
        .fallback
        .first()
        .is_some_and(|step| step.channel == Channel::Sms)
    {
        return Err(invalid(
            path,
            "the first step goes to another channel than sms",
        ));
    }
    let mut last = Duration::ZERO;
    for step in &settings.fallback {
        if !settings.channels.contains(&step.channel) {
            return Err(invalid(
                path,
                format!("{} is not in channels", step.channel),
            ));
        }
        if step.after <= last || step.after >= settings.ttl {
            return Err(invalid(
                path,
                "each step's after is later than the one before and shorter than ttl",
            ));
        }
        last = step.after;
    }
    Ok(settings.fallback.clone())
}

fn test_numbers(
    name: &str,
    settings: &ServiceSettings,
    default_region: Region,
    mode: Mode,
) -> Result<BTreeMap<String, Code>, ConfigError> {
    let key = format!("services.{name}.test_numbers");
    if mode == Mode::Production && !settings.test_numbers.is_empty() && !settings.allow_test_numbers
    {
        return Err(invalid(
            key,
            format!("refused in production mode unless services.{name}.allow_test_numbers = true"),
        ));
    }
    settings
        .test_numbers
        .iter()
        .map(|(number, code)| {
            let phone = Phone::parse(number, default_region)
                .map_err(|e| invalid(format!("{key}.{number}"), e.to_string()))?;
            let code = Code::parse(code, settings.code_length)
                .map_err(|e| invalid(format!("{key}.{number}"), e.to_string()))?;
            Ok((phone.e164().to_owned(), code))
        })
        .collect()
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (at, pair) in text.as_bytes().chunks(2).enumerate() {
        out[at] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    Sha256::digest(bytes.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `bytes` random bytes from the OS RNG as base64url text.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let mut raw = vec![0u8; bytes];
    OsRng.try_fill_bytes(&mut raw).expect("OS RNG");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// A new API key for the key id `id`: `otpd_<id>_` and 32 random bytes.
/// The id in it names the key in metrics when a wrong key claims it.
pub fn new_api_key(id: &str) -> String {
    format!("otpd_{id}_{}", random_token(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Settings {
        Settings::dev("otpd_dev_test").expect("dev settings")
    }

    fn rejected(settings: &Settings) -> String {
        match settings.validate() {
            Ok(_) => panic!("accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn dev_settings_are_valid() {
        let validated = dev().validate().expect("valid");
        let demo = &validated.services[&"demo".parse::<ServiceName>().expect("name")];
        assert_eq!(
            (demo.code_length, demo.ttl, demo.max_attempts),
            (6, Duration::from_secs(300), 5)
        );
        assert_eq!(demo.default_region.as_str(), "JP");
    }

    /// SEC-3: no TTL above ten minutes.
    #[test]
    fn a_ttl_above_ten_minutes_is_refused_sec_3() {
        let mut settings = dev();
        settings.services.get_mut("demo").expect("demo").ttl = Duration::from_secs(45 * 60);
        assert_eq!(
            rejected(&settings),
            "services.demo.ttl: 45m is outside 1s..=10m (NIST SP 800-63B, SEC-3)"
        );
    }

    /// Issue 15: a fallback step needs its channel offered, comes after
    /// the one before and within the code's life.
    #[test]
    fn fallback_steps_that_cannot_run_are_refused() {
        let voice = |after: u64| FallbackStep {
            channel: Channel::Voice,
            after: Duration::from_secs(after),
        };
        let with = |channels: Vec<Channel>, steps: Vec<FallbackStep>| {
            let mut settings = dev();
            settings.routing.voice = vec!["console".into()];
            let demo = settings.services.get_mut("demo").expect("demo");
            demo.channels = channels;
            demo.fallback = steps;
            settings
        };
        let both = || vec![Channel::Sms, Channel::Voice];
        assert!(with(both(), vec![voice(45)]).validate().is_ok());
        assert!(with(both(), vec![voice(45), voice(120)]).validate().is_ok());
        for (settings, says) in [
            (
                with(vec![Channel::Sms], vec![voice(45)]),
                "voice is not in channels",
            ),
            (with(both(), vec![voice(300)]), "shorter than ttl"),
            (
                with(both(), vec![voice(90), voice(45)]),
                "later than the one before",
            ),
        ] {
            let refused = rejected(&settings);
            assert!(refused.contains(says), "{refused}");
        }
    }

    /// Issue 15: a carrier that cannot place a call is refused in
    /// `routing.voice` at start-up, not at the first call.
    #[test]
    fn calls_go_only_to_carriers_that_place_them() {
        let mut settings = dev();
        settings
            .carriers
            .insert("bulk".into(), CarrierSettings::Null);
        settings.routing.voice = vec!["console".into(), "bulk".into()];
        let refused = rejected(&settings);
        assert!(refused.contains("\"bulk\" cannot place calls"), "{refused}");
        settings.routing.voice = vec!["console".into()];
        assert!(settings.validate().is_ok());
    }

    /// SEC-2: fewer than six digits is refused.
    #[test]
    fn short_codes_are_refused_sec_2() {
        let mut settings = dev();
        settings.services.get_mut("demo").expect("demo").code_length = 5;
        assert!(rejected(&settings).starts_with("services.demo.code_length: 5"));
    }

    #[test]
    fn short_secrets_are_refused_in_every_mode() {
        let mut settings = dev();
        settings.secrets = vec![SecretSettings {
            id: "k".into(),
            value: "x".repeat(31),
        }];
        assert_eq!(
            rejected(&settings),
            "secrets[0].value: must be at least 32 bytes"
        );
    }

    #[test]
    fn the_index_secret_is_required_and_at_least_32_bytes() {
        let mut settings = dev();
        settings.index_secret = None;
        assert!(rejected(&settings).starts_with("index_secret: required"));
        settings.index_secret = Some(SecretValue("x".repeat(31)));
        assert_eq!(
            rejected(&settings),
            "index_secret: must be at least 32 bytes"
        );
    }

    /// Test numbers run in dev mode; production mode refuses them unless
    /// the service enables them, and each must be a number with a code of
    /// the service's length.
    #[test]
    fn test_numbers_need_enabling_in_production() {
        let mut settings = dev();
        let demo = settings.services.get_mut("demo").expect("demo");
        demo.test_numbers = [("090-9999-0001".to_owned(), "424242".to_owned())].into();
        let validated = settings.validate().expect("dev mode takes them");
        let demo_service = validated.services.values().next().expect("demo");
        assert_eq!(
            demo_service.test_numbers.keys().collect::<Vec<_>>(),
            ["+819099990001"]
        );
        settings.mode = Mode::Production;
        settings.redis.url = "redis://127.0.0.1:1/".into();
        assert_eq!(
            rejected(&settings),
            "services.demo.test_numbers: refused in production mode unless services.demo.allow_test_numbers = true"
        );
        let demo = settings.services.get_mut("demo").expect("demo");
        demo.allow_test_numbers = true;
        assert!(settings.validate().is_ok());
        let demo = settings.services.get_mut("demo").expect("demo");
        demo.test_numbers = [("090-9999-0001".to_owned(), "4242".to_owned())].into();
        assert!(rejected(&settings).starts_with("services.demo.test_numbers.090-9999-0001: "));
    }

    #[test]
    fn production_needs_redis() {
        let mut settings = dev();
        settings.mode = Mode::Production;
        assert_eq!(
            rejected(&settings),
            "redis.url: required in production mode (or redis.sentinel.nodes, or redis.cluster.nodes)"
        );
    }

    #[test]
    fn one_redis_topology_at_a_time_complete_and_over_tls_when_a_ca_is_given() {
        type Change = fn(&mut Settings);
        let cases: [(&str, Change, &str); 4] = [
            (
                "two topologies",
                |s| s.redis.cluster.nodes = vec!["redis://a:6379".into()],
                "redis: set one of url, sentinel.nodes and cluster.nodes",
            ),
            (
                "Sentinel without a master name",
                |s| {
                    s.redis.url = String::new();
                    s.redis.sentinel.nodes = vec!["redis://s:26379".into()];
                },
                "redis.sentinel.master_name: required with sentinel.nodes",
            ),
            (
                "a CA for a plaintext URL",
                |s| s.redis.tls_ca_file = "ca.crt".into(),
                "redis.tls_ca_file: is set, but a Redis URL is redis://, not rediss://",
            ),
            (
                "too many replicas",
                |s| s.redis.replicas_ack = Some(17),
                "redis.replicas_ack: is more than 16",
            ),
        ];
        for (label, change, error) in cases {
            let mut settings = dev();
            settings.redis.url = "redis://redis:6379".into();
            change(&mut settings);
            assert_eq!(rejected(&settings), error, "{label}");
        }
    }

    /// SMS-5: a template that cannot fit one segment is refused at start-up.
    #[test]
    fn templates_must_fit_one_segment_sms_5() {
        let mut settings = dev();
        let demo = settings.services.get_mut("demo").expect("demo");
        demo.templates
            .insert("ja".into(), format!("{{code}}{}", "あ".repeat(65)));
        assert_eq!(
            rejected(&settings),
            "services.demo.templates.ja: renders to 2 SMS segments; max_segments is 1 (SMS-5)"
        );
    }

    /// The default Japanese template fits one 70-character UCS-2 SMS even
    /// with the longest display name and code.
    #[test]
    fn default_templates_fit_one_segment_at_their_longest() {
        let code = Code::generate(10);
        for (text, longest_name) in [
            (DEFAULT_TEMPLATE_EN, "x".repeat(20)),
            (DEFAULT_TEMPLATE_JA, "あ".repeat(20)),
        ] {
            let body = Template::parse(text)
                .expect("valid")
                .render(&code, &longest_name, 10);
            assert_eq!(segments(body.text()), 1, "{}", body.text().chars().count());
        }
    }

    fn demo_limits(settings: &mut Settings) -> &mut LimitSettings {
        &mut settings.services.get_mut("demo").expect("demo").limits
    }

    /// AUTO-1 + SMS-5: the origin line counts toward the segments.
    #[test]
    fn the_origin_line_must_fit_too() {
        let mut settings = dev();
        let demo = settings.services.get_mut("demo").expect("demo");
        demo.origin = Some("auth.example.co.jp".into());
        demo.display_name = Some("x".repeat(20));
        assert!(rejected(&settings)
            .starts_with("services.demo.templates.ja: renders to 2 SMS segments"));
        let demo = settings.services.get_mut("demo").expect("demo");
        demo.max_segments = 2;
        assert!(settings.validate().is_ok());
    }

    /// SEC-8: the consecutive-failure cap is always enforced.
    #[test]
    fn the_failure_cap_cannot_be_monitored_or_raised_past_100() {
        let mut settings = dev();
        demo_limits(&mut settings).monitor = vec!["check-failures".into()];
        assert!(rejected(&settings)
            .starts_with("services.demo.limits.monitor: \"check-failures\" cannot be monitored"));
        let mut settings = dev();
        demo_limits(&mut settings).failed_checks.max = 101;
        assert!(rejected(&settings)
            .starts_with("services.demo.limits.failed_checks.max: 101 is outside 1..=100"));
    }

    #[test]
    fn api_keys_must_name_configured_services() {
        let mut settings = dev();
        settings.api_keys[0].services = vec!["nope".into()];
        assert_eq!(
            rejected(&settings),
            "api_keys[0].services: \"nope\" is not a configured service"
        );
    }
}
