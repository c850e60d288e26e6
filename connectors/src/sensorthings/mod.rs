//! The OGC SensorThings API as a source (`format = "sensorthings"`): one entity set of a
//! SensorThings service (`Things`, `Locations`, `Datastreams` or `Observations`, version 1.0 or
//! 1.1, as RIVM's Samen Meten serves them) read as a table, page by page through
//! `@iot.nextLink`.
//!
//! What the query needs goes into the request: the properties of its columns as `$select`, its
//! conditions on time (`phenomenon_time`), on the datastream (`datastream_id`) and on `id` as
//! `$filter`, and `$top` for the page size or a limit.
//! Conditions pushed are checked again by the engine (Inexact), so an answer never depends on
//! the service's filter being exact. A page that does not arrive within the request timeout,
//! an HTTP error, a body that is not a SensorThings page or a next link that leaves the service
//! fails the query with an error naming the source: never a partial answer.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::config::FileTableConfig;
use crate::error::{Error, Result};

mod entity;
mod filter;

pub use entity::Entity;
use entity::{column, property_of};
use filter::filter_of;

/// Options of a SensorThings table (`[tables.sensorthings]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorThingsConfig {
    /// The entity set the table reads.
    pub entity: Entity,
    /// Entities per page asked for (`$top`); the service may send fewer.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
    /// Longest one page may take to arrive, in seconds.
    #[serde(default = "default_request_timeout_s")]
    pub request_timeout_s: u64,
    /// Most pages one query reads; more fails the query (a service that never ends).
    #[serde(default = "default_max_pages")]
    pub max_pages: usize,
}

fn default_page_size() -> usize {
    1000
}

fn default_request_timeout_s() -> u64 {
    30
}

fn default_max_pages() -> usize {
    10_000
}

/// Opens a SensorThings table: checks the options and that the service answers with a page of
/// the entity set.
pub async fn open_sensorthings_table(config: &FileTableConfig) -> Result<Arc<dyn TableProvider>> {
    let invalid = |message: String| Error::InvalidConfig {
        table: config.name.clone(),
        message,
    };
    let options = config.sensorthings.clone().ok_or_else(|| {
        invalid(
            "format \"sensorthings\" needs [tables.sensorthings] with the entity set to read"
                .into(),
        )
    })?;
    if options.page_size == 0 || options.max_pages == 0 || options.request_timeout_s == 0 {
        return Err(invalid(
            "sensorthings page_size, max_pages and request_timeout_s must be at least 1".into(),
        ));
    }
    let mut root = Url::parse(&config.location)
        .map_err(|e| invalid(format!("location '{}' is not a URL: {e}", config.location)))?;
    if !matches!(root.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "a SensorThings service is reached over http(s), not '{}'",
            root.scheme()
        )));
    }
    if !root.path().ends_with('/') {
        root.set_path(&format!("{}/", root.path()));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(options.request_timeout_s))
        .build()
        .map_err(|e| invalid(e.to_string()))?;
    let source = Source {
        table: config.name.clone(),
        root,
        entity: options.entity,
        options,
        client,
    };
    // The service must answer now: a source that is down at startup follows the dataset's
    // optional/mandatory rule.
    source
        .page(&source.first_url(&[], &[], Some(1)))
        .await
        .map_err(|message| Error::Unreadable {
            table: config.name.clone(),
            location: config.location.clone(),
            message,
        })?;
    Ok(Arc::new(SensorThingsTable {
        schema: source.entity.schema(),
        source: Arc::new(source),
    }))
}

/// A SensorThings service and the entity set one table reads.
struct Source {
    table: String,
    root: Url,
    entity: Entity,
    options: SensorThingsConfig,
    client: reqwest::Client,
}

impl Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("table", &self.table)
            .field("root", &self.root.as_str())
            .field("entity", &self.entity)
            .finish()
    }
}

/// One page of an entity set.
#[derive(Deserialize)]
struct Page {
    value: Vec<Value>,
    #[serde(rename = "@iot.nextLink")]
    next: Option<String>,
}

impl Source {
    /// The first page's URL: `$top`, `$filter` from the pushed conditions, `$expand`.
    fn first_url(&self, select: &[&str], filters: &[String], limit: Option<usize>) -> Url {
        let mut url = self
            .root
            .join(self.entity.path())
            .expect("an entity path joins a base URL");
        {
            let mut query = url.query_pairs_mut();
            let top = limit.map_or(self.options.page_size, |l| l.min(self.options.page_size));
            query.append_pair("$top", &top.max(1).to_string());
            if !select.is_empty() {
                query.append_pair("$select", &select.join(","));
            }
            if !filters.is_empty() {
                query.append_pair("$filter", &filters.join(" and "));
            }
            if let Some(expand) = self.entity.expand() {
                query.append_pair("$expand", expand);
            }
            if self.entity == Entity::Observations {
                query.append_pair("$orderby", "phenomenonTime asc,id asc");
            }
        }
        url
    }

