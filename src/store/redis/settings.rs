//! `[redis]` in the configuration: which topology otpd talks to (the one
//! that is set of `url`, `sentinel.nodes` and `cluster.nodes`), how long it
//! waits, and how many replicas must hold an approval before it answers.

use std::time::Duration;

use serde::Deserialize;

/// `[redis]` in the configuration.
#[derive(Clone, Debug, Deserialize)]
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
}

/// A primary and its replicas watched by Sentinel.
#[derive(Clone, Debug, Default, Deserialize)]
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
#[derive(Clone, Debug, Default, Deserialize)]
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
