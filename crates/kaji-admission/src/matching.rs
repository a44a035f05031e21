//! Which webhooks a request reaches: rules (operations, groups, versions,
//! resources and subresources, scope) and the object selector, as
//! Kubernetes' webhook rule matcher decides; the namespace selector's
//! inputs, which may need a read.

use kaji_registry::Attributes;
use serde_json::{Map, Value};

use crate::config::{Rule, Webhook};

/// Whether `attrs` is about a Namespace object itself.
pub fn is_namespace(attrs: &Attributes<'_>) -> bool {
    attrs.info.group.is_empty() && attrs.info.plural == "namespaces"
}

/// The namespace an AdmissionReview names: the object's namespace, or for
/// a Namespace object its own name (as Kubernetes sets it).
pub fn request_namespace<'a>(attrs: &Attributes<'a>) -> &'a str {
    match attrs.namespace {
        Some(ns) => ns,
        None if is_namespace(attrs) => attrs.name,
        None => "",
    }
}

/// Whether webhooks may ever intercept this resource: webhook
/// configurations themselves are exempt, so that a broken webhook can
/// always be removed.
pub fn exempt(attrs: &Attributes<'_>) -> bool {
    attrs.info.group == "admissionregistration.k8s.io"
        && matches!(
            attrs.info.plural,
            "mutatingwebhookconfigurations"
                | "validatingwebhookconfigurations"
                | "validatingadmissionpolicies"
                | "validatingadmissionpolicybindings"
                | "mutatingadmissionpolicies"
                | "mutatingadmissionpolicybindings"
        )
}

/// Whether any of the webhook's rules covers the request. With
/// `matchPolicy: Equivalent` a rule for another version of the same
/// resource would also match; kaji serves each resource at one version,
/// so the exact group/version/resource is what is compared.
pub fn rules_match(hook: &Webhook, attrs: &Attributes<'_>) -> bool {
    hook.rules.iter().any(|rule| rule_matches(rule, attrs))
}

fn rule_matches(rule: &Rule, attrs: &Attributes<'_>) -> bool {
    let listed = |list: &[String], value: &str| list.iter().any(|v| v == "*" || v == value);
    listed(&rule.operations, attrs.operation.as_str())
        && listed(&rule.api_groups, attrs.info.group)
        && listed(&rule.api_versions, attrs.info.version)
        && resource_matches(
            &rule.resources,
            attrs.info.plural,
            attrs.subresource.unwrap_or(""),
        )
        && scope_matches(&rule.scope, attrs)
}

/// `resources` entries are `resource[/subresource]`, where either part may
/// be `*`; `pods` alone does not cover `pods/status`, `pods/*` covers both.
fn resource_matches(resources: &[String], resource: &str, subresource: &str) -> bool {
    resources.iter().any(|entry| {
        let (res, sub) = entry.split_once('/').unwrap_or((entry, ""));
        (res == "*" || res == resource) && (sub == "*" || sub == subresource)
    })
}

fn scope_matches(scope: &str, attrs: &Attributes<'_>) -> bool {
    let namespaced_request = attrs.namespace.is_some_and(|ns| !ns.is_empty());
    match scope {
        "*" | "" => true,
        // A Namespace is cluster-scoped although the request names it as
        // its namespace.
        "Namespaced" => !is_namespace(attrs) && namespaced_request,
        "Cluster" => is_namespace(attrs) || !namespaced_request,
        _ => false,
    }
}

