//! Configuration of one file-based dataset, as it appears in the node's TOML file.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A dataset read from files: local paths, directories, globs or object-store URLs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTableConfig {
    /// SQL name of the table (`<node>.public.<name>`).
    pub name: String,
    /// A file, a directory or a glob; a local path or a `file://`, `s3://`, `gs://`, `az://`,
    /// `http(s)://` URL.
    pub location: String,
    /// The file format; by default taken from the location's extension.
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// When true, a dataset that cannot be loaded is reported in `/readyz` and skipped instead of
    /// failing startup.
    #[serde(default)]
    pub optional: bool,
    /// Rows read to infer the column types of CSV, TSV and NDJSON data, across files. A
    /// column whose sampled values are all empty is served as text, so no value is lost.
    #[serde(default = "default_schema_infer_max_records")]
    pub schema_infer_max_records: usize,
    /// Options for CSV and TSV files.
    #[serde(default)]
    pub csv: CsvConfig,
    /// Options for the object store (credentials, region, endpoint), passed to `object_store`
    /// by their names there (e.g. `aws_region`, `aws_endpoint`); environment variables work too.
    #[serde(default)]
    pub storage_options: BTreeMap<String, String>,
    /// For `format = "sensorthings"`: the entity set to read and how.
    #[serde(default)]
    pub sensorthings: Option<crate::sensorthings::SensorThingsConfig>,
    /// For `format = "postgres"`: the table or view, credentials and pool.
    #[serde(default)]
    pub postgres: Option<crate::postgres::PostgresConfig>,
}

impl FileTableConfig {
    /// A dataset named `name` at `location` with every option at its default.
    pub fn new(name: impl Into<String>, location: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            location: location.into(),
            format: None,
            optional: false,
            schema_infer_max_records: default_schema_infer_max_records(),
            csv: CsvConfig::default(),
            storage_options: BTreeMap::new(),
            sensorthings: None,
            postgres: None,
        }
    }
}

/// File formats a node reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// Apache Parquet.
    Parquet,
    /// Comma-separated values (the delimiter can be changed).
    Csv,
    /// Tab-separated values.
    Tsv,
    /// Newline-delimited JSON, one object per line.
    Ndjson,
    /// Arrow IPC file format (Feather v2).
    Arrow,
    /// GeoJSON FeatureCollection: a row per feature, geometry as WKB.
    Geojson,
    /// sensor.community archive CSV, as observations ([`crate::citizen`]).
    #[serde(rename = "sensor-community")]
    SensorCommunity,
    /// Snuffelfiets export CSV, as observations ([`crate::citizen`]).
    Snuffelfiets,
    /// Telraam hourly counts (JSON per device and month), as observations
    /// ([`crate::citizen`]).
    Telraam,
    /// An entity set of an OGC SensorThings API service ([`crate::sensorthings`]).
    #[serde(rename = "sensorthings")]
    SensorThings,
    /// A table or view of a PostgreSQL/PostGIS database ([`crate::postgres`]).
    Postgres,
}

impl FileFormat {
    /// The format named by a location's extension, looking through a compression suffix.
    pub fn from_location(location: &str) -> Option<Self> {
        let path = location.split(['?', '#']).next().unwrap_or(location);
        let mut name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
        for suffix in [".gz", ".bz2", ".xz", ".zst"] {
            if let Some(stripped) = name.strip_suffix(suffix) {
                name = stripped.to_string();
            }
        }
        let ext = name.rsplit_once('.')?.1;
        Some(match ext {
            "parquet" | "pq" => Self::Parquet,
            "csv" => Self::Csv,
            "tsv" | "tab" => Self::Tsv,
            "json" | "ndjson" | "jsonl" => Self::Ndjson,
            "arrow" | "ipc" | "feather" | "arrows" => Self::Arrow,
            "geojson" => Self::Geojson,
            _ => return None,
        })
    }

    /// The format's name, as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Csv => "csv",
            Self::Tsv => "tsv",
            Self::Ndjson => "ndjson",
            Self::Arrow => "arrow",
            Self::Geojson => "geojson",
            Self::SensorCommunity => "sensor-community",
            Self::Snuffelfiets => "snuffelfiets",
            Self::Telraam => "telraam",
            Self::SensorThings => "sensorthings",
            Self::Postgres => "postgres",
        }
    }

    /// Whether the source is a service (a database, an API) rather than files.
    pub fn is_service(self) -> bool {
        matches!(self, Self::SensorThings | Self::Postgres)
    }

    /// Whether this is a citizen-measurement format, served in the observation model.
    pub fn is_citizen(self) -> bool {
        matches!(
            self,
            Self::SensorCommunity | Self::Snuffelfiets | Self::Telraam
        )
    }

    /// The extension files of this format have in a directory.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Parquet => ".parquet",
            Self::Csv => ".csv",
            Self::Tsv => ".tsv",
            Self::Ndjson => ".json",
            Self::Arrow => ".arrow",
            Self::Geojson => ".geojson",
            Self::SensorCommunity | Self::Snuffelfiets => ".csv",
            Self::Telraam | Self::SensorThings => ".json",
            Self::Postgres => "",
        }
    }
}

/// Options for CSV and TSV files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// Whether the first line holds the column names.
    #[serde(default = "default_true")]
    pub has_header: bool,
    /// Field delimiter, one character (default `,`; `\t` for TSV).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// Quote character.
    #[serde(default = "default_quote")]
    pub quote: char,
    /// Escape character inside quoted fields (default: doubled quotes).
    #[serde(default)]
    pub escape: Option<char>,
    /// Lines starting with this character are skipped.
    #[serde(default)]
    pub comment: Option<char>,
    /// Whether quoted values may contain line breaks (slower: files are not split).
    #[serde(default)]
    pub newlines_in_values: bool,
    /// A regular expression; matching values are read as NULL (default: empty values).
    #[serde(default)]
    pub null_regex: Option<String>,
}

impl Default for CsvConfig {
    fn default() -> Self {
        Self {
            has_header: true,
            delimiter: None,
            quote: '"',
            escape: None,
            comment: None,
            newlines_in_values: false,
            null_regex: None,
        }
    }
}

fn default_schema_infer_max_records() -> usize {
    100_000
}

fn default_true() -> bool {
    true
}

fn default_quote() -> char {
    '"'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_extension() {
        assert_eq!(
            FileFormat::from_location("a/b.parquet"),
            Some(FileFormat::Parquet)
        );
        assert_eq!(
            FileFormat::from_location("s3://b/x.CSV.gz"),
            Some(FileFormat::Csv)
        );
        assert_eq!(FileFormat::from_location("d/*.tsv"), Some(FileFormat::Tsv));
        assert_eq!(
            FileFormat::from_location("x.geojson"),
            Some(FileFormat::Geojson)
        );
        assert_eq!(FileFormat::from_location("data/dir"), None);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err =
            toml::from_str::<FileTableConfig>("name='a'\nlocation='b'\nfromat='csv'").unwrap_err();
        assert!(err.to_string().contains("fromat"), "{err}");
    }
}
