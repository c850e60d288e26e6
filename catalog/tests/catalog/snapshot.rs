//! The whole catalog graph of a fixed configuration, compared with a committed snapshot.
//!
//! The configuration below touches every branch of [`polder_catalog::build`]: inherited and
//! overridden metadata, explicit and measured temporal coverage, geometry with a CRS, column
//! descriptions, every optional catalog field. Its inputs are pinned (no clock, no files), so
//! the graph is the same on every machine.
//!
//! The snapshot is canonical N-Triples: one triple a line, sorted. The builder's blank nodes
//! have stable labels (`_:contact-catalog`, `_:temporal-<table>`), so no relabelling is needed.
//! After an intended change of the catalog, rewrite it with
//! `UPDATE_SNAPSHOTS=1 cargo test -p polder-catalog --test catalog snapshot` and review the diff.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{TimeZone, Utc};
use polder_catalog::config::{
    AccessRights, AgentConfig, ColumnConfig, ContactConfig, TemporalConfig,
};
use polder_catalog::{CatalogConfig, DatasetConfig, TableFacts, build};

use super::node;

/// The catalog of the other tests, with every optional field set.
fn catalog_config() -> CatalogConfig {
    let base = super::catalog_config();
    CatalogConfig {
        publisher: base.publisher.clone().map(|publisher| AgentConfig {
            kind: Some("http://purl.org/adms/publishertype/LocalAuthority".into()),
            ..publisher
        }),
        creator: Some(AgentConfig {
            name: Some("Data team".into()),
            uri: Some("https://data.example.org/team".into()),
            kind: None,
        }),
        contact_point: base.contact_point.clone().map(|contact| ContactConfig {
            url: Some("https://example.org/contact".into()),
            ..contact
        }),
        themes: Some(vec!["REGI".into(), "ENVI".into()]),
        languages: vec!["nl".into(), "ENG".into()],
        keywords: vec!["city".into(), "open data".into()],
        homepage: Some("https://example.org/".into()),
        spatial: vec!["https://identifier.overheid.nl/tooi/id/gemeente/gm9999".into()],
        ..base
    }
}

/// The other tests' air-quality table (with a dictionary column and a modification time),
/// a table with geometry in a CRS, and a table the node knows nothing more of.
fn facts() -> Vec<TableFacts> {
    let air = super::facts().remove(0);
    let mut air_fields = air.schema.fields().to_vec();
    air_fields.push(Arc::new(Field::new(
        "kind",
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        true,
    )));
    let geometry = Field::new("geometry", DataType::Binary, true).with_metadata(HashMap::from([(
        "ARROW:extension:name".to_string(),
        "geoarrow.wkb".to_string(),
    )]));
    let trees = Arc::new(Schema::new_with_metadata(
        vec![
            Field::new("id", DataType::UInt32, false),
            Field::new("height", DataType::Decimal128(5, 2), true),
            Field::new("planted", DataType::Date32, true),
            Field::new(
                "measured",
                DataType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
            Field::new("tags", DataType::new_list(DataType::Utf8, true), true),
            geometry,
        ],
        HashMap::from([("geo:crs".to_string(), "EPSG:28992".to_string())]),
    ));
    let bare = Arc::new(Schema::new(vec![Field::new("v", DataType::Boolean, true)]));
    vec![
        TableFacts {
            schema: Arc::new(Schema::new(air_fields)),
            modified: Some(Utc.with_ymd_and_hms(2025, 11, 2, 8, 30, 0).unwrap()),
            ..air
        },
        TableFacts {
            name: "trees".into(),
            schema: trees,
            source_format: Some("parquet".into()),
            byte_size: Some(98765),
            modified: Some(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()),
            row_count: Some(7),
            temporal: Some(("2001-01-01".into(), "2024-12-31".into())),
            unmapped_records: None,
        },
        TableFacts {
            name: "bare table".into(),
            schema: bare,
            source_format: None,
            byte_size: None,
            modified: None,
            row_count: None,
            temporal: None,
            unmapped_records: None,
        },
    ]
}

fn datasets() -> BTreeMap<String, DatasetConfig> {
    let air = DatasetConfig {
        update_frequency: Some("HOURLY".into()),
        landing_page: Some("https://example.org/air".into()),
        ..super::datasets().remove("air_quality").unwrap()
    };
    let trees = DatasetConfig {
        title: Some("Trees".into()),
        description: Some("Every tree the city looks after.".into()),
        keywords: Some(vec!["trees".into()]),
        publisher: Some(AgentConfig {
            name: Some("Parks".into()),
            uri: Some("https://example.org/parks".into()),
            kind: None,
        }),
        creator: Some(AgentConfig {
            name: Some("Surveyors".into()),
            uri: Some("https://example.org/surveyors".into()),
            kind: Some("http://purl.org/adms/publishertype/Company".into()),
        }),
        contact_point: Some(ContactConfig {
            name: Some("Parks desk".into()),
            email: None,
            url: Some("https://example.org/parks/contact".into()),
        }),
        license: Some("http://creativecommons.org/licenses/by/4.0/".into()),
        access_rights: Some(AccessRights::Restricted),
        spatial: Some(vec!["https://example.org/park".into()]),
        temporal: Some(TemporalConfig {
            start: Some("1990-01-01".into()),
            end: None,
        }),
        modified: Some("2025-12-24T10:00:00+01:00".into()),
        columns: BTreeMap::from([(
            "height".to_string(),
            ColumnConfig {
                title: None,
                description: Some("Height in metres".into()),
                unit: None,
            },
        )]),
        ..DatasetConfig::default()
    };
    BTreeMap::from([
        ("air_quality".to_string(), air),
        ("trees".to_string(), trees),
    ])
}

/// The graph as canonical N-Triples: one triple a line, sorted, ending in a newline.
fn canonical_ntriples() -> String {
    let tables: Vec<String> = facts().iter().map(|t| t.name.clone()).collect();
    let metadata = catalog_config().resolve(&datasets(), &tables).unwrap();
    let triples = build(&metadata, &node(), &facts(), &datasets()).unwrap();
    let mut lines: Vec<String> = triples.iter().map(|t| format!("{t} .")).collect();
    lines.sort();
    lines.dedup();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn catalog_graph_matches_the_snapshot() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/catalog.nt");
    let actual = canonical_ntriples();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_SNAPSHOTS=1 writes it)", path.display()));
    if actual != expected {
        let actual: Vec<&str> = actual.lines().collect();
        let expected: Vec<&str> = expected.lines().collect();
        let missing: Vec<_> = expected.iter().filter(|l| !actual.contains(l)).collect();
        let added: Vec<_> = actual.iter().filter(|l| !expected.contains(l)).collect();
        panic!(
            "the catalog graph differs from {}\nmissing:\n{missing:#?}\nadded:\n{added:#?}\n\
             (UPDATE_SNAPSHOTS=1 rewrites the snapshot after an intended change)",
            path.display()
        );
    }
}
