//! PostgreSQL and PostGIS as a source (`format = "postgres"`): a table or view of a
//! municipal database served as a node table, through `datafusion-table-providers`' postgres
//! provider (a bb8 pool of tokio-postgres connections), which sends each query's columns,
//! conditions and limit to PostgreSQL as SQL.
//!
//! PostGIS geometry columns arrive as EWKB; they are served as plain WKB whose GeoArrow
//! metadata states the column's SRID from `geometry_columns` (`EPSG:<srid>`), like every
//! geometry column of a node. Conditions on a geometry column, or calling a spatial function,
//! are evaluated by the node, not sent: PostGIS would read the node's WKB constants as `bytea`.
//!
//! The password comes from an environment variable or a file, never from the location, and is
//! never logged. A failure during a query is an error naming the source (`UNAVAILABLE`), never
//! a partial answer.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::TableReference;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use datafusion_table_providers::postgres::PostgresTableFactory;
use datafusion_table_providers::postgres::pool::PostgresConnectionPool;
use futures::StreamExt;
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::config::FileTableConfig;
use crate::error::{Error, Result};

/// Options of a PostgreSQL table (`[tables.postgres]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// The table or view to serve: `schema.name`, or `name` in the `public` schema.
    pub table: String,
    /// The environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file holding the password (a mounted secret); one trailing line break is ignored.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// TLS to the server: `disable`, `prefer`, `require`, `verify-ca` or `verify-full`.
    #[serde(default = "default_sslmode")]
    pub sslmode: String,
    /// Connections the pool holds at most.
    #[serde(default = "default_pool_size")]
    pub pool_size: u32,
}

fn default_sslmode() -> String {
    "prefer".into()
}

fn default_pool_size() -> u32 {
    4
}

/// Opens a PostgreSQL table: connects (the pool checks the server now, so an unreachable
/// database follows the dataset's optional/mandatory rule), reads the table's schema and its
/// geometry columns' SRIDs.
pub async fn open_postgres_table(config: &FileTableConfig) -> Result<Arc<dyn TableProvider>> {
    let invalid = |message: String| Error::InvalidConfig {
        table: config.name.clone(),
        message,
    };
    let options = config.postgres.clone().ok_or_else(|| {
        invalid("format \"postgres\" needs [tables.postgres] with the table to serve".into())
    })?;
    let url = Url::parse(&config.location).map_err(|e| {
        invalid(format!(
            "location must be postgresql://USER@HOST[:PORT]/DATABASE: {e}"
        ))
    })?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(invalid(format!(
            "location must be postgresql://USER@HOST[:PORT]/DATABASE, not a {} URL",
            url.scheme()
        )));
    }
    if url.password().is_some() {
        return Err(invalid(
            "the location holds a password; give it in password_env or password_file, which \
             are never logged"
                .into(),
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| invalid("the location names no host".into()))?;
    let database = url.path().trim_start_matches('/');
    if database.is_empty() || url.username().is_empty() {
        return Err(invalid(
            "the location names no user or database: postgresql://USER@HOST[:PORT]/DATABASE".into(),
        ));
    }
    if options.pool_size == 0 {
        return Err(invalid("postgres pool_size must be at least 1".into()));
    }
    let password = match (&options.password_env, &options.password_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "give the password in password_env or password_file, not both".into(),
            ));
        }
        (Some(variable), None) => Some(std::env::var(variable).map_err(|_| {
            invalid(format!(
                "password_env names the environment variable {variable}, which is not set"
            ))
        })?),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| invalid(format!("cannot read password_file {}: {e}", path.display())))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
        ),
        (None, None) => None,
    };
    let mut params: HashMap<String, SecretString> = HashMap::from([
        ("host".to_string(), host.into()),
        (
            "port".to_string(),
            url.port().unwrap_or(5432).to_string().into(),
        ),
        ("user".to_string(), url.username().into()),
        ("db".to_string(), database.into()),
        ("sslmode".to_string(), options.sslmode.as_str().into()),
        (
            "connection_pool_size".to_string(),
            options.pool_size.to_string().into(),
        ),
    ]);
    if let Some(password) = password {
        params.insert("pass".to_string(), password.into());
    }
    let where_ = format!(
        "{host}:{}/{database} as {}",
        url.port().unwrap_or(5432),
        url.username()
    );
    let unreadable = |message: String| Error::Unreadable {
        table: config.name.clone(),
        location: config.location.clone(),
        message,
    };
    let pool = Arc::new(
        PostgresConnectionPool::new(params)
            .await
            .map_err(|e| unreadable(format!("cannot connect to PostgreSQL at {where_}: {e}")))?,
    );
    let reference = TableReference::from(options.table.as_str());
    let inner = PostgresTableFactory::new(Arc::clone(&pool))
        .table_provider(reference.clone())
        .await
        .map_err(|e| unreadable(format!("cannot read table {}: {e}", options.table)))?;
    let srids = geometry_srids(&pool, &reference).await;
    let inner_schema = inner.schema();
    let mut geometry = Vec::new();
    let fields: Vec<Field> = inner_schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match srids.get(f.name()) {
            Some(srid) if f.data_type() == &DataType::Binary => {
                geometry.push(i);
                let crs = if *srid > 0 {
                    format!(r#"{{"crs":"EPSG:{srid}"}}"#)
                } else {
                    "{}".to_string()
                };
                f.as_ref().clone().with_metadata(
                    [
                        (
                            "ARROW:extension:name".to_string(),
                            "geoarrow.wkb".to_string(),
                        ),
                        ("ARROW:extension:metadata".to_string(), crs),
                    ]
                    .into(),
                )
            }
            _ => f.as_ref().clone(),
        })
        .collect();
    Ok(Arc::new(PostgresTable {
        name: config.name.clone(),
        inner,
        schema: Arc::new(Schema::new(fields)),
        geometry,
    }))
}

