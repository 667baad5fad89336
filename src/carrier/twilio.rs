//! The `twilio` carrier: Programmable Messaging's REST API, and
//! Programmable Voice for calls.
//!
//! `POST {api_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form
//! encoded, HTTP Basic auth with the account SID and auth token: `To`,
//! `From` or `MessagingServiceSid`, `Body`, `ValidityPeriod` (the code's
//! remaining life, so a stale code is dropped by Twilio), and
//! `StatusCallback` (our receipts endpoint, naming the send). 201 answers
//! with the message `sid`. A call is `POST …/Calls.json` with `To`,
//! `From`, the inline `Twiml` that reads the code (`voice::Speech`), a
//! 30-second `Timeout` and the same `StatusCallback`.
//!
//! Errors: 429, 5xx and timeouts are temporary; 401/403 (bad credentials)
//! make the carrier unusable, not the message, so they count as temporary
//! too (the route moves on and the circuit opens); any other 4xx (21211
//! invalid number, 21610 opted out, 21614 not a mobile …) rejects the
//! message. Only Twilio's numeric code is kept: its text may hold the number.
//!
//! Receipts: Twilio posts the form `MessageSid`, `MessageStatus` (a
//! call's: `CallSid`, `CallStatus`, where `completed` counts as delivered
//! and `busy`, `no-answer`, `failed`, `canceled` as not) … to the callback, signed `X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL +
//! each parameter's name and value, sorted by name))`.

use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha1::Sha1;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::provider::{self, form, reference, transport};
use super::{Accepted, Call, Callback, Carrier, Message, ReceiptError, Receipts, SendError, Sms};
use crate::domain::Receipt;

/// `[carriers.<name>]` with `kind = "twilio"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSettings {
    pub account_sid: String,
    pub auth_token: String,
    /// A sender number or alphanumeric ID …
    pub from: Option<String>,
    /// … or a Messaging Service (exactly one of the two).
    pub messaging_service_sid: Option<String>,
    /// otpd's public base URL, where Twilio posts status callbacks.
    pub public_url: String,
    #[serde(default = "default_api_url")]
    pub api_url: String,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_api_url() -> String {
    "https://api.twilio.com".into()
}

pub(super) fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

impl std::fmt::Debug for TwilioSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioSettings")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[redacted]")
            .field("from", &self.from)
            .field("messaging_service_sid", &self.messaging_service_sid)
            .field("public_url", &self.public_url)
            .field("api_url", &self.api_url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

pub struct TwilioCarrier {
    name: String,
    client: reqwest::Client,
    settings: TwilioSettings,
    auth_token: Zeroizing<String>,
}

#[derive(Deserialize)]
struct Created {
    sid: String,
}

#[derive(Deserialize)]
struct Failure {
    code: Option<u32>,
}

/// `X-Twilio-Signature` of a callback to `url` with form `params`.
pub fn twilio_signature<'a>(
    auth_token: &str,
    url: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut sorted: Vec<(&str, &str)> = params.into_iter().collect();
    sorted.sort();
    let mut mac =
        <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// How long a call rings before it counts as not answered.
const CALL_RING_SECONDS: &str = "30";

impl TwilioCarrier {
    /// `name` is the carrier's name in the configuration: its receipts
    /// come back to `/v1/carriers/{name}/receipts`.
    pub fn new(name: &str, settings: &TwilioSettings) -> Result<Self, String> {
        if settings.from.is_some() == settings.messaging_service_sid.is_some() {
            return Err("set exactly one of from and messaging_service_sid".into());
        }
        reqwest::Url::parse(&settings.public_url).map_err(|e| format!("public_url: {e}"))?;
        reqwest::Url::parse(&settings.api_url).map_err(|e| format!("api_url: {e}"))?;
        Ok(TwilioCarrier {
            name: name.to_owned(),
            client: provider::client(settings.timeout)?,
            auth_token: Zeroizing::new(settings.auth_token.clone()),
            settings: settings.clone(),
        })
    }

    fn callback_url<B>(&self, message: &Message<B>) -> String {
        format!(
            "{}?ref={}",
            provider::receipts_url(&self.settings.public_url, &self.name),
            reference(message)
        )
    }

    /// POSTs `fields` to one of the account's resources (`Messages.json`,
    /// `Calls.json`); the created resource's sid.
    async fn create(&self, resource: &str, fields: &[(&str, &str)]) -> Result<Accepted, SendError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/{resource}",
            self.settings.api_url.trim_end_matches('/'),
            self.settings.account_sid
        );
        let response = self
            .client
            .post(url)
            .basic_auth(&self.settings.account_sid, Some(self.auth_token.as_str()))
            .form(fields)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            let created: Created = response.json().await.map_err(transport)?;
            return Ok(Accepted {
                message_id: created.sid,
            });
        }
        let code = response.json::<Failure>().await.ok().and_then(|f| f.code);
        let reason = format!("twilio answered {status} (error {})", code.unwrap_or(0));
        if matches!(status.as_u16(), 401 | 403) {
            return Err(SendError::Temporary(reason.into()));
        }
        Err(provider::failure(status, reason))
    }
}

