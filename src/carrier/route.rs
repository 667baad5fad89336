//! Routes: for each destination region an ordered list of carriers, tried in
//! turn, and a circuit breaker per carrier that skips a dead one without
//! waiting for its timeouts (open after `failures` consecutive failures,
//! one probe after `cooldown`, closed again on a success). A carrier is
//! admitted only when it is about to be tried, and every admission is
//! settled: a success closes, a failure (re)opens, a throttled or
//! abandoned probe lets the next one through.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::Carrier;
use crate::domain::{Channel, Clock, Timestamp};

/// How the breaker of every carrier behaves.
#[derive(Clone, Copy, Debug)]
pub struct CircuitSettings {
    pub failures: u32,
    pub cooldown: Duration,
}

pub struct Router {
    default: Vec<usize>,
    by_region: BTreeMap<String, Vec<usize>>,
    /// The route for calls.
    voice: Vec<usize>,
    /// Each carrier under its configured name (the metric label).
    carriers: Vec<(String, Arc<dyn Carrier>)>,
    circuits: Vec<Mutex<Circuit>>,
    settings: CircuitSettings,
    clock: Arc<dyn Clock>,
    /// Whether a rejection may be tried on the next carrier (a paid retry).
    pub failover_on_rejection: bool,
}

/// One carrier of a route.
pub struct Hop {
    /// Its place in the router, for `admit`.
    pub at: usize,
    pub name: String,
    pub carrier: Arc<dyn Carrier>,
}

#[derive(Default)]
struct Circuit {
    consecutive_failures: u32,
    open_until: Option<Timestamp>,
    probing: bool,
}

/// A carrier let through its circuit for one call; dropped unsettled (a
/// throttled answer, a call abandoned) it leaves the circuit as it was and
/// frees its probe.
pub struct Admission<'a> {
    router: &'a Router,
    at: usize,
    probe: bool,
}

impl Admission<'_> {
    /// The carrier answered (accepted or rejected: it is alive).
    pub fn succeeded(self) {
        *self.router.circuit(self.at) = Circuit::default();
    }

    /// The carrier failed (timeout, 5xx, a lost connection).
    pub fn failed(self) {
        let router = self.router;
        let mut circuit = router.circuit(self.at);
        circuit.consecutive_failures += 1;
        if self.probe || circuit.consecutive_failures >= router.settings.failures {
            circuit.open_until = Some(router.clock.now().plus(router.settings.cooldown));
        }
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.router.circuit(self.at).probing = false;
        }
    }
}

impl Router {
    /// Routes name carriers by their index in `carriers`.
    pub fn new(
        carriers: Vec<(String, Arc<dyn Carrier>)>,
        default: Vec<usize>,
        by_region: BTreeMap<String, Vec<usize>>,
        voice: Vec<usize>,
        settings: CircuitSettings,
        failover_on_rejection: bool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let circuits = carriers
            .iter()
            .map(|_| Mutex::new(Circuit::default()))
            .collect();
        Router {
            default,
            by_region,
            voice,
            carriers,
            circuits,
            settings,
            clock,
            failover_on_rejection,
        }
    }

    /// The carriers of the route for `channel` to `region`, in order; each
    /// is `admit`ted only when it is about to be tried.
    pub fn route(&self, channel: Channel, region: &str) -> Vec<Hop> {
        let order = match channel {
            Channel::Sms => self.by_region.get(region).unwrap_or(&self.default),
            Channel::Voice => &self.voice,
        };
        order
            .iter()
            .map(|&at| Hop {
                at,
                name: self.carriers[at].0.clone(),
                carrier: Arc::clone(&self.carriers[at].1),
            })
            .collect()
    }

