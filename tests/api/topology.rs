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

use crate::support::{free_port, RedisServer, Security};

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
        Self::start_secured(primaries, replicas_each, Security::default())
    }

    /// A cluster whose every node (and bus) takes `security`.
    pub fn start_secured(primaries: usize, replicas_each: usize, security: Security) -> Self {
        let nodes: Vec<RedisServer> = (0..primaries * (1 + replicas_each))
            .map(|_| {
                // A bus port of its own: the default, port + 10000, may be
                // another process's ephemeral port.
                let bus = free_port().to_string();
                RedisServer::start_secured(
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-port",
                        &bus,
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                    ],
                    security.clone(),
                )
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        let mut cli = std::process::Command::new("redis-cli");
        if let Some(ca) = &security.tls {
            cli.arg("--tls").arg("--cacert").arg(ca.ca_file());
        }
        if let Some(password) = &security.password {
            cli.args(["-a", password, "--no-auth-warning"]);
        }
        let created = cli
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
        if let Some(ca) = &self.nodes[0].security().tls {
            settings.redis.tls_ca_file = ca.ca_file();
        }
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
        Self::start_secured(Security::default(), None)
    }

    /// The primary and replica take `data`; the Sentinels the same TLS
    /// and, if given, a password of their own.
    pub fn start_secured(data: Security, sentinel_password: Option<&str>) -> Self {
        let primary = RedisServer::start_secured(&[], data.clone());
        let port = primary.port().to_string();
        let replica =
            RedisServer::start_secured(&["--replicaof", "127.0.0.1", &port], data.clone());
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
                write_sentinel_conf(&conf, primary.port(), data.password.as_deref());
                let security = Security {
                    password: sentinel_password.map(str::to_owned),
                    tls: data.tls.clone(),
                };
                RedisServer::start_secured(&[conf.to_str().expect("utf-8"), "--sentinel"], security)
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
        let data = self.primary.security();
        settings.redis.sentinel.password = data.password.clone().unwrap_or_default();
        if let Some(ca) = &data.tls {
            settings.redis.sentinel.tls = true;
            settings.redis.tls_ca_file = ca.ca_file();
        }
        settings
    }
}

/// Sentinel rewrites its file: one of its own per Sentinel. The port line
/// is ignored (the command line's `--port` wins).
fn write_sentinel_conf(path: &Path, primary: u16, password: Option<&str>) {
    let mut conf = format!(
        "sentinel monitor {MASTER_NAME} 127.0.0.1 {primary} 2\n\
         sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
         sentinel failover-timeout {MASTER_NAME} 5000\n\
         sentinel parallel-syncs {MASTER_NAME} 1\n"
    );
    if let Some(password) = password {
        conf.push_str(&format!("sentinel auth-pass {MASTER_NAME} {password}\n"));
    }
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

/// A certificate authority made for one test (`openssl`), and a server
/// certificate it signed for 127.0.0.1 and localhost.
pub struct TestCa {
    dir: tempfile::TempDir,
}

/// `openssl args…` in `dir`, which must succeed.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl missing: run scripts/test, which installs it");
    assert!(status.success(), "openssl {args:?}");
}

const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

impl TestCa {
    /// A CA, and a certificate it signed for Redis (`localhost`,
    /// 127.0.0.1).
    pub fn new() -> Arc<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        openssl(
            dir.path(),
            &[
                &["req", "-x509"][..],
                &EC_KEY,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=otpd test CA",
                ],
            ]
            .concat(),
        );
        let ca = TestCa { dir };
        ca.issue("redis", "localhost");
        Arc::new(ca)
    }

    /// A new key and a certificate this CA signed for `common_name` (also
    /// valid for `localhost` and 127.0.0.1): the paths of `name.crt` and
    /// `name.key`.
    pub fn issue(&self, name: &str, common_name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let dir = self.dir.path();
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let subject = format!("/CN={common_name}");
        openssl(
            dir,
            &[
                &["req"][..],
                &EC_KEY,
                &["-keyout", &key, "-out", &csr, "-subj", &subject],
            ]
            .concat(),
        );
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("extensions");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        );
        (dir.join(crt), dir.join(key))
    }

    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// What a client trusts: this CA alone.
    pub fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(self.ca_file()).expect("ca.crt")),
        }
    }

    /// TLS for clients, replication and the cluster bus; no client
    /// certificates.
    pub fn server_arguments(&self) -> Vec<String> {
        let file = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            "--tls-cert-file".into(),
            file("redis.crt"),
            "--tls-key-file".into(),
            file("redis.key"),
            "--tls-ca-cert-file".into(),
            file("ca.crt"),
            "--tls-auth-clients".into(),
            "no".into(),
            "--tls-replication".into(),
            "yes".into(),
            "--tls-cluster".into(),
            "yes".into(),
        ]
    }
}
