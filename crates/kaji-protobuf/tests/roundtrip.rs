//! Checks `decode` and `encode` against an independent implementation: prost with the
//! `k8s-pb` structs for the wire, `k8s-openapi` for the JSON.

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::core::v1 as core;
use k8s_pb::api::apps::v1 as pb_apps;
use k8s_pb::api::core::v1 as pb_core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as pb_meta;
use prost::Message as _;
use serde_json::{json, Value};

/// Wraps a prost message in the `k8s\0` + `runtime.Unknown` envelope, as Go writes it.
fn envelope(api_version: &str, kind: &str, msg: &impl prost::Message) -> Vec<u8> {
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some(api_version.to_string()),
            kind: Some(kind.to_string()),
        }),
        raw: Some(msg.encode_to_vec()),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

/// Opens the envelope of `body` with prost and decodes its `raw` as `M`.
fn open<M: prost::Message + Default>(body: &[u8]) -> (String, String, M) {
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(
        body.strip_prefix(b"k8s\0").expect("magic"),
    )
    .expect("envelope");
    let tm = unknown.type_meta.expect("typeMeta");
    let msg = M::decode(unknown.raw.expect("raw").as_slice()).expect("message");
    (
        tm.api_version.expect("apiVersion"),
        tm.kind.expect("kind"),
        msg,
    )
}

/// JSON → `encode` → prost → prost encode → `decode` → JSON, which must equal the input.
/// Returns the prost struct for field checks.
fn round_trip<K, M>(original: &K) -> M
where
    K: serde::Serialize
        + serde::de::DeserializeOwned
        + PartialEq
        + std::fmt::Debug
        + k8s_openapi::Resource,
    M: prost::Message + Default,
{
    let json = serde_json::to_value(original).expect("serialize");
    let body = kaji_protobuf::encode(&json).expect("encode");
    let (api_version, kind, msg): (_, _, M) = open(&body);
    assert_eq!(
        (api_version.as_str(), kind.as_str()),
        (K::API_VERSION, K::KIND)
    );
    let decoded = kaji_protobuf::decode(&envelope(K::API_VERSION, K::KIND, &msg)).expect("decode");
    let back: K = serde_json::from_value(decoded.clone()).expect("deserialize decoded JSON");
    assert_eq!(&back, original, "decoded JSON: {decoded:#}");
    // Our own decode of our own encode agrees too.
    assert_eq!(kaji_protobuf::decode(&body).expect("decode own"), decoded);
    msg
}

fn full_deployment() -> apps::Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "6f1c6a3e-0000-4000-8000-000000000001",
            "resourceVersion": "42",
            "generation": 3,
            "creationTimestamp": "2024-05-06T07:08:09Z",
            "labels": {"app": "web", "tier": "frontend"},
            "annotations": {"deployment.kubernetes.io/revision": "2"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Foo", "name": "owner", "uid": "u-1", "controller": true}],
            "finalizers": ["example.com/keep"],
            "managedFields": [{
                "manager": "kubectl",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "time": "2024-05-06T07:08:09Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:replicas": {}}}
            }]
        },
        "spec": {
            "replicas": 0,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend", "edge"]}]
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "automountServiceAccountToken": false,
                    "terminationGracePeriodSeconds": 30,
                    "hostIPC": true,
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "securityContext": {"runAsUser": 1000, "runAsNonRoot": true, "fsGroup": 2000},
                    "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60}],
                    "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "true"]}],
                    "containers": [{
                        "name": "app",
                        "image": "nginx:1.27",
                        "args": ["--port", "8080"],
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "env": [
                            {"name": "PLAIN", "value": "x"},
                            {"name": "FROM_FIELD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "password", "optional": true}}},
                            {"name": "FROM_RESOURCE", "valueFrom": {"resourceFieldRef": {"containerName": "app", "resource": "limits.memory", "divisor": "1Mi"}}}
                        ],
                        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                        "resources": {
                            "limits": {"cpu": "500m", "memory": "256Mi"},
                            "requests": {"cpu": "100m", "memory": "64Mi", "ephemeral-storage": "1Gi"}
                        },
                        "livenessProbe": {
                            "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP", "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                            "initialDelaySeconds": 5,
                            "periodSeconds": 10,
                            "failureThreshold": 3
                        },
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "timeoutSeconds": 2},
                        "startupProbe": {"exec": {"command": ["cat", "/tmp/ready"]}},
                        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                        "volumeMounts": [
                            {"name": "data", "mountPath": "/data"},
                            {"name": "config", "mountPath": "/etc/config", "readOnly": true, "subPath": "app.conf"}
                        ],
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
                        "imagePullPolicy": "IfNotPresent"
                    }],
                    "volumes": [
                        {"name": "data", "emptyDir": {"medium": "Memory", "sizeLimit": "128Mi"}},
                        {"name": "config", "configMap": {"name": "cm", "defaultMode": 420, "items": [{"key": "app.conf", "path": "app.conf"}]}},
                        {"name": "secret", "secret": {"secretName": "s", "optional": false}},
                        {"name": "claim", "persistentVolumeClaim": {"claimName": "pvc-1", "readOnly": true}},
                        {"name": "projected", "projected": {"sources": [
                            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600, "audience": "api"}},
                            {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
                        ]}}
                    ],
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}}}
                    }]}},
                    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}],
                    "imagePullSecrets": [{"name": "regcred"}],
                    "dnsConfig": {"nameservers": ["1.1.1.1"], "options": [{"name": "ndots", "value": "2"}]}
                }
            }
        },
        "status": {
            "observedGeneration": 3,
            "replicas": 2,
            "readyReplicas": 1,
            "conditions": [{
                "type": "Available",
                "status": "True",
                "lastUpdateTime": "2024-05-06T07:08:10Z",
                "lastTransitionTime": "2024-05-06T07:08:10Z",
                "reason": "MinimumReplicasAvailable",
                "message": "ok"
            }]
        }
    }))
    .expect("valid Deployment")
}

