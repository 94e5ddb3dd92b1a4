//! Differential test of the OT core against the `operational-transform` 0.6 crate as an oracle.
//!
//! What is comparable, and why it is compared exactly:
//! - Units: the oracle counts chars (`bytecount::num_chars` on UTF-8, `str::chars`), i.e. code
//!   points, like us; so documents and inserts include astral and combining chars.
//! - Normal form: the oracle's `OperationSeq` merges adjacent components of one kind and stores
//!   an insert before a delete at the same position, like our builder; its ops always span the
//!   whole base, so we hand it our components including the trailing retain. Its ops therefore
//!   compare structurally with ours.
//! - Tie rule: `a.transform(&b)` puts `a`'s insert first (left) on a same-position tie, which is
//!   our rule with `a` = the op the server applied first. So `Op::transform(first, second)` is
//!   compared with `first.transform(&second)` exactly, ties included.
//!
//! Cases are generated from a seeded splitmix64 generator; a failure names its case seed.
//! `OT_SEED=<n>` changes the base seed, `OT_ORACLE_CASES=<n>` the number of cases.

use chorus_actors::ot::{Component, Op};
use operational_transform::{Operation, OperationSeq};

/// Cases per run by default: a few thousand, each with apply, compose and transform checks.
const DEFAULT_CASES: u64 = 10_000;

/// Base seed when `OT_SEED` is not set (fixed, so the test is reproducible by default).
const DEFAULT_SEED: u64 = 0x0c40_5eed;

/// A small deterministic generator (splitmix64); no dependency, same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (bound > 0).
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }

    fn char(&mut self) -> char {
        const ALPHABET: &[char] = &['a', 'b', 'c', 'é', '\u{301}', '😀', '𝄞', '\n', '中'];
        ALPHABET[self.below(ALPHABET.len())]
    }

    fn text(&mut self, max_len: usize) -> String {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.char()).collect()
    }

    /// A random valid op on a document of `base_len` code points (maybe empty of changes).
    fn op(&mut self, base_len: usize) -> Op {
        let mut components = Vec::new();
        let mut remaining = base_len;
        for _ in 0..self.below(8) {
            match self.below(3) {
                0 if remaining > 0 => {
                    let n = 1 + self.below(remaining.min(6));
                    remaining -= n;
                    components.push(Component::Retain(n));
                }
                1 if remaining > 0 => {
                    let n = 1 + self.below(remaining.min(6));
                    remaining -= n;
                    components.push(Component::Delete(n));
                }
                _ => {
                    let text = self.text(4);
                    if !text.is_empty() {
                        components.push(Component::Insert(text.into()));
                    }
                }
            }
        }
        if components.is_empty() {
            return Op::identity(base_len);
        }
        Op::from_components(components, base_len).expect("generated components are valid")
    }
}

/// Our op in the oracle's format, built through the oracle's own normalizing builder.
fn to_oracle(op: &Op) -> OperationSeq {
    let mut sequence = OperationSeq::default();
    for component in op.components() {
        match component {
            Component::Retain(n) => sequence.retain(*n as u64),
            Component::Delete(n) => sequence.delete(*n as u64),
            Component::Insert(text) => sequence.insert(text),
        }
    }
    sequence
}

/// The oracle's op in our format (its ops span their whole base, like ours).
fn from_oracle(sequence: &OperationSeq) -> Op {
    let components: Vec<Component> = sequence
        .ops()
        .iter()
        .map(|operation| match operation {
            Operation::Retain(n) => Component::Retain(*n as usize),
            Operation::Delete(n) => Component::Delete(*n as usize),
            Operation::Insert(text) => Component::Insert(text.as_str().into()),
        })
        .collect();
    if components.is_empty() {
        return Op::identity(sequence.base_len());
    }
    Op::from_components(components, sequence.base_len()).expect("oracle ops are valid for us")
}

