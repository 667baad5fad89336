//! Routes: for each destination region an ordered list of carriers, tried in
//! turn, and a circuit breaker per carrier that skips a dead one without
//! waiting for its timeouts (open after `failures` consecutive failures,
//! one probe after `cooldown`, closed again on a success).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Carrier;

/// How the breaker of every carrier behaves.
#[derive(Clone, Copy, Debug)]
pub struct CircuitSettings {
    pub failures: u32,
    pub cooldown: Duration,
}

pub struct Router {
    default: Vec<usize>,
    by_region: BTreeMap<String, Vec<usize>>,
    /// Each carrier under its configured name (the metric label).
    carriers: Vec<(String, Arc<dyn Carrier>)>,
    circuits: Vec<Mutex<Circuit>>,
    settings: CircuitSettings,
    /// Whether a rejection may be tried on the next carrier (a paid retry).
    pub failover_on_rejection: bool,
}

/// One carrier of a route.
pub struct Hop {
    /// Its place in the router, for `succeeded` and `failed`.
    pub at: usize,
    pub name: String,
    pub carrier: Arc<dyn Carrier>,
}

#[derive(Default)]
struct Circuit {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

impl Router {
    /// Routes name carriers by their index in `carriers`.
    pub fn new(
        carriers: Vec<(String, Arc<dyn Carrier>)>,
        default: Vec<usize>,
        by_region: BTreeMap<String, Vec<usize>>,
        settings: CircuitSettings,
        failover_on_rejection: bool,
    ) -> Self {
        let circuits = carriers
            .iter()
            .map(|_| Mutex::new(Circuit::default()))
            .collect();
        Router {
            default,
            by_region,
            carriers,
            circuits,
            settings,
            failover_on_rejection,
        }
    }

    /// The carriers to try for `region`, in order, without those whose
    /// circuit is open (a half-open one lets one probe through).
    pub fn route(&self, region: &str) -> Vec<Hop> {
        let order = self.by_region.get(region).unwrap_or(&self.default);
        order
            .iter()
            .filter(|&&at| self.admits(at))
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

    fn admits(&self, at: usize) -> bool {
        let mut circuit = self.circuit(at);
        match circuit.open_until {
            None => true,
            Some(until) if Instant::now() < until => false,
            Some(_) if circuit.probing => false,
            Some(_) => {
                circuit.probing = true;
                true
            }
        }
    }

    /// The carrier answered (accepted or rejected: it is alive).
    pub fn succeeded(&self, at: usize) {
        *self.circuit(at) = Circuit::default();
    }

    /// The carrier failed (timeout, 5xx, throttled …).
    pub fn failed(&self, at: usize) {
        let mut circuit = self.circuit(at);
        circuit.consecutive_failures += 1;
        if circuit.probing || circuit.consecutive_failures >= self.settings.failures {
            circuit.open_until = Some(Instant::now() + self.settings.cooldown);
            circuit.probing = false;
        }
    }

    /// Every carrier, once.
    pub fn carriers(&self) -> impl Iterator<Item = &Arc<dyn Carrier>> {
        self.carriers.iter().map(|(_, carrier)| carrier)
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

    fn router(cooldown: Duration) -> Router {
        let carriers: Vec<(String, Arc<dyn Carrier>)> = vec![
            ("a".into(), Arc::new(NullCarrier::default())),
            ("b".into(), Arc::new(NullCarrier::default())),
        ];
        let by_region = BTreeMap::from([("GB".to_owned(), vec![1])]);
        Router::new(
            carriers,
            vec![0, 1],
            by_region,
            CircuitSettings {
                failures: 3,
                cooldown,
            },
            false,
        )
    }

    fn order(router: &Router, region: &str) -> Vec<usize> {
        router.route(region).into_iter().map(|hop| hop.at).collect()
    }

    #[test]
    fn regions_pick_their_route_and_others_the_default() {
        let router = router(Duration::from_secs(30));
        assert_eq!(order(&router, "JP"), [0, 1]);
        assert_eq!(order(&router, "GB"), [1]);
    }

    #[test]
    fn a_circuit_opens_after_consecutive_failures_and_a_success_closes_it() {
        let router = router(Duration::from_secs(30));
        router.failed(0);
        router.failed(0);
        router.succeeded(0);
        router.failed(0);
        router.failed(0);
        assert_eq!(order(&router, "JP"), [0, 1], "two in a row: still closed");
        router.failed(0);
        assert_eq!(order(&router, "JP"), [1], "three in a row: open");
    }

    #[test]
    fn after_the_cooldown_one_probe_goes_through() {
        let router = router(Duration::ZERO);
        for _ in 0..3 {
            router.failed(0);
        }
        assert_eq!(order(&router, "JP"), [0, 1], "half-open: one probe");
        assert_eq!(order(&router, "JP"), [1], "only one probe at a time");
        router.failed(0);
        router.succeeded(0);
        assert_eq!(order(&router, "JP"), [0, 1], "the probe succeeded: closed");
    }
}
