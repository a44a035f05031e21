//! What a `MarkdownView` should own, computed without IO: the ConfigMap of
//! markdowns, the viewer Deployment, the Service, and the status the
//! Deployment's state implies.
//!
//! Everything here is a pure function of the `MarkdownView` (and, for the
//! status, of the Deployment and the clock), so server-side applying the
//! result twice changes nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction, PodSpec,
    PodTemplateSpec, Probe, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::resource::{Condition, MarkdownView, MarkdownViewStatus};

/// The viewer program (Python 3, standard library only), run with
/// `python3 -c VIEWER_SCRIPT <dir> <port>`.
pub const VIEWER_SCRIPT: &str = include_str!("viewer.py");

/// Where the viewer container sees the ConfigMap of markdowns.
pub const MARKDOWNS_PATH: &str = "/srv/markdowns";

/// The port the viewer listens on in its pod.
pub const VIEWER_PORT: i32 = 3000;

/// The port of the Service in front of the viewers.
pub const SERVICE_PORT: i32 = 80;

/// The label every owned object carries, and what the controller's watches
/// of owned kinds select on.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "markdown-view");

/// The pod template annotation holding a hash of the markdowns, so that
/// changing them rolls the viewers out again.
pub const MARKDOWNS_HASH: &str = "view.kaji.dev/markdowns-hash";

/// Why the owned objects cannot be computed.
#[derive(Debug, thiserror::Error)]
pub enum DesiredError {
    /// The `MarkdownView` lacks a field the API server always sets (it was
    /// not read from the API).
    #[error("MarkdownView has no {0}")]
    MissingField(&'static str),
}

/// The objects one `MarkdownView` owns, as they should be applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Owned {
    /// `<name>-markdowns`: one key per markdown file.
    pub config_map: ConfigMap,
    /// `<name>-viewer`: the viewer pods.
    pub deployment: Deployment,
    /// `<name>-viewer`: port 80 in front of the viewers' port 3000.
    pub service: Service,
}

/// The ConfigMap's name for the `MarkdownView` named `name`.
pub fn config_map_name(name: &str) -> String {
    format!("{name}-markdowns")
}

/// The Deployment's and the Service's name for the `MarkdownView` named `name`.
pub fn viewer_name(name: &str) -> String {
    format!("{name}-viewer")
}

/// The labels that select the viewer pods of the `MarkdownView` named `name`.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "markdown-view".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), name.to_string()),
    ])
}

