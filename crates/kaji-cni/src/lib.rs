//! Pod networking with the standard CNI plugins: [`CniNetwork`] implements
//! [`kaji_runtime::PodNetwork`] by executing `loopback`, `bridge` and
//! `host-local` as the CNI spec (1.0.0) describes.
//!
//! Every pod gets `lo` and an `eth0` veth on a host bridge (`kaji0` by
//! default) with an address from the node's pod CIDR; the bridge holds the
//! CIDR's first address, so the host and the node's pods reach each other.
//! Nothing is masqueraded and forwarding is left as it was: pod traffic
//! stays on the machine. hostPort (`portmap`) is not supported yet.
//!
//! This crate owns the plugin invocation, the generated configuration,
//! its state directory (host-local leases and attachment records) and the
//! [`netns`] helpers. It must not touch iptables, sysctls or any global CNI
//! directory (`/etc/cni`, `/var/lib/cni`).
//!
//! State directory layout:
//! - `ipam/` — host-local's `dataDir`: one file per leased address;
//! - `attachments/<sandbox id>.json` — each ADD's configuration and result,
//!   passed back to CHECK and DEL as the spec asks.

mod cache;
pub mod cidr;
mod conf;
mod iproute;
pub mod netns;
mod plugin;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use kaji_runtime::{PodNetwork, PodSandboxMetadata, RuntimeError};
use serde_json::Value;

use crate::cache::{Attachment, Cache};
use crate::conf::NetworkList;
use crate::plugin::Invocation;

pub use crate::cache::CacheError;
pub use crate::cidr::{CidrError, PodCidr};
pub use crate::iproute::IpError;
pub use crate::plugin::{CniCommand, PluginError};

/// Where Debian's `containernetworking-plugins` installs the plugins.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/cni";
/// The host bridge pods attach to.
pub const DEFAULT_BRIDGE: &str = "kaji0";
/// The CNI network name (host-local keeps leases under it).
pub const DEFAULT_NETWORK_NAME: &str = "kaji";
/// The pod's interface.
pub const POD_IFNAME: &str = "eth0";
/// How long one plugin may run before it is killed.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The pod CIDR does not parse or is unusable.
    #[error(transparent)]
    Cidr(#[from] CidrError),
    /// A pod was attached before any pod CIDR was set.
    #[error("no pod CIDR set yet")]
    NoPodCidr,
    /// The pod CIDR cannot change while pods hold addresses from the old one.
    #[error("pod CIDR is {current}; cannot change it to {requested} while {attached} pod(s) are attached")]
    CidrInUse {
        /// The CIDR the attached pods use.
        current: String,
        /// The CIDR asked for.
        requested: String,
        /// How many pods are attached.
        attached: usize,
    },
    /// The sandbox id is not a valid CNI container id.
    #[error("invalid CNI container id {0:?}: want letters, digits, '_', '.', '-', starting alphanumeric")]
    InvalidContainerId(String),
    /// The configuration is unusable.
    #[error("invalid CNI configuration: {0}")]
    InvalidConfig(String),
    /// A plugin failed.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// ADD succeeded but gave the pod no IPv4 address.
    #[error("CNI result for {sandbox_id} has no IPv4 address on {POD_IFNAME}")]
    NoAddress {
        /// The sandbox.
        sandbox_id: String,
    },
    /// The host bridge could not be set up.
    #[error("setting up bridge {bridge}: {source}")]
    Bridge {
        /// The bridge's name.
        bridge: String,
        /// The underlying cause.
        #[source]
        source: IpError,
    },
    /// An attachment record could not be read or written.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Creating the state directory failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying cause.
        #[source]
        source: std::io::Error,
    },
}

impl From<CniError> for RuntimeError {
    fn from(e: CniError) -> Self {
        RuntimeError::Network(e.to_string())
    }
}

/// Where the plugins are, where state goes and what the bridge is called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniConfig {
    /// The plugin directory, also passed as `CNI_PATH`.
    pub bin_dir: PathBuf,
    /// This network's own state (inside the kaji data dir, e.g.
    /// `<data-dir>/cni`), never the global `/var/lib/cni`.
    pub state_dir: PathBuf,
    /// The host bridge's name (at most 15 bytes, as Linux allows).
    pub bridge: String,
    /// The CNI network name.
    pub network_name: String,
    /// How long one plugin call may take.
    pub plugin_timeout: Duration,
}

