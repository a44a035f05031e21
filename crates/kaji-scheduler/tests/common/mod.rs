//! A scheduler against a real in-process API server, with builders for
//! nodes (capacity, allocatable, labels, taints, as kube-scheduler's
//! scheduler_perf harness makes them) and pods.

#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod, PodCondition};
use kaji_testenv::{eventually, TestEnv};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

pub const NS: &str = "default";

pub struct Harness {
    pub env: TestEnv,
    scheduler: tokio::task::JoinHandle<Result<(), kaji_scheduler::Error>>,
}

impl Harness {
    /// An API server with the scheduler running against it.
    pub async fn start() -> Harness {
        let env = TestEnv::start().await;
        let scheduler = tokio::spawn(kaji_scheduler::run(env.client()));
        Harness { env, scheduler }
    }

    pub fn client(&self) -> Client {
        self.env.client()
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client(), NS)
    }

    /// Creates a node with `cpu` and `memory` allocatable (and capacity),
    /// room for 110 pods, the hostname label, and `extra` merged in.
    pub async fn node(&self, name: &str, cpu: &str, memory: &str, extra: Value) -> Node {
        let resources = json!({"cpu": cpu, "memory": memory, "pods": "110"});
        let mut node = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"capacity": resources, "allocatable": resources},
        });
        merge(&mut node, extra);
        let node: Node = serde_json::from_value(node).expect("a valid node");
        Api::<Node>::all(self.client())
            .create(&PostParams::default(), &node)
            .await
            .expect("node created")
    }

    /// Creates a pod with one container, `extra` merged in.
    pub async fn pod(&self, name: &str, extra: Value) -> Pod {
        let mut pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
        });
        merge(&mut pod, extra);
        let pod: Pod = serde_json::from_value(pod).expect("a valid pod");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("pod created")
    }

    /// Creates a pod whose one container requests `requests`.
    pub async fn pod_requesting(&self, name: &str, requests: Value, extra: Value) -> Pod {
        let mut spec = json!({"spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
            "resources": {"requests": requests}}]}});
        merge(&mut spec, extra);
        self.pod(name, spec).await
    }

    /// Creates a pod already bound to `node` (load the scheduler must count).
    pub async fn bound_pod(&self, name: &str, node: &str, requests: Value, extra: Value) -> Pod {
        let mut spec = json!({"spec": {"nodeName": node}});
        merge(&mut spec, extra);
        self.pod_requesting(name, requests, spec).await
    }

    /// Waits until the pod is bound and returns its node.
    pub async fn scheduled(&self, name: &str) -> String {
        let pods = self.pods();
        eventually(&format!("pod {name} to be scheduled"), || {
            let pods = pods.clone();
            async move {
                pods.get(name)
                    .await
                    .ok()
                    .and_then(|p| p.spec.and_then(|s| s.node_name))
            }
        })
        .await
    }

    /// Waits until the pod has `PodScheduled=False` and returns the condition.
    pub async fn unschedulable(&self, name: &str) -> PodCondition {
        let pods = self.pods();
        eventually(&format!("pod {name} to be marked unschedulable"), || {
            let pods = pods.clone();
            async move {
                scheduled_condition(&pods.get(name).await.ok()?).filter(|c| c.status == "False")
            }
        })
        .await
    }

    /// Asserts the pod stays unbound for a while.
    pub async fn stays_pending(&self, name: &str) {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let pod = self.pods().get(name).await.expect("pod exists");
        assert_eq!(
            pod.spec.and_then(|s| s.node_name),
            None,
            "{name} should not have been scheduled"
        );
    }

    /// Events about the pod `name`, oldest first.
    pub async fn events_about(&self, name: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client(), NS);
        events
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await
            .expect("events listed")
            .items
    }

    /// Waits for an event with `reason` about the pod and returns it.
    pub async fn event(&self, name: &str, reason: &str) -> Event {
        eventually(&format!("a {reason} event about {name}"), || async {
            self.events_about(name)
                .await
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason))
        })
        .await
    }

    /// Deletes a pod at once.
    pub async fn delete_pod(&self, name: &str) {
        self.pods()
            .delete(
                name,
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                },
            )
            .await
            .expect("pod deleted");
    }

    pub fn stop(self) {
        self.scheduler.abort();
    }
}

/// The pod's `PodScheduled` condition.
pub fn scheduled_condition(pod: &Pod) -> Option<PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .cloned()
}

/// Labels `app: <app>`.
pub fn app(app: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}}})
}

/// Merges `extra` into `base`: objects key by key, anything else replaced.
pub fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (k, v) in extra {
                merge(base.entry(k).or_insert(Value::Null), v);
            }
        }
        (base, extra) => *base = extra,
    }
}

/// `extra` objects merged left to right.
pub fn all(parts: impl IntoIterator<Item = Value>) -> Value {
    let mut out = json!({});
    for part in parts {
        merge(&mut out, part);
    }
    out
}
