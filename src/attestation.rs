//! Attestation before an SMS is paid for (ABU-8): a start may have to carry
//! a token from a bot challenge (Cloudflare Turnstile, Google reCAPTCHA,
//! reCAPTCHA Enterprise) or from the operator's own verifier (app
//! attestation, say), and otpd asks the provider, through its documented
//! siteverify API, whether the token is good before anything is sent. It
//! fails closed: no answer is no SMS.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{invalid, ConfigError, SecretValue};

/// Who verifies a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Provider {
    Turnstile,
    Recaptcha,
    RecaptchaEnterprise,
    /// The operator's own verifier, answering like siteverify.
    Http,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::Turnstile,
        Provider::Recaptcha,
        Provider::RecaptchaEnterprise,
        Provider::Http,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Turnstile => "turnstile",
            Provider::Recaptcha => "recaptcha",
            Provider::RecaptchaEnterprise => "recaptcha_enterprise",
            Provider::Http => "http",
        }
    }

    pub fn parse(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// The longest token taken: Turnstile's are at most 2048 characters, and a
/// start with one must still fit `http.max_body_bytes` (4096 by default).
pub const MAX_TOKEN: usize = 3072;

/// A start's token, for a provider.
#[derive(Clone, Debug)]
pub struct Attestation {
    pub provider: Provider,
    pub token: String,
}

/// What an answer must say to pass, and where to ask.
#[derive(Clone, Debug)]
pub struct Check {
    url: String,
    secret: SecretValue,
    /// reCAPTCHA Enterprise's site key, sent with the token.
    site_key: Option<String>,
    hostnames: Vec<String>,
    action: Option<String>,
    min_score: Option<f64>,
}

/// A service's attestation rules; no providers: none taken.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    /// Starts without an attestation are refused.
    pub required: bool,
    /// Failures are reported (metrics, a warning), not refused.
    pub monitor: bool,
    pub timeout: Duration,
    pub providers: BTreeMap<Provider, Check>,
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The start carried none and the service requires one.
    Missing,
    /// The provider said no.
    Invalid,
    /// Expired, or already redeemed.
    Expired,
    /// Solved on a site the service does not list.
    Hostname,
    /// Solved for another action.
    Action,
    /// Below the service's minimum score.
    Score,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::Missing,
        Refusal::Invalid,
        Refusal::Expired,
        Refusal::Hostname,
        Refusal::Action,
        Refusal::Score,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Invalid => "invalid",
            Refusal::Expired => "expired",
            Refusal::Hostname => "hostname",
            Refusal::Action => "action",
            Refusal::Score => "score",
        }
    }

    /// What the caller is told.
    pub fn detail(self) -> &'static str {
        match self {
            Refusal::Missing => "this service requires an attestation (a bot challenge's or app attestation's token) on start",
            Refusal::Invalid => "the attestation was refused by its provider",
            Refusal::Expired => "the attestation token expired or was already used; get a new one",
            Refusal::Hostname => "the attestation was made for another site",
            Refusal::Action => "the attestation was made for another action",
            Refusal::Score => "the attestation's score is below the service's minimum",
        }
    }
}

/// What asking the provider came to.
#[derive(Debug)]
pub enum Verdict {
    /// No attestation, and none required.
    NotAsked,
    Passed,
    Refused(Refusal),
    /// No usable answer (timeout, 5xx, a secret the provider refused).
    Unavailable(String),
}

/// Asks providers; one HTTP client for all services.
pub struct Verifier {
    client: reqwest::Client,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            client: reqwest::Client::new(),
        }
    }
}

/// The siteverify answer (Turnstile, reCAPTCHA, the generic verifier), and
/// what an Enterprise assessment is read into.
#[derive(Debug, Default, Deserialize)]
struct Siteverify {
    success: bool,
    hostname: Option<String>,
    action: Option<String>,
    score: Option<f64>,
    #[serde(rename = "error-codes", default)]
    errors: Vec<String>,
}

