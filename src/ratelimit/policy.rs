//! A service's limits and the groups of them each request must pass.
//! Keys are keyed hashes (RL-6): no number, IP or range is stored.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use super::calendar;
use super::limit::{Check, Conversion, Gcra, Group, Item, Scope};
use crate::domain::{Channel, Phone, Timestamp};

/// `count` per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
}

impl Rate {
    /// `5-per-15m`: the policy name in RateLimit headers.
    fn name(&self, scope: Scope) -> String {
        format!(
            "{}-{}-per-{}",
            scope.as_str(),
            self.count,
            humantime::format_duration(self.period)
        )
    }
}

/// Consecutive wrong codes for one number, across its verifications
/// (SEC-8, SEC-9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Checks are refused at this many (never above 100).
    pub max: u32,
    /// Failures without delay.
    pub free: u32,
    /// Wait after the first delayed failure, doubling after each next one.
    pub delay: Duration,
    pub max_delay: Duration,
    /// Failures are forgotten this long after the last one.
    pub decay: Duration,
}

impl FailurePolicy {
    /// The wait imposed after failure number `failures` (1-based).
    pub fn delay_after(&self, failures: u32) -> Duration {
        if failures <= self.free {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free - 1).min(31);
        self.delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }
}

/// Destinations whose sends are not followed by approvals are blocked
/// (ABU-6): a country calling code once `country_min_sends` sends in
/// `window` have fewer than `min_permille` approvals per thousand, a number
/// range once `range_min_sends` do; each for `block`. 0 sends: off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConversionPolicy {
    pub window: Duration,
    pub min_permille: u64,
    pub country_min_sends: u64,
    pub range_min_sends: u64,
    pub block: Duration,
}

/// Caps in messages and in money (minor units, e.g. sen or cents) per
/// calendar day and month.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    pub daily_messages: Option<u64>,
    pub monthly_messages: Option<u64>,
    pub daily_cost: Option<u64>,
    pub monthly_cost: Option<u64>,
    /// Price of one segment by region (`JP`), in minor units.
    pub prices: BTreeMap<String, u64>,
    /// Price of one call by region; a region without one: its SMS price.
    pub call_prices: BTreeMap<String, u64>,
    /// Where days and months begin, in hours east of UTC.
    pub utc_offset_hours: i64,
}

/// A budget as one message on `channel` meets it; `name` keys and names
/// its items (`budget`, `voice-budget`).
struct BudgetOf<'a> {
    budget: &'a Budget,
    name: &'static str,
    channel: Channel,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub number_sends: Vec<Rate>,
    pub ip_starts: Vec<Rate>,
    pub ip_checks: Vec<Rate>,
    /// Per device and per user, when the backend asserts them.
    pub device_starts: Vec<Rate>,
    pub device_checks: Vec<Rate>,
    pub user_starts: Vec<Rate>,
    pub user_checks: Vec<Rate>,
    pub range_sends: Vec<Rate>,
    pub range_block: Duration,
    pub conversion: ConversionPolicy,
    /// Digits dropped from the end of a number to get its range, by country
    /// calling code; `default_range_digits` for the rest.
    pub range_digits: BTreeMap<u16, usize>,
    pub default_range_digits: usize,
    /// Regions (ISO 3166-1) a service sends to.
    pub countries: Vec<String>,
    pub country_sends: BTreeMap<String, Vec<Rate>>,
    pub service_sends: Vec<Rate>,
    /// Across every service (from the top-level `[limits]`).
    pub global_sends: Vec<Rate>,
    pub failed_checks: FailurePolicy,
    pub budget: Budget,
    /// Scopes that report instead of refusing (ABU-9).
    pub monitor: HashSet<Scope>,
    /// IPv6 clients are limited per prefix of this length.
    pub ipv6_prefix: u8,
    /// Calls' own limits, on top of the others.
    pub voice: VoicePolicy,
}

/// Where calls may go, and how often.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoicePolicy {
    pub countries: Vec<String>,
    pub number_sends: Vec<Rate>,
    pub range_sends: Vec<Rate>,
    /// Calls' own budget, on top of the service's.
    pub budget: Budget,
}

