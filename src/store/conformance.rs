//! The behaviour every `Store` must have, written once. `store_conformance!`
//! turns each case into a named test for one implementation:
//! `memory.rs` for `MemoryStore`, `tests/api/store_redis.rs` for `RedisStore`.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use super::{
    Candidate, Changed, Checked, Claimed, Delivery, DeliveryStatus, Digest, Enqueue, Finish,
    IdempotencyKey, NewVerification, NumberKey, Record, ResendPolicy, Resent, Reservation, Started,
    Store, SHARDS,
};
use crate::carrier::Receipt;
use crate::domain::{ServiceName, Status, Timestamp, VerificationId};
use crate::otp::{Clock, ManualClock};
use crate::ratelimit::{Check, FailurePolicy, Gcra, Group, Item, Scope};

/// A store under test, its clock, and whatever must live as long as it
/// (a redis-server, for example).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub clock: ManualClock,
    _keep: Box<dyn Any + Send + Sync>,
}

impl Fixture {
    pub fn new(store: Arc<dyn Store>, clock: ManualClock, keep: impl Any + Send + Sync) -> Self {
        Fixture {
            store,
            clock,
            _keep: Box::new(keep),
        }
    }
}

#[macro_export]
macro_rules! store_conformance {
    ($fixture:path) => {
        $crate::store_conformance!(@each $fixture;
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
            cancel_finishes_a_verification,
            a_start_queues_its_send_and_a_finish_records_it,
            a_newer_send_supersedes_an_older_one,
            a_failed_send_is_taken_back,
            idle_claims_are_taken_over,
            kept_claims_are_not_taken_over,
            a_receipt_records_delivery_once,
            message_ids_are_indexed_per_carrier_until_they_expire,
            an_undelivered_receipt_lifts_the_cooldown,
            a_full_outbox_refuses_starts_and_resends,
            a_send_is_finished_once,
            idempotency_reserves_completes_and_replays,
            idempotency_release_and_lock_expiry_free_the_key,
            wrong_codes_delay_then_lock_the_number,
            a_right_code_resets_the_numbers_failures,
            a_rate_allows_its_burst_then_waits_honestly,
            a_group_is_decided_all_or_nothing,
            monitored_items_report_without_refusing,
            a_blocking_item_blocks_its_key_for_the_block_time,
            a_quota_counts_within_its_window_and_refunds,
            groups_in_one_call_are_independent);
    };
    (@each $fixture:path; $($case:ident),+) => { $(
        #[tokio::test]
        async fn $case() {
            let fixture = $fixture().await;
            $crate::store::conformance::$case(&fixture).await;
        }
    )+ };
}

const TTL: Duration = Duration::from_secs(300);
const COOLDOWN: Duration = Duration::from_secs(30);
const POLICY: ResendPolicy = ResendPolicy {
    cooldown: COOLDOWN,
    max_cooldown: Duration::from_secs(600),
    max_sends: 3,
    ttl: TTL,
};
/// Failures that never get in the way of the other cases.
const FAILURES: FailurePolicy = FailurePolicy {
    max: 100,
    free: 99,
    delay: Duration::from_secs(30),
    max_delay: Duration::from_secs(3600),
    decay: Duration::from_secs(86_400),
};
/// The number's failure gate under test.
const GATE: FailurePolicy = FailurePolicy {
    max: 6,
    free: 2,
    delay: Duration::from_secs(30),
    max_delay: Duration::from_secs(3600),
    decay: Duration::from_secs(86_400),
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
        sealed_to: vec![1, 2, 3, 0, 255],
        locale: "ja".parse().expect("locale"),
        created_at: now,
        expires_at: now.plus(TTL),
        resend_after: now.plus(COOLDOWN),
        sends: 1,
        attempts_left: 5,
        key_id: "k1".into(),
        code_digest: digest(1),
        binding_digest: binding.map(digest),
        number,
        country_code: 81,
        app_hash: None,
        delivery: Delivery::queued(),
    };
    NewVerification {
        enqueue: enqueue(),
        record,
        index_ttl: TTL * POLICY.max_sends + Duration::from_secs(60),
    }
}

async fn started(fx: &Fixture, binding: Option<u8>) -> Record {
    let new = new_verification(&fx.clock, "demo", binding);
    let outcome = fx.store.start(&new, fx.clock.now()).await.expect("start");
    assert!(matches!(outcome, Started::Created { .. }), "{outcome:?}");
    new.record
}

async fn stored(fx: &Fixture, id: &VerificationId) -> Record {
    fx.store
        .get(&service("demo"), id, fx.clock.now())
        .await
        .expect("get")
        .expect("present")
}

pub async fn start_then_get_round_trips(fx: &Fixture) {
    let record = started(fx, Some(9)).await;
    assert_eq!(stored(fx, &record.id).await, record);
    let found = fx
        .store
        .find(&NumberKey([42; 16]), fx.clock.now())
        .await
        .expect("find");
    assert_eq!(found, Some(record.id));
}

