//! The generic store: create, get, update (with the guaranteed-update loop),
//! patch, delete and the status and scale subresources.

use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use kaji_core::{ApiError, Cause, ResourceInfo};
use kaji_patch::PatchType;
use kaji_store::{KeyValue, Store, StoreError};
use serde_json::{json, Map, Value};

use crate::admission::{Admission, Attributes, Operation};
use crate::allocate::Allocation;
use crate::strategy::{ScalePaths, Strategy};
use crate::typed;

/// How to treat fields the kind's schema does not know (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and warn (the server default).
    #[default]
    Warn,
    /// Reject the request with 400.
    Strict,
}

/// Options common to writes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `dryRun=All`: run everything but the store write.
    pub dry_run: bool,
    /// `fieldManager`.
    pub field_manager: Option<String>,
    /// `fieldValidation`.
    pub field_validation: FieldValidation,
    /// `force` (server-side apply only): take ownership of conflicting fields.
    pub force: bool,
}

/// `DeleteOptions`, from the body or the query.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`: Orphan, Background or Foreground.
    pub propagation_policy: Option<String>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The object as stored (or as it would be, for a dry run).
    pub object: Value,
    /// Warnings for the `Warning` header (unknown fields under `Warn`).
    pub warnings: Vec<String>,
    /// True when the write created the object (201).
    pub created: bool,
}

/// How one write attempt ended.
enum Step {
    /// Nothing was written (a dry run, or an update that changes nothing).
    Done(Value),
    /// The object was written.
    Written(Value),
    /// The object was deleted (its last finalizer went).
    Deleted(Value),
    /// Lost a race: try again.
    Retry,
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main endpoint: everything but status.
    Main,
    /// The `/status` subresource: only status.
    Status,
    /// The namespace `/finalize` subresource: only `spec.finalizers`.
    Finalize,
    /// A server-internal change (binding) that bypasses update validation.
    Internal,
}

/// All verbs of one resource over the store.
pub struct Registry {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) strategy: Arc<dyn Strategy>,
    admission: Option<Arc<dyn Admission>>,
    /// Store changes decoded once for all watches.
    pub(crate) decoded: crate::watch::Decoded,
}

pub(crate) fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// Maps a store failure that the caller did not expect to a 500.
pub(crate) fn internal(e: StoreError) -> ApiError {
    match e {
        StoreError::Compacted { requested, .. } => {
            ApiError::expired(format!("too old resource version: {requested}"))
        }
        StoreError::FutureRevision { requested, current } => {
            let mut e = ApiError::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            ));
            e.retry_after_seconds = Some(1);
            e
        }
        other => ApiError::internal(other.to_string()),
    }
}

impl Registry {
    /// A registry for `strategy`'s resource on `store`.
    pub fn new(store: Arc<dyn Store>, strategy: Arc<dyn Strategy>) -> Self {
        Registry {
            store,
            strategy,
            admission: None,
            decoded: Default::default(),
        }
    }

    /// The same registry, with every write passing through `admission`.
    pub fn with_admission(mut self, admission: Arc<dyn Admission>) -> Self {
        self.admission = Some(admission);
        self
    }

