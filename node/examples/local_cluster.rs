//! Run a local ferrokv cluster for benchmarks and manual checks: spawns
//! `shards × (1 + replicas)` `ferrokv-node` processes on free loopback ports,
//! pushes an even topology (epoch 1), prints one line per node, then `ready`,
//! and kills every node (by PID) on Ctrl-C or SIGTERM.
//!
//! ```sh
//! cargo run -p ferrokv-node --example local_cluster -- target/release/ferrokv-node /tmp/fkv 3 1
//! # node <shard> <primary|replica> <ip:port> <id> <pid>
//! ```
//!
//! Arguments after `replicas` go to every node (e.g. `--threads 2`). The
//! nodes share this machine's cores: unless those arguments say otherwise,
//! each runs `cores / nodes` worker threads (at least one), as
//! [`LocalCluster::start_with`] explains.
//!
//! Replicas take their role from the topology (`REPLICAOF` of their shard's
//! primary). The node PIDs are printed so that a script can still stop the
//! nodes if this process is killed with SIGKILL (which it cannot catch).

use std::path::PathBuf;

use ferrokv_node::cluster::driver::LocalCluster;

fn usage() -> anyhow::Error {
    anyhow::anyhow!("usage: local_cluster <ferrokv-node binary> <dir> [shards=3] [replicas=0] [node args...]")
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bin = PathBuf::from(args.first().ok_or_else(usage)?);
    let dir = PathBuf::from(args.get(1).ok_or_else(usage)?);
    let shards: usize = args.get(2).map_or(Ok(3), |s| s.parse()).map_err(|_| usage())?;
    let replicas: usize = args.get(3).map_or(Ok(0), |s| s.parse()).map_err(|_| usage())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let extra: Vec<&str> = args.iter().skip(4).map(String::as_str).collect();
        let cluster = LocalCluster::start_with(&bin, &dir, shards, replicas, &extra).await?;
        for (s, members) in cluster.shards.iter().enumerate() {
            for (r, n) in members.iter().enumerate() {
                let role = if r == 0 { "primary" } else { "replica" };
                let pid = n.pid().map_or_else(|| "-".to_string(), |p| p.to_string());
                println!("node {s} {role} {} {} {pid}", n.addr, n.id);
            }
        }
        println!("ready");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        cluster.stop().await;
        anyhow::Ok(())
    })
}
