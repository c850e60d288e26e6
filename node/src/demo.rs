//! `polder demo`: three sample cities as a federation in one process, example queries across
//! them, then serving until interrupted.

use std::net::SocketAddr;

use anyhow::Context;
use polder_federation::{FederationOptions, PeerConfig};

use crate::cli::{DemoArgs, OutputFormat};
use crate::config::NodeConfig;
use crate::startup::{self, RunningNode};

/// The example queries: a title, and SQL over the three cities' catalogs.
pub const QUERIES: &[(&str, &str)] = &[
    (
        "Mean PM2.5 per neighbourhood, the ten worst across the three cities (each city's join \
         and aggregate run on its own node)",
        "SELECT city, neighbourhood, pm2_5 FROM (
    SELECT 'amsterdam' AS city, n.name AS neighbourhood, round(avg(a.pm2_5), 1) AS pm2_5
    FROM amsterdam.public.air_quality a JOIN amsterdam.public.neighbourhoods n ON a.neighbourhood_code = n.code
    GROUP BY n.name
  UNION ALL
    SELECT 'utrecht', n.name, round(avg(a.pm2_5), 1)
    FROM utrecht.public.air_quality a JOIN utrecht.public.neighbourhoods n ON a.neighbourhood_code = n.code
    GROUP BY n.name
  UNION ALL
    SELECT 'rotterdam', n.name, round(avg(a.pm2_5), 1)
    FROM rotterdam.public.air_quality a JOIN rotterdam.public.neighbourhoods n ON a.neighbourhood_code = n.code
    GROUP BY n.name
) ORDER BY pm2_5 DESC, city, neighbourhood LIMIT 10",
    ),
    (
        "Amsterdam's car traffic against Utrecht's PM2.5, by hour of day in UTC (two nodes, joined here)",
        "SELECT t.hour_of_day, t.cars_per_count, a.pm2_5
FROM (SELECT date_part('hour', hour) AS hour_of_day, round(avg(car), 1) AS cars_per_count
      FROM amsterdam.public.traffic_counts GROUP BY 1) t
JOIN (SELECT date_part('hour', \"timestamp\") AS hour_of_day, round(avg(pm2_5), 2) AS pm2_5
      FROM utrecht.public.air_quality GROUP BY 1) a
  ON t.hour_of_day = a.hour_of_day
ORDER BY t.hour_of_day",
    ),
    (
        "Measurements, sensors and mean PM2.5 per city",
        "SELECT 'amsterdam' AS city, count(*) AS measurements, count(DISTINCT sensor_id) AS sensors,
       round(avg(pm2_5), 2) AS pm2_5 FROM amsterdam.public.air_quality
UNION ALL
SELECT 'utrecht', count(*), count(DISTINCT sensor_id), round(avg(pm2_5), 2) FROM utrecht.public.air_quality
UNION ALL
SELECT 'rotterdam', count(*), count(DISTINCT sensor_id), round(avg(pm2_5), 2) FROM rotterdam.public.air_quality
ORDER BY city",
    ),
    (
        "Registered sensors in public space per city, placed in their neighbourhoods by position \
         (the sensor register joined to the neighbourhood polygons with ST_Contains on each node)",
        "SELECT 'amsterdam' AS city, count(*) AS sensors, count(DISTINCT n.name) AS neighbourhoods,
       sum(CASE WHEN s.personal_data THEN 1 ELSE 0 END) AS with_personal_data
FROM amsterdam.public.sensor_register s
JOIN amsterdam.public.neighbourhoods n ON ST_Contains(n.geometry, s.geometry)
UNION ALL
SELECT 'utrecht', count(*), count(DISTINCT n.name), sum(CASE WHEN s.personal_data THEN 1 ELSE 0 END)
FROM utrecht.public.sensor_register s
JOIN utrecht.public.neighbourhoods n ON ST_Contains(n.geometry, s.geometry)
UNION ALL
SELECT 'rotterdam', count(*), count(DISTINCT n.name), sum(CASE WHEN s.personal_data THEN 1 ELSE 0 END)
FROM rotterdam.public.sensor_register s
JOIN rotterdam.public.neighbourhoods n ON ST_Contains(n.geometry, s.geometry)
ORDER BY city",
    ),
];

/// Runs `polder demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let cities = polder_sample_data::CITIES;
    let port = |base: u16, i: usize| if base == 0 { 0 } else { base + i as u16 };
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    // Utrecht and Rotterdam first; Amsterdam federates them, so that a client of Amsterdam's
    // node alone can query all three.
    let mut nodes: Vec<RunningNode> = Vec::new();
    let city_config = |i: usize| {
        let mut config = NodeConfig::default();
        config.node.name = cities[i].to_string();
        config.node.flight_addr = addr(port(args.flight_port, i));
        config.node.http_addr = addr(port(args.http_port, i));
        config
    };
    for i in 1..cities.len() {
        nodes.push(start(city_config(i)).await?);
    }
    let mut config = city_config(0);
    config.peers = nodes.iter().map(RunningNode::peer_config).collect();
    nodes.insert(0, start(config).await?);

    let all: Vec<PeerConfig> = nodes.iter().map(RunningNode::peer_config).collect();
    let (ctx, _federation) =
        crate::sql::client_session(&all, &FederationOptions::default()).await?;
    let mut out = crate::sql::Output::new(OutputFormat::Table, None, 40)?;
    for (title, sql) in QUERIES {
        println!("\n-- {title}\n{sql};\n");
        crate::sql::run_script(&ctx, sql, &mut out)
            .await
            .with_context(|| format!("the example query '{title}' failed"))?;
    }
    out.finish()?;

    let result = if args.once {
        Ok(())
    } else {
        println!("\nThe three nodes keep serving; Ctrl-C stops them.\n");
        for node in &nodes {
            println!(
                "  {:<10} flight=grpc://{}  catalog=http://{}/catalog",
                node.name, node.flight_addr, node.http_addr
            );
        }
        let flags: Vec<String> = nodes
            .iter()
            .map(|n| format!("--node {}=grpc://{}", n.name, n.flight_addr))
            .collect();
        println!(
            "\nQuery the federation from a shell:\n  polder sql {}",
            flags.join(" ")
        );
        println!(
            "or connect any Flight SQL client (ADBC, DBeaver) to Amsterdam's node, which federates \
             the other two:\n  grpc://{}   e.g. SELECT count(*) FROM utrecht.public.air_quality",
            nodes[0].flight_addr
        );
        let _ = tokio::signal::ctrl_c().await;
        Ok(())
    };
    for node in nodes {
        node.stop().await?;
    }
    result
}

/// Starts a node serving `city`'s sample data on loopback, on free ports: the nodes of the
/// integration tests and the sqllogictest runner.
pub async fn start_city(city: &str) -> anyhow::Result<RunningNode> {
    let mut config = NodeConfig::default();
    config.node.name = city.to_string();
    config.node.flight_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.node.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    start(config).await
}

async fn start(config: NodeConfig) -> anyhow::Result<RunningNode> {
    let name = config.node.name.clone();
    let config = startup::complete(config)?;
    startup::start(config)
        .await
        .with_context(|| format!("cannot start the {name} node"))
}
