//! The garbage collector: deletes objects whose owners are gone, and carries
//! out foreground and orphan deletion, as Kubernetes' garbage collector does.
//!
//! It discovers every resource that supports list, watch and delete, keeps a
//! metadata-only owner graph (`graph`) of all objects fed by one metadata watcher
//! per resource, and reconciles object uids from a deduplicating
//! work queue (`queue`). Decisions to delete are confirmed with live reads.
//! It talks to the API only over HTTP and owns no other component's state.

mod graph;
mod queue;
mod reconcile;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::api::{Api, DynamicObject, PartialObjectMeta};
use kube::discovery::{verbs, ApiResource, Discovery, Scope};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use tokio::task::{AbortHandle, JoinSet};

use graph::{resource_key, Graph, Node};
use queue::WorkQueue;

/// How often the served resources are re-discovered when no CRD changes
/// says so sooner.
const REDISCOVER_EVERY: Duration = Duration::from_secs(30);
/// How soon a failed discovery is retried.
const DISCOVERY_RETRY: Duration = Duration::from_secs(1);
/// How many uids are reconciled concurrently.
const WORKERS: usize = 4;
/// Resources never collected, as in Kubernetes: events are too many and
/// never owned meaningfully.
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// A served resource the collector can work with.
#[derive(Clone, Debug)]
struct Served {
    resource: ApiResource,
    namespaced: bool,
}

/// State shared by watchers and workers.
struct Ctx {
    client: kube::Client,
    graph: Mutex<Graph>,
    queue: WorkQueue<String>,
    /// Owner kinds by (group, kind), for resolving ownerReferences.
    kinds: RwLock<HashMap<(String, String), Served>>,
}

impl Ctx {
    fn graph(&self) -> MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enqueue(&self, uids: Vec<String>) {
        for uid in uids {
            self.queue.add(uid);
        }
    }

    /// The served resource for an ownerReference's apiVersion and kind.
    fn resolve(&self, api_version: &str, kind: &str) -> Option<Served> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        self.kinds
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(group.to_string(), kind.to_string()))
            .cloned()
    }
}

/// Runs the garbage collector until it is dropped.
///
/// Watchers and workers are owned by this future: dropping or aborting it
/// stops them all.
///
/// # Errors
/// None in practice: discovery and API failures are logged and retried.
pub async fn run(client: kube::Client) -> Result<(), crate::Error> {
    let ctx = Arc::new(Ctx {
        client,
        graph: Mutex::new(Graph::default()),
        queue: WorkQueue::default(),
        kinds: RwLock::new(HashMap::new()),
    });
    let mut tasks = JoinSet::new();
    for _ in 0..WORKERS {
        tasks.spawn(worker(ctx.clone()));
    }
    let mut watchers: HashMap<String, AbortHandle> = HashMap::new();
    // A CRD that comes or goes changes what is served: rediscover at once.
    let crds_changed = Arc::new(tokio::sync::Notify::new());
    tasks.spawn(watch_crds(ctx.client.clone(), crds_changed.clone()));
    loop {
        let wait = match discover(&ctx.client).await {
            Ok(served) => {
                sync_watchers(&ctx, &mut tasks, &mut watchers, served);
                REDISCOVER_EVERY
            }
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector discovery failed");
                DISCOVERY_RETRY
            }
        };
        // Reap finished tasks so the set does not grow (watchers never end
        // on their own; a panicked one is restarted at the next discovery).
        while let Some(Some(res)) = tasks.join_next().now_or_never() {
            // Watchers of resources no longer served are aborted on purpose.
            match res {
                Err(e) if !e.is_cancelled() => {
                    tracing::error!(error = %e, "garbage collector task ended");
                }
                _ => {}
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = crds_changed.notified() => {}
        }
    }
}

/// Notifies on every CRD change (status changes included: a CRD becomes
/// served when it is Established).
async fn watch_crds(client: kube::Client, changed: Arc<tokio::sync::Notify>) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api = Api::<PartialObjectMeta<CustomResourceDefinition>>::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        if matches!(ev, Ok(Event::Apply(_) | Event::Delete(_) | Event::InitDone)) {
            changed.notify_one();
        }
    }
}

