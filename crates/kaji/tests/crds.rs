//! End-to-end: CustomResourceDefinitions served like built-ins, through the
//! real kubectl against a real `kaji up`.

mod common;

use common::Cluster;

/// The CronTab of the Kubernetes CRD walkthrough, with every feature the
/// server must honour: two versions, defaults, bounds, a CEL rule, status
/// and scale subresources, printer columns, short names and categories.
const CRONTAB_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
    categories: [all]
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.labelSelector
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [cronSpec]
            x-kubernetes-validations:
            - rule: "self.replicas <= self.maxReplicas"
              message: "replicas must not exceed maxReplicas"
            properties:
              cronSpec:
                type: string
                pattern: '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'
              image:
                type: string
              owner:
                type: string
                x-kubernetes-validations:
                - rule: "self == oldSelf"
                  message: "owner is immutable"
              replicas:
                type: integer
                minimum: 1
                maximum: 10
                default: 1
              maxReplicas:
                type: integer
                default: 10
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    port: {type: integer}
          status:
            type: object
            properties:
              replicas: {type: integer}
              labelSelector: {type: string}
"#;

const CRONTAB: &str = r#"
apiVersion: stable.example.com/v1
kind: CronTab
metadata:
  name: nightly
  labels: {team: ops}
spec:
  cronSpec: "* * * * */5"
  image: my-awesome-cron-image
"#;

fn with_crontabs() -> Cluster {
    let c = Cluster::start();
    c.kubectl_stdin(&["apply", "-f", "-"], Some(CRONTAB_CRD))
        .success();
    c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/crontabs.stable.example.com",
    ])
    .success();
    c
}

#[test]
fn a_new_crd_is_established_and_its_kind_appears_in_discovery() {
    let c = with_crontabs();
    let conditions = c.kubectl(&[
        "get",
        "crd",
        "crontabs.stable.example.com",
        "-o",
        "jsonpath={range .status.conditions[*]}{.type}={.status} {end}|{.status.acceptedNames.kind}|{.status.storedVersions}",
    ]);
    assert_eq!(
        conditions.success(),
        "NamesAccepted=True Established=True |CronTab|[\"v1\"]"
    );
    let resources = c.kubectl(&["api-resources", "--api-group=stable.example.com"]);
    let text = resources.success();
    let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row,
        ["crontabs", "ct", "stable.example.com/v1", "true", "CronTab"],
        "{text}"
    );
    let versions = c.kubectl(&["api-versions"]);
    assert!(versions.success().contains("stable.example.com/v1beta1"));
}

#[test]
fn custom_resources_serve_every_verb_with_printer_columns() {
    let c = with_crontabs();
    let created = c.kubectl_stdin(&["apply", "-f", "-"], Some(CRONTAB));
    assert_eq!(
        created.success().trim(),
        "crontab.stable.example.com/nightly created"
    );
    let again = c.kubectl_stdin(&["apply", "-f", "-"], Some(CRONTAB));
    assert_eq!(
        again.success().trim(),
        "crontab.stable.example.com/nightly unchanged"
    );
    let table = c.kubectl(&["get", "ct"]);
    let text = table.success();
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SPEC", "REPLICAS", "AGE"], "{text}");
    let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..7],
        ["nightly", "*", "*", "*", "*", "*/5", "1"],
        "{text}"
    );
    // `all` includes custom resources in the category.
    assert!(c
        .kubectl(&["get", "all"])
        .success()
        .contains("crontab.stable.example.com/nightly"));
    c.kubectl(&[
        "patch",
        "ct",
        "nightly",
        "--type=merge",
        "-p",
        r#"{"spec":{"image":"v2"}}"#,
    ])
    .success();
    c.kubectl(&[
        "patch",
        "ct",
        "nightly",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    ])
    .success();
    let fields = c.kubectl(&[
        "get",
        "crontab",
        "nightly",
        "-o",
        "jsonpath={.spec.image} {.spec.replicas} {.metadata.generation}",
    ]);
    assert_eq!(fields.success(), "v2 3 3");
    // Strategic merge has no schema to merge with for custom resources.
    let smp = c.kubectl(&[
        "patch",
        "ct",
        "nightly",
        "--type=strategic",
        "-p",
        r#"{"spec":{"image":"v3"}}"#,
    ]);
    assert!(
        smp.failure().contains("strategic merge patch"),
        "{}",
        smp.stderr
    );
    let selected = c.kubectl(&["get", "ct", "-l", "team=ops", "-o", "name"]);
    assert_eq!(
        selected.success().trim(),
        "crontab.stable.example.com/nightly"
    );
    let none = c.kubectl(&["get", "ct", "-l", "team=dev", "-o", "name"]);
    assert_eq!(none.success().trim(), "");
    c.kubectl(&["delete", "ct", "nightly"]).success();
    let gone = c.kubectl(&["get", "ct", "nightly"]);
    assert!(gone.failure().contains("not found"), "{}", gone.stderr);
}

