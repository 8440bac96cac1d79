//! Leader election with a `coordination.k8s.io/v1` Lease, so that of several operator replicas
//! exactly one reconciles at a time (two controllers pushing topologies with competing epochs
//! would fight over the cluster).
//!
//! kube-rs 5 has no leader election of its own; this is the client-go algorithm, small enough
//! to read in one sitting:
//!
//! - Every `retry_period` (2 s) each candidate reads the Lease and [`decide`]s: create it when
//!   there is none, take it when it is free (released) or expired (`renewTime +
//!   leaseDurationSeconds` is past), renew it when it already holds it, otherwise wait — but
//!   never longer than until the holder's lease would expire, so a crashed leader is replaced
//!   within one lease duration (15 s) of its last renewal.
//! - Every write is a replace carrying the `resourceVersion` that was read. The apiserver
//!   refuses it (409 Conflict) when anyone wrote the Lease since, so of two candidates racing
//!   for the same expired Lease exactly one wins; the loser re-reads and sees the winner.
//! - A leader that cannot renew within `renew_deadline` (10 s) of its last successful renewal
//!   steps down at once, before the lease (15 s) could expire for the others: the 5 s between
//!   the two is the margin for clock skew between candidates (expiry is judged on the
//!   candidates' wall clocks against `renewTime`) and for the controller to stop.
//! - On graceful shutdown the leader releases the Lease (empties `holderIdentity`) once its
//!   controller has stopped, so a successor takes over at its next poll instead of after a
//!   full lease duration.
//!
//! Whether this process leads is published on a `watch` channel: the binary runs the
//! controller only while it reads `true` and stops it as soon as it turns `false`.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// How one candidate takes part in the election.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Name of the Lease object.
    pub name: String,
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// This candidate's identity, written to `holderIdentity`; unique per process.
    pub identity: String,
    /// How long a Lease stays valid after its last renewal.
    pub lease_duration: Duration,
    /// How long a leader keeps acting without a successful renewal before it steps down.
    /// Shorter than `lease_duration`: see the module doc.
    pub renew_deadline: Duration,
    /// Time between two attempts to acquire or renew.
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// Whether the timings keep the election safe: a leader must give up before the others
    /// may consider its lease expired, and must get several renewal attempts before that.
    pub fn validate(&self) -> Result<(), Error> {
        let ok = !self.retry_period.is_zero()
            && self.renew_deadline > self.retry_period
            && self.lease_duration > self.renew_deadline
            && self.lease_duration.as_secs() >= 1
            && i32::try_from(self.lease_duration.as_secs()).is_ok();
        if ok {
            Ok(())
        } else {
            Err(Error::Timings {
                lease_duration: self.lease_duration,
                renew_deadline: self.renew_deadline,
                retry_period: self.retry_period,
            })
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {what} lease {namespace}/{name}")]
    Kube {
        what: &'static str,
        namespace: String,
        name: String,
        // Boxed: kube's error is large, and this enum travels through every attempt.
        source: Box<kube::Error>,
    },
    #[error("lease {0} was written by another candidate since it was read")]
    Conflict(String),
    #[error("lease {0}: the apiserver did not answer in time")]
    Timeout(String),
    #[error(
        "invalid lease timings (need lease duration {lease_duration:?} > renew deadline {renew_deadline:?} \
         > retry period {retry_period:?} > 0, lease duration ≥ 1 s)"
    )]
    Timings {
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    },
}

/// What a candidate should do with the Lease as it found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it with us as holder.
    Create,
    /// The Lease is free or expired: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// `holder` holds it; it expires in `expires_in` unless renewed.
    Wait { holder: String, expires_in: Duration },
}