fn seed() -> u64 {
    std::env::var("OT_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

fn cases() -> u64 {
    std::env::var("OT_ORACLE_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// Runs `check` on every case with its own seed, reporting the seed of the first failure.
fn for_each_case(check: impl Fn(&mut Rng, u64)) {
    let base = seed();
    for case in 0..cases() {
        let case_seed = base.wrapping_add(case);
        let mut rng = Rng(case_seed);
        check(&mut rng, case_seed);
    }
}

#[test]
fn apply_matches_the_oracle() {
    for_each_case(|rng, case_seed| {
        let doc = rng.text(30);
        let op = rng.op(doc.chars().count());
        let oracle = to_oracle(&op);
        assert_eq!(oracle.base_len(), op.base_len(), "case seed {case_seed}");
        assert_eq!(
            oracle.target_len(),
            op.target_len(),
            "case seed {case_seed}"
        );
        assert_eq!(
            from_oracle(&oracle),
            op,
            "normal form, case seed {case_seed}"
        );
        let expected = oracle.apply(&doc).expect("the oracle applies a valid op");
        assert_eq!(
            op.apply_to_str(&doc).unwrap(),
            expected,
            "case seed {case_seed}"
        );
        let mut rope = ropey::Rope::from_str(&doc);
        op.apply(&mut rope).unwrap();
        assert_eq!(rope.to_string(), expected, "rope, case seed {case_seed}");
    });
}

#[test]
fn compose_matches_the_oracle() {
    for_each_case(|rng, case_seed| {
        let doc = rng.text(30);
        let first = rng.op(doc.chars().count());
        let second = rng.op(first.target_len());
        let ours = first.compose(&second).unwrap();
        let oracle = to_oracle(&first)
            .compose(&to_oracle(&second))
            .expect("the oracle composes valid ops");
        assert_eq!(to_oracle(&ours), oracle, "case seed {case_seed}");
        assert_eq!(ours, from_oracle(&oracle), "case seed {case_seed}");
        assert_eq!(
            ours.apply_to_str(&doc).unwrap(),
            oracle.apply(&doc).unwrap(),
            "case seed {case_seed}"
        );
    });
}

#[test]
fn transform_matches_the_oracle_including_ties() {
    for_each_case(|rng, case_seed| {
        let doc = rng.text(30);
        let len = doc.chars().count();
        let first = rng.op(len);
        let second = rng.op(len);
        let (first_prime, second_prime) = Op::transform(&first, &second).unwrap();
        let (oracle_first_prime, oracle_second_prime) = to_oracle(&first)
            .transform(&to_oracle(&second))
            .expect("the oracle transforms valid ops");
        assert_eq!(
            to_oracle(&first_prime),
            oracle_first_prime,
            "first', case seed {case_seed}"
        );
        assert_eq!(
            to_oracle(&second_prime),
            oracle_second_prime,
            "second', case seed {case_seed}"
        );
        assert_eq!(
            second.transform_over(&first).unwrap(),
            second_prime,
            "case seed {case_seed}"
        );
        // Both orders converge, and to the oracle's text.
        let ours = second_prime
            .apply_to_str(&first.apply_to_str(&doc).unwrap())
            .unwrap();
        let oracle = oracle_second_prime
            .apply(&to_oracle(&first).apply(&doc).unwrap())
            .unwrap();
        assert_eq!(ours, oracle, "case seed {case_seed}");
        assert_eq!(
            first_prime
                .apply_to_str(&second.apply_to_str(&doc).unwrap())
                .unwrap(),
            oracle,
            "case seed {case_seed}"
        );
    });
}

/// Same-position inserts, which random ops hit only now and then: same result as the oracle,
/// and the first-applied insert on the left.
#[test]
fn tie_rule_matches_the_oracle() {
    for_each_case(|rng, case_seed| {
        let doc = rng.text(30);
        let at = rng.below(doc.chars().count() + 1);
        let prefix = |text: String| {
            let mut components = Vec::new();
            if at > 0 {
                components.push(Component::Retain(at));
            }
            components.push(Component::Insert(text.into()));
            components
        };
        let first = Op::from_components(prefix("X".to_owned()), doc.chars().count()).unwrap();
        let second = Op::from_components(prefix("Y".to_owned()), doc.chars().count()).unwrap();
        let (_, second_prime) = Op::transform(&first, &second).unwrap();
        let (_, oracle_second_prime) = to_oracle(&first).transform(&to_oracle(&second)).unwrap();
        assert_eq!(
            to_oracle(&second_prime),
            oracle_second_prime,
            "case seed {case_seed}"
        );
        let text = second_prime
            .apply_to_str(&first.apply_to_str(&doc).unwrap())
            .unwrap();
        assert!(
            text.contains("XY"),
            "first-applied insert goes left, case seed {case_seed}"
        );
    });
}
