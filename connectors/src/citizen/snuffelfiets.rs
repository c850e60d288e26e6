//! `format = "snuffelfiets"`: exports of the Snuffelfiets bicycle sensors (Provincie Utrecht,
//! dataplatform.nl): `,`-separated with a header, one row per reading while riding. Units
//! depend on the firmware: particulate values of firmware 2 and later are hundredths of
//! µg/m³ (the project's own cleaning multiplies them by 0.01), of firmware 1 µg/m³;
//! `temperature` is in tenths of °C. A reading without a GPS fix (latitude and longitude 0) has
//! no position and is flagged `no-position`; a non-zero `error_code` is flagged `device-status`;
//! particulate readings at a relative humidity of [`HUMID_PERCENT`](super::HUMID_PERCENT) or
//! more are flagged `humid`. Times carry no zone and are taken as UTC.

use std::collections::HashMap;

use datafusion::arrow::record_batch::RecordBatch;

use super::Rejections;
use super::model::{HUMID_PERCENT, Observation, ObservationBuilder, number, parse_time};

pub(crate) fn map(bytes: &[u8], rejected: &mut Rejections) -> Vec<RecordBatch> {
    let mut out = ObservationBuilder::new("snuffelfiets");
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let columns: HashMap<String, usize> = match reader.headers() {
        Ok(headers) => headers
            .iter()
            .enumerate()
            .map(|(i, h)| (h.trim().to_string(), i))
            .collect(),
        Err(_) => {
            rejected.add("snuffelfiets: file without a readable header");
            return Vec::new();
        }
    };
    let get = |name: &str| columns.get(name).copied();
    let (Some(entity_at), Some(time_at)) = (get("entity_id"), get("recording_timestamp")) else {
        rejected.add("snuffelfiets: file without entity_id or recording_timestamp column");
        return Vec::new();
    };
    let (lat_at, lon_at, firmware_at, error_at, humidity_at, temperature_at, pressure_at) = (
        get("latitude"),
        get("longitude"),
        get("version_major"),
        get("error_code"),
        get("humidity"),
        get("temperature"),
        get("pressure"),
    );
    let pm: Vec<(usize, &str, &str)> = [("pm10", "PM10"), ("pm2_5", "PM2.5"), ("pm1_0", "PM1")]
        .into_iter()
        .filter_map(|(column, property)| get(column).map(|i| (i, column, property)))
        .collect();
    for record in reader.records() {
        let Ok(record) = record else {
            rejected.add("snuffelfiets: row that is not CSV");
            continue;
        };
        let field = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("").trim();
        let entity = field(Some(entity_at));
        if entity.is_empty() {
            rejected.add("snuffelfiets: row without entity_id");
            continue;
        }
        let Some(time) = parse_time(field(Some(time_at))) else {
            rejected.add("snuffelfiets: row whose recording_timestamp is not a time");
            continue;
        };
        let Some(firmware) = number(field(firmware_at)) else {
            // Without the firmware version the unit of the particulate values is unknown.
            rejected.add("snuffelfiets: row without version_major (unit unknown)");
            continue;
        };
        let scale = if firmware >= 2.0 { 0.01 } else { 1.0 };
        let mut flags: Vec<&str> = Vec::new();
        let position = match (number(field(lat_at)), number(field(lon_at))) {
            (Some(lat), Some(lon))
                if (lat, lon) != (0.0, 0.0) && lat.abs() <= 90.0 && lon.abs() <= 180.0 =>
            {
                Some((lat, lon))
            }
            _ => {
                flags.push("no-position");
                None
            }
        };
        if number(field(error_at)).is_some_and(|code| code != 0.0) {
            flags.push("device-status");
        }
        let sensor = format!("snuffelfiets:{entity}");
        let feature = "air along the cycle route";
        let humidity = number(field(humidity_at));
        let mut push = |property: &str, value: f64, unit: &str, flags: &[&str]| {
            out.push(Observation {
                sensor: &sensor,
                property,
                feature,
                time,
                result: value,
                unit,
                flags,
                position,
            });
        };
        let mut pm_flags = flags.clone();
        if humidity.is_some_and(|rh| rh >= HUMID_PERCENT) {
            pm_flags.push("humid");
        }
        for &(at, column, property) in &pm {
            let text = field(Some(at));
            if text.is_empty() {
                continue;
            }
            match number(text) {
                Some(raw) if raw >= 0.0 => push(property, raw * scale, "µg/m³", &pm_flags),
                _ => rejected.add(format!(
                    "snuffelfiets: {column} is not a non-negative number"
                )),
            }
        }
        if let Some(tenths) = number(field(temperature_at)) {
            push("temperature", tenths / 10.0, "°C", &flags);
        }
        if let Some(rh) = humidity {
            push("relative humidity", rh, "%", &flags);
        }
        if let Some(hpa) = number(field(pressure_at)) {
            push("air pressure", hpa, "hPa", &flags);
        }
    }
    out.finish()
}
