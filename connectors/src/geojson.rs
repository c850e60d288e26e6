//! GeoJSON FeatureCollections as tables: a row per feature, properties as columns, the
//! geometry as WKB in a `geometry` column whose field metadata records the CRS (GeoArrow).
//!
//! GeoJSON is one JSON document, not a line-oriented format, so a dataset is read once at
//! startup into Arrow batches, up to [`GeoJsonOptions::max_bytes`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use geozero::{CoordDimensions, ToWkb};
use object_store::ObjectStoreExt;
use serde_json::Value;

use crate::config::FileTableConfig;
use crate::error::{Error, Result};

/// Name of the geometry column.
pub const GEOMETRY_COLUMN: &str = "geometry";
/// CRS assumed when a file declares none (RFC 7946).
pub const DEFAULT_CRS: &str = "OGC:CRS84";
const ROWS_PER_BATCH: usize = 8192;

/// Limits for reading GeoJSON.
#[derive(Debug, Clone, Copy)]
pub struct GeoJsonOptions {
    /// Largest GeoJSON file accepted, in bytes.
    pub max_bytes: u64,
}

impl Default for GeoJsonOptions {
    fn default() -> Self {
        Self {
            max_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Opens a GeoJSON dataset (one file, local or in an object store).
pub async fn open_geojson_table(
    ctx: &SessionContext,
    config: &FileTableConfig,
    options: GeoJsonOptions,
) -> Result<Arc<dyn TableProvider>> {
    let bytes = read_location(ctx, config, options.max_bytes).await?;
    let batches = geojson_to_batches(&bytes).map_err(|e| Error::Malformed {
        table: config.name.clone(),
        location: config.location.clone(),
        message: e.to_string(),
    })?;
    let schema = batches.0;
    let table = MemTable::try_new(schema, vec![batches.1]).map_err(|e| Error::Malformed {
        table: config.name.clone(),
        location: config.location.clone(),
        message: e.strip_backtrace(),
    })?;
    Ok(Arc::new(table))
}

async fn read_location(
    ctx: &SessionContext,
    config: &FileTableConfig,
    max: u64,
) -> Result<Vec<u8>> {
    let unreadable = |message: String| Error::Unreadable {
        table: config.name.clone(),
        location: config.location.clone(),
        message,
    };
    let (url, store) = crate::store::open_location(ctx, config)?;
    let path = url.prefix().clone();
    let meta = store.head(&path).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => unreadable("no such file".into()),
        other => unreadable(other.to_string()),
    })?;
    if meta.size > max {
        return Err(unreadable(format!(
            "file is {} bytes; GeoJSON datasets may be at most {max} bytes",
            meta.size
        )));
    }
    let mut out = Vec::with_capacity(meta.size as usize);
    let mut stream = store
        .get(&path)
        .await
        .map_err(|e| unreadable(e.to_string()))?
        .into_stream();
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|e| unreadable(e.to_string()))?
    {
        out.extend_from_slice(&chunk);
        if out.len() as u64 > max {
            return Err(unreadable(format!("file exceeds {max} bytes")));
        }
    }
    Ok(out)
}

/// Column type inferred from the values of one property across all features.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Text,
}

impl Kind {
    fn of(value: &Value) -> Self {
        match value {
            Value::Null => Kind::Null,
            Value::Bool(_) => Kind::Bool,
            Value::Number(n) if n.is_i64() => Kind::Int,
            Value::Number(_) => Kind::Float,
            _ => Kind::Text,
        }
    }

    fn merge(self, other: Kind) -> Kind {
        match (self, other) {
            (a, b) if a == b => a,
            (Kind::Null, b) => b,
            (a, Kind::Null) => a,
            (Kind::Int, Kind::Float) | (Kind::Float, Kind::Int) => Kind::Float,
            _ => Kind::Text,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Null | Kind::Text => DataType::Utf8,
        }
    }
}

