//! `[services.<name>.limits]`, top-level `[limits]` and `[pricing]`: the
//! abuse limits, their defaults (from the product's policy) and bounds.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::domain::Region;
use crate::ratelimit::{Budget, ConversionPolicy, FailurePolicy, Policy, Rate, Scope, VoicePolicy};

/// `{ count = 5, period = "15m" }`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSetting {
    pub count: u32,
    #[serde(with = "humantime_serde")]
    pub period: Duration,
}

fn rate(count: u32, seconds: u64) -> RateSetting {
    RateSetting {
        count,
        period: Duration::from_secs(seconds),
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Sends (start + resend) per number.
    pub number_sends: Vec<RateSetting>,
    /// Starts per client IP.
    pub ip_starts: Vec<RateSetting>,
    /// Checks per client IP.
    pub ip_checks: Vec<RateSetting>,
    /// Starts and checks per device and per user, when a backend asserts
    /// `end_user.device_id` / `user_id`.
    pub device_starts: Vec<RateSetting>,
    pub device_checks: Vec<RateSetting>,
    pub user_starts: Vec<RateSetting>,
    pub user_checks: Vec<RateSetting>,
    /// Sends per number range; a range over it is blocked for `range_block`.
    pub range_sends: Vec<RateSetting>,
    #[serde(with = "humantime_serde")]
    pub range_block: Duration,
    /// Blocks destinations whose codes are not entered (ABU-6).
    pub conversion: ConversionSettings,
    /// Digits dropped from the end of a number to get its range …
    pub range_digits: usize,
    /// … or this many for a country calling code (`{ "44" = 6 }`).
    pub range_digits_by_country: BTreeMap<String, usize>,
    /// Regions the service sends to (ISO 3166-1 alpha-2).
    pub countries: Vec<String>,
    /// Optional caps per region: `{ JP = [{ count = 1000, period = "1h" }] }`.
    pub country_sends: BTreeMap<String, Vec<RateSetting>>,
    /// Optional cap on all of this service's sends.
    pub service_sends: Vec<RateSetting>,
    pub failed_checks: FailedCheckSettings,
    pub budget: BudgetSettings,
    /// Scopes that only report: "number", "ip", "device", "user", "range",
    /// "country", "global", "budget".
    pub monitor: Vec<String>,
    /// Calls' own limits, on top of the ones above (a call costs more than
    /// an SMS, and voice pumping with it).
    pub voice: VoiceLimitSettings,
}

/// `limits.voice`: where calls may go, and how often.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoiceLimitSettings {
    /// Regions calls go to (ISO 3166-1 alpha-2): calls to others are refused
    /// even where SMS is allowed.
    pub countries: Vec<String>,
    /// Calls per number.
    pub number_sends: Vec<RateSetting>,
    /// Calls per number range.
    pub range_sends: Vec<RateSetting>,
    /// Caps on calls alone, in calls and in money (`[voice_pricing]`),
    /// on top of the service's budget.
    pub budget: BudgetSettings,
}

impl Default for VoiceLimitSettings {
    fn default() -> Self {
        VoiceLimitSettings {
            countries: vec!["JP".into()],
            number_sends: vec![rate(3, 3600)],
            range_sends: vec![rate(10, 3600)],
            budget: BudgetSettings::default(),
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            number_sends: vec![rate(5, 15 * 60), rate(10, 86_400)],
            ip_starts: vec![rate(10, 60), rate(100, 86_400)],
            ip_checks: vec![rate(60, 60)],
            // One person's device or account: a few codes per sign-in, a
            // handful of sign-ins a day; far below what an IP (a shared
            // carrier NAT) needs.
            device_starts: vec![rate(5, 15 * 60), rate(20, 86_400)],
            device_checks: vec![rate(30, 60)],
            user_starts: vec![rate(5, 15 * 60), rate(20, 86_400)],
            user_checks: vec![rate(30, 60)],
            range_sends: vec![rate(20, 3600)],
            range_block: Duration::from_secs(12 * 3600),
            conversion: ConversionSettings::default(),
            range_digits: 4,
            range_digits_by_country: BTreeMap::new(),
            countries: vec!["JP".into()],
            country_sends: BTreeMap::new(),
            service_sends: Vec::new(),
            failed_checks: FailedCheckSettings::default(),
            budget: BudgetSettings::default(),
            monitor: Vec::new(),
            voice: VoiceLimitSettings::default(),
        }
    }
}

