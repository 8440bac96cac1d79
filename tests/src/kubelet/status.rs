//! A Pod's runtime state and the `PodStatus` it maps to.
//!
//! Workers and container supervisors only mutate [`PodRuntime`]; [`pod_status`] derives the
//! whole status from it with kubelet's rules (phase from container states and restart policy,
//! the four conditions, container statuses with last state and restart counts). Keeping the
//! derivation pure means the status rules are unit-tested without a cluster, and the patcher can
//! compare the derived status with the last one it wrote and patch only real changes.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP,
    PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A container's state, as the runtime knows it.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated {
        exit_code: i32,
        reason: String,
        message: Option<String>,
        started_at: Timestamp,
        finished_at: Timestamp,
    },
}

impl State {
    pub fn waiting(reason: &str) -> Self {
        Self::Waiting {
            reason: reason.to_owned(),
            message: None,
        }
    }

    fn to_api(&self) -> ContainerState {
        match self {
            Self::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: message.clone(),
                }),
                ..Default::default()
            },
            Self::Running { started_at } => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(Time(*started_at)),
                }),
                ..Default::default()
            },
            Self::Terminated {
                exit_code,
                reason,
                message,
                started_at,
                finished_at,
            } => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: *exit_code,
                    reason: Some(reason.clone()),
                    message: message.clone(),
                    started_at: Some(Time(*started_at)),
                    finished_at: Some(Time(*finished_at)),
                    container_id: None,
                    signal: None,
                }),
                ..Default::default()
            },
        }
    }
}

/// One container's runtime record.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerRuntime {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last_state: Option<State>,
    pub restart_count: i32,
    pub ready: bool,
    pub started: bool,
    pub pid: Option<i32>,
}

impl ContainerRuntime {
    pub fn new(name: &str, image: &str) -> Self {
        Self {
            name: name.to_owned(),
            image: image.to_owned(),
            state: State::waiting("PodInitializing"),
            last_state: None,
            restart_count: 0,
            ready: false,
            started: false,
            pid: None,
        }
    }

    fn to_api(&self) -> ContainerStatus {
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: format!("sandbox://{}", self.image),
            container_id: self.pid.map(|pid| format!("sandbox://{pid}")),
            state: Some(self.state.to_api()),
            last_state: Some(self.last_state.as_ref().map(State::to_api).unwrap_or_default()),
            ready: self.ready,
            restart_count: self.restart_count,
            started: Some(self.started),
            ..Default::default()
        }
    }

    fn terminated_code(&self) -> Option<i32> {
        match &self.state {
            State::Terminated { exit_code, .. } => Some(*exit_code),
            _ => None,
        }
    }
}

/// A Pod's runtime record, shared by its worker and container supervisors.
#[derive(Clone, Debug, PartialEq)]
pub struct PodRuntime {
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Timestamp,
    pub network_ready: bool,
    pub init: Vec<ContainerRuntime>,
    pub containers: Vec<ContainerRuntime>,
    /// Set when the Pod is done for good: init failure under `Never`, or all containers ended
    /// without restart. `None` while it runs.
    pub terminal: Option<Terminal>,
    /// Why the Pod is not running yet (a volume waiting on its PVC...), shown as the message.
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Terminal {
    Succeeded,
    Failed,
}

impl PodRuntime {
    pub fn container_mut(&mut self, init: bool, index: usize) -> Option<&mut ContainerRuntime> {
        if init {
            self.init.get_mut(index)
        } else {
            self.containers.get_mut(index)
        }
    }

    /// `Some(terminal)` when every container has ended and none will restart under `policy`.
    pub fn completion(&self, policy: &str) -> Option<Terminal> {
        let codes: Option<Vec<i32>> = self.containers.iter().map(ContainerRuntime::terminated_code).collect();
        let codes = codes?;
        let failed = codes.iter().any(|c| *c != 0);
        match (policy, failed) {
            ("Never", true) => Some(Terminal::Failed),
            ("Never" | "OnFailure", false) => Some(Terminal::Succeeded),
            _ => None,
        }
    }

    fn initialized(&self) -> bool {
        self.init.iter().all(|c| c.terminated_code() == Some(0))
    }

    fn phase(&self) -> &'static str {
        match self.terminal {
            Some(Terminal::Succeeded) => return "Succeeded",
            Some(Terminal::Failed) => return "Failed",
            None => {}
        }
        if !self.initialized() {
            return "Pending";
        }
        let never_ran = self
            .containers
            .iter()
            .any(|c| matches!(c.state, State::Waiting { .. }) && c.last_state.is_none());
        if never_ran {
            return "Pending";
        }
        "Running"
    }
}

