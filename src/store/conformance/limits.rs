//! The behaviour of every `Limits` store: GCRA rates, quotas, blocks,
//! monitor mode, groups decided all or nothing.

use super::*;

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
    let verdicts = fx
        .stores
        .limits
        .limit(groups, fx.clock.now())
        .await
        .expect("limit");
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
        let verdicts = fx
            .stores
            .limits
            .limit(&limit, fx.clock.now())
            .await
            .expect("limit");
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
        .stores
        .limits
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

async fn blocked(fx: &Fixture, group: &Group) -> Option<Timestamp> {
    fx.stores
        .limits
        .blocked(group, fx.clock.now())
        .await
        .expect("read")
}

/// Safe-list entries are listed until they expire or are taken off.
pub async fn safe_list_entries_expire_or_are_taken_off(fx: &Fixture) {
    let limits = &fx.stores.limits;
    let now = fx.clock.now();
    assert!(limits.safe_list(now).await.expect("read").is_empty());
    limits
        .set_safe([1; 16], Some(now.plus(Duration::from_secs(60))), now)
        .await
        .expect("list");
    limits
        .set_safe([2; 16], Some(now.plus(Duration::from_secs(3600))), now)
        .await
        .expect("list");
    let mut listed = limits.safe_list(now).await.expect("read");
    listed.sort();
    assert_eq!(listed, [[1; 16], [2; 16]]);
    fx.clock.advance(Duration::from_secs(60));
    let later = fx.clock.now();
    assert_eq!(limits.safe_list(later).await.expect("read"), [[2; 16]]);
    limits
        .set_safe([2; 16], None, later)
        .await
        .expect("take off");
    assert!(limits.safe_list(later).await.expect("read").is_empty());
}

/// An operator reads a block and lifts it with what it counted.
pub async fn a_lifted_block_is_gone_with_its_counts(fx: &Fixture) {
    let mut range = rate(4, 2, Duration::from_secs(3600));
    range.block = Some(Duration::from_secs(12 * 3600));
    let limit = [group(vec![range])];
    let limits = &fx.stores.limits;
    assert_eq!(blocked(fx, &limit[0]).await, None);
    for _ in 0..3 {
        take(fx, &limit).await;
    }
    let until = fx.clock.now().plus(Duration::from_secs(12 * 3600));
    assert_eq!(blocked(fx, &limit[0]).await, Some(until));
    limits.lift(&limit[0]).await.expect("lift");
    assert_eq!(blocked(fx, &limit[0]).await, None);
    assert!(
        take(fx, &limit).await[0].0,
        "lifted, and the count starts afresh"
    );
    assert!(take(fx, &limit).await[0].0);
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
        let verdicts = fx
            .stores
            .limits
            .limit(&limit, fx.clock.now())
            .await
            .expect("limit");
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
    fx.stores
        .limits
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
    fx.stores
        .limits
        .refund(&[open.clone(), open.clone()], fx.clock.now())
        .await
        .expect("refund");
    let verdicts = fx
        .stores
        .limits
        .limit(&[open], fx.clock.now())
        .await
        .expect("limit");
    assert_eq!(
        verdicts[0].outcomes[0].remaining, 9,
        "two taken, two refunded, one taken"
    );
}

/// ABU-6: a destination is judged once it has `min_sends` sends in the
/// window: approvals keep it open, none blocks it; refused sends count, and
/// the window forgets.
pub async fn a_destination_without_approvals_is_blocked_until_its_window_forgets(fx: &Fixture) {
    let window = Duration::from_secs(3600);
    let destination = |key| Item {
        check: Check::Conversion(Conversion {
            min_sends: 4,
            min_permille: 250,
            window_ms: 3_600_000,
        }),
        block: Some(Duration::from_secs(600)),
        scope: Scope::Conversion,
        ..rate(key, 1, window)
    };
    let converting = [group(vec![destination(10)])];
    let pumped = [group(vec![destination(11)])];
    for _ in 0..4 {
        assert!(take(fx, &converting).await[0].0);
        assert!(take(fx, &pumped).await[0].0);
    }
    fx.stores
        .limits
        .approve(&converting, fx.clock.now())
        .await
        .expect("approve");
    assert!(take(fx, &converting).await[0].0, "1 in 4 approved");
    assert_eq!(
        take(fx, &pumped).await,
        [(false, Some(Duration::from_secs(600)))],
        "none approved: blocked"
    );
    fx.clock.advance(Duration::from_secs(601));
    assert!(!take(fx, &pumped).await[0].0, "the window still judges it");
    fx.clock.advance(window);
    assert!(take(fx, &pumped).await[0].0, "the window forgot");
}
