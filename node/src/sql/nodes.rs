//! Which catalogs of each node the shell federates.
//!
//! A node may serve several catalogs: its own, and those of the peers it federates itself. A
//! node given as `NAME=URL` appears as catalog NAME with the node's own catalog (whatever the
//! node calls it), and each further catalog of the node appears under its own name, reached
//! through that node, unless another node of the session has the name. `NAME=URL#CATALOG`
//! picks one catalog of the node and adds no others.

use std::collections::BTreeSet;
use std::time::Duration;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use futures::TryStreamExt;
use polder_federation::{FederationOptions, Peer, PeerConfig};

/// How long the shell waits for a node to list its catalogs before going on with the node as
/// given (its discovery then reports what is wrong).
const LIST_WAIT: Duration = Duration::from_secs(10);

/// `peers` with the catalog of each node given without one, and the further catalogs of those
/// nodes as peers of their own.
pub(crate) async fn expand(peers: Vec<PeerConfig>, options: &FederationOptions) -> Vec<PeerConfig> {
    let listed = futures::future::join_all(peers.iter().map(|peer| async move {
        match &peer.catalog {
            Some(_) => None,
            None => catalogs_of(peer, options).await,
        }
    }))
    .await;
    let mut taken: BTreeSet<String> = peers.iter().map(|p| p.name.clone()).collect();
    let mut expanded = Vec::with_capacity(peers.len());
    let mut further = vec![];
    for (mut peer, listed) in peers.into_iter().zip(listed) {
        if let Some((catalogs, own)) = listed {
            let chosen = if catalogs.contains(&peer.name) {
                Some(peer.name.clone())
            } else if catalogs.len() == 1 {
                catalogs.first().cloned()
            } else {
                own.filter(|own| catalogs.contains(own))
            };
            for catalog in &catalogs {
                if Some(catalog) == chosen.as_ref() {
                    continue;
                }
                let other = PeerConfig {
                    name: catalog.clone(),
                    url: peer.url.clone(),
                    catalog: Some(catalog.clone()),
                    compression: peer.compression,
                };
                if other.validate().is_ok() && taken.insert(catalog.clone()) {
                    further.push(other);
                }
            }
            peer.catalog = chosen;
        }
        expanded.push(peer);
    }
    expanded.extend(further);
    expanded
}

/// The catalogs a node serves, and which is its own (its default catalog, where unqualified
/// names resolve), when the node tells; None when it cannot be asked.
async fn catalogs_of(
    peer: &PeerConfig,
    options: &FederationOptions,
) -> Option<(Vec<String>, Option<String>)> {
    let node = Peer::new(peer.clone(), options.clone()).ok()?;
    let wait = LIST_WAIT.min(options.peer_timeout);
    let catalogs = tokio::time::timeout(
        wait,
        strings(
            &node,
            "SELECT DISTINCT table_catalog FROM information_schema.tables \
             WHERE table_schema <> 'information_schema' ORDER BY 1",
        ),
    )
    .await
    .ok()??;
    let own = tokio::time::timeout(
        wait,
        strings(
            &node,
            "SELECT value FROM information_schema.df_settings \
             WHERE name = 'datafusion.catalog.default_catalog'",
        ),
    )
    .await
    .ok()
    .flatten()
    .and_then(|values| values.into_iter().next());
    Some((catalogs, own))
}

/// The first column of a query's answer, as text.
async fn strings(node: &Peer, sql: &str) -> Option<Vec<String>> {
    let batches: Vec<RecordBatch> = node
        .query(sql.to_string())
        .await
        .ok()?
        .try_collect()
        .await
        .ok()?;
    let mut values = vec![];
    for batch in batches.iter().filter(|b| b.num_columns() > 0) {
        let column = cast(batch.column(0), &DataType::Utf8).ok()?;
        values.extend(
            column
                .as_string::<i32>()
                .iter()
                .flatten()
                .map(str::to_string),
        );
    }
    Some(values)
}