impl Budget {
    /// What one message on `channel` to `region` costs, in minor units.
    pub fn price(&self, region: &str, channel: Channel) -> u64 {
        let call = (channel == Channel::Voice)
            .then(|| self.call_prices.get(region))
            .flatten();
        call.or(self.prices.get(region)).copied().unwrap_or(0)
    }
}

/// Makes a limit key from its parts (a keyed hash; see `Keyring::limit_key`).
pub trait KeyMaker {
    fn limit_key(&self, parts: &[&[u8]]) -> [u8; 16];
}

/// Who is asking: the client's IP, and the device and user a backend
/// asserts for its end user (opaque ids, limited by keyed hash only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Client {
    pub ip: Option<IpAddr>,
    pub device: Option<String>,
    pub user: Option<String>,
}

/// Who and what one send or check is about.
pub struct Subject<'a> {
    pub service: &'a str,
    pub phone: &'a Phone,
    pub client: &'a Client,
    /// False for a test number: nothing is sent, so the limits on what
    /// sending costs (range, country, global, budget) do not apply.
    pub sends_sms: bool,
    /// On the safe list: the rules that judge a destination (range and
    /// conversion) do not apply.
    pub safe: bool,
    /// How the code goes: calls have limits of their own as well.
    pub channel: Channel,
}

/// Whether the client starts or checks: each has its own rates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Start,
    Check,
}

impl Policy {
    fn item(&self, scope: Scope, key: [u8; 16], rate: &Rate) -> Item {
        Item {
            key,
            check: Check::Rate(Gcra::new(rate.count, rate.period)),
            cost: 1,
            monitor: self.monitor.contains(&scope),
            block: None,
            scope,
            policy: rate.name(scope),
            window: rate.period,
        }
    }

    /// One item per rate, each on its own key, all in the slot of `key`.
    fn group(
        &self,
        keys: &dyn KeyMaker,
        scope: Scope,
        key: [u8; 16],
        rates: &[Rate],
    ) -> Option<Group> {
        let items: Vec<Item> = rates
            .iter()
            .map(|rate| {
                let name = rate.name(scope);
                self.item(scope, keys.limit_key(&[&key, name.as_bytes()]), rate)
            })
            .collect();
        (!items.is_empty()).then(|| Group {
            tag: [key[0], key[1]],
            items,
        })
    }

    /// The IP as limited: IPv4 whole, IPv6 by its prefix.
    fn ip_bytes(&self, ip: IpAddr) -> Vec<u8> {
        match super::network_of(ip, self.ipv6_prefix) {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        }
    }

    /// The number's range: its E.164 digits without the last few.
    pub fn range_of(&self, phone: &Phone) -> String {
        let digits = self
            .range_digits
            .get(&phone.country_code())
            .copied()
            .unwrap_or(self.default_range_digits);
        let e164 = phone.e164();
        e164[..e164.len().saturating_sub(digits).max(3)].to_owned()
    }

    /// The limits a send (start or resend) must pass. `number_key` is the
    /// verification's own tag source, so the number's group shares its slot.
    pub fn send_groups(
        &self,
        keys: &dyn KeyMaker,
        subject: &Subject<'_>,
        number_key: [u8; 16],
        starting: bool,
        now: Timestamp,
    ) -> Vec<Group> {
        let mut groups = Vec::new();
        groups.extend(self.group(keys, Scope::Number, number_key, &self.number_sends));
        if starting {
            groups.extend(self.client_groups(keys, subject.service, subject.client, Action::Start));
        }
        if subject.sends_sms {
            groups.extend(self.cost_groups(keys, subject, now));
        }
        if subject.channel == Channel::Voice {
            groups.extend(self.voice_groups(
                keys,
                subject.service,
                subject.phone,
                subject.safe,
                number_key,
                now,
            ));
        }
        groups
    }

