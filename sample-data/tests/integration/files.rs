//! The written files: names, determinism, and that readers get back the in-memory tables.

use std::fs::File;
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use polder_sample_data::{CITIES, Error, SampleTable, write_all, write_city};

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn write_all_is_byte_for_byte_deterministic() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let written = write_all(first.path()).unwrap();
    let again = write_all(second.path()).unwrap();
    assert_eq!(written.len(), CITIES.len());
    for ((city, tables), (city_again, tables_again)) in written.iter().zip(&again) {
        assert_eq!(city, city_again);
        for (table, table_again) in tables.iter().zip(tables_again) {
            assert_eq!(
                table.path,
                first
                    .path()
                    .join(city)
                    .join(table.path.file_name().unwrap())
            );
            assert!(
                read(&table.path) == read(&table_again.path),
                "{city}/{} differs between runs",
                table.name
            );
        }
    }
    // Different cities get different data.
    assert_ne!(read(&written[0].1[0].path), read(&written[1].1[0].path));
}

#[test]
fn write_city_names_files_and_creates_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("nested").join("utrecht");
    let tables = write_city("utrecht", &target).unwrap();
    let summary: Vec<_> = tables.iter().map(|t| (t.name, t.format)).collect();
    assert_eq!(
        summary,
        [
            ("air_quality", "csv"),
            ("traffic_counts", "parquet"),
            ("neighbourhoods", "geojson")
        ]
    );
    for SampleTable {
        name,
        path,
        format,
        description,
    } in &tables
    {
        assert_eq!(*path, target.join(format!("{name}.{format}")));
        assert!(path.is_file());
        assert!(description.contains("synthetic"));
    }
    let mut names: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "air_quality.csv",
            "neighbourhoods.geojson",
            "traffic_counts.parquet"
        ]
    );
    // Writing again replaces the files with the same bytes.
    let before = read(&tables[1].path);
    write_city("utrecht", &target).unwrap();
    assert_eq!(read(&tables[1].path), before);
}

#[test]
fn unknown_city_is_a_typed_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("atlantis");
    let error = write_city("atlantis", &target).unwrap_err();
    assert!(
        matches!(&error, Error::UnknownCity { name } if name == "atlantis"),
        "{error:?}"
    );
    assert!(error.to_string().contains("\"atlantis\""), "{error}");
    assert!(!target.exists(), "nothing is written for an unknown city");
    assert!(matches!(
        polder_sample_data::air_quality("Amsterdam"),
        Err(Error::UnknownCity { .. })
    ));
    assert!(polder_sample_data::is_city("rotterdam"));
    assert!(!polder_sample_data::is_city("atlantis"));
}

#[test]
fn csv_reads_back_into_the_in_memory_table() {
    let dir = tempfile::tempdir().unwrap();
    let tables = write_city("amsterdam", dir.path()).unwrap();
    let text = String::from_utf8(read(&tables[0].path)).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "sensor_id,sensor_type,location_id,lat,lon,timestamp,pm10,pm2_5,temperature,humidity,neighbourhood_code"
    );
    let first = lines.next().unwrap();
    assert!(first.contains(",2025-10-01T00:00:00Z,"), "{first}");
    assert_eq!(first.split(',').count(), 11);

    let reader = arrow::csv::ReaderBuilder::new(polder_sample_data::air_quality_schema())
        .with_header(true)
        .build(File::open(&tables[0].path).unwrap())
        .unwrap();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
    let from_file = concat_batches(&polder_sample_data::air_quality_schema(), &batches).unwrap();
    assert_eq!(
        from_file,
        polder_sample_data::air_quality("amsterdam").unwrap()
    );
}

#[test]
fn parquet_reads_back_into_the_in_memory_table() {
    let dir = tempfile::tempdir().unwrap();
    let tables = write_city("rotterdam", dir.path()).unwrap();
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(File::open(&tables[1].path).unwrap()).unwrap();
    assert_eq!(builder.metadata().num_row_groups(), 1);
    let schema = builder.schema().clone();
    assert_eq!(schema, polder_sample_data::traffic_counts_schema());
    let batches: Vec<RecordBatch> = builder.build().unwrap().collect::<Result<_, _>>().unwrap();
    let from_file = concat_batches(&schema, &batches).unwrap();
    assert_eq!(
        from_file,
        polder_sample_data::traffic_counts("rotterdam").unwrap()
    );
}

#[test]
fn geojson_is_an_rfc_7946_feature_collection() {
    let dir = tempfile::tempdir().unwrap();
    for city in CITIES {
        let tables = write_city(city, dir.path()).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&read(&tables[2].path)).unwrap();
        assert_eq!(json["type"], "FeatureCollection");
        assert!(json.get("crs").is_none());
        let features = json["features"].as_array().unwrap();
        assert_eq!(features.len(), 12);
        let table = polder_sample_data::neighbourhoods(city).unwrap();
        let codes = table
            .column_by_name("code")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        for (index, feature) in features.iter().enumerate() {
            assert_eq!(feature["type"], "Feature");
            let properties = &feature["properties"];
            assert_eq!(properties["code"], codes.value(index));
            for key in ["code", "name", "municipality_code", "municipality"] {
                assert!(properties[key].is_string(), "{city} {key}");
            }
            for key in ["population", "households"] {
                assert!(
                    properties[key].as_u64().is_some_and(|n| n > 0),
                    "{city} {key}"
                );
            }
            for key in ["area_ha", "share_65_plus"] {
                assert!(properties[key].is_f64(), "{city} {key}");
            }
            assert_eq!(feature["geometry"]["type"], "Polygon");
            let rings = feature["geometry"]["coordinates"].as_array().unwrap();
            assert_eq!(rings.len(), 1);
            let ring: Vec<[f64; 2]> = serde_json::from_value(rings[0].clone()).unwrap();
            assert!(ring.len() >= 4);
            assert_eq!(
                ring.first(),
                ring.last(),
                "{city} ring {index} is not closed"
            );
            // Exterior rings are counter-clockwise (positive signed area in lon/lat).
            let signed: f64 = ring
                .windows(2)
                .map(|w| w[0][0] * w[1][1] - w[1][0] * w[0][1])
                .sum();
            assert!(signed > 0.0, "{city} ring {index} is clockwise");
        }
    }
}
