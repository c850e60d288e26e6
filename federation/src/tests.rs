//! Plan-level tests of what a federated session sends its peers: each peer is a local
//! DataFusion session that records the SQL it is sent and answers it, so that a query answers
//! alike through the federation and on one session holding every table.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::catalog::{MemoryCatalogProvider, MemorySchemaProvider};
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{PhysicalExpr, SendableRecordBatchStream};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::unparser::dialect::Dialect;
use datafusion_federation::sql::{
    RemoteTableRef, SQLExecutor, SQLFederationProvider, SQLTableSource,
};
use futures::TryStreamExt;
use parking_lot::Mutex;

use crate::session::federated_state;

/// A peer that is a local session over its tables, recording the SQL it is sent.
struct LocalPeer {
    name: String,
    ctx: SessionContext,
    sent: Arc<Mutex<Vec<(String, String)>>>,
}

#[async_trait]
impl SQLExecutor for LocalPeer {
    fn name(&self) -> &str {
        &self.name
    }

    fn compute_context(&self) -> Option<String> {
        Some(self.name.clone())
    }

    fn dialect(&self) -> Arc<dyn Dialect> {
        Arc::new(crate::dialect::PeerDialect)
    }

    fn execute(
        &self,
        query: &str,
        schema: SchemaRef,
        _filters: &[Arc<dyn PhysicalExpr>],
    ) -> Result<SendableRecordBatchStream> {
        self.sent
            .lock()
            .push((self.name.clone(), query.to_string()));
        let ctx = self.ctx.clone();
        let sql = query.to_string();
        let batches =
            futures::stream::once(async move { ctx.sql(&sql).await?.execute_stream().await })
                .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
    }

    async fn table_names(&self) -> Result<Vec<String>> {
        Ok(vec![])
    }

    async fn get_table_schema(&self, table_name: &str) -> Result<SchemaRef> {
        Ok(self.ctx.table_provider(table_name).await?.schema())
    }
}

/// Tables of one peer: name, columns and rows of int64 columns (`None` is NULL; a column
/// whose name ends in `!` is declared non-nullable, one whose name ends in `32` is an int32
/// column, without the suffix).
type Tables<'a> = &'a [(&'a str, &'a [&'a str], Vec<Vec<Option<i64>>>)];

fn table(columns: &[&str], rows: &[Vec<Option<i64>>]) -> Arc<MemTable> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| match c.strip_suffix('!') {
                Some(name) => Field::new(name, DataType::Int64, false),
                None => Field::new(*c, DataType::Int64, true),
            })
            .map(|f| match f.name().strip_suffix("32") {
                Some(name) => Field::new(name, DataType::Int32, f.is_nullable()),
                None => f,
            })
            .collect::<Vec<_>>(),
    ));
    let arrays = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let column: ArrayRef = Arc::new(rows.iter().map(|r| r[i]).collect::<Int64Array>());
            cast(&column, f.data_type()).unwrap()
        })
        .collect();
    let batch = RecordBatch::try_new(Arc::clone(&schema), arrays).unwrap();
    Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())
}

/// A federated session over `peers`, a plain session with every table (the reference), and
/// the SQL each peer was sent.
struct Federation {
    federated: SessionContext,
    reference: SessionContext,
    sent: Arc<Mutex<Vec<(String, String)>>>,
}

