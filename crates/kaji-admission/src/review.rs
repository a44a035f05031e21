//! The AdmissionReview exchange: the request kaji sends, and what a
//! webhook's response means (allowed, a denial, warnings, a JSON patch).

use base64::Engine;
use kaji_core::ApiError;
use kaji_registry::{Attributes, Operation};
use serde_json::{json, Value};

use crate::matching::request_namespace;

/// The user every request is attributed to until kaji passes the
/// authenticated user through admission.
fn user_info() -> Value {
    json!({"username": "system:admin", "groups": ["system:masters", "system:authenticated"]})
}

/// Builds the AdmissionReview for one call. `object` is the new object
/// (absent for delete); the old one comes from `attrs`.
pub fn request(attrs: &Attributes<'_>, object: Option<&Value>, uid: &str, version: &str) -> Value {
    let info = attrs.info;
    let kind = json!({"group": info.group, "version": info.version, "kind": info.kind});
    let resource = json!({"group": info.group, "version": info.version, "resource": info.plural});
    let options_kind = match attrs.operation {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        Operation::Delete => "DeleteOptions",
    };
    let mut options = json!({"apiVersion": "meta.k8s.io/v1", "kind": options_kind});
    if attrs.dry_run {
        options["dryRun"] = json!(["All"]);
    }
    let mut req = json!({
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "operation": attrs.operation.as_str(),
        "userInfo": user_info(),
        "object": object.cloned().unwrap_or(Value::Null),
        "oldObject": attrs.old_object.cloned().unwrap_or(Value::Null),
        "dryRun": attrs.dry_run,
        "options": options,
    });
    if let Some(sub) = attrs.subresource.filter(|s| !s.is_empty()) {
        req["subResource"] = json!(sub);
        req["requestSubResource"] = json!(sub);
    }
    let name = match attrs.name {
        "" => object
            .and_then(|o| o.pointer("/metadata/name"))
            .and_then(Value::as_str)
            .unwrap_or(""),
        name => name,
    };
    if !name.is_empty() {
        req["name"] = json!(name);
    }
    let ns = request_namespace(attrs);
    if !ns.is_empty() {
        req["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": format!("admission.k8s.io/{version}"),
        "kind": "AdmissionReview",
        "request": req,
    })
}

/// A webhook's verified answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// `response.allowed`.
    pub allowed: bool,
    /// `response.status`, for a denial.
    pub status: Value,
    /// `response.warnings`.
    pub warnings: Vec<String>,
    /// The decoded JSON patch (mutating webhooks).
    pub patch: Option<Value>,
}

