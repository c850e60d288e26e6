//! Semi-join reduction across nodes, end to end: a join whose one side is small sends that
//! side's keys with the other side's remote query, so the other node sends only rows that join.

use datafusion::arrow::util::pretty::pretty_format_batches;
use polder_federation::{FederatedSession, FederationOptions, PeerConfig};
use polder_node::demo::start_city;
use polder_node::startup::RunningNode;

/// Utrecht's traffic in the five hours Amsterdam's air was worst: the Amsterdam part is five
/// rows; without their hours Utrecht would send every count it has.
const QUERY: &str = "
    SELECT t.segment_id, t.hour, t.car, a.pm
    FROM (SELECT date_trunc('hour', \"timestamp\") AS hour, max(pm2_5) AS pm
          FROM amsterdam.public.air_quality
          GROUP BY 1 ORDER BY pm DESC, hour LIMIT 5) a
    JOIN utrecht.public.traffic_counts t ON t.hour = a.hour
    ORDER BY t.hour, t.segment_id";

async fn run(peers: &[PeerConfig], options: &FederationOptions) -> (String, u64, u64) {
    let (ctx, federation) = polder_node::sql::client_session(peers, options)
        .await
        .expect("the federated session");
    let batches = ctx
        .sql(QUERY)
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    let rows_from = |federation: &FederatedSession, name: &str| {
        federation
            .catalogs
            .iter()
            .find(|c| c.peer().name() == name)
            .expect("the peer")
            .peer()
            .traffic()
            .rows
    };
    (
        pretty_format_batches(&batches).expect("prints").to_string(),
        rows_from(&federation, "utrecht"),
        rows_from(&federation, "amsterdam"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_of_a_small_join_side_narrow_what_the_other_node_sends() {
    let nodes = [
        start_city("amsterdam").await.expect("amsterdam starts"),
        start_city("utrecht").await.expect("utrecht starts"),
    ];
    let peers: Vec<PeerConfig> = nodes.iter().map(RunningNode::peer_config).collect();
    let off = FederationOptions {
        runtime_filter_max_bytes: 0,
        ..FederationOptions::default()
    };
    let (expected, all_rows, _) = run(&peers, &off).await;
    let (answer, narrowed_rows, amsterdam_rows) = run(&peers, &FederationOptions::default()).await;
    assert_eq!(answer, expected, "narrowing changed the answer");
    assert_eq!(
        amsterdam_rows, 5,
        "the Amsterdam part runs whole on its node"
    );
    let answer_rows = expected.lines().count() as u64 - 4;
    assert!(answer_rows > 0, "the query joins something:\n{expected}");
    assert_eq!(
        narrowed_rows, answer_rows,
        "Utrecht sent {narrowed_rows} rows for an answer of {answer_rows} (all rows: {all_rows})"
    );
    assert!(
        all_rows > 10 * answer_rows,
        "{all_rows} rows without narrowing"
    );
    for node in nodes {
        node.stop().await.expect("the node stops");
    }
}
