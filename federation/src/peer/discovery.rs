//! What a peer serves: its tables and their schemas, listed with Flight SQL `GetTables`, or one
//! table's schema, from the peer's plan of `SELECT *` of it.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_flight::FlightDescriptor;
use arrow_flight::sql::{CommandGetTables, ProstMessageExt};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::TableReference;
use futures::TryStreamExt;
use prost::Message;

use super::Peer;
use crate::error::PeerError;

/// The tables a peer serves, by schema and name, as its `GetTables` listed them.
#[derive(Debug, Clone, Default)]
pub struct Discovered {
    /// The peer's catalog they belong to.
    pub catalog: String,
    /// Schema name to table name to Arrow schema.
    pub schemas: BTreeMap<String, BTreeMap<String, SchemaRef>>,
}

/// Schemas by table, schema and catalog.
type Catalogs = BTreeMap<String, BTreeMap<String, BTreeMap<String, SchemaRef>>>;

impl Peer {
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
        let mut catalogs = Catalogs::new();
        for batch in &batches {
            self.add_tables(batch, &mut catalogs)?;
        }
        self.choose_catalog(catalogs)
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
        let sql = super::sql::select_all(TableReference::full(catalog, schema, table))
            .map_err(|e| self.protocol(e.to_string()))?;
        match self.plan(super::request::statement(sql)).await {
            Ok(info) => {
                let schema = info
                    .try_decode_schema()
                    .map_err(|e| self.protocol(format!("schema of {table}: {e}")))?;
                Ok(Some(Arc::new(schema)))
            }
            Err(PeerError::Remote {
                code: tonic::Code::NotFound,
                ..
            }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Adds the tables one `GetTables` batch lists (but those of `information_schema`).
    fn add_tables(&self, batch: &RecordBatch, catalogs: &mut Catalogs) -> Result<(), PeerError> {
        let catalog = self.text_column(batch, "catalog_name")?;
        let schema = self.text_column(batch, "db_schema_name")?;
        let table = self.text_column(batch, "table_name")?;
        let ipc = batch
            .column_by_name("table_schema")
            .ok_or_else(|| self.protocol("GetTables answer has no table_schema column".into()))?;
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
            if ipc.is_null(row) {
                return Err(self.protocol(format!("no schema for table {table_name}")));
            }
            let arrow_schema =
                datafusion::arrow::ipc::convert::try_schema_from_ipc_buffer(ipc.value(row))
                    .map_err(|e| self.protocol(format!("schema of {table_name}: {e}")))?;
            catalogs
                .entry(catalog[row].clone().unwrap_or_default())
                .or_default()
                .entry(schema_name)
                .or_default()
                .insert(table_name, Arc::new(arrow_schema));
        }
        Ok(())
    }

    /// The values of a text column of a `GetTables` answer.
    fn text_column(
        &self,
        batch: &RecordBatch,
        name: &str,
    ) -> Result<Vec<Option<String>>, PeerError> {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| self.protocol(format!("GetTables answer has no column {name}")))?;
        let column = cast(column, &DataType::Utf8).map_err(|e| self.protocol(e.to_string()))?;
        Ok(column
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect())
    }

    /// The catalog to federate: as configured, else named like the peer, else the only one.
    fn choose_catalog(&self, mut catalogs: Catalogs) -> Result<Discovered, PeerError> {
        let chosen = match &self.config.catalog {
            Some(name) => name.clone(),
            None if catalogs.contains_key(&self.config.name) => self.config.name.clone(),
            None if catalogs.len() == 1 => catalogs.keys().next().expect("one").clone(),
            None if catalogs.is_empty() => return Ok(Discovered::default()),
            None => {
                let names = catalogs.keys().cloned().collect::<Vec<_>>().join(", ");
                return Err(self.misconfigured(format!(
                    "it serves several catalogs ({names}); name the one to federate with `catalog`"
                )));
            }
        };
        let schemas = catalogs
            .remove(&chosen)
            .ok_or_else(|| self.misconfigured(format!("it has no catalog '{chosen}'")))?;
        Ok(Discovered {
            catalog: chosen,
            schemas,
        })
    }

    fn misconfigured(&self, detail: String) -> PeerError {
        PeerError::Config {
            peer: self.config.name.clone(),
            detail,
        }
    }
}
