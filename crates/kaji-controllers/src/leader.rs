//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection`.
//!
//! Several controller managers may run at once; only the one holding the Lease
//! (default `kube-system/kaji-controller-manager`) runs the controllers. A
//! candidate acquires the Lease by creating it when absent, or by updating it
//! with the `resourceVersion` it read (optimistic concurrency: a 409 means
//! another candidate won the race). It takes a held Lease over only once the
//! holder's `renewTime + leaseDurationSeconds` has passed *and* the Lease has not
//! changed for a whole lease duration by the local clock, so a holder whose
//! clock lags cannot be robbed while it keeps renewing. The leader renews every
//! `retry_period`; if renewing keeps failing for `renew_deadline`, or another
//! holder shows up, the work is dropped before the Lease can expire. On a clean
//! shutdown the Lease is released (holder cleared, duration 1 s) so a successor
//! takes over at once.
//!
//! This module owns only the Lease it is configured with; it never touches
//! other Leases (node heartbeats live in `kube-node-lease`).

use std::future::Future;
use std::hash::BuildHasher;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::Client;
use tokio::time::Instant;

use crate::Error;

/// The namespace of the default Lease.
pub const DEFAULT_LEASE_NAMESPACE: &str = "kube-system";
/// The name of the default Lease.
pub const DEFAULT_LEASE_NAME: &str = "kaji-controller-manager";

/// Waits between acquisition attempts are `retry_period * (1 + JITTER * r)`
/// for a random `r` in `[0, 1)`, as client-go's `JitterFactor`.
const JITTER: f64 = 1.2;

/// Where the Lease lives, who we are, and the timing of the election.
///
/// The defaults are Kubernetes': 15 s lease, 10 s renew deadline, 2 s retry.
#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    /// The Lease's namespace.
    pub lease_namespace: String,
    /// The Lease's name.
    pub lease_name: String,
    /// This candidate's `holderIdentity`; unique among candidates.
    pub identity: String,
    /// How long a non-leader waits after the last renewal before taking over
    /// (`leaseDurationSeconds`, rounded up to whole seconds).
    pub lease_duration: Duration,
    /// How long the leader keeps retrying a failing renewal before it gives up
    /// and drops the work.
    pub renew_deadline: Duration,
    /// The pause between acquisition attempts and between renewals.
    pub retry_period: Duration,
}

impl Default for LeaderElectionConfig {
    fn default() -> Self {
        LeaderElectionConfig {
            lease_namespace: DEFAULT_LEASE_NAMESPACE.to_string(),
            lease_name: DEFAULT_LEASE_NAME.to_string(),
            identity: default_identity(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Why a [`LeaderElectionConfig`] is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The identity is empty, so it could not be told from a released Lease.
    #[error("identity must not be empty")]
    EmptyIdentity,
    /// The Lease's namespace or name is empty.
    #[error("lease namespace and name must not be empty")]
    EmptyLeaseName,
    /// The renew deadline is not shorter than the lease duration, so a leader
    /// could still be working after another candidate took over.
    #[error("lease duration must be greater than the renew deadline")]
    LeaseNotLongerThanRenewDeadline,
    /// The renew deadline leaves no room for a jittered retry.
    #[error("renew deadline must be greater than {JITTER} x the retry period")]
    RenewDeadlineTooShort,
    /// The retry period is zero.
    #[error("retry period must be positive")]
    ZeroRetryPeriod,
}

impl LeaderElectionConfig {
    /// Checks the invariants client-go checks.
    ///
    /// # Errors
    /// The first broken invariant.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.identity.is_empty() {
            return Err(ConfigError::EmptyIdentity);
        }
        if self.lease_namespace.is_empty() || self.lease_name.is_empty() {
            return Err(ConfigError::EmptyLeaseName);
        }
        if self.retry_period.is_zero() {
            return Err(ConfigError::ZeroRetryPeriod);
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(ConfigError::LeaseNotLongerThanRenewDeadline);
        }
        if self.renew_deadline.as_secs_f64() <= JITTER * self.retry_period.as_secs_f64() {
            return Err(ConfigError::RenewDeadlineTooShort);
        }
        Ok(())
    }

    /// `leaseDurationSeconds`: the lease duration rounded up to whole seconds.
    fn lease_seconds(&self) -> i32 {
        let secs =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
    }
}

/// `<hostname>_<16 random hex digits>`, as client-go's `<hostname>_<uuid>`.
pub fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kaji".to_string());
    format!("{host}_{:016x}", random_u64())
}

