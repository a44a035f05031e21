//! Parsing of resource paths: `/api/v1/namespaces/ns/pods/name/status` and friends.

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace from the path, when it has one.
    pub namespace: Option<String>,
    /// Plural resource name.
    pub resource: String,
    /// Object name, for item requests.
    pub name: Option<String>,
    /// Subresource (`status`, `scale`, `binding`, ...).
    pub subresource: Option<String>,
}

fn decode(segment: &str) -> String {
    percent_decode(segment)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks that every `%` in a request path starts a valid escape (two hex
/// digits), as Go's URL parser does for kube-apiserver.
///
/// # Errors
/// 400 for an invalid escape.
pub fn check_escapes(path: &str) -> Result<(), kaji_core::ApiError> {
    let bytes = path.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            let escape: String =
                String::from_utf8_lossy(&bytes[i..(i + 3).min(bytes.len())]).into();
            return Err(kaji_core::ApiError::bad_request(format!(
                "invalid URL escape {escape:?} in the request path"
            )));
        }
    }
    Ok(())
}

/// Parses a path under `/api/v1` or `/apis/<group>/<version>`; `None` if it
/// is not a resource path. One trailing slash is tolerated; empty segments
/// elsewhere (`namespaces//pods`, `//api`) address nothing.
pub fn parse(path: &str) -> Option<ResourcePath> {
    let inner = path.strip_prefix('/').unwrap_or(path);
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    let segs: Vec<&str> = inner.split('/').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return None;
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let mut p = ResourcePath {
        group: group.to_string(),
        version: version.to_string(),
        namespace: None,
        resource: String::new(),
        name: None,
        subresource: None,
    };
    match rest {
        [] => return None,
        ["namespaces", name, sub @ ("status" | "finalize")] => {
            p.resource = "namespaces".into();
            p.name = Some(decode(name));
            p.subresource = Some((*sub).to_string());
        }
        ["namespaces", ns, resource, tail @ ..] => {
            p.namespace = Some(decode(ns));
            p.resource = (*resource).to_string();
            match tail {
                [] => {}
                [name] => p.name = Some(decode(name)),
                [name, sub] => {
                    p.name = Some(decode(name));
                    p.subresource = Some((*sub).to_string());
                }
                _ => return None,
            }
        }
        [resource] => p.resource = (*resource).to_string(),
        [resource, name] => {
            p.resource = (*resource).to_string();
            p.name = Some(decode(name));
        }
        [resource, name, sub] => {
            p.resource = (*resource).to_string();
            p.name = Some(decode(name));
            p.subresource = Some((*sub).to_string());
        }
        _ => return None,
    }
    if p.resource.is_empty() || p.name.as_deref() == Some("") {
        return None;
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_items_and_subresources_parse() {
        let p = parse("/apis/apps/v1/namespaces/default/deployments/web/scale").unwrap();
        assert_eq!(
            (
                p.group.as_str(),
                p.namespace.as_deref(),
                p.resource.as_str()
            ),
            ("apps", Some("default"), "deployments")
        );
        assert_eq!(
            (p.name.as_deref(), p.subresource.as_deref()),
            (Some("web"), Some("scale"))
        );
    }

    #[test]
    fn namespace_objects_and_their_subresources_parse() {
        let p = parse("/api/v1/namespaces/dev").unwrap();
        assert_eq!(
            (p.resource.as_str(), p.name.as_deref(), p.namespace),
            ("namespaces", Some("dev"), None)
        );
        let p = parse("/api/v1/namespaces/dev/finalize").unwrap();
        assert_eq!(
            (p.name.as_deref(), p.subresource.as_deref()),
            (Some("dev"), Some("finalize"))
        );
        let p = parse("/api/v1/namespaces/dev/pods").unwrap();
        assert_eq!(
            (p.namespace.as_deref(), p.resource.as_str(), p.name),
            (Some("dev"), "pods", None)
        );
    }

    #[test]
    fn empty_segments_address_nothing_and_bad_escapes_are_400() {
        assert!(parse("/api/v1/namespaces//configmaps").is_none());
        assert!(parse("//api/v1/namespaces").is_none());
        assert!(parse("/api/v1/namespaces/default/configmaps//status").is_none());
        assert!(parse("/api/v1/namespaces/default/configmaps/").is_some());
        for bad in [
            "/api/v1/nodes/%zz",
            "/api/v1/nodes/a%4",
            "/api/v1/nodes/a%",
            "/api/%g0/x",
        ] {
            assert_eq!(check_escapes(bad).unwrap_err().code, 400, "{bad}");
        }
        assert!(check_escapes("/api/v1/nodes/n%3A1%2f").is_ok());
    }

    #[test]
    fn cluster_collections_and_escaped_names_parse() {
        let p = parse("/api/v1/nodes/n%3A1").unwrap();
        assert_eq!(p.name.as_deref(), Some("n:1"));
        assert!(parse("/api/v1").is_none());
        assert!(parse("/healthz").is_none());
    }
}
