//! The peer connector: a Flight SQL server as a source of tables.
//!
//! [`Peer`] is datafusion-federation's [`SQLExecutor`] for one peer. For each remote part of a
//! plan it sends the unparsed SQL as a `CommandStatementQuery`, reads every endpoint of the
//! answer with `DoGet`, and checks each batch against the schema the local plan expects: a
//! column too many or too few, or a type that cannot be cast, is a [`PeerError::SchemaMismatch`],
//! never a silently different answer. Every request, and every next message of a result stream,
//! must arrive within [`FederationOptions::peer_timeout`].

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use arrow_flight::error::FlightError;
use arrow_flight::sql::{CommandGetTables, CommandStatementQuery, ProstMessageExt};
use arrow_flight::{FlightClient, FlightDescriptor, FlightEndpoint, FlightInfo};
use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::{can_cast_types, cast};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{FetchType, JoinType, LogicalPlan};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{PhysicalExpr, SendableRecordBatchStream};
use datafusion::sql::unparser::dialect::Dialect;
use datafusion_federation::sql::SQLExecutor;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::transport::{Channel, Endpoint};
use tracing::{Instrument, debug, info_span, warn};

use crate::config::{FederationOptions, PeerConfig};
use crate::error::PeerError;
use crate::runtime_filter;

/// The share of rows a filter is assumed to keep, as DataFusion assumes for `FilterExec`.
const SELECTIVITY: f64 = 0.2;

/// The location a Flight endpoint names to mean "the connection the FlightInfo came from".
const REUSE_CONNECTION: &str = "arrow-flight-reuse-connection://?";

/// A connection to one peer, cheap to clone.
#[derive(Debug, Clone)]
pub struct Peer {
    config: PeerConfig,
    options: FederationOptions,
    channel: Channel,
    traffic: Arc<Counters>,
    /// Row counts of the peer's tables by (schema, table), for the planner's estimates.
    row_counts: Arc<RwLock<HashMap<(String, String), u64>>>,
}

/// What a peer has sent for queries since the connection was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Remote parts sent to the peer.
    pub queries: u64,
    /// Rows received.
    pub rows: u64,
    /// Arrow bytes received (the values of the decoded batches).
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    queries: AtomicU64,
    rows: AtomicU64,
    bytes: AtomicU64,
}

/// The tables a peer serves, by schema and name, as its `GetTables` listed them.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    /// The peer's catalog they belong to.
    pub catalog: String,
    /// Schema name to table name to Arrow schema.
    pub schemas: BTreeMap<String, BTreeMap<String, SchemaRef>>,
}

impl Peer {
    /// A peer at `config.url`. The connection opens on first use (and reopens after failures),
    /// so a peer that is down now does not stop the caller from starting.
    pub fn new(config: PeerConfig, options: FederationOptions) -> Result<Self, PeerError> {
        config.validate()?;
        let channel = channel_to(&config, &config.url, &options)?;
        Ok(Self {
            config,
            options,
            channel,
            traffic: Arc::default(),
            row_counts: Arc::default(),
        })
    }

    /// Counts the rows of a table on the peer (`SELECT count(*)`), once: the planner uses the
    /// count to estimate the size of remote parts (which side of a join to build), so a count
    /// that ages is still useful. Failures leave the table without an estimate.
    pub async fn count_rows_once(&self, catalog: &str, schema: &str, table: &str) {
        let key = (schema.to_string(), table.to_string());
        if self.row_counts.read().expect("lock").contains_key(&key) {
            return;
        }
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let sql = format!(
            "SELECT count(*) FROM {}.{}.{}",
            quote(catalog),
            quote(schema),
            quote(table)
        );
        let count = async {
            let batches: Vec<RecordBatch> = self.query(sql).await?.try_collect().await?;
            let column = batches
                .first()
                .filter(|b| b.num_rows() == 1 && b.num_columns() == 1)
                .map(|b| cast(b.column(0), &DataType::Int64))
                .transpose()
                .map_err(|e| self.protocol(e.to_string()))?
                .ok_or_else(|| self.protocol("count(*) did not answer one value".into()))?;
            Ok::<_, PeerError>(column.as_primitive::<Int64Type>().value(0).max(0) as u64)
        };
        match count.await {
            Ok(n) => {
                self.row_counts.write().expect("lock").insert(key, n);
            }
            Err(err) => debug!(peer = %self.config.name, table, error = %err, "no row count"),
        }
    }

