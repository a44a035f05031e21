//! The node lifecycle controller against a real in-process API server.
//!
//! The tests play the node agent: they create Nodes and their Leases, renew
//! (or stop renewing) them, and post conditions, then watch what the
//! controller does.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kaji_controllers::nodelifecycle::taints::{
    DISK_PRESSURE, MEMORY_PRESSURE, NOT_READY, PID_PRESSURE, UNREACHABLE, UNSCHEDULABLE,
};
use kaji_controllers::nodelifecycle::{Config, MESSAGE_UNKNOWN, REASON_UNKNOWN};
use kaji_testenv::{eventually, TestEnv};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

const GRACE: Duration = Duration::from_secs(2);

fn from<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts a server and the controller with a 2 s grace period.
async fn start() -> (
    TestEnv,
    Client,
    AbortOnDrop<Result<(), kaji_controllers::Error>>,
) {
    let env = TestEnv::start().await;
    let client = env.client();
    let config = Config {
        monitor_period: Duration::from_millis(250),
        grace_period: GRACE,
        startup_grace_period: GRACE,
        ..Config::default()
    };
    let controller = tokio::spawn(kaji_controllers::nodelifecycle::run_with(
        client.clone(),
        config,
    ));
    (env, client, AbortOnDrop(controller))
}

/// Registers a node the way a node agent does: the Node with its conditions
/// (`(type, status)`), then its Lease.
async fn register_node(client: &Client, name: &str, conditions: &[(&str, &str)]) {
    let conditions: Vec<Value> = conditions
        .iter()
        .map(|(kind, status)| {
            json!({"type": kind, "status": status, "lastHeartbeatTime": now(),
                   "lastTransitionTime": now(), "reason": "KubeletReport", "message": "as reported"})
        })
        .collect();
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": name}, "status": {"conditions": conditions}})),
        )
        .await
        .expect("node created");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease = json!({
        "metadata": {"name": name},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": MicroTime(Timestamp::now())},
    });
    leases
        .create(&PostParams::default(), &from(lease))
        .await
        .expect("lease created");
}

async fn renew_lease(client: &Client, name: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let patch = json!({"spec": {"renewTime": MicroTime(Timestamp::now())}});
    leases
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("lease renewed");
}

/// A node agent that keeps renewing its Lease until dropped.
async fn healthy_node(client: &Client, name: &str) -> AbortOnDrop<()> {
    register_node(client, name, &[("Ready", "True")]).await;
    let (client, name) = (client.clone(), name.to_string());
    AbortOnDrop(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            renew_lease(&client, &name).await;
        }
    }))
}

/// Posts the Ready condition with a fresh heartbeat, as a node agent does.
async fn post_ready(client: &Client, name: &str, status: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": status,
        "lastHeartbeatTime": now(), "lastTransitionTime": now(),
        "reason": "KubeletReady", "message": "kubelet is posting ready status"}]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("node status posted");
}

async fn get_node(client: &Client, name: &str) -> Node {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.get(name).await.expect("node read")
}

fn condition<'a>(
    node: &'a Node,
    kind: &str,
) -> Option<&'a k8s_openapi::api::core::v1::NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

fn taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
}

fn has_taint(node: &Node, key: &str, effect: &str) -> bool {
    taints(node)
        .iter()
        .any(|t| t.key == key && t.effect == effect)
}

/// Creates a running, ready pod bound to `node`.
async fn create_pod(client: &Client, name: &str, node: &str, tolerations: Value) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod = json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "tolerations": tolerations,
                 "containers": [{"name": "c", "image": "busybox:1.36"}]},
    });
    pods.create(&PostParams::default(), &from(pod))
        .await
        .expect("pod created");
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True", "lastTransitionTime": now()}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(&status))
        .await
        .expect("pod status posted")
}

/// Whether the pod exists and is not being deleted. An evicted pod bound to
/// a node stays, terminating, until its node agent confirms it stopped, so
/// "evicted" means "terminating or gone".
async fn pod_running(client: &Client, name: &str) -> bool {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.get_opt(name)
        .await
        .expect("pod read")
        .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
}

async fn events_about(client: &Client, name: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
        .await
        .expect("events listed")
        .items
}

