//! The Node objects of this process's nodes: registration (create, or
//! update an existing one), status (capacity, addresses, node info,
//! conditions) written when it changes and at least every
//! `node_status_report`, and the pod CIDR handed to the runtime once the
//! node IPAM controller assigns it. One watch and one status loop serve
//! every node of the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kaji_runtime::RuntimeStatus;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use serde_json::{json, Value};
use tokio::time::{Instant, MissedTickBehavior};

use crate::context::NodeContext;
use crate::machine::go_arch;

/// The version this agent reports as `kubeletVersion`.
pub const KUBELET_VERSION: &str = "v1.32.0-kaji";

/// The annotation saying whether pods get their own network.
pub const POD_NETWORK_ANNOTATION: &str = "kaji.dev/pod-network";

/// How many nodes register or report at once.
const CONCURRENCY: usize = 32;

/// The Node's labels: the well-known ones kubelet sets, then `extra`.
fn labels(ctx: &NodeContext, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), ctx.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), go_arch().to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), go_arch().to_string()),
    ]);
    labels.extend(extra.clone());
    labels
}

fn network_annotation(rt: &RuntimeStatus) -> &'static str {
    if rt.network_ready {
        "isolated"
    } else {
        "host"
    }
}

/// Creates the Node, or updates an existing one's labels and annotations;
/// then writes its status.
///
/// # Errors
/// The API refused the Node.
pub(crate) async fn register(
    ctx: &NodeContext,
    port: u16,
    extra_labels: &BTreeMap<String, String>,
) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let rt = ctx.runtime.status().await;
    let annotations = BTreeMap::from([
        (
            "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
            "true".to_string(),
        ),
        (
            POD_NETWORK_ANNOTATION.to_string(),
            network_annotation(&rt).to_string(),
        ),
    ]);
    let node = Node {
        metadata: ObjectMeta {
            name: Some(ctx.name.clone()),
            labels: Some(labels(ctx, extra_labels)),
            annotations: Some(annotations.clone()),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(status(ctx, &rt, port, None, Timestamp::now())),
    };
    let registered = match api.create(&PostParams::default(), &node).await {
        Ok(n) => n,
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let patch = json!({"metadata": {
                "labels": labels(ctx, extra_labels),
                "annotations": annotations,
            }});
            api.patch(&ctx.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?
        }
        Err(e) => return Err(e),
    };
    *ctx.node_uid.lock().unwrap_or_else(|p| p.into_inner()) = registered.metadata.uid.clone();
    let status = status(ctx, &rt, port, registered.status.as_ref(), Timestamp::now());
    api.patch_status(
        &ctx.name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}

/// Registers every node, a few at a time.
///
/// # Errors
/// The first registration that failed.
pub(crate) async fn register_all(
    nodes: &[Arc<NodeContext>],
    port: u16,
    extra_labels: &BTreeMap<String, String>,
) -> Result<(), kube::Error> {
    let results: Vec<Result<(), kube::Error>> = futures::stream::iter(nodes)
        .map(|n| register(n, port, extra_labels))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

fn second(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// A condition, keeping the old transition time while its status holds.
fn condition(
    old: &[NodeCondition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) -> NodeCondition {
    let status = if ok { "True" } else { "False" };
    NodeCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_heartbeat_time: Some(second(now)),
        last_transition_time: old
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .or_else(|| Some(second(now))),
    }
}

/// The node's status; conditions this agent does not own are kept from `old`.
pub(crate) fn status(
    ctx: &NodeContext,
    rt: &RuntimeStatus,
    port: u16,
    old: Option<&NodeStatus>,
    now: Timestamp,
) -> NodeStatus {
    let old_conditions = old.and_then(|s| s.conditions.clone()).unwrap_or_default();
    let ready = if !rt.runtime_ready {
        condition(
            &old_conditions,
            "Ready",
            false,
            "KubeletNotReady",
            format!("container runtime is not ready: {}", rt.message),
            now,
        )
    } else if !rt.network_ready {
        let why = if rt.message.is_empty() {
            "pods share the host network".to_string()
        } else {
            rt.message.clone()
        };
        condition(
            &old_conditions,
            "Ready",
            true,
            "KubeletReady",
            format!("kubelet is posting ready status. WARNING: pod network not isolated: {why}"),
            now,
        )
    } else {
        condition(
            &old_conditions,
            "Ready",
            true,
            "KubeletReady",
            "kubelet is posting ready status".into(),
            now,
        )
    };
    let owned = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"];
    let mut conditions = vec![
        condition(
            &old_conditions,
            "MemoryPressure",
            false,
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available".into(),
            now,
        ),
        condition(
            &old_conditions,
            "DiskPressure",
            false,
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure".into(),
            now,
        ),
        condition(
            &old_conditions,
            "PIDPressure",
            false,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available".into(),
            now,
        ),
        ready,
    ];
    conditions.extend(
        old_conditions
            .into_iter()
            .filter(|c| !owned.contains(&c.type_.as_str())),
    );
    let mut addresses: Vec<NodeAddress> = ctx
        .host_ips
        .iter()
        .map(|ip| NodeAddress {
            type_: "InternalIP".into(),
            address: ip.clone(),
        })
        .collect();
    addresses.push(NodeAddress {
        type_: "Hostname".into(),
        address: ctx.machine.hostname.clone(),
    });
    let m = &ctx.machine;
    NodeStatus {
        addresses: Some(addresses),
        allocatable: Some(ctx.allocatable.clone()),
        capacity: Some(m.capacity()),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch().to_string(),
            boot_id: m.boot_id.clone(),
            container_runtime_version: format!("{}://{}", rt.name, rt.version),
            kernel_version: m.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.to_string(),
            machine_id: m.machine_id.clone(),
            operating_system: "linux".to_string(),
            os_image: m.os_image.clone(),
            system_uuid: m.machine_id.clone(),
            ..NodeSystemInfo::default()
        }),
        ..old.cloned().unwrap_or_default()
    }
}

/// The status with heartbeat times removed, to tell a real change.
fn without_heartbeats(status: &NodeStatus) -> Value {
    let mut v = serde_json::to_value(status).unwrap_or(Value::Null);
    if let Some(conditions) = v.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in conditions {
            if let Some(c) = c.as_object_mut() {
                c.remove("lastHeartbeatTime");
            }
        }
    }
    v
}

