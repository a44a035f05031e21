//! Serving CustomResourceDefinitions: a controller inside the API server
//! that watches CRDs and installs (or removes) a registry per served
//! version, reports the NamesAccepted and Established conditions, and, when
//! a CRD is deleted, deletes all its objects before letting the CRD go.
//!
//! It runs in every API server, so with several servers each one serves
//! every CRD; status writes are idempotent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kaji_apiextensions::strategy::{self as cr, CustomResourceStrategy, CLEANUP_FINALIZER};
use kaji_core::{ApiError, ResourceInfo};
use kaji_registry::{
    DeleteOptions, ListOptions, Part, Registry, WatchKind, WatchOptions, WriteOptions,
};
use serde_json::{json, Value};

use crate::{ApiServer, ResourceKey};

/// One served version of a custom resource.
pub(crate) struct CustomResource {
    pub registry: Arc<Registry>,
    pub columns: Vec<kaji_printers::CustomColumn>,
    /// The version's `schema.openAPIV3Schema` (`null` if it has none).
    pub schema: Value,
    /// The CRD is being deleted: no new objects.
    pub terminating: bool,
}

/// What one CRD installed.
struct Installed {
    spec: Value,
    terminating: bool,
    keys: Vec<ResourceKey>,
}

/// The custom resources served now.
#[derive(Default)]
pub(crate) struct Served {
    by_key: HashMap<ResourceKey, Arc<CustomResource>>,
    by_crd: HashMap<String, Installed>,
    generation: u64,
    /// CRDs whose objects are being deleted now: one cleanup task each,
    /// however many events a terminating CRD gets.
    cleaning: std::collections::HashSet<String>,
}

impl Served {
    /// Changes whenever what is served changes (for caches of documents
    /// derived from it, such as OpenAPI).
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Every served custom resource version with its schema, in the order
    /// of [`Served::infos`].
    pub(crate) fn schemas(&self) -> Vec<(&'static ResourceInfo, Value)> {
        self.infos()
            .into_iter()
            .filter_map(|info| {
                let key = (
                    info.group.to_string(),
                    info.version.to_string(),
                    info.plural.to_string(),
                );
                self.by_key.get(&key).map(|c| (info, c.schema.clone()))
            })
            .collect()
    }

    pub(crate) fn get(&self, key: &ResourceKey) -> Option<Arc<CustomResource>> {
        self.by_key.get(key).cloned()
    }

    /// Served custom resources by group, each group's versions in
    /// Kubernetes' priority order (the preferred version first).
    pub(crate) fn infos(&self) -> Vec<&'static ResourceInfo> {
        let mut infos: Vec<&'static ResourceInfo> =
            self.by_key.values().map(|c| c.registry.info()).collect();
        infos.sort_by(|a, b| {
            a.group
                .cmp(b.group)
                .then_with(|| kaji_apiextensions::crd::version_priority_cmp(b.version, a.version))
                .then_with(|| a.plural.cmp(b.plural))
        });
        infos
    }

    fn remove(&mut self, crd_name: &str) {
        self.generation += 1;
        if let Some(installed) = self.by_crd.remove(crd_name) {
            for key in installed.keys {
                self.by_key.remove(&key);
            }
        }
    }
}