#[tokio::test]
async fn a_node_that_stops_renewing_is_marked_unknown_and_tainted_unreachable() {
    let (_env, client, _controller) = start().await;
    let _alive = healthy_node(&client, "alive").await;
    register_node(
        &client,
        "gone",
        &[
            ("Ready", "True"),
            ("MemoryPressure", "False"),
            ("DiskPressure", "False"),
        ],
    )
    .await;

    let gone = eventually(
        "the silent node to be tainted unreachable:NoExecute",
        || async {
            let node = get_node(&client, "gone").await;
            has_taint(&node, UNREACHABLE, "NoExecute").then_some(node)
        },
    )
    .await;
    for kind in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = condition(&gone, kind).unwrap_or_else(|| panic!("{kind} condition"));
        assert_eq!(c.status, "Unknown", "{kind}");
        assert!(c.last_transition_time.is_some(), "{kind}");
    }
    let ready = condition(&gone, "Ready").unwrap();
    assert_eq!(ready.reason.as_deref(), Some(REASON_UNKNOWN));
    assert_eq!(ready.message.as_deref(), Some(MESSAGE_UNKNOWN));
    assert_eq!(MESSAGE_UNKNOWN, "Kubelet stopped posting node status.");
    assert!(has_taint(&gone, UNREACHABLE, "NoSchedule"));
    assert!(
        taints(&gone).iter().all(|t| t.time_added.is_some()),
        "{:?}",
        taints(&gone)
    );

    let alive = get_node(&client, "alive").await;
    assert_eq!(condition(&alive, "Ready").unwrap().status, "True");
    assert!(taints(&alive).is_empty(), "{:?}", taints(&alive));

    eventually("a NodeNotReady event on the node", || async {
        events_about(&client, "gone").await.into_iter().find(|e| {
            e.reason.as_deref() == Some("NodeNotReady")
                && e.message.as_deref() == Some("Node gone status is now: NodeNotReady")
        })
    })
    .await;
}

#[tokio::test]
async fn pods_on_an_unreachable_node_are_marked_not_ready() {
    let (_env, client, _controller) = start().await;
    let _alive = healthy_node(&client, "alive").await;
    register_node(&client, "gone", &[("Ready", "True")]).await;
    create_pod(&client, "stranded", "gone", json!([])).await;
    create_pod(&client, "fine", "alive", json!([])).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let ready_of = |pod: &Pod| {
        pod.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone())
    };
    eventually("the stranded pod to be marked not ready", || async {
        let pod = pods.get("stranded").await.expect("pod read");
        (ready_of(&pod).as_deref() == Some("False")).then_some(())
    })
    .await;
    let fine = pods.get("fine").await.expect("pod read");
    assert_eq!(ready_of(&fine).as_deref(), Some("True"));
    // Pods keep the default five-minute tolerations: marked, not evicted.
    assert!(pod_running(&client, "stranded").await);
}

#[tokio::test]
async fn pods_are_evicted_toleration_seconds_after_the_taint_was_added() {
    let (_env, client, _controller) = start().await;
    let _alive = healthy_node(&client, "alive").await;
    register_node(&client, "gone", &[("Ready", "True")]).await;
    let unreachable_for = |seconds: Option<i64>| {
        json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": seconds}])
    };
    create_pod(&client, "brief", "gone", unreachable_for(Some(2))).await;
    create_pod(&client, "forever", "gone", unreachable_for(None)).await;
    create_pod(&client, "defaults", "gone", json!([])).await;
    create_pod(&client, "elsewhere", "alive", unreachable_for(Some(1))).await;

    eventually("the brief pod to be evicted", || async {
        (!pod_running(&client, "brief").await).then_some(())
    })
    .await;
    let evicted_at = Timestamp::now();
    let node = get_node(&client, "gone").await;
    let taint = taints(&node)
        .into_iter()
        .find(|t| t.key == UNREACHABLE && t.effect == "NoExecute")
        .expect("the unreachable taint stays");
    let added = taint.time_added.expect("timeAdded").0;
    assert!(
        evicted_at.duration_since(added) >= k8s_openapi::jiff::SignedDuration::from_secs(2),
        "evicted at {evicted_at}, taint added at {added}"
    );
    eventually("a TaintManagerEviction event", || async {
        events_about(&client, "brief").await.into_iter().find(|e| {
            e.reason.as_deref() == Some("TaintManagerEviction")
                && e.message.as_deref() == Some("Marking for deletion Pod default/brief")
        })
    })
    .await;

    // Another pass or two must not change the others' fate.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(pod_running(&client, "forever").await, "tolerates forever");
    assert!(
        pod_running(&client, "defaults").await,
        "tolerates for 300 s"
    );
    assert!(pod_running(&client, "elsewhere").await, "its node is fine");
}

