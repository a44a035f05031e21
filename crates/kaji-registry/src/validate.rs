//! Kind-specific validation of built-in objects: required fields, value
//! ranges, selector/template agreement and immutable fields.

use kaji_core::selector::LabelSelector;
use kaji_core::validation;
use kaji_core::Cause;
use serde_json::{json, Value};

/// Validates the kind-specific parts of a whole object.
pub fn by_kind(group: &str, kind: &str, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let null = Value::Null;
    let spec = obj.get("spec").unwrap_or(&null);
    match (group, kind) {
        ("", "Pod") => pod_spec(spec, "spec", None, &mut causes),
        ("", "Service") => service(spec, &mut causes),
        ("", "ConfigMap") => {
            data_keys(obj.get("data"), "data", &mut causes);
            data_keys(obj.get("binaryData"), "binaryData", &mut causes);
        }
        ("", "Secret") => {
            data_keys(obj.get("data"), "data", &mut causes);
            data_keys(obj.get("stringData"), "stringData", &mut causes);
        }
        ("apps", "Deployment") => {
            workload(spec, true, Some(&["Always"]), &mut causes);
            if let Some(t) = spec.pointer("/strategy/type").and_then(Value::as_str) {
                if !matches!(t, "RollingUpdate" | "Recreate") {
                    causes.push(Cause::not_supported(
                        "spec.strategy.type",
                        &json!(t),
                        &["Recreate", "RollingUpdate"],
                    ));
                }
            }
        }
        ("apps", "ReplicaSet") | ("apps", "StatefulSet") => {
            workload(spec, true, Some(&["Always"]), &mut causes)
        }
        ("apps", "DaemonSet") => workload(spec, false, Some(&["Always"]), &mut causes),
        ("batch", "Job") => job_spec(spec, "spec", &mut causes),
        ("batch", "CronJob") => {
            if spec
                .get("schedule")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                causes.push(Cause::required("spec.schedule"));
            }
            match spec.pointer("/jobTemplate/spec") {
                Some(js) => job_spec(js, "spec.jobTemplate.spec", &mut causes),
                None => causes.push(Cause::required("spec.jobTemplate.spec")),
            }
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            webhooks(obj.get("webhooks"), true, &mut causes)
        }
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            webhooks(obj.get("webhooks"), false, &mut causes)
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            match obj.get("addressType").and_then(Value::as_str) {
                None => causes.push(Cause::required("addressType")),
                Some(t) if !matches!(t, "IPv4" | "IPv6" | "FQDN") => causes.push(
                    Cause::not_supported("addressType", &json!(t), &["FQDN", "IPv4", "IPv6"]),
                ),
                _ => {}
            }
        }
        _ => {}
    }
    causes
}