/// The SRID of each geometry column of a table or view (0: not stated), from PostGIS's
/// `geometry_columns`; none when the database has no PostGIS.
async fn geometry_srids(
    pool: &PostgresConnectionPool,
    table: &TableReference,
) -> HashMap<String, i64> {
    let quote = |s: &str| s.replace('\'', "''");
    let sql = format!(
        "SELECT f_geometry_column, srid FROM geometry_columns WHERE f_table_schema = '{}' AND f_table_name = '{}'",
        quote(table.schema().unwrap_or("public")),
        quote(table.table())
    );
    let Ok(connection) = pool.connect_direct().await else {
        return HashMap::new();
    };
    let Ok(messages) = connection.conn.simple_query(&sql).await else {
        return HashMap::new();
    };
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some((row.get(0)?.to_string(), row.get(1)?.parse().unwrap_or(0)))
            }
            _ => None,
        })
        .collect()
}

/// A PostgreSQL table as the node serves it.
struct PostgresTable {
    name: String,
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    /// Positions of the geometry columns in `schema`.
    geometry: Vec<usize>,
}

impl fmt::Debug for PostgresTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresTable")
            .field("name", &self.name)
            .finish()
    }
}

impl PostgresTable {
    /// Whether a condition stays with the node: it reads a geometry column or calls a spatial
    /// function, which PostGIS would evaluate on `bytea`.
    fn spatial(&self, expr: &Expr) -> bool {
        let geometry = |name: &str| {
            self.geometry
                .iter()
                .any(|&i| self.schema.field(i).name() == name)
        };
        expr.column_refs().iter().any(|c| geometry(&c.name))
            || expr
                .exists(|e| Ok(matches!(e, Expr::ScalarFunction(f) if f.name().starts_with("st_"))))
                .unwrap_or(true)
    }
}

#[async_trait::async_trait]
impl TableProvider for PostgresTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        filters
            .iter()
            .map(|f| {
                if self.spatial(f) {
                    Ok(TableProviderFilterPushDown::Unsupported)
                } else {
                    Ok(self
                        .inner
                        .supports_filters_pushdown(&[f])?
                        .pop()
                        .unwrap_or(TableProviderFilterPushDown::Unsupported))
                }
            })
            .collect()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let pushed: Vec<Expr> = filters
            .iter()
            .filter(|f| !self.spatial(f))
            .cloned()
            .collect();
        // With no columns (`count(*)`) the postgres provider streams batches without columns
        // that its own coalescing refuses: ask for the first column and drop it here.
        let count_only =
            projection.is_some_and(|p| p.is_empty()) && !self.schema.fields().is_empty();
        let inner_projection = if count_only {
            Some(vec![0])
        } else {
            projection.cloned()
        };
        let input = self
            .inner
            .scan(state, inner_projection.as_ref(), &pushed, limit)
            .await?;
        // The columns the input gives, with the geometry columns' GeoArrow metadata.
        let geometry_names: Vec<&String> = self
            .geometry
            .iter()
            .map(|&i| self.schema.field(i).name())
            .collect();
        let mut geometry = Vec::new();
        let fields: Vec<Field> = input
            .schema()
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| match self.schema.field_with_name(f.name()) {
                Ok(ours) if geometry_names.contains(&f.name()) => {
                    geometry.push(i);
                    f.as_ref().clone().with_metadata(ours.metadata().clone())
                }
                _ => f.as_ref().clone(),
            })
            .collect();
        let schema = if count_only {
            geometry.clear();
            Arc::new(Schema::empty())
        } else {
            Arc::new(Schema::new(fields))
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            input.properties().partitioning.clone(),
            input.properties().emission_type,
            input.properties().boundedness,
        ));
        Ok(Arc::new(PostgresExec {
            name: self.name.clone(),
            input,
            schema,
            geometry,
            properties,
        }))
    }
}

