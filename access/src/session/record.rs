//! The audit records of one request: who, why, which datasets under which grant, the
//! statement's shape and hash, the outcome and the rows sent.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;
use polder_flight_sql::{Error, QueryAudit};
use tracing::error;

use crate::audit::record::{QueryEnd, QueryRecord, Record, now_text};
use crate::audit::{AuditLog, Caller};
use crate::auth::Identity;

use super::view::View;

/// Writes one request's query to the audit log.
#[derive(Debug)]
pub(super) struct AuditRecorder {
    log: Arc<AuditLog>,
    view: Arc<View>,
    /// The sequence number of the query's start record.
    query: Mutex<Option<u64>>,
}

impl AuditRecorder {
    pub(super) fn new(log: Arc<AuditLog>, view: Arc<View>) -> Self {
        Self {
            log,
            view,
            query: Mutex::default(),
        }
    }

    /// The record of the query `sql` as the view decided it so far.
    fn query_record(&self, sql: &str, outcome: Option<&str>) -> QueryRecord {
        let (subject, purpose) = match &self.view.identity {
            Identity::Anonymous => ("anonymous".to_string(), None),
            Identity::User { claims, .. } => (claims.sub.clone(), claims.purpose.clone()),
        };
        QueryRecord {
            time: now_text(),
            subject,
            purpose,
            datasets: self.view.decisions.lock().clone(),
            statement: self.log.statement(sql),
            outcome: outcome.map(str::to_string),
        }
    }

    fn caller(&self) -> Caller<'_> {
        match &self.view.identity {
            Identity::Anonymous => Caller::Anonymous,
            Identity::User { claims, .. } => Caller::Subject(&claims.sub),
        }
    }
}

impl QueryAudit for AuditRecorder {
    fn refused(&self, sql: &str, error: &Error) {
        let record = self.query_record(sql, Some(error.code()));
        if let Err(err) = self.log.append_refusal(record, self.caller()) {
            error!(error = %err, "cannot write to the audit log");
        }
    }

    fn started(&self, sql: &str) -> polder_flight_sql::Result<()> {
        let record = Record::Query(self.query_record(sql, None));
        match self.log.append(&record) {
            Ok(seq) => {
                *self.query.lock() = Some(seq);
                Ok(())
            }
            Err(err) => {
                error!(error = %err, "cannot write to the audit log");
                if self.view.touches_personal_data() {
                    Err(Error::Upstream(
                        "the audit log cannot be written: queries on personal data are refused until it can".into(),
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    fn finished(&self, rows: u64, failure: Option<&Error>) {
        let suppressed = self.view.suppressed.load(Ordering::Relaxed);
        let record = Record::QueryEnd(QueryEnd {
            time: now_text(),
            query: *self.query.lock(),
            outcome: failure.map_or("ok", Error::code).to_string(),
            rows_out: rows,
            groups_suppressed: self.view.aggregates().then_some(suppressed),
        });
        if let Err(err) = self.log.append(&record) {
            error!(error = %err, "cannot write to the audit log");
        }
    }
}
