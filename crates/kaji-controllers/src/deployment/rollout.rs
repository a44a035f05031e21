//! The arithmetic of a rollout, as Kubernetes' deployment utilities: surge
//! and unavailability fenceposts, how far the new ReplicaSet may grow, how
//! far old ones may shrink, and proportional scaling. Nothing here does IO;
//! every plan is a list of `(ReplicaSet name, new spec.replicas)`.

use std::cmp::Ordering;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

/// The revision of a ReplicaSet (and of the Deployment), as an annotation.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Revisions a reused ReplicaSet had before, comma separated.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's `spec.replicas` when the ReplicaSet was last scaled.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` when the ReplicaSet was last scaled.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// A scale plan: which ReplicaSet gets which `spec.replicas`.
pub type Plan = Vec<(String, i32)>;

/// `maxSurge` or `maxUnavailable` is neither an integer nor a percentage.
#[derive(Debug, thiserror::Error)]
#[error("invalid value {0:?}: must be an integer or a percentage")]
pub struct InvalidIntOrPercent(pub String);

/// The Deployment's `spec.replicas` (defaulted to 1 by the API server).
pub fn desired(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// A ReplicaSet's `spec.replicas`.
pub fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// A ReplicaSet's `status.availableReplicas`.
pub fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// Whether the Deployment uses the Recreate strategy.
pub fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

/// The revision annotation as a number; 0 when absent or malformed.
pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn annotation_i32(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.annotations().get(key).and_then(|v| v.parse().ok())
}

/// Resolves an int-or-percent against `total`, rounding a percentage up or
/// down, as Kubernetes' `GetScaledValueFromIntOrPercent`.
///
/// # Errors
/// A string that is not `<integer>%`.
pub fn scaled_value(
    value: &IntOrString,
    total: i32,
    round_up: bool,
) -> Result<i32, InvalidIntOrPercent> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| InvalidIntOrPercent(s.clone()))?;
            let product = percent * i64::from(total);
            let scaled = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            Ok(i32::try_from(scaled).unwrap_or(i32::MAX))
        }
    }
}

/// `(maxSurge, maxUnavailable)` resolved against `spec.replicas`: surge
/// rounds up, unavailability down, and both zero becomes unavailability 1
/// (Kubernetes' `ResolveFenceposts`). Recreate has neither.
///
/// # Errors
/// A malformed percentage.
pub fn fenceposts(d: &Deployment) -> Result<(i32, i32), InvalidIntOrPercent> {
    if is_recreate(d) {
        return Ok((0, 0));
    }
    let rolling = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let surge = rolling
        .and_then(|r| r.max_surge.as_ref())
        .unwrap_or(&default);
    let unavailable = rolling
        .and_then(|r| r.max_unavailable.as_ref())
        .unwrap_or(&default);
    let total = desired(d);
    let surge = scaled_value(surge, total, true)?;
    let unavailable = scaled_value(unavailable, total, false)?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// `maxUnavailable`, capped at `spec.replicas` (Kubernetes' `MaxUnavailable`).
///
/// # Errors
/// A malformed percentage.
pub fn max_unavailable(d: &Deployment) -> Result<i32, InvalidIntOrPercent> {
    let (_, unavailable) = fenceposts(d)?;
    Ok(if desired(d) == 0 {
        0
    } else {
        unavailable.min(desired(d))
    })
}

/// `spec.replicas` of the new ReplicaSet for this step (Kubernetes'
/// `NewRSNewReplicas`): Recreate jumps to the target; RollingUpdate grows
/// within `replicas + maxSurge` counted over every ReplicaSet's spec.
///
/// # Errors
/// A malformed percentage.
pub fn new_rs_replicas(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
) -> Result<i32, InvalidIntOrPercent> {
    let target = desired(d);
    if is_recreate(d) {
        return Ok(target);
    }
    let (surge, _) = fenceposts(d)?;
    let current_new = new.map_or(0, replicas);
    let total: i32 = all.iter().map(|rs| replicas(rs)).sum();
    let max_total = target + surge;
    if total >= max_total {
        return Ok(current_new);
    }
    let scale_up = max_total - total;
    Ok(current_new + scale_up.min(target - current_new).max(0))
}

/// Sorts oldest first (creation time, then name), as `ReplicaSetsByCreationTimestamp`.
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let ts = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    ts(a)
        .cmp(&ts(b))
        .then_with(|| a.name_any().cmp(&b.name_any()))
}

