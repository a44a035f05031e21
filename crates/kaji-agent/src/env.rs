//! A container's environment as kubelet builds it: `envFrom` sources in
//! order, then `env` entries (each may refer to earlier ones as `$(VAR)`),
//! values read from ConfigMaps, Secrets and the downward API; and the
//! `$(VAR)` expansion of `command` and `args`.

use k8s_openapi::api::core::v1::Container;

use crate::downward::{DownwardError, PodContext};
use crate::objects::{ObjectCache, SourceKind};

/// Why a container's configuration cannot be built; shown as the waiting
/// reason `CreateContainerConfigError` with this message, as kubelet's.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A non-optional ConfigMap or Secret does not exist.
    #[error("{} \"{name}\" not found", kind.lower())]
    NotFound {
        /// ConfigMap or Secret.
        kind: SourceKind,
        /// Its name.
        name: String,
    },
    /// A non-optional key is missing from its ConfigMap or Secret.
    #[error("couldn't find key {key} in {} {namespace}/{name}", kind.title())]
    MissingKey {
        /// ConfigMap or Secret.
        kind: SourceKind,
        /// The object's namespace.
        namespace: String,
        /// The object's name.
        name: String,
        /// The key asked for.
        key: String,
    },
    /// A downward API reference is invalid.
    #[error(transparent)]
    Downward(#[from] DownwardError),
    /// Reading the object failed (not a 404).
    #[error("failed to read {} {namespace}/{name}: {source}", kind.lower())]
    Api {
        /// ConfigMap or Secret.
        kind: SourceKind,
        /// The object's namespace.
        namespace: String,
        /// The object's name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// An `env` entry has no value source kubelet understands.
    #[error("invalid environment variable {0}")]
    Invalid(String),
}

/// Reads one key of a ConfigMap or Secret; `Ok(None)` when the object or
/// key is missing and the reference is optional.
async fn lookup(
    objects: &ObjectCache,
    kind: SourceKind,
    namespace: &str,
    name: &str,
    key: Option<&str>,
    optional: bool,
) -> Result<Option<crate::objects::Data>, ConfigError> {
    let data = objects
        .get(kind, namespace, name)
        .await
        .map_err(|source| ConfigError::Api {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        })?;
    let Some(data) = data else {
        return if optional {
            Ok(None)
        } else {
            Err(ConfigError::NotFound {
                kind,
                name: name.to_string(),
            })
        };
    };
    if let Some(key) = key {
        if !data.contains_key(key) {
            return if optional {
                Ok(None)
            } else {
                Err(ConfigError::MissingKey {
                    kind,
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    key: key.to_string(),
                })
            };
        }
    }
    Ok(Some(data))
}

/// An ordered environment where a later definition replaces an earlier one
/// in place.
#[derive(Debug, Default, Clone)]
pub struct Environment {
    vars: Vec<(String, String)>,
}

impl Environment {
    fn set(&mut self, name: String, value: String) {
        match self.vars.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name, value)),
        }
    }

    /// The value of `name`, if defined.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Expands `$(VAR)` references in `input` against this environment.
    pub fn expand(&self, input: &str) -> String {
        expand(input, |name| self.get(name).map(str::to_string))
    }

    /// The variables, in definition order.
    pub fn into_vars(self) -> Vec<(String, String)> {
        self.vars
    }
}

/// Builds `container`'s environment.
///
/// # Errors
/// A missing non-optional source or key, an invalid downward API
/// reference, or an API failure.
pub async fn resolve(
    ctx: &PodContext<'_>,
    container: &Container,
    objects: &ObjectCache,
) -> Result<Environment, ConfigError> {
    let namespace = ctx.pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env = Environment::default();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = if let Some(r) = &source.config_map_ref {
            (
                SourceKind::ConfigMap,
                r.name.clone(),
                r.optional == Some(true),
            )
        } else if let Some(r) = &source.secret_ref {
            (SourceKind::Secret, r.name.clone(), r.optional == Some(true))
        } else {
            continue;
        };
        let Some(data) = lookup(objects, kind, namespace, &name, None, optional).await? else {
            continue;
        };
        for (key, value) in data.iter() {
            let var = format!("{prefix}{key}");
            // kubelet skips (and warns about) keys that are not valid names.
            if is_env_var_name(&var) {
                env.set(var, String::from_utf8_lossy(value).into_owned());
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => env.expand(var.value.as_deref().unwrap_or_default()),
            Some(from) => {
                if let Some(f) = &from.field_ref {
                    ctx.field(f)?
                } else if let Some(r) = &from.resource_field_ref {
                    ctx.resource(r, &container.name)?
                } else if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional == Some(true);
                    match lookup(
                        objects,
                        SourceKind::ConfigMap,
                        namespace,
                        &r.name,
                        Some(&r.key),
                        optional,
                    )
                    .await?
                    {
                        Some(data) => String::from_utf8_lossy(&data[&r.key]).into_owned(),
                        None => continue,
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional == Some(true);
                    match lookup(
                        objects,
                        SourceKind::Secret,
                        namespace,
                        &r.name,
                        Some(&r.key),
                        optional,
                    )
                    .await?
                    {
                        Some(data) => String::from_utf8_lossy(&data[&r.key]).into_owned(),
                        None => continue,
                    }
                } else {
                    return Err(ConfigError::Invalid(var.name.clone()));
                }
            }
        };
        env.set(var.name.clone(), value);
    }
    Ok(env)
}

/// Whether `name` may be an environment variable (Kubernetes' rule: printable
/// ASCII except `=`, not starting with a digit).
fn is_env_var_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_graphic() && c != '=')
}

/// Kubernetes' `$(VAR)` expansion: `$(NAME)` becomes the value `mapping`
/// gives, or stays as written when it gives none; `$$` is an escaped `$`;
/// any other `$` is kept.
pub fn expand(input: &str, mapping: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if after.is_empty() {
            // A trailing `$` is kept as is.
            out.push('$');
            rest = after;
            break;
        }
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match mapping(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    // An unclosed reference is kept as written.
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(name: &str) -> Option<String> {
        match name {
            "A" => Some("x".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_follows_the_kubernetes_rules() {
        let cases = [
            ("$(A)", "x"),
            ("a-$(A)-b", "a-x-b"),
            ("$(A)$(A)", "xx"),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$x"),
            ("$A", "$A"),
            ("$(A", "$(A"),
            ("trailing$", "trailing$"),
            ("$(EMPTY)z", "z"),
            ("$()", "$()"),
            ("no vars", "no vars"),
            ("ünï$(A)cødé", "ünïxcødé"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, map), want, "expanding {input:?}");
        }
    }

    #[test]
    fn later_definitions_replace_earlier_ones_in_place() {
        let mut env = Environment::default();
        env.set("A".into(), "1".into());
        env.set("B".into(), "2".into());
        env.set("A".into(), "3".into());
        assert_eq!(env.expand("$(A)$(B)"), "32");
        assert_eq!(
            env.into_vars(),
            vec![("A".into(), "3".into()), ("B".into(), "2".into())]
        );
    }

    #[test]
    fn env_var_names_are_checked_as_kubernetes_does() {
        assert!(is_env_var_name("FOO_bar.1-x"));
        assert!(!is_env_var_name("1FOO"));
        assert!(!is_env_var_name("A=B"));
        assert!(!is_env_var_name("A B"));
        assert!(!is_env_var_name(""));
    }
}
