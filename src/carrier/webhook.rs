//! The `webhook` carrier: POSTs each SMS (`type: "sms.send"`, the text in
//! `body`) or call (`type: "voice.call"`: the script as text in `body`, as
//! SSML in `ssml`, and its `language`) as JSON to a URL the operator runs
//! (their own gateway), signed as Standard Webhooks specify:
//! `webhook-signature: v1,base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))`
//! with `webhook-id` (the verification id and send number, and after a
//! fallback step `.<step>`: the same on every retry, so the receiver can
//! drop duplicates, and another for the call that follows an SMS) and
//! `webhook-timestamp`.
//!
//! 2xx: accepted (the answer's `message_id` if it has one). 408, 429, 5xx and
//! timeouts: temporary. Other 4xx: rejected.
//!
//! Receipts come back the same way: a JSON `sms.receipt` signed with the
//! same key, its timestamp within five minutes of ours.

use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use subtle::ConstantTimeEq;

use super::provider::{self, transport};
use super::{Accepted, Call, Callback, Carrier, ReceiptError, Receipts, SendError, Sms};
use crate::domain::Receipt;

/// `[carriers.<name>]` with `kind = "webhook"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub url: String,
    /// `whsec_` and the base64 key, as Standard Webhooks write it.
    pub secret: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WebhookSettings {{ url: {:?}, secret: [redacted], timeout: {:?} }}",
            self.url, self.timeout
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("secret: use whsec_ and a base64 key of at least 24 bytes")]
    Secret,
    #[error("url: {0}")]
    Url(String),
}

pub struct WebhookCarrier {
    endpoint: SignedEndpoint,
}

/// A URL that takes JSON signed per Standard Webhooks (this carrier's
/// gateway, a service's events endpoint).
pub struct SignedEndpoint {
    client: reqwest::Client,
    url: reqwest::Url,
    key: Zeroizing<Vec<u8>>,
}

impl SignedEndpoint {
    pub fn new(settings: &WebhookSettings) -> Result<Self, WebhookError> {
        let url =
            reqwest::Url::parse(&settings.url).map_err(|e| WebhookError::Url(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WebhookError::Url("use http or https".into()));
        }
        let client = provider::client(settings.timeout).map_err(WebhookError::Url)?;
        Ok(SignedEndpoint {
            client,
            url,
            key: webhook_key(&settings.secret)?,
        })
    }

    /// Signs and POSTs `body` as message `id` (the same on every retry, so
    /// the receiver can drop duplicates); a 2xx answer, or the failure
    /// classified as a carrier's (408, 429, 5xx, timeouts: temporary).
    pub async fn post(&self, id: &str, body: &[u8]) -> Result<reqwest::Response, SendError> {
        let timestamp = provider::unix_now();
        let request = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature(&self.key, id, timestamp, body),
            )
            .body(body.to_vec());
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        Err(provider::failure(
            status,
            format!("endpoint answered {status}"),
        ))
    }
}

/// What the receiver gets.
#[derive(Serialize)]
struct Payload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    to: &'a str,
    body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssml: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    language: Option<&'static str>,
    service: &'a str,
    verification_id: String,
    send: u32,
    /// The fallback steps run before it (omitted when 0).
    #[serde(skip_serializing_if = "is_zero")]
    step: u32,
}

fn is_zero(step: &u32) -> bool {
    *step == 0
}

/// The gateway's answer to a send.
#[derive(Deserialize)]
struct Answer {
    message_id: Option<String>,
}

/// A receipt the gateway posts back.
#[derive(Deserialize)]
struct ReceiptBody {
    #[serde(rename = "type")]
    kind: String,
    verification_id: String,
    send: u32,
    message_id: String,
    /// `delivered`, `undelivered`, or a status that is not final.
    status: String,
}

/// The key inside a `whsec_…` secret.
pub fn webhook_key(secret: &str) -> Result<Zeroizing<Vec<u8>>, WebhookError> {
    let encoded = secret.strip_prefix("whsec_").ok_or(WebhookError::Secret)?;
    let key = STANDARD.decode(encoded).map_err(|_| WebhookError::Secret)?;
    if key.len() < 24 {
        return Err(WebhookError::Secret);
    }
    Ok(Zeroizing::new(key))
}