/// Why a GeoJSON document could not be read into batches.
#[derive(Debug, thiserror::Error)]
pub enum GeoJsonError {
    /// The bytes are not JSON.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A FeatureCollection without its `features` array.
    #[error("FeatureCollection without a 'features' array")]
    NoFeatures,
    /// A top-level object of another GeoJSON type (a bare geometry).
    #[error("expected a FeatureCollection or Feature, found '{0}'")]
    NotFeatures(String),
    /// A JSON document without a `type` member.
    #[error("not GeoJSON: no 'type' member")]
    NoType,
    /// A member of `features` that is not a Feature.
    #[error("feature {0} is not of type 'Feature'")]
    NotAFeature(usize),
    /// A feature whose geometry cannot be encoded as WKB.
    #[error("feature {feature}: invalid geometry: {source}")]
    Geometry {
        /// The feature's position in the document.
        feature: usize,
        /// What is wrong with the geometry.
        source: geozero::error::GeozeroError,
    },
    /// The columns do not form a batch.
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
}

/// Converts a GeoJSON document (FeatureCollection, Feature or bare geometry) into batches.
pub fn geojson_to_batches(
    bytes: &[u8],
) -> std::result::Result<(SchemaRef, Vec<RecordBatch>), GeoJsonError> {
    let doc: Value = serde_json::from_slice(bytes)?;
    let crs = declared_crs(&doc).unwrap_or_else(|| DEFAULT_CRS.to_string());
    let features: Vec<&Value> = match doc.get("type").and_then(Value::as_str) {
        Some("FeatureCollection") => doc
            .get("features")
            .and_then(Value::as_array)
            .ok_or(GeoJsonError::NoFeatures)?
            .iter()
            .collect(),
        Some("Feature") => vec![&doc],
        Some(other) => return Err(GeoJsonError::NotFeatures(other.to_string())),
        None => return Err(GeoJsonError::NoType),
    };

    // Column order: first appearance across features; types: merged over all values.
    let mut order: Vec<String> = vec![];
    let mut kinds: HashMap<String, Kind> = HashMap::new();
    for (i, feature) in features.iter().enumerate() {
        if feature.get("type").and_then(Value::as_str) != Some("Feature") {
            return Err(GeoJsonError::NotAFeature(i));
        }
        if let Some(props) = feature.get("properties").and_then(Value::as_object) {
            for (key, value) in props {
                if key == GEOMETRY_COLUMN {
                    continue;
                }
                let kind = Kind::of(value);
                match kinds.get_mut(key) {
                    Some(k) => *k = k.merge(kind),
                    None => {
                        order.push(key.clone());
                        kinds.insert(key.clone(), kind);
                    }
                }
            }
        }
    }

    let mut fields: Vec<Field> = order
        .iter()
        .map(|name| Field::new(name, kinds[name].data_type(), true))
        .collect();
    let geo_metadata = HashMap::from([
        (
            "ARROW:extension:name".to_string(),
            "geoarrow.wkb".to_string(),
        ),
        (
            "ARROW:extension:metadata".to_string(),
            serde_json::json!({ "crs": crs }).to_string(),
        ),
    ]);
    fields.push(Field::new(GEOMETRY_COLUMN, DataType::Binary, true).with_metadata(geo_metadata));
    let schema = Arc::new(Schema::new_with_metadata(
        fields,
        HashMap::from([("geo:crs".to_string(), crs)]),
    ));

    let mut batches = vec![];
    for (chunk_index, chunk) in features.chunks(ROWS_PER_BATCH).enumerate() {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(order.len() + 1);
        for name in &order {
            let values = chunk.iter().map(|f| {
                f.get("properties")
                    .and_then(Value::as_object)
                    .and_then(|p| p.get(name))
                    .unwrap_or(&Value::Null)
            });
            columns.push(build_column(kinds[name], values));
        }
        let mut geometry = BinaryBuilder::new();
        for (i, feature) in chunk.iter().enumerate() {
            match feature.get("geometry") {
                None | Some(Value::Null) => geometry.append_null(),
                Some(g) => {
                    let wkb = geozero::geojson::GeoJson(&g.to_string())
                        .to_wkb(CoordDimensions::xy())
                        .map_err(|source| GeoJsonError::Geometry {
                            feature: chunk_index * ROWS_PER_BATCH + i,
                            source,
                        })?;
                    geometry.append_value(wkb);
                }
            }
        }
        columns.push(Arc::new(geometry.finish()));
        batches.push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
    }
    Ok((schema, batches))
}

