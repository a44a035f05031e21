//! Dynamic admission control: the webhooks of `MutatingWebhookConfiguration`
//! and `ValidatingWebhookConfiguration` objects, called with an
//! AdmissionReview on every write they match, as Kubernetes' API server
//! calls them.
//!
//! It owns matching (rules, namespace and object selectors), the HTTPS
//! exchange (server verified against `caBundle`, `timeoutSeconds`), the
//! meaning of answers (denials, warnings, JSON patches, reinvocation) and
//! `failurePolicy`. It plugs into the registry through
//! [`kaji_registry::Admission`] and must not know HTTP routing, the store or
//! any particular kind beyond Namespaces (for `namespaceSelector`).
//!
//! # Caveats
//! - A `clientConfig.service` is reached at a ready endpoint of its
//!   EndpointSlices when [`Webhooks::resolve_services`] was given the
//!   registries to read (there is no kube-proxy to make a clusterIP work);
//!   otherwise at `https://<name>.<namespace>.svc:<port>`, which only works
//!   where that name resolves. Either way the certificate must be valid for
//!   `<name>.<namespace>.svc`.
//! - `matchPolicy: Equivalent` matches the exact group/version/resource:
//!   kaji serves each resource at one version. `matchConditions` are not
//!   evaluated. Requests are attributed to `system:admin`.

mod client;
mod config;
mod matching;
mod resolve;
mod review;
mod sync;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use kaji_core::ApiError;
use kaji_registry::{Admission, Attributes, Registry};
use serde_json::Value;

pub use config::{FailurePolicy, Phase, Rule, Target, Webhook};

use client::{Client, Endpoint};
use matching::NamespaceLabels;
use resolve::{ServiceRef, ServiceResolver};
use review::Answer;

/// The admission webhooks currently configured, and the means to call them.
pub struct Webhooks {
    state: RwLock<State>,
    client: Client,
    namespaces: OnceLock<Arc<Registry>>,
    resolver: OnceLock<ServiceResolver>,
}

#[derive(Default)]
struct State {
    /// Each phase's configurations by name (the order webhooks run in).
    mutating_configs: BTreeMap<String, Vec<Webhook>>,
    validating_configs: BTreeMap<String, Vec<Webhook>>,
    /// Flattened: configurations by name, then webhooks in declared order.
    mutating: Arc<Vec<Webhook>>,
    validating: Arc<Vec<Webhook>>,
}

impl State {
    fn configs(&mut self, phase: Phase) -> &mut BTreeMap<String, Vec<Webhook>> {
        match phase {
            Phase::Mutating => &mut self.mutating_configs,
            Phase::Validating => &mut self.validating_configs,
        }
    }

    fn flatten(&mut self, phase: Phase) {
        let all: Vec<Webhook> = self.configs(phase).values().flatten().cloned().collect();
        match phase {
            Phase::Mutating => self.mutating = Arc::new(all),
            Phase::Validating => self.validating = Arc::new(all),
        }
    }
}

/// Why a webhook could not be called (Kubernetes' `ErrCallingWebhook`):
/// subject to `failurePolicy`.
struct CallFailure(String);

impl Webhooks {
    /// No webhooks, until [`Webhooks::start`] reads the configurations.
    pub fn new() -> Arc<Self> {
        Arc::new(Webhooks {
            state: RwLock::new(State::default()),
            client: Client::default(),
            namespaces: OnceLock::new(),
            resolver: OnceLock::new(),
        })
    }

    /// Keeps the configurations current (list and watch through these
    /// registries, listing again after errors) and reads `namespaces` for
    /// `namespaceSelector`. Spawns two tokio tasks, which end once `self` is
    /// gone (registries admitted by `self` keep it alive, so in a server
    /// they run as long as the runtime). Call once.
    ///
    /// # Caveats
    /// A configuration takes effect when its watch event arrives, shortly
    /// after it is written, as in Kubernetes; [`Webhooks::names`] shows what
    /// is in effect.
    pub fn start(
        self: &Arc<Self>,
        mutating: Arc<Registry>,
        validating: Arc<Registry>,
        namespaces: Arc<Registry>,
    ) {
        let _ = self.namespaces.set(namespaces);
        let weak = Arc::downgrade(self);
        tokio::spawn(sync::keep_current(weak.clone(), mutating, Phase::Mutating));
        tokio::spawn(sync::keep_current(weak, validating, Phase::Validating));
    }

    /// Reaches `clientConfig.service` webhooks at the ready endpoints of
    /// their EndpointSlices instead of through DNS. Call once.
    pub fn resolve_services(&self, services: Arc<Registry>, endpoint_slices: Arc<Registry>) {
        let _ = self.resolver.set(ServiceResolver {
            services,
            endpoint_slices,
        });
    }

