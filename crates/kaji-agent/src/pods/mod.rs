//! Pod sync: one shared pod watch feeds one worker per pod on whichever of
//! this process's nodes the pod is bound to; a relister per node notices
//! container state changes; orphaned sandboxes and directories are removed.
//!
//! A single node watches with `fieldSelector=spec.nodeName=<node>`; a
//! process running many simulated nodes shares one watch of all pods
//! rather than opening one per node.

mod probes;
mod relist;
pub(crate) mod runtime_state;
pub(crate) mod status;
mod sync;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;

use crate::context::NodeContext;

pub(crate) use relist::run as relist;

/// Routes pod events to the workers of this process's nodes.
pub(crate) struct PodRouter {
    nodes: HashMap<String, Arc<NodeContext>>,
}

impl PodRouter {
    /// A router for `nodes`.
    pub fn new(nodes: &[Arc<NodeContext>]) -> Self {
        PodRouter {
            nodes: nodes.iter().map(|n| (n.name.clone(), n.clone())).collect(),
        }
    }

    /// Watches pods until the stream ends (it retries forever).
    pub async fn run(self, client: kube::Client) {
        let mut config = watcher::Config::default();
        if self.nodes.len() == 1 {
            if let Some(name) = self.nodes.keys().next() {
                config = config.fields(&format!("spec.nodeName={name}"));
            }
        }
        let stream = watcher::watcher(Api::<Pod>::all(client), config).default_backoff();
        futures::pin_mut!(stream);
        let mut listed: Option<HashSet<String>> = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Init) => listed = Some(HashSet::new()),
                Ok(Event::InitApply(pod)) => {
                    if let (Some(seen), Some(uid)) = (listed.as_mut(), pod.metadata.uid.clone()) {
                        seen.insert(uid);
                    }
                    self.apply(pod);
                }
                Ok(Event::InitDone) => {
                    let seen = listed.take().unwrap_or_default();
                    self.forget_unlisted(&seen);
                    for node in self.nodes.values() {
                        node.pods_synced.store(true, Ordering::Release);
                    }
                }
                Ok(Event::Apply(pod)) => self.apply(pod),
                Ok(Event::Delete(pod)) => self.remove(&pod),
                Err(error) => tracing::warn!(%error, "pod watch failed"),
            }
        }
    }

    fn node_of(&self, pod: &Pod) -> Option<&Arc<NodeContext>> {
        let name = pod.spec.as_ref()?.node_name.as_deref()?;
        self.nodes.get(name)
    }

    fn apply(&self, pod: Pod) {
        let (Some(node), Some(uid)) = (self.node_of(&pod), pod.metadata.uid.clone()) else {
            return;
        };
        let pod = Arc::new(pod);
        let mut workers = node.workers.lock().unwrap_or_else(|p| p.into_inner());
        match workers.get(&uid) {
            Some(w) => {
                w.pod.send_replace(Some(pod));
            }
            None => {
                let handle = worker::spawn(node.clone(), uid.clone(), pod);
                workers.insert(uid, handle);
            }
        }
    }

    fn remove(&self, pod: &Pod) {
        let (Some(node), Some(uid)) = (self.node_of(pod), pod.metadata.uid.as_deref()) else {
            return;
        };
        let workers = node.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = workers.get(uid) {
            // The worker tears the pod down and then removes itself.
            w.pod.send_replace(None);
        }
    }

    /// After a relist: pods deleted while the watch was down.
    fn forget_unlisted(&self, listed: &HashSet<String>) {
        for node in self.nodes.values() {
            let workers = node.workers.lock().unwrap_or_else(|p| p.into_inner());
            for (uid, w) in workers.iter() {
                if !listed.contains(uid) {
                    w.pod.send_replace(None);
                }
            }
        }
    }
}