pub async fn other_services_do_not_see_a_verification(fx: &Fixture) {
    let record = started(fx, None).await;
    let other = service("other");
    let now = fx.clock.now();
    assert_eq!(
        fx.store.get(&other, &record.id, now).await.expect("get"),
        None
    );
    let checked = fx
        .store
        .check(&other, &record.id, &candidate(1, None), &FAILURES, now)
        .await
        .expect("check");
    assert_eq!(checked, Checked::NotFound);
    assert_eq!(
        fx.store
            .cancel(&other, &record.id, now)
            .await
            .expect("cancel"),
        Changed::NotFound
    );
    assert_eq!(stored(fx, &record.id).await.status, Status::Pending);
}

/// SEC-3: a code is accepted up to its expiry and never after it.
pub async fn expired_is_not_found(fx: &Fixture) {
    let record = started(fx, None).await;
    fx.clock.advance(TTL - Duration::from_secs(1));
    assert!(fx
        .store
        .get(&service("demo"), &record.id, fx.clock.now())
        .await
        .expect("get")
        .is_some());
    fx.clock.advance(Duration::from_secs(1));
    let now = fx.clock.now();
    let demo = service("demo");
    assert_eq!(
        fx.store.get(&demo, &record.id, now).await.expect("get"),
        None
    );
    assert_eq!(
        fx.store
            .check(&demo, &record.id, &candidate(1, None), &FAILURES, now)
            .await
            .expect("check"),
        Checked::NotFound
    );
    assert_eq!(
        fx.store
            .resend(
                &demo,
                &record.id,
                &candidate(2, None),
                POLICY,
                &enqueue(),
                now
            )
            .await
            .expect("resend"),
        Resent::NotFound
    );
    assert_eq!(
        fx.store
            .cancel(&demo, &record.id, now)
            .await
            .expect("cancel"),
        Changed::NotFound
    );
}

/// SEC-4: any number of concurrent right checks approve exactly once.
pub async fn right_code_approves_once_under_concurrency(fx: &Fixture) {
    let record = started(fx, None).await;
    let demo = service("demo");
    let now = fx.clock.now();
    let right = candidate(1, None);
    let checks = (0..50).map(|_| fx.store.check(&demo, &record.id, &right, &FAILURES, now));
    let outcomes: Vec<Checked> = join_all(checks)
        .await
        .into_iter()
        .map(|o| o.expect("check"))
        .collect();
    let approved = outcomes
        .iter()
        .filter(|o| matches!(o, Checked::Approved(_)))
        .count();
    let finished = outcomes
        .iter()
        .filter(|o| matches!(o, Checked::Finished(r) if r.status == Status::Approved))
        .count();
    assert_eq!((approved, finished), (1, 49));
}

/// SEC-7: concurrent wrong checks spend exactly `attempts_left`, never more.
pub async fn wrong_codes_never_overspend_attempts(fx: &Fixture) {
    let record = started(fx, None).await;
    let demo = service("demo");
    let now = fx.clock.now();
    let wrong = candidate(2, None);
    let checks = (0..20).map(|_| fx.store.check(&demo, &record.id, &wrong, &FAILURES, now));
    let outcomes: Vec<Checked> = join_all(checks)
        .await
        .into_iter()
        .map(|o| o.expect("check"))
        .collect();
    let wrong_count = outcomes
        .iter()
        .filter(|o| matches!(o, Checked::Wrong(_)))
        .count();
    assert_eq!(wrong_count, 5);
    let after = stored(fx, &record.id).await;
    assert_eq!((after.status, after.attempts_left), (Status::Failed, 0));
    // SEC-7: the right code after exhaustion still fails.
    let late = fx
        .store
        .check(&demo, &record.id, &candidate(1, None), &FAILURES, now)
        .await
        .expect("check");
    assert!(matches!(late, Checked::Finished(r) if r.status == Status::Failed));
}

/// SEC-5: the right code with a wrong or missing binding is a wrong code.
pub async fn wrong_binding_counts_as_a_wrong_code(fx: &Fixture) {
    let record = started(fx, Some(7)).await;
    let demo = service("demo");
    let now = fx.clock.now();
    for binding in [Some(8), None] {
        let checked = fx
            .store
            .check(&demo, &record.id, &candidate(1, binding), &FAILURES, now)
            .await
            .expect("check");
        assert!(
            matches!(checked, Checked::Wrong(_)),
            "{binding:?}: {checked:?}"
        );
    }
    assert_eq!(stored(fx, &record.id).await.attempts_left, 3);
    let right = fx
        .store
        .check(&demo, &record.id, &candidate(1, Some(7)), &FAILURES, now)
        .await
        .expect("check");
    assert!(matches!(right, Checked::Approved(_)));
}

