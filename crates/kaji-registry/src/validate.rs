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