/// A reCAPTCHA Enterprise assessment, as far as read.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Assessment {
    token_properties: TokenProperties,
    risk_analysis: Option<RiskAnalysis>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenProperties {
    valid: bool,
    invalid_reason: Option<String>,
    hostname: Option<String>,
    action: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RiskAnalysis {
    score: Option<f64>,
}

impl From<Assessment> for Siteverify {
    fn from(assessment: Assessment) -> Self {
        let token = assessment.token_properties;
        Siteverify {
            success: token.valid,
            hostname: token.hostname,
            action: token.action,
            score: assessment.risk_analysis.and_then(|risk| risk.score),
            errors: token.invalid_reason.into_iter().collect(),
        }
    }
}

/// Error codes that say the token is spent or too old: Turnstile's and
/// reCAPTCHA's `timeout-or-duplicate`, Enterprise's `EXPIRED` and `DUPE`.
const EXPIRED: [&str; 3] = ["timeout-or-duplicate", "EXPIRED", "DUPE"];
/// Error codes that are otpd's or the provider's fault, not the token's.
const OURS: [&str; 5] = [
    "missing-input-secret",
    "invalid-input-secret",
    "bad-request",
    "internal-error",
    "BROWSER_ERROR",
];

impl Verifier {
    /// The verdict on a start's attestation under `rules`; `remote_ip` is
    /// the end user's address, passed on as the provider asks.
    pub async fn verify(
        &self,
        rules: &Rules,
        attestation: Option<&Attestation>,
        remote_ip: Option<IpAddr>,
    ) -> Verdict {
        let Some(attestation) = attestation else {
            return if rules.required {
                Verdict::Refused(Refusal::Missing)
            } else {
                Verdict::NotAsked
            };
        };
        let Some(check) = rules.providers.get(&attestation.provider) else {
            // `to_request` only lets through the service's providers.
            return Verdict::Refused(Refusal::Invalid);
        };
        match self.ask(attestation, check, remote_ip, rules.timeout).await {
            Ok(answer) => judge(check, &answer),
            Err(reason) => Verdict::Unavailable(reason),
        }
    }

    async fn ask(
        &self,
        attestation: &Attestation,
        check: &Check,
        remote_ip: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<Siteverify, String> {
        let remote_ip = remote_ip.map(|ip| ip.to_string());
        let secret = check.secret.0.as_str();
        let request = match attestation.provider {
            Provider::Turnstile | Provider::Recaptcha => {
                let mut form = vec![("secret", secret), ("response", &attestation.token)];
                if let Some(ip) = &remote_ip {
                    form.push(("remoteip", ip));
                }
                self.client.post(&check.url).form(&form)
            }
            Provider::RecaptchaEnterprise => {
                self.client.post(&check.url).query(&[("key", secret)]).json(
                    &serde_json::json!({ "event": {
                        "token": attestation.token,
                        "siteKey": check.site_key,
                        "expectedAction": check.action,
                        "userIpAddress": remote_ip,
                    }}),
                )
            }
            Provider::Http => {
                self.client
                    .post(&check.url)
                    .bearer_auth(secret)
                    .json(&serde_json::json!({
                        "token": attestation.token,
                        "remoteip": remote_ip,
                    }))
            }
        };
        let response = request
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the provider answered {status}"));
        }
        let read = |e: reqwest::Error| format!("unreadable answer: {}", e.without_url());
        match attestation.provider {
            Provider::RecaptchaEnterprise => {
                Ok(response.json::<Assessment>().await.map_err(read)?.into())
            }
            _ => response.json::<Siteverify>().await.map_err(read),
        }
    }
}

/// Whether a provider's answer passes the service's check.
fn judge(check: &Check, answer: &Siteverify) -> Verdict {
    let has = |codes: &[&str]| answer.errors.iter().any(|e| codes.contains(&e.as_str()));
    if !answer.success {
        if has(&OURS) {
            return Verdict::Unavailable(format!("the provider refused: {:?}", answer.errors));
        }
        let refusal = if has(&EXPIRED) {
            Refusal::Expired
        } else {
            Refusal::Invalid
        };
        return Verdict::Refused(refusal);
    }
    if !check.hostnames.is_empty()
        && !answer
            .hostname
            .as_ref()
            .is_some_and(|host| check.hostnames.iter().any(|h| h.eq_ignore_ascii_case(host)))
    {
        return Verdict::Refused(Refusal::Hostname);
    }
    if check
        .action
        .as_ref()
        .is_some_and(|action| answer.action.as_ref() != Some(action))
    {
        return Verdict::Refused(Refusal::Action);
    }
    if let Some(min) = check.min_score {
        if answer.score.is_none_or(|score| score < min) {
            return Verdict::Refused(Refusal::Score);
        }
    }
    Verdict::Passed
}

/// `[services.<name>.attestation]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttestationSettings {
    pub required: bool,
    pub monitor: bool,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub turnstile: Option<ProviderSettings>,
    pub recaptcha: Option<ProviderSettings>,
    pub recaptcha_enterprise: Option<ProviderSettings>,
    pub http: Option<ProviderSettings>,
}

impl Default for AttestationSettings {
    fn default() -> Self {
        AttestationSettings {
            required: false,
            monitor: false,
            timeout: Duration::from_secs(3),
            turnstile: None,
            recaptcha: None,
            recaptcha_enterprise: None,
            http: None,
        }
    }
}

/// One provider: `{ secret, url, hostnames, action, min_score }`, and for
/// reCAPTCHA Enterprise `project` and `site_key` (its `secret` is the API
/// key).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub secret: SecretValue,
    pub url: Option<String>,
    #[serde(default)]
    pub hostnames: Vec<String>,
    pub action: Option<String>,
    pub min_score: Option<f64>,
    pub project: Option<String>,
    pub site_key: Option<String>,
}

