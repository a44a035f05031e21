//! Defaulting of built-in kinds, as Kubernetes' `SetDefaults_*` functions do
//! for the fields clients most often omit.

use serde_json::{json, Map, Value};

/// Sets `key` to `value` in `map` if absent (or null).
fn default_key(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.get(key) {
        Some(v) if !v.is_null() => {}
        _ => {
            map.insert(key.to_string(), value);
        }
    }
}

fn object_at<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    obj.get_mut(key).and_then(Value::as_object_mut)
}

fn ensure_object<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    if !map.get(key).is_some_and(Value::is_object) {
        map.insert(key.to_string(), Value::Object(Map::new()));
    }
    map.get_mut(key)
        .and_then(Value::as_object_mut)
        .expect("just inserted an object")
}

/// Applies the defaults of `kind` (in `group`) to `obj`.
pub fn apply(kind: &str, group: &str, obj: &mut Value) {
    match (group, kind) {
        ("", "Pod") => {
            if let Some(spec) = object_at(obj, "spec") {
                pod_spec(spec);
                default_toleration_seconds(spec);
                requests_from_limits(spec);
            }
        }
        ("", "Service") => {
            if let Some(spec) = object_at(obj, "spec") {
                service_spec(spec);
            }
        }
        ("", "Secret") => {
            if let Some(map) = obj.as_object_mut() {
                default_key(map, "type", json!("Opaque"));
            }
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => webhooks(obj, true),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => webhooks(obj, false),
        ("", "Namespace") => {
            if let Some(map) = obj.as_object_mut() {
                let spec = ensure_object(map, "spec");
                default_key(spec, "finalizers", json!(["kubernetes"]));
            }
        }
        ("apps", "Deployment") => {
            if let Some(spec) = object_at(obj, "spec") {
                default_key(spec, "replicas", json!(1));
                default_key(spec, "revisionHistoryLimit", json!(10));
                default_key(spec, "progressDeadlineSeconds", json!(600));
                let strategy = ensure_object(spec, "strategy");
                default_key(strategy, "type", json!("RollingUpdate"));
                if strategy.get("type") == Some(&json!("RollingUpdate")) {
                    let ru = ensure_object(strategy, "rollingUpdate");
                    default_key(ru, "maxSurge", json!("25%"));
                    default_key(ru, "maxUnavailable", json!("25%"));
                }
                template(spec);
            }
        }
        ("apps", "ReplicaSet") => {
            if let Some(spec) = object_at(obj, "spec") {
                default_key(spec, "replicas", json!(1));
                template(spec);
            }
        }
        ("apps", "StatefulSet") => {
            if let Some(spec) = object_at(obj, "spec") {
                default_key(spec, "replicas", json!(1));
                default_key(spec, "podManagementPolicy", json!("OrderedReady"));
                default_key(spec, "revisionHistoryLimit", json!(10));
                let strategy = ensure_object(spec, "updateStrategy");
                default_key(strategy, "type", json!("RollingUpdate"));
                if strategy.get("type") == Some(&json!("RollingUpdate")) {
                    let ru = ensure_object(strategy, "rollingUpdate");
                    default_key(ru, "partition", json!(0));
                }
                template(spec);
            }
        }
        ("apps", "DaemonSet") => {
            if let Some(spec) = object_at(obj, "spec") {
                default_key(spec, "revisionHistoryLimit", json!(10));
                let strategy = ensure_object(spec, "updateStrategy");
                default_key(strategy, "type", json!("RollingUpdate"));
                if strategy.get("type") == Some(&json!("RollingUpdate")) {
                    let ru = ensure_object(strategy, "rollingUpdate");
                    default_key(ru, "maxUnavailable", json!(1));
                    default_key(ru, "maxSurge", json!(0));
                }
                template(spec);
            }
        }
        ("batch", "Job") => {
            if let Some(spec) = object_at(obj, "spec") {
                job_spec(spec);
            }
        }
        ("batch", "CronJob") => {
            if let Some(spec) = object_at(obj, "spec") {
                default_key(spec, "concurrencyPolicy", json!("Allow"));
                default_key(spec, "suspend", json!(false));
                default_key(spec, "successfulJobsHistoryLimit", json!(3));
                default_key(spec, "failedJobsHistoryLimit", json!(1));
                if let Some(job) = spec
                    .get_mut("jobTemplate")
                    .and_then(|t| t.get_mut("spec"))
                    .and_then(Value::as_object_mut)
                {
                    job_spec(job);
                }
            }
        }
        _ => {}
    }
}

fn job_spec(spec: &mut Map<String, Value>) {
    default_key(spec, "parallelism", json!(1));
    default_key(spec, "completions", json!(1));
    default_key(spec, "backoffLimit", json!(6));
    default_key(spec, "completionMode", json!("NonIndexed"));
    default_key(spec, "suspend", json!(false));
    template(spec);
}

fn template(spec: &mut Map<String, Value>) {
    if let Some(pod) = spec
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        pod_spec(pod);
    }
}