impl Federation {
    fn new(peers: &[(&str, Tables)]) -> Self {
        let sent = Arc::new(Mutex::new(vec![]));
        let federated = SessionContext::new_with_state(federated_state(
            SessionConfig::new(),
            Arc::new(RuntimeEnv::default()),
        ));
        let reference = SessionContext::new();
        for (peer, tables) in peers {
            let local = SessionContext::new_with_config(
                SessionConfig::new().with_default_catalog_and_schema(*peer, "public"),
            );
            let remote_schema = Arc::new(MemorySchemaProvider::new());
            for (name, columns, rows) in tables.iter() {
                let data = table(columns, rows);
                local.register_table(*name, data.clone()).unwrap();
                reference.register_table(*name, data.clone()).unwrap();
            }
            let executor = Arc::new(LocalPeer {
                name: peer.to_string(),
                ctx: local,
                sent: Arc::clone(&sent),
            });
            let provider = Arc::new(SQLFederationProvider::new(executor));
            for (name, _, _) in tables.iter() {
                let schema = reference.table_provider(*name);
                let schema = futures::executor::block_on(schema).unwrap().schema();
                let source = SQLTableSource::new_with_schema(
                    Arc::clone(&provider),
                    RemoteTableRef::from(TableReference::full(*peer, "public", *name)),
                    schema,
                );
                remote_schema
                    .register_table(
                        name.to_string(),
                        crate::catalog::table_provider(Arc::new(source), true),
                    )
                    .unwrap();
            }
            let catalog = MemoryCatalogProvider::new();
            catalog.register_schema("public", remote_schema).unwrap();
            federated.register_catalog(*peer, Arc::new(catalog));
        }
        Self {
            federated,
            reference,
            sent,
        }
    }

    /// `sql` (tables named `{name}`) through the federation, checked against the reference;
    /// returns the SQL the peers were sent.
    async fn check(&self, sql: &str, homes: &[(&str, &str)]) -> Vec<String> {
        let sent = self.check_routed(sql, homes).await;
        sent.into_iter().map(|(_, sql)| sql).collect()
    }

    /// As [`Self::check`], with the peer each query was sent to, in the order sent.
    async fn check_routed(&self, sql: &str, homes: &[(&str, &str)]) -> Vec<(String, String)> {
        let (federated_sql, local_sql) = localize(sql, homes);
        self.sent.lock().clear();
        let expected = answer(&self.reference, &local_sql).await.unwrap();
        let got = answer(&self.federated, &federated_sql).await;
        let sent = self.sent.lock().clone();
        match got {
            Ok(got) => assert_eq!(got, expected, "sent: {sent:#?}"),
            Err(e) => panic!("{e}\nsent: {sent:#?}"),
        }
        sent
    }

    /// Runs `sql` (tables named `{name}`) on both sessions: a view, say.
    async fn both(&self, sql: &str, homes: &[(&str, &str)]) {
        let (federated_sql, local_sql) = localize(sql, homes);
        for (ctx, sql) in [
            (&self.federated, federated_sql),
            (&self.reference, local_sql),
        ] {
            ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        }
    }
}

/// `sql` with each table named `{name}` as the federation names it (`peer.public.name`) and as
/// the reference does (`name`).
fn localize(sql: &str, homes: &[(&str, &str)]) -> (String, String) {
    let mut federated_sql = sql.to_string();
    let mut local_sql = sql.to_string();
    for (name, peer) in homes {
        federated_sql =
            federated_sql.replace(&format!("{{{name}}}"), &format!("{peer}.public.{name}"));
        local_sql = local_sql.replace(&format!("{{{name}}}"), name);
    }
    (federated_sql, local_sql)
}

async fn answer(ctx: &SessionContext, sql: &str) -> Result<String> {
    let batches: Vec<RecordBatch> = ctx
        .sql(sql)
        .await?
        .execute_stream()
        .await?
        .try_collect()
        .await?;
    let mut lines: Vec<String> = pretty_format_batches(&batches)?
        .to_string()
        .lines()
        .map(String::from)
        .collect();
    // Sorted, so that row order does not matter.
    lines.sort();
    Ok(lines.join("\n"))
}

/// Runs `test` on a runtime with larger stacks: planning a federated query in a debug build
/// needs more than a test thread's 2 MiB.
fn run(test: impl Future<Output = ()> + Send + 'static) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_stack_size(16 << 20)
        .enable_all()
        .build()
        .unwrap();
    if let Err(panic) = runtime.block_on(runtime.spawn(test)) {
        std::panic::resume_unwind(panic.into_panic());
    }
}