pub async fn a_rotated_secret_still_checks(fx: &Fixture) {
    let record = started(fx, None).await;
    let rotated = vec![
        Candidate {
            key_id: "k2".into(),
            code: digest(99),
            binding: None,
        },
        Candidate {
            key_id: "k1".into(),
            code: digest(1),
            binding: None,
        },
    ];
    let checked = fx
        .store
        .check(
            &service("demo"),
            &record.id,
            &rotated,
            &FAILURES,
            fx.clock.now(),
        )
        .await
        .expect("check");
    assert!(matches!(checked, Checked::Approved(_)), "{checked:?}");
}

pub async fn start_with_the_same_binding_returns_the_pending_one(fx: &Fixture) {
    let first = started(fx, Some(3)).await;
    let again = new_verification(&fx.clock, "demo", Some(3));
    let outcome = fx.store.start(&again, fx.clock.now()).await.expect("start");
    assert_eq!(outcome, Started::Pending(first.id));
    assert_eq!(
        fx.store
            .get(&service("demo"), &again.record.id, fx.clock.now())
            .await
            .expect("get"),
        None
    );
}

pub async fn start_with_another_binding_cancels_and_replaces(fx: &Fixture) {
    let first = started(fx, Some(3)).await;
    for binding in [Some(4), None] {
        let previous = fx
            .store
            .find(&NumberKey([42; 16]), fx.clock.now())
            .await
            .expect("find")
            .expect("indexed");
        let next = new_verification(&fx.clock, "demo", binding);
        let outcome = fx.store.start(&next, fx.clock.now()).await.expect("start");
        assert_eq!(
            outcome,
            Started::Created {
                replaced: Some(previous)
            }
        );
        assert_eq!(stored(fx, &previous).await.status, Status::Canceled);
        assert_eq!(
            fx.store
                .find(&NumberKey([42; 16]), fx.clock.now())
                .await
                .expect("find"),
            Some(next.record.id)
        );
    }
    assert_eq!(stored(fx, &first.id).await.status, Status::Canceled);
}

pub async fn start_after_a_finished_one_creates_a_new_one(fx: &Fixture) {
    let first = started(fx, None).await;
    fx.store
        .cancel(&service("demo"), &first.id, fx.clock.now())
        .await
        .expect("cancel");
    let next = new_verification(&fx.clock, "demo", None);
    assert_eq!(
        fx.store.start(&next, fx.clock.now()).await.expect("start"),
        Started::Created { replaced: None }
    );
    fx.clock.advance(TTL);
    let after_expiry = new_verification(&fx.clock, "demo", None);
    let outcome = fx
        .store
        .start(&after_expiry, fx.clock.now())
        .await
        .expect("start");
    assert_eq!(outcome, Started::Created { replaced: None });
}

/// SEC-6: a resend replaces the code and never resets the attempt count.
pub async fn resend_replaces_the_code_and_keeps_attempts_left(fx: &Fixture) {
    let record = started(fx, None).await;
    let demo = service("demo");
    fx.store
        .check(
            &demo,
            &record.id,
            &candidate(9, None),
            &FAILURES,
            fx.clock.now(),
        )
        .await
        .expect("check");
    fx.clock.advance(COOLDOWN);
    let now = fx.clock.now();
    let resent = fx
        .store
        .resend(
            &demo,
            &record.id,
            &candidate(2, None),
            POLICY,
            &enqueue(),
            now,
        )
        .await
        .expect("resend");
    let Resent::Resent(after) = resent else {
        panic!("{resent:?}")
    };
    assert_eq!((after.sends, after.attempts_left), (2, 4));
    assert_eq!(after.resend_after, now.plus(POLICY.cooldown_after(2)));
    assert_eq!(after.expires_at, now.plus(TTL));
    let old = fx
        .store
        .check(&demo, &record.id, &candidate(1, None), &FAILURES, now)
        .await
        .expect("check");
    assert!(
        matches!(old, Checked::Wrong(_)),
        "the old code must stop working: {old:?}"
    );
    let new = fx
        .store
        .check(&demo, &record.id, &candidate(2, None), &FAILURES, now)
        .await
        .expect("check");
    assert!(matches!(new, Checked::Approved(_)), "{new:?}");
}

