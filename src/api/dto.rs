//! Wire types of HTTP API v1 and their translation to and from the use
//! cases. Each bad field gets its own problem `code`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::auth::Authorized;
use super::problem::{Kind, Problem};
use crate::attestation::{Attestation, Provider, MAX_TOKEN};
use crate::domain::{Binding, Channel, Code, Locale, Phone, Reach, VerificationId};
use crate::metrics::Surface;
use crate::otp::{CheckRequest, CheckTarget, Service, StartRequest, Verification};
use crate::ratelimit::Client;
use crate::sms::AppHash;

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": "+819012345678", "channel": "sms", "locale": "ja"}))]
pub struct StartBody {
    /// E.164 or national; a mobile (for `voice`, also a fixed line or an
    /// 050 IP phone where the service allows it).
    pub to: String,
    /// `sms`, or `voice` (a call that reads the code out) where the service
    /// offers it.
    #[schema(example = "sms")]
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// Ties the verification to the caller's session (1 to 256 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    pub binding: Option<String>,
    /// The Android app's SMS Retriever hash (11 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9+/]{11}$")]
    pub app_hash: Option<String>,
    /// The end user the backend calls for, asserted by a key allowed to
    /// (`assert_end_user`): their limits apply instead of the caller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<EndUser>,
    /// A bot challenge's or app attestation's token, verified with its
    /// provider before anything is sent (services that require one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<AttestationBody>,
}

/// `{provider, token}`: the end user's token from a provider the service
/// lists.
#[derive(Clone, Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"provider": "turnstile", "token": "0.AbC…"}))]
pub struct AttestationBody {
    /// `turnstile`, `recaptcha`, `recaptcha_enterprise` or `http`.
    pub provider: String,
    /// The token the widget or app handed the end user (as given).
    #[schema(min_length = 1, max_length = 3072)]
    pub token: String,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"code": "123456"}))]
pub struct CheckBody {
    pub code: String,
    /// Ties the verification to the caller's session (1 to 256 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    pub binding: Option<String>,
    /// The end user the backend calls for, asserted by a key allowed to
    /// (`assert_end_user`): their limits apply instead of the caller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<EndUser>,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": "090-1234-5678", "code": "123456"}))]
pub struct CheckByNumberBody {
    pub to: String,
    pub code: String,
    /// Ties the verification to the caller's session (1 to 256 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 256)]
    pub binding: Option<String>,
    /// The end user the backend calls for, asserted by a key allowed to
    /// (`assert_end_user`): their limits apply instead of the caller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_user: Option<EndUser>,
}

/// The end user's context a backend asserts on their behalf.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"client_ip": "203.0.113.7", "device_id": "b2f6c1e0-app-install"}))]
pub struct EndUser {
    /// The address the end user reached the backend from (IPv4 or IPv6).
    pub client_ip: String,
    /// An opaque id of the end user's device or app install (1 to 128
    /// visible ASCII characters); per-device limits apply to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub device_id: Option<String>,
    /// An opaque id of the end user's account (1 to 128 visible ASCII
    /// characters); per-user limits apply to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub user_id: Option<String>,
}

/// Who a request's per-client limits apply to: the asserted end user when
/// the caller may assert one, else `peer` (the TCP peer, or what trusted
/// proxies said).
pub fn client(
    auth: &Authorized,
    end_user: Option<&EndUser>,
    peer: Option<IpAddr>,
) -> Result<Client, Problem> {
    let Some(end_user) = end_user else {
        return Ok(Client {
            ip: peer,
            ..Client::default()
        });
    };
    if !auth.asserts_end_user {
        return Err(Problem::new(
            Kind::Forbidden,
            "end-user-not-allowed",
            "this API key may not assert an end user (api_keys.assert_end_user)",
        ));
    }
    let ip = end_user.client_ip.trim().parse().map_err(|_| {
        Problem::bad_request("invalid-end-user", "end_user.client_ip: not an IP address")
    })?;
    Ok(Client {
        ip: Some(ip),
        device: opaque_id("end_user.device_id", end_user.device_id.as_deref())?,
        user: opaque_id("end_user.user_id", end_user.user_id.as_deref())?,
    })
}

/// An asserted id: 1 to 128 visible ASCII characters.
fn opaque_id(field: &str, raw: Option<&str>) -> Result<Option<String>, Problem> {
    raw.map(|raw| {
        let fits = (1..=128).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic());
        fits.then(|| raw.to_owned()).ok_or_else(|| {
            Problem::bad_request(
                "invalid-end-user",
                format!("{field}: 1 to 128 visible ASCII characters"),
            )
        })
    })
    .transpose()
}

