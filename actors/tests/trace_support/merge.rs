//! The trace's own merge, as a reference: every character a transaction inserts becomes an item
//! with a fixed place in one total order (RGA: an insert goes right after the character left of
//! it in its author's view, before everything already there), so the text any set of
//! transactions makes is its visible items in that order. The editing traces have no concurrent
//! inserts at the same place in this sense, so any list CRDT merges them to the same text; the
//! build checks that this one gives exactly `endContent`.
//!
//! The simulated agents use it to write each patch as the change its author meant (which
//! characters it deletes, where its insert goes among the characters the agent actually has),
//! and the simulation uses it to check the server's text after every op.

use chorus_actors::ot::{Component, Op};

use super::{ConcurrentTrace, Version};

/// One patch's effect, by items.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Inserts the items `first..first + len` (in order, one run).
    Insert { first: u32, len: u32 },
    /// Deletes these items (in text order).
    Delete(Vec<u32>),
}

/// The merge of a whole trace.
#[derive(Debug, Clone)]
pub struct Merge {
    /// Per transaction, its patches' effects in order.
    pub effects: Vec<Vec<Effect>>,
    /// Each item's place in the merged order of all items (deleted ones too).
    pub rank: Vec<u32>,
    /// Each item's character.
    pub chars: Vec<char>,
}

/// Most items in one block of the build's list before it splits.
const BLOCK_CAP: usize = 128;

/// A run of the build's list: its items in order and how many each agent's view shows.
struct Block {
    items: Vec<u32>,
    shown: Vec<u32>,
}

/// The list of all items in merged order, cut into blocks, with which agent views show each.
struct List {
    blocks: Vec<Block>,
    /// Block ids in list order.
    order: Vec<u32>,
    /// Each item's block id.
    block_of: Vec<u32>,
    /// Per item, bit `a` set when agent a's view shows it.
    shown: Vec<u8>,
    agents: usize,
}

impl List {
    fn new(agents: usize) -> List {
        List {
            blocks: vec![Block {
                items: Vec::new(),
                shown: vec![0; agents],
            }],
            order: vec![0],
            block_of: Vec::new(),
            shown: Vec::new(),
            agents,
        }
    }

    fn show(&mut self, item: u32, agent: usize, on: bool) {
        let bit = 1u8 << agent;
        let was = self.shown[item as usize] & bit != 0;
        if was == on {
            return;
        }
        self.shown[item as usize] ^= bit;
        let block = &mut self.blocks[self.block_of[item as usize] as usize];
        if on {
            block.shown[agent] += 1;
        } else {
            block.shown[agent] -= 1;
        }
    }

    /// The item at visible position `k` of agent `a`'s view.
    fn kth(&self, a: usize, mut k: usize) -> Option<u32> {
        let bit = 1u8 << a;
        for &b in &self.order {
            let block = &self.blocks[b as usize];
            let n = block.shown[a] as usize;
            if k >= n {
                k -= n;
                continue;
            }
            for &item in &block.items {
                if self.shown[item as usize] & bit != 0 {
                    if k == 0 {
                        return Some(item);
                    }
                    k -= 1;
                }
            }
            return None;
        }
        None
    }

    /// Adds a new item right after `after` (at the start if `None`); shown by no view yet.
    fn insert_after(&mut self, after: Option<u32>, item: u32) {
        debug_assert_eq!(item as usize, self.shown.len());
        self.shown.push(0);
        let (b, at) = match after {
            None => (self.order[0], 0),
            Some(x) => {
                let b = self.block_of[x as usize];
                let at = self.blocks[b as usize]
                    .items
                    .iter()
                    .position(|&i| i == x)
                    .expect("an item is in its block");
                (b, at + 1)
            }
        };
        self.block_of.push(b);
        self.blocks[b as usize].items.insert(at, item);
        if self.blocks[b as usize].items.len() > BLOCK_CAP {
            self.split(b);
        }
    }

    fn split(&mut self, b: u32) {
        let new_id = self.blocks.len() as u32;
        let half = self.blocks[b as usize].items.len() / 2;
        let moved: Vec<u32> = self.blocks[b as usize].items.split_off(half);
        let mut shown = vec![0u32; self.agents];
        for &item in &moved {
            self.block_of[item as usize] = new_id;
            for (a, count) in shown.iter_mut().enumerate() {
                if self.shown[item as usize] & (1 << a) != 0 {
                    *count += 1;
                }
            }
        }
        for (a, count) in shown.iter().enumerate() {
            self.blocks[b as usize].shown[a] -= count;
        }
        self.blocks.push(Block {
            items: moved,
            shown,
        });
        let at = self
            .order
            .iter()
            .position(|&x| x == b)
            .expect("a block is in the order");
        self.order.insert(at + 1, new_id);
    }
}

