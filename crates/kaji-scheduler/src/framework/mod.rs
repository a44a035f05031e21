//! The scheduling framework, in kube-scheduler's shape: a tiny [`Plugin`]
//! and one small trait per extension point — [`PreFilterPlugin`] (optional
//! per-pod precomputation), [`FilterPlugin`] (can the pod run on this
//! node?) and [`ScorePlugin`] (how good is this node? with normalization) —
//! a [`Status`] code instead of booleans, and a per-cycle [`CycleState`]
//! through which a plugin hands its precomputation to its later steps.
//!
//! [`Profile`] runs the plugins over the nodes for one pod; [`FitError`]
//! explains a pod that fits nowhere in Kubernetes' words.

mod diagnosis;
mod runtime;

use std::any::Any;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::Namespace;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::cache::{Cache, NodeInfo};
use crate::pod_info::PodInfo;

pub use diagnosis::{FitError, NO_NODES_AVAILABLE};
pub use runtime::{num_feasible_nodes_to_find, Profile, ScheduleError, ScheduleResult};

/// The highest score a plugin may give a node after normalizing.
pub const MAX_NODE_SCORE: i64 = 100;

/// The outcome class of running a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// The pod passes (fits, scored, precomputed).
    Success,
    /// Something went wrong; the attempt fails and is retried after backoff.
    Error,
    /// The pod does not fit this node now; preempting pods might change that.
    Unschedulable,
    /// The pod does not fit this node and preemption cannot change that.
    UnschedulableAndUnresolvable,
    /// Nothing to do for this pod: a pre-filter (pre-score) that skips
    /// makes the framework skip the plugin's filter (score) too.
    Skip,
}

/// A plugin's verdict: a code, the reasons behind it and who said so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    code: Code,
    reasons: Vec<Cow<'static, str>>,
    plugin: &'static str,
}

impl Status {
    /// A status with `code` and `reasons`.
    pub fn new(code: Code, reasons: Vec<Cow<'static, str>>) -> Status {
        Status {
            code,
            reasons,
            plugin: "",
        }
    }

    /// Success.
    pub fn success() -> Status {
        Status::new(Code::Success, Vec::new())
    }

    /// Skip.
    pub fn skip() -> Status {
        Status::new(Code::Skip, Vec::new())
    }

    /// Unschedulable, for `reason`.
    pub fn unschedulable(reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::Unschedulable, vec![reason.into()])
    }

    /// UnschedulableAndUnresolvable, for `reason`.
    pub fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::UnschedulableAndUnresolvable, vec![reason.into()])
    }

    /// Error, with `message`.
    pub fn error(message: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::Error, vec![message.into()])
    }

    /// The same status, attributed to `plugin`.
    #[must_use]
    pub fn with_plugin(mut self, plugin: &'static str) -> Status {
        self.plugin = plugin;
        self
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The reasons, in order.
    pub fn reasons(&self) -> impl Iterator<Item = &str> {
        self.reasons.iter().map(AsRef::as_ref)
    }

    /// The plugin that returned it ("" if not attributed).
    pub fn plugin(&self) -> &'static str {
        self.plugin
    }

    /// The reasons joined by `, ` (Kubernetes' `Status.Message`).
    pub fn message(&self) -> String {
        self.reasons
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<&str>>()
            .join(", ")
    }

    /// Whether the code is Success.
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// Whether the pod was rejected (Unschedulable or UnschedulableAndUnresolvable).
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }
}

/// Data plugins share between the extension points of one scheduling
/// cycle (one pod), keyed by plugin name.
#[derive(Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
}

impl CycleState {
    /// Stores `value` under `key`, replacing what was there.
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Box::new(value));
    }

    /// The value under `key`, if it is a `T`.
    pub fn read<T: Any>(&self, key: &'static str) -> Option<&T> {
        self.data.get(key).and_then(|v| v.downcast_ref())
    }
}

/// A node's score from one plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeScore<'a> {
    /// The node.
    pub name: &'a str,
    /// Its score; within `0..=MAX_NODE_SCORE` once normalized.
    pub score: i64,
}

/// Namespace labels, for affinity terms with a namespace selector.
pub trait NamespaceLister: Send + Sync {
    /// The labels of `namespace` (empty if it is unknown).
    fn labels(&self, namespace: &str) -> BTreeMap<String, String>;
    /// The names of every namespace whose labels `selector` matches.
    fn names_matching(&self, selector: &Selector) -> Vec<String>;
}

impl NamespaceLister for Store<Namespace> {
    fn labels(&self, namespace: &str) -> BTreeMap<String, String> {
        self.get(&ObjectRef::new(namespace))
            .and_then(|ns| ns.metadata.labels.clone())
            .unwrap_or_default()
    }

    fn names_matching(&self, selector: &Selector) -> Vec<String> {
        let empty = BTreeMap::new();
        self.state()
            .iter()
            .filter(|ns| selector.matches(ns.metadata.labels.as_ref().unwrap_or(&empty)))
            .filter_map(|ns| ns.metadata.name.clone())
            .collect()
    }
}

/// Namespace name to labels: a fixed lister for tests and tools.
impl NamespaceLister for BTreeMap<String, BTreeMap<String, String>> {
    fn labels(&self, namespace: &str) -> BTreeMap<String, String> {
        self.get(namespace).cloned().unwrap_or_default()
    }

