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

use chrono::DateTime;
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Float64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::config::FileTableConfig;
use crate::error::{Error, Result};

/// The entity sets a table can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Entity {
    /// `Things`: the measuring stations or devices.
    Things,
    /// `Locations`: where Things are, with a GeoJSON geometry.
    Locations,
    /// `Datastreams`: one series of observations of one property by one sensor of one Thing.
    Datastreams,
    /// `Observations`: the measurements.
    Observations,
}

impl Entity {
    fn path(self) -> &'static str {
        match self {
            Self::Things => "Things",
            Self::Locations => "Locations",
            Self::Datastreams => "Datastreams",
            Self::Observations => "Observations",
        }
    }

    /// What the request expands, for the ids of related entities.
    fn expand(self) -> Option<&'static str> {
        match self {
            Self::Datastreams => {
                Some("Thing($select=id),Sensor($select=id),ObservedProperty($select=id,name)")
            }
            Self::Observations => Some("Datastream($select=id)"),
            _ => None,
        }
    }

    /// The table's schema.
    pub fn schema(self) -> SchemaRef {
        let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
        let time = |name: &str| {
            Field::new(
                name,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            )
        };
        let fields = match self {
            Self::Things => vec![
                text("id", false),
                text("name", true),
                text("description", true),
                text("properties", true),
            ],
            Self::Locations => vec![
                text("id", false),
                text("name", true),
                text("description", true),
                text("encoding_type", true),
                Field::new("geometry", DataType::Binary, true).with_metadata(
                    [
                        (
                            "ARROW:extension:name".to_string(),
                            "geoarrow.wkb".to_string(),
                        ),
                        (
                            "ARROW:extension:metadata".to_string(),
                            r#"{"crs":"OGC:CRS84"}"#.to_string(),
                        ),
                    ]
                    .into(),
                ),
            ],
            Self::Datastreams => vec![
                text("id", false),
                text("name", true),
                text("description", true),
                text("unit_name", true),
                text("unit_symbol", true),
                text("observation_type", true),
                text("thing_id", true),
                text("sensor_id", true),
                text("observed_property_id", true),
                text("observed_property", true),
            ],
            Self::Observations => vec![
                text("id", false),
                time("phenomenon_time"),
                time("result_time"),
                Field::new("result", DataType::Float64, true),
                text("result_text", true),
                text("datastream_id", true),
            ],
        };
        Arc::new(Schema::new(fields))
    }
}

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

/// The entity's own property a column is read from (None: it comes from an expanded entity).
fn property_of(entity: Entity, column: &str) -> Option<&'static str> {
    Some(match (entity, column) {
        (_, "id") => "id",
        (_, "name") => "name",
        (_, "description") => "description",
        (Entity::Things, "properties") => "properties",
        (Entity::Locations, "encoding_type") => "encodingType",
        (Entity::Locations, "geometry") => "location",
        (Entity::Datastreams, "unit_name" | "unit_symbol") => "unitOfMeasurement",
        (Entity::Datastreams, "observation_type") => "observationType",
        (Entity::Observations, "phenomenon_time") => "phenomenonTime",
        (Entity::Observations, "result_time") => "resultTime",
        (Entity::Observations, "result" | "result_text") => "result",
        _ => return None,
    })
}

/// An id as text: SensorThings ids are numbers or strings.
fn id_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn related_id(entity: &Value, relation: &str) -> Option<String> {
    id_text(entity.get(relation)?.get("@iot.id"))
}

fn text_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// A time or the start of a period (`2024-01-01T00:00:00Z/2024-01-01T01:00:00Z`).
fn time_of(value: Option<&Value>) -> Option<i64> {
    let text = value?.as_str()?;
    let start = text.split('/').next().unwrap_or(text);
    DateTime::parse_from_rfc3339(start)
        .ok()
        .map(|t| t.timestamp_micros())
}