/// `v1,<base64 signature>` of one message.
pub fn signature(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

impl WebhookCarrier {
    /// Signs and POSTs one payload; its `webhook-id` is the verification
    /// id and send number, the same on every retry.
    async fn post(&self, message: &Payload<'_>) -> Result<Accepted, SendError> {
        let body = Zeroizing::new(serde_json::to_vec(message).expect("a message serializes"));
        let id = match message.step {
            0 => format!("{}-{}", message.verification_id, message.send),
            step => format!("{}-{}.{step}", message.verification_id, message.send),
        };
        let response = self.endpoint.post(&id, &body).await?;
        let receipt = response
            .json::<Answer>()
            .await
            .ok()
            .and_then(|answer| answer.message_id);
        Ok(Accepted {
            message_id: receipt.unwrap_or(id),
        })
    }

    pub fn new(settings: &WebhookSettings) -> Result<Self, WebhookError> {
        Ok(WebhookCarrier {
            endpoint: SignedEndpoint::new(settings)?,
        })
    }
}

#[async_trait]
impl Carrier for WebhookCarrier {
    fn name(&self) -> &str {
        "webhook"
    }

    async fn send(&self, sms: &Sms) -> Result<Accepted, SendError> {
        let text = sms.body.text();
        let message = Payload {
            kind: "sms.send",
            to: sms.to.e164(),
            body: text,
            ssml: None,
            language: None,
            service: sms.service.as_str(),
            verification_id: sms.verification.to_string(),
            send: sms.send,
            step: sms.step,
        };
        self.post(&message).await
    }

    /// `voice.call`: the script as text (`body`), as SSML, and its language.
    async fn call(&self, call: &Call) -> Result<Accepted, SendError> {
        let (text, ssml) = (call.body.text(), call.body.ssml());
        let message = Payload {
            kind: "voice.call",
            to: call.to.e164(),
            body: &text,
            ssml: Some(&ssml),
            language: Some(call.body.language()),
            service: call.service.as_str(),
            verification_id: call.verification.to_string(),
            send: call.send,
            step: call.step,
        };
        self.post(&message).await
    }

    fn receipts(&self) -> Receipts {
        Receipts::ByReference
    }

    fn receipt(&self, callback: &Callback<'_>) -> Result<Option<Receipt>, ReceiptError> {
        self.verify(callback)?;
        let body: ReceiptBody = serde_json::from_slice(callback.body)
            .map_err(|e| ReceiptError::Malformed(e.to_string()))?;
        if body.kind != "sms.receipt" {
            return Err(ReceiptError::Malformed(format!("type {:?}", body.kind)));
        }
        let delivered = match body.status.as_str() {
            "delivered" => true,
            "undelivered" => false,
            _ => return Ok(None),
        };
        let verification = body
            .verification_id
            .parse()
            .map_err(|_| ReceiptError::Malformed("verification_id".into()))?;
        Ok(Some(Receipt {
            verification,
            send: body.send,
            message_id: body.message_id,
            delivered,
        }))
    }
}

impl WebhookCarrier {
    /// Standard Webhooks verification: any `v1,` signature of the list
    /// matches (compared in constant time), and the timestamp is fresh.
    fn verify(&self, callback: &Callback<'_>) -> Result<(), ReceiptError> {
        let header = |name| callback.header(name).ok_or(ReceiptError::BadSignature);
        let id = header("webhook-id")?;
        let timestamp: u64 = header("webhook-timestamp")?
            .parse()
            .map_err(|_| ReceiptError::BadSignature)?;
        if !provider::fresh(timestamp) {
            return Err(ReceiptError::BadSignature);
        }
        let expected = signature(&self.endpoint.key, id, timestamp, callback.body);
        let matches = header("webhook-signature")?
            .split(' ')
            .any(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())));
        if matches {
            Ok(())
        } else {
            Err(ReceiptError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks reference vector.
    #[test]
    fn signs_as_standard_webhooks_do() {
        let key = webhook_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("key");
        let body = br#"{"test": 2432232314}"#;
        let signed = signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_must_be_whsec_keys() {
        assert_eq!(
            webhook_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").err(),
            Some(WebhookError::Secret)
        );
        assert_eq!(
            webhook_key("whsec_c2hvcnQ=").err(),
            Some(WebhookError::Secret)
        );
    }
}