    fn names_matching(&self, selector: &Selector) -> Vec<String> {
        self.iter()
            .filter(|(_, labels)| selector.matches(labels))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// What plugins may look at besides the pod and the node in hand.
#[derive(Clone, Copy)]
pub struct ClusterView<'a> {
    /// Every node, with its pods.
    pub cache: &'a Cache,
    /// Namespace labels.
    pub namespaces: &'a dyn NamespaceLister,
}

impl<'a> ClusterView<'a> {
    /// Every node, with its pods.
    pub fn nodes(&self) -> &'a [NodeInfo] {
        self.cache.nodes()
    }
}

/// Every plugin has a name, used in statuses, cycle state and logs.
pub trait Plugin: Send + Sync {
    /// The plugin's name, e.g. `NodeResourcesFit`.
    fn name(&self) -> &'static str;
}

/// What a pre-filter step says: a status, and optionally the only nodes
/// worth filtering (e.g. node affinity on `metadata.name`).
#[derive(Debug)]
pub struct PreFilterResult {
    /// Success, Skip, a rejection (for every node) or Error.
    pub status: Status,
    /// When set, only these nodes can fit; the others are rejected
    /// without filtering.
    pub node_names: Option<BTreeSet<String>>,
}

impl From<Status> for PreFilterResult {
    fn from(status: Status) -> Self {
        PreFilterResult {
            status,
            node_names: None,
        }
    }
}

/// Runs once per pod before filtering, to precompute what filtering needs.
pub trait PreFilterPlugin: Plugin {
    /// Precomputes into `state`. Skip makes the framework skip this
    /// plugin's filter for the pod; a rejection fails the pod on every node.
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cluster: &ClusterView<'_>,
    ) -> PreFilterResult;
}

/// Decides whether the pod can run on one node.
pub trait FilterPlugin: Plugin {
    /// Success if the pod fits `node`, else why not.
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// Ranks the nodes that passed filtering.
pub trait ScorePlugin: Plugin {
    /// Precomputes for scoring the `feasible` nodes; Skip leaves this
    /// plugin out of the pod's scoring.
    fn pre_score(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _feasible: &[&NodeInfo],
        _cluster: &ClusterView<'_>,
    ) -> Status {
        Status::success()
    }

    /// The raw score of `node`.
    ///
    /// # Errors
    /// A status with code Error.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status>;

    /// Brings raw scores into `0..=MAX_NODE_SCORE` (a no-op for plugins
    /// whose raw scores already are).
    fn normalize_score(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [NodeScore<'_>]) {}
}

/// Kubernetes' `DefaultNormalizeScore`: scales scores so the highest
/// becomes `MAX_NODE_SCORE`; with `reverse`, the highest becomes 0 and 0
/// becomes `MAX_NODE_SCORE`.
pub fn default_normalize_score(reverse: bool, scores: &mut [NodeScore<'_>]) {
    let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
    if max == 0 {
        if reverse {
            for s in scores.iter_mut() {
                s.score = MAX_NODE_SCORE;
            }
        }
        return;
    }
    for s in scores.iter_mut() {
        let scaled = MAX_NODE_SCORE * s.score / max;
        s.score = if reverse {
            MAX_NODE_SCORE - scaled
        } else {
            scaled
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(raw: &[i64]) -> Vec<NodeScore<'static>> {
        raw.iter()
            .map(|&score| NodeScore { name: "n", score })
            .collect()
    }

    #[test]
    fn default_normalization_scales_to_the_maximum() {
        let mut s = scores(&[0, 5, 10]);
        default_normalize_score(false, &mut s);
        assert_eq!(s.iter().map(|s| s.score).collect::<Vec<_>>(), [0, 50, 100]);
        let mut s = scores(&[0, 5, 10]);
        default_normalize_score(true, &mut s);
        assert_eq!(s.iter().map(|s| s.score).collect::<Vec<_>>(), [100, 50, 0]);
    }

    #[test]
    fn all_zero_scores_stay_zero_or_become_max_when_reversed() {
        let mut s = scores(&[0, 0]);
        default_normalize_score(false, &mut s);
        assert_eq!(s.iter().map(|s| s.score).collect::<Vec<_>>(), [0, 0]);
        default_normalize_score(true, &mut s);
        assert_eq!(s.iter().map(|s| s.score).collect::<Vec<_>>(), [100, 100]);
    }

    #[test]
    fn status_messages_join_reasons() {
        let s = Status::new(
            Code::Unschedulable,
            vec!["Insufficient cpu".into(), "Insufficient memory".into()],
        );
        assert_eq!(s.message(), "Insufficient cpu, Insufficient memory");
        assert!(s.is_rejected());
        assert!(!Status::skip().is_rejected());
    }

    #[test]
    fn cycle_state_reads_back_what_was_written_by_type() {
        let mut state = CycleState::default();
        state.write("a", 5u32);
        assert_eq!(state.read::<u32>("a"), Some(&5));
        assert_eq!(state.read::<i64>("a"), None);
        assert_eq!(state.read::<u32>("b"), None);
    }
}
