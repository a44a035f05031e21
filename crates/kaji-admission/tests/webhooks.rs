//! Admission webhooks end to end over a real HTTPS server: denials,
//! mutations, failure policies, timeouts, selectors and dry runs.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kaji_registry::{DeleteOptions, Part, WriteOptions};
use kaji_store::Store;
use serde_json::{json, Value};

#[tokio::test]
async fn a_validating_webhook_denies_a_labelled_configmap_and_names_itself() {
    let server = serve(handler(|_, review| {
        if review
            .pointer("/request/object/metadata/labels/deny")
            .is_some()
        {
            json!({"allowed": false, "status": {"message": "configmaps labelled deny are refused"}})
        } else {
            json!({"allowed": true, "warnings": ["looked at it"]})
        }
    }))
    .await;
    let c = cluster().await;
    c.configure(
        false,
        "deny",
        vec![hook(
            "deny.example.com",
            &server.url("/validate"),
            &server.ca_bundle,
        )],
    )
    .await;

    let err = c
        .create("default", configmap("bad", json!({"deny": "yes"})))
        .await
        .unwrap_err();
    assert_eq!(err.code, 400);
    assert_eq!(
        err.message,
        "admission webhook \"deny.example.com\" denied the request: configmaps labelled deny are refused"
    );
    assert!(
        c.configmaps.get(Some("default"), "bad").await.is_err(),
        "a denied object is not stored"
    );

    let ok = c
        .create("default", configmap("good", json!({})))
        .await
        .unwrap();
    assert!(
        ok.warnings.contains(&"looked at it".to_string()),
        "{:?}",
        ok.warnings
    );

    // The review described the write as Kubernetes does.
    let reviews = server.requests("/validate");
    let r = &reviews.last().unwrap()["request"];
    assert_eq!(reviews.last().unwrap()["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(r["operation"], "CREATE");
    assert_eq!(
        r["kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(
        r["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(
        (r["namespace"].as_str(), r["name"].as_str()),
        (Some("default"), Some("good"))
    );
    assert_eq!(r["object"]["data"], json!({"k": "v"}));
    assert_eq!(r["userInfo"]["username"], "system:admin");
    assert_eq!(r["dryRun"], false);
    assert!(!r["uid"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn a_denial_keeps_the_webhook_s_code_and_reason() {
    let server = serve(handler(|_, _| {
        json!({"allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "not today"}})
    }))
    .await;
    let c = cluster().await;
    c.configure(
        false,
        "v",
        vec![hook(
            "forbid.example.com",
            &server.url("/"),
            &server.ca_bundle,
        )],
    )
    .await;
    let err = c
        .create("default", configmap("a", json!({})))
        .await
        .unwrap_err();
    assert_eq!((err.code, err.reason), (403, "Forbidden"));
    assert_eq!(
        err.message,
        "admission webhook \"forbid.example.com\" denied the request: not today"
    );
}

#[tokio::test]
async fn a_mutating_webhook_adds_a_label_through_a_json_patch() {
    let server = serve(handler(|_, _| {
        patched(json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}]))
    }))
    .await;
    let c = cluster().await;
    c.configure(
        true,
        "mutate",
        vec![hook(
            "label.example.com",
            &server.url("/mutate"),
            &server.ca_bundle,
        )],
    )
    .await;

    let out = c
        .create("default", configmap("a", json!({"keep": "me"})))
        .await
        .unwrap();
    assert_eq!(
        out.object["metadata"]["labels"],
        json!({"keep": "me", "mutated": "yes"})
    );
    let stored = c.configmaps.get(Some("default"), "a").await.unwrap();
    assert_eq!(stored["metadata"]["labels"]["mutated"], "yes");

    // Updates are mutated too, and see the old object.
    let mut changed = stored.clone();
    changed["metadata"]["labels"] = json!({});
    let updated = c
        .configmaps
        .update(
            Some("default"),
            "a",
            changed,
            Part::Main,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        updated.object["metadata"]["labels"],
        json!({"mutated": "yes"})
    );
    let last = server.requests("/mutate").pop().unwrap();
    assert_eq!(last["request"]["operation"], "UPDATE");
    assert_eq!(
        last["request"]["oldObject"]["metadata"]["labels"]["keep"],
        "me"
    );
}

#[tokio::test]
async fn mutating_webhooks_run_in_configuration_order_and_reinvoke_if_needed() {
    // "a-first" (IfNeeded) copies the label "b" into an annotation; "b-second" sets label "b".
    let server = serve(handler(|path, review| {
        let obj = &review["request"]["object"];
        match path {
            "/a" => {
                let b = obj
                    .pointer("/metadata/labels/b")
                    .cloned()
                    .unwrap_or(json!("missing"));
                patched(
                    json!([{"op": "add", "path": "/metadata/annotations", "value": {"saw-b": b}}]),
                )
            }
            _ => patched(json!([{"op": "add", "path": "/metadata/labels/b", "value": "set"}])),
        }
    }))
    .await;
    let c = cluster().await;
    let mut a = hook("a.example.com", &server.url("/a"), &server.ca_bundle);
    a["reinvocationPolicy"] = json!("IfNeeded");
    c.configure(
        true,
        "b-second",
        vec![hook("b.example.com", &server.url("/b"), &server.ca_bundle)],
    )
    .await;
    c.configure(true, "a-first", vec![a]).await;
    assert_eq!(c.webhooks.names(), vec!["a.example.com", "b.example.com"]);

    let out = c
        .create("default", configmap("x", json!({})))
        .await
        .unwrap();
    assert_eq!(
        out.object["metadata"]["annotations"]["saw-b"], "set",
        "a ran again after b"
    );
    assert_eq!(server.requests("/a").len(), 2);
    assert_eq!(server.requests("/b").len(), 1);
}

#[tokio::test]
async fn failure_policy_fail_refuses_and_ignore_proceeds_when_the_webhook_is_down() {
    let port = closed_port().await;
    let url = format!("https://127.0.0.1:{port}/v");
    let c = cluster().await;
    c.configure(false, "fail", vec![hook("fail.example.com", &url, "")])
        .await;
    let err = c
        .create("default", configmap("a", json!({})))
        .await
        .unwrap_err();
    assert_eq!((err.code, err.reason), (500, "InternalError"));
    let prefix = format!(
        "Internal error occurred: failed calling webhook \"fail.example.com\": failed to call webhook: Post \"https://127.0.0.1:{port}/v?timeout=10s\": dial tcp 127.0.0.1:{port}: "
    );
    assert!(err.message.starts_with(&prefix), "{}", err.message);

    c.validating
        .delete(None, "fail", &DeleteOptions::default())
        .await
        .unwrap();
    let mut ignore = hook("ignore.example.com", &url, "");
    ignore["failurePolicy"] = json!("Ignore");
    c.configure(false, "ignore", vec![ignore]).await;
    c.wait_for(|names| names == ["ignore.example.com"]).await;
    c.create("default", configmap("a", json!({})))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_server_certificate_must_chain_to_the_ca_bundle() {
    let server = serve(handler(|_, _| allowed())).await;
    let other_ca = serve(handler(|_, _| allowed())).await;
    let c = cluster().await;
    c.configure(
        false,
        "v",
        vec![hook(
            "tls.example.com",
            &server.url("/"),
            &other_ca.ca_bundle,
        )],
    )
    .await;
    let err = c
        .create("default", configmap("a", json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.code, 500);
    assert!(
        err.message
            .contains("failed calling webhook \"tls.example.com\""),
        "{}",
        err.message
    );
    assert!(err.message.contains("tls:"), "{}", err.message);
    assert!(
        server.requests("/").is_empty(),
        "nothing was sent to an unverified server"
    );
}

#[tokio::test]
async fn timeout_seconds_bounds_a_slow_webhook() {
    let slow: Handler = Arc::new(|_, _| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(4)).await;
            allowed()
        })
    });
    let server = serve(slow).await;
    let c = cluster().await;
    let mut h = hook("slow.example.com", &server.url("/slow"), &server.ca_bundle);
    h["timeoutSeconds"] = json!(1);
    c.configure(false, "slow", vec![h.clone()]).await;
    let start = Instant::now();
    let err = c
        .create("default", configmap("a", json!({})))
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(err.code, 500);
    assert!(
        err.message
            .ends_with("/slow?timeout=1s\": context deadline exceeded"),
        "{}",
        err.message
    );

    c.validating
        .delete(None, "slow", &DeleteOptions::default())
        .await
        .unwrap();
    h["name"] = json!("slow-ignored.example.com");
    h["failurePolicy"] = json!("Ignore");
    c.configure(false, "slow-ignored", vec![h]).await;
    c.wait_for(|names| names == ["slow-ignored.example.com"])
        .await;
    let start = Instant::now();
    c.create("default", configmap("a", json!({})))
        .await
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn validating_webhooks_are_called_in_parallel() {
    let slow: Handler = Arc::new(|_, _| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            allowed()
        })
    });
    let server = serve(slow).await;
    let c = cluster().await;
    c.configure(
        false,
        "two",
        vec![
            hook("one.example.com", &server.url("/1"), &server.ca_bundle),
            hook("two.example.com", &server.url("/2"), &server.ca_bundle),
        ],
    )
    .await;
    let start = Instant::now();
    c.create("default", configmap("a", json!({})))
        .await
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(2800),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(server.requests("/1").len() + server.requests("/2").len(), 2);
}

#[tokio::test]
async fn namespace_and_object_selectors_choose_what_a_webhook_sees() {
    let server = serve(handler(
        |_, _| json!({"allowed": false, "status": {"message": "no"}}),
    ))
    .await;
    let c = cluster().await;
    let mut by_ns = hook(
        "prod-only.example.com",
        &server.url("/ns"),
        &server.ca_bundle,
    );
    by_ns["namespaceSelector"] = json!({"matchLabels": {"env": "prod"}});
    let mut by_obj = hook(
        "checked-only.example.com",
        &server.url("/obj"),
        &server.ca_bundle,
    );
    by_obj["objectSelector"] =
        json!({"matchExpressions": [{"key": "check", "operator": "In", "values": ["yes"]}]});
    c.configure(false, "selectors", vec![by_ns, by_obj]).await;

    let err = c
        .create("prod", configmap("a", json!({})))
        .await
        .unwrap_err();
    assert!(
        err.message.contains("prod-only.example.com"),
        "{}",
        err.message
    );
    c.create("default", configmap("a", json!({})))
        .await
        .unwrap();
    let err = c
        .create("default", configmap("b", json!({"check": "yes"})))
        .await
        .unwrap_err();
    assert!(
        err.message.contains("checked-only.example.com"),
        "{}",
        err.message
    );
    assert!(
        server.requests("/ns").is_empty()
            || server
                .requests("/ns")
                .iter()
                .all(|r| r["request"]["namespace"] == "prod")
    );

    // An update that removes the label still matches through the old object.
    c.validating
        .delete(None, "selectors", &DeleteOptions::default())
        .await
        .unwrap();
    c.wait_for(|names| names.is_empty()).await;
    c.create("default", configmap("c", json!({"check": "yes"})))
        .await
        .unwrap();
    let mut by_obj = hook(
        "checked-only.example.com",
        &server.url("/obj"),
        &server.ca_bundle,
    );
    by_obj["objectSelector"] = json!({"matchLabels": {"check": "yes"}});
    c.configure(false, "selectors", vec![by_obj]).await;
    let mut unlabelled = c.configmaps.get(Some("default"), "c").await.unwrap();
    unlabelled["metadata"]["labels"] = json!({});
    let err = c
        .configmaps
        .update(
            Some("default"),
            "c",
            unlabelled,
            Part::Main,
            &WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        err.message.contains("checked-only.example.com"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_namespace_is_judged_by_its_own_labels() {
    let server = serve(handler(
        |_, _| json!({"allowed": false, "status": {"message": "no prod namespaces"}}),
    ))
    .await;
    let c = cluster().await;
    let mut h = hook(
        "namespaces.example.com",
        &server.url("/"),
        &server.ca_bundle,
    );
    h["rules"][0]["resources"] = json!(["namespaces"]);
    h["namespaceSelector"] = json!({"matchLabels": {"env": "prod"}});
    c.configure(false, "ns", vec![h]).await;
    let opts = WriteOptions::default();
    c.namespaces
        .create(
            None,
            json!({"metadata": {"name": "dev", "labels": {"env": "dev"}}}),
            &opts,
        )
        .await
        .unwrap();
    let err = c
        .namespaces
        .create(
            None,
            json!({"metadata": {"name": "prod2", "labels": {"env": "prod"}}}),
            &opts,
        )
        .await
        .unwrap_err();
    assert!(
        err.message.contains("no prod namespaces"),
        "{}",
        err.message
    );
    assert_eq!(server.requests("/")[0]["request"]["namespace"], "prod2");
}

#[tokio::test]
async fn a_delete_is_validated_with_the_old_object() {
    let server = serve(handler(|_, review| {
        if review["request"]["operation"] == "DELETE"
            && review
                .pointer("/request/oldObject/metadata/labels/protected")
                .is_some()
        {
            json!({"allowed": false, "status": {"message": "protected"}})
        } else {
            allowed()
        }
    }))
    .await;
    let c = cluster().await;
    c.configure(
        false,
        "protect",
        vec![hook(
            "protect.example.com",
            &server.url("/"),
            &server.ca_bundle,
        )],
    )
    .await;
    c.create("default", configmap("keep", json!({"protected": "true"})))
        .await
        .unwrap();
    c.create("default", configmap("drop", json!({})))
        .await
        .unwrap();
    let err = c
        .configmaps
        .delete(Some("default"), "keep", &DeleteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.message,
        "admission webhook \"protect.example.com\" denied the request: protected"
    );
    c.configmaps
        .delete(Some("default"), "drop", &DeleteOptions::default())
        .await
        .unwrap();
    assert!(c.configmaps.get(Some("default"), "keep").await.is_ok());
    let delete = server
        .requests("/")
        .into_iter()
        .find(|r| r["request"]["operation"] == "DELETE")
        .unwrap();
    assert_eq!(delete["request"]["object"], Value::Null);
    assert_eq!(delete["request"]["options"]["kind"], "DeleteOptions");
}

#[tokio::test]
async fn dry_runs_reach_only_webhooks_without_side_effects() {
    let server = serve(handler(|_, _| allowed())).await;
    let c = cluster().await;
    c.configure(
        false,
        "safe",
        vec![hook(
            "safe.example.com",
            &server.url("/safe"),
            &server.ca_bundle,
        )],
    )
    .await;
    c.create_dry("default", configmap("a", json!({})))
        .await
        .unwrap();
    let seen = server.requests("/safe");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["request"]["dryRun"], true);
    assert_eq!(seen[0]["request"]["options"]["dryRun"], json!(["All"]));

    // v1 validation refuses sideEffects other than None/NoneOnDryRun, but a
    // configuration stored earlier (v1beta1) may still say "Unknown".
    let mut risky = hook(
        "risky.example.com",
        &server.url("/risky"),
        &server.ca_bundle,
    );
    risky["sideEffects"] = json!("Unknown");
    let stored = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                        "metadata": {"name": "risky", "uid": "u"}, "webhooks": [risky]});
    c.store
        .create(
            "/registry/admissionregistration.k8s.io/validatingwebhookconfigurations/risky",
            serde_json::to_vec(&stored).unwrap(),
        )
        .await
        .unwrap();
    c.wait_for(|names| names.contains(&"risky.example.com".to_string()))
        .await;
    let err = c
        .create_dry("default", configmap("b", json!({})))
        .await
        .unwrap_err();
    assert_eq!((err.code, err.reason), (400, "BadRequest"));
    assert_eq!(
        err.message,
        "admission webhook \"risky.example.com\" does not support dry run"
    );
    assert!(server.requests("/risky").is_empty());
    c.create("default", configmap("b", json!({})))
        .await
        .unwrap();
    assert_eq!(server.requests("/risky").len(), 1);
}

#[tokio::test]
async fn webhook_configurations_are_never_subject_to_webhooks() {
    let port = closed_port().await;
    let c = cluster().await;
    let mut everything = hook(
        "everything.example.com",
        &format!("https://127.0.0.1:{port}/"),
        "",
    );
    everything["rules"] = json!([{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}]);
    c.configure(false, "everything", vec![everything.clone()])
        .await;
    c.configure(true, "everything", vec![everything]).await;
    assert!(c
        .create("default", configmap("a", json!({})))
        .await
        .is_err());
    c.mutating
        .delete(None, "everything", &DeleteOptions::default())
        .await
        .unwrap();
    c.validating
        .delete(None, "everything", &DeleteOptions::default())
        .await
        .unwrap();
    c.wait_for(|names| names.is_empty()).await;
    c.create("default", configmap("a", json!({})))
        .await
        .unwrap();
}

#[tokio::test]
async fn invalid_configurations_are_refused_by_the_registry() {
    let c = cluster().await;
    let mut bad = hook("short.name", "http://127.0.0.1/", "");
    bad["timeoutSeconds"] = json!(60);
    let obj = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                     "metadata": {"name": "bad"}, "webhooks": [bad]});
    let err = c
        .validating
        .create(None, obj, &WriteOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code, 422);
    let fields: Vec<&str> = err.causes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "webhooks[0].name",
            "webhooks[0].timeoutSeconds",
            "webhooks[0].clientConfig.url"
        ]
    );
}