fn crds(server: &ApiServer) -> Arc<Registry> {
    server
        .registry("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .expect("CRDs are built in")
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Installs every CRD in the store, then keeps following them.
pub(crate) async fn start(server: Arc<ApiServer>) {
    let rv = relist(&server).await.ok();
    tokio::spawn(follow(server, rv));
}

/// Syncs every CRD and drops what is no longer there; returns the list's
/// resourceVersion to watch from.
async fn relist(server: &Arc<ApiServer>) -> Result<String, ApiError> {
    let list = crds(server).list(None, &ListOptions::default()).await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let present: Vec<&str> = items.iter().map(name_of).collect();
    {
        let mut served = server.custom.write().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<String> = served
            .by_crd
            .keys()
            .filter(|n| !present.contains(&n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            served.remove(&name);
        }
    }
    // Already-accepted CRDs first, so a newcomer cannot take their names.
    let mut ordered = items.clone();
    ordered.sort_by_key(|c| c.pointer("/status/acceptedNames/plural").is_none());
    for crd in &ordered {
        sync(server, crd).await;
    }
    Ok(list
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("0")
        .to_string())
}

async fn follow(server: Arc<ApiServer>, mut rv: Option<String>) {
    loop {
        let from = match rv.take() {
            Some(rv) => rv,
            None => match relist(&server).await {
                Ok(rv) => rv,
                Err(e) => {
                    tracing::warn!(error = %e, "listing CRDs failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let opts = WatchOptions {
            resource_version: Some(from),
            ..Default::default()
        };
        let mut events = match crds(&server).watch(None, opts).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "watching CRDs failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(ev) = events.next().await {
            match ev.kind {
                WatchKind::Added | WatchKind::Modified => sync(&server, &ev.object).await,
                WatchKind::Deleted => {
                    let name = name_of(&ev.object).to_string();
                    forget(&server, &name);
                    // Names it held may be free now for a CRD that wanted them.
                    retry_unaccepted(&server).await;
                }
                _ => break, // ERROR (compacted) or bookmark-less end: relist.
            }
        }
    }
}

/// Syncs every CRD that is not served (its names were taken).
async fn retry_unaccepted(server: &Arc<ApiServer>) {
    let Ok(list) = crds(server).list(None, &ListOptions::default()).await else {
        return;
    };
    let waiting: Vec<Value> = {
        let served = server.custom.read().unwrap_or_else(|p| p.into_inner());
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| !served.by_crd.contains_key(name_of(c)))
            .cloned()
            .collect()
    };
    for crd in &waiting {
        sync(server, crd).await;
    }
}

fn forget(server: &ApiServer, name: &str) {
    server
        .custom
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .remove(name);
    server
        .accepted_crds
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|c| name_of(c) != name);
}

/// Brings serving and status in line with one CRD.
async fn sync(server: &Arc<ApiServer>, crd: &Value) {
    let name = name_of(crd).to_string();
    let terminating = crd.pointer("/metadata/deletionTimestamp").is_some();
    let accepted_before = server
        .accepted_crds
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|c| name_of(c) == name);
    if !accepted_before {
        let others: Vec<Value> = server
            .accepted_crds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let conflicts = kaji_apiextensions::crd::name_conflicts(crd, &others);
        if !conflicts.is_empty() {
            let message = conflicts
                .iter()
                .map(|c| c.message.clone())
                .collect::<Vec<_>>()
                .join(", ");
            write_status(server, &name, false, Some(&message)).await;
            return;
        }
    }
    if let Err(e) = install(server, crd, terminating) {
        tracing::warn!(crd = %name, error = %e, "cannot serve CRD");
        return;
    }
    {
        let mut accepted = server
            .accepted_crds
            .write()
            .unwrap_or_else(|p| p.into_inner());
        accepted.retain(|c| name_of(c) != name);
        accepted.push(crd.clone());
    }
    write_status(server, &name, true, None).await;
    let finalizing = crd
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == CLEANUP_FINALIZER));
    let start_cleanup = terminating
        && finalizing
        && server
            .custom
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .cleaning
            .insert(name.clone());
    if start_cleanup {
        let server = server.clone();
        tokio::spawn(async move {
            cleanup(&server, &name).await;
            server
                .custom
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .cleaning
                .remove(&name);
        });
    }
}

/// Installs a registry for every served version (replacing what the CRD
/// served before).
fn install(server: &ApiServer, crd: &Value, terminating: bool) -> Result<(), cr::DefinitionError> {
    let name = name_of(crd).to_string();
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    {
        let served = server.custom.read().unwrap_or_else(|p| p.into_inner());
        if let Some(installed) = served.by_crd.get(&name) {
            if installed.spec == spec && installed.terminating == terminating {
                return Ok(());
            }
        }
    }
    let mut built = Vec::new();
    for version in cr::served_versions(crd) {
        let strategy = CustomResourceStrategy::new(crd, &version)?;
        let info = kaji_registry::Strategy::info(&strategy);
        let key = (
            info.group.to_string(),
            info.version.to_string(),
            info.plural.to_string(),
        );
        let columns = cr::version_spec(crd, &version)
            .map(kaji_printers::custom_columns)
            .unwrap_or_default();
        let schema = cr::version_spec(crd, &version)
            .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
            .cloned()
            .unwrap_or(Value::Null);
        let registry = Registry::new(server.store.clone(), Arc::new(strategy));
        let registry = registry.with_admission(server.admission.clone());
        built.push((
            key,
            Arc::new(CustomResource {
                registry: Arc::new(registry),
                columns,
                schema,
                terminating,
            }),
        ));
    }
    let mut served = server.custom.write().unwrap_or_else(|p| p.into_inner());
    served.remove(&name);
    let keys = built.iter().map(|(k, _)| k.clone()).collect();
    served.by_key.extend(built);
    served.by_crd.insert(
        name,
        Installed {
            spec,
            terminating,
            keys,
        },
    );
    Ok(())
}