impl CniConfig {
    /// The defaults, with state under `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        CniConfig {
            bin_dir: PathBuf::from(DEFAULT_BIN_DIR),
            state_dir: state_dir.into(),
            bridge: DEFAULT_BRIDGE.to_string(),
            network_name: DEFAULT_NETWORK_NAME.to_string(),
            plugin_timeout: DEFAULT_PLUGIN_TIMEOUT,
        }
    }

    fn validate(&self) -> Result<(), CniError> {
        let bad = |what: String| Err(CniError::InvalidConfig(what));
        let b = &self.bridge;
        if b.is_empty() || b.len() > 15 || b.contains(['/', ':']) || b.contains(char::is_whitespace)
        {
            return bad(format!("bridge name {b:?} is not a valid interface name"));
        }
        if !is_cni_name(&self.network_name) {
            return bad(format!(
                "network name {:?} is not a valid CNI name",
                self.network_name
            ));
        }
        Ok(())
    }
}

/// What the spec allows as a network name and a container id.
fn is_cni_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The configuration derived from the pod CIDR.
#[derive(Debug)]
struct Setup {
    cidr: PodCidr,
    network: NetworkList,
}

/// [`PodNetwork`] over the CNI plugins: a bridge, host-local IPAM, loopback.
///
/// # Guarantees
/// Calls for one sandbox run one at a time (the spec forbids concurrent
/// calls per container); different sandboxes proceed in parallel, and
/// host-local serialises leases itself. A repeated attach returns the
/// recorded address after a CHECK, re-attaching if CHECK fails.
///
/// # Caveats
/// Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) like the plugins themselves.
/// IPv4 only; no hostPort.
pub struct CniNetwork {
    config: CniConfig,
    cache: Cache,
    setup: Mutex<Option<Arc<Setup>>>,
    /// Held shared by attach and detach, exclusively by a CIDR change.
    gate: tokio::sync::RwLock<()>,
    sandbox_locks: SandboxLocks,
}

impl CniNetwork {
    /// A network with `config`; nothing is attached until a pod CIDR is set.
    ///
    /// # Errors
    /// [`CniError::InvalidConfig`], or the state directory cannot be created.
    pub fn new(config: CniConfig) -> Result<Self, CniError> {
        config.validate()?;
        std::fs::create_dir_all(&config.state_dir).map_err(|source| CniError::Io {
            context: format!("creating {}", config.state_dir.display()),
            source,
        })?;
        Ok(CniNetwork {
            cache: Cache::new(config.state_dir.join("attachments")),
            config,
            setup: Mutex::new(None),
            gate: tokio::sync::RwLock::new(()),
            sandbox_locks: SandboxLocks::default(),
        })
    }

