//! The behaviour of every `Verifications`: starts, checks, resends,
//! cancels, receipts and the number's failure gate.

use super::*;

/// Failures that never get in the way of the other cases.
pub(super) const FAILURES: FailurePolicy = FailurePolicy {
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

/// A record reads back as it was started, its optional fields (a binding,
/// the name the start gave the service) included.
pub async fn start_then_get_round_trips(fx: &Fixture) {
    let mut new = new_verification(&fx.clock, "demo", Some(9));
    new.record.display_name = Some("Example Bank".parse().expect("a display name"));
    created(fx, &new).await;
    let record = new.record;
    assert_eq!(stored(fx, &record.id).await, record);
    let found = fx
        .stores
        .verifications
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
        fx.stores
            .verifications
            .get(&other, &record.id, now)
            .await
            .expect("get"),
        None
    );
    let checked = check(fx, &other, &record, 1, now).await;
    assert_eq!(checked, Checked::NotFound);
    assert_eq!(
        fx.stores
            .verifications
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
        .stores
        .verifications
        .get(&service("demo"), &record.id, fx.clock.now())
        .await
        .expect("get")
        .is_some());
    fx.clock.advance(Duration::from_secs(1));
    let now = fx.clock.now();
    let demo = service("demo");
    assert_eq!(
        fx.stores
            .verifications
            .get(&demo, &record.id, now)
            .await
            .expect("get"),
        None
    );
    assert_eq!(check(fx, &demo, &record, 1, now).await, Checked::NotFound);
    assert_eq!(
        fx.stores
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
                now,
            )
            .await
            .expect("resend"),
        Resent::NotFound
    );
    assert_eq!(
        fx.stores
            .verifications
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
    let checks = (0..50).map(|_| {
        fx.stores
            .verifications
            .check(&demo, &record.id, &record.number, &right, &FAILURES, now)
    });
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
    let checks = (0..20).map(|_| {
        fx.stores
            .verifications
            .check(&demo, &record.id, &record.number, &wrong, &FAILURES, now)
    });
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
    let late = check(fx, &demo, &record, 1, now).await;
    assert!(matches!(late, Checked::Finished(r) if r.status == Status::Failed));
}

