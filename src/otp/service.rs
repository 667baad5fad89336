//! A service's rules, as the use cases read them (built and checked from
//! the configuration by `config.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::domain::{Locale, Region, ServiceName};
use crate::ratelimit::Policy;
use crate::sms::Template;

#[derive(Clone, Debug)]
pub struct Service {
    pub name: ServiceName,
    /// What `{service}` renders to.
    pub display_name: String,
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
    pub limits: Policy,
}

impl Service {
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

    /// Whole minutes a code lives, for `{minutes}`.
    pub fn minutes(&self) -> u64 {
        self.ttl.as_secs().div_ceil(60)
    }
}