    /// Kills and deletes the namespaces on this network's bridge that are
    /// not in `keep` (the sandboxes the runtime knows), and returns their
    /// names. Run before any pod is attached: after a crash whose state was
    /// lost, they hold addresses the new leases would hand out again.
    pub fn collect_strays(&self, keep: &[String]) -> Vec<String> {
        let attached = match netns::attached_to(&self.config.bridge) {
            Ok(names) => names,
            // No bridge yet: nothing can be attached to it.
            Err(_) => return Vec::new(),
        };
        let mut removed = Vec::new();
        for name in attached.into_iter().filter(|n| !keep.contains(n)) {
            match netns::kill_and_delete(&name) {
                Ok(()) => removed.push(name),
                Err(e) => {
                    tracing::warn!(netns = %name, error = %e, "cannot remove a stray pod namespace")
                }
            }
        }
        removed
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &CniConfig {
        &self.config
    }

    /// The pod CIDR, once set.
    pub fn pod_cidr(&self) -> Option<PodCidr> {
        self.current().map(|s| s.cidr)
    }

    fn current(&self) -> Option<Arc<Setup>> {
        lock(&self.setup).clone()
    }

    /// Sets the pod CIDR and sets up the bridge for it.
    ///
    /// Setting the same CIDR again re-checks the bridge.
    ///
    /// # Errors
    /// [`CniError::Cidr`], [`CniError::CidrInUse`] when pods attached under
    /// another CIDR remain, or [`CniError::Bridge`].
    pub async fn set_cidr(&self, cidr: &str) -> Result<(), CniError> {
        let cidr: PodCidr = cidr.parse()?;
        let _exclusive = self.gate.write().await;
        let others: Vec<_> = self
            .cache
            .list()?
            .into_iter()
            .filter(|a| a.pod_cidr != cidr.to_string())
            .collect();
        if let Some(first) = others.first() {
            return Err(CniError::CidrInUse {
                current: first.pod_cidr.clone(),
                requested: cidr.to_string(),
                attached: others.len(),
            });
        }
        let bridge = self.config.bridge.clone();
        let result =
            tokio::task::spawn_blocking(move || iproute::ensure_bridge(&bridge, &cidr)).await;
        let outcome = result.unwrap_or_else(|join| {
            Err(IpError::Spawn {
                args: "link (bridge setup)".into(),
                source: std::io::Error::other(join.to_string()),
            })
        });
        outcome.map_err(|source| CniError::Bridge {
            bridge: self.config.bridge.clone(),
            source,
        })?;
        let network = NetworkList::pod_network(
            &self.config.network_name,
            &self.config.bridge,
            &cidr,
            &self.config.state_dir.join("ipam"),
        );
        *lock(&self.setup) = Some(Arc::new(Setup { cidr, network }));
        tracing::info!(%cidr, bridge = %self.config.bridge, "pod network ready");
        Ok(())
    }

    /// Attaches the namespace at `netns` for `sandbox_id`; see
    /// [`PodNetwork::attach`].
    ///
    /// # Errors
    /// [`CniError::NoPodCidr`], [`CniError::InvalidContainerId`], or a
    /// plugin failed (what was set up is torn down again).
    pub async fn attach_v4(
        &self,
        sandbox_id: &str,
        pod: &PodSandboxMetadata,
        netns: &Path,
    ) -> Result<Ipv4Addr, CniError> {
        check_container_id(sandbox_id)?;
        let _shared = self.gate.read().await;
        let _sandbox = self.sandbox_locks.lock(sandbox_id).await;
        let setup = self.current().ok_or(CniError::NoPodCidr)?;
        let args = cni_args(sandbox_id, pod);

        if let Some(record) = self.cache.load(sandbox_id)? {
            if record.netns == netns {
                match self.check(&record, &args).await {
                    Ok(()) => return Ok(record.ip),
                    Err(e) => {
                        tracing::warn!(sandbox_id, error = %e, "CHECK failed; attaching again")
                    }
                }
            }
            self.teardown(&record, &args).await?;
        }

        let target = Target {
            sandbox_id,
            netns,
            args: &args,
        };
        let attachment = match self.add(&setup, &target).await {
            Ok(a) => a,
            Err(e) => {
                // The spec: after a failed ADD, DEL cleans up whatever was made.
                if let Err(d) = self.del_unrecorded(&setup, &target).await {
                    tracing::warn!(sandbox_id, error = %d, "cleanup after failed ADD");
                }
                return Err(e);
            }
        };
        if let Err(e) = self.cache.store(&attachment) {
            self.teardown(&attachment, &args).await.ok();
            return Err(e.into());
        }
        Ok(attachment.ip)
    }

    /// Detaches `sandbox_id`; see [`PodNetwork::detach`].
    ///
    /// # Errors
    /// [`CniError::InvalidContainerId`] or a plugin's DEL failed (the record
    /// is kept, so calling again retries).
    pub async fn detach_sandbox(&self, sandbox_id: &str, netns: &Path) -> Result<(), CniError> {
        check_container_id(sandbox_id)?;
        let _shared = self.gate.read().await;
        let _sandbox = self.sandbox_locks.lock(sandbox_id).await;
        let args = format!("IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID={sandbox_id}");
        if let Some(record) = self.cache.load(sandbox_id)? {
            return self.teardown(&record, &args).await;
        }
        // No record: a crash may have come between ADD and the record, so
        // release any lease under the current configuration.
        match self.current() {
            Some(setup) => {
                let target = Target {
                    sandbox_id,
                    netns,
                    args: &args,
                };
                self.del_unrecorded(&setup, &target).await
            }
            None => Ok(()),
        }
    }

    async fn add(&self, setup: &Setup, t: &Target<'_>) -> Result<Attachment, CniError> {
        let loopback = NetworkList::loopback();
        let loopback_result = self.run(CniCommand::Add, &loopback, LO, None, t).await?;
        let network_result = self
            .run(CniCommand::Add, &setup.network, POD_IFNAME, None, t)
            .await?;
        let ip =
            plugin::pod_ipv4(&network_result, POD_IFNAME).ok_or_else(|| CniError::NoAddress {
                sandbox_id: t.sandbox_id.to_string(),
            })?;
        tracing::debug!(sandbox_id = t.sandbox_id, %ip, "pod attached");
        Ok(Attachment {
            sandbox_id: t.sandbox_id.to_string(),
            netns: t.netns.to_path_buf(),
            pod_cidr: setup.cidr.to_string(),
            ip,
            network: setup.network.clone(),
            network_result,
            loopback,
            loopback_result,
        })
    }

    async fn check(&self, a: &Attachment, args: &str) -> Result<(), CniError> {
        let t = a.target(args);
        let lo = Some(&a.loopback_result);
        self.run(CniCommand::Check, &a.loopback, LO, lo, &t).await?;
        let net = Some(&a.network_result);
        self.run(CniCommand::Check, &a.network, POD_IFNAME, net, &t)
            .await?;
        Ok(())
    }

    /// DEL with the recorded configuration and results, then forget it.
    async fn teardown(&self, a: &Attachment, args: &str) -> Result<(), CniError> {
        let t = a.target(args);
        let net = Some(&a.network_result);
        self.run(CniCommand::Del, &a.network, POD_IFNAME, net, &t)
            .await?;
        let lo = Some(&a.loopback_result);
        self.run(CniCommand::Del, &a.loopback, LO, lo, &t).await?;
        self.cache.remove(&a.sandbox_id)?;
        tracing::debug!(sandbox_id = %a.sandbox_id, ip = %a.ip, "pod detached");
        Ok(())
    }

    /// DEL on both networks under the current configuration, with no
    /// recorded result; both are tried even if the first fails.
    async fn del_unrecorded(&self, setup: &Setup, t: &Target<'_>) -> Result<(), CniError> {
        let net = self
            .run(CniCommand::Del, &setup.network, POD_IFNAME, None, t)
            .await;
        let lo = self
            .run(CniCommand::Del, &NetworkList::loopback(), LO, None, t)
            .await;
        net.and(lo).map(|_| ())
    }

    /// Runs one command over a list: ADD chains each plugin's result into
    /// the next as `prevResult` and returns the last; CHECK and DEL give
    /// every plugin the recorded result, DEL in reverse order.
    async fn run(
        &self,
        command: CniCommand,
        list: &NetworkList,
        ifname: &str,
        recorded: Option<&Value>,
        t: &Target<'_>,
    ) -> Result<Value, CniError> {
        let inv = Invocation {
            command,
            container_id: t.sandbox_id,
            netns: t.netns,
            ifname,
            args: t.args,
            bin_dir: &self.config.bin_dir,
            timeout: self.config.plugin_timeout,
        };
        let mut order: Vec<usize> = (0..list.plugins.len()).collect();
        if command == CniCommand::Del {
            order.reverse();
        }
        let mut prev = recorded.cloned();
        for index in order {
            let conf = list.plugin_conf(index, prev.as_ref());
            let out = plugin::invoke(&conf, &inv).await?;
            if command == CniCommand::Add {
                prev = Some(out);
            }
        }
        Ok(prev.unwrap_or(Value::Null))
    }
}

/// The loopback interface.
const LO: &str = "lo";

/// Which container a call is about, as the spec identifies it.
struct Target<'a> {
    sandbox_id: &'a str,
    netns: &'a Path,
    /// `CNI_ARGS`.
    args: &'a str,
}

