//! The controller manager: level-triggered, idempotent reconcilers that
//! close the gap between desired and current state.
//!
//! Every controller here talks to the API exactly as an out-of-tree
//! controller would — through kube-rs (watchers, reflectors, `Controller`)
//! over HTTP — and never touches the store or another component's internals.
//! Each module owns one controller and exposes `run(client)`.

mod backoff;
pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod gc;
pub mod leader;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod replicaset;
pub mod serviceaccount;

/// Why a controller stopped or a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// Discovery of the served resources failed.
    #[error("discovery failed: {0}")]
    Discovery(String),
    /// An object lacks a field the controller needs (name, namespace, uid).
    #[error("object is missing {0}")]
    MissingField(&'static str),
}

/// Settings of the controllers that have any (the rest follow Kubernetes'
/// defaults).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Node heartbeat grace, monitor period and eviction behaviour.
    pub node_lifecycle: nodelifecycle::Config,
    /// The cluster CIDR pod ranges are handed out from.
    pub node_ipam: nodeipam::Config,
}

/// Runs every controller with default settings until one of them stops
/// (they only stop on a fatal error).
///
/// # Errors
/// The first fatal controller error.
pub async fn run(client: kube::Client) -> Result<(), Error> {
    run_with(client, Options::default()).await
}

/// Runs every controller with `options` until one of them stops.
///
/// # Errors
/// The first fatal controller error.
pub async fn run_with(client: kube::Client, options: Options) -> Result<(), Error> {
    tokio::try_join!(
        namespace::run(client.clone()),
        gc::run(client.clone()),
        replicaset::run(client.clone()),
        deployment::run(client.clone()),
        endpoints::run(client.clone()),
        nodelifecycle::run_with(client.clone(), options.node_lifecycle),
        nodeipam::run_with(client.clone(), options.node_ipam),
        serviceaccount::run(client),
    )?;
    Ok(())
}

/// Runs every controller only while this process holds the controller
/// manager's Lease, so that of several copies exactly one is active; returns
/// (releasing the Lease) when `shutdown` completes.
///
/// # Errors
/// The first fatal controller error.
pub async fn run_with_leader_election(
    client: kube::Client,
    config: leader::LeaderElectionConfig,
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let elector = leader::LeaderElector::new(client.clone(), config);
    elector
        .run_until(|| run_with(client.clone(), options.clone()), shutdown)
        .await
}
