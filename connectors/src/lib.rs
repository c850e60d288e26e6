//! Connectors: every data source a Polder node serves is a DataFusion
//! [`TableProvider`].
//!
//! [`open_file_table`] turns a [`FileTableConfig`] (a local path, directory, glob or
//! object-store URL, and a format) into a provider. Parquet, CSV/TSV, NDJSON and Arrow IPC are
//! DataFusion listing tables that stream from storage; GeoJSON is read by [`geojson`]; the
//! citizen-measurement formats (sensor.community, Snuffelfiets, Telraam) are mapped onto one
//! observation model by [`citizen`]; an OGC SensorThings API service is read page by page by
//! [`sensorthings`], a PostgreSQL/PostGIS table or view by [`postgres`].
//! [`identifier`] is the rule every node, table and peer name follows.

pub mod citizen;
pub mod config;
mod csv_schema;
mod detect;
pub mod error;
pub mod file;
pub mod geojson;
pub mod identifier;
pub mod postgres;
pub mod sensorthings;
pub mod store;

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::prelude::SessionContext;
use tracing::instrument;

pub use citizen::CitizenReport;
pub use config::{CsvConfig, FileFormat, FileTableConfig};
pub use error::{Error, Result};
pub use geojson::GeoJsonOptions;

/// A dataset opened: its table, and for a citizen format the report of its startup pass.
#[derive(Debug)]
pub struct Opened {
    /// The table.
    pub provider: Arc<dyn TableProvider>,
    /// What a citizen dataset holds and what of it could not be mapped.
    pub citizen: Option<CitizenReport>,
}

/// Opens the dataset `config` describes, with its schema known and its location checked.
#[instrument(skip_all, fields(table = %config.name, location = %config.location))]
pub async fn open_file_table(
    ctx: &SessionContext,
    config: &FileTableConfig,
    geojson: GeoJsonOptions,
) -> Result<Opened> {
    let plain = |provider| Opened {
        provider,
        citizen: None,
    };
    Ok(match resolve_format(ctx, config).await? {
        FileFormat::Geojson => plain(geojson::open_geojson_table(ctx, config, geojson).await?),
        FileFormat::SensorThings => plain(sensorthings::open_sensorthings_table(config).await?),
        FileFormat::Postgres => plain(postgres::open_postgres_table(config).await?),
        format if format.is_citizen() => {
            let (provider, report) = citizen::open_citizen_table(ctx, config, format).await?;
            Opened {
                provider,
                citizen: Some(report),
            }
        }
        other => plain(file::open_listing_table(ctx, config, other).await?),
    })
}

/// The format of a dataset: configured, else from the location's extension, else the one
/// format the files of a directory share.
pub async fn resolve_format(ctx: &SessionContext, config: &FileTableConfig) -> Result<FileFormat> {
    Ok(match config.format {
        Some(format) => format,
        None => match FileFormat::from_location(&config.location) {
            Some(format) => format,
            None => detect::format_of_collection(ctx, config).await?,
        },
    })
}