pub async fn resend_obeys_cooldown_and_max_sends(fx: &Fixture) {
    let record = started(fx, None).await;
    let demo = service("demo");
    let resend = |fx: &Fixture| {
        let (demo, id) = (demo.clone(), record.id);
        let store = Arc::clone(&fx.store);
        let now = fx.clock.now();
        async move {
            store
                .resend(&demo, &id, &candidate(2, None), POLICY, &enqueue(), now)
                .await
                .expect("resend")
        }
    };
    assert!(matches!(resend(fx).await, Resent::TooSoon(_)));
    // The cooldown doubles with every send: 30 s, then 60 s, …
    for sends in 1..POLICY.max_sends {
        fx.clock
            .advance(POLICY.cooldown_after(sends) - Duration::from_millis(1));
        assert!(
            matches!(resend(fx).await, Resent::TooSoon(_)),
            "send {sends}: too soon by 1 ms"
        );
        fx.clock.advance(Duration::from_millis(1));
        let now = fx.clock.now();
        let resent = resend(fx).await;
        let expected = now.plus(POLICY.cooldown_after(sends + 1));
        assert!(
            matches!(resent, Resent::Resent(ref r) if r.resend_after == expected),
            "{resent:?}"
        );
    }
    fx.clock.advance(POLICY.cooldown_after(POLICY.max_sends));
    assert!(matches!(resend(fx).await, Resent::MaxSends(r) if r.sends == POLICY.max_sends));
}

pub async fn cancel_finishes_a_verification(fx: &Fixture) {
    let record = started(fx, None).await;
    let demo = service("demo");
    let now = fx.clock.now();
    let canceled = fx
        .store
        .cancel(&demo, &record.id, now)
        .await
        .expect("cancel");
    assert!(matches!(canceled, Changed::Changed(r) if r.status == Status::Canceled));
    assert!(matches!(
        fx.store
            .cancel(&demo, &record.id, now)
            .await
            .expect("cancel"),
        Changed::Finished(_)
    ));
    let checked = fx
        .store
        .check(&demo, &record.id, &candidate(1, None), &FAILURES, now)
        .await
        .expect("check");
    assert!(
        matches!(checked, Checked::Finished(r) if r.status == Status::Canceled && r.attempts_left == 5)
    );
    let resent = fx
        .store
        .resend(
            &demo,
            &record.id,
            &candidate(2, None),
            POLICY,
            &enqueue(),
            now.plus(COOLDOWN),
        )
        .await;
    assert!(matches!(resent.expect("resend"), Resent::Finished(_)));
}

/// Claims everything queued now.
async fn claim_all(fx: &Fixture, consumer: &str) -> Vec<Claimed> {
    fx.store
        .claim(consumer, 100, Duration::from_millis(50))
        .await
        .expect("claim")
}

async fn finish(fx: &Fixture, claimed: &Claimed, how: Finish) {
    fx.store
        .finish(claimed, &how, fx.clock.now())
        .await
        .expect("finish");
}

fn sent() -> Finish {
    Finish::Sent {
        carrier: "recording".into(),
        message_id: "m-1".into(),
    }
}

/// A start stores the verification and queues its first send, in one step.
pub async fn a_start_queues_its_send_and_a_finish_records_it(fx: &Fixture) {
    let record = started(fx, None).await;
    assert_eq!(fx.store.outbox_depth().await.expect("depth"), 1);
    let claimed = claim_all(fx, "a").await;
    assert_eq!(claimed.len(), 1);
    let send = &claimed[0].send;
    assert_eq!(
        (send.id, send.number, send.service.as_str()),
        (record.id, 1, "demo")
    );
    assert_eq!(
        (send.sealed_code.as_slice(), send.key_id.as_str()),
        (enqueue().sealed_code.as_slice(), "k1")
    );
    assert_eq!(
        fx.store.outbox_depth().await.expect("depth"),
        1,
        "claimed is still in the outbox"
    );
    assert!(
        claim_all(fx, "b").await.is_empty(),
        "one send, one consumer"
    );
    finish(fx, &claimed[0], sent()).await;
    assert_eq!(fx.store.outbox_depth().await.expect("depth"), 0);
    let delivery = stored(fx, &record.id).await.delivery;
    assert_eq!(
        delivery,
        Delivery {
            status: DeliveryStatus::Sent,
            carrier: Some("recording".into()),
            message_id: Some("m-1".into()),
            sent_at: Some(fx.clock.now()),
        }
    );
}

async fn receipt_on(fx: &Fixture, carrier: &str, receipt: &Receipt) -> Option<Timestamp> {
    fx.store
        .receipt(carrier, receipt, fx.clock.now())
        .await
        .expect("receipt")
}

/// A receipt for the send a verification holds records its outcome once;
/// receipts naming another carrier, message or send change nothing.
pub async fn a_receipt_records_delivery_once(fx: &Fixture) {
    let record = started(fx, None).await;
    let claimed = claim_all(fx, "a").await;
    let accepted_at = fx.clock.now();
    finish(fx, &claimed[0], sent()).await;
    fx.clock.advance(Duration::from_secs(4));
    let receipt = Receipt {
        verification: record.id,
        send: 1,
        message_id: "m-1".into(),
        delivered: true,
    };
    let strangers = [
        ("other-carrier", receipt.clone()),
        (
            "recording",
            Receipt {
                message_id: "m-2".into(),
                ..receipt.clone()
            },
        ),
        (
            "recording",
            Receipt {
                send: 2,
                ..receipt.clone()
            },
        ),
    ];
    for (carrier, stranger) in &strangers {
        let applied = receipt_on(fx, carrier, stranger).await;
        assert_eq!(applied, None, "{carrier} {stranger:?}");
    }
    assert_eq!(
        stored(fx, &record.id).await.delivery.status,
        DeliveryStatus::Sent
    );
    let applied = receipt_on(fx, "recording", &receipt).await;
    assert_eq!(applied, Some(accepted_at));
    assert_eq!(
        stored(fx, &record.id).await.delivery.status,
        DeliveryStatus::Delivered
    );
    let again = receipt_on(fx, "recording", &receipt).await;
    assert_eq!(again, None, "a duplicate changes nothing");
}

