//! Loading the configured datasets into the node's SQL catalog, and their readiness.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::prelude::SessionContext;
use parking_lot::RwLock;
use polder_connectors::{FileTableConfig, GeoJsonOptions, open_file_table};
use serde::Serialize;
use tracing::{info, warn};

/// Scheme of locations that name the bundled sample data: `sample://<city>/<table>`.
pub const SAMPLE_SCHEME: &str = "sample://";

/// The schema every dataset of a node lives in.
pub const SCHEMA: &str = "public";

/// What `/readyz` reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Readiness {
    /// True once every dataset was loaded or skipped.
    pub ready: bool,
    /// Datasets being served.
    pub tables: Vec<String>,
    /// Optional datasets that could not be loaded, with the reason.
    pub skipped: BTreeMap<String, String>,
}

/// Readiness shared between the loader and the HTTP service.
pub type SharedReadiness = Arc<RwLock<Readiness>>;

/// Registers the node's catalog (`<node>.public`) in `ctx`.
pub fn register_catalog(ctx: &SessionContext, node: &str) -> Arc<dyn SchemaProvider> {
    let catalog = MemoryCatalogProvider::new();
    let schema: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
    catalog
        .register_schema(SCHEMA, Arc::clone(&schema))
        .expect("a new catalog accepts a schema");
    ctx.register_catalog(node, Arc::new(catalog));
    schema
}

/// Generated sample data, kept on disk for as long as the node runs.
#[derive(Debug, Default)]
pub struct SampleFiles {
    dir: Option<tempfile::TempDir>,
    cities: BTreeMap<String, Vec<polder_sample_data::SampleTable>>,
}

impl SampleFiles {
    /// The file of `sample://<city>/<table>`, generating the city's data on first use.
    pub fn resolve(&mut self, location: &str) -> anyhow::Result<String> {
        let rest = location.strip_prefix(SAMPLE_SCHEME).unwrap_or(location);
        let (city, table) = rest.split_once('/').ok_or_else(|| {
            anyhow::anyhow!("sample location '{location}' must be sample://<city>/<table>")
        })?;
        if !polder_sample_data::is_city(city) {
            anyhow::bail!(
                "sample location '{location}': no sample city '{city}' (choose from {})",
                polder_sample_data::CITIES.join(", ")
            );
        }
        if !self.cities.contains_key(city) {
            if self.dir.is_none() {
                self.dir = Some(
                    tempfile::Builder::new()
                        .prefix("polder-sample-")
                        .tempdir()?,
                );
            }
            let dir: PathBuf = self.dir.as_ref().expect("created above").path().join(city);
            let tables = polder_sample_data::write_city(city, &dir)?;
            self.cities.insert(city.to_string(), tables);
        }
        let tables = &self.cities[city];
        let found = tables.iter().find(|t| t.name == table).ok_or_else(|| {
            let names: Vec<_> = tables.iter().map(|t| t.name).collect();
            anyhow::anyhow!(
                "sample location '{location}': no sample table '{table}' (choose from {})",
                names.join(", ")
            )
        })?;
        Ok(found.path.display().to_string())
    }
}

/// The tables served when none are configured: the sample data of `city`.
pub fn sample_tables(city: &str) -> Vec<FileTableConfig> {
    ["air_quality", "traffic_counts", "neighbourhoods"]
        .into_iter()
        .map(|t| FileTableConfig::new(t, format!("{SAMPLE_SCHEME}{city}/{t}")))
        .collect()
}

/// Opens every dataset and registers it; a failing mandatory dataset fails the whole load.
/// Returns the loaded datasets with their locations resolved (sample data on disk).
pub async fn load_all(
    ctx: &SessionContext,
    schema: &Arc<dyn SchemaProvider>,
    tables: &[FileTableConfig],
    geojson: GeoJsonOptions,
    samples: &mut SampleFiles,
    readiness: &SharedReadiness,
) -> anyhow::Result<Vec<FileTableConfig>> {
    let mut loaded = Vec::with_capacity(tables.len());
    for table in tables {
        let mut resolved = table.clone();
        let opened = async {
            if table.location.starts_with(SAMPLE_SCHEME) {
                resolved.location = samples.resolve(&table.location)?;
            }
            Ok::<_, anyhow::Error>(open_file_table(ctx, &resolved, geojson).await?)
        }
        .await;
        match opened {
            Ok(provider) => {
                schema.register_table(table.name.clone(), provider)?;
                info!(table = %table.name, location = %table.location, "dataset loaded");
                readiness.write().tables.push(table.name.clone());
                loaded.push(resolved);
            }
            Err(err) if table.optional => {
                warn!(table = %table.name, error = %err, "optional dataset skipped");
                readiness
                    .write()
                    .skipped
                    .insert(table.name.clone(), err.to_string());
            }
            Err(err) => {
                return Err(err.context(format!(
                    "cannot load dataset '{}' from '{}'",
                    table.name, table.location
                )));
            }
        }
    }
    Ok(loaded)
}
