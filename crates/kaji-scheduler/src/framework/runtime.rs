//! One scheduling profile: its plugins per extension point and the
//! algorithm that runs them for one pod (kube-scheduler's `schedulePod`).
//!
//! Filtering starts where the previous cycle stopped and ends once enough
//! feasible nodes are found ([`num_feasible_nodes_to_find`]), so large
//! clusters are not filtered in full for every pod; the feasible nodes are
//! scored, each plugin's scores normalized and weighted, and the highest
//! total wins, ties broken at random.

use std::collections::BTreeSet;
use std::sync::Arc;

use rand::Rng;

use super::{
    ClusterView, Code, CycleState, FilterPlugin, FitError, NodeScore, PreFilterPlugin, ScorePlugin,
    Status, MAX_NODE_SCORE,
};
use crate::cache::NodeInfo;
use crate::pod_info::PodInfo;

/// Below this many nodes every node is filtered (`minFeasibleNodesToFind`).
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never drops below this.
const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// How many feasible nodes to look for among `num_all_nodes`: all of them
/// below 100 nodes; otherwise `percentage` of them (0 means adaptive:
/// 50% minus 1% per 125 nodes, at least 5%), but at least 100.
pub fn num_feasible_nodes_to_find(percentage: u32, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
        return num_all_nodes;
    }
    let percentage = match percentage as usize {
        0 => 50usize
            .saturating_sub(num_all_nodes / 125)
            .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND),
        p => p.min(100),
    };
    (num_all_nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Where a pod should go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleResult {
    /// The chosen node.
    pub node: String,
    /// How many nodes were filtered.
    pub evaluated: usize,
    /// How many of those fit.
    pub feasible: usize,
}

/// Why a pod got no node.
#[derive(Debug)]
pub enum ScheduleError {
    /// The cluster has no nodes at all.
    NoNodes,
    /// No node fits; the diagnosis says why, per node.
    Unschedulable(FitError),
    /// A plugin failed.
    Error(String),
}

/// What the pre-filters decided for one pod.
#[derive(Default)]
struct PreFilterOutcome {
    /// Plugins whose filter is skipped.
    skipped: Vec<&'static str>,
    /// The only nodes that can fit, if a pre-filter narrowed them.
    node_names: Option<BTreeSet<String>>,
    /// The plugins that narrowed them.
    restricting: Vec<&'static str>,
}

/// A scheduler name and the plugins it runs, with score weights.
pub struct Profile {
    /// The `spec.schedulerName` this profile serves.
    pub scheduler_name: String,
    /// Percentage of nodes to filter before scoring (0: adaptive).
    pub percentage_of_nodes_to_score: u32,
    pre_filters: Vec<Arc<dyn PreFilterPlugin>>,
    filters: Vec<Arc<dyn FilterPlugin>>,
    scorers: Vec<(Arc<dyn ScorePlugin>, i64)>,
}

impl Profile {
    /// A profile without plugins.
    pub fn new(scheduler_name: impl Into<String>) -> Profile {
        Profile {
            scheduler_name: scheduler_name.into(),
            percentage_of_nodes_to_score: 0,
            pre_filters: Vec::new(),
            filters: Vec::new(),
            scorers: Vec::new(),
        }
    }

    /// Adds a pre-filter step (run in the order added).
    #[must_use]
    pub fn pre_filter(mut self, plugin: Arc<dyn PreFilterPlugin>) -> Self {
        self.pre_filters.push(plugin);
        self
    }

    /// Adds a filter (run in the order added; a node's first failure stops it).
    #[must_use]
    pub fn filter(mut self, plugin: Arc<dyn FilterPlugin>) -> Self {
        self.filters.push(plugin);
        self
    }

    /// Adds a scorer whose normalized scores count `weight` times.
    #[must_use]
    pub fn score(mut self, plugin: Arc<dyn ScorePlugin>, weight: i64) -> Self {
        self.scorers.push((plugin, weight));
        self
    }

    /// The names and weights of the scorers.
    pub fn score_weights(&self) -> Vec<(&'static str, i64)> {
        self.scorers.iter().map(|(p, w)| (p.name(), *w)).collect()
    }

    /// Picks a node for `pod` among `cluster.nodes`. `cursor` is where
    /// filtering starts and is advanced past the nodes filtered, so
    /// successive pods spread their search over the cluster.
    ///
    /// # Errors
    /// [`ScheduleError`]: no nodes, none fits, or a plugin failed.
    pub fn schedule(
        &self,
        pod: &PodInfo,
        cluster: &ClusterView<'_>,
        cursor: &mut usize,
        rng: &mut impl Rng,
    ) -> Result<ScheduleResult, ScheduleError> {
        let nodes = cluster.cache.nodes();
        if nodes.is_empty() {
            return Err(ScheduleError::NoNodes);
        }
        let mut state = CycleState::default();
        let pre = self.run_pre_filters(&mut state, pod, cluster)?;
        let filters: Vec<&Arc<dyn FilterPlugin>> = self
            .filters
            .iter()
            .filter(|f| !pre.skipped.contains(&f.name()))
            .collect();

        let mut feasible: Vec<&NodeInfo> = Vec::new();
        let mut failed: Vec<(usize, Status)> = Vec::new();
        // Whether node `i` fits; failures are kept for the diagnosis.
        let mut check = |i: usize| -> Result<bool, ScheduleError> {
            let status = run_filters(&filters, &state, pod, &nodes[i]);
            match status.code() {
                Code::Success => return Ok(true),
                Code::Error => {
                    return Err(ScheduleError::Error(format!(
                        "running {:?} filter plugin: {}",
                        status.plugin(),
                        status.message()
                    )))
                }
                _ => failed.push((i, status)),
            }
            Ok(false)
        };
        let evaluated = match &pre.node_names {
            // Only the nodes the pre-filters named can fit; filter them all.
            Some(names) => {
                let indices: Vec<usize> = names
                    .iter()
                    .filter_map(|n| cluster.cache.node_index(n))
                    .collect();
                for &i in &indices {
                    if check(i)? {
                        feasible.push(&nodes[i]);
                    }
                }
                indices.len()
            }
            None => {
                let to_find =
                    num_feasible_nodes_to_find(self.percentage_of_nodes_to_score, nodes.len());
                let start = *cursor % nodes.len();
                let mut processed = 0;
                for offset in 0..nodes.len() {
                    if feasible.len() >= to_find {
                        break;
                    }
                    processed += 1;
                    let i = (start + offset) % nodes.len();
                    if check(i)? {
                        feasible.push(&nodes[i]);
                    }
                }
                *cursor = (start + processed) % nodes.len();
                processed
            }
        };
        match feasible.len() {
            0 => {
                let absent = pre.node_names.as_ref().map(|_| {
                    Status::unresolvable(format!(
                        "node(s) didn't satisfy plugin(s) [{}]",
                        pre.restricting.join(" ")
                    ))
                });
                Err(ScheduleError::Unschedulable(FitError::filter(
                    nodes.len(),
                    failed,
                    absent,
                )))
            }
            1 => Ok(ScheduleResult {
                node: feasible[0].name.clone(),
                evaluated,
                feasible: 1,
            }),
            n => {
                let totals = self.score_nodes(&mut state, pod, &feasible, cluster)?;
                let best = select_host(&totals, rng);
                Ok(ScheduleResult {
                    node: feasible[best].name.clone(),
                    evaluated,
                    feasible: n,
                })
            }
        }
    }

    /// Runs the pre-filters: which filters to skip, and which nodes alone
    /// can fit if a pre-filter narrowed them down.
    fn run_pre_filters(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        cluster: &ClusterView<'_>,
    ) -> Result<PreFilterOutcome, ScheduleError> {
        let mut outcome = PreFilterOutcome::default();
        let num_all_nodes = cluster.cache.nodes().len();
        for plugin in &self.pre_filters {
            let result = plugin.pre_filter(state, pod, cluster);
            let status = result.status.with_plugin(plugin.name());
            match status.code() {
                Code::Success => {}
                Code::Skip => outcome.skipped.push(plugin.name()),
                Code::Error => {
                    return Err(ScheduleError::Error(format!(
                        "running PreFilter plugin {:?}: {}",
                        plugin.name(),
                        status.message()
                    )))
                }
                Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                    return Err(ScheduleError::Unschedulable(FitError::pre_filter(
                        num_all_nodes,
                        status,
                    )))
                }
            }
            let Some(names) = result.node_names else {
                continue;
            };
            outcome.restricting.push(plugin.name());
            let narrowed: BTreeSet<String> = match outcome.node_names.take() {
                None => names,
                Some(before) => before.intersection(&names).cloned().collect(),
            };
            if narrowed.is_empty() {
                let message = match outcome.restricting.as_slice() {
                    [one] => format!("node(s) didn't satisfy plugin {one}"),
                    many => format!(
                        "node(s) didn't satisfy plugin(s) [{}] simultaneously",
                        many.join(" ")
                    ),
                };
                return Err(ScheduleError::Unschedulable(FitError::pre_filter(
                    num_all_nodes,
                    Status::unresolvable(message).with_plugin(plugin.name()),
                )));
            }
            outcome.node_names = Some(narrowed);
        }
        Ok(outcome)
    }

    /// Runs the pre-filters and filters for `pod` on one node alone, as a
    /// preemption dry run would.
    pub fn filter_node(&self, pod: &PodInfo, cluster: &ClusterView<'_>, node: &NodeInfo) -> Status {
        let mut state = CycleState::default();
        let pre = match self.run_pre_filters(&mut state, pod, cluster) {
            Ok(pre) => pre,
            Err(ScheduleError::Unschedulable(fit)) => return Status::unresolvable(fit.message()),
            Err(e) => return Status::error(format!("{e:?}")),
        };
        if pre
            .node_names
            .as_ref()
            .is_some_and(|n| !n.contains(&node.name))
        {
            return Status::unresolvable("node(s) didn't satisfy plugin(s)");
        }
        let filters: Vec<&Arc<dyn FilterPlugin>> = self
            .filters
            .iter()
            .filter(|f| !pre.skipped.contains(&f.name()))
            .collect();
        run_filters(&filters, &state, pod, node)
    }

    /// The weighted sum of every scorer's normalized score, per feasible node.
    fn score_nodes(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        feasible: &[&NodeInfo],
        cluster: &ClusterView<'_>,
    ) -> Result<Vec<i64>, ScheduleError> {
        let mut totals = vec![0i64; feasible.len()];
        let mut scores: Vec<NodeScore<'_>> = Vec::with_capacity(feasible.len());
        for (plugin, weight) in &self.scorers {
            let status = plugin.pre_score(state, pod, feasible, cluster);
            match status.code() {
                Code::Success => {}
                Code::Skip => continue,
                _ => {
                    return Err(ScheduleError::Error(format!(
                        "running PreScore plugin {:?}: {}",
                        plugin.name(),
                        status.message()
                    )))
                }
            }
            scores.clear();
            for node in feasible {
                let score = plugin.score(state, pod, node).map_err(|s| {
                    ScheduleError::Error(format!(
                        "running Score plugin {:?}: {}",
                        plugin.name(),
                        s.message()
                    ))
                })?;
                scores.push(NodeScore {
                    name: &node.name,
                    score,
                });
            }
            plugin.normalize_score(state, pod, &mut scores);
            for (total, s) in totals.iter_mut().zip(&scores) {
                if !(0..=MAX_NODE_SCORE).contains(&s.score) {
                    return Err(ScheduleError::Error(format!(
                        "plugin {:?} returns an invalid score {}, it should in the range of [0, {MAX_NODE_SCORE}] after normalizing",
                        plugin.name(),
                        s.score
                    )));
                }
                *total += s.score * weight;
            }
        }
        Ok(totals)
    }
}

