//! The writer: appends records to the chain, syncs each to disk, and signs checkpoints.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signer as _, SigningKey};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};
use tracing::{error, info};

use super::chain::{GENESIS, checkpoint_message, head_path, record_hash};
use super::limiter::RefusalLimiter;
use super::record::{Checkpoint, QueryRecord, Record, Statement, now_text};
use super::{AuditLimits, Caller, MIN_STATEMENT_BYTES, Verified, verify};
use crate::error::AuditError;

/// The append-only, hash-chained audit log of a node.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    key: SigningKey,
    checkpoint_every: u64,
    max_statement_bytes: usize,
    state: Mutex<Chain>,
}

/// The end of the chain, and what is still to be written.
#[derive(Debug)]
struct Chain {
    file: File,
    seq: u64,
    prev: [u8; 32],
    since_checkpoint: u64,
    refusals: RefusalLimiter,
}

/// What `<log>.head` holds: the latest checkpoint's sequence number and hash.
#[derive(Serialize)]
struct Head {
    seq: u64,
    hash: String,
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, checking the chain it holds so that new records
    /// continue it; a damaged log stops the node rather than being extended. `key_path` is the
    /// Ed25519 private key (PKCS#8 PEM) that signs checkpoints.
    pub fn open(path: &Path, key_path: &Path, checkpoint_every: u64) -> Result<Self, AuditError> {
        let key = signing_key(key_path)?;
        let checkpoint_every = checkpoint_every.max(1);
        let found = existing_chain(path, &key, checkpoint_every)?;
        let file = open_for_append(path)?;
        let (seq, prev, since_checkpoint) = found.as_ref().map_or((0, GENESIS, 0), |f| {
            (f.records, f.last_hash, f.unsigned_tail)
        });
        info!(path = %path.display(), records = seq, "audit log opened");
        let log = Self {
            path: path.to_path_buf(),
            key,
            checkpoint_every,
            max_statement_bytes: AuditLimits::default().max_statement_bytes,
            state: Mutex::new(Chain {
                file,
                seq,
                prev,
                since_checkpoint,
                refusals: RefusalLimiter::new(AuditLimits::default()),
            }),
        };
        // A checkpoint promises the next within its `every`: sign what a stopped node left
        // unsigned (at most that many), and promise this node's interval when it differs.
        if found
            .is_some_and(|f| f.unsigned_tail > 0 || f.checkpoint_every != Some(checkpoint_every))
        {
            let mut chain = log.state.lock();
            log.checkpoint_locked(&mut chain)?;
        }
        Ok(log)
    }

    /// Opens the log an `[audit]` section describes, with its limits.
    pub fn open_config(config: &crate::config::AuditConfig) -> Result<Self, AuditError> {
        Ok(
            Self::open(&config.log, &config.signing_key, config.checkpoint_every)?
                .with_limits(config.limits()),
        )
    }

    /// Bounds what callers can make the log write (see [`AuditLimits`]; the defaults apply
    /// until this is called).
    pub fn with_limits(mut self, limits: AuditLimits) -> Self {
        self.max_statement_bytes = limits.max_statement_bytes.max(MIN_STATEMENT_BYTES);
        self.state.get_mut().refusals = RefusalLimiter::new(limits);
        self
    }

    /// What a record keeps of `sql`: its literals replaced by `?` (at most
    /// `max_statement_bytes`), and the SHA-256 and length of the whole statement.
    pub fn statement(&self, sql: &str) -> Statement {
        Statement::of(sql, self.max_statement_bytes)
    }

    /// Appends a `refused` record, or, past the caller's rate limit, only counts it: the count
    /// is written as a `refusals_suppressed` record at most once a second per caller, with the
    /// next record of any kind, and at the latest with the next checkpoint the node writes when
    /// it stops. Returns the record's sequence number, `None` when it was counted.
    pub fn append_refusal(
        &self,
        record: QueryRecord,
        caller: Caller<'_>,
    ) -> Result<Option<u64>, AuditError> {
        let mut chain = self.state.lock();
        let now = Instant::now();
        let outcome = record.outcome.as_deref().unwrap_or("unknown");
        let admitted = chain.refusals.admit(caller, now, outcome);
        self.write_due_summaries(&mut chain, now)?;
        if !admitted {
            return Ok(None);
        }
        self.append_locked(&mut chain, &Record::Refused(record))
            .map(Some)
    }

    /// Appends one record (its `seq`, `prev` and `hash` are added here) and syncs it to disk;
    /// every `checkpoint_every` records a signed checkpoint follows.
    pub fn append(&self, record: &impl Serialize) -> Result<u64, AuditError> {
        let mut chain = self.state.lock();
        self.write_due_summaries(&mut chain, Instant::now())?;
        self.append_locked(&mut chain, record)
    }

    /// Writes the counts of suppressed refusals, then a signed checkpoint (the node does this
    /// when it stops).
    pub fn checkpoint(&self) -> Result<(), AuditError> {
        let mut chain = self.state.lock();
        for summary in chain.refusals.take_all() {
            self.append_locked(&mut chain, &Record::RefusalsSuppressed(summary))?;
        }
        if chain.since_checkpoint == 0 && chain.seq > 0 {
            return Ok(());
        }
        self.checkpoint_locked(&mut chain)
    }