/// Every served resource supporting list, watch and delete, preferred
/// versions only.
async fn discover(client: &kube::Client) -> Result<Vec<Served>, crate::Error> {
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => d,
        Err(_) => Discovery::new(client.clone())
            .run()
            .await
            .map_err(|e| crate::Error::Discovery(e.to_string()))?,
    };
    let mut served = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            let usable = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|v| caps.supports_operation(v));
            let ignored = IGNORED
                .iter()
                .any(|(g, p)| ar.group == *g && ar.plural == *p);
            if usable && !ignored && !ar.plural.contains('/') {
                let namespaced = caps.scope == Scope::Namespaced;
                served.push(Served {
                    resource: ar,
                    namespaced,
                });
            }
        }
    }
    Ok(served)
}

/// Starts watchers for new resources, stops those for vanished ones (their
/// objects leave the graph), and refreshes the kind map.
fn sync_watchers(
    ctx: &Arc<Ctx>,
    tasks: &mut JoinSet<()>,
    watchers: &mut HashMap<String, AbortHandle>,
    served: Vec<Served>,
) {
    let kinds: HashMap<_, _> = served
        .iter()
        .map(|s| {
            (
                (s.resource.group.clone(), s.resource.kind.clone()),
                s.clone(),
            )
        })
        .collect();
    *ctx.kinds.write().unwrap_or_else(PoisonError::into_inner) = kinds;
    let wanted: HashMap<String, Served> = served
        .into_iter()
        .map(|s| (resource_key(&s.resource), s))
        .collect();
    watchers.retain(|key, handle| {
        let keep = wanted.contains_key(key) && !handle.is_finished();
        if !keep {
            handle.abort();
            let mut graph = ctx.graph();
            let touched: Vec<String> = graph
                .uids_of(key)
                .iter()
                .flat_map(|uid| graph.remove(uid))
                .collect();
            drop(graph);
            ctx.enqueue(touched);
        }
        keep
    });
    for (key, s) in wanted {
        if let std::collections::hash_map::Entry::Vacant(slot) = watchers.entry(key) {
            tracing::debug!(resource = %slot.key(), "garbage collector watching");
            slot.insert(tasks.spawn(watch(ctx.clone(), s)));
        }
    }
}

/// Feeds one resource's metadata into the graph, queueing touched uids.
async fn watch(ctx: Arc<Ctx>, served: Served) {
    let key = resource_key(&served.resource);
    // `PartialObjectMeta` makes list and watch metadata-only.
    let api =
        Api::<PartialObjectMeta<DynamicObject>>::all_with(ctx.client.clone(), &served.resource);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed: Option<std::collections::HashSet<String>> = None;
    while let Some(event) = events.next().await {
        let (meta, initial) = match event {
            Ok(Event::Init) => {
                listed = Some(Default::default());
                continue;
            }
            Ok(Event::InitDone) => {
                // Whatever was not relisted is gone.
                if let Some(listed) = listed.take() {
                    let mut graph = ctx.graph();
                    let gone: Vec<String> = graph
                        .uids_of(&key)
                        .into_iter()
                        .filter(|uid| !listed.contains(uid))
                        .collect();
                    let touched: Vec<String> =
                        gone.iter().flat_map(|uid| graph.remove(uid)).collect();
                    drop(graph);
                    ctx.enqueue(touched);
                }
                continue;
            }
            Ok(Event::Delete(obj)) => {
                if let Some(uid) = obj.metadata.uid {
                    let touched = ctx.graph().remove(&uid);
                    ctx.enqueue(touched);
                }
                continue;
            }
            Ok(Event::Apply(obj)) => (obj.metadata, false),
            Ok(Event::InitApply(obj)) => (obj.metadata, true),
            Err(e) => {
                tracing::debug!(resource = %key, error = %e, "garbage collector watch error");
                continue;
            }
        };
        let Some(node) = Node::from_meta(&served.resource, meta) else {
            continue;
        };
        if initial {
            if let Some(listed) = listed.as_mut() {
                listed.insert(node.uid.clone());
            }
        }
        let touched = ctx.graph().upsert(node);
        ctx.enqueue(touched);
    }
}

/// Reconciles uids from the queue forever.
async fn worker(ctx: Arc<Ctx>) {
    loop {
        let uid = ctx.queue.next().await;
        match reconcile::reconcile(&ctx, &uid).await {
            Ok(requeue) => {
                ctx.queue.forget(&uid);
                if let Some(after) = requeue {
                    ctx.queue.add_after(uid.clone(), after);
                }
            }
            Err(e) => {
                tracing::debug!(%uid, error = %e, "garbage collector reconcile failed");
                ctx.queue.add_rate_limited(uid.clone());
            }
        }
        ctx.queue.done(&uid);
    }
}
