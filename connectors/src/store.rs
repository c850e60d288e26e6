//! Object stores behind dataset locations: S3, GCS, Azure and HTTP, configured from the
//! dataset's `storage_options` and the standard environment variables of each store.

use std::sync::Arc;

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::prelude::SessionContext;
use object_store::ObjectStore;
use url::Url;

use crate::config::FileTableConfig;
use crate::error::{Error, Result};

/// Parses a dataset's location (path, glob or URL).
pub fn parse_location(config: &FileTableConfig) -> Result<ListingTableUrl> {
    ListingTableUrl::parse(&config.location).map_err(|e| Error::InvalidConfig {
        table: config.name.clone(),
        message: format!("location '{}' is not a path or URL: {e}", config.location),
    })
}

/// Parses a dataset's location, registers its object store with the session and returns both.
pub fn open_location(
    ctx: &SessionContext,
    config: &FileTableConfig,
) -> Result<(ListingTableUrl, Arc<dyn ObjectStore>)> {
    let url = parse_location(config)?;
    register_store(ctx, config, &url)?;
    let store = ctx
        .runtime_env()
        .object_store(url.object_store())
        .map_err(|e| Error::Unreadable {
            table: config.name.clone(),
            location: config.location.clone(),
            message: e.strip_backtrace(),
        })?;
    Ok((url, store))
}

/// Registers the object store a dataset's URL needs with the session (local files need none).
pub fn register_store(
    ctx: &SessionContext,
    config: &FileTableConfig,
    url: &ListingTableUrl,
) -> Result<()> {
    let store_url = url.object_store();
    let base: &Url = store_url.as_ref();
    if base.scheme() == "file" {
        // Options configure object stores; on a local path any of them is a mistake (a
        // typo of an option, or a location that was meant to be remote), so say which.
        if !config.storage_options.is_empty() {
            let names: Vec<&str> = config.storage_options.keys().map(String::as_str).collect();
            return Err(Error::InvalidConfig {
                table: config.name.clone(),
                message: format!(
                    "storage option(s) {} given for the local location '{}': storage options \
                     configure object stores (s3://, gs://, az://, http(s)://) and mean \
                     nothing for local files",
                    names.join(", "),
                    config.location
                ),
            });
        }
        return Ok(());
    }
    let store = build_store(config, base)?;
    ctx.register_object_store(base, store);
    Ok(())
}

/// Builds the object store for `base` (scheme and authority of a dataset URL).
pub fn build_store(config: &FileTableConfig, base: &Url) -> Result<Arc<dyn ObjectStore>> {
    let invalid = |message: String| Error::InvalidConfig {
        table: config.name.clone(),
        message,
    };
    // Every store's builder takes its own key type; each is parsed from the option's name.
    macro_rules! build {
        ($builder:expr) => {{
            let mut builder = $builder;
            for (key, value) in &config.storage_options {
                let key = key
                    .parse()
                    .map_err(|e| invalid(format!("storage option '{key}': {e}")))?;
                builder = builder.with_config(key, value);
            }
            Arc::new(builder.build().map_err(|e| invalid(e.to_string()))?) as Arc<dyn ObjectStore>
        }};
    }
    let store = match base.scheme() {
        "s3" | "s3a" => {
            build!(object_store::aws::AmazonS3Builder::from_env().with_url(base.as_str()))
        }
        "gs" => {
            build!(object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(base.as_str()))
        }
        "az" | "azure" | "abfs" | "abfss" => {
            build!(object_store::azure::MicrosoftAzureBuilder::from_env().with_url(base.as_str()))
        }
        "http" | "https" => build!(
            object_store::http::HttpBuilder::new()
                .with_url(base.as_str())
                .with_config(
                    object_store::ClientConfigKey::AllowHttp,
                    (base.scheme() == "http").to_string()
                )
        ),
        other => {
            return Err(invalid(format!(
                "location scheme '{other}' is not supported (use a path, file://, s3://, gs://, az:// or http(s)://)"
            )));
        }
    };
    Ok(store)
}

/// What storage says about a dataset's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Number of files.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// The newest modification time among them.
    pub last_modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// Counts a dataset's files, their bytes and their newest modification time, by listing
/// its location in object storage (or the local file system).
pub async fn source_stats(ctx: &SessionContext, config: &FileTableConfig) -> Result<SourceStats> {
    use futures::StreamExt;
    use object_store::ObjectStoreExt;
    let (url, store) = open_location(ctx, config)?;
    let unreadable = |e: object_store::Error| Error::Unreadable {
        table: config.name.clone(),
        location: config.location.clone(),
        message: e.to_string(),
    };
    let mut stats = SourceStats::default();
    let mut add = |meta: &object_store::ObjectMeta| {
        stats.files += 1;
        stats.bytes += meta.size;
        if stats.last_modified.is_none_or(|m| m < meta.last_modified) {
            stats.last_modified = Some(meta.last_modified);
        }
    };
    if !url.is_collection()
        && let Ok(meta) = store.head(url.prefix()).await
    {
        add(&meta);
        return Ok(stats);
    }
    let mut listing = store.list(Some(url.prefix()));
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(unreadable)?;
        if url.contains(&meta.location, false) {
            add(&meta);
        }
    }
    Ok(stats)
}
