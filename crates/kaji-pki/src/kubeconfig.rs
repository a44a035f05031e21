//! The admin kubeconfig: one cluster, one user, one context, all named for kaji.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;

use crate::PkiError;

/// The name of the cluster and of the context in the kubeconfig.
pub(crate) const CLUSTER_NAME: &str = "kaji";

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct Kubeconfig<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    clusters: [Named<'a, Cluster<'a>>; 1],
    users: [Named<'a, User>; 1],
    contexts: [Named<'a, Context<'a>>; 1],
    current_context: &'a str,
}

#[derive(Serialize)]
struct Named<'a, T> {
    name: &'a str,
    #[serde(flatten)]
    item: T,
}

#[derive(Serialize)]
struct Cluster<'a> {
    cluster: ClusterFields<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterFields<'a> {
    server: &'a str,
    certificate_authority_data: String,
}

#[derive(Serialize)]
struct User {
    user: UserFields,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct UserFields {
    client_certificate_data: String,
    client_key_data: String,
}

#[derive(Serialize)]
struct Context<'a> {
    context: ContextFields<'a>,
}

#[derive(Serialize)]
struct ContextFields<'a> {
    cluster: &'a str,
    user: &'a str,
    namespace: &'a str,
}

/// Renders the admin kubeconfig as YAML. The admin token is deliberately
/// left out: the client certificate is the credential, and a token in the
/// file would be a second secret to rotate.
pub(crate) fn render(
    server_url: &str,
    ca_pem: &str,
    user: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<String, PkiError> {
    let config = Kubeconfig {
        api_version: "v1",
        kind: "Config",
        clusters: [Named {
            name: CLUSTER_NAME,
            item: Cluster {
                cluster: ClusterFields {
                    server: server_url,
                    certificate_authority_data: STANDARD.encode(ca_pem),
                },
            },
        }],
        users: [Named {
            name: user,
            item: User {
                user: UserFields {
                    client_certificate_data: STANDARD.encode(cert_pem),
                    client_key_data: STANDARD.encode(key_pem),
                },
            },
        }],
        contexts: [Named {
            name: CLUSTER_NAME,
            item: Context {
                context: ContextFields {
                    cluster: CLUSTER_NAME,
                    user,
                    namespace: "default",
                },
            },
        }],
        current_context: CLUSTER_NAME,
    };
    serde_yaml::to_string(&config).map_err(|source| PkiError::Kubeconfig { source })
}