impl Merge {
    /// Merges every transaction of `trace` (`versions[i]`: what transaction i includes, itself
    /// too; `by_agent[a]`: agent a's transactions in order). Errors if a patch does not fit its
    /// author's view or the merge does not give `endContent`.
    pub fn build(
        trace: &ConcurrentTrace,
        versions: &[Version],
        by_agent: &[Vec<usize>],
    ) -> Result<Merge, String> {
        let n = trace.agents;
        if n > 8 {
            return Err(format!("{n} agents: at most 8 are supported"));
        }
        let mut list = List::new(n);
        let mut chars: Vec<char> = Vec::new();
        let mut deleted: Vec<bool> = Vec::new();
        let mut effects: Vec<Vec<Effect>> = Vec::with_capacity(trace.txns.len());
        // Per agent, the version its view shows.
        let mut seen: Vec<Version> = vec![vec![0; n]; n];
        let mut incoming: Vec<usize> = Vec::new();
        for (t, txn) in trace.txns.iter().enumerate() {
            let a = txn.agent;
            // Bring the author's view to the transaction's parents: others' transactions in
            // trace order (an item's insert before its deletes).
            incoming.clear();
            for b in (0..n).filter(|&b| b != a) {
                for count in seen[a][b]..versions[t][b] {
                    incoming.push(by_agent[b][count as usize]);
                }
            }
            incoming.sort_unstable();
            for &u in &incoming {
                for effect in &effects[u] {
                    match effect {
                        Effect::Insert { first, len } => {
                            for item in *first..first + len {
                                list.show(item, a, true);
                            }
                        }
                        Effect::Delete(items) => {
                            for &item in items {
                                list.show(item, a, false);
                            }
                        }
                    }
                }
            }
            seen[a] = versions[t].clone();
            let mut mine = Vec::with_capacity(txn.patches.len() * 2);
            for patch in &txn.patches {
                let (pos, del, ins) = (patch.0, patch.1, &patch.2);
                if del > 0 {
                    let mut items = Vec::with_capacity(del);
                    let first = list
                        .kth(a, pos)
                        .ok_or_else(|| format!("txn {t}: delete at {pos} past the end"))?;
                    // The next `del` items this view shows, from `first` on.
                    let mut b_index = list
                        .order
                        .iter()
                        .position(|&b| b == list.block_of[first as usize])
                        .expect("block in order");
                    let mut i = list.blocks[list.block_of[first as usize] as usize]
                        .items
                        .iter()
                        .position(|&x| x == first)
                        .expect("item in block");
                    while items.len() < del {
                        let Some(&b) = list.order.get(b_index) else {
                            return Err(format!("txn {t}: delete of {del} at {pos} past the end"));
                        };
                        let block = &list.blocks[b as usize];
                        if i >= block.items.len() {
                            b_index += 1;
                            i = 0;
                            continue;
                        }
                        let item = block.items[i];
                        if list.shown[item as usize] & (1 << a) != 0 {
                            items.push(item);
                        }
                        i += 1;
                    }
                    for &item in &items {
                        list.show(item, a, false);
                        deleted[item as usize] = true;
                    }
                    mine.push(Effect::Delete(items));
                }
                if !ins.is_empty() {
                    let mut after = if pos == 0 {
                        None
                    } else {
                        Some(
                            list.kth(a, pos - 1)
                                .ok_or_else(|| format!("txn {t}: insert at {pos} past the end"))?,
                        )
                    };
                    let first = chars.len() as u32;
                    for c in ins.chars() {
                        let item = chars.len() as u32;
                        chars.push(c);
                        deleted.push(false);
                        list.insert_after(after, item);
                        list.show(item, a, true);
                        after = Some(item);
                    }
                    mine.push(Effect::Insert {
                        first,
                        len: chars.len() as u32 - first,
                    });
                }
            }
            effects.push(mine);
        }
        let mut rank = vec![0u32; chars.len()];
        let mut text = String::with_capacity(trace.end.len());
        let mut r = 0u32;
        for &b in &list.order {
            for &item in &list.blocks[b as usize].items {
                rank[item as usize] = r;
                r += 1;
                if !deleted[item as usize] {
                    text.push(chars[item as usize]);
                }
            }
        }
        if text != trace.end {
            let at = text
                .chars()
                .zip(trace.end.chars())
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            return Err(format!(
                "the reference merge differs from endContent at code point {at}"
            ));
        }
        Ok(Merge {
            effects,
            rank,
            chars,
        })
    }

