//! NodeResourcesFit and NodeResourcesBalancedAllocation.
//!
//! - [`Fit`] filters out nodes whose allocatable CPU, memory, ephemeral
//!   storage, extended resources or pod count cannot take the pod on top of
//!   what their pods request (`Insufficient cpu`, `Too many pods`), and
//!   scores the rest by the `LeastAllocated` strategy: the more of CPU and
//!   memory left free, the better (equal weights). Scoring counts containers
//!   without requests at 0.1 CPU and 200 MiB, as Kubernetes does.
//! - [`BalancedAllocation`] prefers nodes whose CPU and memory would end up
//!   used in equal proportion: `(1 - stddev of the used fractions) * 100`.

use std::borrow::Cow;

use crate::cache::NodeInfo;
use crate::framework::{
    ClusterView, Code, CycleState, FilterPlugin, Plugin, ScorePlugin, Status, MAX_NODE_SCORE,
};
use crate::pod_info::PodInfo;

use super::names;

/// The NodeResourcesFit filter and `LeastAllocated` scorer.
#[derive(Debug, Default)]
pub struct Fit;

impl Plugin for Fit {
    fn name(&self) -> &'static str {
        names::NODE_RESOURCES_FIT
    }
}

impl FilterPlugin for Fit {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let mut reasons: Vec<Cow<'static, str>> = Vec::new();
        // A request larger than the whole node cannot be helped by preemption.
        let mut unresolvable = false;
        let pod_count = i64::try_from(node.pods.len()).unwrap_or(i64::MAX);
        if pod_count + 1 > node.allocatable.pods {
            reasons.push("Too many pods".into());
        }
        let want = &pod.requests.requests;
        if !want.is_zero() {
            let (alloc, used) = (&node.allocatable, &node.requested);
            let mut check =
                |request: i64, allocatable: i64, requested: i64, reason: Cow<'static, str>| {
                    if request > 0 && request > allocatable - requested {
                        unresolvable |= request > allocatable;
                        reasons.push(reason);
                    }
                };
            check(
                want.milli_cpu,
                alloc.milli_cpu,
                used.milli_cpu,
                "Insufficient cpu".into(),
            );
            check(
                want.memory,
                alloc.memory,
                used.memory,
                "Insufficient memory".into(),
            );
            check(
                want.ephemeral_storage,
                alloc.ephemeral_storage,
                used.ephemeral_storage,
                "Insufficient ephemeral-storage".into(),
            );
            for (name, amount) in &want.scalars {
                check(
                    *amount,
                    alloc.scalar(name),
                    used.scalar(name),
                    format!("Insufficient {name}").into(),
                );
            }
        }
        match (reasons.is_empty(), unresolvable) {
            (true, _) => Status::success(),
            (false, true) => Status::new(Code::UnschedulableAndUnresolvable, reasons),
            (false, false) => Status::new(Code::Unschedulable, reasons),
        }
    }
}

impl ScorePlugin for Fit {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let cpu = node.non_zero_milli_cpu + pod.requests.non_zero_milli_cpu;
        let memory = node.non_zero_memory + pod.requests.non_zero_memory;
        Ok(least_allocated(&[
            (cpu, node.allocatable.milli_cpu),
            (memory, node.allocatable.memory),
        ]))
    }
}

/// The mean over resources (each `(requested, allocatable)`, equal
/// weights, resources without allocatable left out) of the free share
/// scaled to 0..=100.
fn least_allocated(resources: &[(i64, i64)]) -> i64 {
    let (mut sum, mut counted) = (0, 0);
    for &(requested, allocatable) in resources {
        if allocatable == 0 {
            continue;
        }
        counted += 1;
        if requested <= allocatable {
            sum += (allocatable - requested) * MAX_NODE_SCORE / allocatable;
        }
    }
    if counted == 0 {
        0
    } else {
        sum / counted
    }
}

/// The NodeResourcesBalancedAllocation scorer.
#[derive(Debug, Default)]
pub struct BalancedAllocation;

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        names::NODE_RESOURCES_BALANCED_ALLOCATION
    }
}

impl ScorePlugin for BalancedAllocation {
    /// Skips pods requesting neither CPU nor memory, so that best-effort
    /// pods are not all drawn to the same node (kubernetes#129138).
    fn pre_score(
        &self,
        _: &mut CycleState,
        pod: &PodInfo,
        _: &[&NodeInfo],
        _: &ClusterView<'_>,
    ) -> Status {
        let want = &pod.requests.requests;
        if want.milli_cpu == 0 && want.memory == 0 {
            Status::skip()
        } else {
            Status::success()
        }
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let want = &pod.requests.requests;
        Ok(balanced_allocation(&[
            (
                node.requested.milli_cpu + want.milli_cpu,
                node.allocatable.milli_cpu,
            ),
            (node.requested.memory + want.memory, node.allocatable.memory),
        ]))
    }
}

