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
//! the rows sent, and the statement with its literals replaced by `?` plus the SHA-256 and the
//! length of the full statement. Never a value from the data, never a literal of the query.
//!
//! What a caller can make the log write is bounded ([`AuditLimits`]): a statement is kept as a
//! literal-free prefix of at most `max_statement_bytes` (stripping reads only a bounded prefix
//! of it), and refusals are rate-limited per caller, anonymous callers sharing one budget: past
//! it they are counted into one `refusals_suppressed` record per caller and second instead of
//! a record each.
//!
//! Each checkpoint also signs the interval it promises (`every`): [`Verified::unproven`] says
//! when a log has records no signature covers beyond that interval, such as a log whose
//! checkpoints were removed and whose chain was recomputed.

mod statement;
mod verify;

pub use statement::{Stripped, statement_hash, strip_literals};
pub use verify::{Verified, verify, verifying_key_from_jwks};

use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signer as _, SigningKey};
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
    max_statement_bytes: usize,
    state: Mutex<Chain>,
}

#[derive(Debug)]
struct Chain {
    file: File,
    seq: u64,
    prev: [u8; 32],
    since_checkpoint: u64,
    refusals: RefusalLimiter,
}

/// How much the audit log writes for what callers send: the `[audit]` limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditLimits {
    /// The longest statement text a record keeps, in bytes (a prefix cut at a character
    /// boundary; the hash and the length are of the whole statement).
    pub max_statement_bytes: usize,
    /// Refusal records of all anonymous callers together.
    pub anonymous_refusals: RateLimit,
    /// Refusal records of each authenticated subject.
    pub subject_refusals: RateLimit,
}

impl Default for AuditLimits {
    fn default() -> Self {
        Self {
            max_statement_bytes: 4096,
            anonymous_refusals: RateLimit {
                per_second: 10,
                burst: 100,
            },
            subject_refusals: RateLimit {
                per_second: 20,
                burst: 200,
            },
        }
    }
}

/// A token bucket: `burst` records at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Records per second, on average.
    pub per_second: u32,
    /// Records at once (the bucket's size).
    pub burst: u32,
}

/// Who was refused, for the refusal rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller<'a> {
    /// A caller without a token: all of them share one budget.
    Anonymous,
    /// An authenticated caller, by the token's subject: each has a budget.
    Subject(&'a str),
}

/// The shortest statement prefix [`AuditLimits::max_statement_bytes`] may ask for.
pub const MIN_STATEMENT_BYTES: usize = 64;

