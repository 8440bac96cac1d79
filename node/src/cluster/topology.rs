//! The topology model shared by the node and the operator: which nodes exist,
//! where clients reach them, and which shard (primary + replicas) serves which
//! slots. It is plain serde data so the operator builds it with the same types
//! the node validates, and [`Topology::validate`] is the one place that decides
//! what a well-formed topology is — the node refuses anything it rejects, so
//! the operator can run the same check before pushing.
//!
//! [`Layout`] is the validated topology compiled for the command path: a
//! per-slot owner table (one `u16` per slot) so that finding a key's shard is
//! an array index, not a search through ranges.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::slot::SLOTS;

/// A node's identity: 40 lower-case hex characters, as Redis Cluster node IDs,
/// so that clients which parse `CLUSTER NODES`/`CLUSTER SLOTS` accept it.
pub type NodeId = String;

/// One node and the address clients use to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub id: NodeId,
    /// Address announced to clients (in MOVED, CLUSTER SLOTS, ...).
    pub ip: String,
    pub port: u16,
    /// Shown as the `@cport` of `CLUSTER NODES`. ferrokv has no cluster bus
    /// (topology is pushed, not gossiped), so this is informational; absent
    /// means 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cport: Option<u16>,
}

/// One shard: the slots it serves, its primary and its replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// Inclusive `[start, end]` ranges. May be empty (a shard that is being
    /// filled by migration or drained before removal).
    #[serde(default)]
    pub slots: Vec<[u16; 2]>,
    pub primary: NodeId,
    #[serde(default)]
    pub replicas: Vec<NodeId>,
}

/// The whole cluster as the control plane sees it at one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Strictly increases with every change the control plane makes; a node
    /// refuses an older one (fencing). Always ≥ 1.
    pub epoch: u64,
    pub nodes: Vec<Node>,
    pub shards: Vec<Shard>,
}

/// Why a topology was refused. Messages are lower case and name the offending
/// item, because the operator surfaces them as-is in Events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("invalid topology payload: {0}")]
    Parse(String),
    #[error("epoch must be at least 1")]
    ZeroEpoch,
    #[error("invalid node id '{0}': expected 40 lower-case hex characters")]
    BadNodeId(String),
    #[error("duplicate node id {0}")]
    DuplicateNode(String),
    #[error("node {0} has an empty ip")]
    EmptyIp(String),
    #[error("node {0} has port 0")]
    ZeroPort(String),
    #[error("shard {shard} names unknown node {id}")]
    UnknownNode { shard: usize, id: String },
    #[error("node {0} is in more than one shard (or twice in one)")]
    NodeInTwoShards(String),
    #[error("node {0} is in no shard")]
    NodeInNoShard(String),
    #[error("shard {shard} has an invalid slot range {start}-{end}")]
    BadRange { shard: usize, start: u16, end: u16 },
    #[error("slot {slot} is assigned to shard {first} and shard {second}")]
    Overlap { slot: u16, first: usize, second: usize },
    #[error("slots {start}-{end} are not assigned to any shard")]
    Gap { start: u16, end: u16 },
}

/// No shard: the value of an unassigned slot in [`Layout::owners`].
pub const NO_SHARD: u16 = u16::MAX;

/// A validated topology compiled for lookups.
#[derive(Debug, Clone)]
pub struct Layout {
    pub topology: Topology,
    /// Shard index of every slot (`SLOTS` entries).
    pub owners: Box<[u16]>,
    /// Node index (into `topology.nodes`) of each shard's primary.
    pub primaries: Vec<usize>,
    /// Shard index of each node.
    pub shard_of: Vec<usize>,
}

