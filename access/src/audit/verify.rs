//! Checking an audit log: the chain unbroken, the checkpoints' signatures valid, and every
//! record covered by a signed checkpoint (`polder audit verify`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use serde_json::{Map, Value};

use crate::error::{AuditError, AuditKeyError};

use super::chain::{GENESIS, checkpoint_message, head_path, record_hash};

/// What [`verify`] found in an unbroken log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records in the log (checkpoints included).
    pub records: u64,
    /// Checkpoints whose signatures verified (with a key; without one, checkpoints found).
    pub checkpoints: u64,
    /// The last record a verified checkpoint signs (0: none).
    pub signed_through: u64,
    /// Records after the last checkpoint (not yet covered by a signature); all records when
    /// there is no checkpoint.
    pub unsigned_tail: u64,
    /// The most records the last checkpoint promised before the next one (signed with it);
    /// `None` without a checkpoint, or for a checkpoint written before checkpoints said so.
    pub checkpoint_every: Option<u64>,
    /// The record the `<log>.head` file names (the last checkpoint when it was written);
    /// `None` without a head file.
    pub head: Option<u64>,
    /// The last record's hash.
    pub last_hash: [u8; 32],
}

impl Verified {
    /// Why the log, though an unbroken chain, is not proven by the signing key, or `None`.
    ///
    /// A chain alone proves nothing: whoever can write the file can recompute it. So a log
    /// with records needs a signed checkpoint, and the records after the last one (which a
    /// running node always has) may be no more than that checkpoint promised before the next.
    /// More means checkpoints were removed, or the node that wrote them stopped signing.
    pub fn unproven(&self) -> Option<String> {
        if self.records > 0 && self.checkpoints == 0 {
            return Some(format!(
                "no signed checkpoint: none of its {} records is covered by a signature, and anyone who can write the file can recompute its chain",
                self.records
            ));
        }
        let allowed = self.checkpoint_every.unwrap_or(0);
        if self.unsigned_tail > allowed {
            return Some(format!(
                "{} records after the last signed checkpoint (record {}), more than the {allowed} it promised before the next one: checkpoints were removed or not written",
                self.unsigned_tail,
                self.signed_through + 1
            ));
        }
        None
    }
}

/// Checks a whole log: every record chains to the one before, every hash is right, sequence
/// numbers run without gaps, and (with `key`) every checkpoint's signature verifies. The
/// `<log>.head` file, when present, must be reached: a log cut back before its last
/// checkpoint fails.
pub fn verify(path: &Path, key: Option<&VerifyingKey>) -> Result<Verified, AuditError> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| AuditError::Io {
        path: name.clone(),
        reason: e.to_string(),
    })?;
    let mut walk = Walk {
        name: &name,
        key,
        found: Verified {
            records: 0,
            checkpoints: 0,
            signed_through: 0,
            unsigned_tail: 0,
            checkpoint_every: None,
            head: None,
            last_hash: GENESIS,
        },
        hashes: Vec::new(),
    };
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let number = index as u64 + 1;
        let line = line.map_err(|e| walk.broken(number, e.to_string()))?;
        walk.record(number, &line)?;
    }
    walk.head(&head_path(path))?;
    Ok(walk.found)
}

/// A log read record by record: what is verified so far.
struct Walk<'a> {
    /// The log file, for errors.
    name: &'a str,
    key: Option<&'a VerifyingKey>,
    found: Verified,
    /// Each record's hash, by sequence number (from 1).
    hashes: Vec<[u8; 32]>,
}