fn condition(type_: &str, ok: bool, reason: &str, message: &str) -> Value {
    json!({
        "type": type_,
        "status": if ok { "True" } else { "False" },
        "reason": reason,
        "message": message,
    })
}

/// Writes NamesAccepted/Established (and Terminating) if they changed,
/// keeping each condition's lastTransitionTime while its status holds.
async fn write_status(server: &ApiServer, name: &str, accepted: bool, conflict: Option<&str>) {
    let registry = crds(server);
    for _ in 0..5 {
        let Ok(current) = registry.get(None, name).await else {
            return;
        };
        let terminating = current.pointer("/metadata/deletionTimestamp").is_some();
        let mut wanted = vec![if accepted {
            condition("NamesAccepted", true, "NoConflicts", "no conflicts found")
        } else {
            condition(
                "NamesAccepted",
                false,
                "NameConflict",
                conflict.unwrap_or("names conflict"),
            )
        }];
        wanted.push(if accepted {
            condition(
                "Established",
                true,
                "InitialNamesAccepted",
                "the initial names have been accepted",
            )
        } else {
            condition(
                "Established",
                false,
                "NotAccepted",
                "not all names are accepted",
            )
        });
        if terminating {
            wanted.push(condition(
                "Terminating",
                true,
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
            ));
        }
        let old_conditions = current
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let conditions: Vec<Value> = wanted
            .into_iter()
            .map(|mut c| {
                let same = old_conditions
                    .iter()
                    .find(|o| o["type"] == c["type"] && o["status"] == c["status"]);
                c["lastTransitionTime"] = same
                    .and_then(|o| o.get("lastTransitionTime").cloned())
                    .unwrap_or_else(|| now.clone().into());
                c
            })
            .collect();
        let mut updated = current.clone();
        updated["status"]["conditions"] = Value::Array(conditions);
        if accepted {
            let mut names = current.pointer("/spec/names").cloned().unwrap_or(json!({}));
            if let Some(n) = names.as_object_mut() {
                n.retain(|_, v| !v.is_null());
            }
            updated["status"]["acceptedNames"] = names;
        }
        if updated == current {
            return;
        }
        match registry
            .update(None, name, updated, Part::Status, &WriteOptions::default())
            .await
        {
            Ok(_) => return,
            Err(e) if e.code == 409 => continue,
            Err(e) if e.code == 404 => return,
            Err(e) => {
                tracing::warn!(crd = %name, error = %e, "updating CRD status failed");
                return;
            }
        }
    }
}

/// Deletes every object of a deleted CRD, then removes the cleanup
/// finalizer so the CRD goes. Objects held by their own finalizers are
/// waited for.
async fn cleanup(server: &Arc<ApiServer>, name: &str) {
    let registry = crds(server);
    loop {
        let Ok(crd) = registry.get(None, name).await else {
            return;
        };
        let holds = crd
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == CLEANUP_FINALIZER));
        if !holds {
            return;
        }
        let storage = cr::storage_version(&crd).unwrap_or_default();
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("");
        let plural = crd
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or("");
        let remaining = match server.registry(group, &storage, plural) {
            Some(objects) => delete_all(&objects).await,
            None => Ok(0),
        };
        match remaining {
            Ok(0) => {
                let mut done = crd.clone();
                if let Some(f) = done
                    .pointer_mut("/metadata/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    f.retain(|x| x != CLEANUP_FINALIZER);
                }
                match registry
                    .update(None, name, done, Part::Main, &WriteOptions::default())
                    .await
                {
                    Ok(_) | Err(ApiError { code: 404, .. }) => return,
                    Err(e) if e.code == 409 => continue,
                    Err(e) => {
                        tracing::warn!(crd = %name, error = %e, "removing the cleanup finalizer failed")
                    }
                }
            }
            Ok(n) => {
                tracing::debug!(crd = %name, remaining = n, "waiting for custom resources to go")
            }
            Err(e) => tracing::warn!(crd = %name, error = %e, "deleting custom resources failed"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Deletes every object not already being deleted; returns how many remain.
async fn delete_all(objects: &Registry) -> Result<usize, ApiError> {
    let list = objects.list(None, &ListOptions::default()).await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    for item in &items {
        if item.pointer("/metadata/deletionTimestamp").is_some() {
            continue;
        }
        let ns = item.pointer("/metadata/namespace").and_then(Value::as_str);
        match objects
            .delete(ns, name_of(item), &DeleteOptions::default())
            .await
        {
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(items.len())
}