/// Watches this process's Nodes into a store, handing each node's pod CIDR
/// to its runtime when it is set or changes.
pub(crate) fn watch(
    client: kube::Client,
    nodes: &[Arc<NodeContext>],
) -> (Store<Node>, impl std::future::Future<Output = ()>) {
    let (store, writer) = reflector::store::<Node>();
    let mut config = watcher::Config::default();
    if let [only] = nodes {
        config = config.fields(&format!("metadata.name={}", only.name));
    }
    let by_name: HashMap<String, Arc<NodeContext>> =
        nodes.iter().map(|n| (n.name.clone(), n.clone())).collect();
    let stream = watcher::watcher(Api::<Node>::all(client), config)
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    let task = async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(node) => {
                    let name = node.metadata.name.clone().unwrap_or_default();
                    if let Some(ctx) = by_name.get(&name) {
                        apply_pod_cidr(ctx, &node).await;
                    }
                }
                Err(error) => tracing::warn!(%error, "node watch failed"),
            }
        }
    };
    (store, task)
}

/// Hands the node's pod CIDR to the runtime if it changed.
async fn apply_pod_cidr(ctx: &NodeContext, node: &Node) {
    let spec = node.spec.as_ref();
    let Some(cidr) = spec
        .and_then(|s| s.pod_cidr.clone())
        .or_else(|| spec.and_then(|s| s.pod_cidrs.as_ref()?.first().cloned()))
        .filter(|c| !c.is_empty())
    else {
        return;
    };
    if ctx
        .pod_cidr
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_deref()
        == Some(cidr.as_str())
    {
        return;
    }
    match ctx.runtime.update_pod_cidr(&cidr).await {
        Ok(()) => {
            tracing::info!(node = %ctx.name, %cidr, "pod CIDR handed to the runtime");
            *ctx.pod_cidr.lock().unwrap_or_else(|p| p.into_inner()) = Some(cidr);
        }
        Err(error) => {
            tracing::warn!(node = %ctx.name, %cidr, %error, "the runtime refused the pod CIDR")
        }
    }
}

/// Writes each node's status when it changes and at least every
/// `node_status_report`, checking every `node_status_update`.
pub(crate) async fn report(
    nodes: Vec<Arc<NodeContext>>,
    store: Store<Node>,
    port: u16,
    extra_labels: BTreeMap<String, String>,
) {
    let Some(first) = nodes.first() else { return };
    let timings = first.timings;
    let mut ticker = tokio::time::interval(timings.node_status_update);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last: HashMap<String, (Value, Instant, &'static str)> = HashMap::new();
    let extra_labels = &extra_labels;
    loop {
        ticker.tick().await;
        let work: Vec<_> = nodes
            .iter()
            .cloned()
            .map(|ctx| {
            let store = store.clone();
            let previous = last.get(&ctx.name).cloned();
            async move {
                let ctx = &ctx;
                let node = store.get(&ObjectRef::new(&ctx.name));
                if let Some(node) = &node {
                    apply_pod_cidr(ctx, node).await;
                }
                let rt = ctx.runtime.status().await;
                let old = node.as_ref().and_then(|n| n.status.as_ref());
                let status = status(ctx, &rt, port, old, Timestamp::now());
                let comparable = without_heartbeats(&status);
                let annotation = network_annotation(&rt);
                let due = previous.as_ref().is_none_or(|(v, at, a)| {
                    *v != comparable || at.elapsed() >= timings.node_status_report || *a != annotation
                });
                if !due {
                    return None;
                }
                let api: Api<Node> = Api::all(ctx.client.clone());
                let result = api
                    .patch_status(
                        &ctx.name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "status": status })),
                    )
                    .await;
                match result {
                    Ok(_) => {}
                    // Deleted from the API: register again, as kubelet does on restart.
                    Err(kube::Error::Api(s)) if s.code == 404 => {
                        tracing::warn!(node = %ctx.name, "the Node was deleted; registering it again");
                        if let Err(error) = register(ctx, port, extra_labels).await {
                            tracing::warn!(node = %ctx.name, %error, "registering the node again failed");
                        }
                        return None;
                    }
                    Err(error) => {
                        tracing::warn!(node = %ctx.name, %error, "updating node status failed");
                        return None;
                    }
                }
                let annotated = node
                    .as_ref()
                    .and_then(|n| n.metadata.annotations.as_ref())
                    .and_then(|a| a.get(POD_NETWORK_ANNOTATION))
                    .map(String::as_str);
                if annotated != Some(annotation) {
                    let patch = json!({"metadata": {"annotations": {POD_NETWORK_ANNOTATION: annotation}}});
                    if let Err(error) = api
                        .patch(&ctx.name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        tracing::warn!(node = %ctx.name, %error, "annotating node failed");
                    }
                }
                Some((ctx.name.clone(), (comparable, Instant::now(), annotation)))
            }
        })
            .collect();
        let written: Vec<_> = futures::stream::iter(work)
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        last.extend(written.into_iter().flatten());
    }
}