/// Checks a response body as Kubernetes' `VerifyAdmissionResponse` does.
///
/// # Errors
/// Why the response is unusable, worded as Kubernetes words it; the caller
/// prefixes "received invalid webhook response: ".
pub fn verify(body: &[u8], uid: &str, version: &str, mutating: bool) -> Result<Answer, String> {
    let review: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let api_version = review
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = review.get("kind").and_then(Value::as_str).unwrap_or("");
    let expected = format!("admission.k8s.io/{version}");
    if api_version != expected || kind != "AdmissionReview" {
        return Err(format!(
            "expected webhook response of {expected}, Kind=AdmissionReview, got {api_version}, Kind={kind}"
        ));
    }
    let response = match review.get("response") {
        Some(r) if r.is_object() => r,
        _ => return Err("webhook response was absent".into()),
    };
    let got = response.get("uid").and_then(Value::as_str).unwrap_or("");
    if got != uid {
        return Err(format!("expected response.uid={uid:?}, got {got:?}"));
    }
    let patch = response
        .get("patch")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty());
    let patch_type = response.get("patchType").and_then(Value::as_str);
    let patch = match (mutating, patch, patch_type) {
        (_, None, None) => None,
        (false, Some(_), _) => return Err("validating webhooks may not return patches".into()),
        (false, None, Some(_)) => return Err("validating webhooks may not return patchType".into()),
        (true, Some(_), None) => {
            return Err("webhook returned response.patch but not response.patchType".into())
        }
        (true, None, Some(_)) => {
            return Err("webhook returned response.patchType but not response.patch".into())
        }
        (true, Some(_), Some(t)) if t != "JSONPatch" => {
            return Err(format!(
                "webhook returned invalid response.patchType of {t:?}"
            ))
        }
        (true, Some(p), Some(_)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(p)
                .map_err(|e| format!("undecodable response.patch: {e}"))?;
            Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| format!("undecodable response.patch: {e}"))?,
            )
        }
    };
    Ok(Answer {
        allowed: response
            .get("allowed")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        status: response.get("status").cloned().unwrap_or(Value::Null),
        warnings: response
            .get("warnings")
            .and_then(Value::as_array)
            .map(|w| {
                w.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        patch,
    })
}

/// The reasons a Status may carry, as the static names [`ApiError`] keeps.
const REASONS: &[&str] = &[
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Gone",
    "Invalid",
    "ServerTimeout",
    "Timeout",
    "TooManyRequests",
    "BadRequest",
    "MethodNotAllowed",
    "NotAcceptable",
    "RequestEntityTooLarge",
    "UnsupportedMediaType",
    "InternalError",
    "Expired",
    "ServiceUnavailable",
];

/// The error a denial becomes: the webhook's code (at least 400), its
/// reason, and `admission webhook "<name>" denied the request: <message>`.
pub fn denial(webhook: &str, status: &Value) -> ApiError {
    let text = |field: &str| status.get(field).and_then(Value::as_str).unwrap_or("");
    let denied_by = format!("admission webhook {webhook:?} denied the request");
    let message = match (text("message"), text("reason")) {
        ("", "") => format!("{denied_by} without explanation"),
        ("", reason) => format!("{denied_by}: {reason}"),
        (message, _) => format!("{denied_by}: {message}"),
    };
    let code = status
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400 && *c <= 599)
        .unwrap_or(400);
    let mut err = ApiError::from_upstream(code, message);
    err.code = code;
    err.reason = REASONS
        .iter()
        .find(|r| **r == text("reason"))
        .copied()
        .unwrap_or("");
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use kaji_core::catalogue;

    fn attrs<'a>(op: Operation, old: Option<&'a Value>, dry_run: bool) -> Attributes<'a> {
        Attributes {
            info: catalogue::find("", "v1", "configmaps").unwrap(),
            subresource: None,
            operation: op,
            namespace: Some("default"),
            name: "cm",
            old_object: old,
            dry_run,
        }
    }

    #[test]
    fn requests_carry_kind_resource_operation_objects_and_options() {
        let obj = json!({"metadata": {"name": "cm"}});
        let review = request(
            &attrs(Operation::Create, None, true),
            Some(&obj),
            "u-1",
            "v1",
        );
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        let r = &review["request"];
        assert_eq!(r["uid"], "u-1");
        assert_eq!(
            r["kind"],
            json!({"group": "", "version": "v1", "kind": "ConfigMap"})
        );
        assert_eq!(
            r["resource"],
            json!({"group": "", "version": "v1", "resource": "configmaps"})
        );
        assert_eq!(r["operation"], "CREATE");
        assert_eq!(r["namespace"], "default");
        assert_eq!(r["name"], "cm");
        assert_eq!(r["object"], obj);
        assert_eq!(r["oldObject"], Value::Null);
        assert_eq!(r["dryRun"], true);
        assert_eq!(
            r["options"],
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions", "dryRun": ["All"]})
        );
        assert_eq!(r["userInfo"]["username"], "system:admin");
        assert!(r.get("subResource").is_none());

        let review = request(
            &attrs(Operation::Delete, Some(&obj), false),
            None,
            "u-2",
            "v1beta1",
        );
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1beta1");
        assert_eq!(review["request"]["object"], Value::Null);
        assert_eq!(review["request"]["oldObject"], obj);
        assert_eq!(review["request"]["options"]["kind"], "DeleteOptions");
    }

    fn body(response: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})).unwrap()
    }

    #[test]
    fn responses_are_verified_like_kubernetes() {
        let ok = verify(
            &body(json!({"uid": "u", "allowed": true, "warnings": ["w"]})),
            "u",
            "v1",
            false,
        )
        .unwrap();
        assert!(ok.allowed);
        assert_eq!(ok.warnings, vec!["w"]);
        assert_eq!(
            verify(
                &body(json!({"uid": "other", "allowed": true})),
                "u",
                "v1",
                false
            )
            .unwrap_err(),
            "expected response.uid=\"u\", got \"other\""
        );
        let patch = base64::engine::general_purpose::STANDARD
            .encode(r#"[{"op":"add","path":"/data","value":{}}]"#);
        assert_eq!(
            verify(
                &body(json!({"uid": "u", "allowed": true, "patch": patch})),
                "u",
                "v1",
                false
            )
            .unwrap_err(),
            "validating webhooks may not return patches"
        );
        assert_eq!(
            verify(
                &body(json!({"uid": "u", "allowed": true, "patch": patch})),
                "u",
                "v1",
                true
            )
            .unwrap_err(),
            "webhook returned response.patch but not response.patchType"
        );
        let m = verify(
            &body(json!({"uid": "u", "allowed": true, "patch": patch, "patchType": "JSONPatch"})),
            "u",
            "v1",
            true,
        )
        .unwrap();
        assert_eq!(m.patch.unwrap()[0]["op"], "add");
        assert!(verify(b"{}", "u", "v1", false)
            .unwrap_err()
            .starts_with("expected webhook response of admission.k8s.io/v1"));
        assert!(verify(b"not json", "u", "v1", false).is_err());
    }

    #[test]
    fn denials_name_the_webhook_and_default_to_400() {
        let e = denial("deny.example.com", &json!({"message": "no labels here"}));
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "admission webhook \"deny.example.com\" denied the request: no labels here"
        );
        let e = denial(
            "d.example.com",
            &json!({"code": 403, "reason": "Forbidden"}),
        );
        assert_eq!((e.code, e.reason), (403, "Forbidden"));
        assert_eq!(
            e.message,
            "admission webhook \"d.example.com\" denied the request: Forbidden"
        );
        let e = denial("d.example.com", &Value::Null);
        assert_eq!(
            e.message,
            "admission webhook \"d.example.com\" denied the request without explanation"
        );
        assert_eq!(e.reason, "");
    }
}
