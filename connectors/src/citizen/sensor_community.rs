//! `format = "sensor-community"`: the daily CSV files of the sensor.community archive
//! (`archive.sensor.community`, formerly luftdaten.info): `;`-separated with a header, one file
//! per sensor and day, times in UTC without a zone. The columns depend on the sensor type;
//! mapped are `P1` (PM10), `P2` (PM2.5), `P0` (PM1), `temperature` and `humidity`, each in its
//! own observation. Particulate values above the 999.9 µg/m³ range of the SDS011 and SPS30 are
//! flagged `out-of-range`; in a row that also holds a relative humidity of
//! [`HUMID_PERCENT`](super::HUMID_PERCENT) or more they are flagged `humid`.

use datafusion::arrow::record_batch::RecordBatch;

use super::Rejections;
use super::model::{HUMID_PERCENT, Observation, ObservationBuilder, each_csv_row};

/// The upper end of the measuring range of the SDS011 and SPS30 (µg/m³).
pub(crate) const PM_RANGE: f64 = 999.9;

const MEASURES: &[(&str, &str, &str)] = &[
    ("P1", "PM10", "µg/m³"),
    ("P2", "PM2.5", "µg/m³"),
    ("P0", "PM1", "µg/m³"),
    ("temperature", "temperature", "°C"),
    ("humidity", "relative humidity", "%"),
];

pub(crate) fn map(bytes: &[u8], rejected: &mut Rejections) -> Vec<RecordBatch> {
    let mut out = ObservationBuilder::new("sensor.community");
    let columns = ("sensor_id", "timestamp");
    each_csv_row(
        bytes,
        b';',
        "sensor.community",
        columns,
        rejected,
        |row, rejected| {
            let position = row.position("lat", "lon");
            let humid = row.number("humidity").is_some_and(|rh| rh >= HUMID_PERCENT);
            let sensor = format!("sensor.community:{}", row.sensor);
            let feature = match row.field("location") {
                "" => "air at the sensor".to_string(),
                location => format!("air at sensor.community location {location}"),
            };
            for &(column, property, unit) in MEASURES {
                let text = row.field(column);
                if text.is_empty() {
                    continue;
                }
                let Some(value) = row.number(column) else {
                    rejected.add(format!("sensor.community: {column} is not a number"));
                    continue;
                };
                let mut flags = Vec::new();
                if unit == "µg/m³" {
                    if value < 0.0 {
                        rejected.add(format!("sensor.community: {column} is negative"));
                        continue;
                    }
                    if value > PM_RANGE {
                        flags.push("out-of-range");
                    }
                    if humid {
                        flags.push("humid");
                    }
                }
                out.push(Observation {
                    sensor: &sensor,
                    property,
                    feature: &feature,
                    time: row.time,
                    result: value,
                    unit,
                    flags: &flags,
                    position,
                });
            }
        },
    );
    out.finish()
}