/// `(1 - σ) * 100` over the used fractions (capped at 1) of the resources
/// that have allocatable.
fn balanced_allocation(resources: &[(i64, i64)]) -> i64 {
    let fraction = |&(requested, allocatable): &(i64, i64)| {
        (allocatable != 0).then(|| (requested as f64 / allocatable as f64).min(1.0))
    };
    let (mut n, mut total) = (0usize, 0.0);
    for f in resources.iter().filter_map(fraction) {
        n += 1;
        total += f;
    }
    let std = if n < 2 {
        0.0
    } else if n == 2 {
        // Kubernetes' shortcut for two resources, kept for identical rounding.
        let mut fractions = resources.iter().filter_map(fraction);
        let (a, b) = (
            fractions.next().unwrap_or(0.0),
            fractions.next().unwrap_or(0.0),
        );
        ((a - b) / 2.0).abs()
    } else {
        let n = n as f64;
        let mean = total / n;
        let variance = resources
            .iter()
            .filter_map(fraction)
            .map(|f| (f - mean) * (f - mean))
            .sum::<f64>()
            / n;
        variance.sqrt()
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cache, node, pod, pod_requesting};
    use serde_json::json;

    fn small_node() -> k8s_openapi::api::core::v1::Node {
        node(
            "n",
            json!({"status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "2",
                "ephemeral-storage": "10Gi", "example.com/gpu": "1"}}}),
        )
    }

    #[test]
    fn a_pod_fits_while_the_node_has_room_left() {
        let nodes = cache(
            vec![small_node()],
            &[(
                pod_requesting("a", json!({"cpu": "1500m", "memory": "1Gi"})),
                "n",
            )],
        );
        let n = nodes.node("n").unwrap();
        let state = CycleState::default();
        assert!(Fit
            .filter(
                &state,
                &pod_requesting("p", json!({"cpu": "500m", "memory": "3Gi"})),
                n
            )
            .is_success());
        let status = Fit.filter(
            &state,
            &pod_requesting("q", json!({"cpu": "501m", "memory": "4Gi", "ephemeral-storage": "11Gi", "example.com/gpu": "2"})),
            n,
        );
        assert_eq!(
            status.message(),
            "Insufficient cpu, Insufficient memory, Insufficient ephemeral-storage, Insufficient example.com/gpu"
        );
    }

    #[test]
    fn requests_beyond_the_whole_node_are_unresolvable() {
        let nodes = cache(
            vec![small_node()],
            &[(pod_requesting("a", json!({"cpu": "1"})), "n")],
        );
        let n = nodes.node("n").unwrap();
        let state = CycleState::default();
        let status = Fit.filter(&state, &pod_requesting("p", json!({"cpu": "1500m"})), n);
        assert_eq!(status.code(), Code::Unschedulable);
        let status = Fit.filter(&state, &pod_requesting("q", json!({"cpu": "3"})), n);
        assert_eq!(status.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(status.message(), "Insufficient cpu");
    }

    #[test]
    fn the_pod_count_is_checked_even_for_pods_requesting_nothing() {
        let nodes = cache(
            vec![small_node()],
            &[(pod("a", json!({})), "n"), (pod("b", json!({})), "n")],
        );
        let status = Fit.filter(
            &CycleState::default(),
            &pod("p", json!({})),
            nodes.node("n").unwrap(),
        );
        assert_eq!(status.message(), "Too many pods");
        assert_eq!(status.code(), Code::Unschedulable);
    }

    #[test]
    fn least_allocated_scores_the_free_share() {
        // cpu: 3 of 4 used -> 25; memory: 8 of 32 Gi -> 75.
        let nodes = cache(
            vec![node("n", json!({}))],
            &[(
                pod_requesting("a", json!({"cpu": "2", "memory": "4Gi"})),
                "n",
            )],
        );
        let p = pod_requesting("p", json!({"cpu": "1", "memory": "4Gi"}));
        assert_eq!(
            Fit.score(&CycleState::default(), &p, nodes.node("n").unwrap()),
            Ok(50)
        );
        // An empty pod counts as 0.1 cpu and 200 MiB.
        let empty = cache(vec![node("n", json!({}))], &[]);
        let score = Fit.score(
            &CycleState::default(),
            &pod("q", json!({})),
            empty.node("n").unwrap(),
        );
        assert_eq!(score, Ok((97 + 99) / 2));
    }

    #[test]
    fn least_allocated_gives_zero_to_over_requested_resources() {
        assert_eq!(least_allocated(&[(5, 4), (0, 4)]), 50);
        assert_eq!(least_allocated(&[(1, 0)]), 0);
    }

    #[test]
    fn balanced_allocation_prefers_equal_use_of_cpu_and_memory() {
        assert_eq!(balanced_allocation(&[(2, 4), (16, 32)]), 100);
        assert_eq!(balanced_allocation(&[(3, 4), (8, 32)]), 75);
        assert_eq!(
            balanced_allocation(&[(4, 4), (64, 32)]),
            100,
            "fractions cap at 1"
        );
        // Three resources use the standard deviation proper.
        assert_eq!(balanced_allocation(&[(0, 1), (1, 1), (1, 2)]), 59);
    }

    #[test]
    fn balanced_allocation_skips_best_effort_pods() {
        let nodes = cache(vec![node("n", json!({}))], &[]);
        let namespaces = crate::testing::no_namespaces();
        let cluster = ClusterView {
            cache: &nodes,
            namespaces: &namespaces,
        };
        let status = BalancedAllocation.pre_score(
            &mut CycleState::default(),
            &pod("p", json!({})),
            &[],
            &cluster,
        );
        assert_eq!(status.code(), Code::Skip);
    }
}
