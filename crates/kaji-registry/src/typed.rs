//! Decoding through the real Kubernetes types (`k8s-openapi`): type checking,
//! pruning of unknown fields and their reporting for `fieldValidation`.

use k8s_openapi::api::{admissionregistration, apps, batch, coordination, core, discovery, events};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions;
use serde_json::Value;

/// Why an object could not be decoded as its kind.
#[derive(Debug, thiserror::Error)]
#[error("{kind} in version \"{version}\" cannot be handled as a {kind}: {source}")]
pub struct DecodeError {
    kind: String,
    version: String,
    #[source]
    source: serde_json::Error,
}

fn through<T>(value: &Value) -> Result<Value, serde_json::Error>
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let typed: T = serde_json::from_value(value.clone())?;
    serde_json::to_value(typed)
}

/// Decodes `value` as the built-in `kind` at `api_version` and encodes it back,
/// which type-checks every field and drops unknown ones. Returns `None` for kinds
/// that have no typed model (custom resources).
///
/// # Errors
/// A [`DecodeError`] when a field has the wrong type.
pub fn normalize(
    api_version: &str,
    kind: &str,
    value: &Value,
) -> Option<Result<Value, DecodeError>> {
    let result = match (api_version, kind) {
        ("v1", "Namespace") => through::<core::v1::Namespace>(value),
        ("v1", "Pod") => through::<core::v1::Pod>(value),
        ("v1", "Service") => through::<core::v1::Service>(value),
        ("v1", "Endpoints") => through::<core::v1::Endpoints>(value),
        ("v1", "ConfigMap") => through::<core::v1::ConfigMap>(value),
        ("v1", "Secret") => through::<core::v1::Secret>(value),
        ("v1", "ServiceAccount") => through::<core::v1::ServiceAccount>(value),
        ("v1", "Node") => through::<core::v1::Node>(value),
        ("v1", "Event") => through::<core::v1::Event>(value),
        ("v1", "Binding") => through::<core::v1::Binding>(value),
        ("apps/v1", "Deployment") => through::<apps::v1::Deployment>(value),
        ("apps/v1", "ReplicaSet") => through::<apps::v1::ReplicaSet>(value),
        ("apps/v1", "StatefulSet") => through::<apps::v1::StatefulSet>(value),
        ("apps/v1", "DaemonSet") => through::<apps::v1::DaemonSet>(value),
        ("batch/v1", "Job") => through::<batch::v1::Job>(value),
        ("batch/v1", "CronJob") => through::<batch::v1::CronJob>(value),
        ("discovery.k8s.io/v1", "EndpointSlice") => through::<discovery::v1::EndpointSlice>(value),
        ("coordination.k8s.io/v1", "Lease") => through::<coordination::v1::Lease>(value),
        ("events.k8s.io/v1", "Event") => through::<events::v1::Event>(value),
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
            through::<admissionregistration::v1::MutatingWebhookConfiguration>(value)
        }
        ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration") => {
            through::<admissionregistration::v1::ValidatingWebhookConfiguration>(value)
        }
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            through::<apiextensions::v1::CustomResourceDefinition>(value)
        }
        _ => return None,
    };
    let (_, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    Some(result.map_err(|source| DecodeError {
        kind: kind.to_string(),
        version: version.to_string(),
        source,
    }))
}

/// Paths (`.spec.foo`) present in `input` but absent in `normalized`: the
/// fields the typed model does not know. Explicit nulls are not unknown.
pub fn unknown_fields(input: &Value, normalized: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(input, normalized, String::new(), &mut out);
    out
}

/// Removes the field at `path` (as reported by [`unknown_fields`]).
pub fn remove_path(value: &mut Value, path: &str) {
    let mut segments: Vec<String> = Vec::new();
    for part in path.trim_start_matches('.').split('.') {
        let mut rest = part;
        if let Some(i) = rest.find('[') {
            segments.push(rest[..i].to_string());
            rest = &rest[i..];
            while let Some(end) = rest.find(']') {
                segments.push(rest[..=end].to_string());
                rest = &rest[end + 1..];
            }
        } else {
            segments.push(rest.to_string());
        }
    }
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut cur = value;
    for seg in parents {
        let next = match seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(i) => i.parse::<usize>().ok().and_then(|i| cur.get_mut(i)),
            None => cur.get_mut(seg.as_str()),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(map) = cur.as_object_mut() {
        map.remove(last.as_str());
    }
}

fn walk(input: &Value, normalized: &Value, path: String, out: &mut Vec<String>) {
    match (input, normalized) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let child = format!("{path}.{k}");
                match b.get(k) {
                    Some(nv) => walk(v, nv, child, out),
                    None if v.is_null() => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, nv)) in a.iter().zip(b).enumerate() {
                walk(v, nv, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_reported_with_their_paths_and_pruned() {
        let input = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "bogus": 1},
                           "data": {"k": "v"}, "extra": {"x": 1}});
        let out = normalize("v1", "ConfigMap", &input).unwrap().unwrap();
        assert_eq!(
            unknown_fields(&input, &out),
            vec![".metadata.bogus", ".extra"]
        );
        assert!(out.get("extra").is_none());
    }

    #[test]
    fn remove_path_reaches_into_lists() {
        let mut v = json!({"spec": {"containers": [{"name": "a", "bogus": 1}], "x": 2}});
        remove_path(&mut v, ".spec.containers[0].bogus");
        remove_path(&mut v, ".spec.x");
        assert_eq!(v, json!({"spec": {"containers": [{"name": "a"}]}}));
    }

    #[test]
    fn wrong_types_are_decode_errors_naming_the_kind() {
        let input = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"},
                           "spec": {"replicas": "three"}});
        let err = normalize("apps/v1", "Deployment", &input)
            .unwrap()
            .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("Deployment in version \"v1\" cannot be handled as a Deployment"));
    }

    #[test]
    fn webhook_configurations_round_trip_and_keep_their_ca_bundle() {
        let input = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "v"},
            "webhooks": [{"name": "a.example.com", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                "clientConfig": {"url": "https://x/", "caBundle": "LS0tLS1CRUdJTg=="},
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
                "bogus": true}]});
        let out = normalize(
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
            &input,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            out["webhooks"][0]["clientConfig"]["caBundle"],
            "LS0tLS1CRUdJTg=="
        );
        assert_eq!(unknown_fields(&input, &out), vec![".webhooks[0].bogus"]);
        let mutating = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "m"}, "webhooks": [{"name": "m.example.com", "sideEffects": "None",
            "admissionReviewVersions": ["v1"], "clientConfig": {"service": {"namespace": "ns", "name": "s"}},
            "reinvocationPolicy": "IfNeeded"}]});
        let out = normalize(
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration",
            &mutating,
        )
        .unwrap()
        .unwrap();
        assert_eq!(out, mutating);
    }

    #[test]
    fn numeric_quantities_become_strings() {
        let input = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": 1}}}]}});
        let out = normalize("v1", "Pod", &input).unwrap().unwrap();
        assert_eq!(
            out["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
        assert!(unknown_fields(&input, &out).is_empty());
    }
}