/// `conversion = { … }`: see `ConversionPolicy`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConversionSettings {
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Approvals per send under which a destination is blocked (0.0..1.0).
    pub min_rate: f64,
    /// Sends in the window before a country calling code is judged; 0: off.
    pub country_min_sends: u64,
    /// Sends in the window before a number range is judged; 0: off.
    pub range_min_sends: u64,
    #[serde(with = "humantime_serde")]
    pub block: Duration,
}

impl Default for ConversionSettings {
    /// Real users enter well over half their codes; pumped codes are never
    /// entered. 30 sends with under 1 in 10 entered is pumping, not a slow
    /// hour, and 30 is under the 50 SMS a pumping run may cost; a range
    /// (10 000 numbers) is judged at 10.
    fn default() -> Self {
        ConversionSettings {
            window: Duration::from_secs(3600),
            min_rate: 0.1,
            country_min_sends: 30,
            range_min_sends: 10,
            block: Duration::from_secs(3600),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailedCheckSettings {
    /// Consecutive wrong codes per number before every check is refused.
    pub max: u32,
    /// Wrong codes before the progressive delay starts.
    pub free: u32,
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub decay: Duration,
}

impl Default for FailedCheckSettings {
    fn default() -> Self {
        FailedCheckSettings {
            max: 20,
            free: 3,
            delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(3600),
            decay: Duration::from_secs(86_400),
        }
    }
}

/// Caps per calendar day and month; money in the `[pricing]` currency.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetSettings {
    pub daily_messages: Option<u64>,
    pub monthly_messages: Option<u64>,
    pub daily_cost: Option<f64>,
    pub monthly_cost: Option<f64>,
    /// Where days and months begin: hours east of UTC (Japan: 9).
    pub utc_offset_hours: i64,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            daily_messages: None,
            monthly_messages: None,
            daily_cost: None,
            monthly_cost: None,
            utc_offset_hours: 9,
        }
    }
}

/// Top-level `[limits]`: across every service.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GlobalLimitSettings {
    pub global_sends: Vec<RateSetting>,
}

/// Money is counted in hundredths of the currency unit.
fn minor_units(amount: f64) -> u64 {
    (amount * 100.0).round().max(0.0) as u64
}

fn rates(key: &str, settings: &[RateSetting]) -> Result<Vec<Rate>, ConfigError> {
    settings
        .iter()
        .enumerate()
        .map(|(at, setting)| {
            if setting.count == 0 || setting.period < Duration::from_secs(1) {
                return Err(invalid(
                    format!("{key}[{at}]"),
                    "count must be at least 1 and period at least 1s",
                ));
            }
            Ok(Rate {
                count: setting.count,
                period: setting.period,
            })
        })
        .collect()
}

fn region(key: &str, text: &str) -> Result<String, ConfigError> {
    text.parse::<Region>()
        .map(|region| region.as_str().to_owned())
        .map_err(|e| invalid(key, e))
}

/// Scopes that may run in monitor mode. The failure cap is always enforced
/// (SEC-8), and API-key caps are not a service's to relax.
fn monitored_scope(key: &str, text: &str) -> Result<Scope, ConfigError> {
    let scopes = [
        Scope::Number,
        Scope::Ip,
        Scope::Device,
        Scope::User,
        Scope::Range,
        Scope::Conversion,
        Scope::Country,
        Scope::Global,
        Scope::Budget,
    ];
    scopes.into_iter().find(|scope| scope.as_str() == text).ok_or_else(|| {
        invalid(key, format!("{text:?} cannot be monitored; use number, ip, device, user, range, conversion, country, global or budget"))
    })
}

/// Context every service's policy shares.
pub struct Shared<'a> {
    pub global: &'a GlobalLimitSettings,
    pub pricing: &'a BTreeMap<String, f64>,
    pub voice_pricing: &'a BTreeMap<String, f64>,
    pub ipv6_prefix: u8,
}