    /// A call's own limits: per number, per range (not for a number on
    /// the safe list) and its budget.
    pub fn voice_groups(
        &self,
        keys: &dyn KeyMaker,
        service: &str,
        phone: &Phone,
        safe: bool,
        number_key: [u8; 16],
        now: Timestamp,
    ) -> Vec<Group> {
        let voice = &self.voice;
        let number = keys.limit_key(&[b"voice-number", &number_key]);
        let mut groups: Vec<Group> = self
            .group(keys, Scope::Number, number, &voice.number_sends)
            .into_iter()
            .collect();
        if !safe {
            let range = self.range_of(phone);
            let service = service.as_bytes();
            let key = keys.limit_key(&[b"voice-range", service, range.as_bytes()]);
            groups.extend(self.group(keys, Scope::Range, key, &voice.range_sends));
        }
        let budget = BudgetOf {
            budget: &voice.budget,
            name: "voice-budget",
            channel: Channel::Voice,
        };
        groups.extend(self.budget_group(keys, &budget, service.as_bytes(), phone.region(), now));
        groups
    }

    /// The destination's conversion: its sends are counted by `send_groups`,
    /// its approvals through these groups.
    pub fn conversion_groups(
        &self,
        keys: &dyn KeyMaker,
        service: &str,
        phone: &Phone,
    ) -> Vec<Group> {
        let policy = &self.conversion;
        let service = service.as_bytes();
        let country = phone.country_code().to_string();
        let range = self.range_of(phone);
        let destinations = [
            (
                keys.limit_key(&[b"conversion", service, country.as_bytes()]),
                policy.country_min_sends,
            ),
            (
                keys.limit_key(&[b"conversion-range", service, range.as_bytes()]),
                policy.range_min_sends,
            ),
        ];
        destinations
            .into_iter()
            .filter(|(_, min_sends)| *min_sends > 0)
            .map(|(key, min_sends)| Group {
                tag: [key[0], key[1]],
                items: vec![Item {
                    key,
                    check: Check::Conversion(Conversion {
                        min_sends,
                        min_permille: policy.min_permille,
                        window_ms: policy.window.as_millis() as u64,
                    }),
                    cost: 1,
                    monitor: self.monitor.contains(&Scope::Conversion),
                    block: Some(policy.block),
                    scope: Scope::Conversion,
                    policy: format!(
                        "conversion-{}-per-mille-of-{min_sends}-per-{}",
                        policy.min_permille,
                        humantime::format_duration(policy.window)
                    ),
                    window: policy.window,
                }],
            })
            .collect()
    }

    /// The safe-list entries that cover `phone`: the number's own and its
    /// range's.
    pub fn safe_entries(&self, keys: &dyn KeyMaker, service: &str, phone: &Phone) -> [[u8; 16]; 2] {
        let service = service.as_bytes();
        [
            keys.limit_key(&[b"safe-number", service, phone.e164().as_bytes()]),
            keys.limit_key(&[b"safe-range", service, self.range_of(phone).as_bytes()]),
        ]
    }

    /// The limits that block a destination: its range's sends and its
    /// range's and country's conversion (what an operator can lift).
    pub fn destination_groups(
        &self,
        keys: &dyn KeyMaker,
        service: &str,
        phone: &Phone,
    ) -> Vec<Group> {
        let mut groups = self.conversion_groups(keys, service, phone);
        let range = self.range_of(phone);
        let range_key = keys.limit_key(&[b"range", service.as_bytes(), range.as_bytes()]);
        if let Some(mut group) = self.group(keys, Scope::Range, range_key, &self.range_sends) {
            group
                .items
                .iter_mut()
                .for_each(|item| item.block = Some(self.range_block));
            groups.push(group);
        }
        groups
    }

    /// The limits on what sending costs: range, conversion, country,
    /// service, global and budget.
    fn cost_groups(
        &self,
        keys: &dyn KeyMaker,
        subject: &Subject<'_>,
        now: Timestamp,
    ) -> Vec<Group> {
        let service = subject.service.as_bytes();
        let region = subject.phone.region();
        let mut groups = Vec::new();
        if !subject.safe {
            groups = self.destination_groups(keys, subject.service, subject.phone);
        }
        if let Some(rates) = self.country_sends.get(region) {
            groups.extend(self.group(
                keys,
                Scope::Country,
                keys.limit_key(&[b"country", service, region.as_bytes()]),
                rates,
            ));
        }
        groups.extend(self.group(
            keys,
            Scope::Global,
            keys.limit_key(&[b"service", service]),
            &self.service_sends,
        ));
        groups.extend(self.group(
            keys,
            Scope::Global,
            keys.limit_key(&[b"global"]),
            &self.global_sends,
        ));
        let budget = BudgetOf {
            budget: &self.budget,
            name: "budget",
            channel: subject.channel,
        };
        groups.extend(self.budget_group(keys, &budget, service, region, now));
        groups
    }