    /// The names of the webhooks in effect, mutating ones first, each in
    /// the order they run.
    pub fn names(&self) -> Vec<String> {
        let state = self.state.read().expect("not poisoned");
        state
            .mutating
            .iter()
            .chain(state.validating.iter())
            .map(|w| w.name.clone())
            .collect()
    }

    /// Sets (or with `None` removes) one configuration.
    fn put(&self, phase: Phase, name: String, object: Option<&Value>) {
        let mut state = self.state.write().expect("not poisoned");
        match object {
            Some(obj) => state.configs(phase).insert(name, config::parse(phase, obj)),
            None => state.configs(phase).remove(&name),
        };
        state.flatten(phase);
    }

    /// Replaces every configuration of `phase` (after a list).
    fn replace_all<'a>(&self, phase: Phase, objects: impl Iterator<Item = (String, &'a Value)>) {
        let mut state = self.state.write().expect("not poisoned");
        let configs = objects
            .map(|(name, obj)| (name, config::parse(phase, obj)))
            .collect();
        *state.configs(phase) = configs;
        state.flatten(phase);
    }

    fn hooks(&self, phase: Phase) -> Arc<Vec<Webhook>> {
        let state = self.state.read().expect("not poisoned");
        match phase {
            Phase::Mutating => state.mutating.clone(),
            Phase::Validating => state.validating.clone(),
        }
    }

    /// Whether `hook` is called for this request.
    async fn should_call(
        &self,
        hook: &Webhook,
        attrs: &Attributes<'_>,
        object: Option<&Value>,
    ) -> Result<bool, ApiError> {
        if !matching::rules_match(hook, attrs)
            || !matching::object_selector_matches(hook, object, attrs.old_object)
        {
            return Ok(false);
        }
        let labels = match matching::namespace_labels(hook, attrs, object) {
            NamespaceLabels::NotNeeded => return Ok(true),
            NamespaceLabels::Own(labels) => labels,
            NamespaceLabels::Lookup(ns) => {
                let Some(namespaces) = self.namespaces.get() else {
                    return Err(ApiError::internal(
                        "Internal error occurred: namespaces are not readable for namespaceSelector",
                    ));
                };
                let namespace = namespaces.get(None, ns).await.map_err(|e| {
                    if e.code == 404 {
                        ApiError::namespace_not_found(ns)
                    } else {
                        e
                    }
                })?;
                namespace
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default()
            }
        };
        Ok(hook.namespace_selector.matches(&labels))
    }

    async fn endpoint(&self, hook: &Webhook) -> Result<Endpoint, String> {
        match &hook.target {
            Target::Url(url) => Endpoint::from_url(url, hook.timeout_seconds),
            Target::Service {
                namespace,
                name,
                port,
                path,
            } => {
                let svc = ServiceRef {
                    namespace,
                    name,
                    path,
                    port: *port,
                };
                match self.resolver.get() {
                    Some(resolver) => resolver.resolve(&svc, hook.timeout_seconds).await,
                    None => Ok(resolve::by_dns(&svc, hook.timeout_seconds)),
                }
            }
        }
    }

    /// One exchange with `hook`: its verified answer, or why there is none.
    async fn exchange(
        &self,
        hook: &Webhook,
        attrs: &Attributes<'_>,
        object: Option<&Value>,
    ) -> Result<Answer, CallFailure> {
        let endpoint = self
            .endpoint(hook)
            .await
            .map_err(|e| CallFailure(format!("could not get REST client: {e}")))?;
        let uid = uuid::Uuid::new_v4().to_string();
        let review = review::request(attrs, object, &uid, hook.review_version);
        let body = serde_json::to_vec(&review).expect("a JSON value always serializes");
        let timeout = Duration::from_secs(hook.timeout_seconds);
        let bytes = self
            .client
            .post(&endpoint, hook.ca_bundle.as_deref(), body, timeout)
            .await
            .map_err(|e| CallFailure(format!("failed to call webhook: {e}")))?;
        review::verify(
            &bytes,
            &uid,
            hook.review_version,
            hook.phase == Phase::Mutating,
        )
        .map_err(|e| CallFailure(format!("received invalid webhook response: {e}")))
    }

    /// Calls `hook`, applying `failurePolicy` to failures: `Ok(None)` when a
    /// failure is ignored.
    async fn call(
        &self,
        hook: &Webhook,
        attrs: &Attributes<'_>,
        object: Option<&Value>,
    ) -> Result<Option<Answer>, ApiError> {
        if attrs.dry_run && !hook.dry_run_safe {
            return Err(ApiError::bad_request(format!(
                "admission webhook {:?} does not support dry run",
                hook.name
            )));
        }
        match self.exchange(hook, attrs, object).await {
            Ok(answer) => Ok(Some(answer)),
            Err(CallFailure(why)) => {
                let message = format!("failed calling webhook {:?}: {why}", hook.name);
                match hook.failure_policy {
                    FailurePolicy::Ignore => {
                        tracing::warn!(webhook = %hook.name, error = %message, "failing open");
                        Ok(None)
                    }
                    FailurePolicy::Fail => {
                        tracing::warn!(webhook = %hook.name, error = %message, "failing closed");
                        Err(internal_error(message))
                    }
                }
            }
        }
    }

    /// Calls one mutating webhook and applies its patch. Returns whether
    /// the object changed.
    async fn mutate_once(
        &self,
        hook: &Webhook,
        attrs: &Attributes<'_>,
        object: &mut Value,
        warnings: &mut Vec<String>,
    ) -> Result<bool, ApiError> {
        let Some(answer) = self.call(hook, attrs, Some(object)).await? else {
            return Ok(false);
        };
        warnings.extend(answer.warnings);
        if !answer.allowed {
            return Err(review::denial(&hook.name, &answer.status));
        }
        let Some(patch) = answer
            .patch
            .filter(|p| p.as_array().is_none_or(|ops| !ops.is_empty()))
        else {
            return Ok(false);
        };
        let patched = kaji_patch::apply_json_patch(object, &patch)
            .map_err(|e| internal_error(e.to_string()))?;
        if !patched.is_object() {
            return Err(internal_error(format!(
                "admission webhook {:?} patched the object into something that is not an object",
                hook.name
            )));
        }
        let changed = patched != *object;
        *object = patched;
        Ok(changed)
    }
}

