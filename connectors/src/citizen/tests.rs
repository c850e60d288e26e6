use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, TimestampMicrosecondType};
use datafusion::arrow::record_batch::RecordBatch;

use super::{Rejections, sensor_community, snuffelfiets, telraam};

/// (property, result, unit, quality, has position) of every observation.
fn rows(batches: &[RecordBatch]) -> Vec<(String, f64, String, String, bool)> {
    let mut out = Vec::new();
    for b in batches {
        let text = |i: usize, r: usize| b.column(i).as_string::<i32>().value(r).to_string();
        for r in 0..b.num_rows() {
            out.push((
                text(2, r),
                b.column(5).as_primitive::<Float64Type>().value(r),
                text(6, r),
                text(7, r),
                !b.column(10).is_null(r),
            ));
        }
    }
    out
}

#[test]
fn sensor_community_rows_become_pm_observations_with_flags() {
    let csv = "sensor_id;sensor_type;location;lat;lon;timestamp;P1;durP1;ratioP1;P2;durP2;ratioP2\n\
               7245;SDS011;3664;51.216;3.220;2018-07-25T00:02:03;11.07;;;3.40;;\n\
               7245;SDS011;3664;51.216;3.220;2017-12-23T15:56:02;1502.53;;;116.33;;\n\
               7245;SDS011;3664;51.216;3.220;not a time;1;;;2;;\n\
               7245;SDS011;3664;51.216;3.220;2018-07-25T00:04:30;abc;;;;;\n";
    let mut rejected = Rejections::default();
    let batches = sensor_community::map(csv.as_bytes(), &mut rejected);
    let got = rows(&batches);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(
        got[0],
        ("PM10".into(), 11.07, "µg/m³".into(), "ok".into(), true)
    );
    assert_eq!(
        got[1],
        ("PM2.5".into(), 3.40, "µg/m³".into(), "ok".into(), true)
    );
    assert_eq!(got[2].3, "out-of-range");
    assert_eq!(got[3].3, "ok", "116.33 is within range");
    assert_eq!(
        rejected.0["sensor.community: row whose timestamp is not a time"],
        1
    );
    assert_eq!(rejected.0["sensor.community: P1 is not a number"], 1);
    let time = batches[0]
        .column(4)
        .as_primitive::<TimestampMicrosecondType>()
        .value(0);
    assert_eq!(time, 1_532_476_923_000_000, "2018-07-25T00:02:03Z");
}

#[test]
fn sensor_community_humidity_in_the_same_row_flags_pm() {
    let csv = "sensor_id;sensor_type;location;lat;lon;timestamp;P1;P2;temperature;humidity\n\
               1;SPS30;9;52.0;5.0;2020-01-01T00:00:00;20;10;4.5;91\n";
    let mut rejected = Rejections::default();
    let got = rows(&sensor_community::map(csv.as_bytes(), &mut rejected));
    let quality: Vec<(&str, &str)> = got.iter().map(|r| (r.0.as_str(), r.3.as_str())).collect();
    assert_eq!(
        quality,
        [
            ("PM10", "humid"),
            ("PM2.5", "humid"),
            ("temperature", "ok"),
            ("relative humidity", "ok")
        ]
    );
    assert!(rejected.0.is_empty());
}

#[test]
fn snuffelfiets_units_follow_the_firmware() {
    let csv = ",_id,entity_id,recording_timestamp,receive_timestamp,acc_max,error_code,horizontal_accuracy,humidity,latitude,longitude,no2,pm10,pm1_0,pm2_5,pressure,temperature,version_major,version_minor,vertical_accuracy,voc,voltage\n\
               0,1,352753098853250,2024-11-11T08:48:51,2024-11-11T08:53:42.931000,0,0,65031,70,52.0981923,5.1257414,0,4300,1200,2600,1011,185,2,3,71361,4,113\n\
               1,2,352753098853251,2024-11-11T08:50:08,2024-11-11T08:53:42.931000,0,32,32682,50,0,0,0,28,8,17,1012,192,1,9,37204,1,112\n\
               2,3,352753098853251,bad,2024-11-11T08:53:42.931000,0,0,1,50,52,5,0,28,8,17,1012,192,1,9,1,1,112\n";
    let mut rejected = Rejections::default();
    let got = rows(&snuffelfiets::map(csv.as_bytes(), &mut rejected));
    let by = |i: usize| (got[i].0.as_str(), got[i].1, got[i].3.as_str(), got[i].4);
    // Firmware 2: hundredths of µg/m³; humidity 70 % flags the particulate values.
    assert_eq!(by(0), ("PM10", 43.0, "humid", true));
    assert_eq!(by(1), ("PM2.5", 26.0, "humid", true));
    assert_eq!(by(2), ("PM1", 12.0, "humid", true));
    assert_eq!(by(3), ("temperature", 18.5, "ok", true));
    // Firmware 1: µg/m³ already; no GPS fix and a status code.
    assert_eq!(by(6), ("PM10", 28.0, "no-position,device-status", false));
    assert_eq!(
        got.len(),
        12,
        "two rows of six observations; the third row is rejected"
    );
    assert_eq!(
        rejected.0["snuffelfiets: row whose recording_timestamp is not a time"],
        1
    );
}

#[test]
fn telraam_records_become_counts_per_hour() {
    let json = r#"{"device_id": "9000008311", "month": "2025-10", "data": [
        {"segment_id": 9000008311, "date": "2025-10-01T07:00:00.000Z", "interval": "hourly",
         "uptime": 0.8, "car": 120.5, "bike": 40, "pedestrian": 12, "heavy": 3.2},
        {"segment_id": 9000008311, "date": "2025-10-01T06:00:00.000Z", "interval": "hourly",
         "uptime": 0.2, "car": 10, "bike": null, "pedestrian": 0, "heavy": 0},
        {"segment_id": 9000008311, "date": "2025-10-01T05:00:00.000Z", "interval": "hourly",
         "uptime": 0, "car": 0, "bike": 0, "pedestrian": 0, "heavy": 0},
        {"segment_id": 9000008311, "date": "yesterday", "uptime": 1, "car": 1},
        {"segment_id": 9000008311, "date": "2025-10-01T08:00:00.000Z", "uptime": 1, "car": "many"}
    ]}"#;
    let mut rejected = Rejections::default();
    let got = rows(&telraam::map(json.as_bytes(), &mut rejected));
    assert_eq!(got.len(), 4 + 3 + 4);
    assert_eq!(
        got[0],
        ("cars".into(), 120.5, "count/h".into(), "ok".into(), false)
    );
    assert_eq!(got[4].3, "low-uptime");
    assert_eq!(got[7].3, "no-uptime");
    assert_eq!(rejected.0["telraam: record whose date is not a time"], 1);
    assert_eq!(rejected.0["telraam: car is not a count"], 1);
    let mut broken = Rejections::default();
    assert!(telraam::map(b"{\"data\": [", &mut broken).is_empty());
    assert_eq!(broken.0["telraam: file that is not JSON"], 1);
}