fn tags() -> Vec<Vec<Option<i64>>> {
    vec![
        vec![Some(1), Some(10), Some(1)],
        vec![Some(1), Some(11), Some(2)],
        vec![Some(2), None, Some(3)],
        vec![None, Some(12), Some(4)],
    ]
}

#[test]
fn duplicate_group_keys_keep_their_meaning() {
    run(async {
        let f = Federation::new(&[("utrecht", &[("tags", &["k", "v", "id!"], tags())])]);
        let homes = &[("tags", "utrecht")];
        // Was sent as `SELECT tags.k AS n ... GROUP BY tags.k, tags.k`: the keys, not counts.
        let sent = f
            .check("SELECT count(*) AS n FROM {tags} GROUP BY k, k", homes)
            .await;
        assert!(sent[0].starts_with("SELECT count(1) AS n"), "{sent:?}");
        f.check(
            "SELECT k AS a, count(*) AS n, k AS b FROM {tags} GROUP BY k, v, k",
            homes,
        )
        .await;
    });
}

#[test]
fn an_order_by_an_output_name_keeps_its_meaning() {
    run(async {
        let f = Federation::new(&[("utrecht", &[("tags", &["k", "v", "id!"], tags())])]);
        let homes = &[("tags", "utrecht")];
        // `ORDER BY c3` (the count) was sent as `ORDER BY t1.c3`, the GROUP BY key of that
        // name: an ambiguity error at the peer, or another order. With a LIMIT, other rows.
        for sql in [
            "SELECT count(*) AS c3 FROM (SELECT k AS c0, count(*) AS c3 FROM {tags} GROUP BY k) \
             AS t1 GROUP BY t1.c3, t1.c0 ORDER BY c3",
            "SELECT 100 - t1.c0 AS c0, sum(t1.c0) AS c1 FROM (SELECT id AS c0 FROM {tags}) AS t1 \
             GROUP BY t1.c0 ORDER BY c0 DESC LIMIT 2",
            // With a plain column among the keys: ordered by its name, not its qualifier.
            "WITH w1 AS (SELECT DISTINCT k AS c0, v AS c2 FROM {tags}) SELECT t3.c0 AS c0, \
             count(*) AS c2 FROM w1 AS t3 GROUP BY t3.c0, t3.c2 ORDER BY c0 ASC NULLS FIRST, \
             c2 ASC NULLS LAST LIMIT 10",
        ] {
            let sent = f.check(sql, homes).await;
            assert!(
                sent.iter().any(|s| s.contains("polder_sorted_")),
                "{sent:#?}"
            );
        }
    });
}

#[test]
fn an_aliased_scan_under_another_alias_keeps_its_filters() {
    run(async {
        let f = two_cities();
        let homes = &[("tags", "utrecht"), ("more", "amsterdam")];
        // The LEFT JOIN goes (DISTINCT needs none of it), leaving `(SELECT t2.v AS c4 FROM
        // tags AS t2 WHERE ...) AS t1`, which was sent as `FROM tags AS t1 WHERE t2.id ...`.
        f.check(
            "SELECT DISTINCT t1.c4 AS c1 FROM (SELECT t2.v AS c4, dense_rank() OVER (ORDER BY \
             t2.id DESC) AS c5 FROM {tags} AS t2 LEFT JOIN {more} AS t3 ON TRUE WHERE t2.id \
             BETWEEN 2 AND 3) AS t1",
            homes,
        )
        .await;
    });
}

