//! The behaviour of every `Outbox`: sends queued with their verification,
//! claimed, kept, taken over and finished once.

use super::*;
use crate::store::{Reroute, RerouteReason};

/// A start stores the verification and queues its first send, in one step.
pub async fn a_start_queues_its_send_and_a_finish_records_it(fx: &Fixture) {
    let record = started(fx, None).await;
    assert_eq!(fx.stores.outbox.depth().await.expect("depth"), 1);
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
        fx.stores.outbox.depth().await.expect("depth"),
        1,
        "claimed is still in the outbox"
    );
    assert!(
        claim_all(fx, "b").await.is_empty(),
        "one send, one consumer"
    );
    finish(fx, &claimed[0], sent()).await;
    assert_eq!(fx.stores.outbox.depth().await.expect("depth"), 0);
    let delivery = stored(fx, &record.id).await.delivery;
    assert_eq!(
        delivery,
        Delivery {
            status: DeliveryStatus::Sent,
            carrier: Some("recording".into()),
            message_id: Some("m-1".into()),
            sent_at: Some(fx.clock.now()),
            rerouted: None,
        }
    );
}

/// A resend queues send 2; finishing the superseded send 1 records nothing.
pub async fn a_newer_send_supersedes_an_older_one(fx: &Fixture) {
    let record = started(fx, None).await;
    let first = claim_all(fx, "a").await;
    fx.clock.advance(COOLDOWN);
    let demo = service("demo");
    let resent = fx
        .stores
        .verifications
        .resend(
            &demo,
            &record.id,
            NewCode {
                channel: Channel::Sms,
                candidates: &candidate(2, None),
                enqueue: Some(&enqueue()),
            },
            POLICY,
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
    finish(
        fx,
        &claimed[0],
        Finish::Failed {
            dead: true,
            switch: None,
        },
    )
    .await;
    let after = stored(fx, &record.id).await;
    assert_eq!(
        (after.delivery.status, after.sends, after.resend_after),
        (DeliveryStatus::Failed, 0, fx.clock.now())
    );
    let resent = fx
        .stores
        .verifications
        .resend(
            &service("demo"),
            &record.id,
            NewCode {
                channel: Channel::Sms,
                candidates: &candidate(2, None),
                enqueue: Some(&enqueue()),
            },
            POLICY,
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
        fx.stores.outbox.keep("a", &held[0]).await.expect("keep");
        let taken = reclaim(fx, "b", IDLE, 10).await;
        assert!(taken.is_empty(), "a kept send was taken over");
        tokio::time::sleep(IDLE / 8).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let taken = reclaim(fx, "b", IDLE, 10).await;
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

async fn reclaim(fx: &Fixture, consumer: &str, idle: Duration, max: usize) -> Vec<Claimed> {
    fx.stores
        .outbox
        .reclaim(consumer, idle, max)
        .await
        .expect("reclaim")
}

/// A replica that lost a send to a takeover cannot take it back by keeping
/// it: the new holder keeps it, the old one learns it lost it.
pub async fn a_claim_taken_over_is_not_kept_by_its_old_holder(fx: &Fixture) {
    started(fx, None).await;
    let held = claim_all(fx, "a").await;
    let taken = reclaim(fx, "b", Duration::ZERO, 10).await;
    assert_eq!(taken.len(), 1);
    let outbox = &fx.stores.outbox;
    assert!(
        !outbox.keep("a", &held[0]).await.expect("keep"),
        "a lost it"
    );
    assert!(
        outbox.keep("b", &taken[0]).await.expect("keep"),
        "b holds it"
    );
    let again = reclaim(fx, "c", Duration::from_secs(3600), 10).await;
    assert!(again.is_empty(), "b's claim is fresh");
}

/// Takeover claims at most `max` sends in all, whatever the shards.
pub async fn takeover_is_bounded_in_total(fx: &Fixture) {
    for n in 0..6u8 {
        let mut new = new_verification(&fx.clock, "demo", None);
        new.record.number = NumberKey([n; 16]);
        new.record.id = VerificationId::generate(new.record.number.shard());
        created(fx, &new).await;
    }
    assert_eq!(claim_all(fx, "dead-replica").await.len(), 6);
    let outbox = &fx.stores.outbox;
    let first = reclaim(fx, "b", Duration::ZERO, 4).await;
    assert_eq!(first.len(), 4, "at most max in all");
    for claimed in &first {
        assert!(outbox.keep("b", claimed).await.expect("keep"));
    }
    let rest = reclaim(fx, "c", Duration::from_millis(100), 4).await;
    assert!(rest.len() <= 2, "b's fresh claims stay b's: {rest:?}");
}

pub async fn idle_claims_are_taken_over(fx: &Fixture) {
    started(fx, None).await;
    let lost = claim_all(fx, "dead-replica").await;
    assert_eq!(lost.len(), 1);
    let kept = reclaim(fx, "b", Duration::from_secs(3600), 10).await;
    assert!(kept.is_empty(), "not idle long enough");
    let taken = reclaim(fx, "b", Duration::ZERO, 10).await;
    assert_eq!(
        taken
            .iter()
            .map(|c| (&c.entry, &c.send))
            .collect::<Vec<_>>(),
        [(&lost[0].entry, &lost[0].send)]
    );
    finish(fx, &taken[0], sent()).await;
    assert_eq!(fx.stores.outbox.depth().await.expect("depth"), 0);
}

/// The outbox is bounded per shard: a full shard refuses starts and
/// resends, and changes nothing.
pub async fn a_full_outbox_refuses_starts_and_resends(fx: &Fixture) {
    let mut first = new_verification(&fx.clock, "demo", None);
    first.enqueue.as_mut().expect("a send").shard_cap = 1;
    assert!(matches!(
        fx.stores
            .verifications
            .start(&first, fx.clock.now())
            .await
            .expect("start"),
        Started::Created { .. }
    ));
    let mut same_shard = new_verification(&fx.clock, "demo", None);
    same_shard.record.number = NumberKey([42 + SHARDS; 16]);
    same_shard.enqueue.as_mut().expect("a send").shard_cap = 1;
    assert_eq!(
        fx.stores
            .verifications
            .start(&same_shard, fx.clock.now())
            .await
            .expect("start"),
        Started::Full
    );
    assert!(fx
        .stores
        .verifications
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
        .stores
        .verifications
        .resend(
            &demo,
            &first.record.id,
            NewCode {
                channel: Channel::Sms,
                candidates: &new_code,
                enqueue: Some(&full),
            },
            POLICY,
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
        fx.stores
            .verifications
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
    finish(
        fx,
        &claimed[0],
        Finish::Failed {
            dead: true,
            switch: None,
        },
    )
    .await;
    let after = stored(fx, &record.id).await;
    assert_eq!(
        (after.delivery.status, after.sends),
        (DeliveryStatus::Sent, 1)
    );
}

/// A verification without a send (a test number) is stored, resent and
/// checked like any other, and never reaches the outbox, full or not.
pub async fn a_test_number_is_stored_but_never_queued(fx: &Fixture) {
    let full = Enqueue {
        shard_cap: 1,
        ..enqueue()
    };
    let filler = NewVerification {
        enqueue: Some(full),
        ..new_verification(&fx.clock, "other", None)
    };
    fx.stores
        .verifications
        .start(&filler, fx.clock.now())
        .await
        .expect("start");
    let mut new = NewVerification {
        enqueue: None,
        ..new_verification(&fx.clock, "demo", None)
    };
    // Another number in the same (full) shard.
    new.record.number.0[1] ^= 1;
    created(fx, &new).await;
    fx.clock.advance(COOLDOWN);
    let resent = fx
        .stores
        .verifications
        .resend(
            &service("demo"),
            &new.record.id,
            NewCode {
                channel: Channel::Sms,
                candidates: &candidate(2, None),
                enqueue: None,
            },
            POLICY,
            fx.clock.now(),
        )
        .await
        .expect("resend");
    assert!(
        matches!(resent, Resent::Resent(ref r) if r.sends == 2),
        "{resent:?}"
    );
    let queued: Vec<_> = claim_all(fx, "a")
        .await
        .into_iter()
        .map(|claimed| claimed.send.id)
        .collect();
    assert_eq!(queued, [filler.record.id], "only the real send");
}

/// The receipt of the send `sent_watched` recorded.
fn receipt_for(record: &Record, delivered: bool) -> Receipt {
    Receipt {
        verification: record.id,
        send: 1,
        message_id: "m-1".into(),
        delivered,
    }
}

async fn overdue(fx: &Fixture) -> usize {
    fx.stores
        .outbox
        .reroute_overdue(fx.clock.now(), 100)
        .await
        .expect("reroute")
}

/// REL-4: a watched send whose watch ends without a receipt is queued once
/// more, with the same sealed code and the carrier it follows; the
/// delivery says so; it is never queued a third time.
pub async fn an_overdue_watched_send_is_queued_once_more_for_the_next_carrier(fx: &Fixture) {
    let record = started(fx, None).await;
    let first = claim_all(fx, "a").await;
    finish(fx, &first[0], sent_watched(fx)).await;
    assert_eq!(overdue(fx).await, 0, "the watch has not ended");
    fx.clock.advance(Duration::from_secs(60));
    assert_eq!(overdue(fx).await, 1);
    assert_eq!(overdue(fx).await, 0, "once");
    let again = claim_all(fx, "a").await;
    assert_eq!(again.len(), 1);
    let send = &again[0].send;
    assert_eq!(
        (send.number, &send.sealed_code, &send.key_id),
        (1, &first[0].send.sealed_code, &first[0].send.key_id)
    );
    let reroute = Reroute {
        from: "recording".into(),
        reason: RerouteReason::NoReceipt,
    };
    assert_eq!(send.reroute, Some(reroute.clone()));
    let delivery = stored(fx, &record.id).await.delivery;
    assert_eq!(
        (delivery.status, delivery.rerouted.as_ref()),
        (DeliveryStatus::Queued, Some(&reroute))
    );
    finish(fx, &again[0], sent_watched(fx)).await;
    let delivery = stored(fx, &record.id).await.delivery;
    assert_eq!(
        (delivery.status, delivery.rerouted),
        (DeliveryStatus::Sent, Some(reroute))
    );
    fx.clock.advance(Duration::from_secs(60));
    assert_eq!(
        overdue(fx).await,
        0,
        "a re-routed send is not re-routed again"
    );
}

/// REL-4: an `undelivered` receipt for a watched send queues it at once.
pub async fn an_undelivered_receipt_queues_a_watched_send_at_once(fx: &Fixture) {
    let record = started(fx, None).await;
    let first = claim_all(fx, "a").await;
    finish(fx, &first[0], sent_watched(fx)).await;
    let verifications = &fx.stores.verifications;
    let now = fx.clock.now();
    let recorded = verifications
        .receipt("recording", &receipt_for(&record, false), now)
        .await;
    assert!(recorded.expect("receipt").is_some());
    let again = claim_all(fx, "a").await;
    assert_eq!(again.len(), 1);
    let reason = again[0].send.reroute.as_ref().map(|r| r.reason);
    assert_eq!(reason, Some(RerouteReason::Undelivered));
    fx.clock.advance(Duration::from_secs(60));
    assert_eq!(overdue(fx).await, 0, "no longer watched");
}

/// A delivered receipt ends the watch, and so does a verification that
/// finished (approved) or expired meanwhile: nothing is queued again.
pub async fn a_delivered_receipt_or_a_finished_verification_ends_the_watch(fx: &Fixture) {
    let delivered = started(fx, None).await;
    let first = claim_all(fx, "a").await;
    finish(fx, &first[0], sent_watched(fx)).await;
    let now = fx.clock.now();
    let verifications = &fx.stores.verifications;
    let recorded = verifications
        .receipt("recording", &receipt_for(&delivered, true), now)
        .await;
    assert!(recorded.expect("receipt").is_some());
    let canceled = started(fx, Some(2)).await;
    let second = claim_all(fx, "a").await;
    finish(fx, &second[0], sent_watched(fx)).await;
    verifications
        .cancel(&service("demo"), &canceled.id, fx.clock.now())
        .await
        .expect("cancel");
    fx.clock.advance(Duration::from_secs(60));
    assert_eq!(overdue(fx).await, 0);
    assert!(claim_all(fx, "a").await.is_empty());
}

/// Issue 15: a fallback watch moves the send to another channel when it
/// ends, reason `fallback`; a delivered receipt does not end it (the code
/// is not entered yet); it fires once.
pub async fn a_fallback_watch_switches_the_channel_once(fx: &Fixture) {
    let record = started(fx, None).await;
    let first = claim_all(fx, "a").await;
    let watch = Watch {
        until: fx.clock.now().plus(Duration::from_secs(60)),
        then: Some(Channel::Voice),
    };
    let sent = Finish::Sent {
        carrier: "recording".into(),
        message_id: "m-1".into(),
        watch: Some(watch),
    };
    finish(fx, &first[0], sent).await;
    let now = fx.clock.now();
    let verifications = &fx.stores.verifications;
    let recorded = verifications
        .receipt("recording", &receipt_for(&record, true), now)
        .await;
    assert!(recorded.expect("receipt").is_some());
    assert_eq!(overdue(fx).await, 0, "not yet");
    fx.clock.advance(Duration::from_secs(60));
    assert_eq!(overdue(fx).await, 1);
    assert_eq!(overdue(fx).await, 0, "once");
    let again = claim_all(fx, "a").await;
    let reason = again[0].send.reroute.as_ref().map(|r| r.reason);
    assert_eq!(reason, Some(RerouteReason::Fallback));
    let after = stored(fx, &record.id).await;
    assert_eq!(after.channel, Channel::Voice);
    assert_eq!(after.resend_after_for(Channel::Sms), record.resend_after);
}

/// Issue 15: every route failed the SMS of a service with a fallback step:
/// the same code goes on the step's channel at once, once (a failed call
/// does not switch back), and the send is not taken back.
pub async fn a_failed_send_with_a_fallback_goes_on_its_channel_at_once(fx: &Fixture) {
    let record = started(fx, None).await;
    let first = claim_all(fx, "a").await;
    let failed = |channel| Finish::Failed {
        dead: true,
        switch: Some(crate::store::Switch {
            from: "recording".into(),
            channel,
        }),
    };
    finish(fx, &first[0], failed(Channel::Voice)).await;
    let again = claim_all(fx, "a").await;
    let [call] = again.as_slice() else {
        panic!("one send on the new channel: {again:?}")
    };
    assert_eq!((call.send.number, call.send.switched), (1, true));
    assert_eq!(call.send.sealed_code, first[0].send.sealed_code);
    let reroute = call.send.reroute.as_ref().expect("a re-route");
    assert_eq!(
        (reroute.from.as_str(), reroute.reason),
        ("recording", RerouteReason::SendFailed)
    );
    let after = stored(fx, &record.id).await;
    assert_eq!((after.channel, after.sends), (Channel::Voice, 1));
    assert_eq!(after.delivery.status, DeliveryStatus::Queued);
    finish(fx, call, failed(Channel::Sms)).await;
    assert!(claim_all(fx, "a").await.is_empty(), "no switch back");
    let after = stored(fx, &record.id).await;
    assert_eq!(
        (after.delivery.status, after.sends),
        (DeliveryStatus::Failed, 0)
    );
}

/// Issue 15: each fallback step runs once: the send a step queued is
/// watched for the next step, which runs again (on the same channel, here)
/// and is counted on the verification; a step's watch never runs twice.
pub async fn each_fallback_step_runs_once(fx: &Fixture) {
    let record = started(fx, None).await;
    let sent_watched_for_a_call = |fx: &Fixture| Finish::Sent {
        carrier: "recording".into(),
        message_id: "m-1".into(),
        watch: Some(Watch {
            until: fx.clock.now().plus(Duration::from_secs(45)),
            then: Some(Channel::Voice),
        }),
    };
    let mut claimed = claim_all(fx, "a").await;
    for step in 1..=2 {
        finish(fx, &claimed[0], sent_watched_for_a_call(fx)).await;
        fx.clock.advance(Duration::from_secs(45));
        assert_eq!(overdue(fx).await, 1, "step {step}");
        assert_eq!(overdue(fx).await, 0, "step {step} once");
        claimed = claim_all(fx, "a").await;
        let reason = claimed[0].send.reroute.as_ref().map(|r| r.reason);
        assert_eq!(reason, Some(RerouteReason::Fallback));
        let after = stored(fx, &record.id).await;
        assert_eq!(
            (after.channel, after.fallback_steps),
            (Channel::Voice, step)
        );
    }
}
