//! The `vonage` carrier: the Vonage (Nexmo) SMS API.
//!
//! `POST {api_url}/sms/json`, form encoded: `api_key`, `api_secret`,
//! `from`, `to` (E.164 without `+`), `text`, `type=unicode` when the body
//! needs UCS-2, `ttl` (the code's remaining life in ms, at least 20 s),
//! `client-ref` (the verification and send), `callback` (our receipts
//! endpoint) and `status-report-req=1`. The answer is 200 whatever
//! happened; each part carries a `status`: `0` accepted, `1` throttled and
//! `5` internal error are temporary, `4` bad credentials, `8` account
//! barred and `9` out of credit make the carrier unusable (temporary, so
//! the route moves on and the circuit opens), the others reject the message.
//!
//! Receipts (delivery receipts, DLR) come back signed: Vonage adds
//! `timestamp` and `sig`, the upper-case hex HMAC-SHA256 (keyed by the
//! signature secret) of every other parameter, sorted by name, as
//! `&name=value` with `&` and `=` in values replaced by `_`. A multi-part
//! message is tracked by its first part.
//!
//! Calls go through the Voice API: `POST {voice_url}/v1/calls`, JSON, with
//! the application's JWT (RS256, signed with its private key: claims
//! `application_id`, `iat`, `exp`, `jti`) as the bearer token; the NCCO is
//! one `talk` action reading the script as SSML in its language; the
//! call's events come to our receipts endpoint (`event_url`, with the
//! verification and send in `ref`), each signed with a JWT (HS256, keyed by
//! the signature secret) whose `payload_hash` is the SHA-256 of the body:
//! `completed` is delivered; `busy`, `timeout`, `failed`, `rejected`,
//! `cancelled` and `unanswered` are undelivered; the others are not final.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::provider::{self, form, parse_reference, reference, transport};
use super::{Accepted, Call, Callback, Carrier, ReceiptError, Receipts, SendError, Sms};
use crate::domain::Receipt;
use crate::sms::Encoding;

/// `[carriers.<name>]` with `kind = "vonage"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VonageSettings {
    pub api_key: String,
    pub api_secret: String,
    /// The signature secret (dashboard, SHA-256 HMAC) receipts are signed with.
    pub signature_secret: String,
    pub from: String,
    /// otpd's public base URL, where Vonage posts delivery receipts.
    pub public_url: String,
    #[serde(default = "default_api_url")]
    pub api_url: String,
    #[serde(default = "super::twilio::default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The Voice API application calls are placed as (none: no calls).
    #[serde(default)]
    pub application_id: Option<String>,
    /// The PEM file of that application's private key.
    #[serde(default)]
    pub private_key_file: Option<std::path::PathBuf>,
    #[serde(default = "default_voice_url")]
    pub voice_url: String,
}

fn default_api_url() -> String {
    "https://rest.nexmo.com".into()
}

fn default_voice_url() -> String {
    "https://api.nexmo.com".into()
}

/// How long the phone rings before the call counts as unanswered.
const CALL_RING_SECONDS: u32 = 30;

/// A Voice API application: its id and private key, for its JWTs.
struct Application {
    id: String,
    key: jsonwebtoken::EncodingKey,
}

#[derive(serde::Serialize)]
struct ApplicationClaims<'a> {
    application_id: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

/// The claims of a signed Voice API callback.
#[derive(Deserialize)]
struct CallbackClaims {
    iat: u64,
    payload_hash: String,
}

/// A call's event, as the Voice API posts it.
#[derive(Deserialize)]
struct CallEvent {
    uuid: String,
    status: String,
}

impl Application {
    fn load(settings: &VonageSettings) -> Result<Option<Self>, String> {
        let (id, file) = match (&settings.application_id, &settings.private_key_file) {
            (None, None) => return Ok(None),
            (Some(id), Some(file)) => (id, file),
            _ => return Err("application_id and private_key_file go together".into()),
        };
        let pem = Zeroizing::new(
            std::fs::read(file).map_err(|e| format!("private_key_file {}: {e}", file.display()))?,
        );
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem)
            .map_err(|e| format!("private_key_file {}: {e}", file.display()))?;
        Ok(Some(Application {
            id: id.clone(),
            key,
        }))
    }

    /// A JWT for one request, valid five minutes.
    fn token(&self) -> Result<String, SendError> {
        let now = provider::unix_now();
        let claims = ApplicationClaims {
            application_id: &self.id,
            iat: now,
            exp: now + 300,
            jti: crate::config::random_token(16),
        };
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| SendError::Temporary(format!("vonage: signing the JWT: {e}").into()))
    }
}