fn pod_spec(spec: &mut Map<String, Value>) {
    default_key(spec, "restartPolicy", json!("Always"));
    default_key(spec, "terminationGracePeriodSeconds", json!(30));
    default_key(spec, "dnsPolicy", json!("ClusterFirst"));
    default_key(spec, "securityContext", json!({}));
    default_key(spec, "schedulerName", json!("default-scheduler"));
    for list in ["initContainers", "containers"] {
        if let Some(Value::Array(containers)) = spec.get_mut(list) {
            for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                container(c);
            }
        }
    }
}

/// A container that sets a limit but no request for a resource requests
/// its limit, as Kubernetes defaults pods (not templates).
fn requests_from_limits(spec: &mut Map<String, Value>) {
    for list in ["initContainers", "containers"] {
        let Some(Value::Array(containers)) = spec.get_mut(list) else {
            continue;
        };
        for c in containers.iter_mut() {
            let Some(Value::Object(limits)) = c.pointer("/resources/limits").cloned() else {
                continue;
            };
            let resources = &mut c["resources"];
            if !resources["requests"].is_object() {
                resources["requests"] = json!({});
            }
            let requests = resources["requests"]
                .as_object_mut()
                .expect("just made an object");
            for (name, quantity) in limits {
                requests.entry(name).or_insert(quantity);
            }
        }
    }
}

/// The taints the node lifecycle controller puts on a node that stopped
/// being ready, which every pod tolerates for
/// [`DEFAULT_TOLERATION_SECONDS`] unless it says otherwise.
const NODE_PROBLEM_TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

/// How long a pod stays bound to a not-ready or unreachable node by default
/// (the API server's `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds`).
const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Kubernetes' `DefaultTolerationSeconds` admission plugin: a pod (not a pod
/// template) gets a `NoExecute` toleration of each [`NODE_PROBLEM_TAINTS`]
/// key it does not tolerate yet, so that it is evicted from a failed node
/// after five minutes rather than at once.
fn default_toleration_seconds(spec: &mut Map<String, Value>) {
    let existing = match spec.get("tolerations") {
        Some(Value::Array(list)) => list.clone(),
        // Anything but a list is left for validation to reject.
        Some(v) if !v.is_null() => return,
        _ => Vec::new(),
    };
    // A toleration with an empty key (or effect) covers every key (or effect).
    let covers = |t: &Value, key: &str| {
        let field = |name| t.get(name).and_then(Value::as_str).unwrap_or("");
        (field("key").is_empty() || field("key") == key)
            && (field("effect").is_empty() || field("effect") == "NoExecute")
    };
    let missing: Vec<Value> = NODE_PROBLEM_TAINTS
        .iter()
        .filter(|key| !existing.iter().any(|t| covers(t, key)))
        .map(|key| {
            json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            })
        })
        .collect();
    if !missing.is_empty() {
        let mut tolerations = existing;
        tolerations.extend(missing);
        spec.insert("tolerations".into(), Value::Array(tolerations));
    }
}

/// `admissionregistration.k8s.io/v1` webhook defaults (`SetDefaults_*Webhook`,
/// `SetDefaults_Rule`, `SetDefaults_ServiceReference`).
fn webhooks(obj: &mut Value, mutating: bool) {
    let Some(Value::Array(list)) = obj.get_mut("webhooks") else {
        return;
    };
    for hook in list.iter_mut().filter_map(Value::as_object_mut) {
        default_key(hook, "failurePolicy", json!("Fail"));
        default_key(hook, "matchPolicy", json!("Equivalent"));
        default_key(hook, "namespaceSelector", json!({}));
        default_key(hook, "objectSelector", json!({}));
        default_key(hook, "timeoutSeconds", json!(10));
        if mutating {
            default_key(hook, "reinvocationPolicy", json!("Never"));
        }
        if let Some(Value::Array(rules)) = hook.get_mut("rules") {
            for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
                default_key(rule, "scope", json!("*"));
            }
        }
        if let Some(service) = hook
            .get_mut("clientConfig")
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut)
        {
            default_key(service, "port", json!(443));
        }
    }
}

fn container(c: &mut Map<String, Value>) {
    default_key(c, "terminationMessagePath", json!("/dev/termination-log"));
    default_key(c, "terminationMessagePolicy", json!("File"));
    let latest = c
        .get("image")
        .and_then(Value::as_str)
        .map(|image| {
            let tail = image.rsplit('/').next().unwrap_or(image);
            !image.contains('@') && (!tail.contains(':') || tail.ends_with(":latest"))
        })
        .unwrap_or(false);
    default_key(
        c,
        "imagePullPolicy",
        json!(if latest { "Always" } else { "IfNotPresent" }),
    );
    default_key(c, "resources", json!({}));
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default_key(p, "protocol", json!("TCP"));
        }
    }
}

