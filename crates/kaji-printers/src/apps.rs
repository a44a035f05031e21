//! Printers for workload controllers: Deployment, ReplicaSet, StatefulSet,
//! DaemonSet (apps) and Job, CronJob (batch).

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::duration::{age, human_duration, since, timestamp};
use crate::fields::{
    arr_at, container_cells, format_label_selector, format_labels, i64_at, is_deleting,
    label_selector_string, name, opt_bool_at, opt_i64_at, str_at,
};
use crate::{col, wide, Printer, AGE, CONTAINERS, IMAGES, NAME};

const READY_DOC: &str = "Number of the pod with ready state";

/// The containers and images of the pod template at `template` (a JSON pointer).
fn template_cells(obj: &Value, template: &str) -> (Value, Value) {
    container_cells(arr_at(obj, &format!("{template}/spec/containers")))
}

pub(crate) const DEPLOYMENT: Printer = Printer::new(
    &[
        NAME,
        col("Ready", "string", READY_DOC),
        col("Up-to-date", "string", "Total number of non-terminating pods targeted by this deployment that have the desired template spec."),
        col("Available", "string", "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment."),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels."),
    ],
    deployment_cells,
);

fn deployment_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = template_cells(obj, "/spec/template");
    // printDeployment prints the bare selector string, "" when there is none.
    let selector = label_selector_string(obj.pointer("/spec/selector"))
        .unwrap_or_else(|()| "<invalid>".to_string());
    vec![
        name(obj),
        Value::from(format!(
            "{}/{}",
            i64_at(obj, "/status/readyReplicas"),
            i64_at(obj, "/spec/replicas")
        )),
        Value::from(i64_at(obj, "/status/updatedReplicas")),
        Value::from(i64_at(obj, "/status/availableReplicas")),
        age(obj, now),
        names,
        images,
        Value::from(selector),
    ]
}

pub(crate) const REPLICA_SET: Printer = Printer::new(
    &[
        NAME,
        col("Desired", "integer", "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#replicaset"),
        col("Current", "integer", "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#replicaset"),
        col("Ready", "integer", "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition."),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
    ],
    replica_set_cells,
);

fn replica_set_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = template_cells(obj, "/spec/template");
    vec![
        name(obj),
        Value::from(i64_at(obj, "/spec/replicas")),
        Value::from(i64_at(obj, "/status/replicas")),
        Value::from(i64_at(obj, "/status/readyReplicas")),
        age(obj, now),
        names,
        images,
        Value::from(format_label_selector(obj.pointer("/spec/selector"))),
    ]
}

pub(crate) const STATEFUL_SET: Printer = Printer::new(
    &[
        NAME,
        col("Ready", "string", READY_DOC),
        AGE,
        CONTAINERS,
        IMAGES,
    ],
    stateful_set_cells,
);

fn stateful_set_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = template_cells(obj, "/spec/template");
    vec![
        name(obj),
        Value::from(format!(
            "{}/{}",
            i64_at(obj, "/status/readyReplicas"),
            i64_at(obj, "/spec/replicas")
        )),
        age(obj, now),
        names,
        images,
    ]
}