impl LimitSettings {
    /// The checked policy; `key` is `services.<name>.limits`.
    pub fn policy(&self, key: &str, shared: &Shared<'_>) -> Result<Policy, ConfigError> {
        let at = |field: &str| format!("{key}.{field}");
        let failed = &self.failed_checks;
        if !(1..=100).contains(&failed.max) {
            return Err(invalid(
                at("failed_checks.max"),
                format!("{} is outside 1..=100 (NIST SP 800-63B, SEC-8)", failed.max),
            ));
        }
        if failed.free >= failed.max
            || failed.delay.is_zero()
            || failed.max_delay < failed.delay
            || failed.decay.is_zero()
        {
            return Err(invalid(
                at("failed_checks"),
                "need free < max, 0 < delay <= max_delay, and a decay",
            ));
        }
        if self.countries.is_empty() {
            return Err(invalid(
                at("countries"),
                "list at least one region the service sends to",
            ));
        }
        let countries = self
            .countries
            .iter()
            .map(|text| region(&at("countries"), text))
            .collect::<Result<Vec<_>, _>>()?;
        let mut country_sends = BTreeMap::new();
        for (text, settings) in &self.country_sends {
            let path = at(&format!("country_sends.{text}"));
            country_sends.insert(region(&path, text)?, rates(&path, settings)?);
        }
        let mut range_digits = BTreeMap::new();
        for (code, digits) in &self.range_digits_by_country {
            let path = at(&format!("range_digits_by_country.{code}"));
            let code: u16 = code
                .parse()
                .map_err(|_| invalid(&path, "key a country calling code, e.g. \"81\""))?;
            range_digits.insert(code, (*digits).min(12));
        }
        let conversion = &self.conversion;
        if !(0.0..=1.0).contains(&conversion.min_rate)
            || conversion.window < Duration::from_secs(60)
            || conversion.block < Duration::from_secs(1)
        {
            return Err(invalid(
                at("conversion"),
                "need 0 <= min_rate <= 1, a window of 1m or more, and a block",
            ));
        }
        let monitor = self
            .monitor
            .iter()
            .map(|text| monitored_scope(&at("monitor"), text))
            .collect::<Result<HashSet<_>, _>>()?;
        let in_minor_units = |prices: &BTreeMap<String, f64>| {
            prices
                .iter()
                .map(|(region, price)| (region.clone(), minor_units(*price)))
                .collect::<BTreeMap<_, _>>()
        };
        let budget = |settings: &BudgetSettings| Budget {
            daily_messages: settings.daily_messages,
            monthly_messages: settings.monthly_messages,
            daily_cost: settings.daily_cost.map(minor_units),
            monthly_cost: settings.monthly_cost.map(minor_units),
            prices: in_minor_units(shared.pricing),
            call_prices: in_minor_units(shared.voice_pricing),
            utc_offset_hours: settings.utc_offset_hours,
        };
        Ok(Policy {
            number_sends: rates(&at("number_sends"), &self.number_sends)?,
            ip_starts: rates(&at("ip_starts"), &self.ip_starts)?,
            ip_checks: rates(&at("ip_checks"), &self.ip_checks)?,
            device_starts: rates(&at("device_starts"), &self.device_starts)?,
            device_checks: rates(&at("device_checks"), &self.device_checks)?,
            user_starts: rates(&at("user_starts"), &self.user_starts)?,
            user_checks: rates(&at("user_checks"), &self.user_checks)?,
            range_sends: rates(&at("range_sends"), &self.range_sends)?,
            range_block: self.range_block,
            conversion: ConversionPolicy {
                window: conversion.window,
                min_permille: (conversion.min_rate * 1000.0).round() as u64,
                country_min_sends: conversion.country_min_sends,
                range_min_sends: conversion.range_min_sends,
                block: conversion.block,
            },
            range_digits,
            default_range_digits: self.range_digits.min(12),
            countries,
            country_sends,
            service_sends: rates(&at("service_sends"), &self.service_sends)?,
            voice: VoicePolicy {
                countries: self
                    .voice
                    .countries
                    .iter()
                    .map(|text| region(&at("voice.countries"), text))
                    .collect::<Result<Vec<_>, _>>()?,
                number_sends: rates(&at("voice.number_sends"), &self.voice.number_sends)?,
                range_sends: rates(&at("voice.range_sends"), &self.voice.range_sends)?,
                budget: budget(&self.voice.budget),
            },
            global_sends: rates("limits.global_sends", &shared.global.global_sends)?,
            failed_checks: FailurePolicy {
                max: failed.max,
                free: failed.free,
                delay: failed.delay,
                max_delay: failed.max_delay,
                decay: failed.decay,
            },
            budget: budget(&self.budget),
            monitor,
            ipv6_prefix: shared.ipv6_prefix,
        })
    }
}