impl Walk<'_> {
    fn broken(&self, line: u64, reason: String) -> AuditError {
        AuditError::Broken {
            path: self.name.to_string(),
            line,
            reason,
        }
    }

    /// Checks the record on line `number`: its place in the chain, its hash and, for a
    /// checkpoint, what it covers and its signature.
    fn record(&mut self, number: u64, line: &str) -> Result<(), AuditError> {
        let mut record: Map<String, Value> = serde_json::from_str(line)
            .map_err(|e| self.broken(number, format!("not a JSON record: {e}")))?;
        let stated = record
            .remove("hash")
            .and_then(|h| h.as_str().map(str::to_string))
            .ok_or_else(|| self.broken(number, "no hash".into()))?;
        let prev = self.found.last_hash;
        let records = self.found.records;
        if record.get("seq").and_then(Value::as_u64) != Some(records + 1) {
            return Err(self.broken(
                number,
                format!(
                    "expected record {}: a record was removed or added",
                    records + 1
                ),
            ));
        }
        if record.get("prev").and_then(Value::as_str) != Some(hex::encode(prev).as_str()) {
            return Err(self.broken(number, "does not chain to the record before".into()));
        }
        let hash = record_hash(&prev, &record);
        if hex::encode(hash) != stated {
            return Err(self.broken(number, "the record was changed".into()));
        }
        if record.get("kind").and_then(Value::as_str) == Some("checkpoint") {
            let (covers, every) = self.checkpoint(number, &record)?;
            self.found.checkpoints += 1;
            self.found.unsigned_tail = 0;
            self.found.signed_through = covers;
            self.found.checkpoint_every = every;
        } else {
            self.found.unsigned_tail += 1;
        }
        self.found.records += 1;
        self.found.last_hash = hash;
        self.hashes.push(hash);
        Ok(())
    }

    /// Checks a checkpoint: it covers the record before it, and (with a key) its signature
    /// verifies. Returns what it covers and the interval it promises.
    fn checkpoint(
        &self,
        number: u64,
        record: &Map<String, Value>,
    ) -> Result<(u64, Option<u64>), AuditError> {
        let covers = record.get("covers").and_then(Value::as_u64).unwrap_or(0);
        let covered = hex::encode(self.found.last_hash);
        if covers != self.found.records
            || record.get("covers_hash").and_then(Value::as_str) != Some(covered.as_str())
        {
            return Err(self.broken(
                number,
                "the checkpoint does not cover the record before it".into(),
            ));
        }
        let every = match record.get("every") {
            None => None,
            Some(every) => Some(every.as_u64().filter(|e| *e > 0).ok_or_else(|| {
                self.broken(number, "the checkpoint's interval is not a number".into())
            })?),
        };
        let Some(key) = self.key else {
            return Ok((covers, every));
        };
        let signature = record
            .get("signature")
            .and_then(Value::as_str)
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or_else(|| self.broken(number, "the checkpoint has no valid signature".into()))?;
        key.verify(
            checkpoint_message(covers, &covered, every).as_bytes(),
            &signature,
        )
        .map_err(|_| {
            self.broken(
                number,
                "the checkpoint's signature does not verify with the key".into(),
            )
        })?;
        Ok((covers, every))
    }

    /// Checks that the log reaches the checkpoint the head file at `path` names, if there is
    /// one: a log cut back before it fails.
    fn head(&mut self, path: &Path) -> Result<(), AuditError> {
        let Ok(text) = std::fs::read_to_string(path) else {
            return Ok(());
        };
        let records = self.found.records;
        let head: Value = serde_json::from_str(&text)
            .map_err(|e| self.broken(records, format!("unreadable {}: {e}", path.display())))?;
        let seq = head.get("seq").and_then(Value::as_u64).unwrap_or(0);
        let hash = head.get("hash").and_then(Value::as_str).unwrap_or("");
        self.found.head = Some(seq);
        match self.hashes.get((seq as usize).wrapping_sub(1)) {
            Some(h) if hex::encode(h) == hash => Ok(()),
            Some(_) => Err(self.broken(
                seq,
                "differs from the last checkpoint recorded in the head file".into(),
            )),
            None => Err(self.broken(
                records,
                format!(
                    "the log ends at record {records} but its last checkpoint was record {seq}: records were cut off"
                ),
            )),
        }
    }
}

/// The verifying key of the first Ed25519 key in a JWKS (as `polder token keygen` writes).
pub fn verifying_key_from_jwks(text: &str) -> Result<VerifyingKey, AuditKeyError> {
    let jwks: PublicJwks = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => AuditKeyError::NotJwks(e),
        _ => AuditKeyError::NotJson(e),
    })?;
    let x = jwks
        .keys
        .iter()
        .find(|k| k.crv.as_deref() == Some("Ed25519"))
        .and_then(|k| k.x.as_deref())
        .ok_or(AuditKeyError::NoEd25519Key)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(x)
        .map_err(AuditKeyError::NotBase64)?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| AuditKeyError::Length)?;
    VerifyingKey::from_bytes(&bytes).map_err(AuditKeyError::NotEd25519)
}

/// The part of a JWKS [`verifying_key_from_jwks`] reads: each key's curve and public bytes.
#[derive(Debug, Default, serde::Deserialize)]
struct PublicJwks {
    #[serde(default)]
    keys: Vec<PublicJwk>,
}

#[derive(Debug, serde::Deserialize)]
struct PublicJwk {
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
}
