//! The in-memory tables: sizes, consistency between tables and plausibility of the values.

use std::collections::BTreeSet;

use arrow::array::{
    Array, BinaryArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use polder_sample_data::{CITIES, air_quality, neighbourhoods, traffic_counts};

fn strings<'a>(batch: &'a RecordBatch, name: &str) -> &'a StringArray {
    batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref()
        .unwrap()
}

fn floats<'a>(batch: &'a RecordBatch, name: &str) -> &'a Float64Array {
    batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref()
        .unwrap()
}

fn ints<'a>(batch: &'a RecordBatch, name: &str) -> &'a Int64Array {
    batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref()
        .unwrap()
}

fn times<'a>(batch: &'a RecordBatch, name: &str) -> &'a TimestampMicrosecondArray {
    batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref()
        .unwrap()
}

/// The exterior ring of a one-ring WKB polygon.
fn ring(wkb: &[u8]) -> Vec<[f64; 2]> {
    assert_eq!(wkb[0], 1);
    assert_eq!(u32::from_le_bytes(wkb[1..5].try_into().unwrap()), 3);
    let points = u32::from_le_bytes(wkb[9..13].try_into().unwrap()) as usize;
    (0..points)
        .map(|i| {
            let at = 13 + 16 * i;
            [
                f64::from_le_bytes(wkb[at..at + 8].try_into().unwrap()),
                f64::from_le_bytes(wkb[at + 8..at + 16].try_into().unwrap()),
            ]
        })
        .collect()
}

fn contains(ring: &[[f64; 2]], [x, y]: [f64; 2]) -> bool {
    let mut inside = false;
    for edge in ring.windows(2) {
        let ([x0, y0], [x1, y1]) = (edge[0], edge[1]);
        if (y0 > y) != (y1 > y) && x < x0 + (y - y0) / (y1 - y0) * (x1 - x0) {
            inside = !inside;
        }
    }
    inside
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    sum / count as f64
}

#[test]
fn in_memory_generation_is_deterministic() {
    for city in CITIES {
        assert_eq!(air_quality(city).unwrap(), air_quality(city).unwrap());
        assert_eq!(traffic_counts(city).unwrap(), traffic_counts(city).unwrap());
        assert_eq!(neighbourhoods(city).unwrap(), neighbourhoods(city).unwrap());
    }
}

#[test]
fn row_counts_and_periods() {
    for city in CITIES {
        let air = air_quality(city).unwrap();
        assert_eq!(air.num_rows(), 20 * 744, "{city}");
        assert_eq!(
            BTreeSet::from_iter(ints(&air, "sensor_id").values().iter()).len(),
            20
        );
        let traffic = traffic_counts(city).unwrap();
        assert_eq!(traffic.num_rows(), 12 * 744, "{city}");
        assert_eq!(
            BTreeSet::from_iter(ints(&traffic, "segment_id").values().iter()).len(),
            12
        );
        assert_eq!(neighbourhoods(city).unwrap().num_rows(), 12, "{city}");

        for (batch, column) in [(&air, "timestamp"), (&traffic, "hour")] {
            let hours = BTreeSet::from_iter(times(batch, column).values().iter().copied());
            assert_eq!(hours.len(), 744);
            // 2025-10-01T00:00:00Z and 2025-10-31T23:00:00Z
            assert_eq!(hours.first(), Some(&1_759_276_800_000_000));
            assert_eq!(
                hours.last(),
                Some(&(1_759_276_800_000_000 + 743 * 3_600_000_000))
            );
        }
    }
}

#[test]
fn neighbourhood_codes_resolve() {
    for city in CITIES {
        let areas = neighbourhoods(city).unwrap();
        let codes = BTreeSet::from_iter(strings(&areas, "code").iter().map(Option::unwrap));
        assert_eq!(codes.len(), 12);
        let municipality = strings(&areas, "municipality_code").value(0).to_owned();
        for code in &codes {
            assert_eq!(code.len(), 10);
            assert_eq!(&code[..2], "BU");
            assert_eq!(&code[2..6], &municipality[2..]);
        }
        for (batch, name) in [
            (air_quality(city).unwrap(), "air"),
            (traffic_counts(city).unwrap(), "traffic"),
        ] {
            let used = BTreeSet::from_iter(
                strings(&batch, "neighbourhood_code")
                    .iter()
                    .map(Option::unwrap),
            );
            assert!(used.is_subset(&codes), "{city} {name}: {used:?}");
            assert_eq!(
                used.len(),
                12,
                "{city} {name}: every neighbourhood is covered"
            );
        }
    }
}

#[test]
fn municipalities_and_areas_are_real_or_plausible() {
    for (city, code, name) in [
        ("amsterdam", "GM0363", "Amsterdam"),
        ("utrecht", "GM0344", "Utrecht"),
        ("rotterdam", "GM0599", "Rotterdam"),
    ] {
        let areas = neighbourhoods(city).unwrap();
        for row in 0..areas.num_rows() {
            assert_eq!(strings(&areas, "municipality_code").value(row), code);
            assert_eq!(strings(&areas, "municipality").value(row), name);
            let area = floats(&areas, "area_ha").value(row);
            assert!((25.0..120.0).contains(&area), "{city}: {area} ha");
            let population = ints(&areas, "population").value(row);
            let households = ints(&areas, "households").value(row);
            assert!(
                population > 1000 && households > 0 && households < population,
                "{city}"
            );
            let share = floats(&areas, "share_65_plus").value(row);
            assert!((5.0..=25.0).contains(&share), "{city}");
        }
    }
}