    fn attributes<'a>(
        &self,
        operation: Operation,
        ns: Option<&'a str>,
        name: &'a str,
        part: Part,
        old_object: Option<&'a Value>,
        dry_run: bool,
    ) -> Attributes<'a> {
        Attributes {
            info: self.info(),
            subresource: match part {
                Part::Status => Some("status"),
                Part::Finalize => Some("finalize"),
                Part::Main | Part::Internal => None,
            },
            operation,
            namespace: ns.filter(|_| self.info().namespaced()),
            name,
            old_object,
            dry_run,
        }
    }

    /// Mutating admission, then the kind's defaults again if anything
    /// changed (as Kubernetes re-defaults webhook-mutated objects).
    async fn admit(
        &self,
        attrs: &Attributes<'_>,
        obj: &mut Value,
    ) -> Result<Vec<String>, ApiError> {
        let Some(admission) = &self.admission else {
            return Ok(Vec::new());
        };
        let before = obj.clone();
        let warnings = admission.mutate(attrs, obj).await?;
        if *obj != before {
            self.strategy.default(obj);
        }
        Ok(warnings)
    }

    async fn admit_validation(
        &self,
        attrs: &Attributes<'_>,
        obj: Option<&Value>,
    ) -> Result<Vec<String>, ApiError> {
        match &self.admission {
            Some(admission) => admission.validate(attrs, obj).await,
            None => Ok(Vec::new()),
        }
    }

    /// The resource served.
    pub fn info(&self) -> &'static ResourceInfo {
        self.strategy.info()
    }

    /// The strategy in use.
    pub fn strategy(&self) -> &Arc<dyn Strategy> {
        &self.strategy
    }

    pub(crate) fn key(&self, ns: Option<&str>, name: &str) -> String {
        match ns {
            Some(ns) if self.info().namespaced() => {
                format!("{}{ns}/{name}", self.info().key_prefix())
            }
            _ => format!("{}{name}", self.info().key_prefix()),
        }
    }

    pub(crate) fn prefix(&self, ns: Option<&str>) -> String {
        match ns {
            Some(ns) if self.info().namespaced() => format!("{}{ns}/", self.info().key_prefix()),
            _ => self.info().key_prefix(),
        }
    }

    pub(crate) fn decode(&self, kv: &KeyValue) -> Result<Value, ApiError> {
        let mut obj = decode_raw(kv)?;
        self.strategy.on_read(&mut obj);
        Ok(obj)
    }

    fn encode(&self, obj: &Value) -> Vec<u8> {
        let mut stored = obj.clone();
        meta_mut(&mut stored).remove("resourceVersion");
        self.strategy.to_storage(&mut stored);
        serde_json::to_vec(&stored).expect("a JSON value always serializes")
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(self.info().group, self.info().plural, name)
    }

    fn conflict(&self, name: &str) -> ApiError {
        ApiError::conflict(
            self.info().group,
            self.info().plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    fn invalid(&self, name: &str, causes: Vec<Cause>) -> ApiError {
        ApiError::invalid(self.info().group, self.info().kind, name, causes)
    }

    /// Reads one object.
    ///
    /// # Errors
    /// 404 if absent.
    pub async fn get(&self, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let (kv, _) = self
            .store
            .get(&self.key(ns, name), None)
            .await
            .map_err(internal)?;
        match kv {
            Some(kv) => self.decode(&kv),
            None => Err(self.not_found(name)),
        }
    }

    /// Checks apiVersion/kind, type-checks through the typed model and prunes
    /// unknown fields according to `validation`.
    fn normalize(
        &self,
        obj: Value,
        validation: FieldValidation,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let info = self.info();
        let api_version = info.api_version();
        let mut obj = obj;
        let Some(map) = obj.as_object_mut() else {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        };
        match map.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => {
                map.insert("apiVersion".into(), api_version.clone().into());
            }
            Some(v) if v == api_version => {}
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({v}) does not match the expected API version ({api_version})"
                )))
            }
        }
        match map.get("kind").and_then(Value::as_str) {
            None | Some("") => {
                map.insert("kind".into(), info.kind.into());
            }
            Some(k) if k == info.kind => {}
            Some(k) => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    info.kind
                )))
            }
        }
        let (normalized, unknown) = match typed::normalize(&api_version, info.kind, &obj) {
            Some(result) => {
                let normalized = result.map_err(|e| ApiError::bad_request(e.to_string()))?;
                let unknown = typed::unknown_fields(&obj, &normalized);
                (normalized, unknown)
            }
            None => {
                let unknown = self.strategy.prune(&mut obj);
                (obj, unknown)
            }
        };
        let messages: Vec<String> = unknown
            .iter()
            .map(|p| format!("unknown field \"{}\"", p.trim_start_matches('.')))
            .collect();
        match validation {
            FieldValidation::Strict if !messages.is_empty() => Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                messages.join(", ")
            ))),
            FieldValidation::Ignore => Ok((normalized, Vec::new())),
            _ => Ok((normalized, messages)),
        }
    }

    /// Type-checks `obj` and removes the fields its kind does not know,
    /// leaving everything else exactly as sent.
    fn prune_unknown(
        &self,
        obj: Value,
        validation: FieldValidation,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let mut original = obj.clone();
        let (normalized, warnings) = self.normalize(obj, validation)?;
        for k in ["apiVersion", "kind"] {
            if original.get(k).is_none() {
                original[k] = normalized[k].clone();
            }
        }
        match typed::normalize(&self.info().api_version(), self.info().kind, &original) {
            Some(Ok(n)) => {
                for path in typed::unknown_fields(&original, &n) {
                    typed::remove_path(&mut original, &path);
                }
            }
            Some(Err(_)) => {}
            // Without a typed model, normalizing only pruned: nothing was filled in.
            None => return Ok((normalized, warnings)),
        }
        Ok((original, warnings))
    }

    async fn check_namespace(&self, ns: &str, name: &str) -> Result<(), ApiError> {
        let (kv, _) = self
            .store
            .get(&format!("/registry/namespaces/{ns}"), None)
            .await
            .map_err(internal)?;
        let Some(kv) = kv else {
            return Err(ApiError::namespace_not_found(ns));
        };
        let namespace = decode_raw(&kv)?;
        if namespace.pointer("/metadata/deletionTimestamp").is_some()
            || namespace.pointer("/status/phase") == Some(&json!("Terminating"))
        {
            return Err(ApiError::namespace_terminating(
                self.info().group,
                self.info().plural,
                name,
                ns,
            ));
        }
        Ok(())
    }

    /// Creates an object (`POST`), honouring `generateName`.
    ///
    /// # Errors
    /// 400 for a malformed body, 404/403 for a missing/terminating namespace,
    /// 409 AlreadyExists, 422 Invalid.
    pub async fn create(
        &self,
        ns: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Outcome, ApiError> {
        self.create_inner(ns, body, opts, true).await
    }

    async fn create_inner(
        &self,
        ns: Option<&str>,
        body: Value,
        opts: &WriteOptions,
        track: bool,
    ) -> Result<Outcome, ApiError> {
        let info = self.info();
        let (mut obj, warnings) = self.normalize(body, opts.field_validation)?;
        let meta = meta_mut(&mut obj);
        if info.namespaced() {
            let ns = ns.ok_or_else(|| {
                ApiError::bad_request("a namespace is required for a namespaced resource")
            })?;
            match meta.get("namespace").and_then(Value::as_str) {
                Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => {
                    meta.insert("namespace".into(), ns.into());
                }
            }
        } else {
            meta.remove("namespace");
        }
        let generate = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
            && meta
                .get("generateName")
                .and_then(Value::as_str)
                .is_some_and(|g| !g.is_empty());
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(k);
        }
        meta.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
        meta.insert("creationTimestamp".into(), now().into());
        if self.strategy.tracks_generation() {
            meta.insert("generation".into(), 1.into());
        } else {
            meta.remove("generation");
        }
        self.strategy.prepare_for_create(&mut obj);
        self.strategy.default(&mut obj);
        let mut warnings = warnings;
        let initial_name = meta_str(&obj, "name").unwrap_or("").to_string();
        let attrs = self.attributes(
            Operation::Create,
            ns,
            &initial_name,
            Part::Main,
            None,
            opts.dry_run,
        );
        warnings.extend(self.admit(&attrs, &mut obj).await?);
        if let Some(manager) = opts.field_manager.as_deref().filter(|_| track) {
            let (api_version, ts) = (info.api_version(), now());
            obj = self
                .field_manager(manager, &api_version, &ts, Part::Main)
                .update(None, &obj);
        }

        let admission_warnings = std::sync::Mutex::new(Vec::new());
        for attempt in 0..8 {
            let mut candidate = obj.clone();
            if generate {
                let prefix = meta_str(&candidate, "generateName")
                    .unwrap_or("")
                    .to_string();
                let name =
                    kaji_core::validation::name_from_generate_name(&prefix, &random_suffix());
                meta_mut(&mut candidate).insert("name".into(), name.into());
            }
            let name = meta_str(&candidate, "name").unwrap_or("").to_string();
            let allocation = match self.strategy.allocator() {
                Some(a) => Some(a.allocate(&mut candidate, None, opts.dry_run).await?),
                None => None,
            };
            let result = async {
                let causes = self.strategy.validate(&candidate);
                if !causes.is_empty() {
                    return Err(self.invalid(&name, causes));
                }
                let attrs =
                    self.attributes(Operation::Create, ns, &name, Part::Main, None, opts.dry_run);
                let admitted = self.admit_validation(&attrs, Some(&candidate)).await?;
                admission_warnings
                    .lock()
                    .expect("not poisoned")
                    .extend(admitted);
                if let Some(ns) = ns.filter(|_| info.namespaced()) {
                    self.check_namespace(ns, &name).await?;
                }
                if opts.dry_run {
                    return Ok(Step::Done(candidate));
                }
                match self
                    .store
                    .create(&self.key(ns, &name), self.encode(&candidate))
                    .await
                {
                    Ok(kv) => {
                        meta_mut(&mut candidate)
                            .insert("resourceVersion".into(), kv.mod_revision.to_string().into());
                        Ok(Step::Written(candidate))
                    }
                    Err(StoreError::AlreadyExists { .. }) if generate && attempt < 7 => {
                        Ok(Step::Retry)
                    }
                    Err(StoreError::AlreadyExists { .. }) => {
                        Err(ApiError::already_exists(info.group, info.plural, &name))
                    }
                    Err(e) => Err(internal(e)),
                }
            }
            .await;
            self.settle(allocation, matches!(result, Ok(Step::Written(_))))
                .await;
            match result? {
                Step::Done(object) | Step::Written(object) | Step::Deleted(object) => {
                    warnings.extend(admission_warnings.into_inner().expect("not poisoned"));
                    return Ok(Outcome {
                        object,
                        warnings,
                        created: true,
                    });
                }
                Step::Retry => continue,
            }
        }
        unreachable!("the loop returns on its last attempt")
    }

    /// Replaces an object (`PUT`), on the main endpoint or `/status`.
    ///
    /// # Errors
    /// 404, 409 Conflict on a stale resourceVersion, 400, 422.
    pub async fn update(
        &self,
        ns: Option<&str>,
        name: &str,
        body: Value,
        part: Part,
        opts: &WriteOptions,
    ) -> Result<Outcome, ApiError> {
        let (body, warnings) = self.normalize(body, opts.field_validation)?;
        let mut outcome = self
            .guaranteed_update(ns, name, part, opts, |_| Ok(body.clone()))
            .await?;
        outcome.warnings = warnings;
        Ok(outcome)
    }

    /// Patches an object with any of the four patch types.
    ///
    /// # Errors
    /// 404, 409, 400 for a bad patch, 415 for strategic merge on kinds without a schema, 422.
    pub async fn patch(
        &self,
        ns: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: Value,
        part: Part,
        opts: &WriteOptions,
    ) -> Result<Outcome, ApiError> {
        let info = self.info();
        let validation = opts.field_validation;
        let warnings = std::sync::Mutex::new(Vec::new());
        let outcome = self
            .guaranteed_update(ns, name, part, opts, |current| {
                let mut patched = apply_patch(info, patch_type, current, &patch)?;
                // Only a resourceVersion the client put in the patch pins
                // it; otherwise a conflict is retried on the fresh object.
                if !pins_resource_version(patch_type, &patch) {
                    if let Some(meta) = patched.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.remove("resourceVersion");
                    }
                }
                let (patched, w) = self.normalize(patched, validation)?;
                *warnings.lock().expect("not poisoned") = w;
                Ok(patched)
            })
            .await?;
        Ok(Outcome {
            warnings: warnings.into_inner().expect("not poisoned"),
            ..outcome
        })
    }

    /// Reads, mutates and compare-and-swaps until the write lands, as
    /// Kubernetes' GuaranteedUpdate does. A resourceVersion in the new object
    /// pins the update: a mismatch is a 409 instead of a retry.
    pub(crate) async fn guaranteed_update<F>(
        &self,
        ns: Option<&str>,
        name: &str,
        part: Part,
        opts: &WriteOptions,
        mutate: F,
    ) -> Result<Outcome, ApiError>
    where
        F: Fn(&Value) -> Result<Value, ApiError>,
    {
        self.guaranteed_update_inner(ns, name, part, opts, true, mutate)
            .await
    }

    async fn guaranteed_update_inner<F>(
        &self,
        ns: Option<&str>,
        name: &str,
        part: Part,
        opts: &WriteOptions,
        track: bool,
        mutate: F,
    ) -> Result<Outcome, ApiError>
    where
        F: Fn(&Value) -> Result<Value, ApiError>,
    {
        let key = self.key(ns, name);
        loop {
            let mut admission_warnings = Vec::new();
            let (kv, _) = self.store.get(&key, None).await.map_err(internal)?;
            let kv = kv.ok_or_else(|| self.not_found(name))?;
            let current = self.decode(&kv)?;
            let mut new = mutate(&current)?;
            let pinned = meta_str(&new, "resourceVersion")
                .filter(|rv| !rv.is_empty())
                .map(str::to_string);
            if let Some(rv) = &pinned {
                if rv.parse::<i64>().ok() != Some(kv.mod_revision) {
                    return Err(self.conflict(name));
                }
            }
            let new_name = meta_str(&new, "name").unwrap_or("");
            if !new_name.is_empty() && new_name != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({new_name}) does not match the name on the URL ({name})"
                )));
            }
            if let (Some(ns), Some(body_ns)) = (ns, meta_str(&new, "namespace")) {
                if !body_ns.is_empty() && body_ns != ns && self.info().namespaced() {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
            }
            if let Some(uid) = meta_str(&new, "uid").filter(|u| !u.is_empty()) {
                if Some(uid) != meta_str(&current, "uid") {
                    return Err(ApiError::conflict(
                        self.info().group,
                        self.info().plural,
                        name,
                        format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            meta_str(&current, "uid").unwrap_or("")
                        ),
                    ));
                }
            }
            let new = match part {
                Part::Main => {
                    self.strategy.prepare_for_update(&mut new, &current);
                    new
                }
                Part::Internal => new,
                Part::Finalize => {
                    let mut merged = current.clone();
                    merged["spec"]["finalizers"] = new
                        .pointer("/spec/finalizers")
                        .cloned()
                        .unwrap_or(json!([]));
                    merged
                }
                Part::Status => {
                    let mut merged = current.clone();
                    match new.get("status") {
                        Some(s) => merged["status"] = s.clone(),
                        None => {
                            if let Some(m) = merged.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                    merged
                }
            };
            let mut new = self.carry_metadata(new, &current);
            self.strategy.default(&mut new);
            let attrs = self.attributes(
                Operation::Update,
                ns,
                name,
                part,
                Some(&current),
                opts.dry_run,
            );
            if part != Part::Internal {
                admission_warnings.extend(self.admit(&attrs, &mut new).await?);
            }
            if let Some(manager) = opts
                .field_manager
                .as_deref()
                .filter(|_| track && part != Part::Internal)
            {
                let (api_version, ts) = (self.info().api_version(), now());
                new = self
                    .field_manager(manager, &api_version, &ts, part)
                    .update(Some(&current), &new);
            }
            let allocation = match (part, self.strategy.allocator()) {
                (Part::Main, Some(a)) => {
                    Some(a.allocate(&mut new, Some(&current), opts.dry_run).await?)
                }
                _ => None,
            };
            let result = async {
                let causes = if part == Part::Main {
                    self.strategy.validate_for_update(&new, &current)
                } else {
                    self.strategy.validate(&new)
                };
                if !causes.is_empty() {
                    return Err(self.invalid(name, causes));
                }
                if part != Part::Internal && new != current {
                    admission_warnings.extend(self.admit_validation(&attrs, Some(&new)).await?);
                }
                if self.strategy.tracks_generation()
                    && spec_changed(&new, &current, self.info().has_status)
                {
                    let g = current
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    meta_mut(&mut new).insert("generation".into(), (g + 1).into());
                }
                if new == current {
                    return Ok(Step::Done(current.clone()));
                }
                let finalized = new.pointer("/metadata/deletionTimestamp").is_some()
                    && finalizers_empty(&new)
                    && new
                        .pointer("/spec/finalizers")
                        .and_then(Value::as_array)
                        .is_none_or(|f| f.is_empty() || self.info().kind != "Namespace");
                if opts.dry_run {
                    return Ok(Step::Done(new));
                }
                // Removing the last finalizer of an object being deleted deletes it.
                let written = if finalized {
                    self.store
                        .delete(&key, Some(kv.mod_revision))
                        .await
                        .map(|(rev, _)| rev)
                } else {
                    self.store
                        .update(&key, self.encode(&new), kv.mod_revision)
                        .await
                        .map(|kv| kv.mod_revision)
                };
                match written {
                    Ok(rev) => {
                        meta_mut(&mut new).insert("resourceVersion".into(), rev.to_string().into());
                        Ok(if finalized {
                            Step::Deleted(new)
                        } else {
                            Step::Written(new)
                        })
                    }
                    Err(StoreError::Conflict { .. }) if pinned.is_none() => Ok(Step::Retry),
                    Err(StoreError::Conflict { .. }) => Err(self.conflict(name)),
                    Err(StoreError::NotFound { .. }) => Err(self.not_found(name)),
                    Err(e) => Err(internal(e)),
                }
            }
            .await;
            let landed = matches!(result, Ok(Step::Written(_) | Step::Deleted(_)));
            self.settle(allocation, landed).await;
            let object = match result? {
                Step::Retry => continue,
                Step::Deleted(object) => {
                    self.released(&current).await;
                    object
                }
                Step::Done(object) | Step::Written(object) => object,
            };
            return Ok(Outcome {
                object,
                warnings: admission_warnings,
                created: false,
            });
        }
    }

    /// Settles what the strategy's allocator reserved for one write: kept
    /// (freeing what it superseded) if the write landed, freed if not.
    async fn settle(&self, allocation: Option<Allocation>, landed: bool) {
        if let (Some(a), Some(allocation)) = (self.strategy.allocator(), allocation) {
            if landed {
                a.commit(allocation).await;
            } else {
                a.revert(allocation).await;
            }
        }
    }

    /// Frees what a deleted object held.
    async fn released(&self, obj: &Value) {
        if let Some(a) = self.strategy.allocator() {
            a.release(obj).await;
        }
    }

    fn field_manager<'a>(
        &'a self,
        manager: &'a str,
        api_version: &'a str,
        now: &'a str,
        part: Part,
    ) -> kaji_apply::FieldManager<'a> {
        let info = self.info();
        let mut fm = kaji_apply::FieldManager::new(manager, api_version, info.kind, now);
        if let Some(schema) = self.strategy.apply_schema() {
            fm = fm.with_schema(schema);
        }
        match part {
            Part::Status => fm.subresource("status").ignoring(&["spec", "metadata"]),
            _ if info.has_status => fm.ignoring(&["status"]),
            _ => fm,
        }
    }

    /// Server-side apply (`application/apply-patch+yaml`): creates the object
    /// if absent, else merges the applied configuration with field ownership.
    ///
    /// # Errors
    /// 409 Conflict with a `FieldManagerConflict` cause per field another
    /// manager owns (unless `force`), 400 for a malformed configuration, 422.
    pub async fn apply(
        &self,
        ns: Option<&str>,
        name: &str,
        applied: Value,
        part: Part,
        opts: &WriteOptions,
    ) -> Result<Outcome, ApiError> {
        let manager = opts.field_manager.clone().unwrap_or_default();
        // The typed round trip would fill required-but-absent fields (an empty
        // selector, say) into a partial intent: use it to check and prune only.
        let applied = self.prune_unknown(applied, opts.field_validation)?;
        let warnings = applied.1;
        let applied = applied.0;
        if let Some(n) = meta_str(&applied, "name") {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        let (api_version, ts) = (self.info().api_version(), now());
        loop {
            let exists = self
                .store
                .get(&self.key(ns, name), None)
                .await
                .map_err(internal)?
                .0
                .is_some();
            if !exists && part == Part::Main {
                let mut obj = self
                    .field_manager(&manager, &api_version, &ts, part)
                    .apply(None, &applied, opts.force)
                    .map_err(apply_error)?
                    .object;
                meta_mut(&mut obj).insert("name".into(), name.into());
                match self.create_inner(ns, obj, opts, false).await {
                    Err(e) if e.code == 409 && e.reason == "AlreadyExists" => continue,
                    other => return other.map(|o| Outcome { warnings, ..o }),
                }
            }
            let outcome = self
                .guaranteed_update_inner(ns, name, part, opts, false, |current| {
                    self.field_manager(&manager, &api_version, &ts, part)
                        .apply(Some(current), &applied, opts.force)
                        .map(|o| o.object)
                        .map_err(apply_error)
                })
                .await?;
            return Ok(Outcome {
                warnings,
                ..outcome
            });
        }
    }

    /// Keeps the metadata a client may not change across an update.
    fn carry_metadata(&self, mut new: Value, current: &Value) -> Value {
        let old_meta = current.get("metadata").cloned().unwrap_or(json!({}));
        let meta = meta_mut(&mut new);
        for k in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
            "name",
            "namespace",
        ] {
            match old_meta.get(k) {
                Some(v) => meta.insert(k.into(), v.clone()),
                None => meta.remove(k),
            };
        }
        meta.remove("selfLink");
        // Once deletion has begun, finalizers may only be removed.
        if old_meta.get("deletionTimestamp").is_some() {
            let old: Vec<Value> = old_meta
                .get("finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(Value::Array(list)) = meta.get_mut("finalizers") {
                list.retain(|f| old.contains(f));
            }
        }
        for k in ["kind", "apiVersion"] {
            if let Some(v) = current.get(k) {
                new[k] = v.clone();
            }
        }
        new
    }

    /// Deletes an object: at once, or by marking it with a deletionTimestamp
    /// when finalizers (including those the propagation policy adds) or a
    /// graceful pod termination must run first. Returns the object and whether
    /// it is gone.
    ///
    /// # Errors
    /// 404, 409 on failed preconditions.
    pub async fn delete(
        &self,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<(Value, bool), ApiError> {
        let key = self.key(ns, name);
        loop {
            let (kv, _) = self.store.get(&key, None).await.map_err(internal)?;
            let kv = kv.ok_or_else(|| self.not_found(name))?;
            let current = self.decode(&kv)?;
            if let Some(uid) = &opts.precondition_uid {
                let actual = meta_str(&current, "uid").unwrap_or("");
                if uid != actual {
                    return Err(ApiError::conflict(
                        self.info().group,
                        self.info().plural,
                        name,
                        format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_resource_version {
                if rv.parse::<i64>().ok() != Some(kv.mod_revision) {
                    return Err(ApiError::conflict(
                        self.info().group,
                        self.info().plural,
                        name,
                        format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                            kv.mod_revision
                        ),
                    ));
                }
            }
            if current.pointer("/metadata/deletionTimestamp").is_none() {
                let attrs = self.attributes(
                    Operation::Delete,
                    ns,
                    name,
                    Part::Main,
                    Some(&current),
                    opts.dry_run,
                );
                self.admit_validation(&attrs, None).await?;
            }
            let mut marked = current.clone();
            let mut finalizers: Vec<Value> = marked
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let added = match opts.propagation_policy.as_deref() {
                Some("Orphan") => Some("orphan"),
                Some("Foreground") => Some("foregroundDeletion"),
                _ => None,
            };
            let already_deleting = current.pointer("/metadata/deletionTimestamp").is_some();
            for f in added.iter().chain(self.strategy.finalizers_on_delete()) {
                if !already_deleting && !finalizers.contains(&json!(f)) {
                    finalizers.push(json!(f));
                }
            }
            let grace = self.grace_period(&current, opts);
            let namespace_finalizing = self.info().kind == "Namespace"
                && current
                    .pointer("/spec/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|f| !f.is_empty());
            if finalizers.is_empty() && grace == 0 && !namespace_finalizing {
                if opts.dry_run {
                    return Ok((current, true));
                }
                match self.store.delete(&key, Some(kv.mod_revision)).await {
                    Ok((rev, _)) => {
                        self.released(&current).await;
                        meta_mut(&mut marked)
                            .insert("resourceVersion".into(), rev.to_string().into());
                        return Ok((marked, true));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(StoreError::NotFound { .. }) => return Err(self.not_found(name)),
                    Err(e) => return Err(internal(e)),
                }
            }
            if already_deleting {
                return Ok((current, false));
            }
            let when = Utc::now() + chrono::Duration::seconds(grace);
            let meta = meta_mut(&mut marked);
            meta.insert(
                "deletionTimestamp".into(),
                when.to_rfc3339_opts(SecondsFormat::Secs, true).into(),
            );
            meta.insert("deletionGracePeriodSeconds".into(), grace.into());
            if !finalizers.is_empty() {
                meta.insert("finalizers".into(), Value::Array(finalizers));
            }
            if self.info().kind == "Namespace" {
                marked["status"] = json!({"phase": "Terminating"});
            }
            if opts.dry_run {
                return Ok((marked, false));
            }
            match self
                .store
                .update(&key, self.encode(&marked), kv.mod_revision)
                .await
            {
                Ok(kv) => {
                    meta_mut(&mut marked)
                        .insert("resourceVersion".into(), kv.mod_revision.to_string().into());
                    return Ok((marked, false));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => return Err(self.not_found(name)),
                Err(e) => return Err(internal(e)),
            }
        }
    }

    /// Pods bound to a node terminate gracefully: the node agent finishes the
    /// deletion. Everything else goes at once.
    fn grace_period(&self, obj: &Value, opts: &DeleteOptions) -> i64 {
        if self.info().kind != "Pod" || obj.pointer("/spec/nodeName").is_none() {
            return 0;
        }
        if obj
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .is_some_and(|p| p == "Succeeded" || p == "Failed")
        {
            return 0;
        }
        opts.grace_period_seconds
            .or_else(|| {
                obj.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30)
            .max(0)
    }

    /// Binds a pod to a node (`pods/binding`): sets `spec.nodeName` and the
    /// PodScheduled condition.
    ///
    /// # Errors
    /// 404, 409 if the pod is already bound or being deleted.
    pub async fn bind(
        &self,
        ns: Option<&str>,
        name: &str,
        node: &str,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let outcome = self
            .guaranteed_update(ns, name, Part::Internal, opts, |current| {
                if let Some(bound) = current.pointer("/spec/nodeName").and_then(Value::as_str) {
                    return Err(ApiError::conflict(
                        self.info().group,
                        self.info().plural,
                        name,
                        format!("pod {name} is already assigned to node \"{bound}\""),
                    ));
                }
                if current.pointer("/metadata/deletionTimestamp").is_some() {
                    return Err(ApiError::conflict(self.info().group, self.info().plural, name, "pod is being deleted, cannot be assigned to a host"));
                }
                let mut new = current.clone();
                new["spec"]["nodeName"] = node.into();
                if !new.get("status").is_some_and(Value::is_object) {
                    new["status"] = json!({});
                }
                let mut conditions: Vec<Value> = new
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                conditions.retain(|c| c.get("type") != Some(&json!("PodScheduled")));
                conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()}));
                new["status"]["conditions"] = Value::Array(conditions);
                Ok(new)
            })
            .await?;
        Ok(outcome.object)
    }

    /// Reads the `/scale` subresource.
    ///
    /// # Errors
    /// 404 if the object is absent.
    pub async fn get_scale(&self, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let obj = self.get(ns, name).await?;
        Ok(scale_of(&obj, self.strategy.scale_paths()))
    }

    /// Updates the `/scale` subresource: `mutate` turns the current Scale into the desired one.
    ///
    /// # Errors
    /// 404, 409, 422 for negative replicas.
    pub async fn update_scale<F>(
        &self,
        ns: Option<&str>,
        name: &str,
        opts: &WriteOptions,
        mutate: F,
    ) -> Result<Value, ApiError>
    where
        F: Fn(&Value) -> Result<Value, ApiError>,
    {
        let outcome = self
            .guaranteed_update(ns, name, Part::Main, opts, |current| {
                let paths = self.strategy.scale_paths();
                let scale = mutate(&scale_of(current, paths))?;
                let replicas = scale
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if replicas < 0 {
                    return Err(ApiError::invalid(
                        "autoscaling",
                        "Scale",
                        name,
                        vec![Cause::invalid(
                            "spec.replicas",
                            &json!(replicas),
                            "must be greater than or equal to 0",
                        )],
                    ));
                }
                let mut new = current.clone();
                if let Some(rv) = meta_str(&scale, "resourceVersion") {
                    meta_mut(&mut new).insert("resourceVersion".into(), rv.into());
                }
                match paths {
                    Some(p) => set_pointer(&mut new, &p.spec_replicas, json!(replicas)),
                    None => new["spec"]["replicas"] = json!(replicas),
                }
                Ok(new)
            })
            .await?;
        Ok(scale_of(&outcome.object, self.strategy.scale_paths()))
    }
}

/// A stored object with its resourceVersion, exactly as stored.
fn decode_raw(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    meta_mut(&mut obj).insert("resourceVersion".into(), kv.mod_revision.to_string().into());
    Ok(obj)
}

fn finalizers_empty(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|f| f.is_empty())
}

/// Whether anything but metadata (and status, where it is a subresource of
/// its own) differs.
fn spec_changed(new: &Value, old: &Value, status_separate: bool) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            if status_separate {
                m.remove("status");
            }
        }
        v
    };
    strip(new) != strip(old)
}