#[test]
fn a_full_deployment_should_round_trip_through_prost() {
    let dep: pb_apps::Deployment = round_trip(&full_deployment());

    // Check the wire against prost's field-by-field view, not just our own consistency.
    let spec = dep.spec.expect("spec");
    assert_eq!(spec.replicas, Some(0));
    let surge = spec
        .strategy
        .unwrap()
        .rolling_update
        .unwrap()
        .max_surge
        .unwrap();
    assert_eq!(
        (surge.r#type, surge.str_val.as_deref()),
        (Some(1), Some("25%"))
    );
    let meta = dep.metadata.expect("metadata");
    let created = meta.creation_timestamp.expect("creationTimestamp");
    assert_eq!(
        (created.seconds, created.nanos),
        (Some(1_714_979_289), Some(0))
    );
    let fields = meta.managed_fields[0]
        .fields_v1
        .as_ref()
        .unwrap()
        .raw
        .clone()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&fields).unwrap(),
        json!({"f:spec": {"f:replicas": {}}})
    );
    let pod = spec.template.unwrap().spec.unwrap();
    assert_eq!(pod.host_ipc, Some(true));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let c = &pod.containers[0];
    assert_eq!(
        c.resources.as_ref().unwrap().limits["cpu"]
            .string
            .as_deref(),
        Some("500m")
    );
    let http = c
        .liveness_probe
        .as_ref()
        .unwrap()
        .handler
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(http.port.as_ref().unwrap().str_val.as_deref(), Some("http"));
    let tcp = c
        .readiness_probe
        .as_ref()
        .unwrap()
        .handler
        .as_ref()
        .unwrap()
        .tcp_socket
        .as_ref()
        .unwrap();
    let port = tcp.port.as_ref().unwrap();
    assert_eq!((port.r#type, port.int_val), (Some(0), Some(8080)));
    let volume_source = pod.volumes[1].volume_source.as_ref().unwrap();
    assert_eq!(
        volume_source.config_map.as_ref().unwrap().default_mode,
        Some(420)
    );
}

#[test]
fn a_secret_with_binary_data_should_round_trip() {
    let secret: core::Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "sh.helm.release.v1.demo.v1", "namespace": "default", "labels": {"owner": "helm"}},
        "type": "helm.sh/release.v1",
        "immutable": true,
        "data": {"release": "H4sIAAAAAAAA/wAAAP//AQAA//8AAAAAAAAAAA==", "empty": "", "bin": "AAH/gA=="}
    }))
    .unwrap();
    let pb: pb_core::Secret = round_trip(&secret);
    assert_eq!(pb.data["bin"], vec![0, 1, 255, 128]);
    assert_eq!(pb.r#type.as_deref(), Some("helm.sh/release.v1"));
}

