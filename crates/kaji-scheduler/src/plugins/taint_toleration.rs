//! TaintToleration: a node's `NoSchedule` and `NoExecute` taints keep away
//! every pod that does not tolerate them (filter), and its
//! `PreferNoSchedule` taints make it less attractive to pods that do not
//! tolerate them (score: fewer untolerated taints is better).

use k8s_openapi::api::core::v1::Toleration;

use crate::cache::NodeInfo;
use crate::framework::{
    default_normalize_score, ClusterView, CycleState, FilterPlugin, NodeScore, Plugin, ScorePlugin,
    Status,
};
use crate::pod_info::PodInfo;

use super::{names, tolerated};

/// The TaintToleration filter and scorer.
#[derive(Debug, Default)]
pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        names::TAINT_TOLERATION
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let tolerations = pod.tolerations();
        let untolerated = node.taints.iter().find(|taint| {
            matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
                && !tolerated(tolerations, taint)
        });
        match untolerated {
            None => Status::success(),
            Some(taint) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or_default()
            )),
        }
    }
}

/// The pod's tolerations that can tolerate `PreferNoSchedule` taints.
struct PreferNoScheduleTolerations(Vec<Toleration>);

impl ScorePlugin for TaintToleration {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _: &[&NodeInfo],
        _: &ClusterView<'_>,
    ) -> Status {
        let tolerations = pod
            .tolerations()
            .iter()
            .filter(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                )
            })
            .cloned()
            .collect();
        state.write(
            names::TAINT_TOLERATION,
            PreferNoScheduleTolerations(tolerations),
        );
        Status::success()
    }

    /// How many `PreferNoSchedule` taints the pod does not tolerate.
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        if node.taints.is_empty() {
            return Ok(0);
        }
        let tolerations = state
            .read::<PreferNoScheduleTolerations>(names::TAINT_TOLERATION)
            .ok_or_else(|| Status::error("TaintToleration pre-score state missing"))?;
        let count = node
            .taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !tolerated(&tolerations.0, t))
            .count();
        Ok(i64::try_from(count).unwrap_or(i64::MAX))
    }

    fn normalize_score(&self, _: &CycleState, _: &PodInfo, scores: &mut [NodeScore<'_>]) {
        default_normalize_score(true, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::testing::{cache, node, node_info, pod, scores};
    use serde_json::json;

    fn tainted(key: &str, value: &str, effect: &str) -> NodeInfo {
        node_info(
            "n",
            json!({"spec": {"taints": [{"key": key, "value": value, "effect": effect}]}}),
        )
    }

    #[test]
    fn an_untolerated_no_schedule_taint_is_named_in_the_reason() {
        let status = TaintToleration.filter(
            &CycleState::default(),
            &pod("p", json!({})),
            &tainted("node.kubernetes.io/not-ready", "", "NoSchedule"),
        );
        assert_eq!(status.code(), Code::UnschedulableAndUnresolvable);
        assert_eq!(
            status.message(),
            "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
        );
        let status = TaintToleration.filter(
            &CycleState::default(),
            &pod("p", json!({})),
            &tainted("dedicated", "gpu", "NoExecute"),
        );
        assert_eq!(
            status.message(),
            "node(s) had untolerated taint {dedicated: gpu}"
        );
    }

    #[test]
    fn tolerated_and_prefer_no_schedule_taints_pass_the_filter() {
        let tolerant = pod(
            "p",
            json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu"}]}}),
        );
        let state = CycleState::default();
        assert!(TaintToleration
            .filter(
                &state,
                &tolerant,
                &tainted("dedicated", "gpu", "NoSchedule")
            )
            .is_success());
        assert!(TaintToleration
            .filter(
                &state,
                &pod("q", json!({})),
                &tainted("x", "", "PreferNoSchedule")
            )
            .is_success());
    }

    #[test]
    fn fewer_untolerated_prefer_no_schedule_taints_score_higher() {
        let nodes = cache(
            vec![
                node("clean", json!({})),
                node(
                    "one",
                    json!({"spec": {"taints": [{"key": "a", "effect": "PreferNoSchedule"}]}}),
                ),
                node(
                    "two",
                    json!({"spec": {"taints": [
                        {"key": "a", "effect": "PreferNoSchedule"},
                        {"key": "b", "effect": "PreferNoSchedule"},
                    ]}}),
                ),
                node(
                    "tolerated",
                    json!({"spec": {"taints": [{"key": "t", "effect": "PreferNoSchedule"}]}}),
                ),
            ],
            &[],
        );
        let p = pod(
            "p",
            json!({"spec": {"tolerations": [{"key": "t", "operator": "Exists", "effect": "PreferNoSchedule"}]}}),
        );
        let (_, got) = scores(&TaintToleration, &p, &nodes);
        assert_eq!(got, [100, 50, 0, 100]);
    }
}
