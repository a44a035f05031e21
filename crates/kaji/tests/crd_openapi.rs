//! End-to-end: custom resources published in OpenAPI v2 and v3, so that
//! the real kubectl explains them and leaves strict field validation to
//! the server, and forgets them when their CRD goes.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Cluster, Output};

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names: {plural: crontabs, singular: crontab, kind: CronTab, shortNames: [ct]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        description: CronTab runs an image on a schedule.
        properties:
          spec:
            type: object
            description: What the user wants to run and when.
            properties:
              cronSpec:
                type: string
                description: The schedule in cron format, five fields.
              image:
                type: string
                description: The container image to run at each tick.
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"#;

/// Runs kubectl with its caches (discovery, HTTP) in `cache`, so that a
/// stale cached document would show.
fn kubectl(c: &Cluster, cache: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--cache-dir", cache.to_str().expect("UTF-8 temp path")];
    all.extend_from_slice(args);
    c.kubectl(&all)
}

/// Retries `f` for up to ten seconds until it returns true.
fn within_ten_seconds(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn with_crd() -> Cluster {
    let c = Cluster::start();
    c.kubectl_stdin(&["apply", "-f", "-"], Some(CRD)).success();
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
fn kubectl_explains_a_custom_kind_until_its_crd_goes() {
    let c = with_crd();
    let cache = tempfile::tempdir().expect("temp dir");
    let cache = cache.path();

    let kind = kubectl(&c, cache, &["explain", "crontab"]);
    let kind = kind.success();
    assert!(
        kind.contains("CronTab runs an image on a schedule."),
        "{kind}"
    );
    assert!(kind.contains("metadata\t<ObjectMeta>"), "{kind}");
    let spec = kubectl(&c, cache, &["explain", "crontab.spec"]);
    let spec = spec.success();
    for wanted in [
        "What the user wants to run and when.",
        "cronSpec\t<string>",
        "The schedule in cron format, five fields.",
        "The container image to run at each tick.",
    ] {
        assert!(spec.contains(wanted), "{wanted} in:\n{spec}");
    }
    // The swagger 2.0 document (protobuf) carries it too.
    let v2 = kubectl(
        &c,
        cache,
        &["explain", "crontab.spec", "--output=plaintext-openapiv2"],
    );
    let v2 = v2.success();
    assert!(
        v2.contains("The schedule in cron format, five fields."),
        "{v2}"
    );

    // A changed CRD is published again, under a new hash.
    let index = |c: &Cluster| {
        let raw = kubectl(c, cache, &["get", "--raw", "/openapi/v3"]);
        let index: serde_json::Value = serde_json::from_str(raw.success()).expect("JSON index");
        index["paths"]["apis/stable.example.com/v1"]["serverRelativeURL"].clone()
    };
    let before = index(&c);
    assert!(before.is_string(), "{before}");
    let changed = CRD.replace(
        "              image:\n",
        "              timeZone:\n                type: string\n                description: The IANA time zone of the schedule.\n              image:\n",
    );
    c.kubectl_stdin(&["apply", "-f", "-"], Some(&changed))
        .success();
    assert!(
        within_ten_seconds(|| {
            let out = kubectl(&c, cache, &["explain", "crontab.spec"]);
            out.ok && out.stdout.contains("The IANA time zone of the schedule.")
        }),
        "the new field never showed"
    );
    assert_ne!(index(&c), before);

    c.kubectl(&[
        "delete",
        "crd",
        "crontabs.stable.example.com",
        "--timeout=60s",
    ])
    .success();
    // kubectl's cached discovery still maps `crontab`: only OpenAPI can
    // tell it the kind is gone.
    assert!(
        within_ten_seconds(|| !kubectl(&c, cache, &["explain", "crontab.spec"]).ok),
        "kubectl still explains crontab after its CRD was deleted"
    );
    assert!(index(&c).is_null());
    let v2 = kubectl(&c, cache, &["get", "--raw", "/openapi/v2"]);
    assert!(!v2.success().contains("com.example.stable.v1.CronTab"));
}

#[test]
fn strict_validation_of_custom_resources_is_left_to_the_server() {
    let c = with_crd();
    let cache = tempfile::tempdir().expect("temp dir");
    let cache = cache.path();
    let object = |extra: &str| {
        format!(
            "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: nightly\nspec:\n  cronSpec: \"* * * * */5\"\n{extra}"
        )
    };
    let strict = [
        "--cache-dir",
        cache.to_str().unwrap(),
        "create",
        "--validate=strict",
        "-f",
        "-",
    ];

    let out = c.kubectl_stdin(&strict, Some(&object("  x: 1\n")));
    let err = out.failure();
    // The server's wording: kubectl sent fieldValidation=Strict because
    // the group version's v3 document lists it on the kind's PATCH.
    assert!(
        err.contains("strict decoding error") && err.contains(r#"unknown field "spec.x""#),
        "{err}"
    );
    let gone = c.kubectl(&["get", "crontab", "nightly"]);
    assert!(gone.failure().contains("not found"), "{}", gone.stderr);

    c.kubectl_stdin(&strict, Some(&object("  image: cron:1\n")))
        .success();
    let image = c.kubectl(&["get", "crontab", "nightly", "-o", "jsonpath={.spec.image}"]);
    assert_eq!(image.success(), "cron:1");

    // Client-side apply of a custom resource still works: kubectl picks a
    // JSON merge patch because the kind's PATCH takes no strategic merge.
    let apply = ["--cache-dir", cache.to_str().unwrap(), "apply", "-f", "-"];
    c.kubectl_stdin(&apply, Some(&object("  image: cron:2\n")))
        .success();
    c.kubectl_stdin(&apply, Some(&object("  image: cron:3\n")))
        .success();
    let image = c.kubectl(&["get", "crontab", "nightly", "-o", "jsonpath={.spec.image}"]);
    assert_eq!(image.success(), "cron:3");
}
