//! The behaviour every backend must have, written once, one suite per
//! concern: `verifications`, `outbox`, `idempotency`, `limits`, `events`.
//! `store_conformance!` turns each case into a named test for one backend
//! (`memory/mod.rs` for `MemoryStore`, `tests/api/store_redis.rs` for
//! `RedisStore` on one server and on Cluster), one module per suite.

pub mod events;
pub mod idempotency;
pub mod limits;
pub mod outbox;
pub mod verifications;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::{
    Candidate, Changed, Checked, Claimed, Delivery, DeliveryStatus, Digest, Enqueue, Finish,
    IdempotencyKey, NewCode, NewVerification, NumberKey, Record, ResendPolicy, Resent, Reservation,
    Started, Stores, Watch, SHARDS,
};
use crate::domain::{Channel, Receipt};
use crate::domain::{Clock, ManualClock};
use crate::domain::{ServiceName, Status, Timestamp, VerificationId};
use crate::ratelimit::{Check, Conversion, FailurePolicy, Gcra, Group, Item, Scope};

/// A backend under test, its clock, and whatever must live as long as it
/// (a redis-server, for example).
pub struct Fixture {
    pub stores: Stores,
    pub clock: ManualClock,
    _keep: Box<dyn Any + Send + Sync>,
}

impl Fixture {
    pub fn new(stores: Stores, clock: ManualClock, keep: impl Any + Send + Sync) -> Self {
        Fixture {
            stores,
            clock,
            _keep: Box::new(keep),
        }
    }
}

#[macro_export]
macro_rules! store_conformance {
    ($fixture:path) => {
        $crate::store_conformance!(@suite verifications $fixture;
            start_then_get_round_trips,
            other_services_do_not_see_a_verification,
            expired_is_not_found,
            right_code_approves_once_under_concurrency,
            wrong_codes_never_overspend_attempts,
            wrong_binding_counts_as_a_wrong_code,
            a_rotated_secret_still_checks,
            start_with_the_same_binding_returns_the_pending_one,
            start_with_another_binding_cancels_and_replaces,
            start_after_a_finished_one_creates_a_new_one,
            resend_replaces_the_code_and_keeps_attempts_left,
            resend_obeys_cooldown_and_max_sends,
            a_resend_on_another_channel_has_its_own_cooldown,
            cancel_finishes_a_verification,
            a_receipt_records_delivery_once,
            message_ids_are_indexed_per_carrier_until_they_expire,
            an_undelivered_receipt_lifts_the_cooldown,
            wrong_codes_delay_then_lock_the_number,
            forgotten_failures_lift_the_numbers_lockout,
            a_right_code_resets_the_numbers_failures,
            a_check_must_name_the_verifications_number);
        $crate::store_conformance!(@suite outbox $fixture;
            a_start_queues_its_send_and_a_finish_records_it,
            a_newer_send_supersedes_an_older_one,
            a_failed_send_is_taken_back,
            idle_claims_are_taken_over,
            a_claim_taken_over_is_not_kept_by_its_old_holder,
            takeover_is_bounded_in_total,
            kept_claims_are_not_taken_over,
            a_full_outbox_refuses_starts_and_resends,
            a_test_number_is_stored_but_never_queued,
            a_send_is_finished_once,
            an_overdue_watched_send_is_queued_once_more_for_the_next_carrier,
            an_undelivered_receipt_queues_a_watched_send_at_once,
            a_delivered_receipt_or_a_finished_verification_ends_the_watch,
            a_fallback_watch_switches_the_channel_once,
            a_failed_send_with_a_fallback_goes_on_its_channel_at_once,
            each_fallback_step_runs_once);
        $crate::store_conformance!(@suite events $fixture;
            each_change_queues_its_event_in_order,
            a_queue_is_held_by_one_replica_until_its_lease_lapses,
            delivered_events_leave_and_failing_ones_are_dead_lettered,
            an_expired_verification_is_reported_once,
            cancels_and_refused_starts_are_reported);
        $crate::store_conformance!(@suite idempotency $fixture;
            idempotency_reserves_completes_and_replays,
            idempotency_release_and_lock_expiry_free_the_key);
        $crate::store_conformance!(@suite limits $fixture;
            a_rate_allows_its_burst_then_waits_honestly,
            a_group_is_decided_all_or_nothing,
            monitored_items_report_without_refusing,
            a_blocking_item_blocks_its_key_for_the_block_time,
            a_lifted_block_is_gone_with_its_counts,
            safe_list_entries_expire_or_are_taken_off,
            a_quota_counts_within_its_window_and_refunds,
            a_destination_without_approvals_is_blocked_until_its_window_forgets,
            groups_in_one_call_are_independent);
    };
    (@suite $suite:ident $fixture:path; $($case:ident),+) => {
        mod $suite {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let fixture = $fixture().await;
                    $crate::store::conformance::$suite::$case(&fixture).await;
                }
            )+
        }
    };
}

