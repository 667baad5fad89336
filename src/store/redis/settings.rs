//! `[redis]` in the configuration: which topology otpd talks to (the one
//! that is set of `url`, `sentinel.nodes` and `cluster.nodes`), how long it
//! waits, and how many replicas must hold an approval before it answers.

use std::time::Duration;

use serde::Deserialize;

/// `[redis]` in the configuration. `Debug` leaves out passwords.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// One server: `redis://[:password@]host:port/db` (`rediss://` for TLS).
    pub url: String,
    pub sentinel: SentinelSettings,
    pub cluster: ClusterSettings,
    /// Start of every key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// Longest wait for one Redis call before answering 503.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Replicas that must acknowledge (`WAIT`) an approval or a wrong
    /// code before otpd answers; unset: 0 on one server, 1 behind
    /// Sentinel or on Cluster.
    pub replicas_ack: Option<u32>,
    /// PEM file of the CA that signed Redis's certificates (`rediss://`),
    /// for every topology; empty: the system's roots.
    pub tls_ca_file: std::path::PathBuf,
    /// How far a replica's clock may be from Redis's before it says it is
    /// not ready (RL-2: limits are decided with each replica's time).
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
}

/// A primary and its replicas watched by Sentinel.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelSettings {
    /// The name Sentinel monitors the primary under.
    pub master_name: String,
    /// Sentinel addresses, `redis://[:password@]host:26379` (`rediss://`
    /// for TLS).
    pub nodes: Vec<String>,
    /// Credentials and TLS of the primary (Sentinel's own are in `nodes`).
    pub username: String,
    pub password: String,
    pub tls: bool,
}

/// A Redis Cluster, found from any of its nodes.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// Seed nodes, `redis://[:password@]host:port` (`rediss://` for TLS).
    pub nodes: Vec<String>,
}

/// How the deployment's Redis is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    Single,
    Sentinel,
    Cluster,
}

impl RedisSettings {
    /// Whether any topology is configured (production needs one).
    pub fn is_configured(&self) -> bool {
        !self.url.is_empty() || !self.sentinel.nodes.is_empty() || !self.cluster.nodes.is_empty()
    }

    /// The configured topology; `validate` makes sure there is one.
    pub fn topology(&self) -> Topology {
        if !self.sentinel.nodes.is_empty() {
            Topology::Sentinel
        } else if !self.cluster.nodes.is_empty() {
            Topology::Cluster
        } else {
            Topology::Single
        }
    }

    /// The CA of `tls_ca_file` for the client, if one is set.
    pub fn certificates(&self) -> std::io::Result<Option<redis::TlsCertificates>> {
        if self.tls_ca_file.as_os_str().is_empty() {
            return Ok(None);
        }
        Ok(Some(redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&self.tls_ca_file)?),
        }))
    }

    /// Replicas an approval must reach before otpd answers.
    pub fn replicas_ack(&self) -> u32 {
        self.replicas_ack.unwrap_or(match self.topology() {
            Topology::Single => 0,
            Topology::Sentinel | Topology::Cluster => 1,
        })
    }

    /// The first setting that makes the topology ambiguous or incomplete,
    /// as (key, reason).
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        let set = [
            !self.url.is_empty(),
            !self.sentinel.nodes.is_empty(),
            !self.cluster.nodes.is_empty(),
        ];
        if set.iter().filter(|set| **set).count() > 1 {
            return Some(("redis", "set one of url, sentinel.nodes and cluster.nodes"));
        }
        if self.topology() == Topology::Sentinel && self.sentinel.master_name.is_empty() {
            return Some(("redis.sentinel.master_name", "required with sentinel.nodes"));
        }
        let plaintext = |url: &String| url.starts_with("redis://");
        let tls_ca_unused = !self.tls_ca_file.as_os_str().is_empty()
            && (plaintext(&self.url) || self.cluster.nodes.iter().any(plaintext));
        if tls_ca_unused {
            return Some((
                "redis.tls_ca_file",
                "is set, but a Redis URL is redis://, not rediss://",
            ));
        }
        if self.replicas_ack.unwrap_or(0) > 16 {
            return Some(("redis.replicas_ack", "is more than 16"));
        }
        None
    }
}

/// `url` with any credentials replaced: `redis://[redacted]@host:6379/`.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://[redacted]@{host}"),
        _ => url.to_owned(),
    }
}

fn redacted_all(urls: &[String]) -> Vec<String> {
    urls.iter().map(|url| redacted(url)).collect()
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redacted(&self.url))
            .field("sentinel", &self.sentinel)
            .field("cluster", &self.cluster)
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("replicas_ack", &self.replicas_ack)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("max_clock_skew", &self.max_clock_skew)
            .finish()
    }
}

impl std::fmt::Debug for SentinelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let password = if self.password.is_empty() {
            ""
        } else {
            "[redacted]"
        };
        f.debug_struct("SentinelSettings")
            .field("master_name", &self.master_name)
            .field("nodes", &redacted_all(&self.nodes))
            .field("username", &self.username)
            .field("password", &password)
            .field("tls", &self.tls)
            .finish()
    }
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("nodes", &redacted_all(&self.nodes))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_leaves_out_every_password() {
        let settings = RedisSettings {
            url: "rediss://:hunter2@redis:6379/0".into(),
            sentinel: SentinelSettings {
                master_name: "otpd".into(),
                nodes: vec!["redis://:hunter3@sentinel:26379".into()],
                username: "otpd".into(),
                password: "hunter4".into(),
                tls: true,
            },
            cluster: ClusterSettings {
                nodes: vec!["redis://user:hunter5@node:6379".into()],
            },
            key_prefix: "otpd".into(),
            timeout: Duration::from_secs(1),
            replicas_ack: None,
            tls_ca_file: Default::default(),
            max_clock_skew: Duration::from_secs(1),
        };
        let printed = format!("{settings:?}");
        assert!(!printed.contains("hunter"), "{printed}");
        assert!(
            printed.contains("rediss://[redacted]@redis:6379/0"),
            "{printed}"
        );
    }
}