#[test]
fn constant_group_keys_are_not_positions() {
    run(async {
        let f = Federation::new(&[("utrecht", &[("tags", &["k", "v", "id!"], tags())])]);
        let homes = &[("tags", "utrecht")];
        // The key folds into -2 (id is never NULL): was sent as `GROUP BY -2`, refused.
        let sent = f
            .check(
                "SELECT count(*) AS c1 FROM (SELECT (-2) AS c0 FROM {tags} AS t3 GROUP BY CASE \
                 WHEN t3.id IS NULL THEN t3.id ELSE (-2) END) AS t2 GROUP BY t2.c0",
                homes,
            )
            .await;
        assert!(sent[0].contains("GROUP BY CAST(-2 AS BIGINT)"), "{sent:?}");
        // A constant that is a valid position grouped by the first column instead.
        f.check(
            "SELECT count(*) AS n FROM {tags} GROUP BY CASE WHEN id IS NULL THEN id ELSE 1 END",
            homes,
        )
        .await;
    });
}

#[test]
fn one_row_or_empty_relations_in_a_join() {
    run(async {
        let f = Federation::new(&[(
            "rotterdam",
            &[
                ("tags", &["k", "v", "id!"], tags()),
                ("other", &["p"], vec![vec![Some(1)]]),
            ],
        )]);
        let homes = &[("tags", "rotterdam"), ("other", "rotterdam")];
        // Was sent as `SELECT min(t5.k) AS c1`, without its FROM clause.
        let sent = f
            .check(
                "SELECT min(t5.k) AS c1 FROM (SELECT count(*) AS c1 FROM (VALUES (1)) AS \
                 t2(v0)) AS t1 CROSS JOIN {tags} AS t5",
                homes,
            )
            .await;
        assert!(sent[0].contains("FROM rotterdam."), "{sent:?}");
        // A join the optimizer proves empty reads no table: it is not sent.
        let sent = f
            .check(
                "SELECT min(t5.p) AS c1 FROM {tags} AS t3 INNER JOIN {other} AS t5 ON t3.id IS \
                 NULL",
                homes,
            )
            .await;
        assert!(sent.iter().all(|sql| sql.contains(" FROM ")), "{sent:?}");
        // The empty join LEFT JOINed with a table: the part sent was `SELECT ...` without FROM.
        let f = Federation::new(&[
            (
                "rotterdam",
                &[
                    ("tags", &["k", "v", "id!"], tags()),
                    ("other", &["p"], vec![vec![Some(1)]]),
                ],
            ),
            (
                "amsterdam",
                &[("part", &["q"], vec![vec![Some(1)], vec![None]])],
            ),
        ]);
        let homes = &[
            ("tags", "rotterdam"),
            ("other", "rotterdam"),
            ("part", "amsterdam"),
        ];
        let sent = f
            .check(
                "SELECT count(t8.q) AS c1, count(*) AS c2 FROM {tags} AS t5 INNER JOIN {other} \
                 AS t6 ON t5.id IS NULL LEFT JOIN {part} AS t8 ON TRUE",
                homes,
            )
            .await;
        assert!(sent.iter().all(|sql| sql.contains(" FROM ")), "{sent:?}");
        f.check(
            "SELECT t8.q AS c1 FROM {part} AS t8 LEFT JOIN (SELECT t5.k FROM {tags} AS t5 \
             INNER JOIN {other} AS t6 ON t5.id IS NULL) AS t9 ON TRUE",
            homes,
        )
        .await;
    });
}

#[test]
fn aliases_inside_projected_expressions_stay() {
    run(async {
        let other = vec![vec![None, Some(1), Some(2)], vec![Some(5), Some(3), None]];
        let f = Federation::new(&[
            ("amsterdam", &[("tags", &["k", "v", "id!"], tags())]),
            ("utrecht", &[("other", &["p", "o32!", "q"], other)]),
        ]);
        // `IN` compares id with o cast to BIGINT: the subquery's part was sent as `SELECT
        // __correlated_sq_1.c0 FROM (SELECT CAST(o AS BIGINT) FROM other)`, without the c0.
        let sent = f
            .check(
                "SELECT t1.c0 AS c0 FROM (SELECT v AS c0, id AS c1 FROM {tags}) AS t1 WHERE t1.c1 \
                 NOT IN (SELECT o AS c0 FROM {other})",
                &[("tags", "amsterdam"), ("other", "utrecht")],
            )
            .await;
        assert!(
            sent.iter().any(|sql| sql.contains("AS BIGINT) AS c0")),
            "{sent:?}"
        );
    });
}