    /// Number of items.
    pub fn items(&self) -> usize {
        self.chars.len()
    }
}

/// A set of items shown (a text), addressed by merged rank: how many shown items come before a
/// rank, in O(log n).
#[derive(Debug, Clone)]
pub struct View {
    tree: Vec<i32>,
    on: Vec<bool>,
    len: usize,
}

impl View {
    /// An empty text over `items` items.
    pub fn new(items: usize) -> View {
        View {
            tree: vec![0; items + 1],
            on: vec![false; items],
            len: 0,
        }
    }

    fn add(&mut self, rank: usize, delta: i32) {
        let mut i = rank + 1;
        while i < self.tree.len() {
            self.tree[i] += delta;
            i += i & i.wrapping_neg();
        }
    }

    /// Shown items before `rank`.
    fn before(&self, rank: usize) -> usize {
        let mut i = rank;
        let mut sum = 0i32;
        while i > 0 {
            sum += self.tree[i];
            i -= i & i.wrapping_neg();
        }
        sum as usize
    }

    fn set(&mut self, rank: usize, on: bool) -> bool {
        if self.on[rank] == on {
            return false;
        }
        self.on[rank] = on;
        self.add(rank, if on { 1 } else { -1 });
        if on {
            self.len += 1;
        } else {
            self.len -= 1;
        }
        true
    }

    /// Takes in transaction `t` without making an op (its change reached the text another way).
    pub fn absorb(&mut self, merge: &Merge, t: usize) {
        for effect in &merge.effects[t] {
            match effect {
                Effect::Insert { first, len } => {
                    for item in *first..first + len {
                        self.set(merge.rank[item as usize] as usize, true);
                    }
                }
                Effect::Delete(items) => {
                    for &item in items {
                        self.set(merge.rank[item as usize] as usize, false);
                    }
                }
            }
        }
    }

    /// Takes in transaction `t` and returns its ops on this view's text, one per effect that
    /// changes something (a delete of items already gone changes nothing).
    pub fn ops(&mut self, merge: &Merge, t: usize) -> Result<Vec<Op>, String> {
        let mut ops = Vec::with_capacity(merge.effects[t].len());
        for effect in &merge.effects[t] {
            let len = self.len;
            let mut components = Vec::with_capacity(4);
            match effect {
                Effect::Insert { first, len: count } => {
                    let at = self.before(merge.rank[*first as usize] as usize);
                    if at > 0 {
                        components.push(Component::Retain(at));
                    }
                    let text: String = (*first..first + count)
                        .map(|item| merge.chars[item as usize])
                        .collect();
                    components.push(Component::Insert(text.into()));
                    for item in *first..first + count {
                        self.set(merge.rank[item as usize] as usize, true);
                    }
                }
                Effect::Delete(items) => {
                    // Positions before any of them goes (the items are in text order).
                    let mut cursor = 0;
                    let mut run: Option<(usize, usize)> = None;
                    for &item in items {
                        let rank = merge.rank[item as usize] as usize;
                        if !self.on[rank] {
                            continue;
                        }
                        let at = self.before(rank);
                        match run.as_mut() {
                            Some((start, n)) if *start + *n == at => *n += 1,
                            _ => {
                                if let Some((start, n)) = run.take() {
                                    if start > cursor {
                                        components.push(Component::Retain(start - cursor));
                                    }
                                    components.push(Component::Delete(n));
                                    cursor = start + n;
                                }
                                run = Some((at, 1));
                            }
                        }
                    }
                    if let Some((start, n)) = run {
                        if start > cursor {
                            components.push(Component::Retain(start - cursor));
                        }
                        components.push(Component::Delete(n));
                    }
                    for &item in items {
                        self.set(merge.rank[item as usize] as usize, false);
                    }
                }
            }
            if components.is_empty() {
                continue;
            }
            ops.push(Op::from_components(components, len).map_err(|e| e.to_string())?);
        }
        Ok(ops)
    }
}
