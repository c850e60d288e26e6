//! `format = "telraam"`: Telraam's hourly traffic counts as JSON, one document per device and
//! month, `{"device_id", "month", "data": [{"segment_id", "date", "interval": "hourly",
//! "uptime", "car", "bike", "pedestrian", "heavy", ...}]}` (the layout of
//! telraam-data-collector, from Telraam's API). Each record gives four observations in counts
//! per hour (`cars`, `bicycles`, `pedestrians`, `heavy vehicles`), extrapolated by Telraam to the
//! whole hour from the share of it the camera counted (`uptime`). Telraam advises against
//! hours counted less than half: those are flagged `low-uptime`, hours not counted at all
//! `no-uptime`. A Telraam segment has no position in these files.

use datafusion::arrow::record_batch::RecordBatch;
use serde_json::Value;

use super::Rejections;
use super::model::{Observation, ObservationBuilder, parse_time};

/// Share of the hour below which Telraam advises not to use the counts.
pub(crate) const LOW_UPTIME: f64 = 0.5;

const MODES: &[(&str, &str)] = &[
    ("car", "cars"),
    ("bike", "bicycles"),
    ("pedestrian", "pedestrians"),
    ("heavy", "heavy vehicles"),
];

pub(crate) fn map(bytes: &[u8], rejected: &mut Rejections) -> Vec<RecordBatch> {
    let mut out = ObservationBuilder::new("telraam");
    let document: Value = match serde_json::from_slice(bytes) {
        Ok(document) => document,
        Err(_) => {
            rejected.add("telraam: file that is not JSON");
            return Vec::new();
        }
    };
    let Some(records) = document.get("data").and_then(Value::as_array) else {
        rejected.add("telraam: file without a data array");
        return Vec::new();
    };
    let device = document.get("device_id").map(|d| match d {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    for record in records {
        let segment = record.get("segment_id").map(|s| match s {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let Some(segment) = segment.or_else(|| device.clone()) else {
            rejected.add("telraam: record without segment_id");
            continue;
        };
        let Some(time) = record
            .get("date")
            .and_then(Value::as_str)
            .and_then(parse_time)
        else {
            rejected.add("telraam: record whose date is not a time");
            continue;
        };
        if record
            .get("interval")
            .and_then(Value::as_str)
            .unwrap_or("hourly")
            != "hourly"
        {
            rejected.add("telraam: record of another interval than hourly");
            continue;
        }
        let mut flags = Vec::new();
        match record.get("uptime").and_then(Value::as_f64) {
            Some(u) if u <= 0.0 => flags.push("no-uptime"),
            Some(u) if u < LOW_UPTIME => flags.push("low-uptime"),
            Some(_) => {}
            None => flags.push("no-uptime"),
        }
        let sensor = format!("telraam:{}", device.as_deref().unwrap_or(&segment));
        let feature = format!("Telraam road segment {segment}");
        for (key, property) in MODES {
            match record.get(*key) {
                None | Some(Value::Null) => {}
                Some(value) => match value.as_f64().filter(|v| v.is_finite() && *v >= 0.0) {
                    Some(count) => out.push(Observation {
                        sensor: &sensor,
                        property,
                        feature: &feature,
                        time,
                        result: count,
                        unit: "count/h",
                        flags: &flags,
                        position: None,
                    }),
                    None => rejected.add(format!("telraam: {key} is not a count")),
                },
            }
        }
    }
    out.finish()
}
