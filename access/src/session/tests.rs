//! Sessions as callers see them: listings, columns, row filters, masks and aggregates.

use datafusion::error::DataFusionError;
use futures::StreamExt;

use super::*;
use crate::auth::Claims;

async fn node() -> SessionContext {
    let config = datafusion::prelude::SessionConfig::new()
        .with_default_catalog_and_schema("utrecht", "public")
        .with_information_schema(true);
    let ctx = SessionContext::new_with_config(config);
    ctx.sql("CREATE TABLE traffic(segment_id BIGINT, hour INT, cars BIGINT) AS VALUES (1, 8, 10), (2, 9, 20)")
        .await
        .unwrap();
    ctx.sql("CREATE TABLE air(station VARCHAR, pm25 DOUBLE) AS VALUES ('a', 1.5)")
        .await
        .unwrap();
    ctx
}

fn policy() -> Arc<Policy> {
    Arc::new(
        Policy::parse(
            r#"
            [[dataset]]
            name = "air"
            public = true
            [[dataset]]
            name = "traffic"
              [[dataset.rule]]
              groups = ["mobility"]
              access = "raw"
              deny_columns = ["segment_id"]
            "#,
        )
        .unwrap(),
    )
}

fn extensions(identity: Option<Identity>) -> tonic::Extensions {
    let mut ext = tonic::Extensions::new();
    if let Some(identity) = identity {
        ext.insert(identity);
    }
    ext
}

fn member() -> Identity {
    Identity::User {
        claims: Arc::new(Claims {
            sub: "alice".into(),
            iss: "i".into(),
            groups: vec!["mobility".into()],
            roles: vec![],
            org: None,
            purpose: None,
        }),
        token: Arc::from("t"),
    }
}

async fn rows(ctx: &SessionContext, sql: &str) -> Result<Vec<String>, DataFusionError> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
    Ok(text.lines().map(str::to_string).collect())
}

