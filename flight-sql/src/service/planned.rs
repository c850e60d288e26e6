//! Plans made for `GetFlightInfo`, kept for the `DoGet` that follows.
//!
//! A Flight SQL client asks for a statement's `FlightInfo`, then reads its ticket with `DoGet`:
//! both need the statement's plan. Tickets are self-contained (any replica can serve a `DoGet`,
//! spec UDN-FSQL-6), so `DoGet` can always plan again; when it reaches the replica that planned
//! for `GetFlightInfo` moments before, it takes that plan instead. The key is the ticket and the
//! caller's credentials, so a plan made in one caller's session (with that caller's policy
//! view and audit) never serves another; a plan is used once, and only while fresh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use datafusion::logical_expr::LogicalPlan;
use lru::LruCache;
use parking_lot::Mutex;

use crate::query::QueryEngine;

/// How long a plan waits for its `DoGet`: a client reads its ticket at once.
const FRESH: Duration = Duration::from_secs(10);
/// Plans kept at most, and the most statement text they may hold between them (a plan's size
/// grows with its text: a long key list makes a large plan).
const MAX_PLANS: usize = 256;
const MAX_TEXT_BYTES: usize = 4 * 1024 * 1024;

/// Who asked for a ticket: the ticket and the request's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct PlanKey {
    ticket: Bytes,
    credentials: Bytes,
}

impl PlanKey {
    /// The key of `ticket` asked for with `metadata`'s credentials (`authorization`).
    pub(super) fn new(ticket: Bytes, metadata: &tonic::metadata::MetadataMap) -> Self {
        let credentials = metadata
            .get_all("authorization")
            .iter()
            .flat_map(|value| value.as_bytes().iter().copied().chain([b'\n']))
            .collect::<Vec<u8>>();
        Self {
            ticket,
            credentials: credentials.into(),
        }
    }
}

struct Planned {
    at: Instant,
    engine: QueryEngine,
    plan: LogicalPlan,
    text_bytes: usize,
}

/// The plans waiting for their `DoGet`.
#[derive(Clone)]
pub(super) struct PlannedTickets {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    plans: LruCache<PlanKey, Planned>,
    text_bytes: usize,
}

impl std::fmt::Debug for PlannedTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("PlannedTickets")
            .field("plans", &inner.plans.len())
            .field("text_bytes", &inner.text_bytes)
            .finish()
    }
}

impl Default for PlannedTickets {
    fn default() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                plans: LruCache::unbounded(),
                text_bytes: 0,
            })),
        }
    }
}

impl PlannedTickets {
    /// Keeps `plan` of a statement of `text_bytes`, planned by `engine` (the request's
    /// session), for the `DoGet` of `key`.
    pub(super) fn keep(
        &self,
        key: PlanKey,
        engine: &QueryEngine,
        plan: &LogicalPlan,
        text_bytes: usize,
    ) {
        if text_bytes > MAX_TEXT_BYTES / 4 {
            return;
        }
        let mut inner = self.inner.lock();
        let planned = Planned {
            at: Instant::now(),
            engine: engine.clone(),
            plan: plan.clone(),
            text_bytes,
        };
        inner.text_bytes += text_bytes;
        if let Some((_, old)) = inner.plans.push(key, planned) {
            inner.text_bytes -= old.text_bytes;
        }
        while inner.plans.len() > MAX_PLANS || inner.text_bytes > MAX_TEXT_BYTES {
            match inner.plans.pop_lru() {
                Some((_, old)) => inner.text_bytes -= old.text_bytes,
                None => break,
            }
        }
    }

    /// The engine and plan kept for `key`, if still fresh; each is taken once.
    pub(super) fn take(&self, key: &PlanKey) -> Option<(QueryEngine, LogicalPlan)> {
        let mut inner = self.inner.lock();
        let planned = inner.plans.pop(key)?;
        inner.text_bytes -= planned.text_bytes;
        (planned.at.elapsed() < FRESH).then_some((planned.engine, planned.plan))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QueryLimits;
    use datafusion::prelude::SessionContext;

    fn key(ticket: &'static str, token: Option<&str>) -> PlanKey {
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Some(token) = token {
            metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        PlanKey::new(Bytes::from_static(ticket.as_bytes()), &metadata)
    }

    #[tokio::test]
    async fn a_plan_serves_only_its_own_caller_and_only_once() {
        let engine = QueryEngine::new(SessionContext::new(), QueryLimits::default());
        let plan = engine.plan("SELECT 1").await.unwrap();
        let tickets = PlannedTickets::default();
        tickets.keep(key("t", Some("alice")), &engine, &plan, 8);
        assert!(tickets.take(&key("t", Some("bob"))).is_none());
        assert!(tickets.take(&key("t", None)).is_none());
        assert!(tickets.take(&key("u", Some("alice"))).is_none());
        assert!(tickets.take(&key("t", Some("alice"))).is_some());
        assert!(tickets.take(&key("t", Some("alice"))).is_none());
    }

    #[tokio::test]
    async fn keeps_a_bounded_number_of_plans() {
        let engine = QueryEngine::new(SessionContext::new(), QueryLimits::default());
        let plan = engine.plan("SELECT 1").await.unwrap();
        let tickets = PlannedTickets::default();
        let names: Vec<&'static str> = (0..MAX_PLANS + 10)
            .map(|i| &*Box::leak(format!("t{i}").into_boxed_str()))
            .collect();
        for name in &names {
            tickets.keep(key(name, None), &engine, &plan, 8);
        }
        assert_eq!(tickets.inner.lock().plans.len(), MAX_PLANS);
        // The oldest went first.
        assert!(tickets.take(&key(names[0], None)).is_none());
        assert!(tickets.take(&key(names[MAX_PLANS + 9], None)).is_some());
        // Text beyond the bound pushes plans out too.
        for name in &names[..8] {
            tickets.keep(key(name, None), &engine, &plan, MAX_TEXT_BYTES / 4);
        }
        assert!(tickets.inner.lock().text_bytes <= MAX_TEXT_BYTES);
    }
}