/// How often at most one caller's suppressed refusals are summed up in a record.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// Subjects' buckets kept before idle ones are dropped.
const MAX_BUCKETS: usize = 1024;

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
        let checkpoint_every = checkpoint_every.max(1);
        // Only a regular file holds a chain to continue (a device such as /dev/null does not).
        let found = if path.metadata().is_ok_and(|m| m.is_file() && m.len() > 0) {
            let summary = verify(path, Some(&key.verifying_key()))?;
            // A node signs at least every `checkpoint_every` records, so a longer unsigned
            // part was not written by it as it is (checkpoints were removed): signing it now
            // would vouch for it.
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
            Some(summary)
        } else {
            None
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

    /// Adds the statement to `record`: `statement` (its literals replaced by `?`, at most
    /// `max_statement_bytes`), `statement_sha256` and `statement_bytes` (of the whole
    /// statement), and `statement_truncated: true` when the text is a prefix.
    pub fn insert_statement(&self, record: &mut Map<String, Value>, sql: &str) {
        let stripped = strip_literals(sql, self.max_statement_bytes);
        record.insert("statement".into(), json!(stripped.text));
        record.insert("statement_sha256".into(), json!(statement_hash(sql)));
        record.insert("statement_bytes".into(), json!(sql.len()));
        if stripped.truncated {
            record.insert("statement_truncated".into(), json!(true));
        }
    }

    /// Appends a refusal record, or, past the caller's rate limit, only counts it: the count
    /// is written as a `refusals_suppressed` record at most once a second per caller, with the
    /// next record of any kind, and at the latest with the next checkpoint the node writes when
    /// it stops. Returns the record's sequence number, `None` when it was counted.
    pub fn append_refusal(
        &self,
        record: Map<String, Value>,
        caller: Caller<'_>,
    ) -> Result<Option<u64>, AuditError> {
        let mut chain = self.state.lock();
        let now = Instant::now();
        let outcome = record
            .get("outcome")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        let admitted = chain.refusals.admit(caller, now, &outcome);
        for summary in chain.refusals.take_due(now) {
            self.append_locked(&mut chain, summary)?;
        }
        if !admitted {
            return Ok(None);
        }
        self.append_locked(&mut chain, record).map(Some)
    }

    /// Appends one record (its `seq`, `prev` and `hash` are added here) and syncs it to disk;
    /// every `checkpoint_every` records a signed checkpoint follows.
    pub fn append(&self, record: Map<String, Value>) -> Result<u64, AuditError> {
        let mut chain = self.state.lock();
        for summary in chain.refusals.take_due(Instant::now()) {
            self.append_locked(&mut chain, summary)?;
        }
        self.append_locked(&mut chain, record)
    }

    fn append_locked(
        &self,
        chain: &mut Chain,
        mut record: Map<String, Value>,
    ) -> Result<u64, AuditError> {
        let seq = self.write(chain, &mut record)?;
        chain.since_checkpoint += 1;
        if chain.since_checkpoint >= self.checkpoint_every {
            self.checkpoint_locked(chain)?;
        }
        Ok(seq)
    }

    /// Writes the counts of suppressed refusals, then a signed checkpoint (the node does this
    /// when it stops).
    pub fn checkpoint(&self) -> Result<(), AuditError> {
        let mut chain = self.state.lock();
        for summary in chain.refusals.take_all() {
            self.append_locked(&mut chain, summary)?;
        }
        if chain.since_checkpoint == 0 && chain.seq > 0 {
            return Ok(());
        }
        self.checkpoint_locked(&mut chain)
    }

    fn checkpoint_locked(&self, chain: &mut Chain) -> Result<(), AuditError> {
        let covered = hex::encode(chain.prev);
        let signature = self
            .key
            .sign(checkpoint_message(chain.seq, &covered, Some(self.checkpoint_every)).as_bytes());
        let mut record = Map::new();
        record.insert("kind".into(), json!("checkpoint"));
        record.insert("time".into(), json!(now_text()));
        record.insert("covers".into(), json!(chain.seq));
        record.insert("every".into(), json!(self.checkpoint_every));
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

/// The refusal rate limits: a token bucket per caller (anonymous callers share one), and the
/// refusals counted past it.
#[derive(Debug)]
struct RefusalLimiter {
    limits: AuditLimits,
    anonymous: Bucket,
    subjects: HashMap<String, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// Refusals counted since the last summary, by outcome.
    suppressed: HashMap<String, u64>,
    /// When the first of them happened.
    first_suppressed: Option<String>,
    /// When this caller's suppressed refusals were last summed up.
    last_summary: Instant,
}

impl Bucket {
    fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            tokens: f64::from(limit.burst),
            updated: now,
            suppressed: HashMap::new(),
            first_suppressed: None,
            last_summary: now,
        }
    }

    fn refill(&mut self, limit: RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * f64::from(limit.per_second)).min(f64::from(limit.burst));
        self.updated = now;
    }

    /// The `refusals_suppressed` record for `subject`, resetting the count; `None` when
    /// nothing was suppressed.
    fn summary(&mut self, subject: &str, now: Instant) -> Option<Map<String, Value>> {
        if self.suppressed.is_empty() {
            return None;
        }
        let mut outcomes: Vec<(String, u64)> = self.suppressed.drain().collect();
        outcomes.sort();
        let count: u64 = outcomes.iter().map(|(_, n)| n).sum();
        let mut record = Map::new();
        record.insert("kind".into(), json!("refusals_suppressed"));
        record.insert("time".into(), json!(now_text()));
        record.insert("subject".into(), json!(subject));
        record.insert("count".into(), json!(count));
        record.insert(
            "outcomes".into(),
            Value::Object(outcomes.into_iter().map(|(k, n)| (k, json!(n))).collect()),
        );
        record.insert("first".into(), json!(self.first_suppressed.take()));
        self.last_summary = now;
        Some(record)
    }
}

