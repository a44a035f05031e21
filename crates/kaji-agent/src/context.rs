//! One node's shared state: its name, runtime, directories and addresses,
//! the pod workers it runs, and how it reports Events. Every task working
//! for the node (pod workers, the relister, heartbeats) holds it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kaji_controllers::events::{EventRecorder, EventType};
use kaji_runtime::PodRuntime;
use tokio::sync::{watch, Notify};

use crate::backoff::BackoffPolicy;
use crate::machine::MachineInfo;
use crate::objects::ObjectCache;

/// How often the agent does things; kubelet's defaults unless noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Lease renewal period (kubelet: a quarter of the lease duration).
    pub lease_renew: Duration,
    /// `spec.leaseDurationSeconds` of the node's Lease.
    pub lease_duration_seconds: i32,
    /// How often node status is computed and written if it changed.
    pub node_status_update: Duration,
    /// How often node status is written even if unchanged (kubelet: 5 min;
    /// here 1 min).
    pub node_status_report: Duration,
    /// How often the runtime is relisted to notice container state changes
    /// (kubelet's PLEG relist period).
    pub relist: Duration,
    /// How often each pod is synced without a trigger (kubelet's
    /// `syncFrequency`); ConfigMap and Secret volumes refresh then.
    pub resync: Duration,
    /// How often sandboxes and directories of pods that no longer exist
    /// are removed.
    pub orphan_gc: Duration,
    /// How long a read ConfigMap or Secret is reused.
    pub object_ttl: Duration,
    /// CrashLoopBackOff bounds.
    pub backoff: BackoffPolicy,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            lease_renew: Duration::from_secs(10),
            lease_duration_seconds: 40,
            node_status_update: Duration::from_secs(10),
            node_status_report: Duration::from_secs(60),
            relist: Duration::from_secs(1),
            resync: Duration::from_secs(60),
            orphan_gc: Duration::from_secs(60),
            object_ttl: Duration::from_secs(5),
            backoff: BackoffPolicy::default(),
        }
    }
}

/// A running pod worker, as its node sees it.
pub(crate) struct WorkerHandle {
    /// The latest pod object; `None` once it is gone from the API.
    pub pod: watch::Sender<Option<Arc<Pod>>>,
    /// Wakes the worker to sync now (runtime or probe changes).
    pub wake: Arc<Notify>,
}

/// One node's state, shared by every task working for it.
pub(crate) struct NodeContext {
    /// The Node's name.
    pub name: String,
    /// API client.
    pub client: kube::Client,
    /// What runs the node's pods.
    pub runtime: Arc<dyn PodRuntime>,
    /// The runtime's name, the scheme of container IDs (`name://id`).
    pub runtime_name: String,
    /// The node's data directory (pods/, log/pods/).
    pub root: PathBuf,
    /// The node's addresses, InternalIP first.
    pub host_ips: Vec<String>,
    /// The node's hardware.
    pub machine: MachineInfo,
    /// `status.allocatable`, the default limits of the downward API.
    pub allocatable: BTreeMap<String, Quantity>,
    /// Periods.
    pub timings: Timings,
    /// ConfigMap/Secret reads.
    pub objects: ObjectCache,
    /// Writes Events as `kubelet` from this node.
    pub recorder: EventRecorder,
    /// Pod workers by pod uid.
    pub workers: Mutex<HashMap<String, WorkerHandle>>,
    /// Whether the first full pod list has been seen, so that sandboxes
    /// without a worker are known to be orphans.
    pub pods_synced: std::sync::atomic::AtomicBool,
    /// The pod CIDR last handed to the runtime.
    pub pod_cidr: Mutex<Option<String>>,
    /// The Node's uid once registered (the Lease's owner).
    pub node_uid: Mutex<Option<String>>,
    /// Give sandboxes a log directory (simulated nodes may skip the disk).
    pub write_logs: bool,
}

impl NodeContext {
    /// Directory of a pod's volumes and state.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join("pods").join(uid)
    }

    /// Directory holding the pods' log directories.
    pub fn logs_root(&self) -> PathBuf {
        self.root.join("log").join("pods")
    }

    /// A pod's log directory, named as CRI names it.
    pub fn log_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.logs_root().join(format!("{namespace}_{name}_{uid}"))
    }

    /// Records an Event about `pod` (or one of its containers, with
    /// `field_path` `spec.containers{name}`) on its own task, so that syncing
    /// never waits for it.
    pub fn event(
        &self,
        pod: &Pod,
        field_path: Option<String>,
        type_: EventType,
        reason: &str,
        message: String,
    ) {
        let regarding = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path,
        };
        if type_ == EventType::Warning {
            tracing::info!(node = %self.name, pod = ?pod.metadata.name, %reason, "{message}");
        }
        let recorder = self.recorder.clone();
        let reason = reason.to_string();
        tokio::spawn(async move { recorder.record(&regarding, type_, &reason, &message).await });
    }

    /// Wakes the worker of pod `uid`, if it has one.
    pub fn wake(&self, uid: &str) {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = workers.get(uid) {
            w.wake.notify_one();
        }
    }

    /// The pods this node runs now.
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers
            .values()
            .filter_map(|w| w.pod.borrow().clone())
            .collect()
    }
}

/// The field path Events use for a container.
pub(crate) fn container_field_path(pod: &Pod, name: &str) -> String {
    let init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.name == name));
    if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}
