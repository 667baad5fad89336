//! Taking a request's limits and giving them back when the request does not
//! go through, so a refused request leaves no partial counters (RL-7).

use std::time::Duration;

use tracing::warn;

use super::{Error, Limited, Otp, Service};
use crate::ratelimit::{Check, Gcra, Group, Item, KeyMaker, Scope};

/// What a request took from its limits; given back if it fails.
#[must_use]
pub(super) struct Taken(Vec<Group>);

/// Quota use that raises an alert when crossed (ABU-7).
const BUDGET_THRESHOLDS: [u64; 3] = [50, 80, 100];

impl Otp {
    /// Decides every group in one round trip. If any enforced limit refuses,
    /// the groups that were recorded are given back and the longest wait is
    /// the answer: a retry after it passes every limit that refused.
    pub(super) async fn take_limits(
        &self,
        service: &Service,
        groups: Vec<Group>,
    ) -> Result<Taken, Error> {
        self.take(service.name.as_str(), groups).await
    }

    /// An API key's optional cap on requests per second, across replicas.
    pub async fn limit_api_key(&self, key_id: &str, per_second: u32) -> Result<(), Error> {
        let key = self.keyring.limit_key(&[b"api-key", key_id.as_bytes()]);
        let item = Item {
            key,
            check: Check::Rate(Gcra::new(per_second, Duration::from_secs(1))),
            cost: 1,
            monitor: false,
            block: None,
            scope: Scope::ApiKey,
            policy: format!("api-key-{per_second}-per-second"),
            window: Duration::from_secs(1),
        };
        // Whatever the request turns out to be, it was a request: no refund.
        self.take(
            "-",
            vec![Group {
                tag: [key[0], key[1]],
                items: vec![item],
            }],
        )
        .await
        .map(drop)
    }

    async fn take(&self, name: &str, groups: Vec<Group>) -> Result<Taken, Error> {
        if groups.is_empty() {
            return Ok(Taken(groups));
        }
        let verdicts = self.stores.limits.limit(&groups, self.clock.now()).await?;
        let mut refusal: Option<(&Item, Duration)> = None;
        let mut recorded = Vec::new();
        for (group, verdict) in groups.iter().zip(&verdicts) {
            let allowed = group.allowed(verdict);
            for (item, outcome) in group.items.iter().zip(&verdict.outcomes) {
                match outcome.denied {
                    Some(wait) => {
                        self.metrics
                            .rate_limited(name, item.scope.as_str(), item.monitor);
                        match item.scope {
                            Scope::Range => self.metrics.blocked(name, "range", item.monitor),
                            Scope::Conversion => {
                                self.metrics.blocked(name, "conversion", item.monitor)
                            }
                            _ => {}
                        }
                        if item.monitor {
                            warn!(scope = item.scope.as_str(), policy = %item.policy, "limit exceeded (monitor mode: allowed)");
                        } else if refusal.is_none_or(|(_, longest)| wait > longest) {
                            refusal = Some((item, wait));
                        }
                    }
                    None if allowed => self.count_budget(name, item, outcome.used_before),
                    None => {}
                }
            }
            if allowed {
                recorded.push(group.recorded(verdict));
            }
        }
        let Some((item, retry_after)) = refusal else {
            return Ok(Taken(recorded));
        };
        self.give_back(Taken(recorded)).await;
        let quota = match item.check {
            Check::Rate(gcra) => gcra.burst,
            Check::Quota { cap, .. } => cap,
            Check::Conversion(conversion) => conversion.min_sends,
        };
        let limited = Limited {
            scope: item.scope,
            retry_after,
            policy: item.policy.clone(),
            quota,
            window: item.window,
        };
        warn!(scope = item.scope.as_str(), policy = %item.policy, retry_after_ms = retry_after.as_millis() as u64, "request refused by a limit");
        Err(if item.scope == Scope::Budget {
            Error::BudgetExhausted(limited)
        } else {
            Error::RateLimited(limited)
        })
    }

    fn count_budget(&self, service: &str, item: &Item, used_before: u64) {
        let Check::Quota { cap, .. } = item.check else {
            return;
        };
        let used_after = used_before + item.cost;
        for threshold in BUDGET_THRESHOLDS {
            let mark = (cap * threshold).div_ceil(100);
            if used_before < mark && used_after >= mark {
                self.metrics
                    .budget_crossed(service, &item.policy, threshold);
            }
        }
    }

    /// Refunds what `take_limits` recorded (best effort: a lost refund only
    /// makes a limit stricter).
    pub(super) async fn give_back(&self, taken: Taken) {
        if taken.0.is_empty() {
            return;
        }
        if let Err(error) = self.stores.limits.refund(&taken.0, self.clock.now()).await {
            warn!(error = %error, "limits not refunded");
        }
    }
}