#[test]
fn semi_and_anti_joins_keep_their_meaning() {
    run(async {
        let other = vec![
            vec![None, Some(1), Some(2)],
            vec![Some(5), Some(3), None],
            vec![Some(1), Some(2), Some(7)],
        ];
        let f = Federation::new(&[(
            "utrecht",
            &[
                ("tags", &["k", "v", "id!"], tags()),
                ("other", &["p", "o32!", "q"], other),
            ],
        )]);
        let homes = &[("tags", "utrecht"), ("other", "utrecht")];
        for sql in [
            // NULLs are equal in EXCEPT and INTERSECT (NOT EXISTS (... k = p) kept the NULL).
            "SELECT DISTINCT k FROM {tags} EXCEPT SELECT p FROM {other}",
            "SELECT k FROM {tags} INTERSECT SELECT p FROM {other}",
            // A key compared after a cast (the cast was lost: no field "other.o").
            "SELECT DISTINCT id FROM {tags} EXCEPT SELECT CAST(o AS BIGINT) FROM {other}",
            "SELECT v FROM {tags} WHERE id IN (SELECT o AS c0 FROM {other})",
            // NOT IN a subquery with a NULL keeps no row (NOT EXISTS kept them).
            "SELECT v FROM {tags} WHERE id NOT IN (SELECT q FROM {other})",
            "SELECT v FROM {tags} WHERE k NOT IN (SELECT o FROM {other})",
            "SELECT v FROM {tags} WHERE EXISTS (SELECT 1 FROM {other} WHERE q = id)",
            "SELECT v FROM {tags} WHERE id IN (SELECT max(q) FROM {other} GROUP BY p)",
            // The anti join at the top of the part was sent as `SELECT FROM ...`, no columns.
            "SELECT DISTINCT t1.k AS c0 FROM {tags} AS t1 EXCEPT SELECT t6.p AS c0 FROM {other} AS t6",
            "SELECT c0 FROM (SELECT DISTINCT t1.k AS c0 FROM {tags} AS t1 EXCEPT \
             SELECT t6.p AS c0 FROM {other} AS t6) AS d WHERE c0 > 0",
        ] {
            f.check(sql, homes).await;
        }
        // A NOT IN with a correlated condition (a null-aware anti join on more than one
        // key): DataFusion refuses it on one node, and as NOT EXISTS a peer kept the row a
        // NULL in the subquery removes. Refused, never answered otherwise.
        let correlated = "SELECT t.v FROM utrecht.public.tags t \
             WHERE t.k NOT IN (SELECT o.p FROM utrecht.public.other o WHERE o.q = t.id)";
        let refused = answer(&f.federated, correlated).await.unwrap_err();
        assert!(refused.to_string().contains("NOT IN"), "{refused}");
    });
}

// --- The planner rules of `session` and `partial`, each by what it changes in the SQL sent ---

/// Tables of the same shape in two cities.
fn two_cities() -> Federation {
    let more = vec![
        vec![Some(1), Some(20), Some(5)],
        vec![Some(3), Some(30), Some(6)],
    ];
    Federation::new(&[
        (
            "utrecht",
            &[
                ("tags", &["k", "v", "id!"], tags()),
                ("other", &["p"], vec![vec![Some(1)], vec![Some(2)]]),
            ],
        ),
        ("amsterdam", &[("more", &["k", "v", "id!"], more)]),
    ])
}

const HOMES: &[(&str, &str)] = &[
    ("tags", "utrecht"),
    ("other", "utrecht"),
    ("more", "amsterdam"),
];