#[tokio::test]
async fn pods_that_do_not_tolerate_a_no_execute_taint_are_deleted_at_once() {
    let (_env, client, _controller) = start().await;
    let _alive = healthy_node(&client, "alive").await;
    create_pod(&client, "intolerant", "alive", json!([])).await;
    create_pod(
        &client,
        "tolerant",
        "alive",
        json!([{"key": "example.com/maintenance", "operator": "Exists"}]),
    )
    .await;
    let nodes: Api<Node> = Api::all(client.clone());
    let patch =
        json!({"spec": {"taints": [{"key": "example.com/maintenance", "effect": "NoExecute"}]}});
    nodes
        .patch("alive", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("node tainted");

    eventually("the intolerant pod to be deleted", || async {
        (!pod_running(&client, "intolerant").await).then_some(())
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Bound to a node, the pod terminates gracefully rather than vanishing.
    let evicted = pods.get("intolerant").await.expect("pod read");
    let target = evicted
        .status
        .and_then(|s| s.conditions)
        .and_then(|cs| cs.into_iter().find(|c| c.type_ == "DisruptionTarget"))
        .expect("a DisruptionTarget condition");
    assert_eq!(target.status, "True");
    assert_eq!(target.reason.as_deref(), Some("DeletionByTaintManager"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(pod_running(&client, "tolerant").await);
    // The controller leaves taints it does not own alone.
    let node = get_node(&client, "alive").await;
    assert!(has_taint(&node, "example.com/maintenance", "NoExecute"));
}

#[tokio::test]
async fn taints_are_removed_once_the_node_reports_ready_again() {
    let (_env, client, _controller) = start().await;
    let _alive = healthy_node(&client, "alive").await;
    register_node(&client, "flaky", &[("Ready", "True")]).await;
    create_pod(
        &client,
        "patient",
        "flaky",
        json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}]),
    )
    .await;
    eventually("the flaky node to be tainted", || async {
        let node = get_node(&client, "flaky").await;
        (has_taint(&node, UNREACHABLE, "NoExecute") && has_taint(&node, UNREACHABLE, "NoSchedule"))
            .then_some(())
    })
    .await;

    // The agent comes back: renews its Lease and reports Ready.
    renew_lease(&client, "flaky").await;
    post_ready(&client, "flaky", "True").await;
    let node = eventually("the taints to be removed", || async {
        let node = get_node(&client, "flaky").await;
        taints(&node).is_empty().then_some(node)
    })
    .await;
    assert_eq!(condition(&node, "Ready").unwrap().status, "True");
    // The cancelled eviction leaves the pod alone.
    assert!(pod_running(&client, "patient").await);
    eventually("the cancelled eviction to be recorded", || async {
        events_about(&client, "patient")
            .await
            .into_iter()
            .find(|e| e.message.as_deref() == Some("Cancelling deletion of Pod default/patient"))
    })
    .await;
}

#[tokio::test]
async fn reported_problems_and_cordoning_become_no_schedule_taints() {
    let (_env, client, _controller) = start().await;
    let _alive = healthy_node(&client, "alive").await;
    let _sick = healthy_node(&client, "sick").await;
    post_ready(&client, "sick", "False").await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pressure = json!({"status": {"conditions": [
        {"type": "MemoryPressure", "status": "True", "lastHeartbeatTime": now()},
        {"type": "DiskPressure", "status": "True", "lastHeartbeatTime": now()},
        {"type": "PIDPressure", "status": "True", "lastHeartbeatTime": now()},
    ]}});
    nodes
        .patch_status(
            "sick",
            &PatchParams::default(),
            &Patch::Strategic(&pressure),
        )
        .await
        .expect("pressure posted");
    nodes
        .patch(
            "sick",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"unschedulable": true}})),
        )
        .await
        .expect("node cordoned");

    let expected = [
        (NOT_READY, "NoSchedule"),
        (NOT_READY, "NoExecute"),
        (MEMORY_PRESSURE, "NoSchedule"),
        (DISK_PRESSURE, "NoSchedule"),
        (PID_PRESSURE, "NoSchedule"),
        (UNSCHEDULABLE, "NoSchedule"),
    ];
    eventually("a taint for every problem", || async {
        let node = get_node(&client, "sick").await;
        expected
            .iter()
            .all(|(k, e)| has_taint(&node, k, e))
            .then_some(())
    })
    .await;
    // The node agent is alive, so the controller never overrides its report.
    let node = get_node(&client, "sick").await;
    assert_eq!(condition(&node, "Ready").unwrap().status, "False");
    assert!(!has_taint(&node, UNREACHABLE, "NoExecute"));

    post_ready(&client, "sick", "True").await;
    let relief = json!({"status": {"conditions": [
        {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": now()},
        {"type": "DiskPressure", "status": "False", "lastHeartbeatTime": now()},
        {"type": "PIDPressure", "status": "False", "lastHeartbeatTime": now()},
    ]}});
    nodes
        .patch_status("sick", &PatchParams::default(), &Patch::Strategic(&relief))
        .await
        .expect("relief posted");
    let node = eventually("only the cordon taint to remain", || async {
        let node = get_node(&client, "sick").await;
        (taints(&node).len() == 1).then_some(node)
    })
    .await;
    assert!(has_taint(&node, UNSCHEDULABLE, "NoSchedule"));
    nodes
        .patch(
            "sick",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"unschedulable": false}})),
        )
        .await
        .expect("node uncordoned");
    eventually("no taints left", || async {
        taints(&get_node(&client, "sick").await)
            .is_empty()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn when_every_node_goes_silent_no_pod_is_evicted() {
    let (_env, client, _controller) = start().await;
    register_node(&client, "only", &[("Ready", "True")]).await;
    create_pod(
        &client,
        "survivor",
        "only",
        json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}]),
    )
    .await;
    eventually(
        "the node to be marked unknown and unschedulable",
        || async {
            let node = get_node(&client, "only").await;
            (condition(&node, "Ready").is_some_and(|c| c.status == "Unknown")
                && has_taint(&node, UNREACHABLE, "NoSchedule"))
            .then_some(())
        },
    )
    .await;
    // Several monitor passes and more than the toleration: still nothing evicted.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let node = get_node(&client, "only").await;
    assert!(
        !has_taint(&node, UNREACHABLE, "NoExecute"),
        "{:?}",
        taints(&node)
    );
    assert!(pod_running(&client, "survivor").await);

    // A second node reporting ready ends the disruption: after a fresh grace
    // period the silent node is tainted and its pod evicted.
    let _alive = healthy_node(&client, "alive").await;
    eventually(
        "the pod to be evicted once another node is ready",
        || async { (!pod_running(&client, "survivor").await).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_node_that_never_reported_is_marked_unknown_after_the_startup_grace() {
    let (_env, client, _controller) = start().await;
    let _alive = healthy_node(&client, "alive").await;
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &from(json!({"metadata": {"name": "mute"}})),
        )
        .await
        .expect("node created");
    let node = eventually("the mute node to get Unknown conditions", || async {
        let node = get_node(&client, "mute").await;
        condition(&node, "Ready").is_some().then_some(node)
    })
    .await;
    for kind in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = condition(&node, kind).unwrap();
        assert_eq!(c.status, "Unknown");
        assert_eq!(c.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(
            c.message.as_deref(),
            Some("Kubelet never posted node status.")
        );
    }
    eventually("the mute node to be tainted unreachable", || async {
        has_taint(&get_node(&client, "mute").await, UNREACHABLE, "NoExecute").then_some(())
    })
    .await;
}

#[tokio::test]
async fn new_pods_tolerate_not_ready_and_unreachable_nodes_for_five_minutes() {
    let env = TestEnv::start().await;
    let client = env.client();
    let pod = create_pod(&client, "plain", "somewhere", json!([])).await;
    let tolerations = pod.spec.unwrap().tolerations.unwrap_or_default();
    let keys: Vec<(String, Option<i64>)> = tolerations
        .iter()
        .map(|t| (t.key.clone().unwrap_or_default(), t.toleration_seconds))
        .collect();
    assert_eq!(
        keys,
        [
            (NOT_READY.to_string(), Some(300)),
            (UNREACHABLE.to_string(), Some(300))
        ]
    );
    assert!(tolerations.iter().all(
        |t| t.operator.as_deref() == Some("Exists") && t.effect.as_deref() == Some("NoExecute")
    ));
}