pub async fn message_ids_are_indexed_per_carrier_until_they_expire(fx: &Fixture) {
    let record = started(fx, None).await;
    let ttl = Duration::from_secs(60);
    let now = fx.clock.now();
    fx.store
        .index_message("smsc", "4a1f", (record.id, 2), ttl, now)
        .await
        .expect("index");
    let find = |carrier: &'static str, id: &'static str| async move {
        fx.store
            .find_message(carrier, id, fx.clock.now())
            .await
            .expect("find")
    };
    assert_eq!(find("smsc", "4a1f").await, Some((record.id, 2)));
    assert_eq!(find("other", "4a1f").await, None, "per carrier");
    assert_eq!(find("smsc", "4a1e").await, None);
    fx.clock.advance(ttl);
    assert_eq!(find("smsc", "4a1f").await, None, "expired");
}

/// An undelivered code lifts the resend cooldown: the user may ask again.
pub async fn an_undelivered_receipt_lifts_the_cooldown(fx: &Fixture) {
    let record = started(fx, None).await;
    let claimed = claim_all(fx, "a").await;
    finish(fx, &claimed[0], sent()).await;
    let receipt = Receipt {
        verification: record.id,
        send: 1,
        message_id: "m-1".into(),
        delivered: false,
    };
    assert!(receipt_on(fx, "recording", &receipt).await.is_some());
    let stored = stored(fx, &record.id).await;
    assert_eq!(stored.delivery.status, DeliveryStatus::Undelivered);
    assert_eq!(stored.resend_after, fx.clock.now());
}

/// A resend queues send 2; finishing the superseded send 1 records nothing.
pub async fn a_newer_send_supersedes_an_older_one(fx: &Fixture) {
    let record = started(fx, None).await;
    let first = claim_all(fx, "a").await;
    fx.clock.advance(COOLDOWN);
    let demo = service("demo");
    let resent = fx
        .store
        .resend(
            &demo,
            &record.id,
            &candidate(2, None),
            POLICY,
            &enqueue(),
            fx.clock.now(),
        )
        .await;
    assert!(
        matches!(resent.expect("resend"), Resent::Resent(r) if r.delivery == Delivery::queued())
    );
    let second = claim_all(fx, "a").await;
    assert_eq!(
        second.iter().map(|c| c.send.number).collect::<Vec<_>>(),
        [2]
    );
    finish(fx, &first[0], sent()).await;
    assert_eq!(
        stored(fx, &record.id).await.delivery.status,
        DeliveryStatus::Queued,
        "send 1 is not the latest"
    );
    finish(fx, &second[0], sent()).await;
    assert_eq!(
        stored(fx, &record.id).await.delivery.status,
        DeliveryStatus::Sent
    );
}

/// A send that failed on every route is taken back: the user may ask again.
pub async fn a_failed_send_is_taken_back(fx: &Fixture) {
    let record = started(fx, None).await;
    let claimed = claim_all(fx, "a").await;
    finish(fx, &claimed[0], Finish::Failed { dead: true }).await;
    let after = stored(fx, &record.id).await;
    assert_eq!(
        (after.delivery.status, after.sends, after.resend_after),
        (DeliveryStatus::Failed, 0, fx.clock.now())
    );
    let resent = fx
        .store
        .resend(
            &service("demo"),
            &record.id,
            &candidate(2, None),
            POLICY,
            &enqueue(),
            fx.clock.now(),
        )
        .await;
    assert!(matches!(resent.expect("resend"), Resent::Resent(r) if r.sends == 1));
}

/// At least once: a send claimed by a replica that died is taken over.
/// A worker that keeps its claim fresh keeps its send; once it stops, the
/// send goes idle and is taken over.
pub async fn kept_claims_are_not_taken_over(fx: &Fixture) {
    const IDLE: Duration = Duration::from_millis(200);
    started(fx, None).await;
    let held = claim_all(fx, "a").await;
    let kept_until = std::time::Instant::now() + 3 * IDLE;
    while std::time::Instant::now() < kept_until {
        fx.store.keep("a", &held[0]).await.expect("keep");
        let taken = fx.store.reclaim("b", IDLE, 10).await.expect("reclaim");
        assert!(taken.is_empty(), "a kept send was taken over");
        tokio::time::sleep(IDLE / 8).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let taken = fx.store.reclaim("b", IDLE, 10).await.expect("reclaim");
        if let [claimed] = taken.as_slice() {
            assert_eq!(claimed.entry, held[0].entry);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "an idle send was never taken over"
        );
        tokio::time::sleep(IDLE / 8).await;
    }
}

