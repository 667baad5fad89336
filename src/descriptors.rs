//! File descriptors for connections. At start otpd raises its soft
//! `RLIMIT_NOFILE` to the hard limit (as Go's runtime and nginx do), then
//! lowers `http.max_connections` and `grpc.max_connections` where needed so
//! that every connection they allow has a descriptor, with `RESERVED` left
//! for Redis, carriers, the metrics listener and logs. Without this a flood
//! of connections ends in `Too many open files` for everyone.

use rustix::process::{getrlimit, setrlimit, Resource};

/// Descriptors kept for everything but client connections.
pub const RESERVED: usize = 256;

/// Connections each listener may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionCaps {
    pub http_per_worker: usize,
    pub grpc: usize,
}

/// Raises the soft limit to the hard one and returns the caps that fit it.
pub fn connection_caps(wanted: ConnectionCaps, workers: usize, grpc_on: bool) -> ConnectionCaps {
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(%error, "could not raise the file-descriptor limit");
        }
    }
    let available = getrlimit(Resource::Nofile)
        .current
        .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
    let caps = fit(wanted, workers, grpc_on, available);
    if caps != wanted {
        tracing::warn!(
            descriptors = available,
            http_max_connections = caps.http_per_worker,
            grpc_max_connections = caps.grpc,
            "the file-descriptor limit (ulimit -n) cannot hold the configured connections: \
             caps lowered to fit; raise the limit to keep them"
        );
    }
    caps
}

/// `wanted`, scaled down in proportion where `available` descriptors (less
/// `RESERVED`) cannot hold them all.
fn fit(wanted: ConnectionCaps, workers: usize, grpc_on: bool, available: usize) -> ConnectionCaps {
    let grpc = if grpc_on { wanted.grpc } else { 0 };
    let needed = wanted
        .http_per_worker
        .saturating_mul(workers)
        .saturating_add(grpc);
    let usable = available.saturating_sub(RESERVED);
    if needed <= usable {
        return wanted;
    }
    let scaled = |n: usize| ((n as u128 * usable as u128 / needed as u128) as usize).max(1);
    ConnectionCaps {
        http_per_worker: scaled(wanted.http_per_worker),
        grpc: if grpc_on {
            scaled(wanted.grpc)
        } else {
            wanted.grpc
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANTED: ConnectionCaps = ConnectionCaps {
        http_per_worker: 2000,
        grpc: 2000,
    };

    #[test]
    fn caps_that_fit_are_kept() {
        assert_eq!(fit(WANTED, 2, true, 20_000), WANTED);
        assert_eq!(fit(WANTED, 2, false, 4_256), WANTED);
    }

    #[test]
    fn caps_shrink_to_the_descriptors_there_are() {
        // 1,024 descriptors, 2 workers and gRPC: 768 for 6,000 wanted.
        let caps = fit(WANTED, 2, true, 1024);
        assert_eq!(
            caps,
            ConnectionCaps {
                http_per_worker: 256,
                grpc: 256
            }
        );
        assert!(caps.http_per_worker * 2 + caps.grpc + RESERVED <= 1024);
        assert!(fit(WANTED, 64, true, 300).http_per_worker >= 1);
    }
}