/// The old ReplicaSets to shrink in one RollingUpdate step (Kubernetes'
/// `reconcileOldReplicaSets`): first their unhealthy replicas, then
/// available ones, never below `replicas - maxUnavailable` available pods.
///
/// # Errors
/// A malformed percentage.
pub fn old_scale_down(
    d: &Deployment,
    new: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
) -> Result<Plan, InvalidIntOrPercent> {
    let mut old: Vec<(&ReplicaSet, i32)> = old
        .iter()
        .filter(|rs| replicas(rs) > 0)
        .map(|rs| (*rs, replicas(rs)))
        .collect();
    if old.is_empty() {
        return Ok(Vec::new());
    }
    old.sort_by(|a, b| by_creation(a.0, b.0));
    let new_replicas = new.map_or(0, replicas);
    let all_pods: i32 = new_replicas + old.iter().map(|(_, n)| n).sum::<i32>();
    let min_available = desired(d) - max_unavailable(d)?;
    let new_unavailable = new_replicas - new.map_or(0, available);
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Ok(Vec::new());
    }

    // Unhealthy replicas go first: removing them costs no availability.
    let mut cleaned = 0;
    for (rs, target) in &mut old {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = (*target - available(rs)).max(0);
        let cut = unhealthy.min(max_scaled_down - cleaned);
        *target -= cut;
        cleaned += cut;
    }

    // Then available ones, down to the availability floor. A ReplicaSet's
    // available pods beyond its spec.replicas are being deleted (its status
    // lags its last scale-down), so they do not count.
    let staying = |rs: &ReplicaSet| available(rs).min(replicas(rs));
    let available_pods: i32 =
        new.map_or(0, staying) + old.iter().map(|(rs, _)| staying(rs)).sum::<i32>();
    if available_pods > min_available {
        let budget = available_pods - min_available;
        let mut scaled = 0;
        for (_, target) in &mut old {
            if scaled >= budget {
                break;
            }
            if *target == 0 {
                continue;
            }
            let cut = (*target).min(budget - scaled);
            *target -= cut;
            scaled += cut;
        }
    }
    Ok(old
        .into_iter()
        .filter(|(rs, target)| *target != replicas(rs))
        .map(|(rs, target)| (rs.name_any(), target))
        .collect())
}

/// Whether `spec.replicas` changed since the active ReplicaSets were last
/// scaled (their `desired-replicas` annotation), as `isScalingEvent`.
pub fn is_scaling_event(d: &Deployment, all: &[&ReplicaSet]) -> bool {
    all.iter()
        .filter(|rs| replicas(rs) > 0)
        .filter_map(|rs| annotation_i32(rs, DESIRED_REPLICAS))
        .any(|wanted| wanted != desired(d))
}

/// The one ReplicaSet that should carry all replicas when nothing is
/// rolling out (`FindActiveOrLatest`): the only active one, or, with none
/// active, the new one or else the newest old one.
pub fn active_or_latest<'a>(
    new: Option<&'a ReplicaSet>,
    old: &[&'a ReplicaSet],
) -> Option<&'a ReplicaSet> {
    let mut all: Vec<&ReplicaSet> = old.to_vec();
    all.extend(new);
    let active: Vec<&ReplicaSet> = all.iter().copied().filter(|rs| replicas(rs) > 0).collect();
    match active.len() {
        0 => new.or_else(|| all.into_iter().max_by(|a, b| by_creation(a, b))),
        1 => Some(active[0]),
        _ => None,
    }
}

/// Whether the new ReplicaSet alone carries the Deployment (`IsSaturated`).
pub fn is_saturated(d: &Deployment, new: Option<&ReplicaSet>) -> bool {
    new.is_some_and(|rs| {
        replicas(rs) == desired(d)
            && annotation_i32(rs, DESIRED_REPLICAS) == Some(desired(d))
            && available(rs) == desired(d)
    })
}