/// The first status that is not Success, or Success.
fn run_filters(
    filters: &[&Arc<dyn FilterPlugin>],
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
) -> Status {
    for plugin in filters {
        let status = plugin.filter(state, pod, node);
        if !status.is_success() {
            return status.with_plugin(plugin.name());
        }
    }
    Status::success()
}

/// The index of a highest total, chosen uniformly among ties (reservoir
/// sampling, as kube-scheduler's `selectHost`).
fn select_host(totals: &[i64], rng: &mut impl Rng) -> usize {
    let mut best = 0;
    let mut max = i64::MIN;
    let mut ties = 0u32;
    for (i, &total) in totals.iter().enumerate() {
        if total > max {
            max = total;
            best = i;
            ties = 1;
        } else if total == max {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn small_clusters_are_filtered_in_full_and_large_ones_adaptively() {
        assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
        assert_eq!(num_feasible_nodes_to_find(0, 100), 100);
        // 50 - 1000/125 = 42%.
        assert_eq!(num_feasible_nodes_to_find(0, 1000), 420);
        // 50 - 5000/125 = 10%.
        assert_eq!(num_feasible_nodes_to_find(0, 5000), 500);
        // At least 5%.
        assert_eq!(num_feasible_nodes_to_find(0, 10_000), 500);
        // Never fewer than 100.
        assert_eq!(num_feasible_nodes_to_find(10, 200), 100);
        assert_eq!(num_feasible_nodes_to_find(100, 5000), 5000);
    }

    #[test]
    fn the_highest_total_wins_and_ties_are_broken_at_random() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(select_host(&[1, 5, 3], &mut rng), 1);
        let mut picked = [0usize; 3];
        for _ in 0..300 {
            picked[select_host(&[5, 1, 5], &mut rng)] += 1;
        }
        assert_eq!(picked[1], 0);
        assert!(picked[0] > 100 && picked[2] > 100, "{picked:?}");
    }
}