    /// The estimated rows of a remote part, from the row counts of its tables: a fifth per
    /// filter (DataFusion's default selectivity), at most its limit, a join as its larger side
    /// (a foreign-key join), an aggregate as its input. Parts with other operators, or tables
    /// not counted, get no estimate.
    fn estimate_rows(&self, plan: &LogicalPlan) -> Option<usize> {
        let counts = self.row_counts.read().expect("lock");
        fn walk(plan: &LogicalPlan, counts: &HashMap<(String, String), u64>) -> Option<f64> {
            match plan {
                LogicalPlan::TableScan(scan) => {
                    let key = (
                        scan.table_name.schema()?.to_string(),
                        scan.table_name.table().to_string(),
                    );
                    let mut rows = *counts.get(&key)? as f64;
                    rows *= SELECTIVITY.powi(scan.filters.len() as i32);
                    Some(scan.fetch.map_or(rows, |f| rows.min(f as f64)))
                }
                LogicalPlan::Filter(filter) => Some(walk(&filter.input, counts)? * SELECTIVITY),
                LogicalPlan::Limit(limit) => {
                    let rows = walk(&limit.input, counts)?;
                    Some(match limit.get_fetch_type().ok()? {
                        FetchType::Literal(Some(n)) => rows.min(n as f64),
                        _ => rows,
                    })
                }
                LogicalPlan::Projection(p) => walk(&p.input, counts),
                LogicalPlan::SubqueryAlias(a) => walk(&a.input, counts),
                LogicalPlan::Sort(s) => walk(&s.input, counts),
                // At most the input's rows.
                LogicalPlan::Aggregate(a) => walk(&a.input, counts),
                LogicalPlan::Distinct(d) => walk(d.input(), counts),
                LogicalPlan::Union(u) => u.inputs.iter().map(|i| walk(i, counts)).sum(),
                // A join along a foreign key has the rows of its larger side; semi and anti
                // joins at most those of the side they keep.
                LogicalPlan::Join(join) => {
                    let left = walk(&join.left, counts);
                    let right = walk(&join.right, counts);
                    let rows = match join.join_type {
                        JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => left?,
                        JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => right?,
                        _ => left?.max(right?),
                    };
                    Some(if join.filter.is_some() {
                        rows * SELECTIVITY
                    } else {
                        rows
                    })
                }
                _ => None,
            }
        }
        walk(plan, &counts).map(|rows| rows.ceil() as usize)
    }