/// The full status of a Pod; conditions keep the transition time of `previous` while their
/// value is unchanged.
pub fn pod_status(rt: &PodRuntime, previous: Option<&PodStatus>, now: Timestamp) -> PodStatus {
    let phase = rt.phase();
    let terminal = rt.terminal.is_some();
    let containers_ready = !terminal && rt.containers.iter().all(|c| c.ready);
    let completed = |ok: bool| {
        if terminal && !ok {
            Some("PodCompleted".to_owned())
        } else {
            None
        }
    };
    let not_ready_reason = |ok: bool| {
        completed(ok).or_else(|| {
            if ok {
                None
            } else {
                Some("ContainersNotReady".to_owned())
            }
        })
    };
    let conditions = [
        ("PodReadyToStartContainers", rt.network_ready && !terminal, None),
        (
            "Initialized",
            rt.initialized(),
            if rt.initialized() {
                None
            } else {
                Some("ContainersNotInitialized".to_owned())
            },
        ),
        ("Ready", containers_ready, not_ready_reason(containers_ready)),
        ("ContainersReady", containers_ready, not_ready_reason(containers_ready)),
        ("PodScheduled", true, None),
    ];
    let previous_conditions = previous.and_then(|p| p.conditions.as_ref());
    let conditions = conditions
        .into_iter()
        .map(|(type_, ok, reason)| {
            let status = if ok { "True" } else { "False" }.to_owned();
            let since = previous_conditions
                .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
                .filter(|c| c.status == status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            PodCondition {
                type_: type_.to_owned(),
                status,
                reason,
                last_transition_time: Some(since),
                last_probe_time: None,
                message: None,
                observed_generation: None,
            }
        })
        .collect();
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        host_ip: Some(rt.host_ip.clone()),
        host_ips: Some(vec![HostIP { ip: rt.host_ip.clone() }]),
        pod_ip: rt.pod_ip.clone(),
        pod_ips: rt.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: Some(Time(rt.start_time)),
        init_container_statuses: (!rt.init.is_empty()).then(|| rt.init.iter().map(ContainerRuntime::to_api).collect()),
        container_statuses: Some(rt.containers.iter().map(ContainerRuntime::to_api).collect()),
        message: rt.message.clone(),
        qos_class: previous.and_then(|p| p.qos_class.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> PodRuntime {
        PodRuntime {
            pod_ip: Some("10.244.0.2".into()),
            host_ip: "10.244.0.1".into(),
            start_time: Timestamp::UNIX_EPOCH,
            network_ready: true,
            init: vec![ContainerRuntime::new("init", "img")],
            containers: vec![ContainerRuntime::new("a", "img"), ContainerRuntime::new("b", "img")],
            terminal: None,
            message: None,
        }
    }

    fn terminated(code: i32) -> State {
        State::Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            message: None,
            started_at: Timestamp::UNIX_EPOCH,
            finished_at: Timestamp::UNIX_EPOCH,
        }
    }

    fn condition(status: &PodStatus, type_: &str) -> String {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .map(|c| c.status.clone())
            .unwrap()
    }

    #[test]
    fn pending_until_initialized_and_started() {
        let mut rt = runtime();
        let status = pod_status(&rt, None, Timestamp::UNIX_EPOCH);
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        assert_eq!(condition(&status, "Initialized"), "False");
        assert_eq!(condition(&status, "PodScheduled"), "True");
        rt.init[0].state = terminated(0);
        rt.containers[0].state = State::Running {
            started_at: Timestamp::UNIX_EPOCH,
        };
        assert_eq!(
            pod_status(&rt, None, Timestamp::UNIX_EPOCH).phase.as_deref(),
            Some("Pending")
        );
        rt.containers[1].state = State::Running {
            started_at: Timestamp::UNIX_EPOCH,
        };
        let status = pod_status(&rt, None, Timestamp::UNIX_EPOCH);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(condition(&status, "Initialized"), "True");
        assert_eq!(condition(&status, "Ready"), "False");
        rt.containers[0].ready = true;
        rt.containers[1].ready = true;
        let status = pod_status(&rt, None, Timestamp::UNIX_EPOCH);
        assert_eq!(condition(&status, "Ready"), "True");
        assert_eq!(condition(&status, "ContainersReady"), "True");
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.2"));
    }

    #[test]
    fn a_container_in_backoff_keeps_the_pod_running() {
        let mut rt = runtime();
        rt.init[0].state = terminated(0);
        rt.containers[0].state = State::Running {
            started_at: Timestamp::UNIX_EPOCH,
        };
        rt.containers[1].state = State::waiting("CrashLoopBackOff");
        rt.containers[1].last_state = Some(terminated(1));
        rt.containers[1].restart_count = 2;
        let status = pod_status(&rt, None, Timestamp::UNIX_EPOCH);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let statuses = status.container_statuses.unwrap();
        assert_eq!(statuses[1].restart_count, 2);
        assert_eq!(
            statuses[1]
                .last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            1
        );
    }

    #[test]
    fn completion_follows_restart_policy() {
        let mut rt = runtime();
        rt.containers[0].state = terminated(0);
        assert_eq!(rt.completion("Never"), None, "b has not ended");
        rt.containers[1].state = terminated(2);
        assert_eq!(rt.completion("Never"), Some(Terminal::Failed));
        assert_eq!(rt.completion("OnFailure"), None);
        assert_eq!(rt.completion("Always"), None);
        rt.containers[1].state = terminated(0);
        assert_eq!(rt.completion("OnFailure"), Some(Terminal::Succeeded));
        rt.terminal = Some(Terminal::Succeeded);
        let status = pod_status(&rt, None, Timestamp::UNIX_EPOCH);
        assert_eq!(status.phase.as_deref(), Some("Succeeded"));
        let ready = status.conditions.iter().flatten().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("PodCompleted"))
        );
    }

    #[test]
    fn transition_times_survive_unchanged_conditions() {
        let rt = runtime();
        let early = Timestamp::UNIX_EPOCH;
        let later = Timestamp::from_second(1000).unwrap();
        let first = pod_status(&rt, None, early);
        let second = pod_status(&rt, Some(&first), later);
        let time = |s: &PodStatus, t: &str| {
            s.conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == t)
                .unwrap()
                .last_transition_time
                .clone()
        };
        assert_eq!(time(&second, "Ready"), Some(Time(early)));
        let mut ready = rt.clone();
        ready.init[0].state = terminated(0);
        let third = pod_status(&ready, Some(&second), later);
        assert_eq!(time(&third, "Initialized"), Some(Time(later)));
        assert_eq!(time(&third, "PodScheduled"), Some(Time(early)));
    }
}
