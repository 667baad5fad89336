//! The behaviour of every `Events`: each change of a verification queues
//! its event in the same step, in order, for services with events only; a
//! queue is held by one replica at a time; delivered events leave, failing
//! ones are dead-lettered after their last try; expiry is reported once.

use super::verifications::{check, FAILURES};
use super::*;
use crate::store::events::{Event, EventKind, Lease, Polled, Tried};

fn lease(record: &Record, holder: &str) -> Lease {
    Lease {
        shard: record.id.tag(),
        service: service("demo"),
        holder: holder.into(),
        ttl: Duration::from_secs(30),
    }
}

async fn poll(fx: &Fixture, lease: &Lease) -> Option<Polled> {
    fx.stores
        .events
        .poll(lease, 100, fx.clock.now())
        .await
        .expect("poll")
}

/// The kinds queued for `lease`'s queue, in order.
async fn kinds(fx: &Fixture, lease: &Lease) -> Vec<EventKind> {
    let polled = poll(fx, lease).await.expect("held");
    polled
        .events
        .iter()
        .map(|queued| queued.event.kind)
        .collect()
}

async fn receipt(fx: &Fixture, record: &Record, delivered: bool) {
    let receipt = Receipt {
        verification: record.id,
        send: 1,
        message_id: "m-1".into(),
        delivered,
    };
    fx.stores
        .verifications
        .receipt("recording", &receipt, fx.clock.now())
        .await
        .expect("receipt");
}

/// Started, sent, delivered, approved: one event per change, numbered
/// per verification, with the masked number, channel, carrier and country;
/// a wrong code is no event. Another service without events queues none.
pub async fn each_change_queues_its_event_in_order(fx: &Fixture) {
    let record = started(fx, None).await;
    let claimed = claim_all(fx, "a").await;
    finish(fx, &claimed[0], sent()).await;
    receipt(fx, &record, true).await;
    check(fx, &service("demo"), &record, 9, fx.clock.now()).await;
    check(fx, &service("demo"), &record, 1, fx.clock.now()).await;
    let polled = poll(fx, &lease(&record, "a")).await.expect("held");
    let events: Vec<&Event> = polled.events.iter().map(|queued| &queued.event).collect();
    let queued: Vec<EventKind> = events.iter().map(|event| event.kind).collect();
    assert_eq!(
        queued,
        [
            EventKind::Started,
            EventKind::Sent,
            EventKind::Delivered,
            EventKind::Approved
        ]
    );
    for (n, event) in events.iter().enumerate() {
        assert_eq!(event.id, format!("{}.{}", record.id, n + 1));
        assert_eq!(event.verification, Some(record.id));
        assert_eq!(
            (event.masked_to.as_str(), event.country.as_str()),
            ("+81 90-****-5678", "JP")
        );
        assert_eq!(event.channel, Channel::Sms);
    }
    assert_eq!(events[0].carrier, None);
    assert_eq!(events[1].carrier.as_deref(), Some("recording"));
    let other = new_verification(&fx.clock, "other", None);
    created(fx, &other).await;
    let mut others = lease(&other.record, "a");
    others.service = service("other");
    assert!(kinds(fx, &others).await.is_empty());
}

/// One holder at a time; another takes the queue once the lease lapses.
pub async fn a_queue_is_held_by_one_replica_until_its_lease_lapses(fx: &Fixture) {
    let record = started(fx, None).await;
    let mut a = lease(&record, "a");
    a.ttl = Duration::from_millis(300);
    let b = lease(&record, "b");
    assert!(poll(fx, &a).await.is_some());
    assert!(poll(fx, &b).await.is_none(), "held by a");
    assert!(poll(fx, &a).await.is_some(), "a renews");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while poll(fx, &b).await.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "a's lease never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(poll(fx, &a).await.is_none(), "now held by b");
    let entry = kinds(fx, &b).await;
    assert_eq!(entry, [EventKind::Started]);
    let polled = poll(fx, &b).await.expect("held");
    assert!(
        !fx.stores
            .events
            .delivered(&a, &[polled.events[0].entry.clone()])
            .await
            .expect("delivered"),
        "a no longer holds it: nothing removed"
    );
    assert_eq!(kinds(fx, &b).await, [EventKind::Started]);
}

