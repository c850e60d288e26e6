//! `polder-bench footprint`: what a node costs before it does anything. Starts the sample node
//! as a newcomer does (`polder serve`, no configuration) several times and reports the time
//! from starting the process to `/readyz` answering 200 and a first query answered, the
//! resident memory when idle, and the size of the binary.

use std::path::PathBuf;
use std::time::Duration;

use crate::servers::{self, PolderOptions};

/// Runs the benchmark: `starts` cold starts of the sample node.
pub async fn run(polder: Option<PathBuf>, starts: usize) -> anyhow::Result<()> {
    let binary = servers::polder_binary(polder)?;
    let size = std::fs::metadata(&binary)?.len();
    let work = tempfile::tempdir()?;
    let options = PolderOptions {
        sample: true,
        ..PolderOptions::default()
    };
    let mut ready = vec![];
    let mut idle = vec![];
    let mut after = vec![];
    for i in 0..starts.max(1) {
        let server = servers::start_polder(
            &binary,
            "polder",
            &work.path().join(format!("{i}")),
            &options,
        )
        .await?;
        ready.push(server.started_in);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let pid = server
            .pid()
            .ok_or_else(|| anyhow::anyhow!("the node has exited"))?;
        idle.push(resident(pid)?);
        // The same node after a few queries over its sample tables.
        let mut client = server.client().await?;
        for table in ["air_quality", "traffic_counts", "neighbourhoods"] {
            crate::latency::query(&mut client, &format!("SELECT * FROM {table}")).await?;
        }
        after.push(resident(pid)?);
    }
    let ready = crate::median(&mut ready);
    idle.sort();
    after.sort();
    println!(
        "footprint: the sample node (`polder serve`, no configuration), median of {} starts",
        starts.max(1)
    );
    println!(
        "  binary              : {:.1} MB ({})",
        size as f64 / 1e6,
        binary.display()
    );
    println!(
        "  start to /readyz    : {:.0} ms (and a first query answered)",
        ready.as_secs_f64() * 1e3
    );
    let show = |what: &str, samples: &[Resident]| {
        let m = &samples[samples.len() / 2];
        println!(
            "  {what}: {:.1} MiB resident = {:.1} MiB the node's own (anonymous) + {:.1} MiB \
             pages of the binary and other files (shared, reclaimable)",
            m.total as f64 / 1024.0,
            m.anonymous as f64 / 1024.0,
            m.file as f64 / 1024.0
        );
    };
    show("idle", &idle);
    show("after reading every sample table once", &after);
    Ok(())
}

/// A process's resident memory in KiB, from `/proc/PID/status`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Resident {
    total: u64,
    anonymous: u64,
    file: u64,
}

fn resident(pid: u32) -> anyhow::Result<Resident> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok(Resident {
        total: field("VmRSS:")?,
        anonymous: field("RssAnon:")?,
        file: field("RssFile:")?,
    })
}