#[test]
fn a_service_with_intstr_target_ports_should_round_trip() {
    let svc: core::Service = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "web"},
            "clusterIP": "10.0.0.10",
            "clusterIPs": ["10.0.0.10"],
            "ipFamilies": ["IPv4"],
            "externalIPs": ["192.0.2.1"],
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP", "nodePort": 30080},
                {"name": "metrics", "port": 9090, "targetPort": 9091, "protocol": "TCP"}
            ]
        },
        "status": {"loadBalancer": {}}
    }))
    .unwrap();
    let pb: pb_core::Service = round_trip(&svc);
    let spec = pb.spec.unwrap();
    assert_eq!(spec.external_ips, vec!["192.0.2.1".to_string()]);
    let target = spec.ports[1].target_port.as_ref().unwrap();
    assert_eq!((target.r#type, target.int_val), (Some(0), Some(9091)));
}

#[test]
fn a_configmap_and_a_namespace_should_round_trip() {
    let cm: core::ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "default"},
        "data": {"a": "b", "empty": ""},
        "binaryData": {"blob": "3q2+7w=="}
    }))
    .unwrap();
    let pb: pb_core::ConfigMap = round_trip(&cm);
    assert_eq!(pb.data["a"], "b");
    let ns: core::Namespace = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    }))
    .unwrap();
    let _: pb_core::Namespace = round_trip(&ns);
}

#[test]
fn a_body_written_by_go_conventions_should_decode_to_kubernetes_json() {
    // What kubectl sends for `create configmap c --from-literal=a=b`: Go writes every
    // non-pointer string (empty ones too) and a zero creationTimestamp as an empty message.
    let meta = pb_meta::ObjectMeta {
        name: Some("c".into()),
        generate_name: Some(String::new()),
        namespace: Some(String::new()),
        self_link: Some(String::new()),
        uid: Some(String::new()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(pb_meta::Time::default()),
        ..Default::default()
    };
    let cm = pb_core::ConfigMap {
        metadata: Some(meta),
        data: [("a".to_string(), "b".to_string())].into(),
        ..Default::default()
    };
    let decoded = kaji_protobuf::decode(&envelope("v1", "ConfigMap", &cm)).unwrap();
    assert_eq!(
        decoded,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}})
    );
    // `apiVersion` and `kind` come first, then the fields in tag order.
    let keys: Vec<&String> = decoded.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["apiVersion", "kind", "metadata", "data"]);
}

#[test]
fn micro_times_and_leases_should_keep_microseconds() {
    let lease: k8s_openapi::api::coordination::v1::Lease = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "kube-scheduler", "namespace": "kube-system"},
        "spec": {
            "holderIdentity": "node-1",
            "leaseDurationSeconds": 15,
            "acquireTime": "2024-05-06T07:08:09.123456Z",
            "renewTime": "2024-05-06T07:08:19.000001Z",
            "leaseTransitions": 2
        }
    }))
    .unwrap();
    let pb: k8s_pb::api::coordination::v1::Lease = round_trip(&lease);
    let acquire = pb.spec.unwrap().acquire_time.unwrap();
    assert_eq!(
        (acquire.seconds, acquire.nanos),
        (Some(1_714_979_289), Some(123_456_000))
    );
}

#[test]
fn workloads_and_other_required_kinds_should_round_trip() {
    let job: k8s_openapi::api::batch::v1::CronJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "tick", "namespace": "default"},
        "spec": {
            "schedule": "*/5 * * * *",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {"spec": {
                "backoffLimit": 0,
                "template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "t", "image": "busybox"}]}}
            }}
        }
    }))
    .unwrap();
    let _: k8s_pb::api::batch::v1::CronJob = round_trip(&job);

    let slice: k8s_openapi::api::discovery::v1::EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-abc", "namespace": "default"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": true}, "nodeName": "n1"}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    }))
    .unwrap();
    let _: k8s_pb::api::discovery::v1::EndpointSlice = round_trip(&slice);

    let event: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "e1", "namespace": "default"},
        "eventTime": "2024-05-06T07:08:09.500000Z",
        "series": {"count": 2, "lastObservedTime": "2024-05-06T07:09:09.000000Z"},
        "reason": "Scheduled",
        "regarding": {"kind": "Pod", "name": "p"},
        "type": "Normal"
    }))
    .unwrap();
    let _: k8s_pb::api::events::v1::Event = round_trip(&event);

    let scale: k8s_openapi::api::autoscaling::v1::Scale = serde_json::from_value(json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 4},
        "status": {"replicas": 2, "selector": "app=web"}
    }))
    .unwrap();
    let _: k8s_pb::api::autoscaling::v1::Scale = round_trip(&scale);

    let node: core::Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1"},
        "spec": {"podCIDR": "10.1.0.0/24", "podCIDRs": ["10.1.0.0/24"], "taints": [{"key": "k", "effect": "NoSchedule"}]},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "machineID": "m", "systemUUID": "s", "bootID": "b",
                         "kernelVersion": "6", "osImage": "o", "containerRuntimeVersion": "c", "kubeProxyVersion": "",
                         "operatingSystem": "linux", "architecture": "amd64"}
        }
    }))
    .unwrap();
    let _: k8s_pb::api::core::v1::Node = round_trip(&node);

    let binding: core::Binding = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p", "namespace": "default"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}
    }))
    .unwrap();
    let _: k8s_pb::api::core::v1::Binding = round_trip(&binding);
}

