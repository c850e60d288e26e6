//! The hash chain both the writer ([`AuditLog`](super::AuditLog)) and [`verify`](super::verify)
//! compute: each record's hash over the previous one, and what a checkpoint signs.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// What the first record chains to.
pub(super) const GENESIS: [u8; 32] = [0; 32];

/// The file next to the log naming its latest checkpoint: `<log>.head`.
pub(super) fn head_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".head");
    PathBuf::from(name)
}

/// What a checkpoint signs: the record it covers, that record's hash, and (since checkpoints
/// promise their interval) the most records before the next checkpoint.
pub(super) fn checkpoint_message(seq: u64, hash: &str, every: Option<u64>) -> String {
    match every {
        Some(every) => format!("polder-audit-checkpoint:{seq}:{hash}:every={every}"),
        None => format!("polder-audit-checkpoint:{seq}:{hash}"),
    }
}

/// SHA-256 over the previous hash and the record's JSON (keys sorted, as `serde_json::Map`
/// keeps them in insertion order only with `preserve_order`; sorting makes it canonical).
pub(super) fn record_hash(prev: &[u8; 32], record: &Map<String, Value>) -> [u8; 32] {
    let mut sorted: Vec<(&String, &Value)> = record.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let canonical: Map<String, Value> = sorted
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(serde_json::to_vec(&canonical).unwrap_or_default());
    hasher.finalize().into()
}