    /// The limits a check must pass before its code is compared.
    pub fn check_groups(&self, keys: &dyn KeyMaker, service: &str, client: &Client) -> Vec<Group> {
        self.client_groups(keys, service, client, Action::Check)
    }

    /// The client's own limits: per IP, device and user, for what it knows.
    fn client_groups(
        &self,
        keys: &dyn KeyMaker,
        service: &str,
        client: &Client,
        action: Action,
    ) -> Vec<Group> {
        let service = service.as_bytes();
        let (ip, device, user) = match action {
            Action::Start => (&self.ip_starts, &self.device_starts, &self.user_starts),
            Action::Check => (&self.ip_checks, &self.device_checks, &self.user_checks),
        };
        let verb: &[u8] = match action {
            Action::Start => b"start",
            Action::Check => b"check",
        };
        let ip_bytes = client.ip.map(|ip| self.ip_bytes(ip));
        let known = [
            (Scope::Ip, ip_bytes.as_deref(), ip),
            (
                Scope::Device,
                client.device.as_deref().map(str::as_bytes),
                device,
            ),
            (Scope::User, client.user.as_deref().map(str::as_bytes), user),
        ];
        known
            .into_iter()
            .filter_map(|(scope, id, rates)| {
                let key = keys.limit_key(&[scope.as_str().as_bytes(), verb, service, id?]);
                self.group(keys, scope, key, rates)
            })
            .collect()
    }

    /// `of`'s caps for one message to `region`.
    fn budget_group(
        &self,
        keys: &dyn KeyMaker,
        of: &BudgetOf<'_>,
        service: &[u8],
        region: &str,
        now: Timestamp,
    ) -> Option<Group> {
        let budget = of.budget;
        let price = budget.price(region, of.channel);
        let day = calendar::day(now, budget.utc_offset_hours);
        let month = calendar::month(now, budget.utc_offset_hours);
        let caps = [
            ("messages-day", budget.daily_messages, 1, &day),
            ("messages-month", budget.monthly_messages, 1, &month),
            ("cost-day", budget.daily_cost, price, &day),
            ("cost-month", budget.monthly_cost, price, &month),
        ];
        let tag_key = keys.limit_key(&[of.name.as_bytes(), service]);
        let items: Vec<Item> = caps
            .into_iter()
            .filter_map(|(name, cap, cost, window)| {
                let cap = cap?;
                let key = keys.limit_key(&[
                    of.name.as_bytes(),
                    service,
                    name.as_bytes(),
                    window.id.as_bytes(),
                ]);
                Some(Item {
                    key,
                    check: Check::Quota {
                        cap,
                        until: window.end,
                    },
                    cost,
                    monitor: self.monitor.contains(&Scope::Budget),
                    block: None,
                    scope: Scope::Budget,
                    policy: format!("{}-{name}", of.name),
                    window: now.until(window.end),
                })
            })
            .collect();
        (!items.is_empty()).then(|| Group {
            tag: [tag_key[0], tag_key[1]],
            items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_delays_double_from_the_first_past_the_free_ones_sec_9() {
        let policy = FailurePolicy {
            max: 20,
            free: 3,
            delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(3600),
            decay: Duration::from_secs(86_400),
        };
        let delays: Vec<u64> = (1..=12).map(|n| policy.delay_after(n).as_secs()).collect();
        assert_eq!(
            delays,
            [0, 0, 0, 30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
        );
    }

    /// Issue 15: a call costs its call price where one is set, else what
    /// an SMS to the region costs; an SMS always its segment price.
    #[test]
    fn a_call_costs_its_call_price_or_an_sms() {
        let budget = Budget {
            prices: BTreeMap::from([("JP".into(), 300), ("GB".into(), 900)]),
            call_prices: BTreeMap::from([("JP".into(), 4000)]),
            ..Budget::default()
        };
        assert_eq!(budget.price("JP", Channel::Voice), 4000);
        assert_eq!(budget.price("JP", Channel::Sms), 300);
        assert_eq!(budget.price("GB", Channel::Voice), 900);
        assert_eq!(budget.price("US", Channel::Voice), 0);
    }
}
