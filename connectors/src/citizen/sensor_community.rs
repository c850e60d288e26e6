//! `format = "sensor-community"`: the daily CSV files of the sensor.community archive
//! (`archive.sensor.community`, formerly luftdaten.info): `;`-separated with a header, one file
//! per sensor and day, times in UTC without a zone. The columns depend on the sensor type;
//! mapped are `P1` (PM10), `P2` (PM2.5), `P0` (PM1), `temperature` and `humidity`, each in its
//! own observation. Particulate values above the 999.9 µg/m³ range of the SDS011 and SPS30 are
//! flagged `out-of-range`; in a row that also holds a relative humidity of
//! [`HUMID_PERCENT`](super::HUMID_PERCENT) or more they are flagged `humid`.

use std::collections::HashMap;

use datafusion::arrow::record_batch::RecordBatch;

use super::Rejections;
use super::model::{HUMID_PERCENT, Observation, ObservationBuilder, number, parse_time};

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
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .flexible(true)
        .from_reader(bytes);
    let columns: HashMap<String, usize> = match reader.headers() {
        Ok(headers) => headers
            .iter()
            .enumerate()
            .map(|(i, h)| (h.trim().to_string(), i))
            .collect(),
        Err(_) => {
            rejected.add("sensor.community: file without a readable header");
            return Vec::new();
        }
    };
    let (Some(&sensor_at), Some(&time_at)) = (columns.get("sensor_id"), columns.get("timestamp"))
    else {
        rejected.add("sensor.community: file without sensor_id or timestamp column");
        return Vec::new();
    };
    let measures: Vec<(usize, &str, &str, &str)> = MEASURES
        .iter()
        .filter_map(|(column, property, unit)| {
            columns
                .get(*column)
                .map(|&i| (i, *column, *property, *unit))
        })
        .collect();
    let (lat_at, lon_at, location_at, humidity_at) = (
        columns.get("lat").copied(),
        columns.get("lon").copied(),
        columns.get("location").copied(),
        columns.get("humidity").copied(),
    );
    for record in reader.records() {
        let Ok(record) = record else {
            rejected.add("sensor.community: row that is not CSV");
            continue;
        };
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("").trim();
        let sensor_id = field(Some(sensor_at));
        if sensor_id.is_empty() {
            rejected.add("sensor.community: row without sensor_id");
            continue;
        }
        let Some(time) = parse_time(field(Some(time_at))) else {
            rejected.add("sensor.community: row whose timestamp is not a time");
            continue;
        };
        let position = match (number(field(lat_at)), number(field(lon_at))) {
            (Some(lat), Some(lon)) if lat.abs() <= 90.0 && lon.abs() <= 180.0 => Some((lat, lon)),
            _ => None,
        };
        let humid = number(field(humidity_at)).is_some_and(|rh| rh >= HUMID_PERCENT);
        let sensor = format!("sensor.community:{sensor_id}");
        let feature = match field(location_at) {
            "" => "air at the sensor".to_string(),
            location => format!("air at sensor.community location {location}"),
        };
        for &(at, column, property, unit) in &measures {
            let text = field(Some(at));
            if text.is_empty() {
                continue;
            }
            let Some(value) = number(text) else {
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
                time,
                result: value,
                unit,
                flags: &flags,
                position,
            });
        }
    }
    out.finish()
}