fn column(entity: Entity, name: &str, values: &[Value]) -> ArrayRef {
    let texts = |get: &dyn Fn(&Value) -> Option<String>| -> ArrayRef {
        let mut b = StringBuilder::new();
        for v in values {
            b.append_option(get(v));
        }
        Arc::new(b.finish())
    };
    match (entity, name) {
        (_, "id") => texts(&|v| id_text(v.get("@iot.id"))),
        (_, "name") => texts(&|v| text_of(v.get("name"))),
        (_, "description") => texts(&|v| text_of(v.get("description"))),
        (Entity::Things, "properties") => texts(&|v| v.get("properties").map(Value::to_string)),
        (Entity::Locations, "encoding_type") => texts(&|v| text_of(v.get("encodingType"))),
        (Entity::Locations, "geometry") => {
            let mut b = BinaryBuilder::new();
            for v in values {
                b.append_option(v.get("location").and_then(geojson_wkb));
            }
            Arc::new(b.finish())
        }
        (Entity::Datastreams, "unit_name") => {
            texts(&|v| text_of(v.get("unitOfMeasurement")?.get("name")))
        }
        (Entity::Datastreams, "unit_symbol") => {
            texts(&|v| text_of(v.get("unitOfMeasurement")?.get("symbol")))
        }
        (Entity::Datastreams, "observation_type") => texts(&|v| text_of(v.get("observationType"))),
        (Entity::Datastreams, "thing_id") => texts(&|v| related_id(v, "Thing")),
        (Entity::Datastreams, "sensor_id") => texts(&|v| related_id(v, "Sensor")),
        (Entity::Datastreams, "observed_property_id") => {
            texts(&|v| related_id(v, "ObservedProperty"))
        }
        (Entity::Datastreams, "observed_property") => {
            texts(&|v| text_of(v.get("ObservedProperty")?.get("name")))
        }
        (Entity::Observations, "phenomenon_time" | "result_time") => {
            let key = if name == "phenomenon_time" {
                "phenomenonTime"
            } else {
                "resultTime"
            };
            let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            for v in values {
                b.append_option(time_of(v.get(key)));
            }
            Arc::new(b.finish())
        }
        (Entity::Observations, "result") => {
            let mut b = Float64Builder::new();
            for v in values {
                b.append_option(v.get("result").and_then(Value::as_f64));
            }
            Arc::new(b.finish())
        }
        (Entity::Observations, "result_text") => texts(&|v| match v.get("result") {
            Some(Value::Number(_)) | Some(Value::Null) | None => None,
            other => text_of(other),
        }),
        (Entity::Observations, "datastream_id") => texts(&|v| related_id(v, "Datastream")),
        (entity, other) => unreachable!("{other} is not a column of {entity:?}"),
    }
}

fn geojson_wkb(geometry: &Value) -> Option<Vec<u8>> {
    use geozero::{CoordDimensions, ToWkb};
    // A Location's `location` is a GeoJSON geometry, or a Feature holding one.
    let geometry = geometry.get("geometry").unwrap_or(geometry);
    geozero::geojson::GeoJson(&geometry.to_string())
        .to_wkb(CoordDimensions::xy())
        .ok()
}

