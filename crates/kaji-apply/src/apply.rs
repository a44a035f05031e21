//! Server-side apply — structured-merge-diff's `Updater.Apply` with
//! Kubernetes' field-manager layers around it (the checks of the applied
//! configuration, the `before-first-apply` manager, the cap on update
//! managers, entry times, conflict messages).

use serde_json::{Map, Value};

use crate::managed::{self, Entry, Identity, Operation, BEFORE_FIRST_APPLY_MANAGER};
use crate::path::display;
use crate::set::Set;
use crate::typed;
use crate::{ApplyError, ApplyOutcome, FieldManager};

impl FieldManager<'_> {
    /// Server-side apply; see [`crate::apply`].
    ///
    /// The live object's managedFields are read; if it has none, its current
    /// fields are first given to an `Update` manager named
    /// [`BEFORE_FIRST_APPLY_MANAGER`], so applying over them is a conflict.
    /// The entry's `time` is kept when neither the object nor the manager's
    /// field set changed, so that a repeated apply is a true no-op.
    ///
    /// # Errors
    /// - [`ApplyError::Conflict`] when, without `force`, the result changes
    ///   a field another manager owns.
    /// - [`ApplyError::Invalid`] when `applied` is not an object, lacks
    ///   `apiVersion`, `kind` or `metadata.name`, names another
    ///   version or kind than the request's, sets `metadata.managedFields`,
    ///   or holds an associative list whose elements cannot be identified;
    ///   or when the live managedFields cannot be decoded.
    pub fn apply(
        &self,
        live: Option<&Value>,
        applied: &Value,
        force: bool,
    ) -> Result<ApplyOutcome, ApplyError> {
        self.check(applied)?;
        let shape = self.shape();
        let config = without_nulls(applied);
        let live_obj = live.map_or_else(|| Value::Object(Map::new()), managed::without);

        let mut entries = match live {
            Some(l) => managed::decode(l).map_err(|e| {
                ApplyError::Invalid(format!("failed to decode managed fields: {e}"))
            })?,
            None => Vec::new(),
        };
        if live.is_some() && entries.is_empty() {
            let empty = Value::Object(Map::new());
            let cmp = self.compare(&empty, &live_obj);
            let set = self.own(cmp.added.union(&cmp.modified));
            if !set.is_empty() {
                let version = live_obj["apiVersion"].as_str().unwrap_or(self.api_version);
                entries.push(Entry {
                    id: Identity::new(BEFORE_FIRST_APPLY_MANAGER, Operation::Update, version, None),
                    api_version: version.to_string(),
                    time: Some(self.now.to_string()),
                    set,
                });
            }
        }

        let me = Identity::new(
            self.manager,
            Operation::Apply,
            self.api_version,
            self.subresource,
        );
        let previous = entries
            .iter()
            .position(|e| e.id == me)
            .map(|i| entries.remove(i));
        let config_set = self.own(typed::field_set(&config, shape).map_err(ApplyError::Invalid)?);
        let mut merged = typed::merge(&live_obj, &config, shape).map_err(ApplyError::Invalid)?;

        // Prune what this manager stopped applying and nobody else owns.
        if let Some(prev) = &previous {
            let owned = entries
                .iter()
                .fold(config_set.clone(), |acc, e| acc.union(&e.set));
            for path in prev.set.difference(&config_set).paths() {
                if !owned.has_at_or_below(&path) {
                    typed::remove(&mut merged, shape, &path, &owned);
                }
            }
        }

        // Take what changed away from the other managers, or refuse.
        let cmp = self.compare(&live_obj, &merged);
        let changed = cmp.added.union(&cmp.modified);
        let conflicts: Vec<(Identity, Set)> = entries
            .iter()
            .map(|e| (e.id.clone(), e.set.intersection(&changed)))
            .filter(|(_, s)| !s.is_empty())
            .collect();
        if !force && !conflicts.is_empty() {
            return Err(conflict_error(conflicts));
        }
        for e in &mut entries {
            e.set = e.set.difference(&changed).difference(&cmp.removed);
        }
        entries.retain(|e| !e.set.is_empty());

        let object_changed = merged != live_obj;
        let time = match previous {
            Some(p) if p.set == config_set && !object_changed && p.time.is_some() => p.time,
            _ => Some(self.now.to_string()),
        };
        if !config_set.is_empty() {
            entries.push(Entry {
                id: me,
                api_version: self.api_version.to_string(),
                time,
                set: config_set,
            });
        }
        managed::cap_updates(&mut entries);
        managed::store(&mut merged, &entries);
        let changed = live != Some(&merged);
        Ok(ApplyOutcome {
            object: merged,
            changed,
        })
    }
    /// Rejects applied configurations Kubernetes rejects before merging.
    fn check(&self, applied: &Value) -> Result<(), ApplyError> {
        let invalid = |m: String| Err(ApplyError::Invalid(m));
        let Value::Object(obj) = applied else {
            return invalid("the applied configuration must be a JSON object".into());
        };
        let text = |k: &str| obj.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        match text("apiVersion") {
            None => return invalid("apiVersion must be set in the applied configuration".into()),
            Some(v) if v != self.api_version => {
                return invalid(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                self.api_version
            ))
            }
            Some(_) => {}
        }
        match text("kind") {
            None => return invalid("kind must be set in the applied configuration".into()),
            Some(k) if k != self.kind => {
                return invalid(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    self.kind
                ))
            }
            Some(_) => {}
        }
        let meta = obj.get("metadata");
        if meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return invalid("metadata.name must be set in the applied configuration".into());
        }
        if meta
            .and_then(|m| m.get("managedFields"))
            .is_some_and(|m| !m.is_null())
        {
            return invalid("metadata.managedFields must be nil".into());
        }
        Ok(())
    }
}