#[test]
fn bad_custom_resources_get_422_with_every_failing_field() {
    let c = with_crontabs();
    let bad = r#"
apiVersion: stable.example.com/v1
kind: CronTab
metadata: {name: bad}
spec:
  cronSpec: "not a cron"
  replicas: 50
"#;
    let out = c.kubectl_stdin(&["create", "-f", "-"], Some(bad));
    let err = out.failure();
    assert!(err.contains("is invalid"), "{err}");
    assert!(err.contains("spec.cronSpec"), "{err}");
    assert!(err.contains("spec.replicas"), "{err}");
    let missing = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: empty}\nspec: {image: x}\n";
    let out = c.kubectl_stdin(&["create", "-f", "-"], Some(missing));
    assert!(
        out.failure().contains("spec.cronSpec: Required value"),
        "{}",
        out.stderr
    );
    let wrong_type = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: typed}\nspec: {cronSpec: '* * * * *', replicas: many}\n";
    let out = c.kubectl_stdin(&["create", "-f", "-"], Some(wrong_type));
    assert!(out.failure().contains("spec.replicas"), "{}", out.stderr);
    // Nothing half-written.
    assert_eq!(c.kubectl(&["get", "ct", "-o", "name"]).success().trim(), "");
}

#[test]
fn cel_rules_refuse_what_the_schema_alone_allows() {
    let c = with_crontabs();
    let over = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: over}\nspec: {cronSpec: '* * * * *', replicas: 5, maxReplicas: 3}\n";
    let out = c.kubectl_stdin(&["create", "-f", "-"], Some(over));
    assert!(
        out.failure()
            .contains("replicas must not exceed maxReplicas"),
        "{}",
        out.stderr
    );
    // A transition rule: `owner` may be set once, never changed.
    let owned = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: owned}\nspec: {cronSpec: '* * * * *', owner: alice}\n";
    c.kubectl_stdin(&["create", "-f", "-"], Some(owned))
        .success();
    let out = c.kubectl(&[
        "patch",
        "ct",
        "owned",
        "--type=merge",
        "-p",
        r#"{"spec":{"owner":"bob"}}"#,
    ]);
    let err = out.failure();
    assert!(
        err.contains("spec.owner") && err.contains("owner is immutable"),
        "{err}"
    );
    c.kubectl(&[
        "patch",
        "ct",
        "owned",
        "--type=merge",
        "-p",
        r#"{"spec":{"image":"new"}}"#,
    ])
    .success();
}

