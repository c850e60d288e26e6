//! Citizen measurements in one observation model: the exports of sensor.community,
//! Snuffelfiets and Telraam, each a named format (`format = "sensor-community"`,
//! `"snuffelfiets"`, `"telraam"`), mapped onto one table aligned with SOSA/SSN, so that one SQL
//! query compares initiatives.
//!
//! Every format gives the columns of [`observation_schema`]: the sensor that made the
//! observation (`sosa:madeBySensor`), the observed property, the feature of interest, the
//! phenomenon time (UTC), the result in a normalised unit (µg/m³ for particulate matter,
//! counts per hour for traffic, °C, % relative humidity), the unit, a quality statement and the
//! position (WGS 84, also as a WKB point). One row of a source may give several observations
//! (a sensor.community row holds PM10 and PM2.5).
//!
//! What cannot be mapped is counted by reason, never dropped silently ([`Rejections`]): a
//! row without a readable time or sensor, a value that is not a number, a file that does not
//! parse. The node reports the counts in `/readyz` and the catalog.
//!
//! The table streams: each query reads the files again, one at a time, and maps them batch by
//! batch (a `StreamingTable` of [`open_citizen_table`]); only the counts of the startup pass are
//! kept.

mod model;
mod sensor_community;
mod snuffelfiets;
mod telraam;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;

pub use model::{HUMID_PERCENT, observation_schema};

use crate::config::{FileFormat, FileTableConfig};
use crate::error::{Error, Result};

/// What could not be mapped, by reason ("time not readable", "P1 is not a number", ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rejections(pub BTreeMap<String, u64>);

impl Rejections {
    /// Counts one more of `reason`.
    pub fn add(&mut self, reason: impl Into<String>) {
        *self.0.entry(reason.into()).or_default() += 1;
    }

    /// All counts together.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    fn merge(&mut self, other: Rejections) {
        for (reason, count) in other.0 {
            *self.0.entry(reason).or_default() += count;
        }
    }
}

/// The startup pass over a citizen dataset: what it holds and what could not be mapped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CitizenReport {
    /// The format's name.
    pub format: String,
    /// Files read.
    pub files: u64,
    /// Observations mapped.
    pub observations: u64,
    /// What could not be mapped, by reason.
    pub rejected: Rejections,
}

/// Maps one file of a format into observation batches, counting what it cannot map.
fn map_file(format: FileFormat, bytes: &[u8], rejected: &mut Rejections) -> Vec<RecordBatch> {
    match format {
        FileFormat::SensorCommunity => sensor_community::map(bytes, rejected),
        FileFormat::Snuffelfiets => snuffelfiets::map(bytes, rejected),
        FileFormat::Telraam => telraam::map(bytes, rejected),
        other => unreachable!("{} is not a citizen format", other.name()),
    }
}

/// Largest file of a citizen dataset, in bytes: files are read whole, one at a time.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Opens a citizen dataset: lists its files, reads them all once to count what maps and what
/// does not, and returns the streaming table with that report.
pub async fn open_citizen_table(
    ctx: &SessionContext,
    config: &FileTableConfig,
    format: FileFormat,
) -> Result<(Arc<dyn TableProvider>, CitizenReport)> {
    let (url, store) = crate::store::open_location(ctx, config)?;
    let unreadable = |message: String| Error::Unreadable {
        table: config.name.clone(),
        location: config.location.clone(),
        message,
    };
    let mut files: Vec<(Path, u64)> = Vec::new();
    if !url.is_collection()
        && let Ok(meta) = store.head(url.prefix()).await
    {
        files.push((meta.location, meta.size));
    } else {
        // A glob selects by itself; a directory holds the format's files.
        let glob = config.location.contains(['*', '?', '[']);
        let mut listing = store.list(Some(url.prefix()));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| unreadable(e.to_string()))?;
            if url.contains(&meta.location, false)
                && (glob || meta.location.as_ref().ends_with(format.extension()))
            {
                files.push((meta.location, meta.size));
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(unreadable(format!("no {} files found", format.name())));
    }
    if let Some((path, size)) = files.iter().find(|(_, size)| *size > MAX_FILE_BYTES) {
        return Err(unreadable(format!(
            "file {path} is {size} bytes; files of citizen formats may be at most {MAX_FILE_BYTES} bytes"
        )));
    }
    let mut report = CitizenReport {
        format: format.name().to_string(),
        files: files.len() as u64,
        ..CitizenReport::default()
    };
    for (path, _) in &files {
        let bytes = read(&store, path)
            .await
            .map_err(|e| unreadable(format!("{path}: {e}")))?;
        let mut rejected = Rejections::default();
        for batch in map_file(format, &bytes, &mut rejected) {
            report.observations += batch.num_rows() as u64;
        }
        report.rejected.merge(rejected);
    }
    let paths: Vec<Path> = files.into_iter().map(|(p, _)| p).collect();
    let partitions = ctx
        .state()
        .config()
        .target_partitions()
        .clamp(1, paths.len());
    let schema = observation_schema();
    let streams: Vec<Arc<dyn PartitionStream>> = (0..partitions)
        .map(|i| {
            Arc::new(CitizenFiles {
                schema: Arc::clone(&schema),
                store: Arc::clone(&store),
                format,
                table: config.name.clone(),
                files: paths.iter().skip(i).step_by(partitions).cloned().collect(),
            }) as Arc<dyn PartitionStream>
        })
        .collect();
    let table = StreamingTable::try_new(schema, streams).map_err(|e| Error::InvalidConfig {
        table: config.name.clone(),
        message: e.strip_backtrace(),
    })?;
    Ok((Arc::new(table), report))
}

async fn read(store: &Arc<dyn ObjectStore>, path: &Path) -> object_store::Result<bytes::Bytes> {
    store.get(path).await?.bytes().await
}

/// The files of one partition of a citizen table, read and mapped one at a time when queried.
struct CitizenFiles {
    schema: SchemaRef,
    store: Arc<dyn ObjectStore>,
    format: FileFormat,
    table: String,
    files: Vec<Path>,
}

impl Debug for CitizenFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CitizenFiles")
            .field("format", &self.format)
            .field("files", &self.files.len())
            .finish()
    }
}

impl PartitionStream for CitizenFiles {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let store = Arc::clone(&self.store);
        let format = self.format;
        let table = self.table.clone();
        let batches = futures::stream::iter(self.files.clone())
            .then(move |path| {
                let store = Arc::clone(&store);
                let table = table.clone();
                async move {
                    // A file that went away or cannot be read fails the query, naming the
                    // dataset: never an answer with part of the data missing.
                    let bytes = read(&store, &path).await.map_err(|e| {
                        DataFusionError::External(
                            format!("dataset '{table}': cannot read {path}: {e}").into(),
                        )
                    })?;
                    let mut rejected = Rejections::default();
                    let batches = map_file(format, &bytes, &mut rejected);
                    Ok::<_, DataFusionError>(futures::stream::iter(batches.into_iter().map(Ok)))
                }
            })
            .map(|mapped| match mapped {
                Ok(batches) => batches.left_stream(),
                Err(e) => futures::stream::once(async move { Err(e) }).right_stream(),
            })
            .flatten();
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        ))
    }
}

#[cfg(test)]
mod tests;