fn random_suffix() -> String {
    use rand::Rng;
    // Kubernetes' alphabet for generated names: no vowels, no confusable digits.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Sets the value at a JSON pointer, creating objects along the way.
fn set_pointer(obj: &mut Value, pointer: &str, value: Value) {
    let mut cur = obj;
    for seg in pointer.trim_start_matches('/').split('/') {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .expect("made an object above")
            .entry(seg.replace("~1", "/").replace("~0", "~"))
            .or_insert(Value::Null);
    }
    *cur = value;
}

/// The autoscaling/v1 Scale view of a Deployment, ReplicaSet, StatefulSet
/// or a custom resource with a scale subresource.
fn scale_of(obj: &Value, paths: Option<&ScalePaths>) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let (spec_replicas, status_replicas, selector) = match paths {
        Some(p) => (
            obj.pointer(&p.spec_replicas).cloned(),
            obj.pointer(&p.status_replicas).cloned(),
            p.label_selector
                .as_deref()
                .and_then(|l| obj.pointer(l))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        ),
        None => (
            obj.pointer("/spec/replicas").cloned(),
            obj.pointer("/status/replicas").cloned(),
            obj.pointer("/spec/selector")
                .and_then(|s| kaji_core::selector::LabelSelector::from_label_selector_json(s).ok())
                .map(|s| s.to_string())
                .unwrap_or_default(),
        ),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": spec_replicas.unwrap_or(json!(0))},
        "status": {
            "replicas": status_replicas.unwrap_or(json!(0)),
            "selector": selector,
        }
    })
}