pub(crate) const DAEMON_SET: Printer = Printer::new(
    &[
        NAME,
        col("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
        col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
        col("Ready", "integer", "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
        col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
        col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
        col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
    ],
    daemon_set_cells,
);

fn daemon_set_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = template_cells(obj, "/spec/template");
    vec![
        name(obj),
        Value::from(i64_at(obj, "/status/desiredNumberScheduled")),
        Value::from(i64_at(obj, "/status/currentNumberScheduled")),
        Value::from(i64_at(obj, "/status/numberReady")),
        Value::from(i64_at(obj, "/status/updatedNumberScheduled")),
        Value::from(i64_at(obj, "/status/numberAvailable")),
        Value::from(format_labels(
            obj.pointer("/spec/template/spec/nodeSelector"),
        )),
        age(obj, now),
        names,
        images,
        Value::from(format_label_selector(obj.pointer("/spec/selector"))),
    ]
}

pub(crate) const JOB: Printer = Printer::new(
    &[
        NAME,
        col("Status", "string", "Status of the job."),
        col("Completions", "string", "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs."),
        col("Duration", "string", "Time required to complete the job."),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
    ],
    job_cells,
);

/// Whether the job's first condition of `type_` has status `True`.
fn job_condition(obj: &Value, type_: &str) -> bool {
    arr_at(obj, "/status/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == type_)
        .is_some_and(|c| str_at(c, "/status") == "True")
}

fn job_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = i64_at(obj, "/status/succeeded");
    let completions = match opt_i64_at(obj, "/spec/completions") {
        Some(completions) => format!("{succeeded}/{completions}"),
        None => match i64_at(obj, "/spec/parallelism") {
            parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = timestamp(obj.pointer("/status/startTime"));
    let completion = timestamp(obj.pointer("/status/completionTime"));
    let duration = match (start, completion) {
        (None, _) => String::new(),
        (Some(start), None) => since(Some(start), now),
        (Some(start), Some(end)) => human_duration(end.signed_duration_since(start)),
    };
    let status = if job_condition(obj, "Complete") {
        "Complete"
    } else if job_condition(obj, "Failed") {
        "Failed"
    } else if is_deleting(obj) {
        "Terminating"
    } else if job_condition(obj, "Suspended") {
        "Suspended"
    } else if job_condition(obj, "FailureTarget") {
        "FailureTarget"
    } else if job_condition(obj, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let (names, images) = template_cells(obj, "/spec/template");
    vec![
        name(obj),
        Value::from(status),
        Value::from(completions),
        Value::from(duration),
        age(obj, now),
        names,
        images,
        Value::from(format_label_selector(obj.pointer("/spec/selector"))),
    ]
}

pub(crate) const CRON_JOB: Printer = Printer::new(
    &[
        NAME,
        col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
        col("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process."),
        col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions. Defaults to false."),
        col("Active", "integer", "A list of pointers to currently running jobs."),
        col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
    ],
    cron_job_cells,
);

fn cron_job_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let last_schedule = match timestamp(obj.pointer("/status/lastScheduleTime")) {
        Some(t) => since(Some(t), now),
        None => "<none>".to_string(),
    };
    let time_zone = obj
        .pointer("/spec/timeZone")
        .and_then(Value::as_str)
        .unwrap_or("<none>");
    let suspend = match opt_bool_at(obj, "/spec/suspend") {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let active = i64::try_from(arr_at(obj, "/status/active").len()).unwrap_or(i64::MAX);
    let (names, images) = template_cells(obj, "/spec/jobTemplate/spec/template");
    vec![
        name(obj),
        Value::from(str_at(obj, "/spec/schedule")),
        Value::from(time_zone),
        Value::from(suspend),
        Value::from(active),
        Value::from(last_schedule),
        age(obj, now),
        names,
        images,
        Value::from(format_label_selector(
            obj.pointer("/spec/jobTemplate/spec/selector"),
        )),
    ]
}

#[cfg(test)]
mod tests {
    use crate::{cells, columns};
    use chrono::{DateTime, TimeZone, Utc};
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    fn header(api_version: &str, kind: &str) -> Vec<(&'static str, &'static str, i32)> {
        columns(api_version, kind)
            .iter()
            .map(|c| (c.name, c.type_, c.priority))
            .collect()
    }

    fn template() -> serde_json::Value {
        json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}, {"name": "sidecar", "image": "envoy:1.30"}]}})
    }

    #[test]
    fn deployment_columns_should_match_kubernetes() {
        assert_eq!(
            header("apps/v1", "Deployment"),
            [
                ("Name", "string", 0),
                ("Ready", "string", 0),
                ("Up-to-date", "string", 0),
                ("Available", "string", 0),
                ("Age", "string", 0),
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1)
            ]
        );
    }

    #[test]
    fn deployment_with_two_of_three_ready_should_print_two_slash_three() {
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T09:00:00Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        assert_eq!(
            cells("apps/v1", "Deployment", &d, now()),
            [
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("3h"),
                json!("web,sidecar"),
                json!("nginx:1.27,envoy:1.30"),
                json!("app=web")
            ]
        );
    }

    #[test]
    fn deployment_without_status_or_selector_should_print_zeroes_and_an_empty_selector() {
        let d = json!({"metadata": {"name": "new"}, "spec": {"replicas": 1}});
        let row = cells("apps/v1", "Deployment", &d, now());
        assert_eq!(row[1..4], [json!("0/1"), json!(0), json!(0)]);
        assert_eq!(row[7], json!(""));
        let bad = json!({"spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}});
        assert_eq!(
            cells("apps/v1", "Deployment", &bad, now())[7],
            json!("<invalid>")
        );
    }

    #[test]
    fn replica_set_should_print_desired_current_and_ready_as_integers() {
        assert_eq!(
            header("apps/v1", "ReplicaSet")
                .iter()
                .map(|c| c.0)
                .collect::<Vec<_>>(),
            [
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        let rs = json!({
            "metadata": {"name": "web-5d4"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4"}}, "template": template()},
            "status": {"replicas": 3, "readyReplicas": 1}
        });
        let row = cells("apps/v1", "ReplicaSet", &rs, now());
        assert_eq!(row[1..4], [json!(3), json!(3), json!(1)]);
        assert_eq!(row[7], json!("app=web,pod-template-hash=5d4"));
        assert_eq!(
            cells("apps/v1", "ReplicaSet", &json!({}), now())[7],
            json!("<none>")
        );
    }

    #[test]
    fn stateful_set_should_print_ready_over_desired() {
        assert_eq!(
            header("apps/v1", "StatefulSet")
                .iter()
                .map(|c| (c.0, c.2))
                .collect::<Vec<_>>(),
            [
                ("Name", 0),
                ("Ready", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1)
            ]
        );
        let ss = json!({"metadata": {"name": "db"}, "spec": {"replicas": 3, "template": template()}, "status": {"readyReplicas": 3}});
        assert_eq!(
            cells("apps/v1", "StatefulSet", &ss, now())[..2],
            [json!("db"), json!("3/3")]
        );
    }

    #[test]
    fn daemon_set_should_print_counts_and_node_selector() {
        assert_eq!(
            header("apps/v1", "DaemonSet")
                .iter()
                .map(|c| (c.0, c.2))
                .collect::<Vec<_>>(),
            [
                ("Name", 0),
                ("Desired", 0),
                ("Current", 0),
                ("Ready", 0),
                ("Up-to-date", 0),
                ("Available", 0),
                ("Node Selector", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1)
            ]
        );
        let ds = json!({
            "metadata": {"name": "proxy"},
            "spec": {
                "selector": {"matchLabels": {"k8s-app": "proxy"}},
                "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "p", "image": "proxy:1"}]}}
            },
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "updatedNumberScheduled": 3, "numberAvailable": 2}
        });
        let row = cells("apps/v1", "DaemonSet", &ds, now());
        assert_eq!(
            row[1..7],
            [
                json!(3),
                json!(3),
                json!(2),
                json!(3),
                json!(2),
                json!("kubernetes.io/os=linux")
            ]
        );
        assert_eq!(
            row[8..],
            [json!("p"), json!("proxy:1"), json!("k8s-app=proxy")]
        );
        assert_eq!(
            cells("apps/v1", "DaemonSet", &json!({}), now())[6],
            json!("<none>")
        );
    }

    #[test]
    fn job_columns_should_match_kubernetes() {
        assert_eq!(
            header("batch/v1", "Job")
                .iter()
                .map(|c| (c.0, c.2))
                .collect::<Vec<_>>(),
            [
                ("Name", 0),
                ("Status", 0),
                ("Completions", 0),
                ("Duration", 0),
                ("Age", 0),
                ("Containers", 1),
                ("Images", 1),
                ("Selector", 1)
            ]
        );
    }

    #[test]
    fn complete_job_should_print_complete_and_its_run_time() {
        let job = json!({
            "metadata": {"name": "pi", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"completions": 1, "parallelism": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}, "template": template()},
            "status": {
                "startTime": "2024-05-01T11:00:05Z",
                "completionTime": "2024-05-01T11:02:35Z",
                "succeeded": 1,
                "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]
            }
        });
        assert_eq!(
            cells("batch/v1", "Job", &job, now())[..5],
            [
                json!("pi"),
                json!("Complete"),
                json!("1/1"),
                json!("2m30s"),
                json!("60m")
            ]
        );
    }

    #[test]
    fn running_job_should_print_time_since_start_and_parallelism() {
        let mut job = json!({
            "spec": {"parallelism": 3},
            "status": {"startTime": "2024-05-01T11:59:15Z", "succeeded": 1}
        });
        let row = cells("batch/v1", "Job", &job, now());
        assert_eq!(
            row[1..4],
            [json!("Running"), json!("1/1 of 3"), json!("45s")]
        );
        job["spec"] = json!({});
        job["status"] = json!({});
        let row = cells("batch/v1", "Job", &job, now());
        assert_eq!(row[1..4], [json!("Running"), json!("0/1"), json!("")]);
    }

    #[test]
    fn job_status_should_follow_kubernetes_precedence() {
        let with = |conditions: serde_json::Value, deleting: bool| {
            let mut job = json!({"metadata": {"name": "j"}, "status": {"conditions": conditions}});
            if deleting {
                job["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:00Z");
            }
            cells("batch/v1", "Job", &job, now())[1].clone()
        };
        assert_eq!(
            with(json!([{"type": "Failed", "status": "True"}]), true),
            json!("Failed")
        );
        assert_eq!(with(json!([]), true), json!("Terminating"));
        assert_eq!(
            with(json!([{"type": "Suspended", "status": "True"}]), false),
            json!("Suspended")
        );
        assert_eq!(
            with(json!([{"type": "FailureTarget", "status": "True"}]), false),
            json!("FailureTarget")
        );
        assert_eq!(
            with(json!([{"type": "Complete", "status": "False"}]), false),
            json!("Running")
        );
    }

    #[test]
    fn cron_job_should_print_schedule_suspend_and_last_schedule() {
        assert_eq!(
            header("batch/v1", "CronJob"),
            [
                ("Name", "string", 0),
                ("Schedule", "string", 0),
                ("Timezone", "string", 0),
                ("Suspend", "boolean", 0),
                ("Active", "integer", 0),
                ("Last Schedule", "string", 0),
                ("Age", "string", 0),
                ("Containers", "string", 1),
                ("Images", "string", 1),
                ("Selector", "string", 1)
            ]
        );
        let cj = json!({
            "metadata": {"name": "backup", "creationTimestamp": "2024-04-01T12:00:00Z"},
            "spec": {"schedule": "*/5 * * * *", "suspend": false, "jobTemplate": {"spec": {"template": template()}}},
            "status": {"active": [{"name": "backup-1"}], "lastScheduleTime": "2024-05-01T11:55:00Z"}
        });
        assert_eq!(
            cells("batch/v1", "CronJob", &cj, now()),
            [
                json!("backup"),
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("5m"),
                json!("30d"),
                json!("web,sidecar"),
                json!("nginx:1.27,envoy:1.30"),
                json!("<none>")
            ]
        );
        let bare = cells(
            "batch/v1",
            "CronJob",
            &json!({"spec": {"timeZone": "Etc/UTC"}}),
            now(),
        );
        assert_eq!(
            bare[2..6],
            [
                json!("Etc/UTC"),
                json!("<unset>"),
                json!(0),
                json!("<none>")
            ]
        );
    }
}
