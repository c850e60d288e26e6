//! The refusal rate limit: a token bucket per caller (anonymous callers share one), and the
//! refusals counted past it, summed up in [`RefusalsSuppressed`] records.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::record::{RefusalsSuppressed, now_text};
use super::{AuditLimits, Caller, RateLimit};

/// How often at most one caller's suppressed refusals are summed up in a record.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// Subjects' buckets kept before idle ones are dropped.
const MAX_BUCKETS: usize = 1024;

/// The refusal rate limits: a token bucket per caller (anonymous callers share one), and the
/// refusals counted past it.
#[derive(Debug)]
pub(super) struct RefusalLimiter {
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
    fn summary(&mut self, subject: &str, now: Instant) -> Option<RefusalsSuppressed> {
        if self.suppressed.is_empty() {
            return None;
        }
        let outcomes: BTreeMap<String, u64> = self.suppressed.drain().collect();
        self.last_summary = now;
        Some(RefusalsSuppressed {
            time: now_text(),
            subject: subject.to_string(),
            count: outcomes.values().sum(),
            outcomes,
            first: self.first_suppressed.take(),
        })
    }
}

/// The subject anonymous callers are recorded under.
const ANONYMOUS: &str = "anonymous";

impl RefusalLimiter {
    pub(super) fn new(limits: AuditLimits) -> Self {
        let now = Instant::now();
        Self {
            limits,
            anonymous: Bucket::new(limits.anonymous_refusals, now),
            subjects: HashMap::new(),
        }
    }

    /// Takes a token from the caller's bucket (`true`: write the record), or counts the
    /// refusal with its `outcome`.
    pub(super) fn admit(&mut self, caller: Caller<'_>, now: Instant, outcome: &str) -> bool {
        let (bucket, limit) = match caller {
            Caller::Anonymous => (&mut self.anonymous, self.limits.anonymous_refusals),
            Caller::Subject(subject) => {
                let limit = self.limits.subject_refusals;
                (self.subject_bucket(subject, now), limit)
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

    /// The bucket of `subject`, new when it has none; at [`MAX_BUCKETS`], the buckets of
    /// callers who are back to a full budget and have nothing counted are dropped first (they
    /// would start afresh the same way).
    fn subject_bucket(&mut self, subject: &str, now: Instant) -> &mut Bucket {
        let limit = self.limits.subject_refusals;
        if !self.subjects.contains_key(subject) {
            if self.subjects.len() >= MAX_BUCKETS {
                self.subjects.retain(|_, b| {
                    b.refill(limit, now);
                    !b.suppressed.is_empty() || b.tokens < f64::from(limit.burst)
                });
            }
            self.subjects
                .insert(subject.to_string(), Bucket::new(limit, now));
        }
        self.subjects.get_mut(subject).expect("inserted above")
    }

    /// The summaries due at `now`: of each caller with refusals counted whose last summary
    /// (or first refusal) is at least a second old.
    pub(super) fn take_due(&mut self, now: Instant) -> Vec<RefusalsSuppressed> {
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
    pub(super) fn take_all(&mut self) -> Vec<RefusalsSuppressed> {
        let now = Instant::now();
        let mut out: Vec<_> = self.anonymous.summary(ANONYMOUS, now).into_iter().collect();
        for (subject, bucket) in &mut self.subjects {
            out.extend(bucket.summary(subject, now));
        }
        out
    }
}