/// The subject anonymous callers are recorded under.
const ANONYMOUS: &str = "anonymous";

impl RefusalLimiter {
    fn new(limits: AuditLimits) -> Self {
        let now = Instant::now();
        Self {
            limits,
            anonymous: Bucket::new(limits.anonymous_refusals, now),
            subjects: HashMap::new(),
        }
    }

    /// Takes a token from the caller's bucket (`true`: write the record), or counts the
    /// refusal with its `outcome`.
    fn admit(&mut self, caller: Caller<'_>, now: Instant, outcome: &str) -> bool {
        let (bucket, limit) = match caller {
            Caller::Anonymous => (&mut self.anonymous, self.limits.anonymous_refusals),
            Caller::Subject(subject) => {
                let limit = self.limits.subject_refusals;
                if !self.subjects.contains_key(subject) {
                    if self.subjects.len() >= MAX_BUCKETS {
                        // Drop the buckets of callers who are back to a full budget and
                        // have nothing counted: they would start afresh the same way.
                        self.subjects.retain(|_, b| {
                            b.refill(limit, now);
                            !b.suppressed.is_empty() || b.tokens < f64::from(limit.burst)
                        });
                    }
                    self.subjects
                        .insert(subject.to_string(), Bucket::new(limit, now));
                }
                (
                    self.subjects.get_mut(subject).expect("inserted above"),
                    limit,
                )
            }
        };
        bucket.refill(limit, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return true;
        }
        if bucket.suppressed.is_empty() {
            bucket.first_suppressed = Some(now_text());
        }
        *bucket.suppressed.entry(outcome.to_string()).or_default() += 1;
        false
    }

    /// The summaries due at `now`: of each caller with refusals counted whose last summary
    /// (or first refusal) is at least a second old.
    fn take_due(&mut self, now: Instant) -> Vec<Map<String, Value>> {
        let due = |bucket: &Bucket| {
            !bucket.suppressed.is_empty()
                && now.saturating_duration_since(bucket.last_summary) >= SUMMARY_INTERVAL
        };
        let mut out = Vec::new();
        if due(&self.anonymous) {
            out.extend(self.anonymous.summary(ANONYMOUS, now));
        }
        for (subject, bucket) in &mut self.subjects {
            if due(bucket) {
                out.extend(bucket.summary(subject, now));
            }
        }
        out
    }

    /// Every summary still pending (before a checkpoint).
    fn take_all(&mut self) -> Vec<Map<String, Value>> {
        let now = Instant::now();
        let mut out: Vec<_> = self.anonymous.summary(ANONYMOUS, now).into_iter().collect();
        for (subject, bucket) in &mut self.subjects {
            out.extend(bucket.summary(subject, now));
        }
        out
    }
}

fn head_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".head");
    PathBuf::from(name)
}

