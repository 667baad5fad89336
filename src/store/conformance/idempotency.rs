//! The behaviour of every `Idempotency` store.

use super::*;

pub async fn idempotency_reserves_completes_and_replays(fx: &Fixture) {
    let key = IdempotencyKey([5; 16]);
    let now = fx.clock.now();
    let lock = Duration::from_secs(30);
    assert_eq!(
        fx.stores
            .idempotency
            .reserve(&key, &digest(1), lock, now)
            .await
            .expect("reserve"),
        Reservation::Reserved
    );
    let running = fx
        .stores
        .idempotency
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
    fx.stores
        .idempotency
        .complete(&key, b"{\"answer\":1}", Duration::from_secs(3600), now)
        .await
        .expect("complete");
    fx.clock.advance(lock * 2);
    let done = fx
        .stores
        .idempotency
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
        let idempotency = Arc::clone(&fx.stores.idempotency);
        let now = fx.clock.now();
        async move {
            idempotency
                .reserve(&key, &digest(1), lock, now)
                .await
                .expect("reserve")
        }
    };
    assert_eq!(reserve(fx).await, Reservation::Reserved);
    fx.stores.idempotency.release(&key).await.expect("release");
    assert_eq!(reserve(fx).await, Reservation::Reserved);
    fx.clock.advance(lock);
    assert_eq!(
        reserve(fx).await,
        Reservation::Reserved,
        "an abandoned lock expires"
    );
}
