//! The audit log: one record per query a caller runs, appended to a hash chain with signed
//! checkpoints, so that a changed, removed or cut-off record is detected by
//! [`verify`] (`polder audit verify`).
//!
//! Each line is a JSON object. Its `hash` is SHA-256 over the previous record's hash and the
//! record's own canonical JSON without `hash`; the first record chains to 32 zero bytes. Every
//! `checkpoint_every` records, and when the node stops, a `checkpoint` record carries an Ed25519
//! signature over its sequence number and hash. The latest checkpoint is also written to
//! `<log>.head` and logged, so it can be kept elsewhere: a log cut back to before a checkpoint
//! kept elsewhere no longer reaches it.
//!
//! Records hold who asked (subject, purpose), which datasets under which grant, the outcome and
//! the rows sent, and the statement with its literals replaced by `?` plus the SHA-256 of the
//! full statement. Never a value from the data, never a literal of the query.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tracing::{error, info};

/// Why the audit log cannot be opened, written or verified.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading or writing the file failed.
    #[error("audit log {path}: {reason}")]
    Io {
        /// The log file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The signing key cannot be used.
    #[error("audit signing key {path}: {reason}")]
    Key {
        /// The key file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The log is not an unbroken chain, or a checkpoint does not verify.
    #[error("audit log {path} is damaged at line {line}: {reason}")]
    Broken {
        /// The log file.
        path: String,
        /// The first line that does not verify (1-based).
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

const GENESIS: [u8; 32] = [0; 32];

/// The append-only, hash-chained audit log of a node.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    key: SigningKey,
    checkpoint_every: u64,
    state: Mutex<Chain>,
}

#[derive(Debug)]
struct Chain {
    file: File,
    seq: u64,
    prev: [u8; 32],
    since_checkpoint: u64,
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, checking the chain it holds so that new records
    /// continue it; a damaged log stops the node rather than being extended. `key_path` is the
    /// Ed25519 private key (PKCS#8 PEM) that signs checkpoints.
    pub fn open(path: &Path, key_path: &Path, checkpoint_every: u64) -> Result<Self, AuditError> {
        let key_pem = std::fs::read_to_string(key_path).map_err(|e| AuditError::Key {
            path: key_path.display().to_string(),
            reason: e.to_string(),
        })?;
        let key = SigningKey::from_pkcs8_pem(&key_pem).map_err(|e| AuditError::Key {
            path: key_path.display().to_string(),
            reason: format!("not an Ed25519 PKCS#8 PEM private key ({e})"),
        })?;
        // Only a regular file holds a chain to continue (a device such as /dev/null does not).
        let (seq, prev) = if path.metadata().is_ok_and(|m| m.is_file() && m.len() > 0) {
            let summary = verify(path, Some(&key.verifying_key()))?;
            (summary.records, summary.last_hash)
        } else {
            (0, GENESIS)
        };
        let io = |e: std::io::Error| AuditError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        info!(path = %path.display(), records = seq, "audit log opened");
        Ok(Self {
            path: path.to_path_buf(),
            key,
            checkpoint_every: checkpoint_every.max(1),
            state: Mutex::new(Chain {
                file,
                seq,
                prev,
                since_checkpoint: 0,
            }),
        })
    }

    /// Appends one record (its `seq`, `prev` and `hash` are added here) and syncs it to disk;
    /// every `checkpoint_every` records a signed checkpoint follows.
    pub fn append(&self, mut record: Map<String, Value>) -> Result<u64, AuditError> {
        let mut chain = self.state.lock().expect("lock");
        let seq = self.write(&mut chain, &mut record)?;
        chain.since_checkpoint += 1;
        if chain.since_checkpoint >= self.checkpoint_every {
            self.checkpoint_locked(&mut chain)?;
        }
        Ok(seq)
    }

    /// Appends a signed checkpoint now (the node does this when it stops).
    pub fn checkpoint(&self) -> Result<(), AuditError> {
        let mut chain = self.state.lock().expect("lock");
        if chain.since_checkpoint == 0 && chain.seq > 0 {
            return Ok(());
        }
        self.checkpoint_locked(&mut chain)
    }

    fn checkpoint_locked(&self, chain: &mut Chain) -> Result<(), AuditError> {
        let covered = hex::encode(chain.prev);
        let signature = self
            .key
            .sign(checkpoint_message(chain.seq, &covered).as_bytes());
        let mut record = Map::new();
        record.insert("kind".into(), json!("checkpoint"));
        record.insert("time".into(), json!(now()));
        record.insert("covers".into(), json!(chain.seq));
        record.insert(
            "signature".into(),
            json!(URL_SAFE_NO_PAD.encode(signature.to_bytes())),
        );
        record.insert("covers_hash".into(), json!(covered));
        let seq = self.write(chain, &mut record)?;
        chain.since_checkpoint = 0;
        let head = json!({"seq": seq, "hash": hex::encode(chain.prev)});
        let head_path = head_path(&self.path);
        let tmp = head_path.with_extension("head.tmp");
        std::fs::write(&tmp, head.to_string())
            .and_then(|()| std::fs::rename(&tmp, &head_path))
            .map_err(|e| AuditError::Io {
                path: head_path.display().to_string(),
                reason: e.to_string(),
            })?;
        info!(seq, hash = %hex::encode(chain.prev), "audit checkpoint");
        Ok(())
    }

    fn write(&self, chain: &mut Chain, record: &mut Map<String, Value>) -> Result<u64, AuditError> {
        let seq = chain.seq + 1;
        record.insert("seq".into(), json!(seq));
        record.insert("prev".into(), json!(hex::encode(chain.prev)));
        record.remove("hash");
        let hash = record_hash(&chain.prev, record);
        record.insert("hash".into(), json!(hex::encode(hash)));
        let mut line = serde_json::to_vec(record).map_err(|e| AuditError::Io {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        line.push(b'\n');
        let io = |e: std::io::Error| AuditError::Io {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        };
        chain.file.write_all(&line).map_err(io)?;
        chain.file.sync_data().map_err(io)?;
        chain.seq = seq;
        chain.prev = hash;
        Ok(seq)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(err) = self.checkpoint() {
            error!(error = %err, "cannot write the final audit checkpoint");
        }
    }
}

fn head_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".head");
    PathBuf::from(name)
}

fn checkpoint_message(seq: u64, hash: &str) -> String {
    format!("polder-audit-checkpoint:{seq}:{hash}")
}

/// SHA-256 over the previous hash and the record's JSON (keys sorted, as `serde_json::Map`
/// keeps them in insertion order only with `preserve_order`; sorting makes it canonical).
fn record_hash(prev: &[u8; 32], record: &Map<String, Value>) -> [u8; 32] {
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

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What [`verify`] found in an unbroken log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records in the log (checkpoints included).
    pub records: u64,
    /// Checkpoints whose signatures verified.
    pub checkpoints: u64,
    /// Records after the last checkpoint (not yet covered by a signature).
    pub unsigned_tail: u64,
    /// The last record's hash.
    pub last_hash: [u8; 32],
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
    let broken = |line: u64, reason: String| AuditError::Broken {
        path: name.clone(),
        line,
        reason,
    };
    let mut prev = GENESIS;
    let mut records = 0u64;
    let mut checkpoints = 0u64;
    let mut since_checkpoint = 0u64;
    let mut hashes_at: Vec<(u64, [u8; 32])> = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let number = index as u64 + 1;
        let line = line.map_err(|e| broken(number, e.to_string()))?;
        let mut record: Map<String, Value> = serde_json::from_str(&line)
            .map_err(|e| broken(number, format!("not a JSON record: {e}")))?;
        let stated = record
            .remove("hash")
            .and_then(|h| h.as_str().map(str::to_string))
            .ok_or_else(|| broken(number, "no hash".into()))?;
        if record.get("seq").and_then(Value::as_u64) != Some(records + 1) {
            return Err(broken(
                number,
                format!(
                    "expected record {}: a record was removed or added",
                    records + 1
                ),
            ));
        }
        if record.get("prev").and_then(Value::as_str) != Some(hex::encode(prev).as_str()) {
            return Err(broken(number, "does not chain to the record before".into()));
        }
        let hash = record_hash(&prev, &record);
        if hex::encode(hash) != stated {
            return Err(broken(number, "the record was changed".into()));
        }
        if record.get("kind").and_then(Value::as_str) == Some("checkpoint") {
            let covers = record.get("covers").and_then(Value::as_u64).unwrap_or(0);
            let covered = hex::encode(prev);
            if covers != records
                || record.get("covers_hash").and_then(Value::as_str) != Some(covered.as_str())
            {
                return Err(broken(
                    number,
                    "the checkpoint does not cover the record before it".into(),
                ));
            }
            if let Some(key) = key {
                let signature = record
                    .get("signature")
                    .and_then(Value::as_str)
                    .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
                    .and_then(|b| Signature::from_slice(&b).ok())
                    .ok_or_else(|| {
                        broken(number, "the checkpoint has no valid signature".into())
                    })?;
                key.verify(checkpoint_message(covers, &covered).as_bytes(), &signature)
                    .map_err(|_| {
                        broken(
                            number,
                            "the checkpoint's signature does not verify with the key".into(),
                        )
                    })?;
            }
            checkpoints += 1;
            since_checkpoint = 0;
        } else {
            since_checkpoint += 1;
        }
        records += 1;
        prev = hash;
        hashes_at.push((records, hash));
    }
    let head = head_path(path);
    if let Ok(text) = std::fs::read_to_string(&head) {
        let head: Value = serde_json::from_str(&text)
            .map_err(|e| broken(records, format!("unreadable {}: {e}", head.display())))?;
        let seq = head.get("seq").and_then(Value::as_u64).unwrap_or(0);
        let hash = head.get("hash").and_then(Value::as_str).unwrap_or("");
        match hashes_at.get((seq as usize).wrapping_sub(1)) {
            Some((_, h)) if hex::encode(h) == hash => {}
            Some(_) => {
                return Err(broken(
                    seq,
                    "differs from the last checkpoint recorded in the head file".into(),
                ));
            }
            None => {
                return Err(broken(
                    records,
                    format!(
                        "the log ends at record {records} but its last checkpoint was record {seq}: records were cut off"
                    ),
                ));
            }
        }
    }
    Ok(Verified {
        records,
        checkpoints,
        unsigned_tail: since_checkpoint,
        last_hash: prev,
    })
}

/// The verifying key of the first Ed25519 key in a JWKS (as `polder token keygen` writes).
pub fn verifying_key_from_jwks(text: &str) -> Result<VerifyingKey, String> {
    let jwks: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let x = jwks
        .get("keys")
        .and_then(Value::as_array)
        .and_then(|keys| {
            keys.iter()
                .find(|k| k.get("crv").and_then(Value::as_str) == Some("Ed25519"))
        })
        .and_then(|k| k.get("x"))
        .and_then(Value::as_str)
        .ok_or("no Ed25519 key in the JWKS")?;
    let bytes = URL_SAFE_NO_PAD
        .decode(x)
        .map_err(|e| format!("bad key: {e}"))?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| "bad key length".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("bad key: {e}"))
}