#[test]
fn unknown_fields_are_pruned_and_defaults_filled() {
    let c = with_crontabs();
    let extra = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: extra}\nspec: {cronSpec: '* * * * *', bogus: 1}\n";
    let out = c.kubectl_stdin(&["create", "--validate=false", "-f", "-"], Some(extra));
    out.success();
    let spec = c.kubectl(&["get", "ct", "extra", "-o", "jsonpath={.spec}"]);
    let spec: serde_json::Value = serde_json::from_str(spec.success()).unwrap();
    assert_eq!(
        spec,
        serde_json::json!({"cronSpec": "* * * * *", "replicas": 1, "maxReplicas": 10})
    );
    let strict = c.kubectl_stdin(
        &["create", "--validate=strict", "-f", "-"],
        Some(&extra.replace("extra}", "strict}")),
    );
    assert!(
        strict.failure().contains("unknown field \"spec.bogus\""),
        "{}",
        strict.stderr
    );
}

#[test]
fn status_and_scale_subresources_work_with_kubectl() {
    let c = with_crontabs();
    c.kubectl_stdin(&["apply", "-f", "-"], Some(CRONTAB))
        .success();
    c.kubectl(&["scale", "crontab", "nightly", "--replicas=4"])
        .success();
    let replicas = c.kubectl(&[
        "get",
        "ct",
        "nightly",
        "-o",
        "jsonpath={.spec.replicas} {.metadata.generation}",
    ]);
    assert_eq!(replicas.success(), "4 2");
    c.kubectl(&[
        "patch",
        "ct",
        "nightly",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":4,"labelSelector":"app=nightly"}}"#,
    ])
    .success();
    // A status write does not bump the generation; the main endpoint
    // cannot change status.
    c.kubectl(&[
        "patch",
        "ct",
        "nightly",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":99}}"#,
    ])
    .success();
    let state = c.kubectl(&[
        "get",
        "ct",
        "nightly",
        "-o",
        "jsonpath={.status.replicas} {.metadata.generation}",
    ]);
    assert_eq!(state.success(), "4 2");
    let scale = c.kubectl(&[
        "get",
        "--raw",
        "/apis/stable.example.com/v1/namespaces/default/crontabs/nightly/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(scale.success()).unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 4);
    assert_eq!(scale["status"]["selector"], "app=nightly");
}

#[test]
fn versions_share_one_storage_version() {
    let c = with_crontabs();
    let beta = "apiVersion: stable.example.com/v1beta1\nkind: CronTab\nmetadata: {name: old}\nspec: {cronSpec: '* * * * *', anything: goes}\n";
    c.kubectl_stdin(&["create", "-f", "-"], Some(beta))
        .success();
    let v1 = c.kubectl(&[
        "get",
        "--raw",
        "/apis/stable.example.com/v1/namespaces/default/crontabs/old",
    ]);
    let v1: serde_json::Value = serde_json::from_str(v1.success()).unwrap();
    assert_eq!(v1["apiVersion"], "stable.example.com/v1");
    // Read through v1, the v1 defaults apply.
    assert_eq!(v1["spec"]["replicas"], 1);
    let beta_read = c.kubectl(&[
        "get",
        "crontabs.v1beta1.stable.example.com",
        "old",
        "-o",
        "jsonpath={.apiVersion}",
    ]);
    assert_eq!(beta_read.success(), "stable.example.com/v1beta1");
}

#[test]
fn server_side_apply_merges_map_lists_by_key() {
    let c = with_crontabs();
    let first = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: ports}\nspec:\n  cronSpec: '* * * * *'\n  ports:\n  - {name: http, port: 80}\n";
    let second = "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata: {name: ports}\nspec:\n  ports:\n  - {name: metrics, port: 9090}\n";
    c.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=a", "-f", "-"],
        Some(first),
    )
    .success();
    c.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=b", "-f", "-"],
        Some(second),
    )
    .success();
    let names = c.kubectl(&["get", "ct", "ports", "-o", "jsonpath={.spec.ports[*].name}"]);
    assert_eq!(names.success(), "http metrics");
    let conflict = second.replace("9090", "9091");
    let out = c.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=c", "-f", "-"],
        Some(&conflict),
    );
    assert!(out.failure().contains("conflict"), "{}", out.stderr);
}

