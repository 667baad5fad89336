//! The `memory` scenario's measurement: Redis memory per pending
//! verification, all keys included, and what each kind of key costs.

use std::collections::BTreeMap;

use crate::report::{Memory, MemoryKind};
use crate::servers::RedisServer;

/// Keys of each kind whose `MEMORY USAGE` is read.
const SAMPLE: usize = 2000;

pub fn used_memory(redis: &RedisServer) -> anyhow::Result<u64> {
    Ok(redis.info("memory", "used_memory")?.parse()?)
}

/// What `verifications` pending verifications added between two readings.
pub fn measure(
    redis: &RedisServer,
    verifications: u64,
    before: u64,
    after: u64,
) -> anyhow::Result<Memory> {
    let mut connection = redis.connection()?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut samples: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(10_000)
            .query(&mut connection)?;
        for key in keys {
            let kind = kind_of(&key);
            *counts.entry(kind.clone()).or_default() += 1;
            let sample = samples.entry(kind).or_default();
            if sample.len() < SAMPLE {
                sample.push(key);
            }
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut kinds = Vec::new();
    for (kind, keys) in counts {
        let mut total = 0u64;
        let sample = &samples[&kind];
        for key in sample {
            let bytes: Option<u64> = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0)
                .query(&mut connection)?;
            total += bytes.unwrap_or(0);
        }
        kinds.push(MemoryKind {
            kind,
            keys,
            mean_bytes: total as f64 / sample.len().max(1) as f64,
        });
    }
    Ok(Memory {
        verifications,
        used_memory_before: before,
        used_memory_after: after,
        bytes_per_verification: after.saturating_sub(before) as f64 / verifications.max(1) as f64,
        kinds,
    })
}

/// A key's kind: its layout with the variable parts (slot tags, ids,
/// digests) replaced, e.g. `otpd:{T}:v:<id>`.
fn kind_of(key: &str) -> String {
    key.split(':')
        .enumerate()
        .map(|(i, part)| {
            if part.starts_with('{') {
                "{T}".to_string()
            } else if i >= 2 && (part.len() > 6 || part.chars().any(|c| c.is_ascii_digit())) {
                "…".to_string()
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::kind_of;

    #[test]
    fn names_kinds_without_their_variable_parts() {
        assert_eq!(kind_of("otpd:{0a1b}:v:AAECAwQFBgcICQ"), "otpd:{T}:v:…");
        assert_eq!(kind_of("otpd:{0a1b}:outbox"), "otpd:{T}:outbox");
        assert_eq!(kind_of("otpd:{0a1b}:l:n:abcdefgh:900"), "otpd:{T}:l:n:…:…");
    }
}