/// The Voice API request for `call`: one `talk` action reading the script
/// as SSML.
fn call_request(call: &Call, from: &str, event_url: &str) -> serde_json::Value {
    serde_json::json!({
        "to": [{ "type": "phone", "number": call.to.e164().trim_start_matches('+') }],
        "from": { "type": "phone", "number": from },
        "ncco": [{
            "action": "talk",
            "text": call.body.ssml().as_str(),
            "language": call.body.language(),
        }],
        "event_url": [event_url],
        "event_method": "POST",
        "ringing_timer": CALL_RING_SECONDS,
    })
}

impl std::fmt::Debug for VonageSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VonageSettings")
            .field("api_key", &self.api_key)
            .field("from", &self.from)
            .field("public_url", &self.public_url)
            .field("api_url", &self.api_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

pub struct VonageCarrier {
    name: String,
    client: reqwest::Client,
    settings: VonageSettings,
    api_secret: Zeroizing<String>,
    signature_secret: Zeroizing<String>,
    /// Set when calls are configured.
    application: Option<Application>,
}

#[derive(Deserialize)]
struct Answer {
    messages: Vec<Part>,
}

#[derive(Deserialize)]
struct Part {
    status: String,
    #[serde(rename = "message-id")]
    message_id: Option<String>,
}

/// The `sig` of a signed Vonage request or callback (without its `sig`).
pub fn vonage_signature(secret: &str, params: &BTreeMap<String, String>) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    for (name, value) in params.iter().filter(|(name, _)| *name != "sig") {
        mac.update(format!("&{name}={}", value.replace(['&', '='], "_")).as_bytes());
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02X}"))
        .collect()
}

impl VonageCarrier {
    /// `name` is the carrier's name in the configuration: its receipts
    /// come back to `/v1/carriers/{name}/receipts`.
    pub fn new(name: &str, settings: &VonageSettings) -> Result<Self, String> {
        reqwest::Url::parse(&settings.public_url).map_err(|e| format!("public_url: {e}"))?;
        reqwest::Url::parse(&settings.api_url).map_err(|e| format!("api_url: {e}"))?;
        reqwest::Url::parse(&settings.voice_url).map_err(|e| format!("voice_url: {e}"))?;
        if settings.signature_secret.len() < 16 {
            return Err("signature_secret: at least 16 characters".into());
        }
        Ok(VonageCarrier {
            name: name.to_owned(),
            client: provider::client(settings.timeout)?,
            api_secret: Zeroizing::new(settings.api_secret.clone()),
            signature_secret: Zeroizing::new(settings.signature_secret.clone()),
            application: Application::load(settings)?,
            settings: settings.clone(),
        })
    }

    /// A call's event: its signed JWT verified (HS256 with the signature
    /// secret, fresh, `payload_hash` the body's SHA-256), then its status.
    fn call_event(
        &self,
        callback: &Callback<'_>,
        token: &str,
    ) -> Result<Option<Receipt>, ReceiptError> {
        let key = jsonwebtoken::DecodingKey::from_secret(self.signature_secret.as_bytes());
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<CallbackClaims>(token, &key, &validation)
            .map_err(|_| ReceiptError::BadSignature)?
            .claims;
        let hash = crate::config::sha256_hex(callback.body);
        let matches = bool::from(
            hash.as_bytes()
                .ct_eq(claims.payload_hash.to_lowercase().as_bytes()),
        );
        if !matches || !provider::fresh(claims.iat) {
            return Err(ReceiptError::BadSignature);
        }
        let event: CallEvent = serde_json::from_slice(callback.body)
            .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        let delivered = match event.status.as_str() {
            "completed" => true,
            "busy" | "timeout" | "failed" | "rejected" | "cancelled" | "unanswered" => false,
            _ => return Ok(None),
        };
        let (verification, send) = provider::query_reference(callback.path_and_query)?;
        Ok(Some(Receipt {
            verification,
            send,
            message_id: event.uuid,
            delivered,
        }))
    }
}

/// Vonage's status codes for a part that was not accepted.
fn classify(status: &str) -> SendError {
    let reason = format!("vonage status {status}");
    match status {
        "1" => SendError::Throttled { reason },
        "5" | "4" | "8" | "9" => SendError::Temporary(reason.into()),
        _ => SendError::Rejected { reason },
    }
}