/// The statement with every literal replaced by `?`: its shape, never its values.
pub fn strip_literals(sql: &str) -> String {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return "<statement that does not tokenize>".into();
    };
    let mut out = String::with_capacity(sql.len());
    let mut last_space = false;
    for token in tokens {
        let text = match token {
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::DollarQuotedString(_) => "?".to_string(),
            Token::Whitespace(_) => {
                if !last_space {
                    out.push(' ');
                }
                last_space = true;
                continue;
            }
            other => other.to_string(),
        };
        last_space = false;
        out.push_str(&text);
    }
    out.trim().to_string()
}

/// SHA-256 of the full statement, hex.
pub fn statement_hash(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(dir: &Path) -> PathBuf {
        let (pem, _) = crate::mint::generate_key("audit").unwrap();
        let path = dir.join("audit-key.pem");
        std::fs::write(&path, pem).unwrap();
        path
    }

    fn record(n: u64) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("kind".into(), json!("query"));
        m.insert("subject".into(), json!(format!("user{n}")));
        m
    }

    #[test]
    fn strips_literals() {
        assert_eq!(
            strip_literals("SELECT * FROM t WHERE name = 'Jan de Vries' AND  age > 42 -- bsn 123"),
            "SELECT * FROM t WHERE name = ? AND age > ?"
        );
        let stripped = strip_literals("SELECT 'secret', 1234, x'ff' /* 5678 */");
        assert!(
            !stripped.contains("secret") && !stripped.contains("1234"),
            "{stripped}"
        );
        assert!(!stripped.contains("5678"), "{stripped}");
    }

    #[test]
    fn detects_changed_removed_and_cut_off_records() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = key(dir.path());
        let log_path = dir.path().join("audit.jsonl");
        {
            let log = AuditLog::open(&log_path, &key_path, 3).unwrap();
            for n in 0..7 {
                log.append(record(n)).unwrap();
            }
        } // dropped: a final checkpoint
        let pem = std::fs::read_to_string(&key_path).unwrap();
        let public = SigningKey::from_pkcs8_pem(&pem).unwrap().verifying_key();
        let ok = verify(&log_path, Some(&public)).unwrap();
        assert_eq!(ok.records, 7 + 3);
        assert_eq!(ok.checkpoints, 3);
        // Reopening continues the chain.
        {
            let log = AuditLog::open(&log_path, &key_path, 100).unwrap();
            log.append(record(99)).unwrap();
        }
        assert_eq!(verify(&log_path, Some(&public)).unwrap().records, 12);

        let original = std::fs::read_to_string(&log_path).unwrap();
        let lines: Vec<&str> = original.lines().collect();
        let check = |text: String, expect: &str| {
            std::fs::write(&log_path, text).unwrap();
            let err = verify(&log_path, Some(&public)).unwrap_err().to_string();
            assert!(err.contains(expect), "{expect}: {err}");
        };
        check(original.replace("user3", "user4"), "changed");
        let mut removed = lines.clone();
        removed.remove(4);
        check(removed.join("\n") + "\n", "removed");
        check(lines[..6].join("\n") + "\n", "cut off");
        // Another key's signature does not verify.
        std::fs::write(&log_path, &original).unwrap();
        let other = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let err = verify(&log_path, Some(&other)).unwrap_err().to_string();
        assert!(err.contains("signature"), "{err}");
        // A damaged log is not extended.
        check(original.replace("user3", "user4"), "changed");
        assert!(AuditLog::open(&log_path, &key_path, 3).is_err());
    }
}
