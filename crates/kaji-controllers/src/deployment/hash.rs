//! The `pod-template-hash`: a stable name for a pod template, as Kubernetes'
//! `ComputeHash` — FNV-1a (32 bits) over the template and the collision
//! count, rendered in decimal and mapped onto the safe-encoding alphabet —
//! and the template comparison that ignores that label. Nothing here does IO.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// The label (and selector key) that tells ReplicaSets of one Deployment apart.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// Kubernetes' alphabet without vowels and easily confused characters, so a
/// hash never spells a word.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, b| {
        (hash ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Maps each byte onto [`SAFE_ALPHABET`], as Kubernetes' `SafeEncodeString`.
fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

/// The hash of `template` (as the Deployment holds it), salted with the
/// Deployment's `status.collisionCount` when set.
///
/// # Guarantees
/// Equal templates and counts give equal hashes on every run: the template
/// is hashed as its JSON, whose field order is fixed by the typed struct.
pub fn compute(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(count) = collision_count {
        bytes.extend_from_slice(count.to_string().as_bytes());
    }
    safe_encode(&fnv1a32(&bytes).to_string())
}

/// Whether two templates are equal once the `pod-template-hash` label is
/// dropped from both, as Kubernetes' `EqualIgnoreHash`.
pub fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    strip(a) == strip(b)
}

fn strip(template: &PodTemplateSpec) -> serde_json::Value {
    let mut copy = template.clone();
    if let Some(labels) = copy.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    // Absent and empty label maps mean the same template.
    if let Some(meta) = copy.metadata.as_mut() {
        if meta.labels.as_ref().is_some_and(|l| l.is_empty()) {
            meta.labels = None;
        }
    }
    serde_json::to_value(copy).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some(image.into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    #[test]
    fn deployment_hash_is_stable_safe_and_template_sensitive() {
        let a = compute(&template("nginx:1"), None);
        assert_eq!(a, compute(&template("nginx:1"), None));
        assert_ne!(a, compute(&template("nginx:2"), None));
        assert_ne!(a, compute(&template("nginx:1"), Some(1)));
        assert!(a.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{a}");
        assert!(!a.is_empty() && a.len() <= 10, "{a}");
    }

    #[test]
    fn deployment_fnv_matches_the_reference_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(safe_encode("0129"), "456f");
    }

    #[test]
    fn deployment_templates_compare_without_the_hash_label() {
        let plain = template("nginx");
        let mut labeled = template("nginx");
        labeled
            .metadata
            .as_mut()
            .and_then(|m| m.labels.as_mut())
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), "abc".into());
        assert!(equal_ignoring_hash(&plain, &labeled));
        assert!(!equal_ignoring_hash(&plain, &template("redis")));
    }
}
