//! Placement: which live node should own a document that has no live owner. Rendezvous
//! (highest-random-weight) hashing over the member list: every node computes the same answer
//! from the same list, a joining node takes about 1/n of new documents, and a leaving node's
//! documents spread over the others without moving anyone else's.

/// One candidate owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Node name.
    pub node: String,
    /// Incarnation (unique per process start).
    pub incarnation: String,
}

/// FNV-1a 64 over `doc`, a separator and `node`, then a finaliser (splitmix64) so that nearby
/// inputs spread over the whole range. Stable across processes and versions: placement must
/// agree between nodes.
fn weight(doc: &str, node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in doc.bytes().chain(std::iter::once(0xff)).chain(node.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The preferred owner of `doc` among `candidates` (by node name, so an owner keeps its
/// documents across restarts); `None` when there is no candidate.
pub fn preferred_owner<'a>(doc: &str, candidates: &'a [Candidate]) -> Option<&'a Candidate> {
    candidates.iter().max_by(|a, b| {
        weight(doc, &a.node)
            .cmp(&weight(doc, &b.node))
            .then_with(|| a.node.cmp(&b.node))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Vec<Candidate> {
        names
            .iter()
            .map(|n| Candidate {
                node: (*n).into(),
                incarnation: format!("{n}-1"),
            })
            .collect()
    }

    #[test]
    fn spreads_documents_evenly_over_three_nodes() {
        let members = nodes(&["node-a", "node-b", "node-c"]);
        let mut counts = [0usize; 3];
        for i in 0..1000 {
            let owner = preferred_owner(&format!("doc-{i}.rs"), &members).expect("a member");
            let index = members
                .iter()
                .position(|m| m == owner)
                .expect("from the list");
            counts[index] += 1;
        }
        println!("distribution of 1000 documents over 3 nodes: {counts:?}");
        for c in counts {
            assert!((250..=420).contains(&c), "uneven: {counts:?}");
        }
    }

    #[test]
    fn a_joining_node_moves_only_its_share() {
        let three = nodes(&["node-a", "node-b", "node-c"]);
        let four = nodes(&["node-a", "node-b", "node-c", "node-d"]);
        let mut moved = 0;
        for i in 0..1000 {
            let doc = format!("doc-{i}");
            let before = preferred_owner(&doc, &three).map(|c| c.node.clone());
            let after = preferred_owner(&doc, &four).map(|c| c.node.clone());
            if before != after {
                assert_eq!(
                    after.as_deref(),
                    Some("node-d"),
                    "only moves to the new node"
                );
                moved += 1;
            }
        }
        assert!((170..=330).contains(&moved), "moved {moved}");
    }

    #[test]
    fn same_answer_whatever_the_order() {
        let a = nodes(&["x", "y", "z"]);
        let b = nodes(&["z", "x", "y"]);
        for i in 0..100 {
            let doc = format!("d{i}");
            assert_eq!(preferred_owner(&doc, &a), preferred_owner(&doc, &b));
        }
        assert_eq!(preferred_owner("d", &[]), None);
    }
}
