//! The EndpointSlice and Endpoints controllers against a real in-process API server.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Endpoints, Pod, PodSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kaji_testenv::eventually as wait_for;
use kaji_testenv::TestEnv;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

const NS: &str = "default";

struct Harness {
    env: TestEnv,
    controller: tokio::task::JoinHandle<Result<(), kaji_controllers::Error>>,
}

impl Harness {
    async fn start() -> Harness {
        let env = TestEnv::start().await;
        let controller = tokio::spawn(kaji_controllers::endpoints::run(env.client()));
        Harness { env, controller }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.env.client(), NS)
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.env.client(), NS)
    }

    fn slices(&self) -> Api<EndpointSlice> {
        Api::namespaced(self.env.client(), NS)
    }

    fn endpoints(&self) -> Api<Endpoints> {
        Api::namespaced(self.env.client(), NS)
    }

    /// Creates a pod labelled `app: <app>` whose container names port
    /// `http`, then gives it `ip` and a Ready condition through `/status`.
    async fn create_pod(&self, name: &str, app: &str, ip: &str, ready: bool) -> Pod {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NS.into()),
                labels: Some(labels(app)),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("nginx".into()),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        protocol: Some("TCP".into()),
                        ..ContainerPort::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: None,
        };
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
        self.set_status(name, ip, ready).await
    }

    async fn set_status(&self, name: &str, ip: &str, ready: bool) -> Pod {
        let patch = Patch::Merge(json!({"status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{
                "type": "Ready",
                "status": if ready { "True" } else { "False" },
                "lastTransitionTime": "2020-01-01T00:00:00Z",
            }],
        }}));
        self.pods()
            .patch_status(name, &PatchParams::default(), &patch)
            .await
            .unwrap()
    }

    async fn create_service(&self, name: &str, selector: Option<&str>) -> Service {
        let svc = Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(NS.into()),
                labels: Some([("team".to_string(), "blue".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: selector.map(labels),
                ports: Some(vec![
                    ServicePort {
                        name: Some("web".into()),
                        port: 80,
                        target_port: Some(IntOrString::String("http".into())),
                        protocol: Some("TCP".into()),
                        ..ServicePort::default()
                    },
                    ServicePort {
                        name: Some("metrics".into()),
                        port: 9090,
                        target_port: Some(IntOrString::Int(9100)),
                        protocol: Some("TCP".into()),
                        ..ServicePort::default()
                    },
                ]),
                ..ServiceSpec::default()
            }),
            status: None,
        };
        self.services()
            .create(&PostParams::default(), &svc)
            .await
            .unwrap()
    }

    async fn slices_of(&self, svc: &str) -> Vec<EndpointSlice> {
        let selector = format!("kubernetes.io/service-name={svc}");
        self.slices()
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
    }

    /// Waits until the service has exactly one slice whose endpoints, by
    /// pod name, satisfy `check`.
    async fn wait_slice(
        &self,
        svc: &str,
        what: &str,
        check: impl Fn(&[Endpoint]) -> bool,
    ) -> EndpointSlice {
        wait_for(what, || async {
            let mut slices = self.slices_of(svc).await;
            (slices.len() == 1 && check(&slices[0].endpoints)).then(|| slices.remove(0))
        })
        .await
    }

    /// Waits until the service's Endpoints object has these ready and
    /// not-ready IPs (sorted).
    async fn wait_endpoints(&self, svc: &str, ready: &[&str], not_ready: &[&str]) -> Endpoints {
        wait_for(&format!("Endpoints {ready:?} / {not_ready:?}"), || async {
            let ep = self.endpoints().get_opt(svc).await.unwrap()?;
            let ips =
                |pick: fn(
                    &k8s_openapi::api::core::v1::EndpointSubset,
                )
                    -> Option<&Vec<k8s_openapi::api::core::v1::EndpointAddress>>| {
                    let mut ips: Vec<String> = ep
                        .subsets
                        .iter()
                        .flatten()
                        .filter_map(pick)
                        .flatten()
                        .map(|a| a.ip.clone())
                        .collect();
                    ips.sort();
                    ips
                };
            (ips(|s| s.addresses.as_ref()) == ready
                && ips(|s| s.not_ready_addresses.as_ref()) == not_ready)
                .then_some(ep.clone())
        })
        .await
    }

    fn stop(self) {
        self.controller.abort();
    }
}

fn labels(app: &str) -> BTreeMap<String, String> {
    [("app".to_string(), app.to_string())].into()
}

/// `(pod name, ready)` of every endpoint, sorted by name.
fn states(endpoints: &[Endpoint]) -> Vec<(String, bool)> {
    let mut v: Vec<(String, bool)> = endpoints
        .iter()
        .map(|e| {
            (
                e.target_ref
                    .as_ref()
                    .and_then(|t| t.name.clone())
                    .unwrap_or_default(),
                e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false),
            )
        })
        .collect();
    v.sort();
    v
}

fn ready(names: &[&str]) -> Vec<(String, bool)> {
    names.iter().map(|n| (n.to_string(), true)).collect()
}