/// A random number good enough for identities and jitter (not for secrets).
fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
}

/// What one acquire-or-renew attempt found.
#[derive(Debug)]
enum Attempt {
    /// We hold the Lease now (created, taken over or renewed).
    Leading,
    /// Someone else holds an unexpired Lease.
    HeldBy(String),
    /// Our write lost an optimistic-concurrency race (409); read again.
    Conflict,
}

/// The Lease as last read or written, and when it last changed by our clock.
struct Observed {
    lease: Lease,
    changed_at: Instant,
}

/// One candidate in the election on one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    observed: Option<Observed>,
}

impl LeaderElector {
    /// A candidate that has not campaigned yet.
    ///
    /// # Panics
    /// If the config breaks an invariant of [`LeaderElectionConfig::validate`]:
    /// running with it could let two leaders work at once.
    pub fn new(client: Client, config: LeaderElectionConfig) -> Self {
        if let Err(e) = config.validate() {
            panic!("invalid leader election config: {e}");
        }
        LeaderElector {
            api: Api::namespaced(client, &config.lease_namespace),
            config,
            observed: None,
        }
    }

    /// This candidate's `holderIdentity`.
    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    /// Campaigns, runs `work` while leading and returns once `work` finishes,
    /// releasing the Lease.
    ///
    /// # Errors
    /// What `work` returned.
    ///
    /// # Guarantees
    /// See [`LeaderElector::run_until`].
    pub async fn run<F, Fut>(self, work: F) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), Error>>,
    {
        self.run_until(work, std::future::pending()).await
    }

    /// Campaigns, runs `work` while leading, and returns once `work` finishes
    /// or `shutdown` completes, releasing the Lease either way.
    ///
    /// # Errors
    /// What `work` returned; campaign and renewal errors are retried and logged.
    ///
    /// # Guarantees
    /// `work()` is called each time this candidate becomes leader, and its
    /// future is dropped as soon as leadership is lost (renewal failing for
    /// `renew_deadline`, or another holder observed); the candidate then
    /// campaigns again. Since `renew_deadline < lease_duration`, the work has
    /// stopped before any other candidate may take over, provided clocks run at
    /// the same rate.
    ///
    /// # Caveats
    /// `work` runs in the same task as the renewals: it must yield (be async
    /// all the way down), and tasks it spawns must stop when it is dropped.
    pub async fn run_until<F, Fut, S>(mut self, mut work: F, shutdown: S) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), Error>>,
        S: Future<Output = ()>,
    {
        tokio::pin!(shutdown);
        loop {
            let acquired = tokio::select! {
                biased;
                () = &mut shutdown => {
                    // An attempt cut short may still have won the Lease.
                    self.release_logged().await;
                    return Ok(());
                }
                acquired = self.acquire() => acquired,
            };
            tracing::info!(
                identity = %self.config.identity,
                lease = %self.config.lease_name,
                "became leader"
            );
            let outcome = tokio::select! {
                biased;
                () = &mut shutdown => None,
                () = self.keep_renewing(acquired) => {
                    tracing::warn!(
                        identity = %self.config.identity,
                        lease = %self.config.lease_name,
                        "lost leadership; stopped the work and campaigning again"
                    );
                    continue;
                }
                result = work() => Some(result),
            };
            self.release_logged().await;
            return outcome.unwrap_or(Ok(()));
        }
    }

    /// Retries until this candidate holds the Lease; returns when the winning
    /// attempt started.
    async fn acquire(&mut self) -> Instant {
        loop {
            let started = Instant::now();
            match tokio::time::timeout(self.config.renew_deadline, self.try_acquire_or_renew())
                .await
            {
                Ok(Ok(Attempt::Leading)) => return started,
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    tracing::debug!(%holder, "lease held by another candidate");
                }
                Ok(Ok(Attempt::Conflict)) => tracing::debug!("lost a race for the lease"),
                Ok(Err(error)) => tracing::warn!(%error, "failed to acquire the lease"),
                Err(_) => tracing::warn!("acquiring the lease timed out"),
            }
            tokio::time::sleep(jittered(self.config.retry_period)).await;
        }
    }

    /// Renews every `retry_period`; returns once leadership is lost.
    async fn keep_renewing(&mut self, mut renewed: Instant) {
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            let deadline = renewed + self.config.renew_deadline;
            loop {
                let started = Instant::now();
                match tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await {
                    Ok(Ok(Attempt::Leading)) => {
                        renewed = started;
                        break;
                    }
                    Ok(Ok(Attempt::HeldBy(holder))) => {
                        tracing::warn!(%holder, "another candidate holds the lease");
                        return;
                    }
                    Ok(Ok(Attempt::Conflict)) => tracing::debug!("lease renewal conflicted"),
                    Ok(Err(error)) => tracing::warn!(%error, "failed to renew the lease"),
                    Err(_) => {
                        tracing::warn!("lease renewal deadline passed");
                        return;
                    }
                }
                let retry_at = (Instant::now() + self.config.retry_period).min(deadline);
                tokio::time::sleep_until(retry_at).await;
                if Instant::now() >= deadline {
                    tracing::warn!("lease renewal deadline passed");
                    return;
                }
            }
        }
    }

    /// One read-then-write attempt, as client-go's `tryAcquireOrRenew`.
    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let now = Timestamp::now();
        let Some(current) = self.api.get_opt(&self.config.lease_name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.lease_name.clone()),
                    namespace: Some(self.config.lease_namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.next_spec(None, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(created);
                    Ok(Attempt::Leading)
                }
                Err(e) if is_status(&e, 409) => Ok(Attempt::Conflict),
                Err(e) => Err(e),
            };
        };
        self.observe(current.clone());
        let spec = current.spec.clone().unwrap_or_default();
        if let Some(holder) = holder(&spec) {
            if holder != self.config.identity && !self.expired(&spec, now) {
                return Ok(Attempt::HeldBy(holder.to_string()));
            }
        }
        let mut next = current;
        next.spec = Some(self.next_spec(Some(&spec), now));
        match self
            .api
            .replace(&self.config.lease_name, &PostParams::default(), &next)
            .await
        {
            Ok(updated) => {
                self.observe(updated);
                Ok(Attempt::Leading)
            }
            Err(e) if is_status(&e, 409) => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    }

    /// The spec that makes us the holder at `now`, given the current one.
    fn next_spec(&self, old: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let renew = Some(MicroTime(now));
        let mut spec = old.cloned().unwrap_or_default();
        match old {
            None => {
                spec.acquire_time = renew.clone();
                spec.lease_transitions = Some(0);
            }
            Some(old) if holder(old) == Some(self.config.identity.as_str()) => {
                spec.acquire_time = old.acquire_time.clone().or_else(|| renew.clone());
                spec.lease_transitions = Some(old.lease_transitions.unwrap_or(0));
            }
            Some(old) => {
                spec.acquire_time = renew.clone();
                spec.lease_transitions = Some(old.lease_transitions.unwrap_or(0).saturating_add(1));
            }
        }
        spec.holder_identity = Some(self.config.identity.clone());
        spec.lease_duration_seconds = Some(self.config.lease_seconds());
        spec.renew_time = renew;
        spec
    }

    /// Whether another holder's Lease may be taken over: both its `renewTime +
    /// leaseDurationSeconds` and a whole lease duration since we saw it change
    /// have passed.
    fn expired(&self, spec: &LeaseSpec, now: Timestamp) -> bool {
        let seconds = spec
            .lease_duration_seconds
            .unwrap_or_else(|| self.config.lease_seconds());
        let duration = Duration::from_secs(u64::try_from(seconds.max(0)).unwrap_or(0));
        let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref());
        let wall_expired = renewed.is_none_or(|t| {
            t.0.checked_add(SignedDuration::from_secs(i64::from(seconds.max(0))))
                .is_ok_and(|expiry| expiry <= now)
        });
        let locally_expired = self
            .observed
            .as_ref()
            .is_none_or(|o| o.changed_at.elapsed() >= duration);
        wall_expired && locally_expired
    }

    /// Remembers the Lease; restarts the local expiry clock when it changed.
    fn observe(&mut self, lease: Lease) {
        let unchanged = self.observed.as_ref().is_some_and(|o| {
            o.lease.metadata.resource_version.is_some()
                && o.lease.metadata.resource_version == lease.metadata.resource_version
        });
        let changed_at = match (&self.observed, unchanged) {
            (Some(o), true) => o.changed_at,
            _ => Instant::now(),
        };
        self.observed = Some(Observed { lease, changed_at });
    }

    /// Gives the Lease up if we hold it: clears the holder and sets a 1 s
    /// duration, so a successor takes over at once.
    ///
    /// # Errors
    /// The update failed for another reason than a conflict (a conflict means
    /// someone else wrote the Lease, so there is nothing of ours to release).
    pub async fn release(&mut self) -> Result<bool, kube::Error> {
        let Some(observed) = &self.observed else {
            return Ok(false);
        };
        let spec = observed.lease.spec.clone().unwrap_or_default();
        if holder(&spec) != Some(self.config.identity.as_str()) {
            return Ok(false);
        }
        let now = Some(MicroTime(Timestamp::now()));
        let mut next = observed.lease.clone();
        next.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: now.clone(),
            renew_time: now,
            ..spec
        });
        match self
            .api
            .replace(&self.config.lease_name, &PostParams::default(), &next)
            .await
        {
            Ok(updated) => {
                self.observe(updated);
                Ok(true)
            }
            Err(e) if is_status(&e, 409) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// [`LeaderElector::release`], bounded by the renew deadline, logging failures.
    async fn release_logged(&mut self) {
        let identity = self.config.identity.clone();
        match tokio::time::timeout(self.config.renew_deadline, self.release()).await {
            Ok(Ok(true)) => tracing::info!(%identity, "released the lease"),
            Ok(Ok(false)) => tracing::debug!(%identity, "no lease of ours to release"),
            Ok(Err(error)) => tracing::warn!(%identity, %error, "failed to release the lease"),
            Err(_) => tracing::warn!(%identity, "releasing the lease timed out"),
        }
    }
}

