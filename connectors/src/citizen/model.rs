//! The observation model every citizen format maps onto, and the builder the formats share.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, NaiveDateTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Float64Builder, StringArray, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

/// Relative humidity (%) from which optical particulate sensors over-read: water makes the
/// particles grow (hygroscopic growth), and low-cost sensors without a dryer count the water
/// too. Particulate observations made at or above it are flagged `humid`.
pub const HUMID_PERCENT: f64 = 70.0;

/// Rows per batch the formats emit.
pub(crate) const BATCH_ROWS: usize = 8192;

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let geometry = HashMap::from([
        (
            "ARROW:extension:name".to_string(),
            "geoarrow.wkb".to_string(),
        ),
        (
            "ARROW:extension:metadata".to_string(),
            r#"{"crs":"OGC:CRS84"}"#.to_string(),
        ),
    ]);
    Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("sensor", DataType::Utf8, false),
        Field::new("observed_property", DataType::Utf8, false),
        Field::new("feature_of_interest", DataType::Utf8, false),
        Field::new(
            "phenomenon_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("result", DataType::Float64, false),
        Field::new("unit", DataType::Utf8, false),
        Field::new("quality", DataType::Utf8, false),
        Field::new("latitude", DataType::Float64, true),
        Field::new("longitude", DataType::Float64, true),
        Field::new("geometry", DataType::Binary, true).with_metadata(geometry),
    ]))
});

/// The columns of every citizen table (SOSA/SSN terms in brackets):
/// `source` (the initiative), `sensor` (`sosa:madeBySensor`, `<source>:<id>`),
/// `observed_property` (`sosa:observedProperty`: `PM10`, `PM2.5`, `PM1`, `temperature`,
/// `relative humidity`, `air pressure`, `cars`, `bicycles`, `pedestrians`, `heavy vehicles`),
/// `feature_of_interest` (`sosa:hasFeatureOfInterest`), `phenomenon_time`
/// (`sosa:phenomenonTime`, UTC), `result` (`sosa:hasSimpleResult`, in `unit`: `µg/m³`,
/// `count/h`, `°C`, `%`, `hPa`), `quality` (`ok`, or the flags that apply, comma-separated),
/// `latitude`, `longitude` and `geometry` (WGS 84; NULL where the source has no position).
pub fn observation_schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

/// One observation.
pub(crate) struct Observation<'a> {
    pub sensor: &'a str,
    pub property: &'a str,
    pub feature: &'a str,
    pub time: DateTime<Utc>,
    pub result: f64,
    pub unit: &'a str,
    pub flags: &'a [&'a str],
    pub position: Option<(f64, f64)>,
}

/// Observations collected into batches of [`BATCH_ROWS`].
pub(crate) struct ObservationBuilder {
    source: &'static str,
    rows: usize,
    sensor: StringBuilder,
    property: StringBuilder,
    feature: StringBuilder,
    time: TimestampMicrosecondBuilder,
    result: Float64Builder,
    unit: StringBuilder,
    quality: StringBuilder,
    latitude: Float64Builder,
    longitude: Float64Builder,
    geometry: BinaryBuilder,
    done: Vec<RecordBatch>,
}

impl ObservationBuilder {
    pub fn new(source: &'static str) -> Self {
        Self {
            source,
            rows: 0,
            sensor: StringBuilder::new(),
            property: StringBuilder::new(),
            feature: StringBuilder::new(),
            time: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            result: Float64Builder::new(),
            unit: StringBuilder::new(),
            quality: StringBuilder::new(),
            latitude: Float64Builder::new(),
            longitude: Float64Builder::new(),
            geometry: BinaryBuilder::new(),
            done: Vec::new(),
        }
    }

    pub fn push(&mut self, o: Observation<'_>) {
        self.sensor.append_value(o.sensor);
        self.property.append_value(o.property);
        self.feature.append_value(o.feature);
        self.time.append_value(o.time.timestamp_micros());
        self.result.append_value(o.result);
        self.unit.append_value(o.unit);
        self.quality.append_value(quality(o.flags));
        match o.position {
            Some((latitude, longitude)) => {
                self.latitude.append_value(latitude);
                self.longitude.append_value(longitude);
                self.geometry.append_value(wkb_point(longitude, latitude));
            }
            None => {
                self.latitude.append_null();
                self.longitude.append_null();
                self.geometry.append_null();
            }
        }
        self.rows += 1;
        if self.rows == BATCH_ROWS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.rows == 0 {
            return;
        }
        let rows = self.rows;
        let source: ArrayRef = Arc::new(StringArray::from(vec![self.source; rows]));
        let columns: Vec<ArrayRef> = vec![
            source,
            Arc::new(self.sensor.finish()),
            Arc::new(self.property.finish()),
            Arc::new(self.feature.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.result.finish()),
            Arc::new(self.unit.finish()),
            Arc::new(self.quality.finish()),
            Arc::new(self.latitude.finish()),
            Arc::new(self.longitude.finish()),
            Arc::new(self.geometry.finish()),
        ];
        self.done.push(
            RecordBatch::try_new(observation_schema(), columns)
                .expect("the columns follow the observation schema"),
        );
        self.rows = 0;
    }

