//! Who is in the cluster under test and where: node names, roles, addresses, and
//! the identity the partition nemesis matches packets by. Pure data, no I/O.
//!
//! Inside the run's private network namespace every node has its own loopback
//! address (`127.0.0.2`, `127.0.0.3`, ...; the whole of 127.0.0.0/8 is local once
//! `lo` is up) and the same port. On the host (`--no-netns`) every node shares
//! 127.0.0.1 and gets its own free port instead.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use serde::Serialize;

/// Nodes of one run: one coordinator and a few partition servers. Bounds the
/// 127.0.0.x addresses and the group ids below.
pub const NODES_MAX: usize = 16;

/// The last octet of the first node's address; 127.0.0.1 is left to the clients.
pub const NODE_IP_OCTET_FIRST: u8 = 2;

/// The port every node listens on inside the namespace.
pub const NODE_PORT_NETNS: u16 = 7070;

/// Node `i` runs with group id `NODE_GID_BASE + i`, which is how the partition
/// nemesis tells its packets apart (see `partition.rs`). Chosen far above the
/// ids a distribution hands out.
pub const NODE_GID_BASE: u32 = 47_000;

/// A node, by its position in [`Topology::nodes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct NodeId(pub usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Coordinator,
    PartitionServer,
}

impl Role {
    /// The `xo` subcommand that runs this role.
    pub fn subcommand(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::PartitionServer => "partition-server",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub id: NodeId,
    /// `coord`, `ps1`, `ps2`, ...: how the history and the report name it.
    pub name: String,
    pub role: Role,
    pub addr: SocketAddr,
    /// Group id the process runs with (inside the namespace only).
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    pub nodes: Vec<Node>,
    /// The network namespace everything runs in, or `None` on the host.
    pub netns: Option<String>,
}

/// The namespace of the runner with process id `pid`: unique per live run, and
/// a stale one names a pid that no longer runs.
pub fn netns_name(pid: u32) -> String {
    format!("{NETNS_PREFIX}{pid}")
}

pub const NETNS_PREFIX: &str = "xo-jepsen-";

/// The runner pid a namespace name carries, when it is one of ours.
pub fn netns_pid(name: &str) -> Option<u32> {
    name.strip_prefix(NETNS_PREFIX)?.parse().ok()
}

/// The loopback address of node `i` inside the namespace.
pub fn node_ip(i: usize) -> Ipv4Addr {
    assert!(i < NODES_MAX, "node {i} beyond NODES_MAX");
    Ipv4Addr::new(127, 0, 0, NODE_IP_OCTET_FIRST + i as u8)
}

fn roles(coordinator: bool, partition_servers: usize) -> Vec<(String, Role)> {
    let mut roles = Vec::new();
    if coordinator {
        roles.push(("coord".to_string(), Role::Coordinator));
    }
    for i in 1..=partition_servers {
        roles.push((format!("ps{i}"), Role::PartitionServer));
    }
    assert!(!roles.is_empty() && roles.len() <= NODES_MAX, "1..=NODES_MAX nodes");
    roles
}

impl Topology {
    /// Nodes inside namespace `netns`: one address each, one port, one gid each.
    pub fn in_netns(netns: &str, coordinator: bool, partition_servers: usize) -> Topology {
        let nodes = roles(coordinator, partition_servers)
            .into_iter()
            .enumerate()
            .map(|(i, (name, role))| Node {
                id: NodeId(i),
                name,
                role,
                addr: SocketAddr::V4(SocketAddrV4::new(node_ip(i), NODE_PORT_NETNS)),
                gid: Some(NODE_GID_BASE + i as u32),
            })
            .collect();
        let topology = Topology { nodes, netns: Some(netns.to_string()) };
        topology.assert_distinct_addresses();
        topology
    }

    /// Nodes on the host loopback, on the given (free) ports, one per node.
    pub fn on_host(coordinator: bool, partition_servers: usize, ports: &[u16]) -> Topology {
        let roles = roles(coordinator, partition_servers);
        assert_eq!(ports.len(), roles.len(), "one port per node");
        let nodes = roles
            .into_iter()
            .zip(ports)
            .enumerate()
            .map(|(i, ((name, role), port))| Node {
                id: NodeId(i),
                name,
                role,
                addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, *port)),
                gid: None,
            })
            .collect();
        let topology = Topology { nodes, netns: None };
        topology.assert_distinct_addresses();
        topology
    }

    fn assert_distinct_addresses(&self) {
        for (i, a) in self.nodes.iter().enumerate() {
            assert_eq!(a.id, NodeId(i));
            assert!(a.addr.ip().is_loopback(), "traffic stays on loopback");
            for b in &self.nodes[i + 1..] {
                assert_ne!(a.addr, b.addr, "two nodes on one address");
            }
        }
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes.iter().map(|n| n.id)
    }

    pub fn coordinator(&self) -> Option<&Node> {
        self.nodes.iter().find(|n| n.role == Role::Coordinator)
    }

    pub fn partition_servers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::PartitionServer)
    }

    pub fn with_role(&self, role: Role) -> Vec<NodeId> {
        self.nodes.iter().filter(|n| n.role == role).map(|n| n.id).collect()
    }

    pub fn name(&self, id: NodeId) -> &str {
        &self.node(id).name
    }

    pub fn names(&self, ids: &[NodeId]) -> Vec<String> {
        ids.iter().map(|id| self.name(*id).to_string()).collect()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves namespace names carry the runner's pid and nodes get 127.0.0.2.. with
    // one gid each, the coordinator first.
    #[test]
    fn netns_names_and_addresses() {
        assert_eq!(netns_name(4242), "xo-jepsen-4242");
        assert_eq!(netns_pid("xo-jepsen-4242"), Some(4242));
        assert_eq!(netns_pid("other-4242"), None);
        let t = Topology::in_netns("xo-jepsen-1", true, 3);
        let addrs: Vec<String> = t.nodes.iter().map(|n| n.addr.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.2:7070", "127.0.0.3:7070", "127.0.0.4:7070", "127.0.0.5:7070"]);
        let names: Vec<&str> = t.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["coord", "ps1", "ps2", "ps3"]);
        assert_eq!(t.coordinator().unwrap().role, Role::Coordinator);
        assert_eq!(t.partition_servers().count(), 3);
        let gids: Vec<u32> = t.nodes.iter().filter_map(|n| n.gid).collect();
        assert_eq!(gids, [47_000, 47_001, 47_002, 47_003]);
        let host = Topology::on_host(false, 2, &[9001, 9002]);
        assert!(host.coordinator().is_none());
        assert_eq!(host.nodes[1].addr.to_string(), "127.0.0.1:9002");
        assert_eq!(host.nodes[1].gid, None);
    }
}
