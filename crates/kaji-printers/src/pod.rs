//! The Pod printer: readiness, the aggregate STATUS, restarts with the time
//! of the last one, exactly as `printPod` computes them.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::duration::{age, since, timestamp};
use crate::fields::{arr_at, i64_at, is_deleting, name, opt_bool_at, or, str_at};
use crate::{col, wide, Printer, AGE, NAME};

pub(crate) const POD: Printer = Printer {
    columns: &[
        NAME,
        col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
        col("Status", "string", "The aggregate status of the containers in this pod."),
        col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
        AGE,
        wide("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
        wide("Node", "string", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod."),
        wide("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node."),
        wide("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates"),
    ],
    cells: pod_cells,
    conditions: Some(row_conditions),
};

/// The `status.reason` the node lifecycle controller sets on pods of lost nodes.
const NODE_UNREACHABLE_POD_REASON: &str = "NodeLost";

/// The `Completed` row condition Kubernetes attaches to finished pods.
fn row_conditions(obj: &Value) -> Option<Value> {
    let (reason, message) = match str_at(obj, "/status/phase") {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

/// Whether a pod condition of `type_` has status `True`; the first of that type decides.
fn condition_true(obj: &Value, type_: &str) -> bool {
    arr_at(obj, "/status/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == type_)
        .is_some_and(|c| str_at(c, "/status") == "True")
}

/// Keeps the later of `latest` and the container's last termination time.
fn note_last_termination(latest: &mut Option<DateTime<Utc>>, status: &Value) {
    if let Some(finished) = timestamp(status.pointer("/lastState/terminated/finishedAt")) {
        if latest.is_none_or(|l| l < finished) {
            *latest = Some(finished);
        }
    }
}

/// `Signal:N` or `ExitCode:N` for a termination without a reason.
fn exit_reason(terminated: &Value) -> String {
    match i64_at(terminated, "/signal") {
        0 => format!("ExitCode:{}", i64_at(terminated, "/exitCode")),
        signal => format!("Signal:{signal}"),
    }
}

fn pod_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = str_at(obj, "/status/phase");
    let mut reason = or(str_at(obj, "/status/reason"), phase).to_string();
    if arr_at(obj, "/status/conditions")
        .iter()
        .any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let init_containers = arr_at(obj, "/spec/initContainers");
    // Sidecars: init containers that keep running alongside the main ones.
    let restartable: HashSet<&str> = init_containers
        .iter()
        .filter(|c| str_at(c, "/restartPolicy") == "Always")
        .map(|c| str_at(c, "/name"))
        .collect();
    let total = arr_at(obj, "/spec/containers").len() + restartable.len();
    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut restartable_restarts = 0i64;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_restartable_restart: Option<DateTime<Utc>> = None;

    let mut initializing = false;
    for (i, status) in arr_at(obj, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        restarts += i64_at(status, "/restartCount");
        note_last_termination(&mut last_restart, status);
        let is_restartable = restartable.contains(str_at(status, "/name"));
        if is_restartable {
            restartable_restarts += i64_at(status, "/restartCount");
            note_last_termination(&mut last_restartable_restart, status);
        }
        let terminated = status
            .pointer("/state/terminated")
            .filter(|t| t.is_object());
        let waiting_reason = str_at(status, "/state/waiting/reason");
        match terminated {
            Some(t) if i64_at(t, "/exitCode") == 0 => continue,
            _ if is_restartable && opt_bool_at(status, "/started") == Some(true) => {
                if opt_bool_at(status, "/ready") == Some(true) {
                    ready += 1;
                }
                continue;
            }
            Some(t) => {
                // Initialization failed.
                reason = match str_at(t, "/reason") {
                    "" => format!("Init:{}", exit_reason(t)),
                    r => format!("Init:{r}"),
                };
            }
            None if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" => {
                reason = format!("Init:{waiting_reason}");
            }
            None => reason = format!("Init:{i}/{}", init_containers.len()),
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(obj, "Initialized") {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for status in arr_at(obj, "/status/containerStatuses").iter().rev() {
            restarts += i64_at(status, "/restartCount");
            note_last_termination(&mut last_restart, status);
            let waiting_reason = str_at(status, "/state/waiting/reason");
            let terminated = status
                .pointer("/state/terminated")
                .filter(|t| t.is_object());
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match str_at(t, "/reason") {
                    "" => exit_reason(t),
                    r => r.to_string(),
                };
            } else if opt_bool_at(status, "/ready") == Some(true)
                && status
                    .pointer("/state/running")
                    .is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        // A pod with a container still running is not Completed.
        if reason == "Completed" && has_running {
            reason = if condition_true(obj, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    if is_deleting(obj) && str_at(obj, "/status/reason") == NODE_UNREACHABLE_POD_REASON {
        reason = "Unknown".to_string();
    } else if is_deleting(obj) && phase != "Failed" && phase != "Succeeded" {
        reason = "Terminating".to_string();
    }

    let restarts = match last_restart {
        Some(at) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(at), now)),
        _ => restarts.to_string(),
    };

    // status.podIPs[0] is what Kubernetes prints; fall back to the singular
    // field for objects whose writer filled in only that.
    let pod_ip = arr_at(obj, "/status/podIPs")
        .first()
        .map(|ip| str_at(ip, "/ip"))
        .unwrap_or_else(|| str_at(obj, "/status/podIP"));

    let gates = arr_at(obj, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let passing = gates
            .iter()
            .filter(|g| condition_true(obj, str_at(g, "/conditionType")))
            .count();
        format!("{passing}/{}", gates.len())
    };

    vec![
        name(obj),
        Value::from(format!("{ready}/{total}")),
        Value::from(reason),
        Value::from(restarts),
        age(obj, now),
        Value::from(or(pod_ip, "<none>")),
        Value::from(or(str_at(obj, "/spec/nodeName"), "<none>")),
        Value::from(or(str_at(obj, "/status/nominatedNodeName"), "<none>")),
        Value::from(readiness_gates),
    ]
}

#[cfg(test)]
mod tests {
    use crate::{cells, columns};
    use chrono::{DateTime, TimeZone, Utc};
    use serde_json::{json, Value};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    fn row(pod: &Value) -> Vec<Value> {
        cells("v1", "Pod", pod, now())
    }

    fn running(name: &str) -> Value {
        json!({"name": name, "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2024-05-01T11:00:00Z"}}})
    }

    #[test]
    fn pod_columns_should_match_kubernetes() {
        let header: Vec<_> = columns("v1", "Pod")
            .iter()
            .map(|c| (c.name, c.type_, c.priority))
            .collect();
        assert_eq!(
            header,
            [
                ("Name", "string", 0),
                ("Ready", "string", 0),
                ("Status", "string", 0),
                ("Restarts", "string", 0),
                ("Age", "string", 0),
                ("IP", "string", 1),
                ("Node", "string", 1),
                ("Nominated Node", "string", 1),
                ("Readiness Gates", "string", 1)
            ]
        );
    }

    #[test]
    fn running_pod_should_print_ready_counts_ip_and_node() {
        let pod = json!({
            "metadata": {"name": "web-1", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "web"}, {"name": "log"}]},
            "status": {
                "phase": "Running",
                "podIP": "10.244.0.5",
                "podIPs": [{"ip": "10.244.0.5"}, {"ip": "fd00::5"}],
                "containerStatuses": [running("web"), {"name": "log", "ready": false, "state": {"running": {}}}]
            }
        });
        assert_eq!(
            row(&pod),
            [
                json!("web-1"),
                json!("1/2"),
                json!("Running"),
                json!("0"),
                json!("60m"),
                json!("10.244.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn crash_looping_pod_should_print_the_waiting_reason_and_last_restart() {
        let pod = json!({
            "metadata": {"name": "crash"},
            "spec": {"containers": [{"name": "app"}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [{
                    "name": "app",
                    "ready": false,
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2024-05-01T11:55:00Z"}}
                }]
            }
        });
        let r = row(&pod);
        assert_eq!(
            r[1..4],
            [json!("0/1"), json!("CrashLoopBackOff"), json!("3 (5m ago)")]
        );
    }

    #[test]
    fn restarts_without_a_termination_time_should_print_the_bare_count() {
        let pod = json!({"status": {"containerStatuses": [{"name": "a", "restartCount": 2, "state": {"running": {}}}]}});
        assert_eq!(row(&pod)[3], json!("2"));
    }

    #[test]
    fn deleted_pod_should_print_terminating_unless_it_finished() {
        let mut pod = json!({
            "metadata": {"name": "p", "deletionTimestamp": "2024-05-01T11:59:00Z"},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [running("a")]}
        });
        assert_eq!(row(&pod)[2], json!("Terminating"));
        pod["status"]["phase"] = json!("Succeeded");
        pod["status"]["containerStatuses"] =
            json!([{"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]);
        assert_eq!(row(&pod)[2], json!("Completed"));
        pod["status"]["reason"] = json!("NodeLost");
        assert_eq!(row(&pod)[2], json!("Unknown"));
    }

    #[test]
    fn completed_pod_should_print_completed() {
        let pod = json!({
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Succeeded", "containerStatuses": [{"name": "a", "ready": false, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
        });
        assert_eq!(row(&pod)[1..3], [json!("0/1"), json!("Completed")]);
    }

    #[test]
    fn completed_container_beside_a_running_one_should_print_running_or_not_ready() {
        let mut pod = json!({
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [running("a"), {"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]
            }
        });
        assert_eq!(row(&pod)[2], json!("Running"));
        pod["status"]["containerStatuses"] = json!([{"name": "b", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}, running("a")]);
        assert_eq!(row(&pod)[2], json!("Running"));
        pod["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        assert_eq!(row(&pod)[2], json!("NotReady"));
    }

    #[test]
    fn terminated_container_without_a_reason_should_print_its_signal_or_exit_code() {
        let pod = json!({"status": {"phase": "Running", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}}]}});
        assert_eq!(row(&pod)[2], json!("Signal:9"));
        let pod = json!({"status": {"phase": "Running", "containerStatuses": [{"name": "a", "state": {"terminated": {"exitCode": 2}}}]}});
        assert_eq!(row(&pod)[2], json!("ExitCode:2"));
    }

    #[test]
    fn initializing_pod_should_print_init_progress() {
        let pod = json!({
            "spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]},
            "status": {
                "phase": "Pending",
                "initContainerStatuses": [
                    {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                    {"name": "i2", "state": {"running": {}}}
                ],
                "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]
            }
        });
        assert_eq!(
            row(&pod)[1..4],
            [json!("0/1"), json!("Init:1/2"), json!("0")]
        );
    }

    #[test]
    fn failing_init_container_should_print_its_reason() {
        let mut pod = json!({
            "spec": {"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]},
            "status": {
                "phase": "Pending",
                "initContainerStatuses": [{
                    "name": "i1",
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:50Z"}}
                }]
            }
        });
        assert_eq!(
            row(&pod)[2..4],
            [json!("Init:CrashLoopBackOff"), json!("4 (10s ago)")]
        );
        pod["status"]["initContainerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 3}});
        assert_eq!(row(&pod)[2], json!("Init:ExitCode:3"));
        pod["status"]["initContainerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 1, "reason": "Error"}});
        assert_eq!(row(&pod)[2], json!("Init:Error"));
    }

    #[test]
    fn started_sidecar_should_count_towards_ready_and_total() {
        let pod = json!({
            "spec": {
                "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
                "containers": [{"name": "a"}]
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
                "initContainerStatuses": [{
                    "name": "proxy", "started": true, "ready": true, "restartCount": 1,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:30:00Z"}}
                }],
                "containerStatuses": [running("a")]
            }
        });
        assert_eq!(
            row(&pod)[1..4],
            [json!("2/2"), json!("Running"), json!("1 (30m ago)")]
        );
    }

    #[test]
    fn scheduling_gated_pod_should_print_scheduling_gated() {
        let pod = json!({"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}});
        assert_eq!(row(&pod)[2], json!("SchedulingGated"));
    }

    #[test]
    fn evicted_pod_should_print_the_status_reason() {
        let pod = json!({"status": {"phase": "Failed", "reason": "Evicted"}});
        assert_eq!(row(&pod)[2], json!("Evicted"));
    }

    #[test]
    fn readiness_gates_and_nomination_should_print_in_wide_columns() {
        let pod = json!({
            "spec": {"readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]},
            "status": {
                "nominatedNodeName": "n2",
                "conditions": [{"type": "example.com/lb", "status": "True"}, {"type": "example.com/dns", "status": "False"}]
            }
        });
        let r = row(&pod);
        assert_eq!(
            r[5..],
            [json!("<none>"), json!("<none>"), json!("n2"), json!("1/2")]
        );
    }
}