/// Kubernetes' `NewInternalError`: 500 with the cause repeated in
/// `details.causes`.
fn internal_error(message: String) -> ApiError {
    let mut err = ApiError::internal(format!("Internal error occurred: {message}"));
    err.causes.push(kaji_core::Cause {
        reason: "",
        message,
        field: String::new(),
    });
    err
}

#[async_trait::async_trait]
impl Admission for Webhooks {
    /// Runs the mutating webhooks in order (configurations by name, then
    /// declared order); those with `reinvocationPolicy: IfNeeded` run once
    /// more if a later webhook changed the object.
    async fn mutate(
        &self,
        attrs: &Attributes<'_>,
        object: &mut Value,
    ) -> Result<Vec<String>, ApiError> {
        if matching::exempt(attrs) {
            return Ok(Vec::new());
        }
        let hooks = self.hooks(Phase::Mutating);
        let mut warnings = Vec::new();
        // Reinvocable webhooks already called, and those a later change requires again.
        let mut reinvocable: Vec<usize> = Vec::new();
        let mut reinvoke: Vec<usize> = Vec::new();
        for (i, hook) in hooks.iter().enumerate() {
            if !self.should_call(hook, attrs, Some(object)).await? {
                continue;
            }
            if self.mutate_once(hook, attrs, object, &mut warnings).await? {
                reinvoke.append(&mut reinvocable);
            }
            if hook.reinvoke_if_needed {
                reinvocable.push(i);
            }
        }
        reinvoke.sort_unstable();
        reinvoke.dedup();
        for i in reinvoke {
            let hook = &hooks[i];
            if self.should_call(hook, attrs, Some(object)).await? {
                self.mutate_once(hook, attrs, object, &mut warnings).await?;
            }
        }
        Ok(warnings)
    }

    /// Runs the matching validating webhooks in parallel; the first refusal
    /// (in webhook order) wins, warnings come from all.
    async fn validate(
        &self,
        attrs: &Attributes<'_>,
        object: Option<&Value>,
    ) -> Result<Vec<String>, ApiError> {
        if matching::exempt(attrs) {
            return Ok(Vec::new());
        }
        let hooks = self.hooks(Phase::Validating);
        let mut called = Vec::new();
        for hook in hooks.iter() {
            if self.should_call(hook, attrs, object).await? {
                called.push(hook);
            }
        }
        let answers =
            futures::future::join_all(called.iter().map(|hook| self.call(hook, attrs, object)))
                .await;
        let mut warnings = Vec::new();
        let mut refusal = None;
        for (hook, answer) in called.iter().zip(answers) {
            match answer {
                Ok(Some(answer)) => {
                    warnings.extend(answer.warnings);
                    if !answer.allowed && refusal.is_none() {
                        refusal = Some(review::denial(&hook.name, &answer.status));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    if refusal.is_none() {
                        refusal = Some(e);
                    }
                }
            }
        }
        match refusal {
            Some(e) => Err(e),
            None => Ok(warnings),
        }
    }
}