#[async_trait]
impl Carrier for TwilioCarrier {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, sms: &Sms) -> Result<Accepted, SendError> {
        let validity = sms.valid_for.as_secs().clamp(1, 36_000).to_string();
        let callback = self.callback_url(sms);
        let mut fields = vec![
            ("To", sms.to.e164()),
            ("Body", sms.body.text()),
            ("ValidityPeriod", validity.as_str()),
            ("StatusCallback", callback.as_str()),
        ];
        match (&self.settings.from, &self.settings.messaging_service_sid) {
            (Some(from), _) => fields.push(("From", from)),
            (None, Some(service)) => fields.push(("MessagingServiceSid", service)),
            (None, None) => unreachable!("checked in new"),
        }
        self.create("Messages.json", &fields).await
    }

    /// Programmable Voice: a call from `from` whose inline TwiML reads the
    /// code; its status callbacks are the receipts.
    async fn call(&self, call: &Call) -> Result<Accepted, SendError> {
        let Some(from) = &self.settings.from else {
            return Err(SendError::Rejected {
                reason: "twilio: calls need `from` (a voice-capable number)".into(),
            });
        };
        let twiml = call.body.twiml();
        let callback = self.callback_url(call);
        let fields = [
            ("To", call.to.e164()),
            ("From", from.as_str()),
            ("Twiml", twiml.as_str()),
            ("StatusCallback", callback.as_str()),
            ("Timeout", CALL_RING_SECONDS),
        ];
        self.create("Calls.json", &fields).await
    }

    fn receipts(&self) -> Receipts {
        Receipts::ByReference
    }

    fn receipt(&self, callback: &Callback<'_>) -> Result<Option<Receipt>, ReceiptError> {
        let params = form(callback.body)?;
        let url = format!(
            "{}{}",
            self.settings.public_url.trim_end_matches('/'),
            callback.path_and_query
        );
        let expected = twilio_signature(
            &self.auth_token,
            &url,
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let given = callback.header("x-twilio-signature").unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(ReceiptError::BadSignature);
        }
        // A message's status, or a call's: answered and heard to the end,
        // or not.
        let status = params.get("MessageStatus").or(params.get("CallStatus"));
        let delivered = match status.map(String::as_str) {
            Some("delivered" | "completed") => true,
            Some("undelivered" | "failed" | "busy" | "no-answer" | "canceled") => false,
            _ => return Ok(None),
        };
        let (verification, send) = provider::query_reference(callback.path_and_query)?;
        let message_id = params
            .get("MessageSid")
            .or(params.get("CallSid"))
            .ok_or_else(|| ReceiptError::Malformed("MessageSid".into()))?
            .clone();
        Ok(Some(Receipt {
            verification,
            send,
            message_id,
            delivered,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of Twilio's "Validating requests" documentation.
    #[test]
    fn signs_as_twilio_does() {
        let params = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ];
        let signature = twilio_signature(
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            params,
        );
        assert_eq!(signature, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
    }
}