    fn write_due_summaries(&self, chain: &mut Chain, now: Instant) -> Result<(), AuditError> {
        for summary in chain.refusals.take_due(now) {
            self.append_locked(chain, &Record::RefusalsSuppressed(summary))?;
        }
        Ok(())
    }

    fn append_locked(&self, chain: &mut Chain, record: &impl Serialize) -> Result<u64, AuditError> {
        let seq = self
            .write(chain, record)
            .inspect_err(|_| crate::telemetry::audit_write_failed())?;
        chain.since_checkpoint += 1;
        if chain.since_checkpoint >= self.checkpoint_every {
            self.checkpoint_locked(chain)?;
        }
        Ok(seq)
    }

    fn checkpoint_locked(&self, chain: &mut Chain) -> Result<(), AuditError> {
        let covered = hex::encode(chain.prev);
        let signature = self
            .key
            .sign(checkpoint_message(chain.seq, &covered, Some(self.checkpoint_every)).as_bytes());
        let record = Record::Checkpoint(Checkpoint {
            time: now_text(),
            covers: chain.seq,
            every: self.checkpoint_every,
            signature: URL_SAFE_NO_PAD.encode(signature.to_bytes()),
            covers_hash: covered,
        });
        let seq = self.write(chain, &record)?;
        chain.since_checkpoint = 0;
        self.write_head(seq, &chain.prev)?;
        info!(seq, hash = %hex::encode(chain.prev), "audit checkpoint");
        Ok(())
    }

    /// Replaces `<log>.head` with the checkpoint `seq` (written aside, then renamed).
    fn write_head(&self, seq: u64, hash: &[u8; 32]) -> Result<(), AuditError> {
        let head = Head {
            seq,
            hash: hex::encode(hash),
        };
        let head_path = head_path(&self.path);
        let tmp = head_path.with_extension("head.tmp");
        let text = serde_json::to_string(&head).unwrap_or_default();
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &head_path))
            .map_err(|e| AuditError::Io {
                path: head_path.display().to_string(),
                reason: e.to_string(),
            })
    }

    /// Writes `record` as the chain's next line, with its `seq`, `prev` and `hash`.
    fn write(&self, chain: &mut Chain, record: &impl Serialize) -> Result<u64, AuditError> {
        let io = |reason: String| AuditError::Io {
            path: self.path.display().to_string(),
            reason,
        };
        let mut record = match serde_json::to_value(record) {
            Ok(Value::Object(record)) => record,
            Ok(_) => return Err(io("a record is not a JSON object".into())),
            Err(e) => return Err(io(e.to_string())),
        };
        let seq = chain.seq + 1;
        record.insert("seq".into(), json!(seq));
        record.insert("prev".into(), json!(hex::encode(chain.prev)));
        record.remove("hash");
        let hash = record_hash(&chain.prev, &record);
        record.insert("hash".into(), json!(hex::encode(hash)));
        let mut line = serde_json::to_vec(&record).map_err(|e| io(e.to_string()))?;
        line.push(b'\n');
        chain
            .file
            .write_all(&line)
            .and_then(|()| chain.file.sync_data())
            .map_err(|e| io(e.to_string()))?;
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

/// The Ed25519 private key (PKCS#8 PEM) at `key_path`.
fn signing_key(key_path: &Path) -> Result<SigningKey, AuditError> {
    let key_error = |reason: String| AuditError::Key {
        path: key_path.display().to_string(),
        reason,
    };
    let key_pem = std::fs::read_to_string(key_path).map_err(|e| key_error(e.to_string()))?;
    SigningKey::from_pkcs8_pem(&key_pem)
        .map_err(|e| key_error(format!("not an Ed25519 PKCS#8 PEM private key ({e})")))
}

/// The chain a log at `path` already holds, verified; `None` for a new (or not regular) file.
fn existing_chain(
    path: &Path,
    key: &SigningKey,
    checkpoint_every: u64,
) -> Result<Option<Verified>, AuditError> {
    // Only a regular file holds a chain to continue (a device such as /dev/null does not).
    if !path.metadata().is_ok_and(|m| m.is_file() && m.len() > 0) {
        return Ok(None);
    }
    let summary = verify(path, Some(&key.verifying_key()))?;
    // A node signs at least every `checkpoint_every` records, so a longer unsigned part was
    // not written by it as it is (checkpoints were removed): signing it now would vouch for it.
    let allowed = summary.checkpoint_every.unwrap_or(0).max(checkpoint_every);
    if summary.unsigned_tail > allowed {
        return Err(AuditError::Broken {
            path: path.display().to_string(),
            line: summary.records,
            reason: format!(
                "{} records after the last signed checkpoint, more than the {allowed} a node writes between checkpoints: it is not continued (see `polder audit verify`)",
                summary.unsigned_tail
            ),
        });
    }
    Ok(Some(summary))
}

/// The log file opened for appending, its directory created.
fn open_for_append(path: &Path) -> Result<File, AuditError> {
    let io = |e: std::io::Error| AuditError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)
}