/// `collapse_nested_aliases`: a view under an alias of its own. Left nested, the filter
/// pushed through both aliases names the view, which the SQL sent no longer has.
#[test]
fn nested_aliases_collapse_into_the_outer_one() {
    run(async {
        let f = two_cities();
        f.both("CREATE VIEW tv AS SELECT k, v, id FROM {tags}", HOMES)
            .await;
        let mut sent = f
            .check_routed(
                "SELECT t1.v FROM tv AS t1 JOIN {more} AS m ON t1.k = m.k WHERE t1.id > 1",
                HOMES,
            )
            .await;
        sent.sort();
        let (peer, sql) = &sent[1];
        assert_eq!(peer, "utrecht", "{sent:?}");
        assert!(sql.contains(".tags AS t1 WHERE (t1.id > 1)"), "{sql}");
        assert!(!sql.contains("tv."), "{sql}");
    });
}

/// `federate_remaining_scans` (with `federate_single_peer_subtrees`): a join and aggregate of
/// one peer's tables goes to that peer as one query; in a join across peers each peer gets its
/// own table, with the filter and the columns the query uses.
#[test]
fn each_single_peer_subtree_goes_to_its_peer() {
    run(async {
        let f = two_cities();
        let sent = f
            .check_routed(
                "SELECT t.k, count(*) AS n FROM {tags} t JOIN {other} o ON t.id = o.p GROUP BY t.k",
                HOMES,
            )
            .await;
        assert_eq!(sent.len(), 1, "{sent:?}");
        let (peer, sql) = &sent[0];
        assert_eq!(peer, "utrecht");
        assert!(sql.contains(" JOIN ") && sql.contains("GROUP BY"), "{sql}");
        let mut sent = f
            .check_routed(
                "SELECT t.v, m.v FROM {tags} t JOIN {more} m ON t.k = m.k WHERE m.id > 5",
                HOMES,
            )
            .await;
        sent.sort();
        let peers: Vec<&str> = sent.iter().map(|(peer, _)| peer.as_str()).collect();
        assert_eq!(peers, ["amsterdam", "utrecht"], "{sent:?}");
        assert!(
            sent[0].1.contains(".more AS m WHERE (m.id > 5)"),
            "{sent:?}"
        );
        assert!(!sent[1].1.contains("more"), "{sent:?}");
    });
}

/// `federate_single_peer_subtrees`, run early: a scalar subquery compared with a correlated
/// NOT EXISTS on one peer (TPC-H Q22's shape) goes to the peer as planned from the SQL, with
/// its filters.
#[test]
fn a_subquery_on_one_peer_keeps_its_filters() {
    run(async {
        let f = two_cities();
        let sent = f
            .check_routed(
                "SELECT count(*) AS n, sum(v) AS s FROM {tags} t WHERE t.v > (SELECT avg(v) FROM \
                 {tags} WHERE v > 10) AND NOT EXISTS (SELECT * FROM {other} o WHERE o.p = t.id)",
                HOMES,
            )
            .await;
        assert!(sent.iter().all(|(peer, _)| peer == "utrecht"), "{sent:?}");
        assert!(sent.iter().any(|(_, sql)| sql.contains("> 10")), "{sent:?}");
    });
}

/// `partial_aggregates_over_union`: an aggregate over a union of cities sends each city a
/// partial aggregate (a row per group), not its rows.
#[test]
fn an_aggregate_over_cities_is_partial_on_each() {
    run(async {
        let f = two_cities();
        let mut sent = f
            .check_routed(
                "SELECT k, avg(v) AS a, count(*) AS n, max(id) AS m FROM (SELECT k, v, id FROM \
                 {tags} UNION ALL SELECT k, v, id FROM {more}) AS u GROUP BY k",
                HOMES,
            )
            .await;
        sent.sort();
        let peers: Vec<&str> = sent.iter().map(|(peer, _)| peer.as_str()).collect();
        assert_eq!(peers, ["amsterdam", "utrecht"], "{sent:?}");
        for (_, sql) in &sent {
            assert!(sql.contains("GROUP BY") && sql.contains("sum("), "{sql}");
            assert!(sql.contains("count("), "{sql}");
        }
    });
}