fn labels(obj: Option<&Value>) -> Option<Map<String, Value>> {
    let obj = obj?;
    Some(
        obj.pointer("/metadata/labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    )
}

/// `objectSelector`: matches when empty, or when the new or the old object's
/// labels satisfy it.
pub fn object_selector_matches(hook: &Webhook, new: Option<&Value>, old: Option<&Value>) -> bool {
    if hook.object_selector.is_empty() {
        return true;
    }
    [new, old]
        .into_iter()
        .filter_map(labels)
        .any(|l| hook.object_selector.matches(&l))
}

/// What the namespace selector is evaluated against.
#[derive(Debug, PartialEq)]
pub enum NamespaceLabels<'a> {
    /// Nothing to check: the selector is empty, or the object is
    /// cluster-scoped (and not a Namespace), which is never exempted.
    NotNeeded,
    /// A Namespace being created or updated: its own new labels.
    Own(Map<String, Value>),
    /// The labels of this namespace, as stored.
    Lookup(&'a str),
}

/// Where `hook`'s namespace selector gets its labels for `attrs`.
pub fn namespace_labels<'a>(
    hook: &Webhook,
    attrs: &Attributes<'a>,
    new: Option<&Value>,
) -> NamespaceLabels<'a> {
    if hook.namespace_selector.is_empty() {
        return NamespaceLabels::NotNeeded;
    }
    let ns = request_namespace(attrs);
    if ns.is_empty() {
        return NamespaceLabels::NotNeeded;
    }
    if is_namespace(attrs) && attrs.subresource.is_none() {
        if let Some(own) = labels(new) {
            return NamespaceLabels::Own(own);
        }
    }
    NamespaceLabels::Lookup(ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, Phase};
    use kaji_core::catalogue;
    use kaji_registry::Operation;
    use serde_json::json;

    fn hook(rules: Value, extra: Value) -> Webhook {
        let mut w =
            json!({"name": "w.example.com", "clientConfig": {"url": "https://x"}, "rules": rules});
        for (k, v) in extra.as_object().unwrap() {
            w[k] = v.clone();
        }
        parse(
            Phase::Validating,
            &json!({"metadata": {"name": "c"}, "webhooks": [w]}),
        )
        .remove(0)
    }

    fn attrs<'a>(
        plural: &str,
        group: &str,
        sub: Option<&'a str>,
        op: Operation,
        ns: Option<&'a str>,
        name: &'a str,
    ) -> Attributes<'a> {
        Attributes {
            info: catalogue::find(group, "v1", plural).unwrap(),
            subresource: sub,
            operation: op,
            namespace: ns,
            name,
            old_object: None,
            dry_run: false,
        }
    }

    #[test]
    fn rules_match_operations_groups_versions_and_resources_with_wildcards() {
        let cm = attrs(
            "configmaps",
            "",
            None,
            Operation::Create,
            Some("default"),
            "a",
        );
        let h = |r: Value| hook(json!([r]), json!({}));
        assert!(rules_match(
            &h(
                json!({"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]})
            ),
            &cm
        ));
        assert!(rules_match(
            &h(
                json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]})
            ),
            &cm
        ));
        assert!(!rules_match(
            &h(
                json!({"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]})
            ),
            &cm
        ));
        assert!(!rules_match(
            &h(
                json!({"operations": ["*"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["configmaps"]})
            ),
            &cm
        ));
        assert!(!rules_match(
            &h(
                json!({"operations": ["*"], "apiGroups": [""], "apiVersions": ["v2"], "resources": ["configmaps"]})
            ),
            &cm
        ));
        assert!(!rules_match(
            &h(
                json!({"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["secrets"]})
            ),
            &cm
        ));
        assert!(!rules_match(&hook(json!([]), json!({})), &cm));
    }

    #[test]
    fn subresources_need_their_own_rule_entries() {
        let status = attrs(
            "pods",
            "",
            Some("status"),
            Operation::Update,
            Some("default"),
            "p",
        );
        let main = attrs("pods", "", None, Operation::Update, Some("default"), "p");
        let with = |res: &str| {
            hook(
                json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": [res]}]),
                json!({}),
            )
        };
        assert!(!rules_match(&with("pods"), &status));
        assert!(!rules_match(&with("*"), &status));
        assert!(rules_match(&with("pods/status"), &status));
        assert!(rules_match(&with("*/status"), &status));
        assert!(rules_match(&with("pods/*"), &status));
        assert!(rules_match(&with("pods/*"), &main));
        assert!(rules_match(&with("*/*"), &status));
        assert!(!rules_match(&with("pods/status"), &main));
    }

    #[test]
    fn scope_separates_namespaced_from_cluster_objects_and_namespaces_are_cluster() {
        let rule = |scope: &str| {
            hook(
                json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": scope}]),
                json!({}),
            )
        };
        let cm = attrs(
            "configmaps",
            "",
            None,
            Operation::Create,
            Some("default"),
            "a",
        );
        let node = attrs("nodes", "", None, Operation::Create, None, "n");
        let ns = attrs("namespaces", "", None, Operation::Create, None, "team");
        assert!(rules_match(&rule("Namespaced"), &cm));
        assert!(!rules_match(&rule("Cluster"), &cm));
        assert!(rules_match(&rule("Cluster"), &node));
        assert!(!rules_match(&rule("Namespaced"), &node));
        assert!(rules_match(&rule("Cluster"), &ns));
        assert!(!rules_match(&rule("Namespaced"), &ns));
        assert_eq!(request_namespace(&ns), "team");
    }

    #[test]
    fn object_selector_matches_new_or_old_labels() {
        let h = hook(
            json!([]),
            json!({"objectSelector": {"matchLabels": {"watch": "me"}}}),
        );
        let yes = json!({"metadata": {"labels": {"watch": "me"}}});
        let no = json!({"metadata": {}});
        assert!(object_selector_matches(&h, Some(&yes), None));
        assert!(object_selector_matches(&h, Some(&no), Some(&yes)));
        assert!(object_selector_matches(&h, None, Some(&yes)));
        assert!(!object_selector_matches(&h, Some(&no), Some(&no)));
        let everything = hook(json!([]), json!({"objectSelector": {}}));
        assert!(object_selector_matches(&everything, Some(&no), None));
    }

    #[test]
    fn namespace_selector_reads_the_namespace_or_a_namespace_s_own_labels() {
        let h = hook(
            json!([]),
            json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}}),
        );
        let cm = attrs("configmaps", "", None, Operation::Create, Some("team"), "a");
        assert_eq!(
            namespace_labels(&h, &cm, None),
            NamespaceLabels::Lookup("team")
        );
        let node = attrs("nodes", "", None, Operation::Create, None, "n");
        assert_eq!(
            namespace_labels(&h, &node, None),
            NamespaceLabels::NotNeeded
        );
        let ns = attrs("namespaces", "", None, Operation::Create, None, "team");
        let obj = json!({"metadata": {"name": "team", "labels": {"env": "prod"}}});
        let NamespaceLabels::Own(own) = namespace_labels(&h, &ns, Some(&obj)) else {
            panic!("a namespace is judged by its own labels");
        };
        assert_eq!(own["env"], "prod");
        let empty = hook(json!([]), json!({"namespaceSelector": {}}));
        assert_eq!(
            namespace_labels(&empty, &cm, None),
            NamespaceLabels::NotNeeded
        );
    }

    #[test]
    fn webhook_configurations_are_exempt() {
        let v = attrs(
            "validatingwebhookconfigurations",
            "admissionregistration.k8s.io",
            None,
            Operation::Create,
            None,
            "x",
        );
        assert!(exempt(&v));
        let cm = attrs(
            "configmaps",
            "",
            None,
            Operation::Create,
            Some("default"),
            "a",
        );
        assert!(!exempt(&cm));
    }
}