#[tokio::test]
async fn a_service_webhook_is_reached_at_a_ready_endpoint_and_verified_by_its_dns_name() {
    let server = serve(handler(
        |_, _| json!({"allowed": false, "status": {"message": "via service"}}),
    ))
    .await;
    let port: u16 = server.base.rsplit(':').next().unwrap().parse().unwrap();
    let c = cluster().await;
    let services = registry(&c.store, "", "services", &c.webhooks);
    let slices = registry(&c.store, "discovery.k8s.io", "endpointslices", &c.webhooks);
    let opts = WriteOptions::default();
    services
        .create(
            Some("default"),
            json!({"metadata": {"name": "hook"}, "spec": {"clusterIP": "None",
                   "ports": [{"name": "https", "port": 443, "targetPort": port}]}}),
            &opts,
        )
        .await
        .unwrap();
    slices
        .create(
            Some("default"),
            json!({"metadata": {"name": "hook-1", "labels": {"kubernetes.io/service-name": "hook"}},
                   "addressType": "IPv4",
                   "endpoints": [{"addresses": ["127.0.0.2"], "conditions": {"ready": false}},
                                 {"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
                   "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}),
            &opts,
        )
        .await
        .unwrap();
    c.webhooks.resolve_services(services, slices);
    let mut h = hook("svc.example.com", "https://unused", &server.ca_bundle);
    h["clientConfig"] = json!({"service": {"namespace": "default", "name": "hook", "path": "/svc"},
                               "caBundle": server.ca_bundle});
    c.configure(false, "svc", vec![h.clone()]).await;
    let err = c
        .create("default", configmap("a", json!({})))
        .await
        .unwrap_err();
    assert_eq!(
        err.message,
        "admission webhook \"svc.example.com\" denied the request: via service"
    );
    assert_eq!(server.requests("/svc").len(), 1);

    // Without a resolver the service's DNS name is dialled, which fails here, clearly.
    let plain = cluster().await;
    plain.configure(false, "svc", vec![h]).await;
    let err = plain
        .create("default", configmap("a", json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.code, 500);
    assert!(
        err.message.contains(
            "Post \"https://hook.default.svc:443/svc?timeout=10s\": dial tcp hook.default.svc:443"
        ),
        "{}",
        err.message
    );
}