pub async fn idle_claims_are_taken_over(fx: &Fixture) {
    started(fx, None).await;
    let lost = claim_all(fx, "dead-replica").await;
    assert_eq!(lost.len(), 1);
    let kept = fx
        .store
        .reclaim("b", Duration::from_secs(3600), 10)
        .await
        .expect("reclaim");
    assert!(kept.is_empty(), "not idle long enough");
    let taken = fx
        .store
        .reclaim("b", Duration::ZERO, 10)
        .await
        .expect("reclaim");
    assert_eq!(
        taken
            .iter()
            .map(|c| (&c.entry, &c.send))
            .collect::<Vec<_>>(),
        [(&lost[0].entry, &lost[0].send)]
    );
    finish(fx, &taken[0], sent()).await;
    assert_eq!(fx.store.outbox_depth().await.expect("depth"), 0);
}

/// The outbox is bounded per shard: a full shard refuses starts and
/// resends, and changes nothing.
pub async fn a_full_outbox_refuses_starts_and_resends(fx: &Fixture) {
    let mut first = new_verification(&fx.clock, "demo", None);
    first.enqueue.shard_cap = 1;
    assert!(matches!(
        fx.store.start(&first, fx.clock.now()).await.expect("start"),
        Started::Created { .. }
    ));
    let mut same_shard = new_verification(&fx.clock, "demo", None);
    same_shard.record.number = NumberKey([42 + SHARDS; 16]);
    same_shard.enqueue.shard_cap = 1;
    assert_eq!(
        fx.store
            .start(&same_shard, fx.clock.now())
            .await
            .expect("start"),
        Started::Full
    );
    assert!(fx
        .store
        .get(&service("demo"), &same_shard.record.id, fx.clock.now())
        .await
        .expect("get")
        .is_none());
    fx.clock.advance(COOLDOWN);
    let full = Enqueue {
        shard_cap: 1,
        ..enqueue()
    };
    let (demo, new_code) = (service("demo"), candidate(2, None));
    let resent = fx
        .store
        .resend(
            &demo,
            &first.record.id,
            &new_code,
            POLICY,
            &full,
            fx.clock.now(),
        )
        .await;
    assert_eq!(resent.expect("resend"), Resent::Full);
    assert_eq!(
        stored(fx, &first.record.id).await.sends,
        1,
        "nothing changed"
    );
    let claimed = claim_all(fx, "a").await;
    finish(fx, &claimed[0], sent()).await;
    assert!(matches!(
        fx.store
            .start(&same_shard, fx.clock.now())
            .await
            .expect("start"),
        Started::Created { .. }
    ));
}

/// Finishing is idempotent: a second finish of the same send records nothing.
pub async fn a_send_is_finished_once(fx: &Fixture) {
    let record = started(fx, None).await;
    let claimed = claim_all(fx, "a").await;
    finish(fx, &claimed[0], sent()).await;
    finish(fx, &claimed[0], Finish::Failed { dead: true }).await;
    let after = stored(fx, &record.id).await;
    assert_eq!(
        (after.delivery.status, after.sends),
        (DeliveryStatus::Sent, 1)
    );
}

pub async fn idempotency_reserves_completes_and_replays(fx: &Fixture) {
    let key = IdempotencyKey([5; 16]);
    let now = fx.clock.now();
    let lock = Duration::from_secs(30);
    assert_eq!(
        fx.store
            .reserve(&key, &digest(1), lock, now)
            .await
            .expect("reserve"),
        Reservation::Reserved
    );
    let running = fx
        .store
        .reserve(&key, &digest(2), lock, now)
        .await
        .expect("reserve");
    assert_eq!(
        running,
        Reservation::Taken {
            fingerprint: digest(1),
            answer: None
        }
    );
    fx.store
        .complete(&key, b"{\"answer\":1}", Duration::from_secs(3600), now)
        .await
        .expect("complete");
    fx.clock.advance(lock * 2);
    let done = fx
        .store
        .reserve(&key, &digest(1), lock, fx.clock.now())
        .await
        .expect("reserve");
    assert_eq!(
        done,
        Reservation::Taken {
            fingerprint: digest(1),
            answer: Some(b"{\"answer\":1}".to_vec())
        }
    );
}

