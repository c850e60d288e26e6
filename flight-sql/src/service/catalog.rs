//! The answers to the catalog commands (`GetTables`, `GetTableTypes`, the key commands): the
//! session's tables and the fixed schemas of the key listings.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::TableType;

use crate::error::Result;
use crate::query::QueryEngine;

/// Every table of `engine`'s session, sorted by catalog, schema and name, with its type and
/// schema.
pub(super) async fn table_names(
    engine: &QueryEngine,
) -> Result<Vec<(String, String, String, TableType, SchemaRef)>> {
    let ctx = engine.session();
    let mut out = vec![];
    let mut catalogs = ctx.catalog_names();
    catalogs.sort();
    for catalog_name in catalogs {
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        let mut schemas = catalog.schema_names();
        schemas.sort();
        for schema_name in schemas {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let mut tables = schema.table_names();
            tables.sort();
            for table_name in tables {
                if let Some(table) = schema.table(&table_name).await? {
                    out.push((
                        catalog_name.clone(),
                        schema_name.clone(),
                        table_name,
                        table.table_type(),
                        table.schema(),
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// The Flight SQL name of a table type.
pub(super) fn table_type_name(table_type: TableType) -> &'static str {
    match table_type {
        TableType::Base => "TABLE",
        TableType::View => "VIEW",
        TableType::Temporary => "LOCAL TEMPORARY",
    }
}

/// The table types a node serves.
pub(super) const TABLE_TYPES: &[&str] = &["TABLE", "VIEW"];

/// The schema of `GetPrimaryKeys` answers.
pub(super) fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// The schema of the foreign-key commands' answers.
pub(super) fn foreign_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}