#[test]
fn deleting_a_crd_deletes_its_objects_first() {
    let c = with_crontabs();
    c.kubectl_stdin(&["apply", "-f", "-"], Some(CRONTAB))
        .success();
    c.kubectl(&["create", "namespace", "other"]).success();
    c.kubectl_stdin(&["apply", "-n", "other", "-f", "-"], Some(CRONTAB))
        .success();
    c.kubectl(&[
        "delete",
        "crd",
        "crontabs.stable.example.com",
        "--timeout=60s",
    ])
    .success();
    let gone = c.kubectl(&["get", "crd", "crontabs.stable.example.com"]);
    assert!(gone.failure().contains("not found"), "{}", gone.stderr);
    // Re-creating the CRD finds no leftovers.
    let c2 = c.kubectl_stdin(&["apply", "-f", "-"], Some(CRONTAB_CRD));
    c2.success();
    c.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/crontabs.stable.example.com",
    ])
    .success();
    assert_eq!(
        c.kubectl(&["get", "ct", "-A", "-o", "name"])
            .success()
            .trim(),
        ""
    );
}

#[test]
fn namespace_deletion_and_garbage_collection_reach_custom_resources() {
    let c = with_crontabs();
    c.kubectl(&["create", "namespace", "doomed"]).success();
    c.kubectl_stdin(&["apply", "-n", "doomed", "-f", "-"], Some(CRONTAB))
        .success();
    // A ConfigMap owned by the CronTab goes with it.
    let uid = c.kubectl(&[
        "get",
        "ct",
        "nightly",
        "-n",
        "doomed",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let owned = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n  namespace: doomed\n  ownerReferences:\n  - apiVersion: stable.example.com/v1\n    kind: CronTab\n    name: nightly\n    uid: {}\n    controller: true\n",
        uid.success()
    );
    c.kubectl_stdin(&["apply", "-f", "-"], Some(&owned))
        .success();
    c.kubectl(&["delete", "ct", "nightly", "-n", "doomed", "--wait=true"])
        .success();
    let mut owned_gone = false;
    for _ in 0..120 {
        if !c.kubectl(&["get", "cm", "owned", "-n", "doomed"]).ok {
            owned_gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(
        owned_gone,
        "the garbage collector left the CronTab's ConfigMap"
    );
    c.kubectl_stdin(
        &["apply", "-n", "doomed", "-f", "-"],
        Some(&CRONTAB.replace("nightly", "weekly")),
    )
    .success();
    c.kubectl(&["delete", "namespace", "doomed", "--timeout=60s"])
        .success();
    assert_eq!(
        c.kubectl(&["get", "ct", "-A", "-o", "name"])
            .success()
            .trim(),
        ""
    );
}

#[test]
fn invalid_crds_are_refused_with_422() {
    let c = with_crontabs();
    let misnamed = CRONTAB_CRD.replace(
        "name: crontabs.stable.example.com",
        "name: wrong.stable.example.com",
    );
    let out = c.kubectl_stdin(&["create", "-f", "-"], Some(&misnamed));
    let err = out.failure();
    assert!(
        err.contains("is invalid") && err.contains("metadata.name"),
        "{err}"
    );
    let untyped = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: loose.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: loose, kind: Loose}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {properties: {a: {type: string}}}
"#;
    let out = c.kubectl_stdin(&["create", "-f", "-"], Some(untyped));
    assert!(
        out.failure()
            .contains("spec.versions[0].schema.openAPIV3Schema.properties[spec].type"),
        "{}",
        out.stderr
    );
    // Same group, another plural, but the kind CronTab is taken.
    let clash = CRONTAB_CRD
        .replace("crontabs.stable", "crontabz.stable")
        .replace("plural: crontabs", "plural: crontabz")
        .replace("singular: crontab", "singular: crontabz")
        .replace("shortNames: [ct]", "shortNames: [ctz]");
    let out = c.kubectl_stdin(&["create", "-f", "-"], Some(&clash));
    let err = out.failure();
    assert!(
        err.contains("is invalid") && err.contains("CronTab"),
        "{err}"
    );
}