/// The services whose lifecycle events a backend under test queues: `demo`
/// (and not `other`).
pub fn with_events() -> Vec<ServiceName> {
    vec![service("demo")]
}

const TTL: Duration = Duration::from_secs(300);

const COOLDOWN: Duration = Duration::from_secs(30);

const POLICY: ResendPolicy = ResendPolicy {
    cooldown: COOLDOWN,
    max_cooldown: Duration::from_secs(600),
    max_sends: 3,
    ttl: TTL,
};

fn enqueue() -> Enqueue {
    Enqueue {
        sealed_code: vec![0xc0, 0xde, 0, 1],
        key_id: "k1".into(),
        shard_cap: 100,
    }
}

fn service(name: &str) -> ServiceName {
    name.parse().expect("service name")
}

fn digest(seed: u8) -> Digest {
    [seed; 32]
}

fn candidate(code: u8, binding: Option<u8>) -> Vec<Candidate> {
    vec![Candidate {
        key_id: "k1".into(),
        code: digest(code),
        binding: binding.map(digest),
    }]
}

/// A pending verification of one fixed number, as `otp` would build it.
pub fn new_verification(
    clock: &ManualClock,
    service_name: &str,
    binding: Option<u8>,
) -> NewVerification {
    let now = clock.now();
    let number = NumberKey([42; 16]);
    let record = Record {
        id: VerificationId::generate(number.shard()),
        service: service(service_name),
        status: Status::Pending,
        masked_to: "+81 90-****-5678".into(),
        channel: Channel::Sms,
        sealed_to: vec![1, 2, 3, 0, 255],
        locale: "ja".parse().expect("locale"),
        created_at: now,
        expires_at: now.plus(TTL),
        resend_after: now.plus(COOLDOWN),
        other_resend_after: None,
        sends: 1,
        attempts_left: 5,
        key_id: "k1".into(),
        code_digest: digest(1),
        binding_digest: binding.map(digest),
        number,
        country_code: 81,
        country: "JP".into(),
        app_hash: None,
        display_name: None,
        delivery: Delivery::queued(),
        fallback_steps: 0,
    };
    NewVerification {
        enqueue: Some(enqueue()),
        record,
        index_ttl: TTL * POLICY.max_sends + Duration::from_secs(60),
    }
}

async fn started(fx: &Fixture, binding: Option<u8>) -> Record {
    let new = new_verification(&fx.clock, "demo", binding);
    created(fx, &new).await;
    new.record
}

/// Starts `new`, which must create a verification.
async fn created(fx: &Fixture, new: &NewVerification) {
    let outcome = fx
        .stores
        .verifications
        .start(new, fx.clock.now())
        .await
        .expect("start");
    assert!(matches!(outcome, Started::Created { .. }), "{outcome:?}");
}

async fn stored(fx: &Fixture, id: &VerificationId) -> Record {
    fx.stores
        .verifications
        .get(&service("demo"), id, fx.clock.now())
        .await
        .expect("get")
        .expect("present")
}

/// Claims everything queued now.
async fn claim_all(fx: &Fixture, consumer: &str) -> Vec<Claimed> {
    fx.stores
        .outbox
        .claim(consumer, 100, Duration::from_millis(50))
        .await
        .expect("claim")
}

async fn finish(fx: &Fixture, claimed: &Claimed, how: Finish) {
    fx.stores
        .outbox
        .finish(claimed, &how, fx.clock.now())
        .await
        .expect("finish");
}

fn sent() -> Finish {
    Finish::Sent {
        carrier: "recording".into(),
        message_id: "m-1".into(),
        watch: None,
    }
}

/// Sent, and watched for its receipt for a minute (REL-4).
fn sent_watched(fx: &Fixture) -> Finish {
    Finish::Sent {
        carrier: "recording".into(),
        message_id: "m-1".into(),
        watch: Some(Watch {
            until: fx.clock.now().plus(Duration::from_secs(60)),
            then: None,
        }),
    }
}