#[test]
fn delete_options_should_decode_under_any_group_version() {
    let opts = pb_meta::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: Some("Foreground".into()),
        preconditions: Some(pb_meta::Preconditions {
            uid: Some("u".into()),
            resource_version: None,
        }),
        dry_run: vec!["All".into()],
        ..Default::default()
    };
    let decoded = kaji_protobuf::decode(&envelope("apps/v1", "DeleteOptions", &opts)).unwrap();
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
            "preconditions": {"uid": "u"}, "propagationPolicy": "Foreground", "dryRun": ["All"]
        })
    );
}

#[test]
fn every_supported_kind_should_round_trip_a_minimal_object() {
    let mut count = 0;
    for (api_version, kind) in kaji_protobuf::supported_kinds() {
        let obj = if kind == "Status" {
            json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "7"}, "status": "Failure",
                   "message": "gone", "reason": "NotFound", "details": {"name": "p", "kind": "pods"}, "code": 404})
        } else if kind.ends_with("List") {
            json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "7"}, "items": [{"metadata": {"name": "a"}}]})
        } else {
            json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "a", "labels": {"x": "y"}}})
        };
        let body =
            kaji_protobuf::encode(&obj).unwrap_or_else(|e| panic!("{api_version} {kind}: {e}"));
        let decoded = kaji_protobuf::decode(&body).unwrap();
        if decoded.get("metadata").is_none() {
            // Discovery documents have no metadata.
            assert!(
                kind.starts_with("API"),
                "{api_version} {kind} lost its metadata"
            );
            continue;
        }
        assert_eq!(decoded, obj, "{api_version} {kind}");
        count += 1;
    }
    assert!(count > 100, "only {count} kinds");
}

#[test]
fn errors_should_say_what_is_wrong() {
    use kaji_protobuf::ProtobufError;
    assert_eq!(
        kaji_protobuf::decode(b"{\"kind\":1}"),
        Err(ProtobufError::MissingMagic)
    );
    let unknown = kaji_protobuf::decode(&envelope(
        "example.com/v1",
        "Widget",
        &pb_core::ConfigMap::default(),
    ));
    assert!(
        matches!(unknown, Err(ProtobufError::UnknownKind { .. })),
        "{unknown:?}"
    );
    assert!(unknown.unwrap_err().to_string().contains("\"Widget\""));

    let mut truncated = envelope(
        "v1",
        "ConfigMap",
        &pb_core::ConfigMap {
            data: [("a".to_string(), "b".to_string())].into(),
            ..Default::default()
        },
    );
    truncated.pop();
    let err = kaji_protobuf::decode(&truncated).unwrap_err();
    assert!(matches!(err, ProtobufError::Malformed { .. }), "{err:?}");

    let err = kaji_protobuf::encode(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "spec": {"template": {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": "eighty"}]}]}}}
    }))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot encode Deployment.spec.template.spec.containers[0].ports[0].containerPort as protobuf: \
         expected an integer, found string \"eighty\""
    );
    assert_eq!(
        kaji_protobuf::encode(&json!({"kind": "Pod"})),
        Err(ProtobufError::MissingTypeMeta("apiVersion"))
    );
}

#[test]
fn an_embedded_protobuf_object_should_decode_one_level_deep_only() {
    let cm = pb_core::ConfigMap {
        data: [("a".to_string(), "b".to_string())].into(),
        ..Default::default()
    };
    let revision = |raw: Vec<u8>| pb_apps::ControllerRevision {
        data: Some(k8s_pb::apimachinery::pkg::runtime::RawExtension { raw: Some(raw) }),
        revision: Some(1),
        ..Default::default()
    };
    let once = envelope(
        "apps/v1",
        "ControllerRevision",
        &revision(envelope("v1", "ConfigMap", &cm)),
    );
    assert_eq!(
        kaji_protobuf::decode(&once).unwrap()["data"],
        json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}})
    );
    let twice = envelope("apps/v1", "ControllerRevision", &revision(once));
    assert!(matches!(
        kaji_protobuf::decode(&twice),
        Err(kaji_protobuf::ProtobufError::Malformed { .. })
    ));
    // JSON in a RawExtension, the usual case, stays JSON.
    let json_raw = envelope(
        "apps/v1",
        "ControllerRevision",
        &revision(br#"{"spec":{"x":1}}"#.to_vec()),
    );
    assert_eq!(
        kaji_protobuf::decode(&json_raw).unwrap()["data"],
        json!({"spec": {"x": 1}})
    );
}
