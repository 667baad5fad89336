//! `[twilio_verify]`: the Twilio Verify v2 surface (`/v2`), off unless a
//! credential is configured. Each credential (the account's SID and auth
//! token, or an API key `SK…` and its secret, as Twilio's SDKs send them
//! in HTTP Basic) stands for one otpd API key; each service SID (`VA…`)
//! for one otpd service.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{invalid, parse_hex, ApiKey, ConfigError};
use crate::domain::ServiceName;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioVerifySettings {
    /// The account the surface answers as (`AC` and 32 hex digits).
    pub account_sid: String,
    pub credentials: Vec<CredentialSettings>,
    /// Service SIDs and the otpd services they are.
    pub services: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSettings {
    /// The Basic user name: the account SID (`AC…`) or an API key (`SK…`).
    pub sid: String,
    /// Hex SHA-256 of its auth token or secret.
    pub secret_sha256: String,
    /// The `[[api_keys]]` id whose services and rights it has.
    pub api_key: String,
}

/// The checked surface.
#[derive(Clone, Debug)]
pub struct TwilioVerify {
    pub account_sid: String,
    pub credentials: Vec<Credential>,
    /// By service SID.
    pub services: BTreeMap<String, ServiceName>,
}

#[derive(Clone, Debug)]
pub struct Credential {
    pub sid: String,
    pub secret_sha256: [u8; 32],
    pub key: ApiKey,
}

/// `prefix` and 32 hex digits, as Twilio writes SIDs.
fn is_sid(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl TwilioVerifySettings {
    /// `None` when no credential is configured (the surface is off).
    pub fn validate(
        &self,
        keys: &[ApiKey],
        services: &BTreeMap<ServiceName, super::Service>,
    ) -> Result<Option<TwilioVerify>, ConfigError> {
        if self.credentials.is_empty() {
            return Ok(None);
        }
        if !is_sid(&self.account_sid, "AC") {
            return Err(invalid("twilio_verify.account_sid", "AC and 32 hex digits"));
        }
        let credentials = self
            .credentials
            .iter()
            .enumerate()
            .map(|(at, credential)| {
                let path = format!("twilio_verify.credentials[{at}]");
                if !is_sid(&credential.sid, "AC") && !is_sid(&credential.sid, "SK") {
                    return Err(invalid(format!("{path}.sid"), "AC or SK and 32 hex digits"));
                }
                let secret_sha256 = parse_hex(&credential.secret_sha256)
                    .ok_or_else(|| invalid(format!("{path}.secret_sha256"), "64 hex digits"))?;
                let key = keys
                    .iter()
                    .find(|key| key.id == credential.api_key && !key.admin)
                    .cloned()
                    .ok_or_else(|| {
                        invalid(
                            format!("{path}.api_key"),
                            "the id of an [[api_keys]] entry (not an admin key)",
                        )
                    })?;
                Ok(Credential {
                    sid: credential.sid.clone(),
                    secret_sha256,
                    key,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let services = self
            .services
            .iter()
            .map(|(sid, name)| {
                let path = format!("twilio_verify.services.{sid}");
                if !is_sid(sid, "VA") {
                    return Err(invalid(path, "a service SID is VA and 32 hex digits"));
                }
                let name = name
                    .parse::<ServiceName>()
                    .ok()
                    .filter(|name| services.contains_key(name))
                    .ok_or_else(|| {
                        invalid(path, format!("{name:?} is not a configured service"))
                    })?;
                Ok((sid.clone(), name))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        Ok(Some(TwilioVerify {
            account_sid: self.account_sid.clone(),
            credentials,
            services,
        }))
    }
}
