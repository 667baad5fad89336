//! Test harness for the topologies beyond one server: a private Redis
//! Cluster and a primary + replica watched by three Sentinels, all real
//! `redis-server` processes on free loopback ports, stopped when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use otpd::config::Settings;

use crate::support::RedisServer;

/// Polls `ready` until it holds or `within` passes (the one wait helper of
/// the topology tests).
pub fn eventually(within: Duration, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A Redis Cluster of `primaries` primaries, each with `replicas_each`
/// replicas.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Three primaries and three replicas, as the README deploys it.
    pub fn start() -> Self {
        Self::start_shaped(3, 1)
    }

    pub fn start_shaped(primaries: usize, replicas_each: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..primaries * (1 + replicas_each))
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let created = std::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args([
                "--cluster-replicas",
                &replicas_each.to_string(),
                "--cluster-yes",
            ])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("redis-cli missing: run scripts/test, which installs redis-tools");
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = RedisCluster { nodes };
        cluster.wait_until_ok();
        cluster
    }

    /// Until every node says the cluster is whole and every replica has
    /// synced with its primary.
    pub fn wait_until_ok(&self) {
        eventually(
            Duration::from_secs(20),
            "cluster_state:ok, replicas in sync",
            || {
                self.nodes.iter().all(|node| {
                    let whole = node
                        .query::<String>(redis::cmd("CLUSTER").arg("INFO"))
                        .is_ok_and(|info| info.contains("cluster_state:ok"));
                    let synced = node
                        .query::<String>(redis::cmd("INFO").arg("replication"))
                        .is_ok_and(|info| {
                            info.contains("role:master") || info.contains("master_link_status:up")
                        });
                    whole && synced
                })
            },
        );
    }

    /// Empties every primary (replicas follow).
    pub fn flush(&self) {
        for node in &self.nodes {
            let _ = node.query::<String>(&redis::cmd("FLUSHALL"));
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Every key, from every node.
    pub fn keys(&self) -> std::collections::BTreeSet<String> {
        self.nodes.iter().flat_map(|node| node.keys()).collect()
    }

    /// Settings for otpd on this cluster.
    pub fn settings(&self, mut settings: Settings) -> Settings {
        settings.mode = otpd::config::Mode::Production;
        settings.redis.url = String::new();
        settings.redis.cluster.nodes = self.urls();
        settings
    }
}

/// A primary, one replica and three Sentinels monitoring them as `otpd`.
pub struct SentinelSet {
    pub primary: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<RedisServer>,
}

pub const MASTER_NAME: &str = "otpd";

impl SentinelSet {
    pub fn start() -> Self {
        let primary = RedisServer::start();
        let port = primary.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
        eventually(Duration::from_secs(10), "the replica syncs", || {
            replica
                .query::<String>(redis::cmd("INFO").arg("replication"))
                .is_ok_and(|info| info.contains("master_link_status:up"))
        });
        let sentinels = (0..3)
            .map(|_| {
                let conf = tempfile::Builder::new()
                    .suffix(".conf")
                    .tempfile()
                    .expect("sentinel conf")
                    .into_temp_path()
                    .keep()
                    .expect("kept");
                write_sentinel_conf(&conf, primary.port());
                RedisServer::start_with(&[conf.to_str().expect("utf-8"), "--sentinel"])
            })
            .collect();
        let set = SentinelSet {
            primary,
            replica,
            sentinels,
        };
        eventually(Duration::from_secs(10), "Sentinels see the replica", || {
            set.sentinels.iter().all(|sentinel| {
                sentinel
                    .query::<Vec<redis::Value>>(
                        redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER_NAME),
                    )
                    .is_ok_and(|replicas| !replicas.is_empty())
            })
        });
        set
    }

    /// The port Sentinel names as the primary now.
    pub fn primary_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|sentinel| {
            sentinel
                .query::<(String, String)>(
                    redis::cmd("SENTINEL")
                        .arg("GET-MASTER-ADDR-BY-NAME")
                        .arg(MASTER_NAME),
                )
                .ok()
                .and_then(|(_, port)| port.parse().ok())
        })
    }

    pub fn settings(&self, mut settings: Settings) -> Settings {
        settings.mode = otpd::config::Mode::Production;
        settings.redis.url = String::new();
        settings.redis.sentinel.master_name = MASTER_NAME.into();
        settings.redis.sentinel.nodes = self.sentinels.iter().map(RedisServer::url).collect();
        settings
    }
}

/// Sentinel rewrites its file: one of its own per Sentinel. The port line
/// is ignored (the command line's `--port` wins).
fn write_sentinel_conf(path: &Path, primary: u16) {
    let conf = format!(
        "sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 2\n\
         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
         sentinel failover-timeout {MASTER_NAME} 5000\n\
         sentinel parallel-syncs {MASTER_NAME} 1\n"
    );
    std::fs::write(path, conf).expect("sentinel conf written");
}

/// A TCP relay between a replica and its primary that the test can cut:
/// from then on it swallows what either side sends, keeping both
/// connections open, so the primary's last writes never reach the replica
/// and its acknowledgements never come back.
pub struct LinkProxy {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl LinkProxy {
    pub fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let port = listener.local_addr().expect("address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let relay_cut = Arc::clone(&cut);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ] {
                    let (Ok(mut from), Ok(mut to)) = (from, to) else {
                        continue;
                    };
                    let cut = Arc::clone(&relay_cut);
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16 * 1024];
                        while let Ok(read) = from.read(&mut buffer) {
                            if read == 0 {
                                break;
                            }
                            if !cut.load(Ordering::SeqCst) && to.write_all(&buffer[..read]).is_err()
                            {
                                break;
                            }
                        }
                    });
                }
            }
        });
        LinkProxy { port, cut }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// From now on nothing passes either way.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }
}