/// A delivered event leaves the queue; a failing one stays first until
/// its last try moves it to the dead letters.
pub async fn delivered_events_leave_and_failing_ones_are_dead_lettered(fx: &Fixture) {
    let record = started(fx, None).await;
    fx.stores
        .verifications
        .cancel(&service("demo"), &record.id, fx.clock.now())
        .await
        .expect("cancel");
    let held = lease(&record, "a");
    let polled = poll(fx, &held).await.expect("held");
    let [started, canceled] = polled.events.as_slice() else {
        panic!("two events: {:?}", polled.events);
    };
    let events = &fx.stores.events;
    assert!(events
        .delivered(&held, std::slice::from_ref(&started.entry))
        .await
        .expect("delivered"));
    assert_eq!(kinds(fx, &held).await, [EventKind::Canceled]);
    let now = fx.clock.now();
    let mut tries = Vec::new();
    for _ in 0..3 {
        tries.push(
            events
                .failed(&held, &canceled.entry, 3, now)
                .await
                .expect("failed"),
        );
    }
    assert_eq!(
        tries,
        [Tried::Again(1), Tried::Again(2), Tried::DeadLettered]
    );
    assert!(kinds(fx, &held).await.is_empty());
    let other = lease(&record, "b");
    assert_eq!(
        events.failed(&other, "0-1", 3, now).await.expect("failed"),
        Tried::NotHeld
    );
}

/// Once its time is up a pending verification is reported expired, once;
/// an approved one and one resent since (due later) are not.
pub async fn an_expired_verification_is_reported_once(fx: &Fixture) {
    let record = started(fx, None).await;
    let held = lease(&record, "a");
    let polled = poll(fx, &held).await.expect("held");
    assert!(polled.expiring.is_empty(), "not due yet");
    fx.clock.advance(TTL);
    let polled = poll(fx, &held).await.expect("held");
    assert_eq!(polled.expiring, [record.id]);
    let events = &fx.stores.events;
    let now = fx.clock.now();
    assert_eq!(
        events
            .expire(&held, &polled.expiring, now)
            .await
            .expect("expire"),
        1
    );
    assert_eq!(
        events
            .expire(&held, &polled.expiring, now)
            .await
            .expect("expire"),
        0
    );
    assert_eq!(
        kinds(fx, &held).await,
        [EventKind::Started, EventKind::Expired]
    );
    assert!(poll(fx, &held).await.expect("held").expiring.is_empty());

    let approved = new_verification(&fx.clock, "demo", Some(5));
    created(fx, &approved).await;
    let checked = fx
        .stores
        .verifications
        .check(
            &service("demo"),
            &approved.record.id,
            &approved.record.number,
            &candidate(1, Some(5)),
            &FAILURES,
            fx.clock.now(),
        )
        .await
        .expect("check");
    assert!(matches!(checked, Checked::Approved(_)), "{checked:?}");
    fx.clock.advance(TTL);
    let held = lease(&approved.record, "a");
    let polled = poll(fx, &held).await.expect("held");
    let expired = events
        .expire(&held, &polled.expiring, fx.clock.now())
        .await
        .expect("expire");
    assert_eq!(expired, 0, "approved: never expired");
}

/// A cancel, a start that replaces a pending verification and a refused
/// start each report themselves.
pub async fn cancels_and_refused_starts_are_reported(fx: &Fixture) {
    let first = started(fx, Some(3)).await;
    let second = new_verification(&fx.clock, "demo", Some(4));
    created(fx, &second).await;
    let held = lease(&first, "a");
    let polled = poll(fx, &held).await.expect("held");
    let reported: Vec<(EventKind, Option<&str>)> = polled
        .events
        .iter()
        .map(|queued| (queued.event.kind, queued.event.reason.as_deref()))
        .collect();
    assert_eq!(
        reported,
        [
            (EventKind::Started, None),
            (EventKind::Canceled, Some("replaced")),
            (EventKind::Started, None)
        ]
    );
    let blocked = Event {
        id: "blocked-1".into(),
        kind: EventKind::Blocked,
        verification: None,
        service: service("demo"),
        masked_to: "+81 90-****-0000".into(),
        channel: Channel::Sms,
        carrier: None,
        country: "JP".into(),
        at: fx.clock.now(),
        reason: Some("range".into()),
    };
    let events = &fx.stores.events;
    events
        .blocked(first.id.tag(), &blocked)
        .await
        .expect("blocked");
    let polled = poll(fx, &held).await.expect("held");
    assert_eq!(
        polled.events.last().map(|queued| &queued.event),
        Some(&blocked)
    );
}