#[test]
fn polygons_are_closed_and_do_not_overlap() {
    for city in CITIES {
        let areas = neighbourhoods(city).unwrap();
        let geometry: &BinaryArray = areas
            .column_by_name("geometry")
            .unwrap()
            .as_any()
            .downcast_ref()
            .unwrap();
        let rings: Vec<_> = geometry.iter().map(|wkb| ring(wkb.unwrap())).collect();
        for ring in &rings {
            assert_eq!(ring.first(), ring.last());
        }
        // Every sensor lies in exactly one polygon: its own.
        let air = air_quality(city).unwrap();
        let codes = strings(&areas, "code");
        for row in (0..air.num_rows()).step_by(744) {
            let point = [
                floats(&air, "lon").value(row),
                floats(&air, "lat").value(row),
            ];
            let hits: Vec<_> = (0..rings.len())
                .filter(|&i| contains(&rings[i], point))
                .collect();
            assert_eq!(hits.len(), 1, "{city}: {point:?} in {hits:?}");
            assert_eq!(
                codes.value(hits[0]),
                strings(&air, "neighbourhood_code").value(row)
            );
        }
        // Cell centres (the mean of the vertices) also fall in exactly one polygon.
        for ring in &rings {
            let n = (ring.len() - 1) as f64;
            let centre = [
                ring[..ring.len() - 1].iter().map(|p| p[0]).sum::<f64>() / n,
                ring[..ring.len() - 1].iter().map(|p| p[1]).sum::<f64>() / n,
            ];
            assert_eq!(
                rings.iter().filter(|other| contains(other, centre)).count(),
                1
            );
        }
    }
}

#[test]
fn particulate_matter_is_plausible() {
    let mut city_means = Vec::new();
    for city in CITIES {
        let air = air_quality(city).unwrap();
        let (pm10, pm2_5) = (floats(&air, "pm10"), floats(&air, "pm2_5"));
        assert_eq!(pm10.null_count(), pm2_5.null_count());
        let missing = pm10.null_count() as f64 / air.num_rows() as f64;
        assert!((0.001..0.015).contains(&missing), "{city}: {missing}");
        for row in 0..air.num_rows() {
            assert_eq!(pm10.is_valid(row), pm2_5.is_valid(row));
            if pm10.is_valid(row) {
                assert!(pm2_5.value(row) < pm10.value(row), "{city} row {row}");
                assert!(pm2_5.value(row) > 0.0);
            }
        }
        let humidity = floats(&air, "humidity");
        assert!(humidity.values().iter().all(|h| (0.0..=100.0).contains(h)));
        let temperature = floats(&air, "temperature");
        assert!(
            temperature
                .values()
                .iter()
                .all(|t| (-5.0..30.0).contains(t)),
            "{city}"
        );

        let city_mean = mean(pm2_5.iter().flatten());
        assert!(
            (5.0..30.0).contains(&city_mean),
            "{city}: mean PM2.5 {city_mean}"
        );
        city_means.push(city_mean);

        // In humid air the SDS011 over-reads much more than the SPS30.
        let types = strings(&air, "sensor_type");
        let sds_over_sps = |humid: bool| {
            let mean_of = |kind: &str| {
                mean(
                    (0..air.num_rows())
                        .filter(|&r| {
                            types.value(r) == kind
                                && pm2_5.is_valid(r)
                                && if humid {
                                    humidity.value(r) >= 95.0
                                } else {
                                    humidity.value(r) < 80.0
                                }
                        })
                        .map(|r| pm2_5.value(r)),
                )
            };
            mean_of("SDS011") / mean_of("SPS30")
        };
        let (humid, dry) = (sds_over_sps(true), sds_over_sps(false));
        assert!(
            humid > 1.3 * dry,
            "{city}: SDS011/SPS30 humid {humid:.2}, dry {dry:.2}"
        );
    }
    assert!(
        city_means[2] > city_means[0],
        "Rotterdam is dirtier than Amsterdam: {city_means:?}"
    );
}

#[test]
fn traffic_is_plausible() {
    for city in CITIES {
        let traffic = traffic_counts(city).unwrap();
        let total = |column: &str| ints(&traffic, column).values().iter().sum::<i64>();
        let (car, bike, heavy) = (total("car"), total("bike"), total("heavy"));
        if *city == "rotterdam" {
            assert!(car > bike, "{city}: {car} cars, {bike} bikes");
        } else {
            assert!(bike > car, "{city}: {car} cars, {bike} bikes");
        }
        assert!(heavy < car / 5, "{city}");

        let uptime = floats(&traffic, "uptime");
        assert!(uptime.values().iter().all(|u| (0.0..=1.0).contains(u)));
        let v85 = floats(&traffic, "v85");
        assert!(v85.null_count() > 0);
        assert!(v85.iter().flatten().all(|v| (10.0..80.0).contains(&v)));
        for row in 0..traffic.num_rows() {
            if uptime.value(row) == 0.0 {
                assert_eq!(ints(&traffic, "car").value(row), 0);
                assert!(v85.is_null(row));
            }
        }

        // Wednesday 1 October: 06:00 UTC is the 08:00 morning peak, 01:00 UTC is 03:00 at night.
        let hour = times(&traffic, "hour");
        let at = |utc_hour: i64| {
            let micros = 1_759_276_800_000_000 + utc_hour * 3_600_000_000;
            (0..traffic.num_rows())
                .filter(|&r| hour.value(r) == micros)
                .map(|r| ints(&traffic, "car").value(r) + ints(&traffic, "bike").value(r))
                .sum::<i64>()
        };
        assert!(at(6) > 5 * at(1), "{city}: peak {} night {}", at(6), at(1));
    }
}