impl AttestationSettings {
    /// The rules, or what is wrong with the settings at `path`.
    pub fn rules(&self, path: &str) -> Result<Rules, ConfigError> {
        let configured = [
            (Provider::Turnstile, &self.turnstile),
            (Provider::Recaptcha, &self.recaptcha),
            (Provider::RecaptchaEnterprise, &self.recaptcha_enterprise),
            (Provider::Http, &self.http),
        ];
        let mut providers = BTreeMap::new();
        for (provider, settings) in configured {
            if let Some(settings) = settings {
                let at = format!("{path}.{}", provider.as_str());
                providers.insert(provider, settings.check(provider, &at)?);
            }
        }
        if self.required && providers.is_empty() {
            return Err(invalid(path, "required needs at least one provider"));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(10) {
            return Err(invalid(format!("{path}.timeout"), "1ms..=10s"));
        }
        Ok(Rules {
            required: self.required,
            monitor: self.monitor,
            timeout: self.timeout,
            providers,
        })
    }
}

impl ProviderSettings {
    fn check(&self, provider: Provider, path: &str) -> Result<Check, ConfigError> {
        if self.secret.0.is_empty() {
            return Err(invalid(format!("{path}.secret"), "is empty"));
        }
        if self
            .min_score
            .is_some_and(|score| !(0.0..=1.0).contains(&score))
        {
            return Err(invalid(format!("{path}.min_score"), "0.0..=1.0"));
        }
        let url = match (provider, &self.url) {
            (_, Some(url)) => url.clone(),
            (Provider::Turnstile, None) => {
                "https://challenges.cloudflare.com/turnstile/v0/siteverify".into()
            }
            (Provider::Recaptcha, None) => "https://www.google.com/recaptcha/api/siteverify".into(),
            (Provider::RecaptchaEnterprise, None) => {
                let project = self.project.as_ref().ok_or_else(|| {
                    invalid(
                        format!("{path}.project"),
                        "the Google Cloud project is required",
                    )
                })?;
                format!(
                    "https://recaptchaenterprise.googleapis.com/v1/projects/{project}/assessments"
                )
            }
            (Provider::Http, None) => {
                return Err(invalid(
                    format!("{path}.url"),
                    "the verifier's URL is required",
                ))
            }
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(invalid(format!("{path}.url"), "an http(s) URL"));
        }
        if provider == Provider::RecaptchaEnterprise && self.site_key.is_none() {
            return Err(invalid(format!("{path}.site_key"), "is required"));
        }
        Ok(Check {
            url,
            secret: self.secret.clone(),
            site_key: self.site_key.clone(),
            hostnames: self.hostnames.clone(),
            action: self.action.clone(),
            min_score: self.min_score,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str) -> AttestationSettings {
        use figment::providers::{Format, Toml};
        figment::Figment::from(Toml::string(toml))
            .extract()
            .expect("parses")
    }

    #[test]
    fn settings_name_what_is_missing() {
        let refused = |toml: &str| settings(toml).rules("a").expect_err(toml).to_string();
        assert!(refused("required = true").contains("at least one provider"));
        assert!(
            refused("recaptcha_enterprise = { secret = \"k\", site_key = \"s\" }")
                .contains("a.recaptcha_enterprise.project")
        );
        assert!(refused("http = { secret = \"k\" }").contains("a.http.url"));
        assert!(refused("turnstile = { secret = \"k\", min_score = 2.0 }").contains("min_score"));
        let rules = settings("required = true\nturnstile = { secret = \"k\" }")
            .rules("a")
            .expect("valid");
        assert_eq!(
            rules.providers[&Provider::Turnstile].url,
            "https://challenges.cloudflare.com/turnstile/v0/siteverify"
        );
    }

    #[test]
    fn answers_are_judged_by_the_check() {
        let check = Check {
            url: String::new(),
            secret: SecretValue("k".into()),
            site_key: None,
            hostnames: vec!["a.example".into()],
            action: Some("login".into()),
            min_score: Some(0.5),
        };
        let answer = |json: &str| -> Siteverify { serde_json::from_str(json).expect("json") };
        let verdict = |json: &str| format!("{:?}", judge(&check, &answer(json)));
        let good = r#"{"success":true,"hostname":"A.example","action":"login","score":0.7}"#;
        assert_eq!(verdict(good), "Passed");
        assert_eq!(
            verdict(r#"{"success":true,"hostname":"a.example","action":"login"}"#),
            "Refused(Score)"
        );
        assert_eq!(
            verdict(r#"{"success":true,"action":"login","score":0.9}"#),
            "Refused(Hostname)"
        );
        assert_eq!(
            verdict(r#"{"success":false,"error-codes":["timeout-or-duplicate"]}"#),
            "Refused(Expired)"
        );
        assert!(
            verdict(r#"{"success":false,"error-codes":["invalid-input-secret"]}"#)
                .starts_with("Unavailable")
        );
    }
}
