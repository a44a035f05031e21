//! Webhook configurations as the dispatcher uses them: each webhook of a
//! `MutatingWebhookConfiguration` or `ValidatingWebhookConfiguration`,
//! parsed once from its (defaulted, validated) JSON.

use kaji_core::selector::LabelSelector;
use serde_json::Value;

/// Which admission phase a webhook belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A `MutatingWebhookConfiguration` webhook.
    Mutating,
    /// A `ValidatingWebhookConfiguration` webhook.
    Validating,
}

/// Where a webhook is served (`clientConfig`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `clientConfig.url`.
    Url(String),
    /// `clientConfig.service`.
    Service {
        /// `service.namespace`.
        namespace: String,
        /// `service.name`.
        name: String,
        /// `service.port` (default 443).
        port: u16,
        /// `service.path` (default empty).
        path: String,
    },
}

/// One `rules[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `operations`: `CREATE`, `UPDATE`, `DELETE`, `CONNECT` or `*`.
    pub operations: Vec<String>,
    /// `apiGroups` (`*` for all).
    pub api_groups: Vec<String>,
    /// `apiVersions` (`*` for all).
    pub api_versions: Vec<String>,
    /// `resources`: `pods`, `pods/status`, `*`, `*/status`, `pods/*`, `*/*`.
    pub resources: Vec<String>,
    /// `scope`: `Cluster`, `Namespaced` or `*`.
    pub scope: String,
}

/// `failurePolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Refuse the write when the webhook cannot be called.
    Fail,
    /// Proceed when the webhook cannot be called.
    Ignore,
}

/// One webhook, with what it belongs to.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Mutating or validating.
    pub phase: Phase,
    /// The configuration's `metadata.name`.
    pub configuration: String,
    /// `webhooks[].name`.
    pub name: String,
    /// Where to send the AdmissionReview.
    pub target: Target,
    /// `clientConfig.caBundle`, decoded (PEM), if given.
    pub ca_bundle: Option<Vec<u8>>,
    /// `rules`.
    pub rules: Vec<Rule>,
    /// `failurePolicy` (default Fail).
    pub failure_policy: FailurePolicy,
    /// `namespaceSelector` (default everything).
    pub namespace_selector: LabelSelector,
    /// `objectSelector` (default everything).
    pub object_selector: LabelSelector,
    /// `sideEffects`: whether a dry-run request may be sent.
    pub dry_run_safe: bool,
    /// `timeoutSeconds` (default 10).
    pub timeout_seconds: u64,
    /// The AdmissionReview version to send: `v1`, or `v1beta1` if the
    /// webhook accepts only that.
    pub review_version: &'static str,
    /// `reinvocationPolicy: IfNeeded` (mutating only).
    pub reinvoke_if_needed: bool,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn selector(v: Option<&Value>) -> LabelSelector {
    match v {
        None | Some(Value::Null) => LabelSelector::everything(),
        // Validation rejects malformed selectors; one that slipped through
        // (an older stored object) matches nothing rather than everything.
        Some(sel) => LabelSelector::from_label_selector_json(sel)
            .unwrap_or_else(|_| LabelSelector::nothing()),
    }
}

/// The webhooks of one configuration object, in their declared order.
pub fn parse(phase: Phase, configuration: &Value) -> Vec<Webhook> {
    let config_name = configuration
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(list) = configuration.get("webhooks").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|w| parse_webhook(phase, &config_name, w))
        .collect()
}

fn parse_webhook(phase: Phase, configuration: &str, w: &Value) -> Webhook {
    let str_at = |p: &str| w.pointer(p).and_then(Value::as_str);
    let target = match str_at("/clientConfig/url") {
        Some(url) => Target::Url(url.to_string()),
        None => Target::Service {
            namespace: str_at("/clientConfig/service/namespace")
                .unwrap_or("")
                .to_string(),
            name: str_at("/clientConfig/service/name")
                .unwrap_or("")
                .to_string(),
            port: w
                .pointer("/clientConfig/service/port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(443),
            path: str_at("/clientConfig/service/path")
                .unwrap_or("")
                .to_string(),
        },
    };
    let ca_bundle = str_at("/clientConfig/caBundle")
        .and_then(|b| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        })
        .filter(|pem| !pem.is_empty());
    let rules = w
        .get("rules")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .map(|r| Rule {
                    operations: strings(r.get("operations")),
                    api_groups: strings(r.get("apiGroups")),
                    api_versions: strings(r.get("apiVersions")),
                    resources: strings(r.get("resources")),
                    scope: r
                        .get("scope")
                        .and_then(Value::as_str)
                        .unwrap_or("*")
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let versions = strings(w.get("admissionReviewVersions"));
    let review_version = if versions.is_empty() || versions.iter().any(|v| v == "v1") {
        "v1"
    } else {
        "v1beta1"
    };
    Webhook {
        phase,
        configuration: configuration.to_string(),
        name: str_at("/name").unwrap_or("").to_string(),
        target,
        ca_bundle,
        rules,
        failure_policy: match str_at("/failurePolicy") {
            Some("Ignore") => FailurePolicy::Ignore,
            _ => FailurePolicy::Fail,
        },
        namespace_selector: selector(w.get("namespaceSelector")),
        object_selector: selector(w.get("objectSelector")),
        dry_run_safe: matches!(str_at("/sideEffects"), Some("None" | "NoneOnDryRun")),
        timeout_seconds: w
            .get("timeoutSeconds")
            .and_then(Value::as_u64)
            .unwrap_or(10)
            .clamp(1, 30),
        review_version,
        reinvoke_if_needed: phase == Phase::Mutating
            && str_at("/reinvocationPolicy") == Some("IfNeeded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn webhooks_parse_with_kubernetes_defaults() {
        let config = json!({"metadata": {"name": "cfg"}, "webhooks": [
            {"name": "a.example.com", "clientConfig": {"service": {"namespace": "ns", "name": "svc"}},
             "sideEffects": "None", "admissionReviewVersions": ["v1beta1"]},
            {"name": "b.example.com", "clientConfig": {"url": "https://x/y"},
             "failurePolicy": "Ignore", "timeoutSeconds": 3, "sideEffects": "Some",
             "reinvocationPolicy": "IfNeeded",
             "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]},
        ]});
        let hooks = parse(Phase::Mutating, &config);
        assert_eq!(hooks.len(), 2);
        let (a, b) = (&hooks[0], &hooks[1]);
        assert_eq!(
            a.target,
            Target::Service {
                namespace: "ns".into(),
                name: "svc".into(),
                port: 443,
                path: String::new()
            }
        );
        assert_eq!(a.failure_policy, FailurePolicy::Fail);
        assert_eq!(a.timeout_seconds, 10);
        assert_eq!(a.review_version, "v1beta1");
        assert!(a.dry_run_safe && !a.reinvoke_if_needed);
        assert_eq!(b.target, Target::Url("https://x/y".into()));
        assert_eq!(b.failure_policy, FailurePolicy::Ignore);
        assert_eq!(b.timeout_seconds, 3);
        assert!(!b.dry_run_safe && b.reinvoke_if_needed);
        assert_eq!(b.rules[0].scope, "*");
        assert_eq!(b.configuration, "cfg");
    }
}