    /// What the peer has sent for queries so far.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            queries: self.traffic.queries.load(Ordering::Relaxed),
            rows: self.traffic.rows.load(Ordering::Relaxed),
            bytes: self.traffic.bytes.load(Ordering::Relaxed),
        }
    }

    /// The peer's name, its SQL catalog.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The peer's configuration.
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// The limits in force.
    pub fn options(&self) -> &FederationOptions {
        &self.options
    }

    fn client(&self, channel: Channel) -> FlightClient {
        let inner = arrow_flight::flight_service_client::FlightServiceClient::new(channel)
            .max_decoding_message_size(self.options.max_message_bytes)
            .max_encoding_message_size(self.options.max_message_bytes);
        let mut client = FlightClient::new_from_inner(inner);
        if let Some(token) = &self.options.bearer_token
            && let Err(err) = client.add_header("authorization", &format!("Bearer {}", token.0))
        {
            // Only a token with characters a header cannot carry gets here; the peer then
            // answers Unauthenticated, which names the peer.
            tracing::warn!(peer = %self.config.name, error = %err, "bearer token not sent");
        }
        client
    }

    /// Runs one request under the peer timeout.
    async fn timed<T, F>(&self, fut: F) -> Result<T, PeerError>
    where
        F: Future<Output = Result<T, FlightError>>,
    {
        match tokio::time::timeout(self.options.peer_timeout, fut).await {
            Ok(result) => result.map_err(|e| self.flight_error(e)),
            Err(_) => Err(self.timeout()),
        }
    }

    fn timeout(&self) -> PeerError {
        PeerError::Timeout {
            peer: self.config.name.clone(),
            timeout: self.options.peer_timeout,
        }
    }

    /// Classifies a Flight error: transport failures mean the peer is unavailable, statuses the
    /// peer sent are its own errors, anything else broke the protocol.
    fn flight_error(&self, err: FlightError) -> PeerError {
        let peer = self.config.name.clone();
        match err {
            // A peer that stopped answering HTTP/2 keep-alive pings ran out of time: the same
            // as one that took longer than the peer timeout (DEADLINE_EXCEEDED, UDN-ERR-1).
            FlightError::Tonic(status) if timed_out(status.as_ref()) => self.timeout(),
            FlightError::Tonic(status) => {
                // Statuses made by the transport carry its error as their source; statuses the
                // peer sent do not.
                if std::error::Error::source(status.as_ref()).is_some()
                    || (status.code() == tonic::Code::Unavailable && status.message().is_empty())
                {
                    PeerError::Unavailable {
                        peer,
                        url: self.config.url.clone(),
                        message: transport_message(&status),
                    }
                } else {
                    PeerError::Remote {
                        peer,
                        code: format!("{:?}", status.code()),
                        message: status.message().to_string(),
                    }
                }
            }
            other => PeerError::Protocol {
                peer,
                detail: other.to_string(),
            },
        }
    }

    /// Asks the peer to plan `descriptor` and streams every endpoint of its answer, in order.
    async fn fetch(
        &self,
        descriptor: FlightDescriptor,
    ) -> Result<BoxStream<'static, Result<RecordBatch, PeerError>>, PeerError> {
        let mut client = self.client(self.channel.clone());
        let info: FlightInfo = self.timed(client.get_flight_info(descriptor)).await?;
        let peer = self.clone();
        let batches = stream::iter(info.endpoint)
            .then(move |endpoint| {
                let peer = peer.clone();
                async move { peer.read_endpoint(endpoint).await }
            })
            .try_flatten();
        Ok(batches.boxed())
    }

    async fn read_endpoint(
        &self,
        endpoint: FlightEndpoint,
    ) -> Result<BoxStream<'static, Result<RecordBatch, PeerError>>, PeerError> {
        let ticket = endpoint.ticket.ok_or_else(|| PeerError::Protocol {
            peer: self.config.name.clone(),
            detail: "an endpoint has no ticket".into(),
        })?;
        let channel = match endpoint.location.first() {
            Some(location) if location.uri != REUSE_CONNECTION && !location.uri.is_empty() => {
                channel_to(&self.config, &location.uri, &self.options)?
            }
            _ => self.channel.clone(),
        };
        let mut client = self.client(channel);
        let batches = self.timed(client.do_get(ticket)).await?;
        let peer = self.clone();
        Ok(idle_timeout(batches, self.options.peer_timeout)
            .map(move |item| match item {
                Some(Ok(batch)) => Ok(batch),
                Some(Err(e)) => Err(peer.flight_error(e)),
                None => Err(peer.timeout()),
            })
            .boxed())
    }

    /// The same peer, sending `token` as the bearer token of every request: a coordinator
    /// forwards its caller's token, so that the peer applies its own policy to the caller.
    pub fn with_bearer(&self, token: &str) -> Peer {
        let mut peer = self.clone();
        peer.options.bearer_token = Some(crate::config::BearerToken(token.to_string()));
        peer
    }

    /// The schema of one of the peer's tables as this peer connection may read it: the peer
    /// plans `SELECT *` of it (without running it). `None` when the peer has no such table; a
    /// table the caller may not read fails with the peer's refusal.
    pub async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<SchemaRef>, PeerError> {
        let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
        let command = CommandStatementQuery {
            query: format!(
                "SELECT * FROM {}.{}.{}",
                quote(catalog),
                quote(schema),
                quote(table)
            ),
            transaction_id: None,
        };
        let mut client = self.client(self.channel.clone());
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        match self.timed(client.get_flight_info(descriptor)).await {
            Ok(info) => {
                let schema = info
                    .try_decode_schema()
                    .map_err(|e| self.protocol(format!("schema of {table}: {e}")))?;
                Ok(Some(Arc::new(schema)))
            }
            Err(PeerError::Remote { code, .. }) if code == "NotFound" => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Runs `sql` on the peer and streams its answer.
    pub async fn query(
        &self,
        sql: String,
    ) -> Result<BoxStream<'static, Result<RecordBatch, PeerError>>, PeerError> {
        let command = CommandStatementQuery {
            query: sql,
            transaction_id: None,
        };
        self.fetch(FlightDescriptor::new_cmd(command.as_any().encode_to_vec()))
            .await
    }

    /// Lists the peer's tables with their schemas (Flight SQL `GetTables`), in the catalog its
    /// configuration names, else the catalog named like the peer, else its only catalog.
    pub async fn discover(&self) -> Result<Discovered, PeerError> {
        let command = CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: true,
        };
        let batches: Vec<RecordBatch> = self
            .fetch(FlightDescriptor::new_cmd(command.as_any().encode_to_vec()))
            .await?
            .try_collect()
            .await?;
        let mut catalogs: BTreeMap<String, BTreeMap<String, BTreeMap<String, SchemaRef>>> =
            BTreeMap::new();
        for batch in &batches {
            let text = |name: &str| -> Result<Vec<Option<String>>, PeerError> {
                let column = batch.column_by_name(name).ok_or_else(|| {
                    self.protocol(format!("GetTables answer has no column {name}"))
                })?;
                let column =
                    cast(column, &DataType::Utf8).map_err(|e| self.protocol(e.to_string()))?;
                Ok(column
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(str::to_string))
                    .collect())
            };
            let catalog = text("catalog_name")?;
            let schema = text("db_schema_name")?;
            let table = text("table_name")?;
            let ipc = batch.column_by_name("table_schema").ok_or_else(|| {
                self.protocol("GetTables answer has no table_schema column".into())
            })?;
            let ipc = cast(ipc, &DataType::Binary).map_err(|e| self.protocol(e.to_string()))?;
            let ipc = ipc.as_binary::<i32>();
            for row in 0..batch.num_rows() {
                let schema_name = schema[row].clone().unwrap_or_default();
                if schema_name.eq_ignore_ascii_case("information_schema") {
                    continue;
                }
                let Some(table_name) = table[row].clone() else {
                    continue;
                };
                let arrow_schema = if ipc.is_null(row) {
                    return Err(self.protocol(format!("no schema for table {table_name}")));
                } else {
                    datafusion::arrow::ipc::convert::try_schema_from_ipc_buffer(ipc.value(row))
                        .map_err(|e| self.protocol(format!("schema of {table_name}: {e}")))?
                };
                catalogs
                    .entry(catalog[row].clone().unwrap_or_default())
                    .or_default()
                    .entry(schema_name)
                    .or_default()
                    .insert(table_name, Arc::new(arrow_schema));
            }
        }
        let chosen = match &self.config.catalog {
            Some(name) => name.clone(),
            None if catalogs.contains_key(&self.config.name) => self.config.name.clone(),
            None if catalogs.len() == 1 => catalogs.keys().next().expect("one").clone(),
            None if catalogs.is_empty() => {
                return Ok(Discovered::default());
            }
            None => {
                return Err(PeerError::Config {
                    peer: self.config.name.clone(),
                    detail: format!(
                        "it serves several catalogs ({}); name the one to federate with `catalog`",
                        catalogs.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        };
        let schemas = catalogs.remove(&chosen).ok_or_else(|| PeerError::Config {
            peer: self.config.name.clone(),
            detail: format!("it has no catalog '{chosen}'"),
        })?;
        Ok(Discovered {
            catalog: chosen,
            schemas,
        })
    }

    fn protocol(&self, detail: String) -> PeerError {
        PeerError::Protocol {
            peer: self.config.name.clone(),
            detail,
        }
    }
}

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
        Arc::new(crate::dialect::PeerDialect)
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
        let span = info_span!("peer_query", peer = %self.config.name, sql_bytes = sql.len());
        let batches = stream::once(
            async move {
                peer.traffic.queries.fetch_add(1, Ordering::Relaxed);
                // Started only when the plan first asks for rows: a join has read its build
                // side by then, and its runtime filter narrows what the peer sends.
                let narrowed = if peer.options.pushdown {
                    runtime_filter::narrow(
                        &sql,
                        &expected,
                        &filters,
                        &crate::dialect::PeerDialect,
                        peer.options.runtime_filter_max_bytes,
                    )
                } else {
                    None
                };
                let batches = match narrowed {
                    Some(narrowed) => {
                        debug!(sql = %narrowed, "sending the remote part, narrowed");
                        match peer.query(narrowed).await {
                            Ok(batches) => batches,
                            // A peer that refuses the narrowed form (too long for its limit,
                            // no column aliases in its SQL, a policy that allows only the form
                            // as planned) gets the part as planned; its refusal of that, if
                            // any, is the error the query reports.
                            Err(PeerError::Remote { code, message, .. }) => {
                                warn!(%code, %message, "the peer refused the narrowed remote part");
                                peer.query(sql).await?
                            }
                            Err(err) => return Err(err),
                        }
                    }
                    None => {
                        debug!("sending the remote part");
                        peer.query(sql).await?
                    }
                };
                Ok::<_, PeerError>(batches.map(move |batch| {
                    let batch = batch?;
                    peer.traffic
                        .rows
                        .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                    peer.traffic
                        .bytes
                        .fetch_add(arrow_bytes(&batch), Ordering::Relaxed);
                    conform(&peer, batch, &expected)
                }))
            }
            .instrument(span),
        )
        .try_flatten()
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

/// Makes a batch from a peer the batch the plan expects: the same number of columns, each of
/// the expected type (cast when the peer chose a compatible encoding, e.g. a string view) and
/// named as expected. Anything else is a schema mismatch.
fn conform(
    peer: &Peer,
    batch: RecordBatch,
    expected: &SchemaRef,
) -> Result<RecordBatch, PeerError> {
    let mismatch = |detail: String| PeerError::SchemaMismatch {
        peer: peer.config.name.clone(),
        detail,
    };
    if batch.num_columns() != expected.fields().len() {
        return Err(mismatch(format!(
            "expected {} columns, got {}",
            expected.fields().len(),
            batch.num_columns()
        )));
    }
    if batch.schema().fields() == expected.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(expected.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(Arc::clone(column))
            } else if can_cast_types(column.data_type(), field.data_type()) {
                cast(column, field.data_type())
                    .map_err(|e| mismatch(format!("column {}: {e}", field.name())))
            } else {
                Err(mismatch(format!(
                    "column {} is {}, expected {}",
                    field.name(),
                    column.data_type(),
                    field.data_type()
                )))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::clone(expected), columns, &options)
        .map_err(|e| mismatch(e.to_string()))
}

/// The bytes of a batch's values: decoded Flight batches share their message's buffer, which
/// `get_array_memory_size` would count once per column.
fn arrow_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|column| column.to_data().get_slice_memory_size().unwrap_or(0) as u64)
        .sum()
}