fn pins_resource_version(patch_type: PatchType, patch: &Value) -> bool {
    match patch_type {
        PatchType::Json => patch.as_array().is_some_and(|ops| {
            ops.iter()
                .any(|op| op["path"].as_str() == Some("/metadata/resourceVersion"))
        }),
        _ => patch.pointer("/metadata/resourceVersion").is_some(),
    }
}

fn apply_patch(
    info: &ResourceInfo,
    patch_type: PatchType,
    current: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    let result = match patch_type {
        PatchType::Json => kaji_patch::apply_json_patch(current, patch),
        PatchType::Merge => kaji_patch::apply_merge_patch(current, patch),
        PatchType::StrategicMerge => {
            kaji_patch::apply_strategic_merge_patch(current, patch, &info.api_version(), info.kind)
        }
        PatchType::Apply => unreachable!("server-side apply goes through Registry::apply"),
    };
    result.map_err(|e| patch_error(&e))
}

/// The status Kubernetes answers each patch failure with.
fn patch_error(e: &kaji_patch::PatchError) -> ApiError {
    use kaji_patch::PatchError as P;
    let message = e.to_string();
    match e {
        P::PatchNotAnObject { .. } | P::InvalidJsonPatch { .. } => ApiError::bad_request(message),
        P::TooManyOperations { .. } => ApiError::too_large(message),
        P::StrategicMergeUnsupported { .. } => ApiError::unsupported_media_type_message(message),
        P::ObjectNotAnObject { .. } => ApiError::internal(message),
        _ => ApiError::unprocessable(message),
    }
}

fn apply_error(e: kaji_apply::ApplyError) -> ApiError {
    match e {
        kaji_apply::ApplyError::Conflict { message, causes } => {
            let mut err = ApiError::conflict_message(message);
            err.causes = causes
                .into_iter()
                .map(|(field, manager)| Cause {
                    reason: "FieldManagerConflict",
                    message: format!("conflict with \"{manager}\""),
                    field,
                })
                .collect();
            err
        }
        other => ApiError::bad_request(other.to_string()),
    }
}
