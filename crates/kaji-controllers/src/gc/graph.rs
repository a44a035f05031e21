//! The owner graph: a metadata-only view of every object, keyed by uid, with
//! each object's owners and the reverse index of its dependents.
//!
//! Pure data, no IO. Every mutation returns the uids whose reconcile may now
//! decide differently, so the caller can queue exactly those.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::discovery::ApiResource;

/// Finalizer the API server adds on `propagationPolicy=Foreground`.
pub const FOREGROUND: &str = "foregroundDeletion";
/// Finalizer the API server adds on `propagationPolicy=Orphan`.
pub const ORPHAN: &str = "orphan";

/// One observed object.
#[derive(Clone, Debug)]
pub struct Node {
    /// The resource the object was listed from.
    pub resource: ApiResource,
    /// `metadata.namespace`, for namespaced objects.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.ownerReferences`.
    pub owners: Vec<OwnerReference>,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `metadata.finalizers`.
    pub finalizers: Vec<String>,
}

impl Node {
    /// Builds a node from an object's metadata; `None` without a name or uid.
    pub fn from_meta(resource: &ApiResource, meta: ObjectMeta) -> Option<Node> {
        Some(Node {
            resource: resource.clone(),
            namespace: meta.namespace,
            name: meta.name?,
            uid: meta.uid?,
            owners: meta.owner_references.unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.unwrap_or_default(),
        })
    }

    /// Whether the object carries `finalizer`.
    pub fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// Whether the object is being deleted in the foreground.
    pub fn foreground_deleting(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }
}

/// Identifies a resource (group, version, plural) for per-resource bookkeeping.
pub fn resource_key(ar: &ApiResource) -> String {
    format!("{}/{}", ar.api_version, ar.plural)
}

/// Every observed object by uid, with a dependents index.
///
/// # Caveats
/// The dependents index is keyed by owner uid whether or not the owner has
/// been observed, so dependents of an absent owner are found too.
#[derive(Default, Debug)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// The node for `uid`, if observed.
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The observed dependents of `owner_uid`.
    pub fn dependents(&self, owner_uid: &str) -> Vec<Node> {
        self.dependents
            .get(owner_uid)
            .into_iter()
            .flatten()
            .filter_map(|uid| self.nodes.get(uid))
            .cloned()
            .collect()
    }

    /// Uids of the nodes listed from the resource with `key`.
    pub fn uids_of(&self, key: &str) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| resource_key(&n.resource) == key)
            .map(|n| n.uid.clone())
            .collect()
    }

    /// Inserts or replaces a node; returns the uids to reconcile: the node
    /// itself, its old and new owners, and (for a new node) its dependents.
    pub fn upsert(&mut self, node: Node) -> Vec<String> {
        let uid = node.uid.clone();
        let mut touched: HashSet<String> = HashSet::from([uid.clone()]);
        touched.extend(node.owners.iter().map(|o| o.uid.clone()));
        let old = self.nodes.insert(uid.clone(), node);
        match &old {
            Some(old) => {
                for o in &old.owners {
                    touched.insert(o.uid.clone());
                    self.unlink(&o.uid, &uid);
                }
            }
            // A newly observed owner may settle dependents that looked dangling.
            None => touched.extend(self.dependents.get(&uid).into_iter().flatten().cloned()),
        }
        if let Some(new) = self.nodes.get(&uid) {
            for o in &new.owners {
                self.dependents
                    .entry(o.uid.clone())
                    .or_default()
                    .insert(uid.clone());
            }
        }
        touched.into_iter().collect()
    }

    /// Removes a node; returns the uids to reconcile: its dependents (now
    /// possibly dangling) and its owners (possibly waiting on it).
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(old) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        let mut touched: HashSet<String> = HashSet::new();
        for o in &old.owners {
            touched.insert(o.uid.clone());
            self.unlink(&o.uid, uid);
        }
        touched.extend(self.dependents.get(uid).into_iter().flatten().cloned());
        touched.into_iter().collect()
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(set) = self.dependents.get_mut(owner) {
            set.remove(dependent);
            if set.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm() -> ApiResource {
        ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
        }
    }

    fn owner_ref(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("n-{uid}"),
            uid: uid.into(),
            ..OwnerReference::default()
        }
    }

    fn node(uid: &str, owners: &[&str]) -> Node {
        Node {
            resource: cm(),
            namespace: Some("default".into()),
            name: format!("n-{uid}"),
            uid: uid.into(),
            owners: owners.iter().map(|o| owner_ref(o)).collect(),
            deleting: false,
            finalizers: Vec::new(),
        }
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    fn uids(nodes: Vec<Node>) -> Vec<String> {
        sorted(nodes.into_iter().map(|n| n.uid).collect())
    }

    #[test]
    fn dependents_are_indexed_by_owner_uid_even_before_the_owner_is_seen() {
        let mut g = Graph::default();
        assert_eq!(sorted(g.upsert(node("d", &["o"]))), ["d", "o"]);
        assert_eq!(uids(g.dependents("o")), ["d"]);
        // Observing the owner later queues its dependents.
        assert_eq!(sorted(g.upsert(node("o", &[]))), ["d", "o"]);
    }

    #[test]
    fn changing_owners_moves_the_dependent_and_touches_both_owners() {
        let mut g = Graph::default();
        g.upsert(node("d", &["a", "b"]));
        assert_eq!(sorted(g.upsert(node("d", &["b"]))), ["a", "b", "d"]);
        assert!(g.dependents("a").is_empty());
        assert_eq!(uids(g.dependents("b")), ["d"]);
    }

    #[test]
    fn removing_an_owner_touches_its_dependents_and_removing_a_dependent_its_owners() {
        let mut g = Graph::default();
        g.upsert(node("o", &[]));
        g.upsert(node("d", &["o"]));
        assert_eq!(g.remove("o"), ["d"]);
        assert_eq!(g.remove("d"), ["o"]);
        assert!(g.dependents("o").is_empty());
        assert!(g.remove("d").is_empty());
    }

    #[test]
    fn uids_of_lists_one_resource() {
        let mut g = Graph::default();
        g.upsert(node("a", &[]));
        assert_eq!(g.uids_of("v1/configmaps"), ["a"]);
        assert!(g.uids_of("v1/secrets").is_empty());
    }
}