/// The rows of a PostgreSQL query, with EWKB geometries as WKB and errors naming the source.
#[derive(Debug)]
struct PostgresExec {
    name: String,
    input: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    geometry: Vec<usize>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for PostgresExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match t {
            DisplayFormatType::TreeRender => Ok(()),
            _ => write!(f, "PostgresSourceExec: table={}", self.name),
        }
    }
}

impl ExecutionPlan for PostgresExec {
    fn name(&self) -> &str {
        "PostgresSourceExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self {
            name: self.name.clone(),
            input: children.swap_remove(0),
            schema: Arc::clone(&self.schema),
            geometry: self.geometry.clone(),
            properties: Arc::clone(&self.properties),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let name = self.name.clone();
        let named = move |e: DataFusionError| {
            DataFusionError::External(
                format!("PostgreSQL source '{name}': {}", e.strip_backtrace()).into(),
            )
        };
        let stream = self
            .input
            .execute(partition, context)
            .map_err(named.clone())?;
        let schema = Arc::clone(&self.schema);
        let geometry = self.geometry.clone();
        let batches = stream.map(move |batch| {
            let batch = batch.map_err(named.clone())?;
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            columns.truncate(schema.fields().len());
            for &i in &geometry {
                columns[i] = plain_wkb(&columns[i]);
            }
            Ok(RecordBatch::try_new_with_options(
                Arc::clone(&schema),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        )))
    }
}

/// EWKB (PostGIS's binary form: the SRID after the type, flagged `0x20000000`) as ISO WKB.
fn plain_wkb(column: &ArrayRef) -> ArrayRef {
    let Some(binary) = column.as_binary_opt::<i32>() else {
        return Arc::clone(column);
    };
    let mut out = BinaryBuilder::with_capacity(binary.len(), binary.value_data().len());
    for value in binary.iter() {
        match value {
            Some(bytes) => out.append_value(strip_srid(bytes)),
            None => out.append_null(),
        }
    }
    Arc::new(out.finish())
}

fn strip_srid(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const SRID_FLAG: u32 = 0x2000_0000;
    if bytes.len() < 9 {
        return bytes.into();
    }
    let little = bytes[0] == 1;
    let word: [u8; 4] = bytes[1..5].try_into().expect("four bytes");
    let kind = if little {
        u32::from_le_bytes(word)
    } else {
        u32::from_be_bytes(word)
    };
    if kind & SRID_FLAG == 0 {
        return bytes.into();
    }
    let kind = kind & !SRID_FLAG;
    let mut out = Vec::with_capacity(bytes.len() - 4);
    out.push(bytes[0]);
    out.extend_from_slice(&if little {
        kind.to_le_bytes()
    } else {
        kind.to_be_bytes()
    });
    out.extend_from_slice(&bytes[9..]);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewkb_loses_its_srid_and_wkb_stays() {
        // POINT(1 2) with SRID 28992, little-endian EWKB.
        let mut ewkb = vec![1u8];
        ewkb.extend_from_slice(&(1u32 | 0x2000_0000).to_le_bytes());
        ewkb.extend_from_slice(&28992u32.to_le_bytes());
        ewkb.extend_from_slice(&1f64.to_le_bytes());
        ewkb.extend_from_slice(&2f64.to_le_bytes());
        let wkb = strip_srid(&ewkb).into_owned();
        let mut want = vec![1u8];
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(&1f64.to_le_bytes());
        want.extend_from_slice(&2f64.to_le_bytes());
        assert_eq!(wkb, want);
        assert_eq!(strip_srid(&want).into_owned(), want);
        // Big-endian.
        let mut be = vec![0u8];
        be.extend_from_slice(&(3u32 | 0x2000_0000).to_be_bytes());
        be.extend_from_slice(&4326u32.to_be_bytes());
        be.extend_from_slice(&[9; 8]);
        let stripped = strip_srid(&be).into_owned();
        assert_eq!(&stripped[..5], &[0, 0, 0, 0, 3]);
        assert_eq!(&stripped[5..], &[9; 8]);
    }
}