fn build_column<'a>(kind: Kind, values: impl Iterator<Item = &'a Value>) -> ArrayRef {
    match kind {
        Kind::Bool => {
            let mut b = BooleanBuilder::new();
            values.for_each(|v| b.append_option(v.as_bool()));
            Arc::new(b.finish())
        }
        Kind::Int => {
            let mut b = Int64Builder::new();
            values.for_each(|v| b.append_option(v.as_i64()));
            Arc::new(b.finish())
        }
        Kind::Float => {
            let mut b = Float64Builder::new();
            values.for_each(|v| b.append_option(v.as_f64()));
            Arc::new(b.finish())
        }
        Kind::Null | Kind::Text => {
            let mut b = StringBuilder::new();
            values.for_each(|v| match v {
                Value::Null => b.append_null(),
                Value::String(s) => b.append_value(s),
                other => b.append_value(other.to_string()),
            });
            Arc::new(b.finish())
        }
    }
}

/// The CRS named by a (pre-RFC 7946) `crs` member, normalised to `AUTHORITY:CODE`.
fn declared_crs(doc: &Value) -> Option<String> {
    let name = doc.get("crs")?.get("properties")?.get("name")?.as_str()?;
    let aliases = BTreeMap::from([
        ("urn:ogc:def:crs:OGC:1.3:CRS84", "OGC:CRS84"),
        ("urn:ogc:def:crs:OGC::CRS84", "OGC:CRS84"),
        ("urn:ogc:def:crs:EPSG::4326", "EPSG:4326"),
    ]);
    if let Some(alias) = aliases.get(name) {
        return Some((*alias).to_string());
    }
    // urn:ogc:def:crs:EPSG::28992 -> EPSG:28992
    let parts: Vec<&str> = name.split(':').collect();
    if parts.len() >= 2 && name.starts_with("urn:ogc:def:crs:") {
        let authority = parts.get(4).copied().unwrap_or("");
        let code = parts.last().copied().unwrap_or("");
        return Some(format!("{authority}:{code}"));
    }
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;

    const DOC: &str = r#"{"type":"FeatureCollection",
      "crs":{"type":"name","properties":{"name":"urn:ogc:def:crs:EPSG::28992"}},
      "features":[
        {"type":"Feature","properties":{"code":"A","n":1,"share":0.5},"geometry":{"type":"Point","coordinates":[1.0,2.0]}},
        {"type":"Feature","properties":{"code":"B","n":2,"share":1,"extra":{"k":true}},"geometry":null}
      ]}"#;

    #[test]
    fn features_become_rows() {
        let (schema, batches) = geojson_to_batches(DOC.as_bytes()).unwrap();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["code", "n", "share", "extra", "geometry"]);
        assert_eq!(schema.field(1).data_type(), &DataType::Int64);
        assert_eq!(schema.field(2).data_type(), &DataType::Float64);
        assert_eq!(schema.field(3).data_type(), &DataType::Utf8);
        let geo = schema.field(4).metadata();
        assert!(geo["ARROW:extension:metadata"].contains("EPSG:28992"));
        let batch = &batches[0];
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.column(1).as_primitive::<Int64Type>().value(1), 2);
        let wkb = batch.column(4).as_binary::<i32>();
        // little-endian WKB point: byte order, type 1, x = 1.0, y = 2.0
        assert_eq!(wkb.value(0).len(), 21);
        assert_eq!(&wkb.value(0)[..5], &[1, 1, 0, 0, 0]);
        assert!(wkb.is_null(1));
    }

    #[test]
    fn malformed_documents_are_named() {
        assert!(
            geojson_to_batches(b"{")
                .unwrap_err()
                .to_string()
                .contains("invalid JSON")
        );
        assert!(
            geojson_to_batches(br#"{"type":"Point","coordinates":[1,2]}"#)
                .unwrap_err()
                .to_string()
                .contains("FeatureCollection")
        );
        let bad = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":"x"}}]}"#;
        assert!(
            geojson_to_batches(bad.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("feature 0")
        );
    }
}
