//! `g1c`: circular information flow between committed transactions.
//!
//! Write order per key comes from offsets (ww), read dependencies from polls (wr).
//! Under Kafka's model a ww edge alone says nothing about commit order: transactions'
//! writes interleave in a partition before either commits, so cycles such as
//! `T1 -ww-> T2 -wr-> T1` are legal. What does order commits is reading: a
//! read-committed poll returns offset `o` only once every transaction with a write at
//! or below `o` has resolved (the last stable offset has passed it). So if reader `R`
//! polled key `k` up to offset `o`, every committed writer `W` with a write on `k` at
//! or below `o` committed before `R` did: `W -> R`. That is a wr edge, or a chain of ww
//! edges ending in a wr edge. A cycle of such edges among committed transactions cannot
//! happen; each one found is a `g1c` anomaly.
//!
//! The graph avoids an edge per (writer, reader) pair by threading each key's log as a
//! chain of position nodes: writer -> its write's position -> next position -> ... ->
//! the highest position a reader polled -> reader. Strongly connected components come
//! from Tarjan's algorithm (iterative, so long logs do not exhaust the stack); a
//! component holding two or more transactions is a cycle, explained by its shortest
//! loop. A transaction reaching itself alone is a precommitted read, reported there.

use std::collections::{HashMap, VecDeque};

use crate::history::{Key, Offset};

use super::model::{Model, OpId};
use super::{Class, Findings};

/// What a position node stands for, for explanations.
#[derive(Clone, Copy)]
enum Node<'h> {
    Op(OpId),
    Position(&'h Key, Offset),
}

pub(crate) fn check(model: &Model<'_>, findings: &mut Findings<'_, '_>) {
    let mut nodes: Vec<Node<'_>> = (0..model.ops.len()).map(Node::Op).collect();
    // Key -> node of its dense index 0.
    let mut base: HashMap<&Key, usize> = HashMap::new();
    for (key, log) in &model.logs {
        base.insert(*key, nodes.len());
        nodes.extend(log.offsets.iter().map(|o| Node::Position(key, *o)));
    }
    let mut adj: Vec<Vec<u32>> = vec![Vec::new(); nodes.len()];
    for (key, log) in &model.logs {
        for i in 1..log.offsets.len() {
            adj[base[key] + i - 1].push((base[key] + i) as u32);
        }
    }
    for (id, op) in model.ops.iter().enumerate() {
        if model.committed[id] {
            for (key, value, acked) in op.sends() {
                if let Some(index) = model.logs.get(key).and_then(|l| l.send_index(value, acked)) {
                    adj[id].push((base[key] + index) as u32);
                }
            }
        }
        if model.is_ok(id) {
            for (key, records) in op.reads_by_key() {
                let highest = records.iter().map(|r| r.offset).max().expect("non-empty");
                let index = model.logs[key].dense[&highest];
                adj[base[key] + index].push(id as u32);
            }
        }
    }
    for list in &mut adj {
        list.sort_unstable();
        list.dedup();
    }

    for component in strongly_connected(&adj) {
        let ops: Vec<OpId> =
            component.iter().map(|&n| n as usize).filter(|&n| n < model.ops.len()).collect();
        if ops.len() < 2 {
            continue;
        }
        let explanation = explain(model, &nodes, &adj, &component, ops[0]);
        findings.add(Class::G1c, ops, explanation);
    }
}

/// The shortest loop from `start` back to itself inside `component`, in words.
fn explain(
    model: &Model<'_>,
    nodes: &[Node<'_>],
    adj: &[Vec<u32>],
    component: &[u32],
    start: OpId,
) -> String {
    let mut inside = vec![false; nodes.len()];
    for &n in component {
        inside[n as usize] = true;
    }
    let mut parent: Vec<u32> = vec![u32::MAX; nodes.len()];
    let mut queue = VecDeque::from([start as u32]);
    let mut closing = None;
    'search: while let Some(u) = queue.pop_front() {
        for &w in &adj[u as usize] {
            if !inside[w as usize] {
                continue;
            }
            if w as usize == start {
                closing = Some(u);
                break 'search;
            }
            if parent[w as usize] == u32::MAX {
                parent[w as usize] = u;
                queue.push_back(w);
            }
        }
    }
    // Walk back from the node closing the loop to start, then read it forwards.
    let mut path = vec![start as u32];
    let mut at = closing.expect("a strongly connected component has a loop");
    while at as usize != start {
        path.push(at);
        at = parent[at as usize];
    }
    path.push(start as u32);
    path.reverse();
    // path = start, ..., start; split it into op -> positions -> op steps.
    let mut steps = Vec::new();
    let mut i = 0;
    while i + 1 < path.len() {
        let Node::Op(from) = nodes[path[i] as usize] else {
            unreachable!("steps start at operations")
        };
        let mut j = i + 1;
        while matches!(nodes[path[j] as usize], Node::Position(..)) {
            j += 1;
        }
        let Node::Op(to) = nodes[path[j] as usize] else { unreachable!("steps end at operations") };
        let (Node::Position(key, written), Node::Position(_, polled)) =
            (nodes[path[i + 1] as usize], nodes[path[j - 1] as usize])
        else {
            unreachable!("operations connect through positions")
        };
        steps.push(format!(
            "op {} wrote {key} at offset {written} and op {} polled {key} up to offset {polled}",
            model.index(from),
            model.index(to)
        ));
        i = j;
    }
    format!("each transaction must have committed before the next: {}", steps.join("; "))
}

/// Tarjan's strongly connected components with more than one node.
fn strongly_connected(adj: &[Vec<u32>]) -> Vec<Vec<u32>> {
    const UNSEEN: u32 = u32::MAX;
    let n = adj.len();
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<u32> = Vec::new();
    let mut components = Vec::new();
    let mut next = 0u32;
    // Explicit call stack: (node, next edge to follow).
    let mut calls: Vec<(u32, usize)> = Vec::new();
    for root in 0..n as u32 {
        if index[root as usize] != UNSEEN {
            continue;
        }
        index[root as usize] = next;
        low[root as usize] = next;
        next += 1;
        stack.push(root);
        on_stack[root as usize] = true;
        calls.push((root, 0));
        while let Some(&mut (v, ref mut edge)) = calls.last_mut() {
            let v_ = v as usize;
            if let Some(&w) = adj[v_].get(*edge) {
                *edge += 1;
                let w_ = w as usize;
                if index[w_] == UNSEEN {
                    index[w_] = next;
                    low[w_] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w_] = true;
                    calls.push((w, 0));
                } else if on_stack[w_] {
                    low[v_] = low[v_].min(index[w_]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(u, _)) = calls.last() {
                low[u as usize] = low[u as usize].min(low[v_]);
            }
            if low[v_] == index[v_] {
                let mut component = Vec::new();
                loop {
                    let w = stack.pop().expect("v is on the stack");
                    on_stack[w as usize] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort_unstable();
                    components.push(component);
                }
            }
        }
    }
    assert!(stack.is_empty(), "every node is assigned a component");
    components
}

#[cfg(test)]
mod tests {
    use super::strongly_connected;

    // Proves the iterative Tarjan finds exactly the non-trivial components.
    #[test]
    fn tarjan_finds_components() {
        // 0 -> 1 -> 2 -> 0 is one cycle; 3 -> 4 -> 3 another; 5 hangs off it.
        let adj = vec![vec![1], vec![2], vec![0, 3], vec![4], vec![3, 5], vec![]];
        let mut components = strongly_connected(&adj);
        components.sort();
        assert_eq!(components, vec![vec![0, 1, 2], vec![3, 4]]);
    }
}