/// `v` without object fields set to null: a null in an applied
/// configuration is read as "not applied".
fn without_nulls(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// Kubernetes' conflict error: managers sorted, paths in set order.
fn conflict_error(mut conflicts: Vec<(Identity, Set)>) -> ApplyError {
    conflicts.sort_by(|a, b| a.0.cmp(&b.0));
    let mut causes = Vec::new();
    let mut lines = Vec::new();
    for (id, set) in &conflicts {
        lines.push(format!("conflicts with {}:", id.describe()));
        for path in set.paths() {
            let p = display(&path);
            lines.push(format!("- {p}"));
            causes.push((p, id.manager.clone()));
        }
    }
    let message = if causes.len() == 1 {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            conflicts[0].0.describe(),
            causes[0].0
        )
    } else {
        format!(
            "Apply failed with {} conflicts: {}",
            causes.len(),
            lines.join("\n")
        )
    };
    ApplyError::Conflict { message, causes }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::fixtures::{apply_deploy, deployment, entry, fields, T0, T1, T2};
    use crate::{apply, track_update, ApplyError, FieldManager};

    #[test]
    fn create_by_apply_records_an_apply_entry_shaped_like_kubernetes() {
        let out = apply_deploy(None, &deployment(3, "nginx:1.25"), "kubectl", false, T0).unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
        let e = entry(&out, "kubectl").unwrap();
        assert_eq!(
            *e,
            json!({
                "manager": "kubectl",
                "operation": "Apply",
                "apiVersion": "apps/v1",
                "time": T0,
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {
                        "f:replicas": {},
                        "f:selector": {},
                        "f:template": {
                            "f:metadata": {"f:labels": {"f:app": {}}},
                            "f:spec": {"f:containers": {
                                "k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}
                            }}
                        }
                    }
                }
            })
        );
        assert_eq!(
            out["metadata"]["managedFields"].as_array().unwrap().len(),
            1
        );
    }

    #[test]
    fn re_applying_unchanged_intent_is_identical() {
        let intent = deployment(3, "nginx:1.25");
        let first = apply_deploy(None, &intent, "kubectl", false, T0).unwrap();
        let fm = FieldManager::new("kubectl", "apps/v1", "Deployment", T1);
        let again = fm.apply(Some(&first), &intent, false).unwrap();
        assert_eq!(again.object, first);
        assert!(!again.changed);
    }

    #[test]
    fn two_managers_applying_different_fields_co_own_the_object() {
        let live = apply_deploy(None, &deployment(3, "nginx:1.25"), "kubectl", false, T0).unwrap();
        let labels = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"team": "blue"}}});
        let out = apply_deploy(Some(&live), &labels, "labeller", false, T1).unwrap();
        assert_eq!(
            out["metadata"]["labels"],
            json!({"app": "web", "team": "blue"})
        );
        assert_eq!(
            *fields(&out, "labeller"),
            json!({"f:metadata": {"f:labels": {"f:team": {}}}})
        );
        assert_eq!(fields(&out, "kubectl")["f:spec"]["f:replicas"], json!({}));
        // The same value applied by two managers is owned by both, no conflict.
        let same = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 3}});
        let out = apply_deploy(Some(&out), &same, "other", false, T2).unwrap();
        assert_eq!(fields(&out, "other")["f:spec"]["f:replicas"], json!({}));
        assert_eq!(fields(&out, "kubectl")["f:spec"]["f:replicas"], json!({}));
    }

    #[test]
    fn conflict_between_two_apply_managers_uses_kubernetes_message() {
        let live = apply_deploy(None, &deployment(3, "nginx:1.25"), "kubectl", false, T0).unwrap();
        let scale = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 5}});
        let err = apply_deploy(Some(&live), &scale, "hpa", false, T1).unwrap_err();
        assert_eq!(
            err,
            ApplyError::Conflict {
                message: "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
                    .into(),
                causes: vec![(".spec.replicas".into(), "kubectl".into())],
            }
        );
    }

    #[test]
    fn several_conflicts_are_listed_per_manager() {
        let live = apply_deploy(None, &deployment(3, "nginx:1.25"), "kubectl", false, T0).unwrap();
        let err =
            apply_deploy(Some(&live), &deployment(5, "nginx:1.27"), "ci", false, T1).unwrap_err();
        let ApplyError::Conflict { message, causes } = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            message,
            "Apply failed with 2 conflicts: conflicts with \"kubectl\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image"
        );
        assert_eq!(causes.len(), 2);
    }

    #[test]
    fn force_moves_ownership_to_the_applier() {
        let live = apply_deploy(None, &deployment(3, "nginx:1.25"), "kubectl", false, T0).unwrap();
        let scale = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 5}});
        let out = apply_deploy(Some(&live), &scale, "hpa", true, T1).unwrap();
        assert_eq!(out["spec"]["replicas"], 5);
        assert_eq!(*fields(&out, "hpa"), json!({"f:spec": {"f:replicas": {}}}));
        assert!(fields(&out, "kubectl")["f:spec"]
            .get("f:replicas")
            .is_none());
        // kubectl now conflicts with hpa when it re-applies replicas 3.
        let err = apply_deploy(
            Some(&out),
            &deployment(3, "nginx:1.25"),
            "kubectl",
            false,
            T2,
        )
        .unwrap_err();
        assert!(
            matches!(err, ApplyError::Conflict { ref causes, .. } if causes[0].1 == "hpa"),
            "{err:?}"
        );
    }

    #[test]
    fn a_field_dropped_from_the_applied_config_is_removed() {
        let live = apply_deploy(None, &deployment(3, "nginx:1.25"), "kubectl", false, T0).unwrap();
        let mut intent = deployment(3, "nginx:1.25");
        intent["metadata"].as_object_mut().unwrap().remove("labels");
        intent["spec"].as_object_mut().unwrap().remove("replicas");
        let out = apply_deploy(Some(&live), &intent, "kubectl", false, T1).unwrap();
        assert!(out["spec"].get("replicas").is_none(), "{out:#}");
        assert!(out["metadata"].get("labels").is_none(), "{out:#}");
        assert!(fields(&out, "kubectl").get("f:metadata").is_none());
        assert_eq!(entry(&out, "kubectl").unwrap()["time"], T1);
    }

    #[test]
    fn a_field_dropped_but_co_owned_stays() {
        let live = apply_deploy(None, &deployment(3, "nginx:1.25"), "kubectl", false, T0).unwrap();
        let same = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 3}});
        let live = apply_deploy(Some(&live), &same, "other", false, T1).unwrap();
        let mut intent = deployment(3, "nginx:1.25");
        intent["spec"].as_object_mut().unwrap().remove("replicas");
        let out = apply_deploy(Some(&live), &intent, "kubectl", false, T2).unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(
            *fields(&out, "other"),
            json!({"f:spec": {"f:replicas": {}}})
        );
    }

    #[test]
    fn an_update_manager_then_an_apply_of_its_field_conflicts() {
        let live = apply_deploy(None, &deployment(3, "nginx:1.25"), "kubectl", false, T0).unwrap();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        let scaled = track_update(
            Some(&live),
            &scaled,
            "kubectl-scale",
            "apps/v1",
            "Deployment",
            T1,
        );
        let e = entry(&scaled, "kubectl-scale").unwrap();
        assert_eq!(e["operation"], "Update");
        assert_eq!(e["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
        assert_eq!(e["time"], T1);
        // The Update took replicas away from the applier.
        assert!(fields(&scaled, "kubectl")["f:spec"]
            .get("f:replicas")
            .is_none());

        let err = apply_deploy(
            Some(&scaled),
            &deployment(3, "nginx:1.25"),
            "kubectl",
            false,
            T2,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-scale\" using apps/v1: .spec.replicas"
        );
        // Applying without replicas is fine, and does not remove them: kubectl-scale owns them.
        let mut intent = deployment(3, "nginx:1.25");
        intent["spec"].as_object_mut().unwrap().remove("replicas");
        let out = apply_deploy(Some(&scaled), &intent, "kubectl", false, T2).unwrap();
        assert_eq!(out["spec"]["replicas"], 5);
    }

    #[test]
    fn containers_merge_by_name_with_per_field_ownership() {
        let live = apply_deploy(None, &deployment(3, "nginx:1.25"), "kubectl", false, T0).unwrap();
        let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [
            {"name": "log", "image": "fluent-bit:3"},
            {"name": "nginx", "env": [{"name": "MODE", "value": "prod"}]}
        ]}}}});
        let out = apply_deploy(Some(&live), &sidecar, "mesh", false, T1).unwrap();
        let containers = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(
            *containers,
            json!([
                {"name": "log", "image": "fluent-bit:3"},
                {"name": "nginx", "image": "nginx:1.25", "env": [{"name": "MODE", "value": "prod"}]}
            ])
        );
        let mesh = &fields(&out, "mesh")["f:spec"]["f:template"]["f:spec"]["f:containers"];
        assert_eq!(
            mesh["k:{\"name\":\"nginx\"}"],
            json!({".": {}, "f:env": {"k:{\"name\":\"MODE\"}": {".": {}, "f:name": {}, "f:value": {}}}, "f:name": {}})
        );
        // The image is still kubectl's alone: changing it conflicts with kubectl only.
        let image = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}});
        let err = apply_deploy(Some(&out), &image, "mesh", false, T2).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.template.spec.containers[name=\"nginx\"].image"
        );
        // The mesh dropping its sidecar removes it; nginx stays (kubectl owns it), minus env.
        let out = apply_deploy(
            Some(&out),
            &json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}}),
            "mesh",
            false,
            T2,
        )
        .unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "nginx", "image": "nginx:1.25"}])
        );
        assert!(entry(&out, "mesh").is_none());
    }

    #[test]
    fn container_ports_are_keyed_by_port_and_defaulted_protocol() {
        let mut intent = deployment(1, "nginx");
        intent["spec"]["template"]["spec"]["containers"][0]["ports"] =
            json!([{"containerPort": 80}]);
        let out = apply_deploy(None, &intent, "kubectl", false, T0).unwrap();
        let c = &fields(&out, "kubectl")["f:spec"]["f:template"]["f:spec"]["f:containers"]
            ["k:{\"name\":\"nginx\"}"];
        assert_eq!(
            c["f:ports"],
            json!({"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}})
        );
    }

    #[test]
    fn finalizers_are_a_set_owned_value_by_value() {
        let cm = |finalizers: Value| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "finalizers": finalizers}})
        };
        let live = apply(
            None,
            &cm(json!(["a.io/x"])),
            "one",
            false,
            "v1",
            "ConfigMap",
            T0,
        )
        .unwrap();
        let live = apply(
            Some(&live),
            &cm(json!(["b.io/y"])),
            "two",
            false,
            "v1",
            "ConfigMap",
            T1,
        )
        .unwrap();
        assert_eq!(live["metadata"]["finalizers"], json!(["a.io/x", "b.io/y"]));
        assert_eq!(
            *fields(&live, "two"),
            json!({"f:metadata": {"f:finalizers": {"v:\"b.io/y\"": {}}}})
        );
        let out = apply(
            Some(&live),
            &cm(json!([])),
            "one",
            false,
            "v1",
            "ConfigMap",
            T2,
        )
        .unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b.io/y"]));
    }

    #[test]
    fn atomic_lists_are_replaced_whole_and_owned_whole() {
        let mut intent = deployment(1, "nginx");
        intent["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["-a", "-b"]);
        intent["spec"]["template"]["spec"]["tolerations"] =
            json!([{"key": "k", "operator": "Exists"}]);
        let live = apply_deploy(None, &intent, "kubectl", false, T0).unwrap();
        let spec = &fields(&live, "kubectl")["f:spec"]["f:template"]["f:spec"];
        assert_eq!(spec["f:tolerations"], json!({}));
        assert_eq!(
            spec["f:containers"]["k:{\"name\":\"nginx\"}"]["f:args"],
            json!({})
        );

        intent["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["-c"]);
        intent["spec"]["template"]["spec"]["tolerations"] =
            json!([{"key": "other", "operator": "Exists"}]);
        let out = apply_deploy(Some(&live), &intent, "kubectl", false, T1).unwrap();
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["-c"])
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "other", "operator": "Exists"}])
        );
        // Another manager setting one toleration conflicts on the whole list.
        let mut other = deployment(1, "nginx");
        other["spec"]["template"]["spec"]["tolerations"] =
            json!([{"key": "x", "operator": "Exists"}]);
        let err = apply_deploy(Some(&out), &other, "x", false, T2).unwrap_err();
        let ApplyError::Conflict { causes, .. } = err else {
            panic!()
        };
        assert_eq!(
            causes,
            [(
                ".spec.template.spec.tolerations".to_string(),
                "kubectl".to_string()
            )]
        );
    }

    #[test]
    fn invalid_applied_configurations_are_refused() {
        let no_name = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}});
        let wrong_kind =
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "a"}});
        let with_mf = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "managedFields": [{"manager": "x"}]}});
        let mut dup = deployment(1, "nginx");
        dup["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "a"}]);
        let mut keyless = deployment(1, "nginx");
        keyless["spec"]["template"]["spec"]["containers"] = json!([{"image": "a"}]);
        for bad in [json!([1]), no_name, wrong_kind, with_mf, dup, keyless] {
            assert!(
                matches!(
                    apply_deploy(None, &bad, "m", false, T0),
                    Err(ApplyError::Invalid(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn owner_references_merge_by_uid_and_custom_resources_have_atomic_lists() {
        let cr = |refs: Value, items: Value| {
            json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "ownerReferences": refs}, "spec": {"items": items, "size": {"x": 1}}})
        };
        let a = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": "u1"}]);
        let live = apply(
            None,
            &cr(a, json!([1, 2])),
            "one",
            false,
            "example.com/v1",
            "Widget",
            T0,
        )
        .unwrap();
        let b = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "b", "uid": "u2"}]);
        let err = apply(
            Some(&live),
            &cr(b.clone(), json!([3])),
            "two",
            false,
            "example.com/v1",
            "Widget",
            T1,
        )
        .unwrap_err();
        let ApplyError::Conflict { causes, .. } = err else {
            panic!()
        };
        assert_eq!(causes, [(".spec.items".to_string(), "one".to_string())]);
        let out = apply(
            Some(&live),
            &cr(b, json!([1, 2])),
            "two",
            false,
            "example.com/v1",
            "Widget",
            T1,
        )
        .unwrap();
        assert_eq!(
            out["metadata"]["ownerReferences"].as_array().unwrap().len(),
            2
        );
        assert_eq!(
            fields(&out, "two")["f:metadata"]["f:ownerReferences"]["k:{\"uid\":\"u2\"}"]["f:name"],
            json!({})
        );
        assert_eq!(
            fields(&out, "two")["f:spec"],
            json!({"f:items": {}, "f:size": {"f:x": {}}})
        );
    }

    #[test]
    fn subresource_appliers_are_named_with_their_subresource_in_conflicts() {
        let mut obj = deployment(1, "nginx");
        obj["status"] = json!({"replicas": 1});
        let status = FieldManager::new("kcm", "apps/v1", "Deployment", T0).subresource("status");
        let live = status.apply(None, &obj, false).unwrap().object;
        assert_eq!(entry(&live, "kcm").unwrap()["subresource"], "status");
        obj["status"]["replicas"] = json!(2);
        let err = status
            .subresource("scale")
            .apply(Some(&live), &obj, false)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Apply failed with 1 conflict: conflict with \"kcm\" with subresource \"status\": .status.replicas"),
            "{err}"
        );
    }

    #[test]
    fn custom_resources_with_a_schema_merge_conditions_by_type() {
        let schema = crate::Schema::from_openapi_v3(&json!({"type": "object", "properties": {
            "status": {"type": "object", "properties": {"conditions": {
                "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                "items": {"type": "object", "properties": {"type": {"type": "string"}, "status": {"type": "string"}}}
            }}}
        }}));
        let cr = |ty: &str| {
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "status": {"conditions": [{"type": ty, "status": "True"}]}})
        };
        let fm = |m| FieldManager::new(m, "example.com/v1", "Widget", T0).with_schema(&schema);
        let live = fm("a").apply(None, &cr("Ready"), false).unwrap().object;
        let out = fm("b")
            .apply(Some(&live), &cr("Synced"), false)
            .unwrap()
            .object;
        assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 2);
        assert_eq!(
            fields(&out, "b")["f:status"]["f:conditions"]["k:{\"type\":\"Synced\"}"]["f:status"],
            json!({})
        );
    }
}
