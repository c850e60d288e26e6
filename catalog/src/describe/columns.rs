//! The columns of a table in CSVW: names, datatypes, positions, the CRS of geometry columns
//! and what the configuration says they mean.

use arrow_schema::{DataType, Field, TimeUnit};
use oxigraph::model::{Literal, NamedNode, NamedOrBlankNode};

use super::graph::Graph;
use super::{Context, TableFacts};
use crate::config::{ColumnConfig, DatasetConfig};
use crate::terms::{integer, iri, text, xsd};
use crate::vocab::{CSVW, DCT, GEO, QUDT, UDN};

/// Describes the `csvw:tableSchema` of the distribution `dist`.
pub(super) fn describe(
    g: &mut Graph,
    cx: &Context,
    table: &TableFacts,
    config: &DatasetConfig,
    dist: &NamedOrBlankNode,
) {
    let schema_node: NamedOrBlankNode =
        NamedNode::new_unchecked(cx.ids.table_schema(&table.name)).into();
    g.add(dist.clone(), iri(CSVW, "tableSchema"), schema_node.clone());
    g.a(schema_node.clone(), iri(CSVW, "Schema"));
    for (index, field) in table.schema.fields().iter().enumerate() {
        let col: NamedOrBlankNode =
            NamedNode::new_unchecked(cx.ids.column(&table.name, field.name())).into();
        g.add(schema_node.clone(), iri(CSVW, "column"), col.clone());
        column(g, &col, index, field);
        if let Some(crs) = table
            .schema
            .metadata()
            .get("geo:crs")
            .filter(|_| xsd_datatype(field) == iri(GEO, "wkbLiteral"))
            .and_then(|c| crs_iri(c))
        {
            g.add(col.clone(), iri(UDN, "crs"), NamedNode::new_unchecked(crs));
        }
        if let Some(meta) = config.columns.get(field.name()) {
            configured(g, &col, meta);
        }
    }
}

/// What the schema says of the column at `index` (from 0).
fn column(g: &mut Graph, col: &NamedOrBlankNode, index: usize, field: &Field) {
    g.a(col.clone(), iri(CSVW, "Column"));
    g.add(col.clone(), iri(CSVW, "name"), text(field.name()));
    g.add(col.clone(), iri(CSVW, "datatype"), xsd_datatype(field));
    g.add(
        col.clone(),
        iri(CSVW, "required"),
        Literal::from(!field.is_nullable()),
    );
    g.add(
        col.clone(),
        iri(UDN, "columnIndex"),
        integer(index as u64 + 1),
    );
    g.add(
        col.clone(),
        iri(UDN, "arrowType"),
        text(&arrow_type_name(field.data_type())),
    );
}

/// What the configuration says the column means.
fn configured(g: &mut Graph, col: &NamedOrBlankNode, meta: &ColumnConfig) {
    if let Some(title) = &meta.title {
        g.add(col.clone(), iri(CSVW, "title"), text(title));
    }
    if let Some(description) = &meta.description {
        g.add(col.clone(), iri(DCT, "description"), text(description));
    }
    if let Some(unit) = &meta.unit {
        g.add(
            col.clone(),
            iri(QUDT, "unit"),
            NamedNode::new_unchecked(unit),
        );
    }
}

/// The columns the dataset's configuration names that the table does not have, as
/// `MetadataError` entries.
pub(super) fn unknown(table: &TableFacts, config: &DatasetConfig) -> Vec<String> {
    let mut invalid = Vec::new();
    for name in config.columns.keys() {
        if table.schema.field_with_name(name).is_err() {
            let columns: Vec<_> = table
                .schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            invalid.push(format!(
                "datasets.{}.columns.{name}: the table has no column '{name}' (columns: {})",
                table.name,
                columns.join(", ")
            ));
        }
    }
    if let Some(column) = &config.temporal_column
        && table.schema.field_with_name(column).is_err()
    {
        invalid.push(format!(
            "datasets.{}.temporal_column: the table has no column '{column}'",
            table.name
        ));
    }
    invalid
}

/// XSD (or CSVW) datatype of an Arrow type, for `csvw:datatype`.
pub fn xsd_datatype(field: &Field) -> NamedNode {
    if field
        .metadata()
        .get("ARROW:extension:name")
        .is_some_and(|n| n == "geoarrow.wkb")
    {
        return iri(GEO, "wkbLiteral");
    }
    let local = match field.data_type() {
        DataType::Boolean => "boolean",
        DataType::Int8 => "byte",
        DataType::Int16 => "short",
        DataType::Int32 => "int",
        DataType::Int64 => "long",
        DataType::UInt8 => "unsignedByte",
        DataType::UInt16 => "unsignedShort",
        DataType::UInt32 => "unsignedInt",
        DataType::UInt64 => "unsignedLong",
        DataType::Float16 | DataType::Float32 => "float",
        DataType::Float64 => "double",
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "decimal",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string",
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "base64Binary",
        DataType::Date32 | DataType::Date64 => "date",
        DataType::Timestamp(_, Some(_)) => "dateTimeStamp",
        DataType::Timestamp(_, None) => "dateTime",
        DataType::Time32(_) | DataType::Time64(_) => "time",
        DataType::Duration(_) | DataType::Interval(_) => "duration",
        DataType::Dictionary(_, value) => {
            return xsd_datatype(&Field::new(field.name(), (**value).clone(), true));
        }
        _ => return iri(CSVW, "JSON"),
    };
    xsd(local)
}

fn arrow_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Timestamp(unit, tz) => {
            let unit = match unit {
                TimeUnit::Second => "s",
                TimeUnit::Millisecond => "ms",
                TimeUnit::Microsecond => "us",
                TimeUnit::Nanosecond => "ns",
            };
            match tz {
                Some(tz) => format!("Timestamp({unit}, {tz})"),
                None => format!("Timestamp({unit})"),
            }
        }
        other => other.to_string(),
    }
}

/// The OGC IRI of a CRS written `AUTHORITY:CODE`.
fn crs_iri(crs: &str) -> Option<String> {
    let (authority, code) = crs.split_once(':')?;
    match authority {
        "OGC" => Some(format!("http://www.opengis.net/def/crs/OGC/1.3/{code}")),
        "EPSG" if code.bytes().all(|b| b.is_ascii_digit()) => {
            Some(format!("http://www.opengis.net/def/crs/EPSG/0/{code}"))
        }
        _ => None,
    }
}