pub fn is_node_id(id: &str) -> bool {
    id.len() == 40 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Topology {
    /// Parse the wire payload (JSON, see the module doc of [`crate::cluster`]).
    pub fn from_json(payload: &[u8]) -> Result<Topology, TopologyError> {
        serde_json::from_slice(payload).map_err(|e| TopologyError::Parse(e.to_string()))
    }

    /// The compact wire payload: JSON without whitespace.
    pub fn to_json(&self) -> String {
        // Serializing plain strings, integers and vectors cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Check every rule and compile the per-slot owner table.
    ///
    /// Gaps are refused (not just reported as `cluster_state:fail`): every
    /// layout the control plane means to serve covers all 16384 slots — a
    /// slot in flight is still owned by its source until ownership flips —
    /// so a gap can only be a bug, and refusing it keeps a node from silently
    /// dropping a range of keys.
    pub fn validate(self) -> Result<Layout, TopologyError> {
        if self.epoch == 0 {
            return Err(TopologyError::ZeroEpoch);
        }
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !is_node_id(&n.id) {
                return Err(TopologyError::BadNodeId(n.id.clone()));
            }
            if n.ip.is_empty() {
                return Err(TopologyError::EmptyIp(n.id.clone()));
            }
            if n.port == 0 {
                return Err(TopologyError::ZeroPort(n.id.clone()));
            }
            if index.insert(&n.id, i).is_some() {
                return Err(TopologyError::DuplicateNode(n.id.clone()));
            }
        }
        let mut shard_of = vec![usize::MAX; self.nodes.len()];
        let mut primaries = Vec::with_capacity(self.shards.len());
        let mut owners = vec![NO_SHARD; SLOTS].into_boxed_slice();
        for (s, shard) in self.shards.iter().enumerate() {
            for (k, id) in std::iter::once(&shard.primary).chain(&shard.replicas).enumerate() {
                let &i = index.get(id.as_str()).ok_or_else(|| TopologyError::UnknownNode {
                    shard: s,
                    id: id.clone(),
                })?;
                if shard_of[i] != usize::MAX {
                    return Err(TopologyError::NodeInTwoShards(id.clone()));
                }
                shard_of[i] = s;
                if k == 0 {
                    primaries.push(i);
                }
            }
            for &[start, end] in &shard.slots {
                if start > end || end as usize >= SLOTS {
                    return Err(TopologyError::BadRange { shard: s, start, end });
                }
                for slot in start..=end {
                    let owner = &mut owners[slot as usize];
                    if *owner != NO_SHARD {
                        return Err(TopologyError::Overlap {
                            slot,
                            first: *owner as usize,
                            second: s,
                        });
                    }
                    *owner = s as u16;
                }
            }
        }
        if let Some(i) = shard_of.iter().position(|&s| s == usize::MAX) {
            return Err(TopologyError::NodeInNoShard(self.nodes[i].id.clone()));
        }
        if let Some(start) = owners.iter().position(|&o| o == NO_SHARD) {
            let len = owners[start..].iter().take_while(|&&o| o == NO_SHARD).count();
            return Err(TopologyError::Gap {
                start: start as u16,
                end: (start + len - 1) as u16,
            });
        }
        // More than u16::MAX shards cannot be encoded in the owner table; a
        // cluster has at most 16384 useful shards, so refuse as a range error.
        if self.shards.len() >= NO_SHARD as usize {
            return Err(TopologyError::BadRange {
                shard: self.shards.len(),
                start: 0,
                end: 0,
            });
        }
        Ok(Layout {
            topology: self,
            owners,
            primaries,
            shard_of,
        })
    }
}

impl Layout {
    /// Shard serving `slot` (`None` only for a slot no shard has).
    pub fn owner(&self, slot: u16) -> Option<usize> {
        match self.owners[slot as usize] {
            NO_SHARD => None,
            s => Some(s as usize),
        }
    }

    /// The primary node of shard `s`.
    pub fn primary(&self, s: usize) -> &Node {
        &self.topology.nodes[self.primaries[s]]
    }

    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.topology.nodes.iter().position(|n| n.id == id)
    }

    /// Contiguous runs of slots with the same owner, in slot order:
    /// `(start, end, shard)` — what `CLUSTER SLOTS` lists.
    pub fn runs(&self) -> Vec<(u16, u16, usize)> {
        let mut out: Vec<(u16, u16, usize)> = Vec::new();
        for (slot, &o) in self.owners.iter().enumerate() {
            if o == NO_SHARD {
                continue;
            }
            match out.last_mut() {
                Some((_, end, s)) if *s == o as usize && *end as usize + 1 == slot => *end = slot as u16,
                _ => out.push((slot as u16, slot as u16, o as usize)),
            }
        }
        out
    }

    /// Slot ranges of shard `s`, merged and sorted.
    pub fn shard_ranges(&self, s: usize) -> Vec<(u16, u16)> {
        self.runs()
            .into_iter()
            .filter(|r| r.2 == s)
            .map(|(a, b, _)| (a, b))
            .collect()
    }

    /// Number of slots with an owner.
    pub fn assigned(&self) -> usize {
        self.owners.iter().filter(|&&o| o != NO_SHARD).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> String {
        format!("{:040x}", n)
    }

    fn node(n: u8) -> Node {
        Node {
            id: id(n),
            ip: "127.0.0.1".into(),
            port: 7000 + n as u16,
            cport: None,
        }
    }

    fn three() -> Topology {
        Topology {
            epoch: 1,
            nodes: (1..=4).map(node).collect(),
            shards: vec![
                Shard {
                    slots: vec![[0, 5460]],
                    primary: id(1),
                    replicas: vec![id(4)],
                },
                Shard {
                    slots: vec![[5461, 10922]],
                    primary: id(2),
                    replicas: vec![],
                },
                Shard {
                    slots: vec![[10923, 16383]],
                    primary: id(3),
                    replicas: vec![],
                },
            ],
        }
    }

    #[test]
    fn valid_layout_and_lookup() {
        let l = three().validate().unwrap();
        assert_eq!(l.owner(0), Some(0));
        assert_eq!(l.owner(5461), Some(1));
        assert_eq!(l.owner(16383), Some(2));
        assert_eq!(l.runs(), vec![(0, 5460, 0), (5461, 10922, 1), (10923, 16383, 2)]);
        assert_eq!(l.assigned(), SLOTS);
        assert_eq!(l.shard_of, vec![0, 1, 2, 0]);
    }

    #[test]
    fn json_round_trip() {
        let t = three();
        let back = Topology::from_json(t.to_json().as_bytes()).unwrap();
        assert_eq!(t, back);
        assert!(Topology::from_json(b"{\"epoch\":1}").is_err());
        assert!(matches!(
            Topology::from_json(b"{\"epoch\":1,\"nodes\":[],\"shards\":[],\"x\":1}"),
            Err(TopologyError::Parse(_))
        ));
    }

    proptest::proptest! {
        /// Against a model that counts owners per slot: a layout is accepted
        /// exactly when every slot has one owner, and then every lookup
        /// answers that owner.
        #[test]
        fn validation_matches_a_slot_count_model(
            ranges in proptest::collection::vec(
                proptest::collection::vec((0u16..16384, 0u16..2000), 0..3),
                1..5,
            )
        ) {
            let nodes: Vec<Node> = (0..ranges.len() as u8).map(|i| node(i + 1)).collect();
            let shards: Vec<Shard> = ranges
                .iter()
                .enumerate()
                .map(|(i, rs)| Shard {
                    slots: rs.iter().map(|&(a, len)| [a, a.saturating_add(len).min(16383)]).collect(),
                    primary: id(i as u8 + 1),
                    replicas: vec![],
                })
                .collect();
            let mut owners: Vec<Vec<usize>> = vec![Vec::new(); SLOTS];
            for (i, sh) in shards.iter().enumerate() {
                for &[a, b] in &sh.slots {
                    for slot in a..=b {
                        owners[slot as usize].push(i);
                    }
                }
            }
            let t = Topology { epoch: 1, nodes, shards };
            let ok = owners.iter().all(|o| o.len() == 1);
            match t.validate() {
                Ok(l) => {
                    proptest::prop_assert!(ok);
                    for (slot, o) in owners.iter().enumerate() {
                        proptest::prop_assert_eq!(l.owner(slot as u16), Some(o[0]));
                    }
                }
                Err(e) => {
                    proptest::prop_assert!(!ok, "refused a valid layout: {}", e);
                    let gap = matches!(e, TopologyError::Gap { .. });
                    let overlap = matches!(e, TopologyError::Overlap { .. });
                    proptest::prop_assert!(gap || overlap, "{}", e);
                }
            }
        }
    }

    #[test]
    fn full_cover_from_cut_points_is_accepted() {
        // Random layouts above rarely cover everything: check the accepting
        // side with layouts built to cover.
        for n in 1..=7usize {
            let nodes: Vec<Node> = (0..n as u8).map(|i| node(i + 1)).collect();
            let shards = crate::cluster::driver::even_ranges(n)
                .into_iter()
                .enumerate()
                .map(|(i, r)| Shard {
                    slots: vec![r],
                    primary: id(i as u8 + 1),
                    replicas: vec![],
                })
                .collect();
            let l = Topology {
                epoch: 1,
                nodes,
                shards,
            }
            .validate()
            .unwrap();
            assert_eq!(l.assigned(), SLOTS);
            assert_eq!(l.runs().len(), n);
        }
    }

    #[test]
    fn refusals() {
        let mut t = three();
        t.shards[1].slots = vec![[5000, 10922]];
        assert_eq!(
            t.validate().unwrap_err(),
            TopologyError::Overlap {
                slot: 5000,
                first: 0,
                second: 1
            }
        );
        let mut t = three();
        t.shards[1].slots = vec![[5461, 10000]];
        assert_eq!(
            t.validate().unwrap_err(),
            TopologyError::Gap {
                start: 10001,
                end: 10922
            }
        );
        let mut t = three();
        t.shards[2].replicas.push(id(9));
        assert!(matches!(
            t.validate().unwrap_err(),
            TopologyError::UnknownNode { shard: 2, .. }
        ));
        let mut t = three();
        t.shards[2].replicas.push(id(1));
        assert_eq!(t.validate().unwrap_err(), TopologyError::NodeInTwoShards(id(1)));
        let mut t = three();
        t.nodes.push(node(1));
        assert_eq!(t.validate().unwrap_err(), TopologyError::DuplicateNode(id(1)));
        let mut t = three();
        t.nodes.push(node(5));
        assert_eq!(t.validate().unwrap_err(), TopologyError::NodeInNoShard(id(5)));
        let mut t = three();
        t.nodes[0].id = "ABC".into();
        assert!(matches!(t.validate().unwrap_err(), TopologyError::BadNodeId(_)));
        let mut t = three();
        t.shards[0].slots = vec![[10, 5]];
        assert!(matches!(t.validate().unwrap_err(), TopologyError::BadRange { .. }));
        let mut t = three();
        t.shards[2].slots = vec![[10923, 16384]];
        assert!(matches!(t.validate().unwrap_err(), TopologyError::BadRange { .. }));
        let mut t = three();
        t.epoch = 0;
        assert_eq!(t.validate().unwrap_err(), TopologyError::ZeroEpoch);
    }
}
