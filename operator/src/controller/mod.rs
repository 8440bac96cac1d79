//! PLACEHOLDER (being written on branch `operator-reconcile`): the KvCluster controller.
//! `run` is the interface the binary calls; its body is replaced by the real controller.

use std::future::Future;
use std::sync::Arc;

use crate::metrics::Metrics;

/// What the controller needs from the command line.
#[derive(Clone, Debug)]
pub struct Config {
    /// Node image used when a KvCluster does not name one.
    pub node_image: String,
    /// Field manager of every server-side apply.
    pub field_manager: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
}

/// Run the controller until `shutdown` resolves (only while this process leads).
pub async fn run(
    _client: kube::Client,
    _config: Config,
    _metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    shutdown.await;
    Ok(())
}