/// Scales a Deployment with several active ReplicaSets (a scaling event in
/// the middle of a rollout), spreading the change in proportion to each
/// one's share of its last `max-replicas`, as Kubernetes' `scale`.
/// `status_replicas` stands in for a missing `max-replicas` annotation.
/// The plan names every active ReplicaSet, changed or not, so each gets
/// its replica annotations refreshed.
///
/// # Errors
/// A malformed percentage.
pub fn proportional(
    d: &Deployment,
    active: &[&ReplicaSet],
    status_replicas: i32,
) -> Result<Plan, InvalidIntOrPercent> {
    let (surge, _) = fenceposts(d)?;
    let allowed = desired(d) + surge;
    let current: i32 = active.iter().map(|rs| replicas(rs)).sum();
    let to_add = allowed - current;
    let mut sorted: Vec<&ReplicaSet> = active.to_vec();
    // Larger first; on ties newer first when growing, older first when shrinking.
    sorted.sort_by(|a, b| {
        replicas(b).cmp(&replicas(a)).then_with(|| {
            if to_add > 0 {
                by_creation(b, a)
            } else {
                by_creation(a, b)
            }
        })
    });
    let mut added = 0;
    let mut sizes: Vec<i32> = Vec::with_capacity(sorted.len());
    for rs in &sorted {
        let size = replicas(rs);
        let proportion = if size == 0 || to_add == 0 || to_add == added {
            0
        } else {
            let fraction = if desired(d) == 0 {
                -size
            } else {
                let annotated = annotation_i32(rs, MAX_REPLICAS).unwrap_or(status_replicas);
                if annotated == 0 {
                    0
                } else {
                    let scaled = f64::from(size) * f64::from(allowed) / f64::from(annotated);
                    // Replica counts fit in i32; the rounded ratio does too.
                    #[allow(clippy::cast_possible_truncation)]
                    let rounded = scaled.round() as i32;
                    rounded - size
                }
            };
            let left = to_add - added;
            if to_add > 0 {
                fraction.min(left)
            } else {
                fraction.max(left)
            }
        };
        added += proportion;
        sizes.push(size + proportion);
    }
    if let Some(first) = sizes.first_mut() {
        if to_add != 0 {
            *first = (*first + to_add - added).max(0);
        }
    }
    Ok(sorted
        .iter()
        .zip(sizes)
        .map(|(rs, size)| (rs.name_any(), size))
        .collect())
}