#[tokio::test]
async fn callers_see_only_what_they_are_granted() {
    let base = node().await;
    let sessions = PolicySessions::new(policy(), "utrecht");

    let anonymous = sessions
        .session(&base, &extensions(Some(Identity::Anonymous)))
        .await
        .unwrap()
        .0;
    let tables = rows(
        &anonymous,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .await
    .unwrap();
    assert!(tables.iter().any(|l| l.contains("air")));
    assert!(!tables.iter().any(|l| l.contains("traffic")), "{tables:?}");
    let err = rows(&anonymous, "SELECT * FROM traffic").await.unwrap_err();
    assert!(
        matches!(Error::from(err), Error::Unauthenticated(_)),
        "anonymous must authenticate for a non-public dataset"
    );

    let alice = sessions
        .session(&base, &extensions(Some(member())))
        .await
        .unwrap()
        .0;
    let all = rows(&alice, "SELECT * FROM traffic ORDER BY hour")
        .await
        .unwrap();
    assert!(
        all[1].contains("hour") && !all[1].contains("segment_id"),
        "{all:?}"
    );
    let err = rows(&alice, "SELECT segment_id FROM traffic")
        .await
        .unwrap_err();
    assert!(matches!(Error::from(err), Error::NotFound(_)));
    let columns = rows(
        &alice,
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'traffic'",
    )
    .await
    .unwrap();
    assert!(
        !columns.iter().any(|l| l.contains("segment_id")),
        "{columns:?}"
    );
    let sum = rows(&alice, "SELECT sum(cars) AS s FROM traffic WHERE hour > 8")
        .await
        .unwrap();
    assert!(sum.iter().any(|l| l.contains("20")), "{sum:?}");

    // Without an identity (no authentication layer ran), nothing at all.
    let err = sessions.session(&base, &extensions(None)).await.err();
    assert!(matches!(err, Some(Error::Unauthenticated(_))));
    // The base session is untouched.
    let mut stream = base
        .sql("SELECT segment_id FROM traffic")
        .await
        .unwrap()
        .execute_stream()
        .await
        .unwrap();
    assert!(stream.next().await.unwrap().is_ok());
}

fn caller(roles: &[&str], groups: &[&str], org: Option<&str>) -> Identity {
    Identity::User {
        claims: Arc::new(Claims {
            sub: "carol".into(),
            iss: "i".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            org: org.map(Into::into),
            purpose: None,
        }),
        token: Arc::from("t"),
    }
}

const GUARDED: &str = r#"
    [[dataset]]
    name = "reports"
      [[dataset.rule]]
      roles = ["clerk"]
      access = "raw"
      row_filter = "city = $org"
      masks = { postcode = "left(postcode, 4)", reporter = "NULL" }
      [[dataset.rule]]
      roles = ["district"]
      access = "raw"
      row_filter = "array_has($groups, district)"
      deny_columns = ["reporter"]
"#;

async fn reports() -> SessionContext {
    let base = node().await;
    base.sql(
        "CREATE TABLE reports(city VARCHAR NOT NULL, district VARCHAR, postcode VARCHAR, reporter VARCHAR, n BIGINT) AS VALUES \
         ('utrecht', 'centrum', '3511AB', 'r1', 1), ('utrecht', 'oost', '3581CD', 'r2', 2), \
         ('utrecht', 'centrum', '3512EF', 'r3', 4), ('amsterdam', 'centrum', '1012GH', 'r4', 8)",
    )
    .await
    .unwrap();
    base
}

async fn guarded(identity: Identity) -> SessionContext {
    let base = reports().await;
    let policy = Policy::parse(GUARDED).unwrap();
    let mut tables = std::collections::BTreeMap::new();
    let table = base.table_provider("reports").await.unwrap();
    tables.insert("reports".to_string(), table.schema());
    tables.insert(
        "traffic".to_string(),
        base.table_provider("traffic").await.unwrap().schema(),
    );
    tables.insert(
        "air".to_string(),
        base.table_provider("air").await.unwrap().schema(),
    );
    policy.check(&tables, &base.state()).unwrap();
    let sessions = PolicySessions::new(Arc::new(policy), "utrecht");
    sessions
        .session(&base, &extensions(Some(identity)))
        .await
        .unwrap()
        .0
}

async fn single(ctx: &SessionContext, sql: &str) -> String {
    let lines = rows(ctx, sql).await.unwrap();
    lines[3].trim_matches(|c| c == '|' || c == ' ').to_string()
}

#[tokio::test]
async fn row_filters_and_masks_hold_below_the_callers_query() {
    let clerk = guarded(caller(&["clerk"], &[], Some("utrecht"))).await;
    let all = rows(&clerk, "SELECT * FROM reports ORDER BY n")
        .await
        .unwrap();
    assert_eq!(all.len(), 3 + 3 + 1, "{all:?}");
    assert!(
        all.iter()
            .all(|l| !l.contains("amsterdam") && !l.contains("AB")),
        "{all:?}"
    );
    assert!(all[3].contains("3511") && !all[3].contains("r1"), "{all:?}");
    // The caller's filters, limits and aggregates see the restricted, masked rows only.
    assert_eq!(single(&clerk, "SELECT sum(n) FROM reports").await, "7");
    assert_eq!(single(&clerk, "SELECT count(*) FROM reports").await, "3");
    assert_eq!(
        single(
            &clerk,
            "SELECT count(*) FROM reports WHERE city = 'amsterdam'"
        )
        .await,
        "0"
    );
    assert_eq!(
        single(
            &clerk,
            "SELECT count(*) FROM reports WHERE postcode = '3511AB'"
        )
        .await,
        "0"
    );
    assert_eq!(
        single(
            &clerk,
            "SELECT count(*) FROM reports WHERE postcode = '3511'"
        )
        .await,
        "1"
    );
    assert_eq!(
        single(&clerk, "SELECT count(reporter) FROM reports").await,
        "0"
    );
    assert_eq!(
        single(
            &clerk,
            "SELECT count(*) FROM (SELECT * FROM reports LIMIT 10)"
        )
        .await,
        "3"
    );
    let one = rows(&clerk, "SELECT city FROM reports LIMIT 1")
        .await
        .unwrap();
    assert!(one[3].contains("utrecht"), "{one:?}");
    // Joins and subqueries too.
    assert_eq!(
        single(
            &clerk,
            "SELECT count(*) FROM reports a JOIN reports b ON a.district = b.district"
        )
        .await,
        "5"
    );

    // A claim is a bound value: no claim, no rows; a quote in a claim is just a character.
    let none = guarded(caller(&["clerk"], &[], None)).await;
    assert_eq!(single(&none, "SELECT count(*) FROM reports").await, "0");
    let sly = guarded(caller(&["clerk"], &[], Some("x' OR '1'='1"))).await;
    assert_eq!(single(&sly, "SELECT count(*) FROM reports").await, "0");

    // A list claim: the districts the caller's groups name, in any city.
    let district = guarded(caller(&["district"], &["centrum"], None)).await;
    assert_eq!(single(&district, "SELECT sum(n) FROM reports").await, "13");
    let err = rows(&district, "SELECT reporter FROM reports")
        .await
        .unwrap_err();
    assert!(matches!(Error::from(err), Error::NotFound(_)));
}

#[tokio::test]
async fn aggregate_access_can_carry_a_row_filter() {
    let base = reports().await;
    let policy = Policy::parse(
        r#"
        [[dataset]]
        name = "reports"
          [dataset.aggregate]
          unit = "reporter"
          min_group_size = 2
          dimensions = ["district"]
          functions = ["sum"]
          [[dataset.rule]]
          access = "aggregate"
          row_filter = "city = $org"
        "#,
    )
    .unwrap();
    let sessions = PolicySessions::new(Arc::new(policy), "utrecht");
    let ctx = sessions
        .session(&base, &extensions(Some(caller(&[], &[], Some("utrecht")))))
        .await
        .unwrap()
        .0;
    // centrum has r1, r3 in utrecht (r4 is amsterdam's); oost has one reporter.
    let out = rows(
        &ctx,
        "SELECT district, sum(n) AS s FROM reports GROUP BY district",
    )
    .await
    .unwrap();
    assert_eq!(out.len(), 5, "{out:?}");
    assert!(
        out[3].contains("centrum") && out[3].contains(" 5 "),
        "{out:?}"
    );
}

#[tokio::test]
async fn policy_expressions_are_checked_at_startup() {
    let base = reports().await;
    let mut tables = std::collections::BTreeMap::new();
    tables.insert(
        "reports".to_string(),
        base.table_provider("reports").await.unwrap().schema(),
    );
    for (rule, expected) in [
        (r#"row_filter = "cty = $org""#, "cty"),
        (r#"row_filter = "city = $team""#, "unknown parameter $team"),
        (r#"row_filter = "n + 1""#, "must be a condition"),
        (r#"row_filter = "no_such_fn(city)""#, "no_such_fn"),
        (r#"row_filter = "n > (SELECT 1)""#, "subquery"),
        (r#"row_filter = "sum(n) > 1""#, "aggregate"),
        (r#"row_filter = "city = = 1""#, "city = = 1"),
        (
            r#"masks = { postcode = "make_array(1)" }"#,
            "not the same kind",
        ),
        (r#"masks = { n = "postcode" }"#, "not the same kind"),
        (r#"masks = { postcod = "NULL" }"#, "'postcod'"),
    ] {
        let text = format!(
            "[[dataset]]\nname = \"reports\"\n[[dataset.rule]]\naccess = \"raw\"\n{rule}\n"
        );
        let err = Policy::parse(&text)
            .unwrap()
            .check(&tables, &base.state())
            .err()
            .unwrap_or_else(|| panic!("{rule} was accepted"))
            .to_string();
        assert!(err.contains(expected), "{rule}: {err}");
        assert!(err.contains("rule 1 of dataset 'reports'"), "{rule}: {err}");
    }
}

/// A peer that hands out an empty catalog and notes the tokens it was asked with.
#[derive(Debug, Default)]
struct RecordingPeer(Mutex<Vec<String>>);

impl ForwardCatalog for RecordingPeer {
    fn for_caller<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Arc<dyn CatalogProvider>> {
        self.0.lock().push(token.to_string());
        Box::pin(async {
            Arc::new(datafusion::catalog::MemoryCatalogProvider::new()) as Arc<dyn CatalogProvider>
        })
    }
}

#[tokio::test]
async fn forwarded_catalogs_are_asked_with_the_callers_token() {
    let base = node().await;
    let sessions = PolicySessions::new(policy(), "utrecht");
    let peer = Arc::new(RecordingPeer::default());
    sessions.forward("peer", Arc::clone(&peer) as Arc<dyn ForwardCatalog>);
    let alice = sessions
        .session(&base, &extensions(Some(member())))
        .await
        .unwrap()
        .0;
    assert_eq!(*peer.0.lock(), vec!["t".to_string()]);
    assert!(alice.catalog("peer").is_some());
    // An anonymous caller has no token to forward: the peer is not asked, and not there.
    let anonymous = sessions
        .session(&base, &extensions(Some(Identity::Anonymous)))
        .await
        .unwrap()
        .0;
    assert!(anonymous.catalog("peer").is_none());
    assert_eq!(peer.0.lock().len(), 1);
}