/// A channel the service offers.
pub fn offered_channel(raw: &str, service: &Service) -> Result<Channel, Problem> {
    raw.parse::<Channel>()
        .ok()
        .filter(|channel| service.channels.contains(channel))
        .ok_or_else(|| {
            let offered: Vec<&str> = service.channels.iter().map(|c| c.as_str()).collect();
            Problem::bad_request(
                "unsupported-channel",
                format!("channel: this service takes {offered:?}"),
            )
        })
}

/// A resend's body: the channel to resend on, else the verification's.
#[derive(Debug, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"channel": "voice"}))]
pub struct ResendBody {
    /// `sms` or `voice`, where the service offers it; a resend on another
    /// channel kills the old code and has its own cooldown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

impl ResendBody {
    pub fn channel(&self, service: &Service) -> Result<Option<Channel>, Problem> {
        self.channel
            .as_deref()
            .map(|raw| offered_channel(raw, service))
            .transpose()
    }
}

/// A number the service can reach on any of its channels (a check, the
/// admin API).
pub fn phone(raw: &str, service: &Service) -> Result<Phone, Problem> {
    phone_for(raw, service, service.widest_reach())
}

fn phone_for(raw: &str, service: &Service, reach: Reach) -> Result<Phone, Problem> {
    Phone::parse_for(raw, service.default_region, reach).map_err(|error| {
        Problem::bad_request(
            "invalid-phone-number",
            format!("to: {error}; use E.164 (+819012345678) or a national number"),
        )
    })
}

fn code(raw: &str, service: &Service) -> Result<Code, Problem> {
    Code::parse(raw, service.code_length)
        .map_err(|error| Problem::bad_request("invalid-code", format!("code: {error}")))
}

fn binding(raw: Option<&str>) -> Result<Option<Binding>, Problem> {
    raw.map(|raw| {
        Binding::parse(raw)
            .map_err(|error| Problem::bad_request("invalid-binding", format!("binding: {error}")))
    })
    .transpose()
}

/// A malformed id cannot name a verification: 404 before the store is asked.
pub fn verification_id(raw: &str) -> Result<VerificationId, Problem> {
    raw.parse().map_err(|_| {
        Problem::new(
            Kind::NotFound,
            "verification-not-found",
            "no pending verification with that id",
        )
    })
}

impl StartBody {
    /// The request's locale is the body's, else the first language of
    /// `Accept-Language` the service has a template for, else the default.
    pub fn to_request(
        &self,
        service: &Service,
        client: Client,
        surface: Surface,
        accept_language: Option<&str>,
    ) -> Result<StartRequest, Problem> {
        let channel = offered_channel(&self.channel, service)?;
        let locale = match self.locale.as_deref() {
            Some(raw) => Some(raw.parse::<Locale>().map_err(|error| {
                Problem::bad_request("invalid-locale", format!("locale: {error}"))
            })?),
            None => accept_language.and_then(|header| preferred(header, service)),
        };
        let app_hash = self
            .app_hash
            .as_deref()
            .map(|raw| {
                AppHash::parse(raw)
                    .map_err(|error| Problem::bad_request("invalid-app-hash", error.to_string()))
            })
            .transpose()?;
        Ok(StartRequest {
            attestation: self
                .attestation
                .as_ref()
                .map(|body| attestation(body, service))
                .transpose()?,
            client,
            app_hash,
            service: service.name.clone(),
            to: phone_for(&self.to, service, service.reach(channel))?,
            channel,
            locale,
            binding: binding(self.binding.as_deref())?,
            display_name: None,
            surface,
        })
    }
}

/// A start's attestation, from a provider the service takes.
fn attestation(body: &AttestationBody, service: &Service) -> Result<Attestation, Problem> {
    let provider = Provider::parse(&body.provider)
        .filter(|provider| service.attestation.providers.contains_key(provider))
        .ok_or_else(|| {
            let taken: Vec<_> = service
                .attestation
                .providers
                .keys()
                .map(|provider| provider.as_str())
                .collect();
            Problem::bad_request(
                "invalid-attestation",
                format!("attestation.provider: this service takes {taken:?}"),
            )
        })?;
    if body.token.is_empty() || body.token.len() > MAX_TOKEN {
        return Err(Problem::bad_request(
            "invalid-attestation",
            format!("attestation.token: 1 to {MAX_TOKEN} bytes"),
        ));
    }
    Ok(Attestation {
        provider,
        token: body.token.clone(),
    })
}

/// The most preferred language of an `Accept-Language` value that the
/// service has a template for (RFC 9110 §12.5.4; `q=0` means "not this").
fn preferred(header: &str, service: &Service) -> Option<Locale> {
    let mut ranked: Vec<(u16, Locale)> = header
        .split(',')
        .filter_map(|item| {
            let mut parts = item.split(';').map(str::trim);
            let locale = parts.next()?.parse::<Locale>().ok()?;
            let weight =
                parts
                    .find_map(|param| param.strip_prefix("q="))
                    .map_or(Some(1000), |q| {
                        q.parse::<f32>()
                            .ok()
                            .map(|q| (q.clamp(0.0, 1.0) * 1000.0) as u16)
                    })?;
            (weight > 0 && service.templates.contains_key(&locale)).then_some((weight, locale))
        })
        .collect();
    ranked.sort_by_key(|(weight, _)| std::cmp::Reverse(*weight));
    ranked.into_iter().next().map(|(_, locale)| locale)
}

impl CheckBody {
    pub fn to_request(
        &self,
        service: &Service,
        id: VerificationId,
        client: Client,
        surface: Surface,
    ) -> Result<CheckRequest, Problem> {
        Ok(CheckRequest {
            client,
            service: service.name.clone(),
            target: CheckTarget::Id(id),
            code: code(&self.code, service)?,
            binding: binding(self.binding.as_deref())?,
            surface,
        })
    }
}

impl CheckByNumberBody {
    pub fn to_request(
        &self,
        service: &Service,
        client: Client,
        surface: Surface,
    ) -> Result<CheckRequest, Problem> {
        Ok(CheckRequest {
            client,
            service: service.name.clone(),
            target: CheckTarget::Number(phone(&self.to, service)?),
            code: code(&self.code, service)?,
            binding: binding(self.binding.as_deref())?,
            surface,
        })
    }
}

/// A verification's representation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VerificationView {
    pub id: String,
    pub service: String,
    pub to: String,
    pub channel: &'static str,
    pub status: &'static str,
    pub created_at: String,
    pub expires_at: String,
    pub resend_after: String,
    pub sends: u32,
    pub attempts_left: u32,
    pub delivery: DeliveryView,
}

