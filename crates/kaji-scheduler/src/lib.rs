//! The scheduler: assigns each pending pod to a node, the way
//! kube-scheduler's default profile would, and records the decision
//! through the `pods/binding` subresource.
//!
//! It owns exactly three writes: the binding of pods whose
//! `spec.schedulerName` is `default-scheduler` (or unset), their
//! `PodScheduled` condition when no node fits, and the `Scheduled` /
//! `FailedScheduling` Events about them. It talks only to the API, through
//! kube-rs watches and requests, exactly as an out-of-tree scheduler would;
//! it never touches the store or another component's internals.
//!
//! Layout, in kube-scheduler's shape:
//! - [`queue`]: activeQ (priority, then FIFO), backoffQ (per-pod exponential
//!   backoff) and unschedulablePods (re-queued by cluster events);
//! - [`cache`]: nodes and the pods on them, with summed requests, including
//!   pods *assumed* on a node while their binding is written;
//! - [`framework`]: the plugin traits per extension point, status codes,
//!   per-cycle state and the filter → score → select algorithm;
//! - [`plugins`]: NodeName, NodeUnschedulable, TaintToleration, NodeAffinity,
//!   NodePorts, NodeResourcesFit, NodeResourcesBalancedAllocation,
//!   PodTopologySpread and InterPodAffinity, with Kubernetes' default weights;
//! - `scheduler`: the control loop tying watches, queue, cache and binding.

#![warn(missing_docs)]

pub mod cache;
pub mod framework;
pub mod plugins;
pub mod pod_info;
pub mod queue;
pub mod resources;
mod scheduler;
#[cfg(test)]
mod testing;

pub use framework::NamespaceLister;
pub use plugins::DEFAULT_SCHEDULER_NAME;

use kaji_controllers::leader::{LeaderElectionConfig, LeaderElector};

/// The namespace of the scheduler's Lease.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// The name of the scheduler's Lease, as kube-scheduler's.
pub const LEASE_NAME: &str = "kube-scheduler";

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Leader election failed.
    #[error("leader election: {0}")]
    Leader(#[source] kaji_controllers::Error),
}

impl From<Error> for kaji_controllers::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Leader(e) => e,
        }
    }
}

/// Schedules pods until the watches end (they retry forever, so in
/// practice until the future is dropped).
///
/// # Errors
/// None: API failures are retried (watches) or turn into a retry of the
/// pod with backoff (bindings); the `Result` leaves room for fatal errors.
///
/// # Caveats
/// Run one scheduler per cluster, or use [`run_with_leader_election`]:
/// two would race to bind the same pods (the loser's binding is rejected,
/// but both count the pod against their node until they notice).
pub async fn run(client: kube::Client) -> Result<(), Error> {
    scheduler::run(client).await
}

/// The leader election settings for the scheduler: Kubernetes' timings
/// and a fresh identity, on the Lease `kube-system/kube-scheduler`.
pub fn leader_election_config() -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_namespace: LEASE_NAMESPACE.to_string(),
        lease_name: LEASE_NAME.to_string(),
        ..LeaderElectionConfig::default()
    }
}

/// Schedules pods only while this process holds `config`'s Lease (start
/// from [`leader_election_config`]), so that of several schedulers exactly
/// one binds pods; returns, releasing the Lease, when `shutdown` completes.
///
/// # Errors
/// [`Error::Leader`] if the election itself fails fatally.
///
/// # Panics
/// If `config` is invalid (see [`LeaderElectionConfig::validate`]).
pub async fn run_with_leader_election(
    client: kube::Client,
    config: LeaderElectionConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let elector = LeaderElector::new(client.clone(), config);
    elector
        .run_until(
            || {
                let client = client.clone();
                async move { run(client).await.map_err(kaji_controllers::Error::from) }
            },
            shutdown,
        )
        .await
        .map_err(Error::Leader)
}
