//! TPC-H tables as Parquet files, generated with the `tpchgen` crates.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

/// The eight TPC-H tables.
pub const TABLES: &[&str] = &[
    "nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem",
];

const BATCH_ROWS: usize = 64 * 1024;

/// Writes `<out>/<table>.parquet` for every TPC-H table at scale factor `sf`, skipping files
/// that exist already. Returns the paths.
pub fn generate(sf: f64, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut paths = vec![];
    for table in TABLES {
        let path = out.join(format!("{table}.parquet"));
        if !path.exists() {
            let tmp = out.join(format!(".{table}.parquet.tmp"));
            let batches: Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>>> = match *table {
                "nation" => Box::new(
                    NationArrow::new(NationGenerator::new(sf, 1, 1)).with_batch_size(BATCH_ROWS),
                ),
                "region" => Box::new(
                    RegionArrow::new(RegionGenerator::new(sf, 1, 1)).with_batch_size(BATCH_ROWS),
                ),
                "part" => Box::new(
                    PartArrow::new(PartGenerator::new(sf, 1, 1)).with_batch_size(BATCH_ROWS),
                ),
                "supplier" => Box::new(
                    SupplierArrow::new(SupplierGenerator::new(sf, 1, 1))
                        .with_batch_size(BATCH_ROWS),
                ),
                "partsupp" => Box::new(
                    PartSuppArrow::new(PartSuppGenerator::new(sf, 1, 1))
                        .with_batch_size(BATCH_ROWS),
                ),
                "customer" => Box::new(
                    CustomerArrow::new(CustomerGenerator::new(sf, 1, 1))
                        .with_batch_size(BATCH_ROWS),
                ),
                "orders" => Box::new(
                    OrderArrow::new(OrderGenerator::new(sf, 1, 1)).with_batch_size(BATCH_ROWS),
                ),
                "lineitem" => Box::new(
                    LineItemArrow::new(LineItemGenerator::new(sf, 1, 1))
                        .with_batch_size(BATCH_ROWS),
                ),
                _ => unreachable!("every table is listed"),
            };
            write_parquet(batches, &tmp)?;
            std::fs::rename(&tmp, &path)?;
        }
        paths.push(path);
    }
    Ok(paths)
}

fn write_parquet(
    mut batches: impl Iterator<Item = Result<RecordBatch, ArrowError>>,
    path: &Path,
) -> anyhow::Result<()> {
    let first = batches.next().context("generator produced no batch")??;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(1024 * 1024))
        .build();
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut writer = ArrowWriter::try_new(file, first.schema(), Some(props))?;
    writer.write(&first)?;
    for batch in batches {
        writer.write(&batch?)?;
    }
    writer.close()?;
    Ok(())
}
