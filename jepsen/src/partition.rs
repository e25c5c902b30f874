//! Network partitions as iptables rules: pure functions from a partition spec to the
//! pairs of nodes cut apart, and from those pairs to the rules that cut them.
//!
//! # Why the rules match the sender's group id, not `-s`
//!
//! Every node of the run sits on the namespace's one `lo`, and a process that does
//! not bind its outgoing sockets gets source address 127.0.0.1 whatever its listen
//! address is (the kernel's local route says `src 127.0.0.1`). A rule on `-s` would
//! therefore miss a partition server's connections to the coordinator. What does
//! tell senders apart is the socket's owner: the runner starts node `i` with group id
//! `NODE_GID_BASE + i`, and `-m owner --gid-owner` in OUTPUT matches every packet that
//! node sends, on connections it opened and on those it accepted.
//!
//! To cut A from B: drop A's packets to B's address, and B's packets to A's address.
//! Every connection between the two was opened by one of them to the other's listen
//! address, so one direction of each dies, and TCP cannot live on one direction. The
//! drop is silent (a timeout, not an error), as on a real network. Clients run as
//! group 0 in the same namespace and are never cut off: like Jepsen's, partitions are
//! between the nodes.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::topology::{NodeId, Role, Topology};

/// How the nodes are split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PartitionSpec {
    /// One node cut from every other.
    Isolate { node: NodeId },
    /// The coordinator cut from every partition server.
    CoordinatorFromServers,
    /// Two sides, no traffic between them.
    Halves { a: Vec<NodeId>, b: Vec<NodeId> },
    /// Two sides that cannot talk, and one node in the middle that talks to both.
    Bridge { a: Vec<NodeId>, bridge: NodeId, b: Vec<NodeId> },
}

impl PartitionSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            PartitionSpec::Isolate { .. } => "isolate",
            PartitionSpec::CoordinatorFromServers => "coordinator-from-servers",
            PartitionSpec::Halves { .. } => "halves",
            PartitionSpec::Bridge { .. } => "bridge",
        }
    }

    /// The unordered pairs `(low, high)` of nodes that cannot reach each other.
    pub fn cut_pairs(&self, topology: &Topology) -> BTreeSet<(NodeId, NodeId)> {
        let sides: (Vec<NodeId>, Vec<NodeId>) = match self {
            PartitionSpec::Isolate { node } => {
                (vec![*node], topology.ids().filter(|id| id != node).collect())
            }
            PartitionSpec::CoordinatorFromServers => {
                (topology.with_role(Role::Coordinator), topology.with_role(Role::PartitionServer))
            }
            PartitionSpec::Halves { a, b } | PartitionSpec::Bridge { a, b, .. } => {
                (a.clone(), b.clone())
            }
        };
        let mut pairs = BTreeSet::new();
        for x in &sides.0 {
            for y in &sides.1 {
                assert_ne!(x, y, "a node on both sides of a partition");
                pairs.insert((*x.min(y), *x.max(y)));
            }
        }
        if let PartitionSpec::Bridge { bridge, .. } = self {
            assert!(pairs.iter().all(|(x, y)| x != bridge && y != bridge), "the bridge is cut");
        }
        pairs
    }

    /// The sides as node names, for the history and the report.
    pub fn describe(&self, topology: &Topology) -> serde_json::Value {
        let names = |ids: &[NodeId]| topology.names(ids);
        match self {
            PartitionSpec::Isolate { node } => {
                serde_json::json!({"kind": self.kind(), "isolated": topology.name(*node)})
            }
            PartitionSpec::CoordinatorFromServers => serde_json::json!({"kind": self.kind()}),
            PartitionSpec::Halves { a, b } => {
                serde_json::json!({"kind": self.kind(), "sides": [names(a), names(b)]})
            }
            PartitionSpec::Bridge { a, bridge, b } => serde_json::json!({
                "kind": self.kind(), "sides": [names(a), names(b)], "bridge": topology.name(*bridge)
            }),
        }
    }
}

/// The chain every partition rule goes into.
pub const CHAIN: &str = "OUTPUT";