/// The latest send: `queued`, `sent` (with the carrier and its message
/// id), `delivered` or `undelivered` (its receipt said so),
/// `delivery_unknown` (no receipt within `delivery.receipt_timeout`) or
/// `failed`. A send that went once more through the next carrier (REL-4)
/// names the carrier it was re-routed from and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    #[schema(value_type = String, example = "sent")]
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerouted_from: Option<String>,
    /// `undelivered`, `no_receipt`, `fallback` (a fallback step's time
    /// came) or `send_failed` (every route of the first channel failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub reroute_reason: Option<&'static str>,
}

impl From<&Verification> for VerificationView {
    fn from(v: &Verification) -> Self {
        VerificationView {
            id: v.id.to_string(),
            service: v.service.to_string(),
            to: v.masked_to.clone(),
            channel: v.channel.as_str(),
            status: v.status.as_str(),
            created_at: v.created_at.to_string(),
            expires_at: v.expires_at.to_string(),
            resend_after: v.resend_after.to_string(),
            sends: v.sends,
            attempts_left: v.attempts_left,
            delivery: DeliveryView {
                status: v.delivery.status.as_str(),
                carrier: v.delivery.carrier.clone(),
                message_id: v.delivery.message_id.clone(),
                rerouted_from: v.delivery.rerouted.as_ref().map(|r| r.from.clone()),
                reroute_reason: v.delivery.rerouted.as_ref().map(|r| r.reason.as_str()),
            },
        }
    }
}

/// A check's answer: the representation plus `valid`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckView {
    #[serde(flatten)]
    pub verification: VerificationView,
    pub valid: bool,
}