    /// Fetches one page; the error names the source and says what went wrong.
    async fn page(&self, url: &Url) -> std::result::Result<Page, String> {
        let what = |message: String| {
            format!(
                "SensorThings source '{}' at {}: {message}",
                self.table,
                self.root.as_str()
            )
        };
        let response = self.client.get(url.clone()).send().await.map_err(|e| {
            what(if e.is_timeout() {
                format!(
                    "no answer within {} s for {url}",
                    self.options.request_timeout_s
                )
            } else {
                format!("cannot reach {url}: {e}")
            })
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(what(format!("{url} answered HTTP {status}")));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| what(format!("the page {url} broke off: {e}")))?;
        serde_json::from_slice::<Page>(&body).map_err(|e| {
            what(format!(
                "{url} is not a SensorThings page (a JSON object with a 'value' array): {e}"
            ))
        })
    }

    /// The next page's URL, which must stay within the service.
    fn next_url(&self, current: &Url, next: &str) -> std::result::Result<Url, String> {
        let url = current.join(next).map_err(|e| {
            format!(
                "SensorThings source '{}': the next link '{next}' is not a URL: {e}",
                self.table
            )
        })?;
        if url.origin() != self.root.origin() || !url.path().starts_with(self.root.path()) {
            return Err(format!(
                "SensorThings source '{}': the next link {url} leaves the service {}",
                self.table,
                self.root.as_str()
            ));
        }
        if &url == current {
            return Err(format!(
                "SensorThings source '{}': the next link of {url} points at itself",
                self.table
            ));
        }
        Ok(url)
    }

    /// The entities of one page as a batch of the table's schema.
    fn batch(&self, schema: &SchemaRef, values: &[Value]) -> DfResult<RecordBatch> {
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| column(self.entity, field.name(), values))
            .collect();
        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
    }
}

/// A SensorThings entity set as a table.
#[derive(Debug)]
struct SensorThingsTable {
    schema: SchemaRef,
    source: Arc<Source>,
}

#[async_trait::async_trait]
impl TableProvider for SensorThingsTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match filter_of(self.source.entity, f) {
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let conditions: Vec<String> = filters
            .iter()
            .filter_map(|f| filter_of(self.source.entity, f))
            .collect();
        // The entity's own properties the query reads (`$select`); related ids come with
        // `$expand`. Always the id: the table's key, never NULL.
        let columns: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let mut select: Vec<&str> = vec!["id"];
        for i in columns {
            if let Some(property) = property_of(self.source.entity, self.schema.field(i).name())
                && !select.contains(&property)
            {
                select.push(property);
            }
        }
        let pages = Pages {
            schema: Arc::clone(&self.schema),
            source: Arc::clone(&self.source),
            first: self.source.first_url(&select, &conditions, limit),
            limit,
        };
        Ok(Arc::new(StreamingTableExec::try_new(
            Arc::clone(&self.schema),
            vec![Arc::new(pages)],
            projection,
            Vec::new(),
            false,
            limit,
        )?))
    }
}

/// The pages of one request, read one after the other when the query runs.
struct Pages {
    schema: SchemaRef,
    source: Arc<Source>,
    first: Url,
    limit: Option<usize>,
}

impl Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("url", &self.first.as_str())
            .finish()
    }
}

impl PartitionStream for Pages {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let state = (
            Some(self.first.clone()),
            0usize,
            0usize,
            Arc::clone(&self.source),
            Arc::clone(&self.schema),
            self.limit,
        );
        let stream = futures::stream::unfold(
            state,
            |(next, pages, rows, source, schema, limit)| async move {
                let url = next?;
                if limit.is_some_and(|l| rows >= l) {
                    return None;
                }
                if pages >= source.options.max_pages {
                    let message = format!(
                        "SensorThings source '{}': more than {} pages (max_pages)",
                        source.table, source.options.max_pages
                    );
                    return Some((
                        Err(external(message)),
                        (None, pages, rows, source, schema, limit),
                    ));
                }
                let page = match source.page(&url).await {
                    Ok(page) => page,
                    Err(message) => {
                        return Some((
                            Err(external(message)),
                            (None, pages, rows, source, schema, limit),
                        ));
                    }
                };
                let rows_after = rows + page.value.len();
                // The next link is followed (and checked) only when more rows are needed.
                let wanted = limit.is_none_or(|l| rows_after < l);
                let next = match page
                    .next
                    .as_deref()
                    .filter(|_| wanted)
                    .map(|n| source.next_url(&url, n))
                {
                    None => None,
                    Some(Ok(next)) => Some(next),
                    Some(Err(message)) => {
                        return Some((
                            Err(external(message)),
                            (None, pages, rows, source, schema, limit),
                        ));
                    }
                };
                let batch = source.batch(&schema, &page.value);
                let rows = rows_after;
                Some((batch, (next, pages + 1, rows, source, schema, limit)))
            },
        );
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        ))
    }
}

fn external(message: String) -> DataFusionError {
    DataFusionError::External(message.into())
}