/// The iptables arguments (after `iptables -w`) of the rules that cut `pairs`: for
/// each pair, each side's packets to the other side's address are dropped.
pub fn rules(pairs: &BTreeSet<(NodeId, NodeId)>, topology: &Topology) -> Vec<Vec<String>> {
    let mut rules = Vec::with_capacity(pairs.len() * 2);
    for &(x, y) in pairs {
        for (from, to) in [(x, y), (y, x)] {
            let gid = topology.node(from).gid.expect("partitions need the namespace's node gids");
            let to_ip = topology.node(to).addr.ip();
            rules.push(
                [
                    "-A",
                    CHAIN,
                    "-m",
                    "owner",
                    "--gid-owner",
                    &gid.to_string(),
                    "-d",
                    &format!("{to_ip}/32"),
                    "-j",
                    "DROP",
                ]
                .map(String::from)
                .to_vec(),
            );
        }
    }
    assert_eq!(rules.len(), pairs.len() * 2, "two rules per cut pair");
    rules
}

/// An `iptables-restore --noflush` script adding every rule in one transaction, so a
/// partition never exists half-applied.
pub fn restore_script(rules: &[Vec<String>]) -> String {
    let mut script = String::from("*filter\n");
    for rule in rules {
        script.push_str(&rule.join(" "));
        script.push('\n');
    }
    script.push_str("COMMIT\n");
    script
}

/// The arguments that remove every partition: the namespace is private to the run,
/// so its whole OUTPUT chain is ours.
pub fn flush_args() -> Vec<String> {
    ["-w", "-F", CHAIN].map(String::from).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo() -> Topology {
        Topology::in_netns("xo-jepsen-1", true, 3)
    }

    // Proves each spec cuts exactly the pairs between its sides and nothing else.
    #[test]
    fn specs_cut_the_pairs_between_their_sides() {
        let t = topo();
        let n = NodeId;
        let isolate = PartitionSpec::Isolate { node: n(2) }.cut_pairs(&t);
        assert_eq!(isolate, BTreeSet::from([(n(0), n(2)), (n(1), n(2)), (n(2), n(3))]));
        let coord = PartitionSpec::CoordinatorFromServers.cut_pairs(&t);
        assert_eq!(coord, BTreeSet::from([(n(0), n(1)), (n(0), n(2)), (n(0), n(3))]));
        let halves = PartitionSpec::Halves { a: vec![n(3), n(0)], b: vec![n(1), n(2)] };
        assert_eq!(
            halves.cut_pairs(&t),
            BTreeSet::from([(n(0), n(1)), (n(0), n(2)), (n(1), n(3)), (n(2), n(3))])
        );
        let bridge = PartitionSpec::Bridge { a: vec![n(0)], bridge: n(1), b: vec![n(2), n(3)] };
        assert_eq!(bridge.cut_pairs(&t), BTreeSet::from([(n(0), n(2)), (n(0), n(3))]));
    }

    // Proves the rules drop each side's packets to the other's address, matched by the
    // sender's gid, and the restore script wraps them in one filter-table commit.
    #[test]
    fn rules_match_sender_gid_and_peer_address() {
        let t = topo();
        let pairs = BTreeSet::from([(NodeId(0), NodeId(2))]);
        let rules = rules(&pairs, &t);
        let text: Vec<String> = rules.iter().map(|r| r.join(" ")).collect();
        assert_eq!(
            text,
            [
                "-A OUTPUT -m owner --gid-owner 47000 -d 127.0.0.4/32 -j DROP",
                "-A OUTPUT -m owner --gid-owner 47002 -d 127.0.0.2/32 -j DROP",
            ]
        );
        let script = restore_script(&rules);
        assert!(script.starts_with("*filter\n-A OUTPUT"));
        assert!(script.ends_with("DROP\nCOMMIT\n"));
        assert_eq!(flush_args(), ["-w", "-F", "OUTPUT"]);
        let isolate = super::rules(&PartitionSpec::Isolate { node: NodeId(1) }.cut_pairs(&t), &t);
        assert_eq!(isolate.len(), 6);
    }
}