/// The old ReplicaSets to delete beyond `revisionHistoryLimit`: fully
/// scaled-down ones whose status caught up, lowest revision first.
pub fn history_to_prune<'a>(d: &Deployment, old: &[&'a ReplicaSet]) -> Vec<&'a ReplicaSet> {
    let Some(limit) = d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
        return Vec::new();
    };
    let mut cleanable: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .filter(|rs| {
            let status = rs.status.as_ref();
            replicas(rs) == 0
                && status.map_or(0, |s| s.replicas) == 0
                && rs.metadata.generation <= status.and_then(|s| s.observed_generation)
                && rs.metadata.deletion_timestamp.is_none()
        })
        .collect();
    let excess = cleanable
        .len()
        .saturating_sub(usize::try_from(limit).unwrap_or(0));
    cleanable.sort_by(|a, b| {
        revision(a)
            .cmp(&revision(b))
            .then_with(|| by_creation(a, b))
    });
    cleanable.truncate(excess);
    cleanable
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, ReplicaSetStatus,
        RollingUpdateDeployment,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    fn deploy(replicas: i32, surge: IntOrString, unavailable: IntOrString) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(surge),
                        max_unavailable: Some(unavailable),
                    }),
                }),
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }
    }

    fn rs(name: &str, age: i64, replicas: i32, available: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(1000 - age).unwrap())),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                ..ReplicaSetSpec::default()
            }),
            status: Some(ReplicaSetStatus {
                replicas,
                available_replicas: Some(available),
                ..ReplicaSetStatus::default()
            }),
        }
    }

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn deployment_fenceposts_round_surge_up_and_unavailable_down() {
        let d = deploy(10, pct("25%"), pct("25%"));
        assert_eq!(fenceposts(&d).unwrap(), (3, 2));
        let d = deploy(3, IntOrString::Int(0), IntOrString::Int(0));
        assert_eq!(fenceposts(&d).unwrap(), (0, 1), "both zero allows one");
        let d = deploy(1, pct("25%"), pct("25%"));
        assert_eq!(fenceposts(&d).unwrap(), (1, 0));
        assert!(fenceposts(&deploy(1, pct("x%"), pct("1%"))).is_err());
    }

    #[test]
    fn deployment_new_rs_grows_within_surge() {
        let d = deploy(3, IntOrString::Int(1), IntOrString::Int(0));
        let old = rs("old", 10, 3, 3);
        assert_eq!(new_rs_replicas(&d, &[&old], None).unwrap(), 1);
        let new = rs("new", 1, 1, 0);
        assert_eq!(new_rs_replicas(&d, &[&old, &new], Some(&new)).unwrap(), 1);
        let old = rs("old", 10, 2, 2);
        assert_eq!(new_rs_replicas(&d, &[&old, &new], Some(&new)).unwrap(), 2);
    }

    #[test]
    fn deployment_old_rs_shrink_keeps_minimum_available() {
        let d = deploy(3, IntOrString::Int(1), IntOrString::Int(0));
        let old = rs("old", 10, 3, 3);
        let new = rs("new", 1, 1, 0);
        assert!(old_scale_down(&d, Some(&new), &[&old]).unwrap().is_empty());
        let new = rs("new", 1, 1, 1);
        assert_eq!(
            old_scale_down(&d, Some(&new), &[&old]).unwrap(),
            vec![("old".to_string(), 2)]
        );
        // Unhealthy old replicas go first, within the budget of
        // 4 pods - 2 minimum available - 1 unavailable new pod.
        let old = rs("old", 10, 3, 1);
        let new = rs("new", 1, 1, 0);
        let d = deploy(3, IntOrString::Int(1), IntOrString::Int(1));
        assert_eq!(
            old_scale_down(&d, Some(&new), &[&old]).unwrap(),
            vec![("old".to_string(), 2)]
        );
    }

    #[test]
    fn deployment_old_rs_shrink_does_not_count_pods_a_scale_down_is_deleting() {
        // 6 replicas, maxUnavailable 1: 3 new pods available; the old
        // ReplicaSet was scaled to 3 but its status still counts 5.
        let d = deploy(6, IntOrString::Int(2), IntOrString::Int(1));
        let new = rs("new", 1, 3, 3);
        let mut old = rs("old", 10, 3, 5);
        old.status.as_mut().unwrap().replicas = 5;
        assert_eq!(
            old_scale_down(&d, Some(&new), &[&old]).unwrap(),
            vec![("old".to_string(), 2)],
            "6 pods will be available, one may go"
        );
    }

    #[test]
    fn deployment_proportional_scaling_spreads_by_share() {
        let d = deploy(20, IntOrString::Int(0), IntOrString::Int(2));
        let mut a = rs("a", 10, 6, 6);
        let mut b = rs("b", 1, 4, 4);
        for r in [&mut a, &mut b] {
            r.metadata.annotations = Some([(MAX_REPLICAS.to_string(), "10".to_string())].into());
        }
        let mut plan = proportional(&d, &[&a, &b], 10).unwrap();
        plan.sort();
        assert_eq!(plan, vec![("a".to_string(), 12), ("b".to_string(), 8)]);
    }

    #[test]
    fn deployment_history_prunes_lowest_revisions_beyond_limit() {
        let mut d = deploy(1, IntOrString::Int(1), IntOrString::Int(0));
        d.spec.as_mut().unwrap().revision_history_limit = Some(1);
        let mut olds: Vec<ReplicaSet> = (1..=3)
            .map(|i| rs(&format!("r{i}"), 10 - i, 0, 0))
            .collect();
        for (i, r) in olds.iter_mut().enumerate() {
            r.metadata.annotations = Some([(REVISION.to_string(), (i + 1).to_string())].into());
        }
        let refs: Vec<&ReplicaSet> = olds.iter().collect();
        let names: Vec<String> = history_to_prune(&d, &refs)
            .iter()
            .map(|r| r.name_any())
            .collect();
        assert_eq!(names, vec!["r1", "r2"]);
    }
}
