//! The scheduler's in-memory view of the cluster: one [`NodeInfo`] per node
//! with the pods bound (or assumed) there and their summed requests, kept
//! up to date incrementally from watch events.
//!
//! A pod the scheduler has chosen a node for is *assumed* on that node at
//! once, before its binding is written, so the next scheduling cycle
//! already counts it; the watch event of the bound pod confirms it, and a
//! failed binding forgets it. Pods bound to a node the cache does not know
//! (yet) wait aside until the node appears.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use crate::pod_info::{HostPort, PodInfo};
use crate::queue::NodeChanges;
use crate::resources::Resources;

/// A node and what is placed on it.
#[derive(Debug)]
pub struct NodeInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.taints`.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// `status.allocatable`.
    pub allocatable: Resources,
    /// The sum of the requests of its pods.
    pub requested: Resources,
    /// The sum of its pods' CPU requests, counting missing ones at the
    /// scoring default.
    pub non_zero_milli_cpu: i64,
    /// The sum of its pods' memory requests, counting missing ones at the
    /// scoring default.
    pub non_zero_memory: i64,
    /// Its pods, bound and assumed.
    pub pods: Vec<Arc<PodInfo>>,
    /// The host ports its pods bind.
    pub used_ports: Vec<HostPort>,
    /// How many of its pods have any pod affinity or anti-affinity term.
    pub pods_with_affinity: usize,
    /// How many of its pods have a required anti-affinity term.
    pub pods_with_required_anti_affinity: usize,
}

impl NodeInfo {
    /// A node without pods.
    pub fn new(node: &Node) -> NodeInfo {
        let mut info = NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            unschedulable: false,
            allocatable: Resources::default(),
            requested: Resources::default(),
            non_zero_milli_cpu: 0,
            non_zero_memory: 0,
            pods: Vec::new(),
            used_ports: Vec::new(),
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
        };
        info.set_node(node);
        info
    }

    /// Takes the node's current labels, taints, cordon and allocatable,
    /// reporting what changed.
    pub fn set_node(&mut self, node: &Node) -> NodeChanges {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        let taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        let unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        let allocatable = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .map(Resources::from_list)
            .unwrap_or_default();
        let changes = NodeChanges {
            labels: labels != self.labels,
            taints: taints != self.taints,
            unschedulable: unschedulable != self.unschedulable,
            allocatable: allocatable != self.allocatable,
        };
        self.labels = labels;
        self.taints = taints;
        self.unschedulable = unschedulable;
        self.allocatable = allocatable;
        changes
    }

    /// Places a pod here.
    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests.requests);
        self.non_zero_milli_cpu += pod.requests.non_zero_milli_cpu;
        self.non_zero_memory += pod.requests.non_zero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if pod.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.push(pod);
    }

    /// Removes the pod with `uid`, returning it.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let position = self.pods.iter().position(|p| p.uid == uid)?;
        let pod = self.pods.swap_remove(position);
        self.requested.sub(&pod.requests.requests);
        self.non_zero_milli_cpu -= pod.requests.non_zero_milli_cpu;
        self.non_zero_memory -= pod.requests.non_zero_memory;
        for port in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(i);
            }
        }
        if pod.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        Some(pod)
    }
}

/// Where the cache holds a pod.
#[derive(Debug)]
struct Placement {
    node: String,
    assumed: bool,
}

/// Every node and where every bound or assumed pod is.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pods: HashMap<String, Placement>,
    /// Pods bound to nodes the cache does not know, by node name.
    orphans: HashMap<String, Vec<Arc<PodInfo>>>,
}

impl Cache {
    /// All known nodes, in a stable order that changes only when nodes
    /// come and go.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    /// The position of the node named `name` in [`Cache::nodes`].
    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// Adds or updates a node; `None` for an update that changed nothing
    /// the scheduler looks at.
    pub fn upsert_node(&mut self, node: &Node) -> NodeUpsert {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(&i) = self.index.get(&name) {
            return NodeUpsert::Updated(self.nodes[i].set_node(node));
        }
        let mut info = NodeInfo::new(node);
        for pod in self.orphans.remove(&name).unwrap_or_default() {
            info.add_pod(pod);
        }
        self.index.insert(name, self.nodes.len());
        self.nodes.push(info);
        NodeUpsert::Added
    }

    /// Removes a node; pods still bound to it wait aside for their own
    /// deletion (or the node's return).
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let info = self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
        if !info.pods.is_empty() {
            self.orphans.insert(info.name, info.pods);
        }
    }

    /// Names of every known node.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.name.as_str())
    }

    /// Records a pod the API shows bound (`spec.nodeName` set), confirming
    /// it if it was assumed. Returns the previous version, if the cache had one.
    pub fn upsert_bound_pod(&mut self, pod: Arc<PodInfo>) -> Option<Arc<PodInfo>> {
        let node = pod.node_name()?.to_string();
        let previous = self.remove_pod(&pod.uid);
        self.place(pod, node, false);
        previous
    }

    /// Counts `pod` on `node` from now on, until it is confirmed bound or
    /// forgotten.
    pub fn assume(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove_pod(&pod.uid);
        self.place(pod, node.to_string(), true);
    }

    /// Drops an assumed pod whose binding failed; a pod confirmed bound
    /// meanwhile stays.
    pub fn forget(&mut self, uid: &str) -> bool {
        if self.is_assumed(uid) {
            self.remove_pod(uid);
            true
        } else {
            false
        }
    }

    /// Whether the pod with `uid` is assumed and not yet confirmed.
    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    /// Whether the cache holds the pod with `uid` (bound or assumed).
    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// UIDs of every pod the cache holds.
    pub fn pod_uids(&self) -> impl Iterator<Item = &str> {
        self.pods.keys().map(String::as_str)
    }

    /// Removes a pod wherever it is, returning it.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let placement = self.pods.remove(uid)?;
        if let Some(&i) = self.index.get(&placement.node) {
            return self.nodes[i].remove_pod(uid);
        }
        let orphans = self.orphans.get_mut(&placement.node)?;
        let position = orphans.iter().position(|p| p.uid == uid)?;
        let pod = orphans.swap_remove(position);
        if orphans.is_empty() {
            self.orphans.remove(&placement.node);
        }
        Some(pod)
    }

    fn place(&mut self, pod: Arc<PodInfo>, node: String, assumed: bool) {
        self.pods.insert(
            pod.uid.clone(),
            Placement {
                node: node.clone(),
                assumed,
            },
        );
        match self.index.get(&node) {
            Some(&i) => self.nodes[i].add_pod(pod),
            None => self.orphans.entry(node).or_default().push(pod),
        }
    }
}

/// What [`Cache::upsert_node`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum NodeUpsert {
    /// A node the cache did not know.
    Added,
    /// A known node changed (or not: see the changes).
    Updated(NodeChanges),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": "1Gi", "pods": "10"}}}))
        .unwrap()
    }

    fn pod(uid: &str, node: Option<&str>, cpu: &str) -> Arc<PodInfo> {
        let mut spec = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}},
            "ports": [{"containerPort": 80, "hostPort": 80}]}]});
        if let Some(node) = node {
            spec["nodeName"] = json!(node);
        }
        Arc::new(PodInfo::new(
            serde_json::from_value(
                json!({"metadata": {"name": uid, "namespace": "d", "uid": uid}, "spec": spec}),
            )
            .unwrap(),
        ))
    }

    #[test]
    fn bound_pods_add_to_their_nodes_requests_and_ports() {
        let mut cache = Cache::default();
        cache.upsert_node(&node("n1", "4"));
        cache.upsert_bound_pod(pod("a", Some("n1"), "1"));
        cache.upsert_bound_pod(pod("b", Some("n1"), "500m"));
        let n1 = cache.node("n1").unwrap();
        assert_eq!(n1.requested.milli_cpu, 1500);
        assert_eq!(n1.used_ports.len(), 2);
        cache.remove_pod("a");
        let n1 = cache.node("n1").unwrap();
        assert_eq!(n1.requested.milli_cpu, 500);
        assert_eq!(n1.pods.len(), 1);
        assert_eq!(n1.used_ports.len(), 1);
    }

    #[test]
    fn assumed_pods_count_until_forgotten_and_confirmed_ones_stay() {
        let mut cache = Cache::default();
        cache.upsert_node(&node("n1", "4"));
        cache.assume(pod("a", None, "1"), "n1");
        cache.assume(pod("b", None, "1"), "n1");
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 2000);
        assert!(cache.is_assumed("a"));
        cache.upsert_bound_pod(pod("a", Some("n1"), "1"));
        assert!(!cache.is_assumed("a"));
        assert!(!cache.forget("a"), "a confirmed pod is not forgotten");
        assert!(cache.forget("b"));
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 1000);
    }

    #[test]
    fn a_pod_bound_elsewhere_than_assumed_moves() {
        let mut cache = Cache::default();
        cache.upsert_node(&node("n1", "4"));
        cache.upsert_node(&node("n2", "4"));
        cache.assume(pod("a", None, "1"), "n1");
        cache.upsert_bound_pod(pod("a", Some("n2"), "1"));
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 0);
        assert_eq!(cache.node("n2").unwrap().requested.milli_cpu, 1000);
    }

    #[test]
    fn pods_of_unknown_nodes_wait_for_the_node() {
        let mut cache = Cache::default();
        cache.upsert_bound_pod(pod("a", Some("n1"), "1"));
        assert!(cache.node("n1").is_none());
        assert_eq!(cache.upsert_node(&node("n1", "4")), NodeUpsert::Added);
        assert_eq!(cache.node("n1").unwrap().requested.milli_cpu, 1000);
        cache.remove_node("n1");
        assert!(cache.contains_pod("a"));
        cache.upsert_node(&node("n1", "4"));
        assert_eq!(cache.node("n1").unwrap().pods.len(), 1);
    }

    #[test]
    fn removing_a_node_keeps_the_index_of_the_others() {
        let mut cache = Cache::default();
        for name in ["a", "b", "c"] {
            cache.upsert_node(&node(name, "1"));
        }
        cache.remove_node("a");
        assert_eq!(cache.node("c").unwrap().name, "c");
        assert_eq!(cache.node("b").unwrap().name, "b");
        assert_eq!(cache.nodes().len(), 2);
    }

    #[test]
    fn node_updates_report_what_changed() {
        let mut cache = Cache::default();
        cache.upsert_node(&node("n1", "4"));
        assert_eq!(
            cache.upsert_node(&node("n1", "8")),
            NodeUpsert::Updated(NodeChanges {
                allocatable: true,
                ..NodeChanges::default()
            })
        );
        assert_eq!(
            cache.upsert_node(&node("n1", "8")),
            NodeUpsert::Updated(NodeChanges::default())
        );
    }
}
