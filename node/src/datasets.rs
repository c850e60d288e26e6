//! Loading the configured datasets into the node's SQL catalog, and their readiness.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::prelude::SessionContext;
use parking_lot::RwLock;
use polder_catalog::DatasetConfig;
use polder_catalog::config::ContactConfig;
use polder_catalog::sensors::{SensorConfig, TABLE as REGISTER_TABLE, Text};
use polder_connectors::{CitizenReport, FileTableConfig, GeoJsonOptions, open_file_table};
use serde::Serialize;
use tracing::{info, warn};

use crate::config::NodeConfig;

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
    /// Citizen-measurement datasets: files read, observations mapped, and what could not be
    /// mapped, by reason.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub citizen: BTreeMap<String, CitizenReport>,
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

/// Location of the `sensor_register` table: the register, written as GeoJSON at startup.
pub const REGISTER_LOCATION: &str = "register://sensors";

/// Generated sample data and the sensor register's GeoJSON, kept on disk for as long as the
/// node runs.
#[derive(Debug, Default)]
pub struct SampleFiles {
    dir: Option<tempfile::TempDir>,
    cities: BTreeMap<String, Vec<polder_sample_data::SampleTable>>,
    register: Option<String>,
}

impl SampleFiles {
    /// The GeoJSON the `sensor_register` table is read from.
    pub fn set_register(&mut self, geojson: String) {
        self.register = Some(geojson);
    }

    fn dir(&mut self) -> anyhow::Result<PathBuf> {
        if self.dir.is_none() {
            self.dir = Some(
                tempfile::Builder::new()
                    .prefix("polder-sample-")
                    .tempdir()?,
            );
        }
        Ok(self
            .dir
            .as_ref()
            .expect("created above")
            .path()
            .to_path_buf())
    }

    /// The file of the register's GeoJSON, written on first use.
    fn register_file(&mut self) -> anyhow::Result<String> {
        let geojson = self
            .register
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the sensor register was not given"))?;
        let path = self.dir()?.join("sensor_register.geojson");
        if !path.exists() {
            std::fs::write(&path, geojson)?;
        }
        Ok(path.display().to_string())
    }

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
            let dir: PathBuf = self.dir()?.join(city);
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

/// The sensor register of the sample data of `city`: its air-quality sensors, with the owner,
/// purpose and legal basis a municipality would state (marked as sample data).
pub fn sample_sensors(city: &str) -> anyhow::Result<Vec<SensorConfig>> {
    let sensors = polder_sample_data::sensors(city)?;
    Ok(sensors
        .into_iter()
        .map(|s| {
            let both = |nl: String, en: String| {
                Text::ByLanguage(BTreeMap::from([("nl".into(), nl), ("en".into(), en)]))
            };
            SensorConfig {
                id: Some(format!("{city}-pm-{}", s.id)),
                name: Some(both(
                    format!("Fijnstofsensor {} ({})", s.id, s.neighbourhood),
                    format!("Particulate matter sensor {} ({})", s.id, s.neighbourhood),
                )),
                kind: Some(both(
                    format!("Fijnstofsensor {} (voorbeeldgegevens)", s.kind),
                    format!("Particulate matter sensor {} (sample data)", s.kind),
                )),
                latitude: Some(s.latitude),
                longitude: Some(s.longitude),
                neighbourhood: Some(s.neighbourhood),
                observes: ["PM10", "PM2.5", "temperature", "relative humidity"]
                    .map(str::to_string)
                    .to_vec(),
                owner: Some(format!("Gemeente {} (sample data)", s.municipality)),
                purpose: Some(both(
                    "Luchtkwaliteit in de wijk volgen en bewoners erover informeren".into(),
                    "Following the air quality in the neighbourhood and informing residents".into(),
                )),
                legal_basis: Some(both(
                    "Taak van algemeen belang (Wet milieubeheer); geen persoonsgegevens".into(),
                    "Task in the public interest (Environmental Management Act); no personal \
                     data"
                        .into(),
                )),
                personal_data: Some(false),
                retention: Some(both("10 jaar".into(), "10 years".into())),
                contact: Some(ContactConfig {
                    name: Some("Polder project".into()),
                    email: None,
                    url: Some("https://github.com/polder-udn/polder".into()),
                }),
                dataset: Some("air_quality".into()),
            }
        })
        .collect())
}

/// Adds the `sensor_register` table (and its catalog metadata, unless configured) when the
/// node has a register; a table of that name configured by hand is refused.
pub fn add_register_table(config: &mut NodeConfig) -> anyhow::Result<()> {
    let register = config.register()?;
    if register.is_empty() {
        return Ok(());
    }
    if config.tables.iter().any(|t| t.name == REGISTER_TABLE) {
        anyhow::bail!(
            "the table name '{REGISTER_TABLE}' belongs to the sensor register ([[sensors]]); give the configured table another name"
        );
    }
    let mut table = FileTableConfig::new(REGISTER_TABLE, REGISTER_LOCATION);
    table.format = Some(polder_connectors::FileFormat::Geojson);
    config.tables.push(table);
    config
        .datasets
        .entry(REGISTER_TABLE.to_string())
        .or_insert_with(|| DatasetConfig {
            title: Some("Sensor register".into()),
            description: Some(
                "The sensors this node operates in public space: position, what they measure, \
                 owner, purpose, legal basis, whether they process personal data, retention, \
                 contact and the dataset they feed. Residents read it at /sensors."
                    .into(),
            ),
            keywords: Some(vec!["sensors".into(), "sensor register".into()]),
            ..DatasetConfig::default()
        });
    Ok(())
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
            } else if table.location == REGISTER_LOCATION {
                resolved.location = samples.register_file()?;
            }
            Ok::<_, anyhow::Error>(open_file_table(ctx, &resolved, geojson).await?)
        }
        .await;
        match opened {
            Ok(opened) => {
                schema.register_table(table.name.clone(), opened.provider)?;
                info!(table = %table.name, location = %table.location, "dataset loaded");
                let mut ready = readiness.write();
                ready.tables.push(table.name.clone());
                if let Some(report) = opened.citizen {
                    if report.rejected.total() > 0 {
                        warn!(
                            table = %table.name,
                            unmapped = report.rejected.total(),
                            reasons = ?report.rejected.0,
                            "records of a citizen dataset could not be mapped; counted in /readyz and the catalog"
                        );
                    }
                    ready.citizen.insert(table.name.clone(), report);
                }
                drop(ready);
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