/// Validates what may not change between `old` and `new`.
pub fn update_by_kind(group: &str, kind: &str, new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let changed = |pointer: &str| new.pointer(pointer) != old.pointer(pointer);
    match (group, kind) {
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
            if changed("/spec/selector") =>
        {
            causes.push(Cause::invalid(
                "spec.selector",
                new.pointer("/spec/selector").unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
        ("batch", "Job") => {
            if changed("/spec/selector") {
                causes.push(Cause::immutable("spec.selector"));
            }
            if changed("/spec/template") {
                causes.push(Cause::immutable("spec.template"));
            }
            if changed("/spec/completions") {
                causes.push(Cause::immutable("spec.completions"));
            }
        }
        ("", "Pod") => {
            let mut new_spec = new.get("spec").cloned().unwrap_or(Value::Null);
            let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
            // The mutable fields are copied from old before comparing what remains.
            for list in ["containers", "initContainers"] {
                if let (Some(Value::Array(n)), Some(Value::Array(o))) =
                    (new_spec.get_mut(list), old_spec.get(list))
                {
                    for (nc, oc) in n.iter_mut().zip(o) {
                        if let (Some(nc), Some(img)) = (nc.as_object_mut(), oc.get("image")) {
                            nc.insert("image".into(), img.clone());
                        }
                    }
                }
            }
            for field in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
            ] {
                if let Some(map) = new_spec.as_object_mut() {
                    match old_spec.get(field) {
                        Some(v) => map.insert(field.into(), v.clone()),
                        None => map.remove(field),
                    };
                }
            }
            // Scheduling gates may only be removed (that is how a pod is
            // released to the scheduler), never added.
            let gates = |spec: &Value| -> Vec<Value> {
                spec.get("schedulingGates")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let (new_gates, old_gates) = (gates(&new_spec), gates(&old_spec));
            if new_gates.iter().all(|g| old_gates.contains(g)) {
                if let Some(map) = new_spec.as_object_mut() {
                    match old_spec.get("schedulingGates") {
                        Some(v) => map.insert("schedulingGates".into(), v.clone()),
                        None => map.remove("schedulingGates"),
                    };
                }
            } else {
                causes.push(Cause::forbidden(
                    "spec.schedulingGates",
                    "only deletion is allowed, but found new scheduling gate",
                ));
            }
            if new_spec != old_spec {
                causes.push(Cause::forbidden(
                    "spec",
                    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                ));
            }
        }
        ("", "Service") => {
            let old_ip = old.pointer("/spec/clusterIP");
            if old_ip.is_some()
                && new.pointer("/spec/clusterIP").is_some()
                && changed("/spec/clusterIP")
            {
                causes.push(Cause::immutable("spec.clusterIP"));
            }
        }
        ("", "ConfigMap") | ("", "Secret") => {
            if old.get("immutable") == Some(&json!(true)) {
                for field in ["data", "binaryData", "stringData"] {
                    if changed(&format!("/{field}")) {
                        causes.push(Cause::forbidden(
                            field,
                            "field is immutable when `immutable` is set",
                        ));
                    }
                }
                if changed("/immutable") {
                    causes.push(Cause::forbidden(
                        "immutable",
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
            if kind == "Secret" && changed("/type") {
                causes.push(Cause::immutable("type"));
            }
        }
        _ => {}
    }
    causes
}

/// `admissionregistration.k8s.io/v1` webhooks, as Kubernetes' v1 validation
/// (which requires `sideEffects` and `admissionReviewVersions`).
fn webhooks(list: Option<&Value>, mutating: bool, causes: &mut Vec<Cause>) {
    let Some(Value::Array(list)) = list else {
        return;
    };
    let mut names: Vec<&str> = Vec::new();
    for (i, hook) in list.iter().enumerate() {
        let path = format!("webhooks[{i}]");
        let text = |field: &str| hook.get(field).and_then(Value::as_str);
        match text("name").unwrap_or("") {
            "" => causes.push(Cause::required(format!("{path}.name"))),
            name => {
                let npath = format!("{path}.name");
                let errs = validation::is_dns1123_subdomain(&name.to_lowercase());
                if !errs.is_empty() {
                    causes.push(Cause::invalid(&npath, &json!(name), errs.join(",")));
                } else if name.split('.').count() < 3 {
                    causes.push(Cause::invalid(
                        &npath,
                        &json!(name),
                        "should be a domain with at least three segments separated by dots",
                    ));
                }
                if names.contains(&name) {
                    causes.push(Cause::duplicate(npath, &json!(name)));
                }
                names.push(name);
            }
        }
        one_of(hook, "failurePolicy", &["Fail", "Ignore"], &path, causes);
        one_of(hook, "matchPolicy", &["Equivalent", "Exact"], &path, causes);
        if mutating {
            one_of(
                hook,
                "reinvocationPolicy",
                &["IfNeeded", "Never"],
                &path,
                causes,
            );
        }
        match text("sideEffects") {
            None => causes.push(Cause {
                message: "Required value: must specify one of None, NoneOnDryRun".into(),
                ..Cause::required(format!("{path}.sideEffects"))
            }),
            Some(_) => one_of(
                hook,
                "sideEffects",
                &["None", "NoneOnDryRun"],
                &path,
                causes,
            ),
        }
        review_versions(hook.get("admissionReviewVersions"), &path, causes);
        if let Some(t) = hook.get("timeoutSeconds").and_then(Value::as_i64) {
            if !(1..=30).contains(&t) {
                causes.push(Cause::invalid(
                    format!("{path}.timeoutSeconds"),
                    &json!(t),
                    "the timeout value must be between 1 and 30 seconds",
                ));
            }
        }
        for selector in ["namespaceSelector", "objectSelector"] {
            if let Some(sel) = hook.get(selector).filter(|s| !s.is_null()) {
                causes.extend(validation::label_selector(
                    sel,
                    &format!("{path}.{selector}"),
                ));
            }
        }
        client_config(
            hook.get("clientConfig"),
            &format!("{path}.clientConfig"),
            causes,
        );
        if let Some(Value::Array(rules)) = hook.get("rules") {
            for (j, rule) in rules.iter().enumerate() {
                webhook_rule(rule, &format!("{path}.rules[{j}]"), causes);
            }
        }
    }
}

fn one_of(hook: &Value, field: &str, allowed: &[&str], path: &str, causes: &mut Vec<Cause>) {
    if let Some(v) = hook.get(field).and_then(Value::as_str) {
        if !allowed.contains(&v) {
            causes.push(Cause::not_supported(
                format!("{path}.{field}"),
                &json!(v),
                allowed,
            ));
        }
    }
}

fn review_versions(versions: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let vpath = format!("{path}.admissionReviewVersions");
    let list: Vec<&str> = versions
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if list.is_empty() {
        causes.push(Cause {
            message: "Required value: must specify one of v1, v1beta1".into(),
            ..Cause::required(vpath)
        });
        return;
    }
    for (i, v) in list.iter().enumerate() {
        if list[..i].contains(v) {
            causes.push(Cause::duplicate(format!("{vpath}[{i}]"), &json!(v)));
        }
    }
    if !list.iter().any(|v| matches!(*v, "v1" | "v1beta1")) {
        causes.push(Cause::invalid(
            vpath,
            &json!(list),
            "must include at least one of v1, v1beta1",
        ));
    }
}

fn client_config(cc: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let null = Value::Null;
    let cc = cc.unwrap_or(&null);
    let url = cc.get("url").and_then(Value::as_str);
    let service = cc.get("service").filter(|s| s.is_object());
    match (url, service) {
        (Some(url), None) => webhook_url(url, &format!("{path}.url"), causes),
        (None, Some(svc)) => {
            let spath = format!("{path}.service");
            let text = |f: &str| svc.get(f).and_then(Value::as_str).unwrap_or("");
            if text("name").is_empty() {
                causes.push(Cause {
                    message: "Required value: service name is required".into(),
                    ..Cause::required(format!("{spath}.name"))
                });
            }
            if text("namespace").is_empty() {
                causes.push(Cause {
                    message: "Required value: service namespace is required".into(),
                    ..Cause::required(format!("{spath}.namespace"))
                });
            }
            let p = text("path");
            if !p.is_empty() && !p.starts_with('/') {
                causes.push(Cause::invalid(
                    format!("{spath}.path"),
                    &json!(p),
                    "must start with a '/'",
                ));
            }
            if let Some(port) = svc.get("port").and_then(Value::as_i64) {
                if !(1..=65535).contains(&port) {
                    causes.push(Cause::invalid(
                        format!("{spath}.port"),
                        &json!(port),
                        "port is not valid: must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
        _ => causes.push(Cause {
            message: "Required value: exactly one of url or service is required".into(),
            ..Cause::required(path)
        }),
    }
}

fn webhook_url(url: &str, path: &str, causes: &mut Vec<Cause>) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    if scheme != "https" {
        causes.push(Cause::invalid(
            path,
            &json!(scheme),
            "'https' is the only allowed URL scheme",
        ));
    }
    let (before_fragment, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (before_query, query) = before_fragment
        .split_once('?')
        .unwrap_or((before_fragment, ""));
    let authority = before_query.split('/').next().unwrap_or("");
    if let Some((user, _)) = authority.split_once('@') {
        causes.push(Cause::invalid(
            path,
            &json!(user),
            "user information is not permitted in the URL",
        ));
    }
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() {
        causes.push(Cause::invalid(path, &json!(host), "host must be specified"));
    }
    if !fragment.is_empty() {
        causes.push(Cause::invalid(
            path,
            &json!(fragment),
            "fragments are not permitted in the URL",
        ));
    }
    if !query.is_empty() {
        causes.push(Cause::invalid(
            path,
            &json!(query),
            "query parameters are not permitted in the URL",
        ));
    }
}

fn webhook_rule(rule: &Value, path: &str, causes: &mut Vec<Cause>) {
    let list = |field: &str| -> Vec<&str> {
        rule.get(field)
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    };
    let wildcard_alone = |field: &str, items: &[&str], what: &str, causes: &mut Vec<Cause>| {
        if items.len() > 1 && items.contains(&"*") {
            causes.push(Cause::invalid(
                format!("{path}.{field}"),
                &json!(items),
                format!("if '*' is present, must not specify other {what}"),
            ));
        }
    };
    let operations = list("operations");
    if operations.is_empty() {
        causes.push(Cause::required(format!("{path}.operations")));
    }
    wildcard_alone("operations", &operations, "operations", causes);
    for (i, op) in operations.iter().enumerate() {
        if !matches!(*op, "*" | "CONNECT" | "CREATE" | "DELETE" | "UPDATE") {
            causes.push(Cause::not_supported(
                format!("{path}.operations[{i}]"),
                &json!(op),
                &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"],
            ));
        }
    }
    let groups = list("apiGroups");
    if groups.is_empty() {
        causes.push(Cause::required(format!("{path}.apiGroups")));
    }
    wildcard_alone("apiGroups", &groups, "API groups", causes);
    let versions = list("apiVersions");
    if versions.is_empty() {
        causes.push(Cause::required(format!("{path}.apiVersions")));
    }
    wildcard_alone("apiVersions", &versions, "API versions", causes);
    for (i, v) in versions.iter().enumerate() {
        if v.is_empty() {
            causes.push(Cause::required(format!("{path}.apiVersions[{i}]")));
        }
    }
    let resources = list("resources");
    if resources.is_empty() {
        causes.push(Cause::required(format!("{path}.resources")));
    }
    for (i, r) in resources.iter().enumerate() {
        if r.is_empty() {
            causes.push(Cause::required(format!("{path}.resources[{i}]")));
        } else if r.split('/').count() > 2 || r.starts_with('/') || r.ends_with('/') {
            causes.push(Cause::invalid(
                format!("{path}.resources[{i}]"),
                &json!(r),
                "must be a resource, optionally followed by '/' and a subresource",
            ));
        }
    }
    if resources.len() > 1 && resources.contains(&"*/*") {
        causes.push(Cause::invalid(
            format!("{path}.resources"),
            &json!(resources),
            "if '*/*' is present, must not specify other resources",
        ));
    } else if resources.contains(&"*") && resources.iter().any(|r| *r != "*" && !r.contains('/')) {
        causes.push(Cause::invalid(
            format!("{path}.resources"),
            &json!(resources),
            "if '*' is present, must not specify other resources without subresources",
        ));
    }
    if let Some(scope) = rule.get("scope").and_then(Value::as_str) {
        if !matches!(scope, "*" | "Cluster" | "Namespaced") {
            causes.push(Cause::not_supported(
                format!("{path}.scope"),
                &json!(scope),
                &["*", "Cluster", "Namespaced"],
            ));
        }
    }
}

fn data_keys(data: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let Some(Value::Object(map)) = data else {
        return;
    };
    for key in map.keys() {
        let ok = !key.is_empty()
            && key.len() <= 253
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
            && key != "."
            && key != "..";
        if !ok {
            causes.push(Cause::invalid(
                format!("{path}[{key}]"),
                &json!(key),
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            ));
        }
    }
}

fn workload(spec: &Value, has_replicas: bool, restart: Option<&[&str]>, causes: &mut Vec<Cause>) {
    if has_replicas {
        if let Some(r) = spec.get("replicas").and_then(Value::as_i64) {
            if r < 0 {
                causes.push(Cause::invalid(
                    "spec.replicas",
                    &json!(r),
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
    match spec.get("selector") {
        None | Some(Value::Null) => causes.push(Cause::required("spec.selector")),
        Some(sel) => selector_matches_template(sel, spec, causes),
    }
    match spec.pointer("/template/spec") {
        Some(pod) => pod_spec(pod, "spec.template.spec", restart, causes),
        None => causes.push(Cause::required("spec.template.spec.containers")),
    }
}

fn selector_matches_template(sel: &Value, spec: &Value, causes: &mut Vec<Cause>) {
    let empty = sel
        .get("matchLabels")
        .is_none_or(|m| m.as_object().is_none_or(|m| m.is_empty()))
        && sel
            .get("matchExpressions")
            .is_none_or(|m| m.as_array().is_none_or(|m| m.is_empty()));
    if empty {
        causes.push(Cause::invalid(
            "spec.selector",
            sel,
            "empty selector is invalid for deployment",
        ));
        return;
    }
    match LabelSelector::from_label_selector_json(sel) {
        Err(e) => causes.push(Cause::invalid("spec.selector", sel, e.to_string())),
        Ok(selector) => {
            let labels = spec
                .pointer("/template/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if !selector.matches(&labels) {
                causes.push(Cause::invalid(
                    "spec.template.metadata.labels",
                    &Value::Object(labels),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
}

fn job_spec(spec: &Value, path: &str, causes: &mut Vec<Cause>) {
    match spec.pointer("/template/spec") {
        Some(pod) => pod_spec(
            pod,
            &format!("{path}.template.spec"),
            Some(&["OnFailure", "Never"]),
            causes,
        ),
        None => causes.push(Cause::required(format!("{path}.template.spec.containers"))),
    }
}

fn pod_spec(spec: &Value, path: &str, restart: Option<&[&str]>, causes: &mut Vec<Cause>) {
    match spec.get("containers").and_then(Value::as_array) {
        None => causes.push(Cause::required(format!("{path}.containers"))),
        Some(list) if list.is_empty() => causes.push(Cause::required(format!("{path}.containers"))),
        Some(list) => containers(list, &format!("{path}.containers"), causes),
    }
    if let Some(list) = spec.get("initContainers").and_then(Value::as_array) {
        containers(list, &format!("{path}.initContainers"), causes);
    }
    if let Some(policy) = spec.get("restartPolicy").and_then(Value::as_str) {
        let all = ["Always", "OnFailure", "Never"];
        let allowed = restart.unwrap_or(&all);
        if !allowed.contains(&policy) {
            causes.push(Cause::not_supported(
                format!("{path}.restartPolicy"),
                &json!(policy),
                allowed,
            ));
        }
    }
    if let Some(Value::Array(volumes)) = spec.get("volumes") {
        let mut seen = Vec::new();
        for (i, v) in volumes.iter().enumerate() {
            let name = v.get("name").and_then(Value::as_str).unwrap_or("");
            let vpath = format!("{path}.volumes[{i}].name");
            if name.is_empty() {
                causes.push(Cause::required(vpath));
            } else if seen.contains(&name) {
                causes.push(Cause::duplicate(vpath, &json!(name)));
            } else {
                causes.extend(validation::dns1123_label(name, &vpath));
                seen.push(name);
            }
        }
    }
}

fn containers(list: &[Value], path: &str, causes: &mut Vec<Cause>) {
    let mut names = Vec::new();
    for (i, c) in list.iter().enumerate() {
        let cpath = format!("{path}[{i}]");
        match c.get("name").and_then(Value::as_str) {
            None | Some("") => causes.push(Cause::required(format!("{cpath}.name"))),
            Some(name) if names.contains(&name) => {
                causes.push(Cause::duplicate(format!("{cpath}.name"), &json!(name)))
            }
            Some(name) => {
                causes.extend(validation::dns1123_label(name, &format!("{cpath}.name")));
                names.push(name);
            }
        }
        if c.get("image")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .is_empty()
        {
            causes.push(Cause::required(format!("{cpath}.image")));
        }
        if let Some(Value::Array(ports)) = c.get("ports") {
            for (j, p) in ports.iter().enumerate() {
                port_number(
                    p.get("containerPort"),
                    &format!("{cpath}.ports[{j}].containerPort"),
                    true,
                    causes,
                );
            }
        }
    }
}

fn port_number(v: Option<&Value>, path: &str, required: bool, causes: &mut Vec<Cause>) {
    match v.and_then(Value::as_i64) {
        None if required => causes.push(Cause::required(path)),
        None => {}
        Some(p) if !(1..=65535).contains(&p) => causes.push(Cause::invalid(
            path,
            &json!(p),
            "must be between 1 and 65535, inclusive",
        )),
        Some(_) => {}
    }
}

fn service(spec: &Value, causes: &mut Vec<Cause>) {
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !matches!(
        ty,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        causes.push(Cause::not_supported(
            "spec.type",
            &json!(ty),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    match spec.get("ports").and_then(Value::as_array) {
        Some(ports) if !ports.is_empty() => {
            for (i, p) in ports.iter().enumerate() {
                port_number(
                    p.get("port"),
                    &format!("spec.ports[{i}].port"),
                    true,
                    causes,
                );
                if ports.len() > 1
                    && p.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .is_empty()
                {
                    causes.push(Cause::required(format!("spec.ports[{i}].name")));
                }
            }
        }
        _ if headless || ty == "ExternalName" => {}
        _ => causes.push(Cause::required("spec.ports")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUP: &str = "admissionregistration.k8s.io";

    fn fields(causes: &[Cause]) -> Vec<(&str, &str)> {
        causes
            .iter()
            .map(|c| (c.field.as_str(), c.message.as_str()))
            .collect()
    }

    fn valid_hook(name: &str) -> Value {
        json!({"name": name, "clientConfig": {"url": "https://127.0.0.1:8443/v"},
               "sideEffects": "None", "admissionReviewVersions": ["v1"],
               "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                          "resources": ["configmaps", "pods/status"], "scope": "Namespaced"}]})
    }

    #[test]
    fn valid_webhook_configurations_pass() {
        let obj = json!({"webhooks": [valid_hook("a.example.com"), valid_hook("b.example.com")]});
        assert!(by_kind(GROUP, "ValidatingWebhookConfiguration", &obj).is_empty());
        assert!(by_kind(GROUP, "MutatingWebhookConfiguration", &obj).is_empty());
    }

    #[test]
    fn webhook_names_are_fully_qualified_and_unique() {
        let obj = json!({"webhooks": [valid_hook("a.example.com"), valid_hook("a.example.com"), valid_hook("short.name")]});
        let causes = by_kind(GROUP, "ValidatingWebhookConfiguration", &obj);
        assert_eq!(
            fields(&causes),
            vec![
                ("webhooks[1].name", "Duplicate value: \"a.example.com\""),
                (
                    "webhooks[2].name",
                    "Invalid value: \"short.name\": should be a domain with at least three segments separated by dots"
                ),
            ]
        );
    }

    #[test]
    fn side_effects_review_versions_and_client_config_are_required() {
        let obj = json!({"webhooks": [{"name": "a.example.com",
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}]});
        let causes = by_kind(GROUP, "ValidatingWebhookConfiguration", &obj);
        assert_eq!(
            fields(&causes),
            vec![
                (
                    "webhooks[0].sideEffects",
                    "Required value: must specify one of None, NoneOnDryRun"
                ),
                (
                    "webhooks[0].admissionReviewVersions",
                    "Required value: must specify one of v1, v1beta1"
                ),
                (
                    "webhooks[0].clientConfig",
                    "Required value: exactly one of url or service is required"
                ),
            ]
        );
    }

    #[test]
    fn policies_timeouts_and_urls_are_checked() {
        let mut hook = valid_hook("a.example.com");
        hook["sideEffects"] = json!("Some");
        hook["failurePolicy"] = json!("Maybe");
        hook["reinvocationPolicy"] = json!("Always");
        hook["timeoutSeconds"] = json!(31);
        hook["admissionReviewVersions"] = json!(["v2"]);
        hook["clientConfig"] = json!({"url": "http://hooks.example.com/v?x=1"});
        let causes = by_kind(
            GROUP,
            "MutatingWebhookConfiguration",
            &json!({"webhooks": [hook]}),
        );
        let got: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            got,
            vec![
                "webhooks[0].failurePolicy",
                "webhooks[0].reinvocationPolicy",
                "webhooks[0].sideEffects",
                "webhooks[0].admissionReviewVersions",
                "webhooks[0].timeoutSeconds",
                "webhooks[0].clientConfig.url",
                "webhooks[0].clientConfig.url",
            ]
        );
        assert_eq!(
            causes[4].message,
            "Invalid value: 31: the timeout value must be between 1 and 30 seconds"
        );
        assert_eq!(
            causes[5].message,
            "Invalid value: \"http\": 'https' is the only allowed URL scheme"
        );
    }

    #[test]
    fn webhook_rules_need_every_list_and_keep_wildcards_alone() {
        let mut hook = valid_hook("a.example.com");
        hook["rules"] = json!([
            {"operations": ["*", "CREATE"], "apiGroups": [], "apiVersions": ["v1"], "resources": ["*/*", "pods"], "scope": "Everywhere"},
            {"operations": ["PATCH"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": []},
        ]);
        hook["clientConfig"] =
            json!({"service": {"namespace": "", "name": "svc", "path": "v", "port": 0}});
        let causes = by_kind(
            GROUP,
            "ValidatingWebhookConfiguration",
            &json!({"webhooks": [hook]}),
        );
        let got: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            got,
            vec![
                "webhooks[0].clientConfig.service.namespace",
                "webhooks[0].clientConfig.service.path",
                "webhooks[0].clientConfig.service.port",
                "webhooks[0].rules[0].operations",
                "webhooks[0].rules[0].apiGroups",
                "webhooks[0].rules[0].resources",
                "webhooks[0].rules[0].scope",
                "webhooks[0].rules[1].operations[0]",
                "webhooks[0].rules[1].resources",
            ]
        );
    }
}