/// `selector_labels` as a label selector string (`k=v,k=v`).
pub fn selector_string(name: &str) -> String {
    selector_labels(name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn labels(name: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(name);
    labels.insert(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string());
    labels
}

/// The desired owned objects of `mv`.
///
/// # Errors
/// `mv` has no namespace or no uid (it was not read from the API server).
pub fn owned(mv: &MarkdownView) -> Result<Owned, DesiredError> {
    let name = mv.name_any();
    let namespace = mv
        .namespace()
        .ok_or(DesiredError::MissingField("metadata.namespace"))?;
    let owner = OwnerReference {
        // Like controller-runtime's SetControllerReference: foreground
        // deletion of the view waits for what it owns.
        block_owner_deletion: Some(true),
        ..mv.controller_owner_ref(&())
            .ok_or(DesiredError::MissingField("metadata.uid"))?
    };
    let meta = |object_name: String| ObjectMeta {
        name: Some(object_name),
        namespace: Some(namespace.clone()),
        labels: Some(labels(&name)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    };
    Ok(Owned {
        config_map: ConfigMap {
            metadata: meta(config_map_name(&name)),
            data: Some(mv.spec.markdowns.clone()),
            ..ConfigMap::default()
        },
        deployment: deployment(mv, meta(viewer_name(&name))),
        service: service(&name, meta(viewer_name(&name))),
    })
}

fn deployment(mv: &MarkdownView, metadata: ObjectMeta) -> Deployment {
    let name = mv.name_any();
    let container = Container {
        name: "viewer".to_string(),
        image: Some(mv.spec.viewer_image.clone()),
        command: Some(vec![
            "python3".to_string(),
            "-u".to_string(),
            "-c".to_string(),
            VIEWER_SCRIPT.to_string(),
        ]),
        args: Some(vec![MARKDOWNS_PATH.to_string(), VIEWER_PORT.to_string()]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_string()),
            container_port: VIEWER_PORT,
            ..ContainerPort::default()
        }]),
        volume_mounts: Some(vec![VolumeMount {
            name: "markdowns".to_string(),
            mount_path: MARKDOWNS_PATH.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".to_string()),
                port: IntOrString::Int(VIEWER_PORT),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(1),
            ..Probe::default()
        }),
        ..Container::default()
    };
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(mv.spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&name)),
                    annotations: Some(BTreeMap::from([(
                        MARKDOWNS_HASH.to_string(),
                        markdowns_hash(&mv.spec.markdowns),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "markdowns".to_string(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: config_map_name(&name),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn service(name: &str, metadata: ObjectMeta) -> Service {
    Service {
        metadata,
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(name)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_string()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::Int(VIEWER_PORT)),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// A hash of the markdowns that is the same on every machine and every
/// build (64-bit FNV-1a over lengths and bytes), as 16 hex digits.
pub fn markdowns_hash(markdowns: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (name, text) in markdowns {
        for part in [name.as_bytes(), text.as_bytes()] {
            feed(&(part.len() as u64).to_le_bytes());
            feed(part);
        }
    }
    format!("{hash:016x}")
}

/// Whether `owner` is the controller reference of `mv`.
pub fn is_controlled_by(owner: &OwnerReference, mv: &MarkdownView) -> bool {
    owner.controller == Some(true) && Some(&owner.uid) == mv.meta().uid.as_ref()
}

/// The status `mv` should have given its Deployment's state, keeping each
/// condition's `lastTransitionTime` unless its status changed (`now` is
/// RFC 3339).
pub fn status(mv: &MarkdownView, deployment: &Deployment, now: &str) -> MarkdownViewStatus {
    let available = deployment
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    let wanted = mv.spec.replicas;
    let (state, reason, message) = if available >= wanted {
        (
            "True",
            "AllReplicasAvailable",
            format!("{available} of {wanted} viewer pods available"),
        )
    } else {
        (
            "False",
            "ReplicasUnavailable",
            format!("{available} of {wanted} viewer pods available"),
        )
    };
    let previous = mv
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Available"));
    let last_transition_time = match previous {
        Some(c) if c.status == state => c.last_transition_time.clone(),
        _ => now.to_string(),
    };
    MarkdownViewStatus {
        available_replicas: available,
        selector: Some(selector_string(&mv.name_any())),
        observed_generation: mv.meta().generation,
        conditions: vec![Condition {
            type_: "Available".to_string(),
            status: state.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time,
            observed_generation: mv.meta().generation,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::MarkdownViewSpec;
    use k8s_openapi::api::apps::v1::DeploymentStatus;

    fn view(markdowns: &[(&str, &str)], replicas: i32) -> MarkdownView {
        let mut mv = MarkdownView::new(
            "docs",
            MarkdownViewSpec {
                markdowns: markdowns
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                replicas,
                viewer_image: "python:3".to_string(),
            },
        );
        mv.metadata.namespace = Some("team".to_string());
        mv.metadata.uid = Some("uid-1".to_string());
        mv.metadata.generation = Some(2);
        mv
    }

    fn with_available(n: i32) -> Deployment {
        Deployment {
            status: Some(DeploymentStatus {
                available_replicas: Some(n),
                ..DeploymentStatus::default()
            }),
            ..Deployment::default()
        }
    }

    #[test]
    fn owned_objects_should_be_named_after_the_view_and_controlled_by_it() {
        let mv = view(&[("index.md", "# Hi")], 2);
        let owned = owned(&mv).unwrap();
        let metas = [
            (&owned.config_map.metadata, "docs-markdowns"),
            (&owned.deployment.metadata, "docs-viewer"),
            (&owned.service.metadata, "docs-viewer"),
        ];
        for (meta, name) in metas {
            assert_eq!(meta.name.as_deref(), Some(name));
            assert_eq!(meta.namespace.as_deref(), Some("team"));
            let owners = meta.owner_references.as_ref().unwrap();
            assert_eq!(owners.len(), 1);
            assert!(is_controlled_by(&owners[0], &mv), "{owners:?}");
            assert_eq!(owners[0].kind, "MarkdownView");
            assert_eq!(owners[0].api_version, "view.kaji.dev/v1");
            assert_eq!(owners[0].block_owner_deletion, Some(true));
            assert_eq!(
                meta.labels
                    .as_ref()
                    .unwrap()
                    .get(MANAGED_BY.0)
                    .map(String::as_str),
                Some(MANAGED_BY.1)
            );
        }
    }

    #[test]
    fn the_config_map_should_hold_exactly_the_markdowns() {
        let mv = view(&[("index.md", "# Hi"), ("faq.md", "- q")], 1);
        let data = owned(&mv).unwrap().config_map.data.unwrap();
        assert_eq!(data, mv.spec.markdowns);
    }

    #[test]
    fn the_deployment_should_run_the_viewer_over_the_mounted_config_map() {
        let mv = view(&[("index.md", "# Hi")], 3);
        let deployment = owned(&mv).unwrap().deployment;
        let spec = deployment.spec.unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(
            spec.selector.match_labels.as_ref(),
            Some(&selector_labels("docs"))
        );
        let template_labels = spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone()
            .unwrap();
        for (k, v) in selector_labels("docs") {
            assert_eq!(
                template_labels.get(&k),
                Some(&v),
                "the selector matches the pods"
            );
        }
        let pod = spec.template.spec.unwrap();
        let volume = &pod.volumes.as_ref().unwrap()[0];
        assert_eq!(volume.config_map.as_ref().unwrap().name, "docs-markdowns");
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("python:3"));
        assert_eq!(container.command.as_ref().unwrap()[0], "python3");
        assert_eq!(container.command.as_ref().unwrap()[3], VIEWER_SCRIPT);
        assert_eq!(
            container.args.as_ref().unwrap(),
            &[MARKDOWNS_PATH.to_string(), "3000".to_string()]
        );
        let mount = &container.volume_mounts.as_ref().unwrap()[0];
        assert_eq!(
            (mount.name.as_str(), mount.mount_path.as_str()),
            (volume.name.as_str(), MARKDOWNS_PATH)
        );
        assert_eq!(
            container.ports.as_ref().unwrap()[0].container_port,
            VIEWER_PORT
        );
    }

    #[test]
    fn the_service_should_send_port_80_to_the_viewers() {
        let mv = view(&[("index.md", "# Hi")], 1);
        let spec = owned(&mv).unwrap().service.spec.unwrap();
        assert_eq!(spec.selector, Some(selector_labels("docs")));
        let port = &spec.ports.unwrap()[0];
        assert_eq!(port.port, SERVICE_PORT);
        assert_eq!(port.target_port, Some(IntOrString::Int(VIEWER_PORT)));
    }

    #[test]
    fn building_twice_should_give_identical_objects() {
        let mv = view(&[("b.md", "B"), ("a.md", "A")], 2);
        let first = serde_json::to_string(&owned(&mv).unwrap().deployment).unwrap();
        let second = serde_json::to_string(&owned(&mv).unwrap().deployment).unwrap();
        assert_eq!(first, second);
        assert_eq!(owned(&mv).unwrap(), owned(&mv).unwrap());
    }

    #[test]
    fn the_applied_objects_should_carry_their_api_version_and_kind() {
        let owned = owned(&view(&[("a.md", "A")], 1)).unwrap();
        let cm = serde_json::to_value(&owned.config_map).unwrap();
        let deploy = serde_json::to_value(&owned.deployment).unwrap();
        let svc = serde_json::to_value(&owned.service).unwrap();
        assert_eq!(
            (&cm["apiVersion"], &cm["kind"]),
            (&"v1".into(), &"ConfigMap".into())
        );
        assert_eq!(
            (&deploy["apiVersion"], &deploy["kind"]),
            (&"apps/v1".into(), &"Deployment".into())
        );
        assert_eq!(
            (&svc["apiVersion"], &svc["kind"]),
            (&"v1".into(), &"Service".into())
        );
        assert!(deploy.get("status").is_none(), "apply never claims status");
    }

    #[test]
    fn changing_the_markdowns_should_change_the_pod_template_hash() {
        let hash = |mv: &MarkdownView| {
            owned(mv)
                .unwrap()
                .deployment
                .spec
                .unwrap()
                .template
                .metadata
                .unwrap()
                .annotations
                .unwrap()[MARKDOWNS_HASH]
                .clone()
        };
        let a = hash(&view(&[("a.md", "A")], 1));
        assert_eq!(
            a,
            hash(&view(&[("a.md", "A")], 3)),
            "replicas do not matter"
        );
        assert_ne!(a, hash(&view(&[("a.md", "B")], 1)));
        assert_ne!(a, hash(&view(&[("b.md", "A")], 1)));
        assert_ne!(
            hash(&view(&[("a", "bc")], 1)),
            hash(&view(&[("ab", "c")], 1)),
            "names and texts are delimited"
        );
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn a_view_never_read_from_the_api_should_be_refused() {
        let mut mv = view(&[("a.md", "A")], 1);
        mv.metadata.uid = None;
        assert!(matches!(
            owned(&mv),
            Err(DesiredError::MissingField("metadata.uid"))
        ));
        let mut mv = view(&[("a.md", "A")], 1);
        mv.metadata.namespace = None;
        assert!(matches!(
            owned(&mv),
            Err(DesiredError::MissingField("metadata.namespace"))
        ));
    }

    #[test]
    fn status_should_be_available_once_every_wanted_pod_is() {
        let mv = view(&[("a.md", "A")], 2);
        let s = status(&mv, &with_available(1), "t1");
        assert_eq!(s.available_replicas, 1);
        assert_eq!(s.conditions[0].status, "False");
        assert_eq!(s.conditions[0].reason, "ReplicasUnavailable");
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(
            s.selector.as_deref(),
            Some("app.kubernetes.io/instance=docs,app.kubernetes.io/name=markdown-view")
        );
        let s = status(&mv, &with_available(2), "t1");
        assert_eq!(s.conditions[0].status, "True");
        assert_eq!(
            status(&mv, &Deployment::default(), "t").available_replicas,
            0
        );
    }

    #[test]
    fn status_should_keep_the_transition_time_until_the_condition_flips() {
        let mut mv = view(&[("a.md", "A")], 1);
        mv.status = Some(status(&mv, &with_available(1), "t1"));
        let again = status(&mv, &with_available(1), "t2");
        assert_eq!(
            Some(&again),
            mv.status.as_ref(),
            "nothing changed, nothing to write"
        );
        let flipped = status(&mv, &with_available(0), "t3");
        assert_eq!(flipped.conditions[0].last_transition_time, "t3");
    }
}