/// Decide what `me` does with `lease` (its spec; `None` when no Lease object exists) at `now`.
///
/// A pure function of what was read, so the rules are unit-tested without an apiserver; the
/// resourceVersion guard on the following write makes acting on a stale read safe.
pub fn decide(lease: Option<&Lease>, now: Timestamp, me: &str) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = match spec.holder_identity.as_deref() {
        None | Some("") => return Decision::Acquire,
        Some(holder) => holder,
    };
    if holder == me {
        return Decision::Renew;
    }
    // A Lease without a renewal time or duration cannot be shown to be alive: it is expired.
    let Some(renewed) = spec.renew_time.as_ref() else {
        return Decision::Acquire;
    };
    let duration_ms = i64::from(spec.lease_duration_seconds.unwrap_or(0).max(0)) * 1000;
    let expires_at_ms = renewed.0.as_millisecond().saturating_add(duration_ms);
    let left_ms = expires_at_ms.saturating_sub(now.as_millisecond());
    if left_ms <= 0 {
        return Decision::Acquire;
    }
    Decision::Wait {
        holder: holder.to_string(),
        expires_in: Duration::from_millis(u64::try_from(left_ms).unwrap_or(u64::MAX)),
    }
}

/// The spec a candidate writes for `decision` over `current` (the Lease it read, if any).
fn next_spec(current: Option<&LeaseSpec>, decision: &Decision, settings: &LeaseSettings, now: Timestamp) -> LeaseSpec {
    let now = MicroTime(now);
    let duration = i32::try_from(settings.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let mut spec = current.cloned().unwrap_or_default();
    match decision {
        Decision::Renew => {
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(duration);
        }
        Decision::Create | Decision::Acquire => {
            let previous = spec.holder_identity.clone().filter(|h| !h.is_empty());
            if previous.is_some() && previous.as_deref() != Some(settings.identity.as_str()) {
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            }
            spec.holder_identity = Some(settings.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
            spec.lease_duration_seconds = Some(duration);
            spec.lease_transitions.get_or_insert(0);
        }
        Decision::Wait { .. } => {}
    }
    spec
}

/// Outcome of one attempt.
enum Attempt {
    /// We hold the Lease now (created, acquired or renewed).
    Holding,
    /// Someone else holds it.
    Waiting { holder: String, expires_in: Duration },
}

/// One candidate: runs the election loop and publishes whether it leads.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    metrics: std::sync::Arc<Metrics>,
    leading: watch::Sender<bool>,
}

impl Elector {
    pub fn new(client: kube::Client, settings: LeaseSettings, metrics: std::sync::Arc<Metrics>) -> Self {
        let api = Api::namespaced(client, &settings.namespace);
        let (leading, _) = watch::channel(false);
        metrics.leader.with_label_values(&[settings.name.as_str()]).set(0);
        Elector {
            api,
            settings,
            metrics,
            leading,
        }
    }

    /// `true` while this process holds the Lease.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    pub fn settings(&self) -> &LeaseSettings {
        &self.settings
    }

    /// Acquire and renew until `stop` turns `true`. Does not release the Lease: the caller
    /// first stops its controller, then calls [`Elector::release`], so that no successor
    /// acts while this process still might. `on_api_reachable` is called after the first
    /// successful read of the Lease (readiness).
    pub async fn run(&self, mut stop: watch::Receiver<bool>, on_api_reachable: impl Fn()) {
        let mut last_renewal: Option<Instant> = None;
        loop {
            if *stop.borrow() {
                return;
            }
            let leading = *self.leading.borrow();
            // A leader's attempt may only run until its renew deadline: past it, it steps down
            // whether or not the apiserver has answered.
            let budget = match (leading, last_renewal) {
                (true, Some(at)) => self.settings.renew_deadline.saturating_sub(at.elapsed()),
                _ => self.settings.renew_deadline,
            };
            let attempt = match tokio::time::timeout(budget, self.attempt()).await {
                Ok(result) => result,
                Err(_) => Err(Error::Timeout(self.settings.name.clone())),
            };
            let wait = match attempt {
                Ok(Attempt::Holding) => {
                    on_api_reachable();
                    last_renewal = Some(Instant::now());
                    self.set_leading(true, "");
                    self.settings.retry_period
                }
                Ok(Attempt::Waiting { holder, expires_in }) => {
                    on_api_reachable();
                    if leading {
                        self.set_leading(false, &format!("the lease is now held by {holder}"));
                    }
                    // Poll again right after the holder's lease would expire, so a crashed
                    // leader is replaced within one lease duration, not one plus a period.
                    self.settings
                        .retry_period
                        .min(expires_in.saturating_add(Duration::from_millis(20)))
                }
                Err(Error::Conflict(_)) => {
                    // Someone wrote the Lease between our read and write: read it again now.
                    tracing::debug!(lease = %self.settings.name, "lease conflict; re-reading");
                    Duration::from_millis(50)
                }
                Err(e) => {
                    tracing::warn!(lease = %self.settings.name, error = %e, "lease attempt failed");
                    if leading && last_renewal.is_none_or(|at| at.elapsed() >= self.settings.renew_deadline) {
                        self.set_leading(false, "the lease could not be renewed within the renew deadline");
                    }
                    self.settings.retry_period
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    fn set_leading(&self, leading: bool, why: &str) {
        let was = self.leading.send_replace(leading);
        let gauge = self.metrics.leader.with_label_values(&[self.settings.name.as_str()]);
        gauge.set(i64::from(leading));
        match (was, leading) {
            (false, true) => tracing::info!(
                lease = %self.settings.name,
                identity = %self.settings.identity,
                "acquired the lease; leading"
            ),
            (true, false) => tracing::warn!(
                lease = %self.settings.name,
                identity = %self.settings.identity,
                reason = why,
                "stepping down"
            ),
            _ => {}
        }
    }

    async fn attempt(&self) -> Result<Attempt, Error> {
        let name = &self.settings.name;
        let current = self.api.get_opt(name).await.map_err(|e| self.kube_err("read", e))?;
        let now = Timestamp::now();
        let decision = decide(current.as_ref(), now, &self.settings.identity);
        let spec = next_spec(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &decision,
            &self.settings,
            now,
        );
        match decision {
            Decision::Wait { holder, expires_in } => Ok(Attempt::Waiting { holder, expires_in }),
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(self.settings.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(Attempt::Holding),
                    Err(kube::Error::Api(status)) if status.code == 409 => Err(Error::Conflict(name.clone())),
                    Err(e) => Err(self.kube_err("create", e)),
                }
            }
            Decision::Acquire | Decision::Renew => {
                // `current` is Some here: `decide` returns Create when it is None. The replace
                // carries its resourceVersion: the guard that makes a lost race a 409.
                let mut lease = current.unwrap_or_default();
                lease.spec = Some(spec);
                match self.api.replace(name, &PostParams::default(), &lease).await {
                    Ok(_) => Ok(Attempt::Holding),
                    Err(kube::Error::Api(status)) if status.code == 409 => Err(Error::Conflict(name.clone())),
                    Err(e) => Err(self.kube_err("update", e)),
                }
            }
        }
    }

    /// Give the Lease up if we hold it, so a successor need not wait for it to expire. Call
    /// only after the controller has stopped. Best effort: on failure the Lease simply expires.
    pub async fn release(&self) {
        let was_leading = self.leading.send_replace(false);
        self.metrics
            .leader
            .with_label_values(&[self.settings.name.as_str()])
            .set(0);
        if !was_leading {
            return;
        }
        let name = &self.settings.name;
        let release = async {
            let Some(mut lease) = self.api.get_opt(name).await.map_err(|e| self.kube_err("read", e))? else {
                return Ok(false);
            };
            let mut spec = lease.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.acquire_time = None;
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            lease.spec = Some(spec);
            self.api
                .replace(name, &PostParams::default(), &lease)
                .await
                .map_err(|e| self.kube_err("release", e))?;
            Ok::<bool, Error>(true)
        };
        match tokio::time::timeout(self.settings.retry_period, release).await {
            Ok(Ok(true)) => tracing::info!(lease = %name, "released the lease"),
            Ok(Ok(false)) => tracing::info!(lease = %name, "the lease was no longer ours; nothing to release"),
            Ok(Err(e)) => tracing::warn!(lease = %name, error = %e, "could not release the lease; it will expire"),
            Err(_) => tracing::warn!(lease = %name, "releasing the lease timed out; it will expire"),
        }
    }

    fn kube_err(&self, what: &'static str, source: kube::Error) -> Error {
        Error::Kube {
            what,
            namespace: self.settings.namespace.clone(),
            name: self.settings.name.clone(),
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LeaseSettings {
        LeaseSettings {
            name: "ferrokv-operator".into(),
            namespace: "ops".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn lease(holder: Option<&str>, renewed: Option<Timestamp>, duration: Option<i32>) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                renew_time: renewed.map(MicroTime),
                lease_duration_seconds: duration,
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn no_lease_is_created() {
        assert_eq!(decide(None, at(0), "me"), Decision::Create);
    }

    #[test]
    fn a_free_lease_is_acquired() {
        assert_eq!(
            decide(Some(&lease(None, Some(at(0)), Some(15))), at(1), "me"),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&lease(Some(""), Some(at(0)), Some(15))), at(1), "me"),
            Decision::Acquire
        );
        let no_spec = Lease::default();
        assert_eq!(decide(Some(&no_spec), at(1), "me"), Decision::Acquire);
    }

    #[test]
    fn our_own_lease_is_renewed_even_when_expired() {
        assert_eq!(
            decide(Some(&lease(Some("me"), Some(at(0)), Some(15))), at(5), "me"),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&lease(Some("me"), Some(at(0)), Some(15))), at(60), "me"),
            Decision::Renew
        );
    }

    #[test]
    fn a_live_lease_of_another_is_waited_on_until_it_expires() {
        let held = lease(Some("other"), Some(at(0)), Some(15));
        assert_eq!(
            decide(Some(&held), at(5), "me"),
            Decision::Wait {
                holder: "other".into(),
                expires_in: Duration::from_secs(10)
            }
        );
        assert_eq!(
            decide(Some(&held), at(14), "me"),
            Decision::Wait {
                holder: "other".into(),
                expires_in: Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn an_expired_lease_of_another_is_acquired() {
        let held = lease(Some("other"), Some(at(0)), Some(15));
        assert_eq!(decide(Some(&held), at(15), "me"), Decision::Acquire);
        assert_eq!(decide(Some(&held), at(600), "me"), Decision::Acquire);
    }

    #[test]
    fn a_lease_without_renew_time_or_duration_is_expired() {
        assert_eq!(
            decide(Some(&lease(Some("other"), None, Some(15))), at(0), "me"),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&lease(Some("other"), Some(at(0)), None)), at(0), "me"),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&lease(Some("other"), Some(at(0)), Some(-5))), at(0), "me"),
            Decision::Acquire
        );
    }

    #[test]
    fn acquiring_from_another_counts_a_transition_and_renewing_does_not() {
        let s = settings();
        let held = lease(Some("other"), Some(at(0)), Some(15)).spec;
        let taken = next_spec(held.as_ref(), &Decision::Acquire, &s, at(20));
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(taken.renew_time, Some(MicroTime(at(20))));
        assert_eq!(taken.lease_duration_seconds, Some(15));

        let renewed = next_spec(Some(&taken), &Decision::Renew, &s, at(22));
        assert_eq!(renewed.lease_transitions, Some(1));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(22))));

        let created = next_spec(None, &Decision::Create, &s, at(0));
        assert_eq!(created.lease_transitions, Some(0));
        assert_eq!(created.holder_identity.as_deref(), Some("me"));
    }

    #[test]
    fn timings_must_let_a_leader_step_down_before_its_lease_expires() {
        assert!(settings().validate().is_ok());
        let mut s = settings();
        s.renew_deadline = Duration::from_secs(15);
        assert!(s.validate().is_err());
        let mut s = settings();
        s.retry_period = Duration::from_secs(10);
        assert!(s.validate().is_err());
        let mut s = settings();
        s.retry_period = Duration::ZERO;
        assert!(s.validate().is_err());
    }
}