pub async fn idempotency_release_and_lock_expiry_free_the_key(fx: &Fixture) {
    let key = IdempotencyKey([6; 16]);
    let lock = Duration::from_secs(30);
    let reserve = |fx: &Fixture| {
        let store = Arc::clone(&fx.store);
        let now = fx.clock.now();
        async move {
            store
                .reserve(&key, &digest(1), lock, now)
                .await
                .expect("reserve")
        }
    };
    assert_eq!(reserve(fx).await, Reservation::Reserved);
    fx.store.release(&key).await.expect("release");
    assert_eq!(reserve(fx).await, Reservation::Reserved);
    fx.clock.advance(lock);
    assert_eq!(
        reserve(fx).await,
        Reservation::Reserved,
        "an abandoned lock expires"
    );
}

fn rate(key: u8, count: u32, period: Duration) -> Item {
    Item {
        key: [key; 16],
        check: Check::Rate(Gcra::new(count, period)),
        cost: 1,
        monitor: false,
        block: None,
        scope: Scope::Number,
        policy: format!("test-{key}"),
        window: period,
    }
}

fn group(items: Vec<Item>) -> Group {
    Group { tag: [9, 9], items }
}

/// Whether each group was allowed, and the first item's wait.
async fn take(fx: &Fixture, groups: &[Group]) -> Vec<(bool, Option<Duration>)> {
    let verdicts = fx.store.limit(groups, fx.clock.now()).await.expect("limit");
    groups
        .iter()
        .zip(&verdicts)
        .map(|(group, verdict)| (group.allowed(verdict), verdict.outcomes[0].denied))
        .collect()
}

/// RL-1: the Nth request passes, the N+1th waits, and the wait is honest.
pub async fn a_rate_allows_its_burst_then_waits_honestly(fx: &Fixture) {
    let limit = [group(vec![rate(1, 3, Duration::from_secs(60))])];
    for remaining in [2, 1, 0] {
        let verdicts = fx.store.limit(&limit, fx.clock.now()).await.expect("limit");
        assert_eq!(
            (
                verdicts[0].outcomes[0].denied,
                verdicts[0].outcomes[0].remaining
            ),
            (None, remaining)
        );
    }
    assert_eq!(
        take(fx, &limit).await,
        [(false, Some(Duration::from_secs(20)))]
    );
    fx.clock.advance(Duration::from_millis(19_999));
    assert!(!take(fx, &limit).await[0].0);
    fx.clock.advance(Duration::from_millis(1));
    assert_eq!(take(fx, &limit).await, [(true, None)]);
}

/// RL-7: a refused group records none of its items.
pub async fn a_group_is_decided_all_or_nothing(fx: &Fixture) {
    let wide = || rate(1, 5, Duration::from_secs(60));
    let narrow = rate(2, 1, Duration::from_secs(60));
    let both = [group(vec![wide(), narrow])];
    assert!(take(fx, &both).await[0].0);
    assert!(!take(fx, &both).await[0].0);
    assert!(!take(fx, &both).await[0].0);
    let verdicts = fx
        .store
        .limit(&[group(vec![wide()])], fx.clock.now())
        .await
        .expect("limit");
    assert_eq!(
        verdicts[0].outcomes[0].remaining, 3,
        "refused groups took nothing from the wide limit"
    );
}

/// ABU-9: a monitored limit reports what it would block.
pub async fn monitored_items_report_without_refusing(fx: &Fixture) {
    let mut watched = rate(3, 1, Duration::from_secs(60));
    watched.monitor = true;
    let limit = [group(vec![watched])];
    assert_eq!(take(fx, &limit).await, [(true, None)]);
    let (allowed, denied) = take(fx, &limit).await[0];
    assert!(
        allowed && denied.is_some(),
        "allowed, and reported as over the limit"
    );
}

/// ABU-4: a range over its limit is blocked for the block time.
pub async fn a_blocking_item_blocks_its_key_for_the_block_time(fx: &Fixture) {
    let mut range = rate(4, 2, Duration::from_secs(3600));
    range.block = Some(Duration::from_secs(12 * 3600));
    let limit = [group(vec![range])];
    assert!(take(fx, &limit).await[0].0);
    assert!(take(fx, &limit).await[0].0);
    assert_eq!(
        take(fx, &limit).await,
        [(false, Some(Duration::from_secs(12 * 3600)))]
    );
    fx.clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(
        take(fx, &limit).await,
        [(false, Some(Duration::from_secs(10 * 3600)))],
        "still blocked"
    );
    fx.clock.advance(Duration::from_secs(10 * 3600));
    assert!(take(fx, &limit).await[0].0, "the block lifts after 12 h");
}