impl Attachment {
    fn target<'a>(&'a self, args: &'a str) -> Target<'a> {
        Target {
            sandbox_id: &self.sandbox_id,
            netns: &self.netns,
            args,
        }
    }
}

#[async_trait]
impl PodNetwork for CniNetwork {
    async fn set_pod_cidr(&self, cidr: &str) -> kaji_runtime::Result<()> {
        Ok(self.set_cidr(cidr).await?)
    }

    fn ready(&self) -> bool {
        self.current().is_some()
    }

    async fn attach(
        &self,
        sandbox_id: &str,
        pod: &PodSandboxMetadata,
        netns: &Path,
    ) -> kaji_runtime::Result<IpAddr> {
        Ok(IpAddr::V4(self.attach_v4(sandbox_id, pod, netns).await?))
    }

    async fn detach(&self, sandbox_id: &str, netns: &Path) -> kaji_runtime::Result<()> {
        Ok(self.detach_sandbox(sandbox_id, netns).await?)
    }
}

fn check_container_id(id: &str) -> Result<(), CniError> {
    if is_cni_name(id) && id.len() <= 200 {
        Ok(())
    } else {
        Err(CniError::InvalidContainerId(id.to_string()))
    }
}

/// `CNI_ARGS` as kubelet's runtimes pass them; `IgnoreUnknown` keeps
/// plugins that parse CNI_ARGS strictly from refusing the pod keys.
fn cni_args(sandbox_id: &str, pod: &PodSandboxMetadata) -> String {
    let mut args = vec![
        "IgnoreUnknown=1".to_string(),
        format!("K8S_POD_INFRA_CONTAINER_ID={sandbox_id}"),
    ];
    for (key, value) in [
        ("K8S_POD_NAMESPACE", &pod.namespace),
        ("K8S_POD_NAME", &pod.name),
        ("K8S_POD_UID", &pod.uid),
    ] {
        // The format has no escaping; skip what it cannot carry.
        if !value.is_empty() && !value.contains([';', '=']) {
            args.push(format!("{key}={value}"));
        }
    }
    args.join(";")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One async mutex per sandbox id, dropped once nobody holds or waits.
#[derive(Default)]
struct SandboxLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl SandboxLocks {
    async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let mutex = {
            let mut map = lock(&self.0);
            // Only the map holds an idle entry; holders and waiters own clones.
            map.retain(|_, m| Arc::strong_count(m) > 1);
            map.entry(id.to_string()).or_default().clone()
        };
        mutex.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network() -> (tempfile::TempDir, CniNetwork) {
        let dir = tempfile::tempdir().unwrap();
        let net = CniNetwork::new(CniConfig::new(dir.path().join("cni"))).unwrap();
        (dir, net)
    }

    #[tokio::test]
    async fn a_new_network_is_not_ready_and_refuses_to_attach() {
        let (_dir, net) = network();
        assert!(!net.ready());
        let err = net
            .attach_v4(
                "s1",
                &PodSandboxMetadata::default(),
                Path::new("/run/netns/x"),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, CniError::NoPodCidr), "{err:?}");
    }

    #[tokio::test]
    async fn an_invalid_cidr_is_refused_before_touching_the_host() {
        let (_dir, net) = network();
        let err = PodNetwork::set_pod_cidr(&net, "10.0.0.1/24")
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::Network(m) if m.contains("host bits")));
        assert!(!net.ready());
    }

    #[tokio::test]
    async fn detaching_before_any_cidr_is_set_is_a_no_op() {
        let (_dir, net) = network();
        net.detach_sandbox("s1", Path::new("/run/netns/x"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn sandbox_ids_that_are_not_cni_container_ids_are_refused() {
        let (_dir, net) = network();
        for id in ["", "../x", "a/b", "-a", "a b"] {
            let err = net.detach_sandbox(id, Path::new("/x")).await.unwrap_err();
            assert!(matches!(err, CniError::InvalidContainerId(_)), "{id:?}");
        }
    }

    #[test]
    fn bad_bridge_and_network_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (bridge, name) in [
            ("a-very-long-bridge-name", "kaji"),
            ("", "kaji"),
            ("kaji0", "bad name"),
        ] {
            let config = CniConfig {
                bridge: bridge.into(),
                network_name: name.into(),
                ..CniConfig::new(dir.path())
            };
            assert!(matches!(
                CniNetwork::new(config),
                Err(CniError::InvalidConfig(_))
            ));
        }
    }

    #[test]
    fn cni_args_carry_the_pod_identity_and_skip_what_cannot_be_encoded() {
        let pod = PodSandboxMetadata {
            name: "web-0".into(),
            namespace: "default".into(),
            uid: "a;b".into(),
            attempt: 0,
        };
        assert_eq!(
            cni_args("s1", &pod),
            "IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID=s1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0"
        );
    }

    #[tokio::test]
    async fn calls_for_one_sandbox_wait_for_each_other_but_others_do_not() {
        let locks = SandboxLocks::default();
        let held = locks.lock("a").await;
        let other = tokio::time::timeout(Duration::from_millis(50), locks.lock("b")).await;
        assert!(other.is_ok());
        let same = tokio::time::timeout(Duration::from_millis(50), locks.lock("a")).await;
        assert!(same.is_err());
        drop(held);
        let again = tokio::time::timeout(Duration::from_millis(50), locks.lock("a")).await;
        assert!(again.is_ok());
    }
}
