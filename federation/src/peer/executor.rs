//! The peer as datafusion-federation's [`SQLExecutor`]: where the federation rules send the
//! remote parts of a plan, as SQL, and get back batches of the schema the plan expects.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{PhysicalExpr, SendableRecordBatchStream};
use datafusion::sql::unparser::dialect::Dialect;
use datafusion_federation::sql::SQLExecutor;
use futures::stream;
use futures::{StreamExt, TryStreamExt};
use tracing::{Instrument, debug, info_span, warn};

use super::Peer;
use super::conform::{arrow_bytes, conform};
use super::request::Batches;
use crate::dialect::PeerDialect;
use crate::error::PeerError;
use crate::runtime_filter;
use crate::telemetry::PeerMeter;

#[async_trait]
impl SQLExecutor for Peer {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn compute_context(&self) -> Option<String> {
        // Parts of a plan federate together only when they go to the same peer.
        Some(format!("{}@{}", self.config.name, self.config.url))
    }

    fn dialect(&self) -> Arc<dyn Dialect> {
        // Peers speak DataFusion's SQL (Polder nodes, roapi); other engines get their own
        // dialect when they are supported.
        Arc::new(PeerDialect)
    }

    fn execute(
        &self,
        query: &str,
        schema: SchemaRef,
        filters: &[Arc<dyn PhysicalExpr>],
    ) -> Result<SendableRecordBatchStream> {
        let peer = self.clone();
        let sql = query.to_string();
        let expected = Arc::clone(&schema);
        let filters = filters.to_vec();
        // The remote part's span: a child of the query's, and the parent of the peer's own
        // spans (its trace context travels in the request's metadata). It ends with the answer.
        let span = info_span!(
            "peer_query",
            otel.kind = "client",
            peer = %self.config.name,
            sql_bytes = sql.len(),
            rows = tracing::field::Empty,
            bytes = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let metered = PeerMeter::new(&self.config.name, span.clone());
        let part_span = span.clone();
        let batches = stream::once(
            async move {
                peer.traffic.queries.fetch_add(1, Ordering::Relaxed);
                let batches = peer.send_part(sql, &expected, &filters).await?;
                Ok::<_, PeerError>(batches.map(move |batch| peer.receive(batch?, &expected)))
            }
            .instrument(part_span),
        )
        .try_flatten();
        let batches = metered
            .watch(batches.boxed())
            .map_err(DataFusionError::from);
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }

    async fn statistics(&self, plan: &LogicalPlan) -> Result<Statistics> {
        let unknown = Statistics::new_unknown(plan.schema().as_arrow());
        Ok(match self.estimate_rows(plan) {
            Some(rows) => unknown.with_num_rows(Precision::Inexact(rows)),
            None => unknown,
        })
    }

    async fn table_names(&self) -> Result<Vec<String>> {
        let discovered = self.discover().await?;
        Ok(discovered
            .schemas
            .iter()
            .flat_map(|(schema, tables)| tables.keys().map(move |t| format!("{schema}.{t}")))
            .collect())
    }

    async fn get_table_schema(&self, table_name: &str) -> Result<SchemaRef> {
        let discovered = self.discover().await?;
        let (schema, table) = table_name.split_once('.').unwrap_or(("public", table_name));
        discovered
            .schemas
            .get(schema)
            .and_then(|tables| tables.get(table))
            .cloned()
            .ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "table '{table_name}' not found on peer '{}'",
                    self.config.name
                ))
            })
    }
}

impl Peer {
    /// Sends a remote part: narrowed by the runtime filters of the joins above it, when they
    /// have keys by now (a join has read its build side when the plan first asks for rows).
    async fn send_part(
        &self,
        sql: String,
        expected: &SchemaRef,
        filters: &[Arc<dyn PhysicalExpr>],
    ) -> Result<Batches, PeerError> {
        let narrowed = if self.options.pushdown {
            let max_bytes = self.options.runtime_filter_max_bytes;
            runtime_filter::narrow(&sql, expected, filters, &PeerDialect, max_bytes)
        } else {
            None
        };
        let Some(narrowed) = narrowed else {
            debug!("sending the remote part");
            return self.query(sql).await;
        };
        debug!(sql = %narrowed, "sending the remote part, narrowed");
        match self.query(narrowed).await {
            // A peer that refuses the narrowed form (too long for its limit, no column aliases
            // in its SQL, a policy that allows only the form as planned) gets the part as
            // planned; its refusal of that, if any, is the error the query reports.
            Err(PeerError::Remote { code, message, .. }) => {
                warn!(?code, %message, "the peer refused the narrowed remote part");
                self.query(sql).await
            }
            other => other,
        }
    }

    /// Counts a batch of an answer and makes it the batch the plan expects.
    fn receive(
        &self,
        batch: datafusion::arrow::array::RecordBatch,
        expected: &SchemaRef,
    ) -> Result<datafusion::arrow::array::RecordBatch, PeerError> {
        let traffic = &self.traffic;
        traffic
            .rows
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        traffic
            .bytes
            .fetch_add(arrow_bytes(&batch), Ordering::Relaxed);
        conform(&self.config.name, batch, expected)
    }
}