/// The `$filter` condition of one of the query's conditions, if the service can evaluate it.
fn filter_of(entity: Entity, expr: &Expr) -> Option<String> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, value, op) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) => (c.name.as_str(), v, *op),
                (Expr::Literal(v, _), Expr::Column(c)) => (c.name.as_str(), v, op.swap()?),
                _ => {
                    if *op == Operator::And {
                        let (l, r) = (filter_of(entity, left)?, filter_of(entity, right)?);
                        return Some(format!("({l} and {r})"));
                    }
                    if *op == Operator::Or {
                        let (l, r) = (filter_of(entity, left)?, filter_of(entity, right)?);
                        return Some(format!("({l} or {r})"));
                    }
                    return None;
                }
            };
            let op = match op {
                Operator::Eq => "eq",
                Operator::NotEq => "ne",
                Operator::Gt => "gt",
                Operator::GtEq => "ge",
                Operator::Lt => "lt",
                Operator::LtEq => "le",
                _ => return None,
            };
            let (path, literal) = match (entity, column) {
                (Entity::Observations, "phenomenon_time") => {
                    ("phenomenonTime", time_literal(value)?)
                }
                (Entity::Observations, "datastream_id") => ("Datastream/id", id_literal(value)?),
                (_, "id") => ("id", id_literal(value)?),
                _ => return None,
            };
            Some(format!("{path} {op} {literal}"))
        }
        Expr::InList(list) if !list.negated => {
            let parts: Option<Vec<String>> = list
                .list
                .iter()
                .map(|value| {
                    filter_of(
                        entity,
                        &Expr::BinaryExpr(BinaryExpr::new(
                            list.expr.clone(),
                            Operator::Eq,
                            Box::new(value.clone()),
                        )),
                    )
                })
                .collect();
            let parts = parts?;
            (!parts.is_empty()).then(|| format!("({})", parts.join(" or ")))
        }
        _ => None,
    }
}

/// An id as OData writes it: a number as is, other text quoted.
fn id_literal(value: &ScalarValue) -> Option<String> {
    let text = match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => s.clone(),
        ScalarValue::Int64(Some(v)) => v.to_string(),
        ScalarValue::Int32(Some(v)) => v.to_string(),
        _ => return None,
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        Some(text)
    } else {
        Some(format!("'{}'", text.replace('\'', "''")))
    }
}

/// A timestamp as an OData date-time literal (UTC).
fn time_literal(value: &ScalarValue) -> Option<String> {
    let micros = match value
        .cast_to(&DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        ))
        .ok()?
    {
        ScalarValue::TimestampMicrosecond(Some(v), _) => v,
        _ => return None,
    };
    let time = DateTime::from_timestamp_micros(micros)?;
    Some(time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    #[test]
    fn conditions_on_time_datastream_and_id_become_odata() {
        let time = col("phenomenon_time").gt_eq(lit(ScalarValue::TimestampMicrosecond(
            Some(1_704_067_200_000_000),
            Some("UTC".into()),
        )));
        assert_eq!(
            filter_of(Entity::Observations, &time).unwrap(),
            "phenomenonTime ge 2024-01-01T00:00:00.000000Z"
        );
        let streams = col("datastream_id").in_list(vec![lit("12"), lit("a'b")], false);
        assert_eq!(
            filter_of(Entity::Observations, &streams).unwrap(),
            "(Datastream/id eq 12 or Datastream/id eq 'a''b')"
        );
        assert_eq!(
            filter_of(Entity::Things, &lit("7").eq(col("id"))).unwrap(),
            "id eq 7"
        );
        assert!(filter_of(Entity::Observations, &col("result").gt(lit(3.0))).is_none());
        assert!(filter_of(Entity::Things, &col("name").eq(lit("x"))).is_none());
    }

    #[test]
    fn observations_map_numbers_and_text_results() {
        let values: Vec<Value> = serde_json::from_str(
            r#"[{"@iot.id": 1, "phenomenonTime": "2024-01-01T00:00:00Z", "result": 12.5,
                 "Datastream": {"@iot.id": 7}},
                {"@iot.id": "x", "phenomenonTime": "2024-01-01T00:00:00Z/2024-01-01T01:00:00Z",
                 "resultTime": null, "result": "n/a"}]"#,
        )
        .unwrap();
        let schema = Entity::Observations.schema();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| column(Entity::Observations, f.name(), &values))
            .collect();
        let batch = RecordBatch::try_new(schema, columns).unwrap();
        let pretty = datafusion::arrow::util::pretty::pretty_format_batches(&[batch])
            .unwrap()
            .to_string();
        assert!(
            pretty.contains(
                "| 1  | 2024-01-01T00:00:00Z |             | 12.5   |             | 7             |"
            ),
            "{pretty}"
        );
        assert!(
            pretty.contains(
                "| x  | 2024-01-01T00:00:00Z |             |        | n/a         |               |"
            ),
            "{pretty}"
        );
    }
}