    pub fn finish(mut self) -> Vec<RecordBatch> {
        self.flush();
        self.done
    }
}

/// `ok`, or the flags comma-separated.
pub fn quality(flags: &[&str]) -> String {
    if flags.is_empty() {
        "ok".to_string()
    } else {
        flags.join(",")
    }
}

/// A little-endian WKB point.
fn wkb_point(x: f64, y: f64) -> Vec<u8> {
    let mut wkb = Vec::with_capacity(21);
    wkb.push(1);
    wkb.extend_from_slice(&1u32.to_le_bytes());
    wkb.extend_from_slice(&x.to_le_bytes());
    wkb.extend_from_slice(&y.to_le_bytes());
    wkb
}

/// A time written with a zone (RFC 3339), or without one, which is then taken as UTC.
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .map(|t| t.and_utc())
}

/// A finite number, or None.
pub(crate) fn number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// One row of a citizen CSV export whose sensor and time could be read.
pub(crate) struct CsvRow<'r> {
    record: &'r csv::StringRecord,
    columns: &'r HashMap<String, usize>,
    /// The sensor's id in the export.
    pub sensor: &'r str,
    /// The time of the row.
    pub time: DateTime<Utc>,
}

impl CsvRow<'_> {
    /// The trimmed value of a column ("" when the export has no such column).
    pub fn field(&self, name: &str) -> &str {
        self.columns
            .get(name)
            .and_then(|&i| self.record.get(i))
            .unwrap_or("")
            .trim()
    }

    /// The value of a column as a finite number.
    pub fn number(&self, name: &str) -> Option<f64> {
        number(self.field(name))
    }

    /// A WGS 84 position from two columns, if both are numbers in range.
    pub fn position(&self, latitude: &str, longitude: &str) -> Option<(f64, f64)> {
        match (self.number(latitude), self.number(longitude)) {
            (Some(lat), Some(lon)) if lat.abs() <= 90.0 && lon.abs() <= 180.0 => Some((lat, lon)),
            _ => None,
        }
    }
}

/// Calls `each` for every row of a CSV export (with a header) that has a sensor id in
/// `sensor_column` and a time in `time_column`; counts every other row, and a file without a
/// header or without those columns, in `rejected`, prefixed with `source`.
pub(crate) fn each_csv_row(
    bytes: &[u8],
    delimiter: u8,
    source: &str,
    (sensor_column, time_column): (&str, &str),
    rejected: &mut super::Rejections,
    mut each: impl FnMut(&CsvRow<'_>, &mut super::Rejections),
) {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(bytes);
    let columns: HashMap<String, usize> = match reader.headers() {
        Ok(headers) => headers
            .iter()
            .enumerate()
            .map(|(i, h)| (h.trim().to_string(), i))
            .collect(),
        Err(_) => {
            rejected.add(format!("{source}: file without a readable header"));
            return;
        }
    };
    if !columns.contains_key(sensor_column) || !columns.contains_key(time_column) {
        rejected.add(format!(
            "{source}: file without {sensor_column} or {time_column} column"
        ));
        return;
    }
    for record in reader.records() {
        let Ok(record) = record else {
            rejected.add(format!("{source}: row that is not CSV"));
            continue;
        };
        let get = |name: &str| record.get(columns[name]).unwrap_or("").trim();
        let sensor = get(sensor_column);
        if sensor.is_empty() {
            rejected.add(format!("{source}: row without {sensor_column}"));
            continue;
        }
        let Some(time) = parse_time(get(time_column)) else {
            rejected.add(format!("{source}: row whose {time_column} is not a time"));
            continue;
        };
        let row = CsvRow {
            record: &record,
            columns: &columns,
            sensor,
            time,
        };
        each(&row, rejected);
    }
}