/// Campaigns for the Lease in `config`, runs `work` while leading, and returns
/// once `work` finishes, releasing the Lease.
///
/// # Errors
/// What `work` returned.
///
/// # Guarantees
/// As [`LeaderElector::run_until`]: the work is dropped when leadership is lost
/// and started again when it is won back.
///
/// # Panics
/// If `config` is invalid (see [`LeaderElectionConfig::validate`]).
pub async fn run_when_leader<F, Fut>(
    client: Client,
    config: LeaderElectionConfig,
    work: F,
) -> Result<(), Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    LeaderElector::new(client, config).run(work).await
}

/// The Lease's holder, if any (an empty identity means released).
fn holder(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())
}

/// Whether `e` is an API error with HTTP status `code`.
fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == code)
}

/// `period * (1 + JITTER * r)` for a random `r` in `[0, 1)`.
fn jittered(period: Duration) -> Duration {
    // The top 53 bits make a uniform f64 in [0, 1).
    #[allow(clippy::cast_precision_loss)]
    let r = (random_u64() >> 11) as f64 / (1u64 << 53) as f64;
    period.mul_f64(1.0 + JITTER * r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LeaderElectionConfig {
        LeaderElectionConfig {
            identity: "me".to_string(),
            ..LeaderElectionConfig::default()
        }
    }

    #[test]
    fn leader_config_defaults_are_kubernetes_defaults() {
        let c = LeaderElectionConfig::default();
        assert_eq!(c.lease_namespace, "kube-system");
        assert_eq!(c.lease_name, "kaji-controller-manager");
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        assert_eq!(c.renew_deadline, Duration::from_secs(10));
        assert_eq!(c.retry_period, Duration::from_secs(2));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn leader_default_identities_are_unique_and_carry_the_hostname() {
        let (a, b) = (default_identity(), default_identity());
        assert_ne!(a, b);
        let (host, suffix) = a.rsplit_once('_').expect("hostname_suffix");
        assert!(!host.is_empty());
        assert_eq!(suffix.len(), 16);
    }

    #[test]
    fn leader_config_rejects_a_renew_deadline_not_shorter_than_the_lease() {
        let c = LeaderElectionConfig {
            renew_deadline: Duration::from_secs(15),
            ..config()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::LeaseNotLongerThanRenewDeadline)
        );
        let c = LeaderElectionConfig {
            retry_period: Duration::from_secs(9),
            ..config()
        };
        assert_eq!(c.validate(), Err(ConfigError::RenewDeadlineTooShort));
        let c = LeaderElectionConfig {
            identity: String::new(),
            ..config()
        };
        assert_eq!(c.validate(), Err(ConfigError::EmptyIdentity));
    }

    #[test]
    fn leader_lease_seconds_round_up() {
        let c = LeaderElectionConfig {
            lease_duration: Duration::from_millis(2500),
            ..config()
        };
        assert_eq!(c.lease_seconds(), 3);
    }

    #[test]
    fn leader_jitter_stays_within_client_go_bounds() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(1));
            assert!(
                d >= Duration::from_secs(1) && d < Duration::from_millis(2200),
                "{d:?}"
            );
        }
    }
}
