//! Ownership for every write that is not an apply: create, update, patch,
//! and their subresources — structured-merge-diff's `Updater.Update` with
//! Kubernetes' `managedFieldsUpdater` around it.

use serde_json::{Map, Value};

use crate::managed::{self, Entry, Identity, Operation};
use crate::FieldManager;

impl FieldManager<'_> {
    /// Records a non-apply write; see [`crate::track_update`].
    ///
    /// The managers are read from `new` when it carries managedFields (a
    /// client may set them directly; `[{}]` resets them), otherwise from
    /// `old`. As in Kubernetes, an update of an object that has no
    /// managedFields is not tracked, and the entry's `time` moves only when
    /// the manager changed or added a field. More than
    /// [`crate::MAX_UPDATE_MANAGERS`] `Update` entries are folded into
    /// [`crate::ANCIENT_CHANGES_MANAGER`].
    pub fn update(&self, old: Option<&Value>, new: &Value) -> Value {
        let old_obj = old.map_or_else(|| Value::Object(Map::new()), managed::without);
        let mut new_obj = managed::without(new);
        let mut entries = if managed::asks_reset(new) {
            Vec::new()
        } else {
            match managed::decode(new) {
                Ok(es) if !es.is_empty() && self.subresource.is_none() => es,
                _ => old
                    .and_then(|o| managed::decode(o).ok())
                    .unwrap_or_default(),
            }
        };
        if old.is_some() && entries.is_empty() {
            return new_obj;
        }

        let cmp = self.compare(&old_obj, &new_obj);
        let changed = cmp.added.union(&cmp.modified);
        for e in &mut entries {
            e.set = e.set.difference(&changed).difference(&cmp.removed);
        }
        let mine = self.own(changed);
        if !mine.is_empty() {
            let me = Identity::new(
                self.manager,
                Operation::Update,
                self.api_version,
                self.subresource,
            );
            let set = match entries.iter().position(|e| e.id == me) {
                Some(i) => entries.remove(i).set.union(&mine),
                None => mine,
            };
            entries.push(Entry {
                id: me,
                api_version: self.api_version.to_string(),
                time: Some(self.now.to_string()),
                set,
            });
        }
        entries.retain(|e| !e.set.is_empty());
        managed::cap_updates(&mut entries);
        managed::store(&mut new_obj, &entries);
        new_obj
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::fixtures::{apply_deploy, deployment, entry, fields, T0, T1, T2};
    use crate::{track_update, FieldManager};

    #[test]
    fn track_update_on_create_owns_every_field_and_drops_empty_managers() {
        let obj = deployment(2, "nginx");
        let created = track_update(
            None,
            &obj,
            "kube-controller-manager",
            "apps/v1",
            "Deployment",
            T0,
        );
        let f = fields(&created, "kube-controller-manager");
        assert_eq!(f["f:spec"]["f:replicas"], json!({}));
        assert!(f.get("f:apiVersion").is_none() && f["f:metadata"].get("f:name").is_none());
        assert_eq!(f["f:metadata"]["f:labels"], json!({".": {}, "f:app": {}}));

        // A second updater takes every field it changes; the first keeps the rest.
        let mut next = created.clone();
        next["spec"]["replicas"] = json!(4);
        let out = track_update(Some(&created), &next, "scaler", "apps/v1", "Deployment", T1);
        assert!(fields(&out, "kube-controller-manager")["f:spec"]
            .get("f:replicas")
            .is_none());
        // An update changing nothing leaves everything, times included, alone.
        let same = track_update(Some(&out), &out, "noop", "apps/v1", "Deployment", T2);
        assert_eq!(same, out);
        // An updater losing its only field is dropped.
        let mut back = out.clone();
        back["spec"]["replicas"] = json!(2);
        let out = track_update(
            Some(&out),
            &back,
            "kube-controller-manager",
            "apps/v1",
            "Deployment",
            T2,
        );
        assert!(entry(&out, "scaler").is_none());
    }

    #[test]
    fn updates_of_objects_without_managed_fields_are_not_tracked_and_apply_seeds_before_first_apply(
    ) {
        let old = deployment(1, "nginx");
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(2);
        let out = track_update(Some(&old), &new, "edit", "apps/v1", "Deployment", T0);
        assert!(out["metadata"].get("managedFields").is_none());

        let err =
            apply_deploy(Some(&out), &deployment(3, "nginx"), "kubectl", false, T1).unwrap_err();
        assert!(
            err.to_string()
                .contains("conflict with \"before-first-apply\" using apps/v1: .spec.replicas"),
            "{err}"
        );
    }

    #[test]
    fn status_subresource_entries_carry_the_subresource_and_ignore_the_spec() {
        let live = apply_deploy(None, &deployment(1, "nginx"), "kubectl", false, T0).unwrap();
        let mut new = live.clone();
        new["status"] =
            json!({"replicas": 1, "conditions": [{"type": "Available", "status": "True"}]});
        new["spec"]["replicas"] = json!(9);
        let fm = FieldManager::new("kcm", "apps/v1", "Deployment", T1)
            .subresource("status")
            .ignoring(&["spec", "metadata"]);
        let out = fm.update(Some(&live), &new);
        let e = entry(&out, "kcm").unwrap();
        assert_eq!(e["subresource"], "status");
        assert_eq!(
            e["fieldsV1"],
            json!({"f:status": {"f:conditions": {".": {}, "k:{\"type\":\"Available\"}": {".": {}, "f:status": {}, "f:type": {}}}, "f:replicas": {}}})
        );
    }

    #[test]
    fn update_managers_beyond_ten_fold_into_ancient_changes() {
        let mut obj = track_update(
            None,
            &deployment(1, "nginx"),
            "creator",
            "apps/v1",
            "Deployment",
            T0,
        );
        for i in 0..12 {
            let mut next = obj.clone();
            next["metadata"]["labels"][format!("l{i}")] = json!("x");
            let now = format!("2024-01-01T01:{i:02}:00Z");
            obj = track_update(
                Some(&obj),
                &next,
                &format!("m{i}"),
                "apps/v1",
                "Deployment",
                &now,
            );
        }
        let entries = obj["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(entries.len(), 10);
        assert!(entry(&obj, "ancient-changes").is_some());
        assert!(entry(&obj, "m11").is_some());
    }

    #[test]
    fn an_update_sending_an_empty_managed_fields_entry_resets_them() {
        let live = apply_deploy(None, &deployment(1, "nginx"), "kubectl", false, T0).unwrap();
        let mut new = live.clone();
        new["metadata"]["managedFields"] = json!([{}]);
        let out = track_update(Some(&live), &new, "editor", "apps/v1", "Deployment", T1);
        assert!(out["metadata"].get("managedFields").is_none(), "{out:#}");
    }
}
