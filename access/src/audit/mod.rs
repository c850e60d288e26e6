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
//!
//! One concern a file: [`record`] the records as they are written, `log.rs` the writer
//! ([`AuditLog`]), `chain.rs` the hash chain it shares with [`verify`] (`verify.rs`),
//! `limiter.rs` the refusal rate limit, `statement.rs` what a record keeps of a statement
//! ([`strip_literals`]).

mod chain;
mod limiter;
mod log;
pub mod record;
mod statement;
mod verify;

#[cfg(test)]
mod tests;

pub use crate::error::AuditError;
pub use log::AuditLog;
pub use record::{DatasetAccess, QueryEnd, QueryRecord, Record, Statement};
pub use statement::{Stripped, statement_hash, strip_literals};
pub use verify::{Verified, verify, verifying_key_from_jwks};

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