/// Yields `Some(item)` for each item of `inner`, or one `None` (and then ends) when `timeout`
/// passes without the next item.
fn idle_timeout<S, T>(inner: S, timeout: Duration) -> impl Stream<Item = Option<T>> + Send
where
    S: Stream<Item = T> + Send + 'static,
    T: Send,
{
    let inner: Pin<Box<dyn Stream<Item = T> + Send>> = Box::pin(inner);
    stream::unfold(Some(inner), move |state| async move {
        let mut inner = state?;
        match tokio::time::timeout(timeout, inner.next()).await {
            Ok(Some(item)) => Some((Some(item), Some(inner))),
            Ok(None) => None,
            Err(_) => Some((None, None)),
        }
    })
}

/// Whether the transport error under `status` is a timeout (hyper's keep-alive ping timeout
/// among them), found in its chain of sources.
fn timed_out(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            return true;
        }
        source = error.source();
    }
    false
}

/// The URI tonic connects to for a peer URL: `grpc://` and `grpc+tcp://` are plain HTTP/2.
/// The endpoint of a peer URL, and whether it speaks TLS.
pub(crate) fn endpoint_uri(url: &str) -> Result<(String, bool), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL '{url}': {e}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("the URL '{url}' has no host"))?;
    let port = parsed
        .port()
        .ok_or_else(|| format!("the URL '{url}' has no port"))?;
    match parsed.scheme() {
        "grpc" | "grpc+tcp" | "http" => Ok((format!("http://{host}:{port}"), false)),
        "grpc+tls" | "https" => Ok((format!("https://{host}:{port}"), true)),
        other => Err(format!(
            "the URL '{url}' has the scheme '{other}'; peers are reached with grpc:// or grpc+tls:// URLs"
        )),
    }
}

fn channel_to(
    config: &PeerConfig,
    url: &str,
    options: &FederationOptions,
) -> Result<Channel, PeerError> {
    let bad = |detail: String| PeerError::Config {
        peer: config.name.clone(),
        detail,
    };
    let (uri, tls) = endpoint_uri(url).map_err(bad)?;
    let mut endpoint = Endpoint::from_shared(uri).map_err(|e| bad(e.to_string()))?;
    if tls {
        // The system's roots, and the federation's own CA when it has one.
        let mut config = tonic::transport::ClientTlsConfig::new().with_native_roots();
        if let Some(path) = &options.tls_ca {
            let pem = std::fs::read(path).map_err(|e| {
                bad(format!(
                    "cannot read the TLS CA file {}: {e}",
                    path.display()
                ))
            })?;
            config = config.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| bad(format!("TLS: {e}")))?;
    }
    Ok(polder_flight_sql::service::bulk_endpoint(endpoint)
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(options.peer_timeout)
        .connect_lazy())
}

/// The transport's message and the causes under it: "transport error: tcp connect error:
/// Connection refused (os error 111)".
fn transport_message(status: &tonic::Status) -> String {
    let mut message = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        let text = err.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = err.source();
    }
    message
}
