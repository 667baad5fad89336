//! A service's rules, as the use cases read them (built and checked from
//! the configuration by `config.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::domain::{
    Channel, Code, DisplayName, Locale, Phone, Reach, Region, ServiceName, Timestamp,
};
use crate::ratelimit::Policy;
use crate::sms::{segments, AppHash, Body, Origin, Template};

#[derive(Clone, Debug)]
pub struct Service {
    pub name: ServiceName,
    /// What `{service}` renders to, unless a start names the service
    /// otherwise.
    pub display_name: DisplayName,
    pub code_length: usize,
    pub ttl: Duration,
    pub max_attempts: u32,
    pub max_sends: u32,
    /// The wait after the first send; it doubles per send up to `max_resend_cooldown`.
    pub resend_cooldown: Duration,
    pub max_resend_cooldown: Duration,
    pub default_region: Region,
    pub default_locale: Locale,
    pub templates: BTreeMap<Locale, Template>,
    /// Adds the origin-bound autofill line (WebOTP, Apple) when set.
    pub origin: Option<Origin>,
    /// The most segments a body may cost (1 unless configured).
    pub max_segments: usize,
    pub limits: Policy,
    /// Numbers (E.164) with fixed codes, for app-store review and
    /// end-to-end tests: never sent, still bounded by attempts.
    pub test_numbers: BTreeMap<String, Code>,
    /// What a start must carry before an SMS is paid for (ABU-8).
    pub attestation: crate::attestation::Rules,
    /// The channels a start may ask for.
    pub channels: std::collections::BTreeSet<Channel>,
    /// Whether calls may go to fixed lines and IP phones.
    pub voice_landlines: bool,
    /// The automatic fallback steps, in order.
    pub fallback: Vec<crate::config::FallbackStep>,
}

impl Service {
    /// The numbers `channel` may go to for this service.
    pub fn reach(&self, channel: Channel) -> Reach {
        match channel {
            Channel::Voice if self.voice_landlines => Reach::Personal,
            _ => Reach::Mobile,
        }
    }

    /// When fallback step `step` (1 for the first) is due for a
    /// verification created at `created_at`, if the service has that step.
    pub fn fallback_due(&self, step: u32, created_at: Timestamp) -> Option<Timestamp> {
        let index = usize::try_from(step).ok()?.checked_sub(1)?;
        self.fallback
            .get(index)
            .map(|step| created_at.plus(step.after))
    }

    /// The numbers any of the service's channels may go to.
    pub fn widest_reach(&self) -> Reach {
        if self.channels.contains(&Channel::Voice) {
            self.reach(Channel::Voice)
        } else {
            Reach::Mobile
        }
    }

    /// The fixed code of a configured test number.
    pub fn test_code(&self, phone: &Phone) -> Option<&Code> {
        self.test_numbers.get(phone.e164())
    }

    /// The requested locale if the service has a template for it, else the default.
    pub fn locale_for(&self, requested: Option<&Locale>) -> Locale {
        requested
            .filter(|locale| self.templates.contains_key(*locale))
            .unwrap_or(&self.default_locale)
            .clone()
    }

    pub fn template(&self, locale: &Locale) -> &Template {
        self.templates
            .get(locale)
            .or_else(|| self.templates.get(&self.default_locale))
            .expect("config validation guarantees a template for the default locale")
    }

    /// What a message calls the service: the name a start gave, else its
    /// display name.
    pub fn name_for<'a>(&'a self, custom: Option<&'a DisplayName>) -> &'a DisplayName {
        custom.unwrap_or(&self.display_name)
    }

    /// The SMS for `code`: the locale's template naming the service `name`,
    /// then the autofill lines.
    pub fn body(
        &self,
        locale: &Locale,
        name: &DisplayName,
        code: &Code,
        app_hash: Option<&AppHash>,
    ) -> Body {
        let body = self
            .template(locale)
            .render(code, name.as_str(), self.minutes());
        body.with_autofill(code, app_hash, self.origin.as_ref())
    }

    /// Whether a body in `locale` naming the service `name`, with
    /// `app_hash`, fits `max_segments`.
    pub fn fits(&self, locale: &Locale, name: &DisplayName, app_hash: Option<&AppHash>) -> bool {
        let sample = Code::generate(self.code_length);
        segments(self.body(locale, name, &sample, app_hash).text()) <= self.max_segments
    }

    /// Whole minutes a code lives, for `{minutes}`.
    pub fn minutes(&self) -> u64 {
        self.ttl.as_secs().div_ceil(60)
    }
}
