//! The format of a directory (or object-store prefix) named without an extension: the one
//! format its files share.

use std::collections::BTreeSet;

use datafusion::prelude::SessionContext;
use futures::StreamExt;

use crate::config::{FileFormat, FileTableConfig};
use crate::error::{Error, Result};

/// Files looked at to decide a directory's format.
const SAMPLE_FILES: usize = 1000;

/// Lists up to [`SAMPLE_FILES`] files under the location and returns their common format.
pub async fn format_of_collection(
    ctx: &SessionContext,
    config: &FileTableConfig,
) -> Result<FileFormat> {
    let unknown = |detail: &str| Error::InvalidConfig {
        table: config.name.clone(),
        message: format!(
            "cannot tell the format of '{}' {detail}; set `format` (parquet, csv, tsv, ndjson, arrow, geojson)",
            config.location
        ),
    };
    let (url, store) = crate::store::open_location(ctx, config)?;
    let mut listing = store.list(Some(url.prefix())).take(SAMPLE_FILES);
    let mut formats = BTreeSet::new();
    let mut files = 0;
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| Error::Unreadable {
            table: config.name.clone(),
            location: config.location.clone(),
            message: e.to_string(),
        })?;
        files += 1;
        if let Some(format) = FileFormat::from_location(meta.location.as_ref()) {
            formats.insert(format.extension());
        }
    }
    if files == 0 {
        return Err(Error::Unreadable {
            table: config.name.clone(),
            location: config.location.clone(),
            message: "no such file or directory, or it is empty".into(),
        });
    }
    match formats.len() {
        1 => {
            let ext = formats.into_iter().next().expect("one");
            Ok(FileFormat::from_location(&format!("x{ext}")).expect("a known extension"))
        }
        0 => Err(unknown("from the extensions of its files")),
        _ => Err(unknown(&format!(
            "because its files have several formats ({})",
            formats.into_iter().collect::<Vec<_>>().join(", ")
        ))),
    }
}