/// What a checkpoint signs: the record it covers, that record's hash, and (since checkpoints
/// promise their interval) the most records before the next checkpoint.
fn checkpoint_message(seq: u64, hash: &str, every: Option<u64>) -> String {
    match every {
        Some(every) => format!("polder-audit-checkpoint:{seq}:{hash}:every={every}"),
        None => format!("polder-audit-checkpoint:{seq}:{hash}"),
    }
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

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::VerifyingKey;

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

    fn strip(sql: &str) -> String {
        strip_literals(sql, 4096).text
    }

    fn public_key(key_path: &Path) -> VerifyingKey {
        let pem = std::fs::read_to_string(key_path).unwrap();
        SigningKey::from_pkcs8_pem(&pem).unwrap().verifying_key()
    }

    fn lines_of(path: &Path) -> Vec<Map<String, Value>> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn strips_literals() {
        assert_eq!(
            strip("SELECT * FROM t WHERE name = 'Jan de Vries' AND  age > 42 -- bsn 123"),
            "SELECT * FROM t WHERE name = ? AND age > ?"
        );
        let stripped = strip("SELECT 'secret', 1234, x'ff' /* 5678 */");
        assert!(
            !stripped.contains("secret") && !stripped.contains("1234"),
            "{stripped}"
        );
        assert!(!stripped.contains("5678"), "{stripped}");
        // A statement that does not tokenize keeps its whole tokens before the fault only.
        let bad = strip("SELECT a FROM t WHERE b = 'unterminated secret");
        assert_eq!(
            bad,
            "SELECT a FROM t WHERE b = <does not tokenize from here>"
        );
    }

    #[test]
    fn a_statement_is_kept_as_a_bounded_prefix_without_literals() {
        // Wherever the prefix is cut, no part of a literal gets into the text.
        let sql = "SELECT name FROM t WHERE code = 'SECRETSECRET' AND n = 98765 /* COMMENTED */ AND m = $$DOLLARSECRET$$";
        for max in 1..sql.len() + 8 {
            let stripped = strip_literals(sql, max);
            assert!(stripped.text.len() <= max, "{max}: {stripped:?}");
            for secret in ["SECRET", "98765", "987", "COMMENTED", "DOLLAR"] {
                assert!(!stripped.text.contains(secret), "{max}: {stripped:?}");
            }
        }
        // Multi-byte characters are cut at a boundary.
        let stripped = strip_literals("SELECT ééééééé FROM t", 10);
        assert_eq!(stripped.text, "SELECT é");
        assert!(stripped.truncated);
        // A short statement is whole.
        let whole = strip_literals("SELECT 1", 4096);
        assert_eq!((whole.text.as_str(), whole.truncated), ("SELECT ?", false));
    }

    #[test]
    fn a_ten_megabyte_refusal_adds_a_few_kilobytes() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = key(dir.path());
        let log_path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&log_path, &key_path, 1000).unwrap();
        let mut sql = String::from("SELECT * FROM t WHERE x IN (");
        while sql.len() < 10 * 1024 * 1024 {
            sql.push_str("'PERSONAL VALUE é', 123456, ");
        }
        sql.push_str("0)");
        let before = std::fs::metadata(&log_path).unwrap().len();
        for _ in 0..3 {
            let mut record = record(1);
            log.insert_statement(&mut record, &sql);
            log.append_refusal(record, Caller::Anonymous).unwrap();
        }
        let grown = std::fs::metadata(&log_path).unwrap().len() - before;
        assert!(grown < 3 * 5 * 1024, "3 refusals added {grown} bytes");
        let written = lines_of(&log_path);
        let last = written.last().unwrap();
        assert_eq!(last["statement_sha256"], json!(statement_hash(&sql)));
        assert_eq!(last["statement_bytes"], json!(sql.len()));
        assert_eq!(last["statement_truncated"], json!(true));
        let text = last["statement"].as_str().unwrap();
        assert!(
            text.starts_with("SELECT * FROM t WHERE x IN (?, ?, ?"),
            "{text}"
        );
        assert!(text.len() <= 4096 && !text.contains("PERSONAL") && !text.contains("123"));
        drop(log);
        let verified = verify(&log_path, Some(&public_key(&key_path))).unwrap();
        assert_eq!(verified.unproven(), None);
    }

    #[test]
    fn anonymous_refusals_past_the_rate_limit_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = key(dir.path());
        let log_path = dir.path().join("audit.jsonl");
        let limits = AuditLimits::default();
        let started = Instant::now();
        {
            let log = AuditLog::open(&log_path, &key_path, 1000)
                .unwrap()
                .with_limits(limits);
            for n in 0..10_000 {
                let mut record = record(n);
                record.insert("outcome".into(), json!("invalid_request"));
                log.append_refusal(record, Caller::Anonymous).unwrap();
            }
            // An authenticated caller has a budget of its own.
            let mut own = record(0);
            own.insert("subject".into(), json!("alice"));
            own.insert("outcome".into(), json!("forbidden"));
            assert!(
                log.append_refusal(own, Caller::Subject("alice"))
                    .unwrap()
                    .is_some()
            );
        } // dropped: the pending count and a final checkpoint
        let elapsed = started.elapsed().as_secs_f64();
        let written = lines_of(&log_path);
        let kind = |r: &Map<String, Value>| r["kind"].as_str().unwrap().to_string();
        let refusals = written
            .iter()
            .filter(|r| kind(r) == "query" && r["subject"] != json!("alice"))
            .count() as f64;
        assert!(written.iter().any(|r| r["subject"] == json!("alice")));
        let limit = limits.anonymous_refusals;
        let most = f64::from(limit.burst) + f64::from(limit.per_second) * elapsed + 1.0;
        assert!(
            refusals <= most,
            "{refusals} records in {elapsed:.2}s; at most {most}"
        );
        let summaries: Vec<_> = written
            .iter()
            .filter(|r| kind(r) == "refusals_suppressed")
            .collect();
        assert!(
            summaries.len() as f64 <= elapsed + 2.0,
            "{}",
            summaries.len()
        );
        let counted: u64 = summaries.iter().map(|r| r["count"].as_u64().unwrap()).sum();
        assert_eq!(refusals as u64 + counted, 10_000);
        assert!(summaries.iter().all(|r| r["subject"] == json!("anonymous")
            && r["outcomes"]["invalid_request"] == r["count"]));
        let verified = verify(&log_path, Some(&public_key(&key_path))).unwrap();
        assert_eq!(verified.unproven(), None);
        assert_eq!(verified.unsigned_tail, 0);
    }

    #[test]
    fn buckets_refill_and_summaries_come_at_most_once_a_second() {
        let limits = AuditLimits {
            max_statement_bytes: 4096,
            anonymous_refusals: RateLimit {
                per_second: 2,
                burst: 3,
            },
            subject_refusals: RateLimit {
                per_second: 1,
                burst: 1,
            },
        };
        let mut limiter = RefusalLimiter::new(limits);
        let t0 = Instant::now();
        let admitted = (0..10)
            .filter(|_| limiter.admit(Caller::Anonymous, t0, "forbidden"))
            .count();
        assert_eq!(admitted, 3);
        // Not yet a second since the bucket began: nothing due.
        assert!(limiter.take_due(t0).is_empty());
        let half = t0 + Duration::from_millis(500);
        assert!(limiter.admit(Caller::Anonymous, half, "forbidden"));
        assert!(!limiter.admit(Caller::Anonymous, half, "invalid_request"));
        assert!(limiter.take_due(half).is_empty());
        let second = t0 + Duration::from_millis(1000);
        let due = limiter.take_due(second);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0]["count"], json!(8));
        assert_eq!(
            due[0]["outcomes"],
            json!({"forbidden": 7, "invalid_request": 1})
        );
        // The next is due a second later.
        let more = t0 + Duration::from_millis(1100);
        assert!(limiter.admit(Caller::Anonymous, more, "forbidden"));
        assert!(!limiter.admit(Caller::Anonymous, more, "forbidden"));
        assert!(
            limiter
                .take_due(more + Duration::from_millis(800))
                .is_empty()
        );
        let later = t0 + Duration::from_millis(2000);
        assert_eq!(limiter.take_due(later)[0]["count"], json!(1));
        // Subjects are counted apart, and each has its own budget.
        assert!(limiter.admit(Caller::Subject("eve"), t0, "forbidden"));
        assert!(!limiter.admit(Caller::Subject("eve"), t0, "forbidden"));
        assert!(limiter.admit(Caller::Subject("bob"), t0, "forbidden"));
        let pending = limiter.take_all();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0]["subject"], json!("eve"));
    }

    /// What an attacker with write access can do without the key: drop the checkpoints (and
    /// the head file) and recompute the chain.
    fn rehash_without_checkpoints(path: &Path) {
        let mut prev = GENESIS;
        let mut out = String::new();
        let kept = lines_of(path)
            .into_iter()
            .filter(|r| r["kind"] != json!("checkpoint"));
        for (n, mut record) in kept.enumerate() {
            record.remove("hash");
            record.insert("seq".into(), json!(n as u64 + 1));
            record.insert("prev".into(), json!(hex::encode(prev)));
            let hash = record_hash(&prev, &record);
            record.insert("hash".into(), json!(hex::encode(hash)));
            out.push_str(&serde_json::to_string(&record).unwrap());
            out.push('\n');
            prev = hash;
        }
        std::fs::write(path, out).unwrap();
        let _ = std::fs::remove_file(head_path(path));
    }

    #[test]
    fn a_log_without_a_signed_checkpoint_is_not_proven() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = key(dir.path());
        let public = public_key(&key_path);
        let log_path = dir.path().join("audit.jsonl");
        {
            let log = AuditLog::open(&log_path, &key_path, 10).unwrap();
            for n in 0..26 {
                log.append(record(n)).unwrap();
            }
            // While the node runs, records after the last checkpoint are expected.
            let running = verify(&log_path, Some(&public)).unwrap();
            assert_eq!(
                (running.unsigned_tail, running.checkpoint_every),
                (6, Some(10))
            );
            assert_eq!(running.unproven(), None);
        }
        let normal = verify(&log_path, Some(&public)).unwrap();
        assert_eq!(normal.unproven(), None);
        assert_eq!((normal.checkpoints, normal.unsigned_tail), (3, 0));

        rehash_without_checkpoints(&log_path);
        let forged = verify(&log_path, Some(&public)).unwrap();
        assert_eq!((forged.records, forged.checkpoints), (26, 0));
        let why = forged.unproven().expect("not proven");
        assert!(why.contains("no signed checkpoint"), "{why}");
        // Nor does the node continue (and so sign) it.
        let err = AuditLog::open(&log_path, &key_path, 10).unwrap_err();
        assert!(err.to_string().contains("not continued"), "{err}");

        // Records past what the last checkpoint promised are not proven either.
        let tail_path = dir.path().join("tail.jsonl");
        {
            let log = AuditLog::open(&tail_path, &key_path, 5).unwrap();
            for n in 0..5 {
                log.append(record(n)).unwrap();
            }
        }
        let signed = lines_of(&tail_path);
        let mut prev: [u8; 32] = hex::decode(signed.last().unwrap()["hash"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let mut text = std::fs::read_to_string(&tail_path).unwrap();
        for n in 0..6u64 {
            let mut forged = record(100 + n);
            forged.insert("seq".into(), json!(signed.len() as u64 + n + 1));
            forged.insert("prev".into(), json!(hex::encode(prev)));
            prev = record_hash(&prev, &forged);
            forged.insert("hash".into(), json!(hex::encode(prev)));
            text.push_str(&serde_json::to_string(&forged).unwrap());
            text.push('\n');
        }
        std::fs::write(&tail_path, text).unwrap();
        let long_tail = verify(&tail_path, Some(&public)).unwrap();
        assert_eq!(
            (long_tail.unsigned_tail, long_tail.checkpoint_every),
            (6, Some(5))
        );
        let why = long_tail.unproven().expect("not proven");
        assert!(why.contains("more than the 5"), "{why}");
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
        // (a checkpoint promising the new interval, the record, a final checkpoint)
        assert_eq!(verify(&log_path, Some(&public)).unwrap().records, 13);

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