/// SEC-5: the right code with a wrong or missing binding is a wrong code.
pub async fn wrong_binding_counts_as_a_wrong_code(fx: &Fixture) {
    let record = started(fx, Some(7)).await;
    let demo = service("demo");
    let now = fx.clock.now();
    for binding in [Some(8), None] {
        let checked = fx
            .stores
            .verifications
            .check(
                &demo,
                &record.id,
                &record.number,
                &candidate(1, binding),
                &FAILURES,
                now,
            )
            .await
            .expect("check");
        assert!(
            matches!(checked, Checked::Wrong(_)),
            "{binding:?}: {checked:?}"
        );
    }
    assert_eq!(stored(fx, &record.id).await.attempts_left, 3);
    let right = fx
        .stores
        .verifications
        .check(
            &demo,
            &record.id,
            &record.number,
            &candidate(1, Some(7)),
            &FAILURES,
            now,
        )
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
        .stores
        .verifications
        .check(
            &service("demo"),
            &record.id,
            &record.number,
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
    let outcome = fx
        .stores
        .verifications
        .start(&again, fx.clock.now())
        .await
        .expect("start");
    assert_eq!(outcome, Started::Pending(first.id));
    assert_eq!(
        fx.stores
            .verifications
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
            .stores
            .verifications
            .find(&NumberKey([42; 16]), fx.clock.now())
            .await
            .expect("find")
            .expect("indexed");
        let next = new_verification(&fx.clock, "demo", binding);
        let outcome = fx
            .stores
            .verifications
            .start(&next, fx.clock.now())
            .await
            .expect("start");
        assert_eq!(
            outcome,
            Started::Created {
                replaced: Some(previous)
            }
        );
        assert_eq!(stored(fx, &previous).await.status, Status::Canceled);
        assert_eq!(
            fx.stores
                .verifications
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
    fx.stores
        .verifications
        .cancel(&service("demo"), &first.id, fx.clock.now())
        .await
        .expect("cancel");
    let next = new_verification(&fx.clock, "demo", None);
    assert_eq!(
        fx.stores
            .verifications
            .start(&next, fx.clock.now())
            .await
            .expect("start"),
        Started::Created { replaced: None }
    );
    fx.clock.advance(TTL);
    let after_expiry = new_verification(&fx.clock, "demo", None);
    let outcome = fx
        .stores
        .verifications
        .start(&after_expiry, fx.clock.now())
        .await
        .expect("start");
    assert_eq!(outcome, Started::Created { replaced: None });
}

/// SEC-6: a resend replaces the code and never resets the attempt count.
pub async fn resend_replaces_the_code_and_keeps_attempts_left(fx: &Fixture) {
    let record = started(fx, None).await;
    let demo = service("demo");
    check(fx, &demo, &record, 9, fx.clock.now()).await;
    fx.clock.advance(COOLDOWN);
    let now = fx.clock.now();
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
    let old = check(fx, &demo, &record, 1, now).await;
    assert!(
        matches!(old, Checked::Wrong(_)),
        "the old code must stop working: {old:?}"
    );
    let new = check(fx, &demo, &record, 2, now).await;
    assert!(matches!(new, Checked::Approved(_)), "{new:?}");
}

pub async fn resend_obeys_cooldown_and_max_sends(fx: &Fixture) {
    let record = started(fx, None).await;
    let demo = service("demo");
    let resend = |fx: &Fixture| {
        let (demo, id) = (demo.clone(), record.id);
        let verifications = Arc::clone(&fx.stores.verifications);
        let now = fx.clock.now();
        async move {
            verifications
                .resend(
                    &demo,
                    &id,
                    NewCode {
                        channel: Channel::Sms,
                        candidates: &candidate(2, None),
                        enqueue: Some(&enqueue()),
                    },
                    POLICY,
                    now,
                )
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
        .stores
        .verifications
        .cancel(&demo, &record.id, now)
        .await
        .expect("cancel");
    assert!(matches!(canceled, Changed::Changed(r) if r.status == Status::Canceled));
    assert!(matches!(
        fx.stores
            .verifications
            .cancel(&demo, &record.id, now)
            .await
            .expect("cancel"),
        Changed::Finished(_)
    ));
    let checked = check(fx, &demo, &record, 1, now).await;
    assert!(
        matches!(checked, Checked::Finished(r) if r.status == Status::Canceled && r.attempts_left == 5)
    );
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
            now.plus(COOLDOWN),
        )
        .await;
    assert!(matches!(resent.expect("resend"), Resent::Finished(_)));
}

async fn receipt_on(fx: &Fixture, carrier: &str, receipt: &Receipt) -> Option<Timestamp> {
    fx.stores
        .verifications
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
    fx.stores
        .verifications
        .index_message("smsc", "4a1f", (record.id, 2), ttl, now)
        .await
        .expect("index");
    let find = |carrier: &'static str, id: &'static str| async move {
        fx.stores
            .verifications
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

async fn check_code(fx: &Fixture, id: &VerificationId, code: u8) -> Checked {
    let candidates = candidate(code, None);
    let verifications = &fx.stores.verifications;
    let number = verifications
        .number_of(id)
        .await
        .expect("number_of")
        .expect("a stored verification");
    verifications
        .check(
            &service("demo"),
            id,
            &number,
            &candidates,
            &GATE,
            fx.clock.now(),
        )
        .await
        .expect("check")
}

/// An operator reads a number's failures and forgets them: its checks
/// go on at once.
pub async fn forgotten_failures_lift_the_numbers_lockout(fx: &Fixture) {
    let first = started(fx, None).await;
    let verifications = &fx.stores.verifications;
    let number = verifications
        .number_of(&first.id)
        .await
        .expect("number_of")
        .expect("stored");
    assert_eq!(
        verifications
            .failures(&number, fx.clock.now())
            .await
            .expect("read"),
        None
    );
    for _ in 0..GATE.free + 1 {
        check_code(fx, &first.id, 9).await;
    }
    let failures = verifications
        .failures(&number, fx.clock.now())
        .await
        .expect("read")
        .expect("failures");
    assert_eq!(
        (failures.count, failures.last, failures.wait_until),
        (
            GATE.free + 1,
            fx.clock.now(),
            fx.clock.now().plus(GATE.delay)
        )
    );
    assert!(verifications
        .forget_failures(&number)
        .await
        .expect("forget"));
    assert!(!verifications
        .forget_failures(&number)
        .await
        .expect("forget"));
    assert!(matches!(
        check_code(fx, &first.id, 1).await,
        Checked::Approved(_)
    ));
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

/// Checks `record` with code `code` (no binding) under `FAILURES`.
pub(super) async fn check(
    fx: &Fixture,
    service: &ServiceName,
    record: &Record,
    code: u8,
    now: Timestamp,
) -> Checked {
    fx.stores
        .verifications
        .check(
            service,
            &record.id,
            &record.number,
            &candidate(code, None),
            &FAILURES,
            now,
        )
        .await
        .expect("check")
}

/// A check names the verification's number key (read by `number_of`, for
/// its failure counter); with another number it is not found and spends
/// nothing, and an unknown id has no number.
pub async fn a_check_must_name_the_verifications_number(fx: &Fixture) {
    let record = started(fx, None).await;
    let verifications = &fx.stores.verifications;
    let number = verifications
        .number_of(&record.id)
        .await
        .expect("number_of");
    assert_eq!(number, Some(record.number));
    let unknown = VerificationId::generate(record.id.tag());
    assert_eq!(
        verifications.number_of(&unknown).await.expect("number_of"),
        None
    );
    let other = NumberKey([0xee; 16]);
    let checked = verifications
        .check(
            &service("demo"),
            &record.id,
            &other,
            &candidate(1, None),
            &FAILURES,
            fx.clock.now(),
        )
        .await
        .expect("check");
    assert_eq!(checked, Checked::NotFound);
    assert_eq!(
        stored(fx, &record.id).await.attempts_left,
        record.attempts_left
    );
}

/// Issue 15: `resend_after` is per channel. A resend on another channel
/// does not wait for this channel's cooldown; it switches the
/// verification's channel, kills the old code, and starts its own
/// cooldown; the first channel's cooldown still holds.
pub async fn a_resend_on_another_channel_has_its_own_cooldown(fx: &Fixture) {
    let record = started(fx, None).await;
    let demo = service("demo");
    let (name, id) = (&demo, record.id);
    let resend = |channel: Channel, code: u8| {
        let candidates = candidate(code, None);
        async move {
            fx.stores
                .verifications
                .resend(
                    name,
                    &id,
                    NewCode {
                        channel,
                        candidates: &candidates,
                        enqueue: Some(&enqueue()),
                    },
                    POLICY,
                    fx.clock.now(),
                )
                .await
                .expect("resend")
        }
    };
    let early = resend(Channel::Sms, 2).await;
    assert!(matches!(early, Resent::TooSoon(_)), "{early:?}");
    let voice = resend(Channel::Voice, 3).await;
    let Resent::Resent(after) = voice else {
        panic!("{voice:?}")
    };
    assert_eq!((after.channel, after.sends), (Channel::Voice, 2));
    assert_eq!(
        after.resend_after,
        fx.clock.now().plus(POLICY.cooldown_after(2))
    );
    assert_eq!(
        after.resend_after_for(Channel::Sms),
        record.resend_after,
        "the SMS cooldown still holds"
    );
    let Resent::TooSoon(_) = resend(Channel::Voice, 4).await else {
        panic!("a voice resend waits for the voice cooldown")
    };
    let Resent::TooSoon(_) = resend(Channel::Sms, 4).await else {
        panic!("an SMS resend waits for the SMS cooldown")
    };
    let old = check(fx, &demo, &record, 1, fx.clock.now()).await;
    assert!(
        matches!(old, Checked::Wrong(_)),
        "the first code is dead: {old:?}"
    );
    fx.clock.advance(COOLDOWN);
    let Resent::Resent(back) = resend(Channel::Sms, 5).await else {
        panic!("the SMS cooldown is over")
    };
    assert_eq!((back.channel, back.sends), (Channel::Sms, 3));
}