#[tokio::test]
async fn endpoints_service_with_two_ready_pods_gets_one_slice_and_an_endpoints_object() {
    let h = Harness::start().await;
    let a = h.create_pod("web-a", "web", "10.1.0.1", true).await;
    h.create_pod("web-b", "web", "10.1.0.2", true).await;
    h.create_pod("db-x", "db", "10.1.0.9", true).await;
    let svc = h.create_service("web", Some("web")).await;

    let slice = h
        .wait_slice("web", "a slice with web-a and web-b", |eps| {
            states(eps) == ready(&["web-a", "web-b"])
        })
        .await;
    assert!(slice.name_any().starts_with("web-"), "{}", slice.name_any());
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(slice.address_type, "IPv4");
    let labels = slice.labels();
    assert_eq!(labels["kubernetes.io/service-name"], "web");
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(labels["team"], "blue", "service labels are inherited");
    let owners = slice.owner_references();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "Service");
    assert_eq!(owners[0].api_version, "v1");
    assert_eq!(owners[0].name, "web");
    assert_eq!(owners[0].uid, svc.uid().unwrap());
    assert_eq!(owners[0].controller, Some(true));

    let mut ports: Vec<(String, i32, String)> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_default(),
            )
        })
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        [
            ("metrics".to_string(), 9100, "TCP".to_string()),
            ("web".to_string(), 8080, "TCP".to_string()),
        ],
        "numeric targetPort as is, named targetPort resolved from the pod"
    );

    let ep_a = slice
        .endpoints
        .iter()
        .find(|e| e.target_ref.as_ref().and_then(|t| t.name.as_deref()) == Some("web-a"))
        .unwrap();
    assert_eq!(ep_a.addresses, ["10.1.0.1"]);
    assert_eq!(ep_a.node_name.as_deref(), Some("node-1"));
    let conditions = ep_a.conditions.clone().unwrap();
    assert_eq!(
        (conditions.ready, conditions.serving, conditions.terminating),
        (Some(true), Some(true), Some(false))
    );
    let target = ep_a.target_ref.clone().unwrap();
    assert_eq!(target.kind.as_deref(), Some("Pod"));
    assert_eq!(target.namespace.as_deref(), Some(NS));
    assert_eq!(target.uid, a.uid());

    let endpoints = h
        .wait_endpoints("web", &["10.1.0.1", "10.1.0.2"], &[])
        .await;
    assert_eq!(
        endpoints.labels()["endpointslice.kubernetes.io/skip-mirror"],
        "true"
    );
    let subsets = endpoints.subsets.clone().unwrap();
    assert_eq!(subsets.len(), 1);
    let mut ports: Vec<i32> = subsets[0].ports.iter().flatten().map(|p| p.port).collect();
    ports.sort();
    assert_eq!(ports, [8080, 9100]);

    // Converged: nothing is rewritten any more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = h.slices_of("web").await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].resource_version(), slice.resource_version());
    let ep_again = h.endpoints().get("web").await.unwrap();
    assert_eq!(ep_again.resource_version(), endpoints.resource_version());
    h.stop();
}

#[tokio::test]
async fn endpoints_follow_readiness_new_pods_and_label_changes_in_place() {
    let h = Harness::start().await;
    h.create_pod("app-a", "app", "10.2.0.1", true).await;
    h.create_pod("app-b", "app", "10.2.0.2", true).await;
    h.create_service("app", Some("app")).await;
    let first = h
        .wait_slice("app", "both pods ready", |eps| {
            states(eps) == ready(&["app-a", "app-b"])
        })
        .await;

    // app-b stops being ready: its conditions flip, in the same slice.
    h.set_status("app-b", "10.2.0.2", false).await;
    let slice = h
        .wait_slice("app", "app-b not ready", |eps| {
            states(eps) == [("app-a".to_string(), true), ("app-b".to_string(), false)]
        })
        .await;
    assert_eq!(slice.name_any(), first.name_any(), "updated in place");
    let b = slice
        .endpoints
        .iter()
        .find(|e| e.addresses == ["10.2.0.2"])
        .unwrap();
    let c = b.conditions.clone().unwrap();
    assert_eq!(
        (c.ready, c.serving, c.terminating),
        (Some(false), Some(false), Some(false))
    );
    h.wait_endpoints("app", &["10.2.0.1"], &["10.2.0.2"]).await;

    // A new matching pod is added.
    h.create_pod("app-c", "app", "10.2.0.3", true).await;
    let slice = h
        .wait_slice("app", "app-c added", |eps| {
            states(eps)
                == [
                    ("app-a".to_string(), true),
                    ("app-b".to_string(), false),
                    ("app-c".to_string(), true),
                ]
        })
        .await;
    assert_eq!(slice.name_any(), first.name_any());
    h.wait_endpoints("app", &["10.2.0.1", "10.2.0.3"], &["10.2.0.2"])
        .await;

    // app-a's labels stop matching: it is removed.
    let patch = Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}}));
    h.pods()
        .patch("app-a", &PatchParams::default(), &patch)
        .await
        .unwrap();
    let slice = h
        .wait_slice("app", "app-a removed", |eps| {
            states(eps) == [("app-b".to_string(), false), ("app-c".to_string(), true)]
        })
        .await;
    assert_eq!(slice.name_any(), first.name_any());
    h.wait_endpoints("app", &["10.2.0.3"], &["10.2.0.2"]).await;
    h.stop();
}

#[tokio::test]
async fn endpoints_service_without_selector_gets_nothing() {
    let h = Harness::start().await;
    h.create_pod("lone-a", "lone", "10.3.0.1", true).await;
    h.create_service("manual", None).await;
    // A selecting service created afterwards proves the controller is running.
    h.create_service("lone", Some("lone")).await;
    h.wait_slice("lone", "the selecting service's slice", |eps| {
        states(eps) == ready(&["lone-a"])
    })
    .await;
    h.wait_endpoints("lone", &["10.3.0.1"], &[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(h.slices_of("manual").await.is_empty());
    assert!(h.endpoints().get_opt("manual").await.unwrap().is_none());
    h.stop();
}