fn service_spec(spec: &mut Map<String, Value>) {
    default_key(spec, "type", json!("ClusterIP"));
    default_key(spec, "sessionAffinity", json!("None"));
    default_key(spec, "ipFamilyPolicy", json!("SingleStack"));
    default_key(spec, "ipFamilies", json!(["IPv4"]));
    default_key(spec, "internalTrafficPolicy", json!("Cluster"));
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default_key(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                default_key(p, "targetPort", port);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_defaults_match_kubernetes() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        apply("Deployment", "apps", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "Always");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn tagged_images_pull_if_not_present_and_recreate_has_no_rolling_update() {
        let mut d = json!({"spec": {"strategy": {"type": "Recreate"},
            "template": {"spec": {"containers": [{"name": "c", "image": "reg:5000/nginx:1.25"}]}}}});
        apply("Deployment", "apps", &mut d);
        assert!(d["spec"]["strategy"].get("rollingUpdate").is_none());
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
    }

    #[test]
    fn pods_tolerate_not_ready_and_unreachable_nodes_for_five_minutes() {
        let mut p = json!({"spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        apply("Pod", "", &mut p);
        assert_eq!(
            p["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        // Defaulting again (on update) adds nothing.
        let before = p.clone();
        apply("Pod", "", &mut p);
        assert_eq!(p, before);
    }

    #[test]
    fn pods_that_already_tolerate_a_node_problem_keep_their_own_toleration() {
        let own = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists",
            "effect": "NoExecute", "tolerationSeconds": 2});
        let mut p = json!({"spec": {"tolerations": [own.clone()]}});
        apply("Pod", "", &mut p);
        let tolerations = p["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 2);
        assert_eq!(tolerations[0], own);
        assert_eq!(tolerations[1]["key"], "node.kubernetes.io/not-ready");

        // An empty key with Exists tolerates every taint; an empty effect every effect.
        for everything in [
            json!({"operator": "Exists"}),
            json!({"operator": "Exists", "effect": "NoExecute"}),
        ] {
            let mut p = json!({"spec": {"tolerations": [everything.clone()]}});
            apply("Pod", "", &mut p);
            assert_eq!(p["spec"]["tolerations"], json!([everything]));
        }
        // A NoSchedule toleration does not cover NoExecute taints.
        let mut p = json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"}]}});
        apply("Pod", "", &mut p);
        assert_eq!(p["spec"]["tolerations"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn limits_become_requests_where_a_pod_requests_nothing() {
        let mut p = json!({"spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "1"}}}]}});
        apply("Pod", "", &mut p);
        assert_eq!(
            p["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "1", "memory": "1Gi"})
        );
    }

    #[test]
    fn pod_templates_get_no_default_tolerations() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        apply("Deployment", "apps", &mut d);
        assert!(d["spec"]["template"]["spec"].get("tolerations").is_none());
    }

    #[test]
    fn webhooks_default_like_kubernetes_v1() {
        let mut m = json!({"webhooks": [{"name": "a.example.com",
            "clientConfig": {"service": {"namespace": "ns", "name": "svc"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}]});
        apply(
            "MutatingWebhookConfiguration",
            "admissionregistration.k8s.io",
            &mut m,
        );
        let w = &m["webhooks"][0];
        assert_eq!(w["failurePolicy"], "Fail");
        assert_eq!(w["matchPolicy"], "Equivalent");
        assert_eq!(w["timeoutSeconds"], 10);
        assert_eq!(w["namespaceSelector"], json!({}));
        assert_eq!(w["objectSelector"], json!({}));
        assert_eq!(w["reinvocationPolicy"], "Never");
        assert_eq!(w["rules"][0]["scope"], "*");
        assert_eq!(w["clientConfig"]["service"]["port"], 443);

        let mut v = json!({"webhooks": [{"name": "b.example.com", "failurePolicy": "Ignore", "timeoutSeconds": 3}]});
        apply(
            "ValidatingWebhookConfiguration",
            "admissionregistration.k8s.io",
            &mut v,
        );
        assert_eq!(v["webhooks"][0]["failurePolicy"], "Ignore");
        assert_eq!(v["webhooks"][0]["timeoutSeconds"], 3);
        assert!(v["webhooks"][0].get("reinvocationPolicy").is_none());
    }

    #[test]
    fn service_ports_default_target_port_and_protocol() {
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        apply("Service", "", &mut s);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(s["spec"]["type"], "ClusterIP");
    }
}
