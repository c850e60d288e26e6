//! `format = "snuffelfiets"`: exports of the Snuffelfiets bicycle sensors (Provincie Utrecht,
//! dataplatform.nl): `,`-separated with a header, one row per reading while riding. Units
//! depend on the firmware: particulate values of firmware 2 and later are hundredths of
//! µg/m³ (the project's own cleaning multiplies them by 0.01), of firmware 1 µg/m³;
//! `temperature` is in tenths of °C. A reading without a GPS fix (latitude and longitude 0) has
//! no position and is flagged `no-position`; a non-zero `error_code` is flagged `device-status`;
//! particulate readings at a relative humidity of [`HUMID_PERCENT`](super::HUMID_PERCENT) or
//! more are flagged `humid`. Times carry no zone and are taken as UTC.

use datafusion::arrow::record_batch::RecordBatch;

use super::Rejections;
use super::model::{HUMID_PERCENT, Observation, ObservationBuilder, each_csv_row};

pub(crate) fn map(bytes: &[u8], rejected: &mut Rejections) -> Vec<RecordBatch> {
    let mut out = ObservationBuilder::new("snuffelfiets");
    let columns = ("entity_id", "recording_timestamp");
    each_csv_row(
        bytes,
        b',',
        "snuffelfiets",
        columns,
        rejected,
        |row, rejected| {
            let Some(firmware) = row.number("version_major") else {
                // Without the firmware version the unit of the particulate values is unknown.
                rejected.add("snuffelfiets: row without version_major (unit unknown)");
                return;
            };
            let scale = if firmware >= 2.0 { 0.01 } else { 1.0 };
            let mut flags: Vec<&str> = Vec::new();
            // No GPS fix: latitude and longitude 0.
            let position = row
                .position("latitude", "longitude")
                .filter(|&p| p != (0.0, 0.0));
            if position.is_none() {
                flags.push("no-position");
            }
            if row.number("error_code").is_some_and(|code| code != 0.0) {
                flags.push("device-status");
            }
            let sensor = format!("snuffelfiets:{}", row.sensor);
            let humidity = row.number("humidity");
            let mut push = |property: &str, value: f64, unit: &str, flags: &[&str]| {
                out.push(Observation {
                    sensor: &sensor,
                    property,
                    feature: "air along the cycle route",
                    time: row.time,
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
            for (column, property) in [("pm10", "PM10"), ("pm2_5", "PM2.5"), ("pm1_0", "PM1")] {
                if row.field(column).is_empty() {
                    continue;
                }
                match row.number(column) {
                    Some(raw) if raw >= 0.0 => push(property, raw * scale, "µg/m³", &pm_flags),
                    _ => rejected.add(format!(
                        "snuffelfiets: {column} is not a non-negative number"
                    )),
                }
            }
            if let Some(tenths) = row.number("temperature") {
                push("temperature", tenths / 10.0, "°C", &flags);
            }
            if let Some(rh) = humidity {
                push("relative humidity", rh, "%", &flags);
            }
            if let Some(hpa) = row.number("pressure") {
                push("air pressure", hpa, "hPa", &flags);
            }
        },
    );
    out.finish()
}
