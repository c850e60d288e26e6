//! The entity sets of a SensorThings service as tables: their schemas, and each column read
//! from a page's entities (`column`) or asked for with `$select` (`property_of`).

use std::sync::Arc;

use chrono::DateTime;
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Float64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
use serde_json::Value;

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
    pub(super) fn path(self) -> &'static str {
        match self {
            Self::Things => "Things",
            Self::Locations => "Locations",
            Self::Datastreams => "Datastreams",
            Self::Observations => "Observations",
        }
    }

    /// What the request expands, for the ids of related entities.
    pub(super) fn expand(self) -> Option<&'static str> {
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

/// The entity's own property a column is read from (None: it comes from an expanded entity).
pub(super) fn property_of(entity: Entity, column: &str) -> Option<&'static str> {
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

pub(super) fn column(entity: Entity, name: &str, values: &[Value]) -> ArrayRef {
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

#[cfg(test)]
mod tests {
    use datafusion::arrow::record_batch::RecordBatch;

    use super::*;

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