/// DLR parameters, from a form body or a JSON object of scalars.
fn params(body: &[u8]) -> Result<BTreeMap<String, String>, ReceiptError> {
    if body.first() != Some(&b'{') {
        return form(body);
    }
    let object: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    Ok(object
        .into_iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(text) => (name, text),
            other => (name, other.to_string()),
        })
        .collect())
}

#[async_trait]
impl Carrier for VonageCarrier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, sms: &Sms) -> Result<Accepted, SendError> {
        let url = format!("{}/sms/json", self.settings.api_url.trim_end_matches('/'));
        let kind = match Encoding::for_text(sms.body.text()) {
            Encoding::Gsm7 => "text",
            Encoding::Ucs2 => "unicode",
        };
        let ttl = sms
            .valid_for
            .as_millis()
            .clamp(20_000, 604_800_000)
            .to_string();
        let client_ref = reference(sms);
        let callback = provider::receipts_url(&self.settings.public_url, &self.name);
        let fields = [
            ("api_key", self.settings.api_key.as_str()),
            ("api_secret", self.api_secret.as_str()),
            ("from", self.settings.from.as_str()),
            ("to", sms.to.e164().trim_start_matches('+')),
            ("text", sms.body.text()),
            ("type", kind),
            ("ttl", ttl.as_str()),
            ("client-ref", client_ref.as_str()),
            ("callback", callback.as_str()),
            ("status-report-req", "1"),
        ];
        let response = self
            .client
            .post(url)
            .form(&fields)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if !status.is_success() {
            return Err(provider::failure(
                status,
                format!("vonage answered {status}"),
            ));
        }
        let answer: Answer = response.json().await.map_err(transport)?;
        let first = answer
            .messages
            .into_iter()
            .next()
            .ok_or_else(|| SendError::Temporary("vonage answered no message".into()))?;
        match (first.status.as_str(), first.message_id) {
            ("0", Some(message_id)) => Ok(Accepted { message_id }),
            (status, _) => Err(classify(status)),
        }
    }

    async fn call(&self, call: &Call) -> Result<Accepted, SendError> {
        let Some(application) = &self.application else {
            return Err(SendError::Rejected {
                reason: "vonage: calls need application_id and private_key_file".into(),
            });
        };
        let event_url = format!(
            "{}?ref={}",
            provider::receipts_url(&self.settings.public_url, &self.name),
            reference(call)
        );
        let url = format!("{}/v1/calls", self.settings.voice_url.trim_end_matches('/'));
        let response = self
            .client
            .post(url)
            .bearer_auth(application.token()?)
            .json(&call_request(call, &self.settings.from, &event_url))
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            let created: CallEvent = response.json().await.map_err(transport)?;
            return Ok(Accepted {
                message_id: created.uuid,
            });
        }
        let reason = format!("vonage voice answered {status}");
        if matches!(status.as_u16(), 401 | 403) {
            return Err(SendError::Temporary(reason.into()));
        }
        Err(provider::failure(status, reason))
    }

    fn receipts(&self) -> Receipts {
        Receipts::ByReference
    }

    fn receipt(&self, callback: &Callback<'_>) -> Result<Option<Receipt>, ReceiptError> {
        if let Some(token) = callback
            .header("authorization")
            .and_then(|value| value.strip_prefix("Bearer "))
        {
            return self.call_event(callback, token);
        }
        let params = params(callback.body)?;
        let expected = vonage_signature(&self.signature_secret, &params);
        let given = params.get("sig").map(String::as_str).unwrap_or_default();
        let timestamp = params.get("timestamp").and_then(|t| t.parse().ok());
        let signed = bool::from(given.as_bytes().ct_eq(expected.as_bytes()));
        if !signed || !timestamp.is_some_and(provider::fresh) {
            return Err(ReceiptError::BadSignature);
        }
        let delivered = match params.get("status").map(String::as_str) {
            Some("delivered") => true,
            Some("expired" | "failed" | "rejected") => false,
            _ => return Ok(None),
        };
        let field = |name: &str| {
            params
                .get(name)
                .cloned()
                .ok_or_else(|| ReceiptError::Malformed(name.into()))
        };
        let (verification, send) = parse_reference(&field("client-ref")?)?;
        Ok(Some(Receipt {
            verification,
            send,
            message_id: field("messageId")?,
            delivered,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_sorted_parameters_with_separators_replaced() {
        let params: BTreeMap<String, String> = [("b", "2=x&y"), ("a", "1"), ("sig", "ignored")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"secret").expect("key");
        mac.update(b"&a=1&b=2_x_y");
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|byte| format!("{byte:02X}"))
            .collect();
        assert_eq!(vonage_signature("secret", &params), expected);
    }
}
