//! Redis that fails: readiness that tells the truth, a Sentinel failover and
//! a Cluster failover under traffic, and durable approvals (`replicas_ack`)
//! across a failover that lost the last writes. Real processes only.
//! Requirements: SEC-4 (single use), DESIGN invariants 5, 7 and 10.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{json_of, settings, until, wrong, RedisServer, TestApp};
use crate::topology::{eventually, LinkProxy, RedisCluster, SentinelSet};

/// Test settings with every number range unlimited: the traffic below
/// starts hundreds of numbers of one range.
fn traffic_settings() -> otpd::config::Settings {
    let mut settings = settings(None);
    for service in settings.services.values_mut() {
        service.limits.range_sends = vec![otpd::config::RateSetting {
            count: 1_000_000,
            period: Duration::from_secs(3600),
        }];
    }
    settings
}

/// What the traffic saw.
#[derive(Default)]
struct Traffic {
    /// When each start was answered, and with what status.
    starts: Vec<(Instant, u16)>,
    /// Verifications created (201), by number.
    created: Vec<(String, String)>,
    /// `valid: true` answers to a wrong code (must stay 0).
    wrong_approved: usize,
    /// `valid: true` answers to a right code already approved (must stay 0).
    replays_approved: usize,
    approved: usize,
}

/// Starts verifications one after another for `duration`, checks each
/// with a wrong code, then the right one, then the right one again.
async fn run_traffic(app: &TestApp, duration: Duration, first: usize) -> Traffic {
    let mut traffic = Traffic::default();
    let end = Instant::now() + duration;
    let mut n = first;
    while Instant::now() < end {
        n += 1;
        let to = format!("+81901{n:07}");
        let response = app.start(&to).await;
        let status = response.status().as_u16();
        traffic.starts.push((Instant::now(), status));
        if status == 201 {
            let id = json_of(response).await["id"]
                .as_str()
                .expect("id")
                .to_owned();
            traffic.created.push((to, id));
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    traffic
}

/// Checks every created verification: wrong, right, right again.
async fn check_all(app: &TestApp, traffic: &mut Traffic) {
    for (to, id) in traffic.created.clone() {
        let Some(body) = app.carrier.bodies_to(&to).last().cloned() else {
            continue;
        };
        let code = crate::support::code_in(&body);
        if valid(app.check(&id, &wrong(&code)).await).await {
            traffic.wrong_approved += 1;
        }
        if valid(app.check(&id, &code).await).await {
            traffic.approved += 1;
        }
        if valid(app.check(&id, &code).await).await {
            traffic.replays_approved += 1;
        }
    }
}

/// Whether a check answered `200 {"valid": true}`.
async fn valid(answer: reqwest::Response) -> bool {
    answer.status() == 200 && json_of(answer).await["valid"] == true
}

/// otpd is ready and approves before the fault is injected.
async fn serving_before_the_fault(app: &TestApp) {
    assert!(app.becomes_ready(Duration::from_secs(10)).await);
    let before = run_traffic(app, Duration::from_millis(500), 0).await;
    let statuses: Vec<u16> = before.starts.iter().map(|(_, status)| *status).collect();
    assert!(
        !before.created.is_empty(),
        "no traffic before the fault: {statuses:?}"
    );
}

/// Checks what the traffic started (wrong, right, replay) and returns the
/// sends lost; no wrong code and no replay may ever be approved.
async fn judged(app: &TestApp, traffic: &mut Traffic) -> usize {
    check_all(app, traffic).await;
    let lost = sends_lost(app, traffic).await;
    assert_eq!(traffic.wrong_approved, 0, "a wrong code was approved");
    assert_eq!(traffic.replays_approved, 0, "a code was approved twice");
    lost
}

/// Seconds between `since` and the last answer of 500 or more after it.
fn seconds_of_errors_after(traffic: &Traffic, since: Instant) -> f64 {
    traffic
        .starts
        .iter()
        .filter(|(at, status)| *at > since && *status >= 500)
        .map(|(at, _)| at.duration_since(since).as_secs_f64())
        .fold(0.0, f64::max)
}

/// Sends that otpd accepted (201) but no SMS reached the carrier.
async fn sends_lost(app: &TestApp, traffic: &Traffic) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lost = traffic
            .created
            .iter()
            .filter(|(to, _)| app.carrier.bodies_to(to).is_empty())
            .count();
        if lost == 0 || Instant::now() > deadline {
            return lost;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_node_makes_otpd_not_ready_and_counts_its_errors() {
    let redis = RedisServer::start();
    let other = RedisServer::start();
    let app = TestApp::spawn(&settings(Some(&redis))).await;
    assert!(app.becomes_ready(Duration::from_secs(5)).await);
    // An operator (or a returning old primary) makes it a replica.
    redis.demote_to_replica_of(&other);
    until(
        "/readyz to say not ready on a replica",
        Duration::from_secs(10),
        async || app.public("/readyz").await.status() != 200,
    )
    .await;
    assert_eq!(app.start(crate::support::PHONE).await.status(), 503);
    // The workers' outbox reads fail on a replica too, and are counted (the
    // worker pauses after each failure: on a loaded machine, seconds).
    let mut missing_before = Vec::new();
    until(
        "every operation's errors to be counted",
        Duration::from_secs(30),
        async || {
            let metrics = app.metrics().await;
            let missing: Vec<&str> = ["read_outbox", "limit", "ready"]
                .into_iter()
                .filter(|operation| {
                    !metrics.lines().any(|line| {
                        line.starts_with(&format!(
                            "otpd_redis_errors_total{{operation=\"{operation}\"}}"
                        ))
                    })
                })
                .collect();
            if missing != missing_before {
                eprintln!("not counted yet: {missing:?}");
                missing_before = missing.clone();
            }
            missing.is_empty()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_resumes_without_a_restart_and_never_writes_to_the_old_primary() {
    let mut set = SentinelSet::start();
    let app = TestApp::spawn(&set.settings(traffic_settings())).await;
    let old_port = set.primary.port();
    serving_before_the_fault(&app).await;

    set.primary.stop(); // SIGKILL
    let killed = Instant::now();
    let promoted = Arc::new(Mutex::new(None::<Instant>));
    let watcher = {
        let promoted = Arc::clone(&promoted);
        let sentinels: Vec<u16> = set.sentinels.iter().map(RedisServer::port).collect();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let named = sentinels.iter().find_map(|port| {
                    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
                    let mut connection = client.get_connection().ok()?;
                    redis::cmd("SENTINEL")
                        .arg("GET-MASTER-ADDR-BY-NAME")
                        .arg(crate::topology::MASTER_NAME)
                        .query::<(String, String)>(&mut connection)
                        .ok()
                });
                if named.is_some_and(|(_, port)| port != old_port.to_string()) {
                    *promoted.lock().expect("lock") = Some(Instant::now());
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut during = run_traffic(&app, Duration::from_secs(12), 100_000).await;
    watcher.join().expect("watcher");
    let promoted = promoted
        .lock()
        .expect("lock")
        .expect("Sentinel promoted the replica");
    assert_eq!(set.primary_port(), Some(set.replica.port()));
    let errors_after = seconds_of_errors_after(&during, promoted);
    let errors_after_kill = seconds_of_errors_after(&during, killed);
    let last = during.starts.last().expect("traffic").1;
    assert_eq!(last, 201, "service resumed without a restart");

    // The old primary comes back, empty: otpd must not write to it.
    set.primary.start_again();
    let written = |node: &RedisServer| {
        let stats: String = node
            .query(redis::cmd("INFO").arg("commandstats"))
            .unwrap_or_default();
        ["cmdstat_evalsha", "cmdstat_xreadgroup", "cmdstat_hget"]
            .iter()
            .any(|command| stats.contains(command))
    };
    let after = run_traffic(&app, Duration::from_secs(3), 200_000).await;
    assert!(!written(&set.primary), "otpd wrote to the old primary");
    assert!(after.starts.iter().all(|(_, status)| *status == 201));

    let lost = judged(&app, &mut during).await;
    eprintln!(
        "sentinel failover: promoted {:.2} s after the SIGKILL; errors until {:.2} s after it, {:.2} s after the promotion; {} started, {} approved, {lost} sends lost",
        promoted.duration_since(killed).as_secs_f64(),
        errors_after_kill,
        errors_after,
        during.created.len(),
        during.approved
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_failover_resumes_without_a_restart() {
    let mut cluster = RedisCluster::start();
    let app = TestApp::spawn(&cluster.settings(traffic_settings())).await;
    serving_before_the_fault(&app).await;

    let victim = cluster
        .nodes
        .iter()
        .position(|node| {
            node.query::<String>(redis::cmd("INFO").arg("replication"))
                .is_ok_and(|info| info.contains("role:master"))
        })
        .expect("a primary");
    let victim_port = cluster.nodes[victim].port();
    cluster.nodes[victim].stop(); // SIGKILL
    let killed = Instant::now();
    let survivors: Vec<&RedisServer> = cluster
        .nodes
        .iter()
        .filter(|node| node.port() != victim_port)
        .collect();
    let mut during = run_traffic(&app, Duration::from_secs(10), 100_000).await;
    eventually(Duration::from_secs(20), "a replica took over", || {
        survivors.iter().all(|node| {
            node.query::<String>(redis::cmd("CLUSTER").arg("INFO"))
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        })
    });
    let timeline: Vec<(u128, u16)> = during
        .starts
        .iter()
        .filter(|(_, status)| *status != 201)
        .map(|(at, status)| (at.duration_since(killed).as_millis(), *status))
        .collect();
    let last = during.starts.last().expect("traffic").1;
    assert_eq!(last, 201, "service resumed without a restart: {timeline:?}");
    let errors_after = seconds_of_errors_after(&during, killed);
    // The lost primary returns as a replica of its successor, so that
    // approvals in its slots can be acknowledged again (`replicas_ack`).
    cluster.nodes[victim].start_again();
    cluster.wait_until_ok();
    let lost = judged(&app, &mut during).await;
    eprintln!(
        "cluster failover: errors until {:.2} s after the SIGKILL; {} started, {} approved, {lost} sends lost",
        errors_after,
        during.created.len(),
        during.approved
    );
}

/// Every slot of one primary moves to another (`redis-cli --cluster
/// reshard`) while starts run: the scripts' declared keys let Redis answer
/// ASK or TRYAGAIN mid-migration, which the client follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_goes_on_while_slots_migrate() {
    let cluster = RedisCluster::start_shaped(3, 0);
    let mut settings = cluster.settings(traffic_settings());
    settings.redis.replicas_ack = Some(0);
    let app = TestApp::spawn(&settings).await;
    serving_before_the_fault(&app).await;
    let id = |node: &RedisServer| -> String {
        node.query(redis::cmd("CLUSTER").arg("MYID"))
            .expect("CLUSTER MYID")
    };
    let (from, to) = (id(&cluster.nodes[0]), id(&cluster.nodes[1]));
    let seed = format!("127.0.0.1:{}", cluster.nodes[2].port());
    let reshard = tokio::task::spawn_blocking(move || {
        std::process::Command::new("redis-cli")
            .args(["--cluster", "reshard", &seed])
            .args(["--cluster-from", &from, "--cluster-to", &to])
            .args(["--cluster-slots", "16384", "--cluster-yes"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("redis-cli")
    });
    let mut during = run_traffic(&app, Duration::from_secs(6), 100_000).await;
    assert!(reshard.await.expect("reshard").success(), "reshard failed");
    cluster.wait_until_ok();
    let slots: Vec<redis::Value> = cluster.nodes[0]
        .query(redis::cmd("CLUSTER").arg("SLOTS"))
        .expect("CLUSTER SLOTS");
    let owned_by_first = slots.iter().any(|range| {
        matches!(range, redis::Value::Array(fields)
            if matches!(fields.get(2), Some(redis::Value::Array(owner))
                if owner.get(1) == Some(&redis::Value::Int(i64::from(cluster.nodes[0].port())))))
    });
    assert!(!owned_by_first, "the first primary still owns slots");
    let after = run_traffic(&app, Duration::from_millis(500), 200_000).await;
    assert!(after.starts.iter().all(|(_, status)| *status == 201));
    let errors = during
        .starts
        .iter()
        .filter(|(_, status)| *status >= 500)
        .count();
    let lost = judged(&app, &mut during).await;
    eprintln!(
        "slot migration: {} starts during the reshard, {errors} answered 5xx; {} approved, {lost} sends lost",
        during.starts.len(),
        during.approved
    );
}

/// Starts `count` verifications on `app` and returns (id, code) pairs.
async fn pending(app: &TestApp, count: usize) -> Vec<(String, String)> {
    let mut pending = Vec::new();
    for n in 0..count {
        let to = format!("+81801234{n:04}");
        let id = app.started(&to).await;
        pending.push((id, app.sent_code(&to).await));
    }
    pending
}

/// The lost-write case: approvals made on a primary whose replication link
/// is cut, then the primary dies and its replica is promoted. Returns how
/// many codes were approved twice (answered `valid: true` before and after).
async fn approvals_twice_across_a_lossy_failover(replicas_ack: u32) -> usize {
    let primary = RedisServer::start();
    let link = LinkProxy::start(primary.port());
    let replica = RedisServer::start_with(&[
        "--replicaof",
        "127.0.0.1",
        &link.port().to_string(),
        "--repl-timeout",
        "60",
    ]);
    eventually(Duration::from_secs(10), "the replica syncs", || {
        replica
            .query::<String>(redis::cmd("INFO").arg("replication"))
            .is_ok_and(|info| info.contains("master_link_status:up"))
    });
    let mut on_primary = settings(Some(&primary));
    on_primary.redis.replicas_ack = Some(replicas_ack);
    on_primary.redis.timeout = Duration::from_millis(400);
    let app = TestApp::spawn(&on_primary).await;
    let codes = pending(&app, 20).await;
    // Everything so far reached the replica; then the link goes quiet.
    eventually(Duration::from_secs(10), "the replica caught up", || {
        let offset = |node: &RedisServer| {
            node.query::<String>(redis::cmd("INFO").arg("replication"))
                .ok()
                .and_then(|info| {
                    info.lines()
                        .find_map(|line| line.strip_prefix("master_repl_offset:"))
                        .and_then(|offset| offset.trim().parse::<u64>().ok())
                })
        };
        offset(&primary).is_some() && offset(&primary) == offset(&replica)
    });
    link.cut();
    let mut first = Vec::new();
    for (id, code) in &codes {
        first.push(valid(app.check(id, code).await).await);
    }
    app.stop();
    drop(app);
    drop(primary); // SIGKILL, with the approvals unreplicated
    let _: String = replica
        .query(redis::cmd("REPLICAOF").arg("NO").arg("ONE"))
        .expect("promoted");
    let mut on_replica = settings(Some(&replica));
    on_replica.redis.replicas_ack = Some(0);
    let promoted = TestApp::spawn(&on_replica).await;
    let mut twice = 0;
    for ((id, code), first) in codes.iter().zip(first) {
        if first && valid(promoted.check(id, code).await).await {
            twice += 1;
        }
    }
    twice
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replicas_ack_no_code_is_approved_twice_across_a_failover() {
    let twice = approvals_twice_across_a_lossy_failover(1).await;
    eprintln!("replicas_ack = 1: {twice} of 20 codes approved twice");
    assert_eq!(twice, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replicas_ack_a_lost_approval_can_be_replayed() {
    // The documented window: this is what `replicas_ack = 0` risks.
    let twice = approvals_twice_across_a_lossy_failover(0).await;
    eprintln!("replicas_ack = 0: {twice} of 20 codes approved twice");
    assert_eq!(twice, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_says_not_serving_when_otpd_cannot_write() {
    let redis = RedisServer::start();
    let other = RedisServer::start();
    let app = TestApp::spawn(&settings(Some(&redis))).await;
    let grpc = app.grpc_addr.expect("gRPC listens");
    let status = || async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connects");
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "otp.v1.VerificationService".into(),
            })
            .await
            .map(|answer| answer.into_inner().status)
    };
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    until("SERVING", Duration::from_secs(10), async || {
        status().await.ok() == Some(serving)
    })
    .await;
    redis.demote_to_replica_of(&other);
    until(
        "NOT_SERVING on a replica",
        Duration::from_secs(10),
        async || status().await.ok() != Some(serving),
    )
    .await;
}
