//! Discovery documents: legacy (`/api`, `/apis`, `APIResourceList`) and
//! aggregated (`apidiscovery.k8s.io/v2`), built from the served resources.

use kaji_core::catalogue::{ResourceInfo, VERBS};
use serde_json::{json, Value};

/// The content type of an aggregated discovery answer.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client asked for aggregated discovery (v2).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| {
        first.contains("g=apidiscovery.k8s.io")
            && first.contains("v=v2")
            && !first.contains("v2beta1")
    })
}

fn subresource_verbs(sub: &str) -> &'static [&'static str] {
    match sub {
        "binding" => &["create"],
        "finalize" => &["update"],
        "log" => &["get"],
        "exec" | "attach" | "portforward" => &["create", "get"],
        _ => &["get", "patch", "update"],
    }
}

fn subresource_kind(r: &ResourceInfo, sub: &str) -> (&'static str, &'static str, &'static str) {
    match sub {
        "scale" => ("autoscaling", "v1", "Scale"),
        "binding" => ("", "v1", "Binding"),
        "exec" => ("", "v1", "PodExecOptions"),
        "attach" => ("", "v1", "PodAttachOptions"),
        "portforward" => ("", "v1", "PodPortForwardOptions"),
        _ => (r.group, r.version, r.kind),
    }
}

/// `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0].clone()})
}

/// The named API groups among `served`, in order of first appearance, each
/// with its versions, preferred first (the order `served` lists them in).
pub fn groups(served: &[&'static ResourceInfo]) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in served.iter().filter(|r| !r.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// `/apis`.
pub fn api_group_list(served: &[&'static ResourceInfo]) -> Value {
    let groups: Vec<Value> = groups(served)
        .iter()
        .map(|(g, vs)| group_entry(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn api_group(served: &[&'static ResourceInfo], group: &str) -> Option<Value> {
    let (g, vs) = groups(served).into_iter().find(|(g, _)| *g == group)?;
    let mut entry = group_entry(g, &vs);
    entry["kind"] = "APIGroup".into();
    entry["apiVersion"] = "v1".into();
    Some(entry)
}

fn resources_of(
    served: &[&'static ResourceInfo],
    group: &str,
    version: &str,
) -> Vec<&'static ResourceInfo> {
    served
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .copied()
        .collect()
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn api_resource_list(
    served: &[&'static ResourceInfo],
    group: &str,
    version: &str,
) -> Option<Value> {
    let resources = resources_of(served, group, version);
    if resources.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for r in resources {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced(),
            "kind": r.kind,
            "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        out.push(entry);
        for sub in r.subresources {
            let (g, v, k) = subresource_kind(r, sub);
            let mut e = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced(),
                "kind": k,
                "verbs": subresource_verbs(sub),
            });
            if g != r.group || v != r.version {
                e["group"] = g.into();
                e["version"] = v.into();
            }
            out.push(e);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}),
    )
}

fn aggregated_version(served: &[&'static ResourceInfo], group: &str, version: &str) -> Value {
    let resources: Vec<Value> = resources_of(served, group, version)
        .into_iter()
        .map(|r| {
            let subs: Vec<Value> = r
                .subresources
                .iter()
                .map(|sub| {
                    let (g, v, k) = subresource_kind(r, sub);
                    json!({"subresource": sub, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": subresource_verbs(sub)})
                })
                .collect();
            let mut e = json!({
                "resource": r.plural,
                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                "scope": if r.namespaced() { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular,
                "verbs": VERBS,
            });
            if !r.short_names.is_empty() {
                e["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                e["categories"] = json!(r.categories);
            }
            if !subs.is_empty() {
                e["subresources"] = Value::Array(subs);
            }
            e
        })
        .collect();
    json!({"version": version, "resources": resources, "freshness": "Current"})
}

/// Aggregated discovery for `/api` (core) or `/apis` (all groups).
pub fn aggregated(served: &[&'static ResourceInfo], core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![
            json!({"metadata": {"creationTimestamp": null}, "versions": [aggregated_version(served, "", "v1")]}),
        ]
    } else {
        groups(served)
            .iter()
            .map(|(g, vs)| {
                let versions: Vec<Value> = vs
                    .iter()
                    .map(|v| aggregated_version(served, g, v))
                    .collect();
                json!({"metadata": {"name": g, "creationTimestamp": null}, "versions": versions})
            })
            .collect()
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin() -> Vec<&'static ResourceInfo> {
        kaji_core::catalogue::builtin().iter().collect()
    }

    #[test]
    fn core_resource_list_has_pods_and_their_subresources() {
        let list = api_resource_list(&builtin(), "", "v1").unwrap();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"pods")
                && names.contains(&"pods/status")
                && names.contains(&"pods/binding")
        );
    }

    #[test]
    fn scale_subresources_answer_with_autoscaling_scale() {
        let list = api_resource_list(&builtin(), "apps", "v1").unwrap();
        let scale = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["kind"], "Scale");
    }

    #[test]
    fn kubectl_accept_header_selects_aggregated_v2() {
        assert!(wants_aggregated("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"));
        assert!(!wants_aggregated("application/json, */*"));
        assert_eq!(
            aggregated(&builtin(), false)["items"][0]["metadata"]["name"],
            "apps"
        );
    }
}