pub async fn a_quota_counts_within_its_window_and_refunds(fx: &Fixture) {
    let until = fx.clock.now().plus(Duration::from_secs(3600));
    let quota = Item {
        check: Check::Quota { cap: 2, until },
        scope: Scope::Budget,
        ..rate(5, 1, Duration::from_secs(1))
    };
    let limit = [group(vec![quota])];
    for used in [0, 1] {
        let verdicts = fx.store.limit(&limit, fx.clock.now()).await.expect("limit");
        assert_eq!(
            (
                verdicts[0].outcomes[0].denied,
                verdicts[0].outcomes[0].used_before
            ),
            (None, used)
        );
    }
    assert_eq!(
        take(fx, &limit).await,
        [(false, Some(Duration::from_secs(3600)))]
    );
    fx.store
        .refund(&limit, fx.clock.now())
        .await
        .expect("refund");
    assert!(
        take(fx, &limit).await[0].0,
        "a refunded message can be sent"
    );
}

pub async fn groups_in_one_call_are_independent(fx: &Fixture) {
    let open = group(vec![rate(6, 10, Duration::from_secs(60))]);
    let mut shut = group(vec![rate(7, 1, Duration::from_secs(60))]);
    shut.tag = [8, 8];
    assert_eq!(
        take(fx, &[open.clone(), shut.clone()])
            .await
            .iter()
            .map(|t| t.0)
            .collect::<Vec<_>>(),
        [true, true]
    );
    assert_eq!(
        take(fx, &[open.clone(), shut])
            .await
            .iter()
            .map(|t| t.0)
            .collect::<Vec<_>>(),
        [true, false]
    );
    fx.store
        .refund(&[open.clone(), open.clone()], fx.clock.now())
        .await
        .expect("refund");
    let verdicts = fx
        .store
        .limit(&[open], fx.clock.now())
        .await
        .expect("limit");
    assert_eq!(
        verdicts[0].outcomes[0].remaining, 9,
        "two taken, two refunded, one taken"
    );
}

async fn check_code(fx: &Fixture, id: &VerificationId, code: u8) -> Checked {
    let candidates = candidate(code, None);
    fx.store
        .check(&service("demo"), id, &candidates, &GATE, fx.clock.now())
        .await
        .expect("check")
}

/// SEC-8, SEC-9: a number's wrong codes, across its verifications, delay
/// and then stop its checks; a refused check spends nothing.
pub async fn wrong_codes_delay_then_lock_the_number(fx: &Fixture) {
    let first = started(fx, None).await;
    for _ in 0..GATE.free + 1 {
        assert!(matches!(
            check_code(fx, &first.id, 9).await,
            Checked::Wrong(_)
        ));
    }
    // Past the free failures: 30 s, then doubling.
    assert_eq!(
        check_code(fx, &first.id, 1).await,
        Checked::Throttled {
            retry_after: GATE.delay
        }
    );
    assert_eq!(
        stored(fx, &first.id).await.attempts_left,
        2,
        "a refused check spends no attempt"
    );
    fx.clock.advance(GATE.delay);
    assert!(matches!(
        check_code(fx, &first.id, 9).await,
        Checked::Wrong(_)
    ));
    let wait = GATE.delay_after(4);
    assert_eq!(
        check_code(fx, &first.id, 9).await,
        Checked::Throttled { retry_after: wait }
    );
    fx.clock.advance(wait);
    assert!(
        matches!(check_code(fx, &first.id, 9).await, Checked::Wrong(r) if r.status == Status::Failed)
    );
    // A new verification of the same number inherits the failures.
    let second = started(fx, None).await;
    assert_eq!(
        check_code(fx, &second.id, 1).await,
        Checked::Throttled {
            retry_after: GATE.delay_after(5)
        }
    );
    fx.clock.advance(GATE.delay_after(5));
    assert!(matches!(
        check_code(fx, &second.id, 9).await,
        Checked::Wrong(_)
    ));
    // At the cap every check is refused until the failures decay.
    assert_eq!(
        check_code(fx, &second.id, 1).await,
        Checked::Throttled {
            retry_after: GATE.decay
        }
    );
    fx.clock.advance(GATE.decay - Duration::from_secs(1));
    let third = started(fx, None).await;
    assert_eq!(
        check_code(fx, &third.id, 1).await,
        Checked::Throttled {
            retry_after: Duration::from_secs(1)
        }
    );
    fx.clock.advance(Duration::from_secs(1));
    assert!(
        matches!(check_code(fx, &third.id, 1).await, Checked::Approved(_)),
        "the failures decayed"
    );
}

/// SEC-8: a right code resets the number's count.
pub async fn a_right_code_resets_the_numbers_failures(fx: &Fixture) {
    let first = started(fx, None).await;
    for _ in 0..GATE.free + 1 {
        check_code(fx, &first.id, 9).await;
    }
    fx.clock.advance(GATE.delay);
    assert!(matches!(
        check_code(fx, &first.id, 1).await,
        Checked::Approved(_)
    ));
    let second = started(fx, None).await;
    for _ in 0..GATE.free + 1 {
        assert!(
            matches!(check_code(fx, &second.id, 9).await, Checked::Wrong(_)),
            "no delay: the count restarted"
        );
    }
}