    fn circuit(&self, at: usize) -> std::sync::MutexGuard<'_, Circuit> {
        self.circuits[at]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Lets carrier `at` through for one call unless its circuit is open
    /// (half-open: one probe at a time).
    pub fn admit(&self, at: usize) -> Option<Admission<'_>> {
        let mut circuit = self.circuit(at);
        let probe = match circuit.open_until {
            None => false,
            Some(until) if self.clock.now() < until => return None,
            Some(_) if circuit.probing => return None,
            Some(_) => true,
        };
        circuit.probing = probe;
        Some(Admission {
            router: self,
            at,
            probe,
        })
    }

    /// Every carrier, once.
    pub fn carriers(&self) -> impl Iterator<Item = &Arc<dyn Carrier>> {
        self.carriers.iter().map(|(_, carrier)| carrier)
    }

    /// The names of the carriers that give delivery receipts.
    pub fn giving_receipts(&self) -> std::collections::BTreeSet<String> {
        self.carriers
            .iter()
            .filter(|(_, carrier)| carrier.receipts() != super::Receipts::None)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The carrier configured under `name`.
    pub fn carrier(&self, name: &str) -> Option<&Arc<dyn Carrier>> {
        self.carriers
            .iter()
            .find(|(named, _)| named == name)
            .map(|(_, carrier)| carrier)
    }

    /// Whether each carrier's circuit is open now, by name (a metric).
    pub fn open_circuits(&self) -> Vec<(&str, bool)> {
        self.carriers
            .iter()
            .enumerate()
            .map(|(at, (name, _))| (name.as_str(), self.circuit(at).open_until.is_some()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::carrier::NullCarrier;
    use crate::domain::ManualClock;

    const COOLDOWN: Duration = Duration::from_secs(30);

    fn router(clock: &ManualClock) -> Router {
        let carriers: Vec<(String, Arc<dyn Carrier>)> = vec![
            ("a".into(), Arc::new(NullCarrier::default())),
            ("b".into(), Arc::new(NullCarrier::default())),
        ];
        let by_region = BTreeMap::from([("GB".to_owned(), vec![1])]);
        Router::new(
            carriers,
            vec![0, 1],
            by_region,
            vec![1],
            CircuitSettings {
                failures: 3,
                cooldown: COOLDOWN,
            },
            false,
            Arc::new(clock.clone()),
        )
    }

    fn order(router: &Router, region: &str) -> Vec<usize> {
        router
            .route(Channel::Sms, region)
            .into_iter()
            .map(|hop| hop.at)
            .collect()
    }

    /// Issue 15: calls take the voice route, whatever the region.
    #[test]
    fn calls_take_the_voice_route() {
        let router = router(&ManualClock::new());
        for region in ["JP", "GB"] {
            let hops: Vec<usize> = router
                .route(Channel::Voice, region)
                .into_iter()
                .map(|hop| hop.at)
                .collect();
            assert_eq!(hops, [1], "{region}");
        }
    }

    fn fail(router: &Router, at: usize, times: usize) {
        for _ in 0..times {
            router.admit(at).expect("admitted").failed();
        }
    }

    #[test]
    fn regions_pick_their_route_and_others_the_default() {
        let router = router(&ManualClock::new());
        assert_eq!(order(&router, "JP"), [0, 1]);
        assert_eq!(order(&router, "GB"), [1]);
    }

    #[test]
    fn a_circuit_opens_after_consecutive_failures_and_a_success_closes_it() {
        let router = router(&ManualClock::new());
        fail(&router, 0, 2);
        router.admit(0).expect("closed").succeeded();
        fail(&router, 0, 2);
        assert!(router.admit(0).is_some(), "two in a row: still closed");
        fail(&router, 0, 1);
        assert!(router.admit(0).is_none(), "three in a row: open");
        assert!(
            router.admit(1).is_some(),
            "the other carrier is not affected"
        );
    }

    #[test]
    fn after_the_cooldown_one_probe_goes_through() {
        let clock = ManualClock::new();
        let router = router(&clock);
        fail(&router, 0, 3);
        clock.advance(COOLDOWN);
        let probe = router.admit(0).expect("half-open: one probe");
        assert!(router.admit(0).is_none(), "only one probe at a time");
        probe.failed();
        assert!(router.admit(0).is_none(), "the failed probe reopened it");
        clock.advance(COOLDOWN);
        router.admit(0).expect("a probe").succeeded();
        assert!(
            router.admit(0).is_some() && router.admit(0).is_some(),
            "closed"
        );
    }

    /// Issue 14's incident: both carriers fail, the primary recovers first
    /// and ends the send. The backup, never tried, still takes a probe.
    #[test]
    fn a_carrier_not_tried_while_half_open_still_takes_a_probe() {
        let clock = ManualClock::new();
        let router = router(&clock);
        fail(&router, 0, 3);
        fail(&router, 1, 3);
        clock.advance(COOLDOWN);
        router.admit(0).expect("the primary's probe").succeeded();
        fail(&router, 0, 3);
        assert!(router.admit(1).is_some(), "the backup takes a probe");
    }

    /// A throttled (or abandoned) probe is settled by dropping it: the
    /// circuit stays half-open and the next call probes again.
    #[test]
    fn a_throttled_probe_frees_the_next_one() {
        let clock = ManualClock::new();
        let router = router(&clock);
        fail(&router, 0, 3);
        clock.advance(COOLDOWN);
        drop(router.admit(0).expect("a probe"));
        router.admit(0).expect("another probe").succeeded();
    }

    #[test]
    fn both_carriers_half_open_probe_at_once_and_settle_apart() {
        let clock = ManualClock::new();
        let router = router(&clock);
        fail(&router, 0, 3);
        fail(&router, 1, 3);
        clock.advance(COOLDOWN);
        let (a, b) = (router.admit(0).expect("a"), router.admit(1).expect("b"));
        a.failed();
        b.succeeded();
        assert!(router.admit(0).is_none(), "a reopened");
        assert!(router.admit(1).is_some(), "b closed");
    }
}
