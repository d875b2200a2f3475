//! Path templating: a per-service prefix tree with per-position statistics (R-INV-1).
//!
//! Each node is one path position. Its literal children are the distinct values seen there;
//! each child keeps its hit count, its [`SegmentShape`] and a [`Behavior`] summary (methods,
//! status classes and response fingerprints of the requests through it). A position gets a
//! parameter child (`{user_id}`) when:
//!
//! * a value of a strongly typed shape arrives (integer, number, UUID, ObjectId, long hex,
//!   date, email, phone): at once;
//! * at least [`TemplatingConfig::opaque_min_distinct`] opaque values (tokens, mixed
//!   alphanumerics, encoded text) with homogeneous behaviour are seen;
//! * at least [`TemplatingConfig::word_min_distinct`] word-like values are seen that are mostly
//!   one-offs (values rarely recur, routes do) and behave homogeneously (same methods, status
//!   classes and response structure: `/api/users` and `/api/orders` answer differently,
//!   `/users/alice` and `/users/bob` alike). Never for words at the root.
//!
//! Then the value children fold into the parameter, subtrees merged recursively. A literal
//! sibling of a parameter stays literal when it behaves distinctly (another method, status
//! pattern or response structure: `/users/login`, `/users/search`); a word value that starts
//! recurring with distinct behaviour after the fold is split back out. Versions (`v1`) never
//! become parameters.
//!
//! One tree per service (not per method): a position's template is the same for every method,
//! as in OpenAPI, and the methods used are part of the behaviour that tells routes from values.
//! Memory is bounded: literal children per node, nodes per tree and endpoints per tree are
//! capped, and what does not fit is counted in an overflow endpoint (`/{overflow}`).

use std::collections::HashMap;

use foldhash::fast::RandomState;

use serde::{Deserialize, Serialize};

use super::shape::{SegmentShape, ShapeSet, Strength};

/// Templating thresholds and bounds (`[inventory.templating]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplatingConfig {
    /// Distinct opaque values (tokens, mixed alphanumerics, encoded text) at one position
    /// before it becomes a parameter. Default 3.
    pub opaque_min_distinct: usize,
    /// Distinct word-like values at one position before it may become a parameter.
    /// Default 5.
    pub word_min_distinct: usize,
    /// Share of those word values that must be one-offs (seen at most twice) for them to be
    /// taken as values rather than routes, in percent. Default 50.
    pub word_min_singleton_percent: u32,
    /// Distinct word values seen as identifiers (the value appears as a JSON string in the
    /// request or response body of its own request) before the position becomes a parameter.
    /// Default 2.
    pub word_id_min_distinct: usize,
    /// Distinct word values that share a sub-path (`/{x}/email` under several of them)
    /// before the position becomes a parameter. Default 3.
    pub word_shared_min_distinct: usize,
    /// Requests a word value folded into a parameter must reach, with distinct behaviour,
    /// before it is split back out as a static route. Default 5.
    pub split_min_hits: u64,
    /// Whether word-like first path segments may become a parameter. Default false.
    pub template_words_at_root: bool,
    /// Literal children kept per node; past it new values go to the parameter. Default 64.
    pub max_children_per_node: usize,
    /// Nodes per service tree; past it unknown paths go to the overflow endpoint.
    /// Default 20000.
    pub max_nodes_per_service: usize,
    /// Endpoints (template × method × operation) per service; past it new ones go to the
    /// overflow endpoint. Default 5000.
    pub max_endpoints_per_service: usize,
}

impl Default for TemplatingConfig {
    fn default() -> Self {
        TemplatingConfig {
            opaque_min_distinct: 3,
            word_min_distinct: 5,
            word_min_singleton_percent: 50,
            word_id_min_distinct: 2,
            word_shared_min_distinct: 3,
            split_min_hits: 5,
            template_words_at_root: false,
            max_children_per_node: 64,
            max_nodes_per_service: 20_000,
            max_endpoints_per_service: 5_000,
        }
    }
}

/// Longest path segment kept as a literal (a route name): anything longer is a value and goes
/// to the position's parameter, so attacker-chosen segments (up to the header limit, 64 KiB)
/// cannot be stored as node labels (issue 22).
pub const MAX_LITERAL_SEGMENT_BYTES: usize = 128;

/// How strongly `seg` (of shape `shape`) says "value": overlong segments count as strong.
fn strength(seg: &str, shape: SegmentShape) -> Strength {
    if seg.len() > MAX_LITERAL_SEGMENT_BYTES {
        Strength::Strong
    } else {
        shape.strength()
    }
}

/// Method slots in [`Behavior`].
pub const METHOD_SLOTS: usize = 8;
/// Status slots in [`Behavior`]: 1xx, 2xx, 3xx, 4xx, 5xx, none/other.
pub const STATUS_SLOTS: usize = 6;
/// Response fingerprints sampled per node.
pub const FP_SAMPLES: u32 = 32;

/// Method slot of a method token.
pub fn method_slot(method: &str) -> usize {
    match method {
        "GET" => 0,
        "POST" => 1,
        "PUT" => 2,
        "PATCH" => 3,
        "DELETE" => 4,
        "HEAD" => 5,
        "OPTIONS" => 6,
        _ => 7,
    }
}

/// Status slot of a response status (`None`: no response).
pub fn status_slot(status: Option<u16>) -> usize {
    match status {
        Some(s @ 100..=599) => usize::from(s / 100 - 1),
        _ => 5,
    }
}

/// What one request looked like, for behaviour statistics.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// [`method_slot`].
    pub method: usize,
    /// [`status_slot`].
    pub status: usize,
}

/// How the requests through a node behaved: counts per method and status class, and the
/// most frequent response fingerprints among the first [`FP_SAMPLES`] requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Behavior {
    methods: [u32; METHOD_SLOTS],
    statuses: [u32; STATUS_SLOTS],
    fps: [(u64, u32); 3],
    fp_samples: u32,
}

impl Behavior {
    fn total(&self) -> u64 {
        self.methods.iter().map(|&c| u64::from(c)).sum()
    }

    fn wants_fp(&self) -> bool {
        self.fp_samples < FP_SAMPLES
    }

    fn record(&mut self, obs: &Observation, fp: Option<u64>) {
        self.methods[obs.method] = self.methods[obs.method].saturating_add(1);
        self.statuses[obs.status] = self.statuses[obs.status].saturating_add(1);
        if let Some(fp) = fp
            && self.wants_fp()
        {
            self.fp_samples += 1;
            self.add_fp(fp, 1);
        }
    }

    fn add_fp(&mut self, fp: u64, n: u32) {
        if let Some(slot) = self.fps.iter_mut().find(|(f, c)| *c > 0 && *f == fp) {
            slot.1 = slot.1.saturating_add(n);
        } else if let Some(slot) = self.fps.iter_mut().find(|(_, c)| *c == 0) {
            *slot = (fp, n);
        } else if let Some(slot) = self.fps.iter_mut().min_by_key(|(_, c)| *c)
            && slot.1 < n
        {
            *slot = (fp, n);
        }
    }

    fn absorb(&mut self, other: &Behavior) {
        for (a, b) in self.methods.iter_mut().zip(other.methods) {
            *a = a.saturating_add(b);
        }
        for (a, b) in self.statuses.iter_mut().zip(other.statuses) {
            *a = a.saturating_add(b);
        }
        for &(fp, n) in other.fps.iter().filter(|(_, n)| *n > 0) {
            self.add_fp(fp, n);
        }
        self.fp_samples = self.fp_samples.saturating_add(other.fp_samples);
    }

    /// `self` without the contribution of `part` (approximate for fingerprints).
    fn minus(&self, part: &Behavior) -> Behavior {
        let mut out = self.clone();
        for (a, b) in out.methods.iter_mut().zip(part.methods) {
            *a = a.saturating_sub(b);
        }
        for (a, b) in out.statuses.iter_mut().zip(part.statuses) {
            *a = a.saturating_sub(b);
        }
        for &(fp, n) in part.fps.iter().filter(|(_, n)| *n > 0) {
            if let Some(slot) = out.fps.iter_mut().find(|(f, c)| *c > 0 && *f == fp) {
                slot.1 = slot.1.saturating_sub(n);
            }
        }
        out.fp_samples = out.fp_samples.saturating_sub(part.fp_samples);
        out
    }

    fn dominant_fp(&self) -> Option<u64> {
        self.fps
            .iter()
            .filter(|(_, n)| *n > 0)
            .max_by_key(|(f, n)| (*n, std::cmp::Reverse(*f)))
            .map(|(f, _)| *f)
    }

    fn fp_count(&self, fp: u64) -> u32 {
        self.fps
            .iter()
            .find(|(f, n)| *n > 0 && *f == fp)
            .map_or(0, |(_, n)| *n)
    }

    fn dominant_method(&self) -> usize {
        argmax(&self.methods)
    }

    fn dominant_status(&self) -> usize {
        argmax(&self.statuses)
    }

    /// True when `self` behaves unlike `others`: its main method, status class or response
    /// fingerprint is (nearly) absent from `others`.
    pub fn distinct_from(&self, others: &Behavior) -> bool {
        let (mine, theirs) = (self.total(), others.total());
        if mine == 0 || theirs == 0 {
            return false;
        }
        let rare_in_others = |count: u32, total: u64| u64::from(count) * 10 < total;
        let m = self.dominant_method();
        if u64::from(self.methods[m]) * 2 >= mine && rare_in_others(others.methods[m], theirs) {
            return true;
        }
        let s = self.dominant_status();
        if u64::from(self.statuses[s]) * 2 >= mine && rare_in_others(others.statuses[s], theirs) {
            return true;
        }
        if self.fp_samples > 0
            && others.fp_samples > 0
            && let Some(fp) = self.dominant_fp()
            && rare_in_others(others.fp_count(fp), u64::from(others.fp_samples))
        {
            return true;
        }
        false
    }
}

fn argmax(counts: &[u32]) -> usize {
    counts
        .iter()
        .enumerate()
        .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
        .map_or(0, |(i, _)| i)
}

/// True when most of `members` behave alike: their main method and main response fingerprint
/// are each shared by at least a fifth of them, for at least three quarters of them.
fn homogeneous(members: &[&Behavior]) -> bool {
    let n = members.len();
    if n == 0 {
        return false;
    }
    // Members without evidence yet (a value just created) neither vote nor object.
    let unknown = members.iter().filter(|b| b.total() == 0).count();
    let members: Vec<&Behavior> = members.iter().copied().filter(|b| b.total() > 0).collect();
    let n_known = members.len();
    let quorum = n_known.div_ceil(5).max(2).min(n_known.max(1));
    let mut fp_votes: HashMap<u64, usize> = HashMap::new();
    let mut method_votes = [0usize; METHOD_SLOTS];
    let mut status_votes = [0usize; STATUS_SLOTS];
    for b in &members {
        if let Some(fp) = b.dominant_fp() {
            *fp_votes.entry(fp).or_insert(0) += 1;
        }
        method_votes[b.dominant_method()] += 1;
        status_votes[b.dominant_status()] += 1;
    }
    let compatible = members
        .iter()
        .filter(|b| {
            let fp_ok = b.dominant_fp().is_none_or(|fp| fp_votes[&fp] >= quorum);
            fp_ok
                && method_votes[b.dominant_method()] >= quorum
                && status_votes[b.dominant_status()] >= quorum
        })
        .count();
    (compatible + unknown) * 4 >= n * 3
}

/// True when the members' main methods agree (each shared by a quorum of them, for at least
/// three quarters of them).
fn same_methods(members: &[&Behavior]) -> bool {
    let known: Vec<&&Behavior> = members.iter().filter(|b| b.total() > 0).collect();
    let n = known.len();
    if n == 0 {
        return true;
    }
    let quorum = n.div_ceil(5).max(2).min(n);
    let mut votes = [0usize; METHOD_SLOTS];
    for b in &known {
        votes[b.dominant_method()] += 1;
    }
    let ok = known
        .iter()
        .filter(|b| votes[b.dominant_method()] >= quorum)
        .count();
    (ok + members.len() - n) * 4 >= members.len() * 3
}

/// Index of a node in its tree.
pub type NodeId = u32;

const ROOT: NodeId = 0;

/// What a tree holds per endpoint: mergeable, so that folded endpoints combine.
pub trait Payload: Default {
    /// Adds `other`'s data into `self`.
    fn absorb(&mut self, other: Self);
}

#[derive(Debug)]
enum Label {
    Root,
    Literal(Box<str>),
    Param(Box<str>),
}

/// A word value that went into a parameter, watched for recurring with distinct behaviour.
#[derive(Debug)]
struct Watch {
    value: Box<str>,
    hits: u64,
    behavior: Behavior,
}

/// Requests a literal word needs before its distinct behaviour keeps it out of a sibling
/// parameter (below it, it is taken as a value until it recurs: see `split_min_hits`).
const STATIC_MIN_HITS: u64 = 3;

/// Word values watched per parameter.
const WATCH_SLOTS: usize = 8;

/// Word values remembered per parameter (hashes, kept sorted).
pub const KNOWN_VALUES: usize = 1024;

fn value_hash(seg: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(seg.as_bytes())
}

/// Requests of a literal word checked for identifier evidence.
const ID_CHECKS: u32 = 8;

#[derive(Debug)]
struct Node<E> {
    label: Label,
    parent: NodeId,
    depth: u16,
    shape: SegmentShape,
    children: HashMap<Box<str>, NodeId, RandomState>,
    param: Option<NodeId>,
    hits: u64,
    behavior: Behavior,
    /// Kept literal: a static sibling with distinct behaviour (or split out).
    pinned: bool,
    /// Parameter only: shapes of the values it took.
    value_shapes: ShapeSet,
    /// Parameter only: distinct values folded in or routed to it (counted per fold and per
    /// first sight in the watch list; an estimate).
    values: u64,
    watch: Vec<Watch>,
    endpoints: Vec<(Box<str>, Box<str>, E)>,
    /// Parameter only: a catch-all that takes every remaining segment (`/anything/{x}` for
    /// `/anything/a/b/c`).
    rest: bool,
    /// Requests whose own bodies carried this word as an identifier (a JSON string value);
    /// for a parameter: of the values folded into it.
    id_evidence: u32,
    /// Requests checked for that (a body was there to look in).
    id_chances: u32,
    /// Parameter only: hashes of the word values folded into it (bounded by
    /// [`KNOWN_VALUES`]): such a word seen again (`DELETE /users/robert.smith` after its
    /// `GET`) goes to the parameter at once, even in an identifier position.
    known: Vec<u64>,
    /// Parameter only: the file extension every value had so far (`.json` of
    /// `robert.smith.json`), rendered after the parameter (`{id}.json`).
    suffix: Suffix,
}

/// The common extension of a parameter's values.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Suffix {
    Unset,
    Same(Box<str>),
    Mixed,
}

/// The extension of a segment: `.json` of `robert.smith.json` (a dot, then 1–5 ASCII
/// alphanumerics with a letter, after a non-empty stem).
fn extension(seg: &str) -> Option<&str> {
    let i = seg.rfind('.')?;
    let ext = &seg[i..];
    (i > 0
        && (2..=6).contains(&ext.len())
        && ext[1..].bytes().all(|b| b.is_ascii_alphanumeric())
        && ext[1..].bytes().any(|b| b.is_ascii_alphabetic()))
    .then_some(ext)
}

impl Suffix {
    fn add(&mut self, seg: &str) {
        let ext = extension(seg);
        *self = match (std::mem::replace(self, Suffix::Mixed), ext) {
            (Suffix::Unset, Some(e)) => Suffix::Same(e.into()),
            (Suffix::Same(x), Some(e)) if *x == *e => Suffix::Same(x),
            _ => Suffix::Mixed,
        };
    }

    fn absorb(&mut self, other: &Suffix) {
        *self = match (std::mem::replace(self, Suffix::Mixed), other) {
            (Suffix::Unset, o) => o.clone(),
            (s, Suffix::Unset) => s,
            (Suffix::Same(a), Suffix::Same(b)) if a == *b => Suffix::Same(a),
            _ => Suffix::Mixed,
        };
    }
}

impl<E> Node<E> {
    fn new(label: Label, parent: NodeId, depth: u16, shape: SegmentShape) -> Self {
        Node {
            label,
            parent,
            depth,
            shape,
            children: HashMap::default(),
            param: None,
            hits: 0,
            behavior: Behavior::default(),
            pinned: false,
            value_shapes: 0,
            values: 0,
            watch: Vec::new(),
            endpoints: Vec::new(),
            rest: false,
            id_evidence: 0,
            id_chances: 0,
            suffix: Suffix::Unset,
            known: Vec::new(),
        }
    }

    fn is_param(&self) -> bool {
        matches!(self.label, Label::Param(_))
    }

    fn accepts_words(&self) -> bool {
        self.value_shapes & SegmentShape::Word.bit() != 0
    }
}

/// Counters of one tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TreeCounters {
    /// Positions that became parameters.
    pub params_created: u64,
    /// Literal children folded into a parameter.
    pub folded_children: u64,
    /// Word values split back out of a parameter as static routes.
    pub split_out: u64,
    /// Requests sent to the overflow endpoint because a bound was reached.
    pub overflow_requests: u64,
}

/// Where a request landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A node of the tree, with the shapes of the values that went to parameters, by segment
    /// index.
    Node(NodeId, Vec<(u16, SegmentShape)>),
    /// A bound was reached: the service's overflow endpoint.
    Overflow,
}

/// The templating tree of one service; `E` is the per-endpoint payload.
#[derive(Debug)]
pub struct PathTree<E> {
    nodes: Vec<Option<Node<E>>>,
    free: Vec<NodeId>,
    live: usize,
    endpoints: usize,
    cfg: TemplatingConfig,
    /// What happened so far.
    pub counters: TreeCounters,
}

/// Splits a request path into segments: empty segments (`//`, a trailing `/`) are dropped.
pub fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

impl<E: Payload> PathTree<E> {
    /// An empty tree.
    pub fn new(cfg: TemplatingConfig) -> Self {
        PathTree {
            nodes: vec![Some(Node::new(Label::Root, ROOT, 0, SegmentShape::Other))],
            free: Vec::new(),
            live: 1,
            endpoints: 0,
            cfg,
            counters: TreeCounters::default(),
        }
    }

    fn node(&self, id: NodeId) -> &Node<E> {
        match self.nodes.get(id as usize) {
            Some(Some(n)) => n,
            // Ids handed out are always live; a stale id is a bug.
            _ => unreachable!("stale node id {id}"),
        }
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node<E> {
        match self.nodes.get_mut(id as usize) {
            Some(Some(n)) => n,
            _ => unreachable!("stale node id {id}"),
        }
    }

    fn alloc(&mut self, node: Node<E>) -> NodeId {
        self.live += 1;
        if let Some(id) = self.free.pop() {
            self.nodes[id as usize] = Some(node);
            id
        } else {
            self.nodes.push(Some(node));
            (self.nodes.len() - 1) as NodeId
        }
    }

    fn release(&mut self, id: NodeId) -> Node<E> {
        self.live -= 1;
        self.free.push(id);
        match self.nodes[id as usize].take() {
            Some(n) => n,
            None => unreachable!("double release of node {id}"),
        }
    }

    /// Live nodes.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when the tree has only its root.
    pub fn is_empty(&self) -> bool {
        self.live == 1
    }

    /// Endpoints held.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints
    }

    fn full(&self) -> bool {
        self.live >= self.cfg.max_nodes_per_service
    }

    /// Routes a request path: walks (and grows) the tree, updating statistics and templating
    /// positions as the evidence allows. `fp` computes the response fingerprint; it is only
    /// called while some node on the way still samples fingerprints.
    pub fn route(&mut self, path: &str, obs: &Observation, fp: &mut dyn FnMut() -> u64) -> Route {
        let segs: Vec<&str> = segments(path).collect();
        self.route_segments(&segs, obs, fp)
    }

    /// [`PathTree::route`] for a path already split by [`segments`].
    pub fn route_segments(
        &mut self,
        segs: &[&str],
        obs: &Observation,
        fp: &mut dyn FnMut() -> u64,
    ) -> Route {
        self.route_with(segs, obs, fp, &mut |_| None)
    }

    /// [`PathTree::route_segments`] with identifier evidence: `ident(seg)` tells whether the
    /// word `seg` appears as an identifier in this request's bodies (`None`: no body to look
    /// in). It is only called for word segments that are still undecided literals.
    pub fn route_with(
        &mut self,
        segs: &[&str],
        obs: &Observation,
        fp: &mut dyn FnMut() -> u64,
        ident: &mut dyn FnMut(&str) -> Option<bool>,
    ) -> Route {
        let mut fp_cache: Option<u64> = None;
        let mut get_fp = |tree_wants: bool| -> Option<u64> {
            if !tree_wants {
                return None;
            }
            Some(*fp_cache.get_or_insert_with(&mut *fp))
        };
        let mut cur = ROOT;
        let mut captures = Vec::new();
        {
            let wants = self.node(cur).behavior.wants_fp();
            let f = get_fp(wants);
            let root = self.node_mut(cur);
            root.hits += 1;
            root.behavior.record(obs, f);
        }
        for (index, seg) in segs.iter().enumerate() {
            // A catch-all parameter takes the rest of the path.
            if self.node(cur).rest {
                break;
            }
            // The shape is only needed off the literal fast path.
            let mut shape = None;
            if let Some(below) = segs.get(index + 1) {
                self.value_by_shared_subpath(cur, seg, below, &mut shape);
            }
            let Some(next) = self.step(cur, seg, &mut shape, obs, &mut get_fp, ident) else {
                self.counters.overflow_requests += 1;
                return Route::Overflow;
            };
            if self.node(next).is_param() {
                let shape = *shape.get_or_insert_with(|| SegmentShape::of(seg));
                captures.push((index.min(u16::MAX as usize) as u16, shape));
            }
            cur = next;
        }
        if self.node(cur).is_param() && self.node(cur).hits.is_power_of_two() {
            cur = self.maybe_rest(cur);
        }
        Route::Node(cur, captures)
    }

    /// Where `segs` would land without changing anything (`None`: no such node yet), with
    /// the indexes of the segments that went to parameters. A value no parameter takes yet
    /// goes to the position's parameter if there is one.
    pub fn lookup(&self, segs: &[&str]) -> Option<(NodeId, Vec<u16>)> {
        let mut cur = ROOT;
        let mut caps = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            if self.node(cur).rest {
                break;
            }
            let shape = SegmentShape::of(seg);
            cur = match self.resolve(cur, seg, shape) {
                Some(n) => n,
                None if strength(seg, shape) != Strength::Never => self.node(cur).param?,
                None => return None,
            };
            if self.node(cur).is_param() {
                caps.push(i.min(u16::MAX as usize) as u16);
            }
        }
        Some((cur, caps))
    }

    /// A word at `cur` whose path goes on into a sub-path that the parameter beside it
    /// already has is a value of that parameter (R-INV-1): `/users/vincent.thompson/posts`
    /// beside `/users/{user_id}/posts`, `/posts/null/comments` beside
    /// `/posts/{post_id}/comments`. Resources, not routes, carry sub-resources of the same
    /// name; this holds whatever the word's own bodies showed (a `DELETE` answered `{}`, a
    /// list of no posts) and in whatever order the requests came. A pinned literal (a static
    /// route with distinct behaviour) stays. The word's literal node, if any, is folded with
    /// its endpoints; otherwise the parameter is told to take the word.
    fn value_by_shared_subpath(
        &mut self,
        cur: NodeId,
        seg: &str,
        below: &str,
        shape_cache: &mut Option<SegmentShape>,
    ) {
        if cur == ROOT && !self.cfg.template_words_at_root {
            return;
        }
        let Some(p) = self.node(cur).param else {
            return;
        };
        let pn = self.node(p);
        if pn.rest || !pn.children.contains_key(below) {
            return;
        }
        let shape = *shape_cache.get_or_insert_with(|| SegmentShape::of(seg));
        if strength(seg, shape) != Strength::Word {
            return;
        }
        match self.node(cur).children.get(seg).copied() {
            Some(c) => {
                let n = self.node(c);
                if n.pinned || n.is_param() {
                    return;
                }
                self.node_mut(p).value_shapes |= SegmentShape::Word.bit();
                self.fold(cur, &[c]);
            }
            None => {
                let h = value_hash(seg);
                let pn = self.node_mut(p);
                pn.value_shapes |= SegmentShape::Word.bit();
                if let Err(i) = pn.known.binary_search(&h)
                    && pn.known.len() < KNOWN_VALUES
                {
                    pn.known.insert(i, h);
                }
            }
        }
    }

    /// A parameter `c` right below parameter `p` is the rest of a catch-all when both hold
    /// endpoints of the same (two or more) methods answering with the same response
    /// structure: `/anything/{x}` and `/anything/{x}/{y}` are one endpoint whose value has
    /// slashes. Then `p` takes its whole subtree and every deeper path. Returns the node the
    /// request now belongs to.
    fn maybe_rest(&mut self, c: NodeId) -> NodeId {
        let p = self.node(c).parent;
        let (pn, cn) = (self.node(p), self.node(c));
        if !pn.is_param() || pn.rest || pn.param != Some(c) || cn.endpoints.is_empty() {
            return c;
        }
        fn methods<E>(n: &Node<E>) -> Vec<&str> {
            let mut m: Vec<&str> = n.endpoints.iter().map(|(m, _, _)| &**m).collect();
            m.sort_unstable();
            m.dedup();
            m
        }
        let pm = methods(pn);
        if pm.len() < 2 || pm != methods(cn) {
            return c;
        }
        if pn.behavior.dominant_fp() != cn.behavior.dominant_fp()
            || pn.behavior.dominant_status() != cn.behavior.dominant_status()
        {
            return c;
        }
        self.collapse_rest(p);
        p
    }

    /// Makes parameter `p` a catch-all: its whole subtree (endpoints, statistics) is folded
    /// into it.
    fn collapse_rest(&mut self, p: NodeId) {
        let mut stack: Vec<NodeId> = Vec::new();
        {
            let n = self.node_mut(p);
            n.rest = true;
            stack.extend(n.children.drain().map(|(_, c)| c));
            stack.extend(n.param.take());
        }
        while let Some(id) = stack.pop() {
            let node = self.release(id);
            stack.extend(node.children.into_values());
            stack.extend(node.param);
            self.counters.folded_children += 1;
            for (method, op, payload) in node.endpoints {
                self.attach(p, method, op, payload);
            }
        }
    }

    /// One step: the child of `cur` that `seg` goes to (created if needed), with its
    /// statistics updated. `None` when a bound is reached.
    fn step(
        &mut self,
        cur: NodeId,
        seg: &str,
        shape_cache: &mut Option<SegmentShape>,
        obs: &Observation,
        get_fp: &mut dyn FnMut(bool) -> Option<u64>,
        ident: &mut dyn FnMut(&str) -> Option<bool>,
    ) -> Option<NodeId> {
        let next = match self.node(cur).children.get(seg) {
            Some(&c) => c,
            None => {
                let shape = *shape_cache.get_or_insert_with(|| SegmentShape::of(seg));
                match self.resolve(cur, seg, shape) {
                    Some(n) => n,
                    None => self.grow(cur, seg, shape)?,
                }
            }
        };
        let mut shape = || *shape_cache.get_or_insert_with(|| SegmentShape::of(seg));
        let wants = self.node(next).behavior.wants_fp();
        let f = get_fp(wants);
        let is_param = self.node(next).is_param();
        let split_threshold = self.cfg.split_min_hits;
        let n = self.node_mut(next);
        n.hits += 1;
        n.behavior.record(obs, f);
        // A word next to a parameter folds when it behaves like it: checked as the evidence
        // of either doubles.
        let mut check_like = n.hits.is_power_of_two();
        let mut promote_now = false;
        if is_param {
            let shape = shape();
            n.value_shapes |= shape.bit();
            if !matches!(n.suffix, Suffix::Mixed) {
                n.suffix.add(seg);
            }
            // Identifier parameters take only words that named themselves (or were folded
            // before): nothing to split back out.
            if shape.strength() == Strength::Word && n.id_evidence == 0 {
                let watched = watch(n, seg, obs, f);
                if watched >= split_threshold && self.maybe_split(cur, next, seg) {
                    // This request already counted for the parameter; later ones go to the
                    // new static route.
                    return self.resolve(cur, seg, shape);
                }
            }
        } else {
            let undecided = !n.pinned && n.shape.strength() == Strength::Word;
            check_like &= undecided;
            // Identifier evidence settles on the first requests of a word.
            if undecided && n.id_chances < ID_CHECKS {
                match ident(seg) {
                    Some(true) => {
                        n.id_chances += 1;
                        n.id_evidence += 1;
                        // New evidence: the position may now be a parameter.
                        promote_now = n.id_evidence == 1;
                    }
                    Some(false) => n.id_chances += 1,
                    None => {}
                }
            }
        }
        if promote_now {
            self.promote(cur);
        }
        if check_like && self.nodes.get(next as usize).is_some_and(Option::is_some) {
            self.fold_like_siblings(cur);
        }
        // The step may have folded `next` (fold_like_siblings): resolve again.
        if self.nodes.get(next as usize).is_some_and(Option::is_some) {
            Some(next)
        } else {
            let shape = shape();
            self.resolve(cur, seg, shape).or(self.node(cur).param)
        }
    }

    /// The existing child `seg` goes to, if any.
    fn resolve(&self, cur: NodeId, seg: &str, shape: SegmentShape) -> Option<NodeId> {
        let node = self.node(cur);
        if let Some(&c) = node.children.get(seg) {
            return Some(c);
        }
        let p = node.param?;
        let takes = match strength(seg, shape) {
            Strength::Never => false,
            // An identifier parameter (its values named themselves in bodies) takes a new
            // word only once the word shows the same evidence: until then it is a literal.
            Strength::Word => {
                let pn = self.node(p);
                (pn.accepts_words()
                    && (pn.id_evidence == 0 || pn.known.binary_search(&value_hash(seg)).is_ok()))
                    || node.children.len() >= self.cfg.max_children_per_node
                    || self.full()
            }
            Strength::Opaque | Strength::Strong => true,
        };
        takes.then_some(p)
    }

    /// Creates the child `seg` goes to: a parameter at once for strongly typed values, else a
    /// literal, then checks whether the position should become a parameter.
    fn grow(&mut self, cur: NodeId, seg: &str, shape: SegmentShape) -> Option<NodeId> {
        let depth = self.node(cur).depth;
        let crowded = self.node(cur).children.len() >= self.cfg.max_children_per_node;
        let strength = strength(seg, shape);
        if strength == Strength::Strong
            || (crowded && strength != Strength::Never)
            || (self.full() && strength != Strength::Never)
        {
            let p = self.ensure_param(cur)?;
            self.fold_opaque(cur);
            self.fold_like_siblings(cur);
            return Some(p);
        }
        if self.full() || crowded {
            return None;
        }
        let child = self.alloc(Node::new(
            Label::Literal(seg.into()),
            cur,
            depth.saturating_add(1),
            shape,
        ));
        self.node_mut(cur).children.insert(seg.into(), child);
        self.promote(cur);
        // Promotion may have folded the new child into the parameter.
        self.resolve(cur, seg, shape)
    }

    /// The parameter child of `cur`, created if needed (`None` if the tree is full).
    fn ensure_param(&mut self, cur: NodeId) -> Option<NodeId> {
        if let Some(p) = self.node(cur).param {
            return Some(p);
        }
        if self.live > self.cfg.max_nodes_per_service {
            return None;
        }
        // Discovered parameters are named when rendered, from their position (stable
        // whatever order the values came in); seeded ones keep their stored name.
        let depth = self.node(cur).depth.saturating_add(1);
        let p = self.alloc(Node::new(
            Label::Param("".into()),
            cur,
            depth,
            SegmentShape::Other,
        ));
        self.node_mut(cur).param = Some(p);
        self.counters.params_created += 1;
        Some(p)
    }

    /// Checks the literal children of `cur` for a position that holds values.
    fn promote(&mut self, cur: NodeId) {
        let cfg = self.cfg.clone();
        let node = self.node(cur);
        let at_root = cur == ROOT;
        let mut opaque = Vec::new();
        for (_, &c) in node.children.iter() {
            let child = self.node(c);
            if !child.pinned && child.shape.strength() >= Strength::Opaque {
                opaque.push(c);
            }
        }
        let param = node.param;
        if opaque.len() >= cfg.opaque_min_distinct || (param.is_some() && !opaque.is_empty()) {
            let mut members: Vec<&Behavior> =
                opaque.iter().map(|&c| &self.node(c).behavior).collect();
            if let Some(p) = param {
                members.push(&self.node(p).behavior);
            }
            // Opaque tokens are values in nearly every API: the methods used must agree, but
            // outcomes (200 for one token, 401 for the next) may differ.
            if param.is_some() || same_methods(&members) {
                self.fold(cur, &opaque);
            }
        }
        if !at_root || cfg.template_words_at_root {
            self.promote_words(cur);
        }
        // A parameter (new or old) takes every opaque sibling, and words that behave like it.
        if self.node(cur).param.is_some() {
            self.fold_opaque(cur);
            self.fold_like_siblings(cur);
        }
    }

    /// The word-value rules of [`PathTree::promote`]: a position holds word values when
    ///
    /// * many distinct words are seen there that are mostly one-offs and behave alike, or
    /// * a few of them were seen as identifiers (their own request or response body carries
    ///   the word as a JSON string value: `GET /users/robert.smith` → `{"username":
    ///   "robert.smith"}`) and the methods used agree, or
    /// * a few of them share a sub-path (`/users/v1/name1/email`, `/users/v1/bob/email`)
    ///   and behave alike.
    fn promote_words(&mut self, cur: NodeId) {
        let cfg = self.cfg.clone();
        let words: Vec<NodeId> = self
            .node(cur)
            .children
            .values()
            .copied()
            .filter(|&c| {
                let n = self.node(c);
                !n.pinned && n.shape.strength() == Strength::Word
            })
            .collect();
        let param = self.node(cur).param;
        let with_param = |tree: &Self, set: &[NodeId]| -> Vec<Behavior> {
            let mut v: Vec<Behavior> = set.iter().map(|&c| tree.node(c).behavior.clone()).collect();
            if let Some(p) = param {
                v.push(tree.node(p).behavior.clone());
            }
            v
        };
        // Identifier evidence.
        let ids: Vec<NodeId> = words
            .iter()
            .copied()
            .filter(|&c| self.node(c).id_evidence > 0)
            .collect();
        // Resources that name themselves are values whatever was done to them (a fuzzer
        // PATCHes one and DELETEs the next): the methods need not agree.
        if ids.len() >= cfg.word_id_min_distinct.max(1) {
            self.node_mut_param_accepts_words(cur);
            self.fold(cur, &ids);
            return;
        }
        // Shared sub-paths.
        if words.len() >= cfg.word_shared_min_distinct.max(2) {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for &c in &words {
                for k in self.node(c).children.keys() {
                    *counts.entry(&**k).or_insert(0) += 1;
                }
            }
            let sharing: Vec<NodeId> = words
                .iter()
                .copied()
                .filter(|&c| {
                    self.node(c)
                        .children
                        .keys()
                        .any(|k| counts.get(&**k).is_some_and(|&n| n >= 2))
                })
                .collect();
            if sharing.len() >= cfg.word_shared_min_distinct.max(2) {
                let members = with_param(self, &sharing);
                if homogeneous(&members.iter().collect::<Vec<_>>()) {
                    self.node_mut_param_accepts_words(cur);
                    self.fold(cur, &sharing);
                    return;
                }
            }
        }
        if words.len() >= cfg.word_min_distinct {
            let singletons = words.iter().filter(|&&c| self.node(c).hits <= 2).count();
            if singletons * 100 >= words.len() * cfg.word_min_singleton_percent as usize {
                let members = with_param(self, &words);
                if homogeneous(&members.iter().collect::<Vec<_>>()) {
                    // Recurring words that behave unlike the rest stay as static routes.
                    let mut group = Behavior::default();
                    for b in &members {
                        group.absorb(b);
                    }
                    let mut values = Vec::new();
                    for &c in &words {
                        let child = self.node(c);
                        let others = group.minus(&child.behavior);
                        if child.hits >= STATIC_MIN_HITS && child.behavior.distinct_from(&others) {
                            self.node_mut(c).pinned = true;
                        } else {
                            values.push(c);
                        }
                    }
                    if !values.is_empty() {
                        self.node_mut_param_accepts_words(cur);
                        self.fold(cur, &values);
                    }
                }
            }
        }
    }

    fn node_mut_param_accepts_words(&mut self, cur: NodeId) {
        if let Some(p) = self.ensure_param(cur) {
            self.node_mut(p).value_shapes |= SegmentShape::Word.bit();
        }
    }

    /// With a parameter at `cur`, folds every opaque literal child into it.
    fn fold_opaque(&mut self, cur: NodeId) {
        let opaque: Vec<NodeId> = self
            .node(cur)
            .children
            .values()
            .copied()
            .filter(|&c| {
                let n = self.node(c);
                !n.pinned && n.shape.strength() >= Strength::Opaque
            })
            .collect();
        self.fold(cur, &opaque);
    }

    /// With a parameter at `cur` (not the root), folds the word children that behave like it.
    fn fold_like_siblings(&mut self, cur: NodeId) {
        if cur == ROOT && !self.cfg.template_words_at_root {
            return;
        }
        let Some(p) = self.node(cur).param else {
            return;
        };
        // From the parameter's first request on: a word seen once or twice beside it folds
        // whatever it did, and the parameter may never see a second request through the
        // tree (error answers to a known template are counted without routing, so httpbin's
        // `/digest-auth/…/{stale_after}`, always 401, would keep `never` literal forever).
        if self.node(p).hits < 1 && self.node(p).id_evidence == 0 {
            return;
        }
        let pb = self.node(p).behavior.clone();
        // In an identifier position (its values were seen in bodies), a word that recurs and
        // was looked for in its own bodies without ever being there is a route: `me`,
        // `_debug`, `login` next to `{username}`.
        let id_position = self.node(p).id_evidence > 0;
        if id_position {
            let routes: Vec<NodeId> = self
                .node(cur)
                .children
                .values()
                .copied()
                .filter(|&c| {
                    let n = self.node(c);
                    !n.pinned
                        && n.shape.strength() == Strength::Word
                        && n.hits >= STATIC_MIN_HITS
                        && n.id_chances >= 2
                        && n.id_evidence == 0
                })
                .collect();
            for c in routes {
                self.node_mut(c).pinned = true;
            }
        }
        let like: Vec<NodeId> = self
            .node(cur)
            .children
            .values()
            .copied()
            .filter(|&c| {
                let n = self.node(c);
                // Words seen less than `static_min_hits` times fold whatever they did (if
                // one recurs with distinct behaviour it is split back out); a recurring word
                // folds only when it behaves like the parameter.
                let named = id_position && n.id_evidence > 0;
                !n.pinned
                    && n.shape.strength() == Strength::Word
                    && n.hits >= 1
                    // In an identifier position a word looked for in its own bodies folds
                    // only when it was found there.
                    && (named
                        || ((!id_position || n.id_chances == 0)
                            && (n.hits < STATIC_MIN_HITS
                                || (!n.behavior.distinct_from(&pb)
                                    && !pb.distinct_from(&n.behavior)))))
            })
            .collect();
        if !like.is_empty() {
            self.node_mut(p).value_shapes |= SegmentShape::Word.bit();
            self.fold(cur, &like);
        }
    }

    /// Folds the literal children `members` of `cur` into its parameter.
    fn fold(&mut self, cur: NodeId, members: &[NodeId]) {
        if members.is_empty() {
            return;
        }
        let Some(p) = self.ensure_param(cur) else {
            return;
        };
        for &m in members {
            let Some(Some(node)) = self.nodes.get(m as usize) else {
                continue;
            };
            let key = match &node.label {
                Label::Literal(s) => s.clone(),
                _ => continue,
            };
            // A folded word keeps being watched with all it did so far, so that if it turns
            // out to be a static route it is split back out with its own traffic.
            let watched =
                (node.shape.strength() == Strength::Word && key.len() <= 64).then(|| Watch {
                    value: key.clone(),
                    hits: node.hits,
                    behavior: node.behavior.clone(),
                });
            self.node_mut(cur).children.remove(&key);
            self.counters.folded_children += 1;
            self.merge_into(m, p);
            if let Some(w) = watched {
                add_watch(self.node_mut(p), w);
            }
        }
    }

    /// Merges the subtree at `src` (already detached from its parent) into `dst`.
    fn merge_into(&mut self, src: NodeId, dst: NodeId) {
        let node = self.release(src);
        let shape_bit = node.shape.bit();
        let src_values = if node.is_param() { node.values } else { 1 };
        {
            let d = self.node_mut(dst);
            if let (Label::Param(dn), Label::Param(sn)) = (&mut d.label, &node.label)
                && dn.is_empty()
                && !sn.is_empty()
            {
                *dn = sn.clone();
            }
            d.hits += node.hits;
            d.behavior.absorb(&node.behavior);
            d.id_evidence = d.id_evidence.saturating_add(node.id_evidence);
            match &node.label {
                Label::Literal(k) => {
                    d.suffix.add(k);
                    let h = value_hash(k);
                    if let Err(i) = d.known.binary_search(&h)
                        && d.known.len() < KNOWN_VALUES
                    {
                        d.known.insert(i, h);
                    }
                }
                Label::Param(_) => {
                    d.suffix.absorb(&node.suffix);
                    for h in &node.known {
                        if let Err(i) = d.known.binary_search(h)
                            && d.known.len() < KNOWN_VALUES
                        {
                            d.known.insert(i, *h);
                        }
                    }
                }
                Label::Root => {}
            }
            d.id_chances = d.id_chances.saturating_add(node.id_chances);
            d.value_shapes |= if matches!(node.label, Label::Param(_)) {
                node.value_shapes
            } else {
                shape_bit
            };
            d.values += src_values;
        }
        for (method, op, payload) in node.endpoints {
            self.attach(dst, method, op, payload);
        }
        for (key, child) in node.children {
            let child_shape = self.node(child).shape;
            if let Some(&existing) = self.node(dst).children.get(&key) {
                self.merge_into(child, existing);
            } else if let Some(p) = self.resolve(dst, &key, child_shape)
                && self.node(p).is_param()
            {
                self.merge_into(child, p);
            } else {
                let depth = self.node(dst).depth.saturating_add(1);
                let c = self.node_mut(child);
                c.parent = dst;
                c.depth = depth;
                self.node_mut(dst).children.insert(key, child);
            }
        }
        if let Some(sp) = node.param {
            match self.node(dst).param {
                Some(dp) => self.merge_into(sp, dp),
                None => {
                    let depth = self.node(dst).depth.saturating_add(1);
                    let c = self.node_mut(sp);
                    c.parent = dst;
                    c.depth = depth;
                    self.node_mut(dst).param = Some(sp);
                }
            }
        }
        // The merged children may now show a parameter position of their own.
        if self.nodes.get(dst as usize).is_some_and(Option::is_some) {
            self.promote(dst);
            if self.node(dst).param.is_some() {
                self.fold_opaque(dst);
                self.fold_like_siblings(dst);
            }
        }
    }

    fn attach(&mut self, dst: NodeId, method: Box<str>, op: Box<str>, payload: E) {
        let d = self.node_mut(dst);
        if let Some((_, _, existing)) = d
            .endpoints
            .iter_mut()
            .find(|(m, o, _)| *m == method && *o == op)
        {
            existing.absorb(payload);
            self.endpoints -= 1;
        } else {
            d.endpoints.push((method, op, payload));
        }
    }

    /// Splits the word `seg` out of parameter `p` of `cur` when it recurs with behaviour
    /// distinct from the parameter's other values.
    fn maybe_split(&mut self, cur: NodeId, p: NodeId, seg: &str) -> bool {
        if self.full() || self.node(cur).children.len() >= self.cfg.max_children_per_node {
            return false;
        }
        let pn = self.node(p);
        let Some(w) = pn.watch.iter().find(|w| &*w.value == seg) else {
            return false;
        };
        let others = pn.behavior.minus(&w.behavior);
        if others.total() < w.hits || !w.behavior.distinct_from(&others) {
            return false;
        }
        let behavior = w.behavior.clone();
        let hits = w.hits;
        // Methods whose traffic at the parameter all came from this word: their endpoints
        // move with it (otherwise they would linger as phantom endpoints of the parameter).
        let own_methods: Vec<usize> = (0..METHOD_SLOTS)
            .filter(|&m| behavior.methods[m] > 0 && pn.behavior.methods[m] <= behavior.methods[m])
            .collect();
        let depth = self.node(cur).depth.saturating_add(1);
        let mut child = Node::new(
            Label::Literal(seg.into()),
            cur,
            depth,
            SegmentShape::of(seg),
        );
        child.pinned = true;
        child.hits = hits;
        child.behavior = behavior.clone();
        let pn = self.node_mut(p);
        let (moved, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut pn.endpoints)
            .into_iter()
            .partition(|(m, _, _)| own_methods.contains(&method_slot(m)));
        pn.endpoints = kept;
        pn.behavior = pn.behavior.minus(&behavior);
        pn.hits = pn.hits.saturating_sub(hits);
        pn.watch.retain(|w| &*w.value != seg);
        child.endpoints = moved;
        let id = self.alloc(child);
        self.node_mut(cur).children.insert(seg.into(), id);
        self.counters.split_out += 1;
        true
    }

    /// The payload of `(method, op)` at `node`, if it exists.
    pub fn endpoint(&self, node: NodeId, method: &str, op: &str) -> Option<&E> {
        self.node(node)
            .endpoints
            .iter()
            .find(|(m, o, _)| &**m == method && &**o == op)
            .map(|(_, _, e)| e)
    }

    /// The payloads of every endpoint at `node`.
    pub fn endpoints_at(&self, node: NodeId) -> impl Iterator<Item = &E> {
        self.node(node).endpoints.iter().map(|(_, _, e)| e)
    }

    /// The endpoint of `node` a probe with `method` is counted in: the endpoint of that
    /// method, else of `GET`, else the first one (`None`: the node has no endpoint).
    pub fn probe_target(&mut self, node: NodeId, method: &str) -> Option<&mut E> {
        let n = self.node_mut(node);
        let pos = n
            .endpoints
            .iter()
            .position(|(m, _, _)| &**m == method)
            .or_else(|| n.endpoints.iter().position(|(m, _, _)| &**m == "GET"))
            .or(if n.endpoints.is_empty() {
                None
            } else {
                Some(0)
            })?;
        Some(&mut n.endpoints[pos].2)
    }

    /// The payload of `(method, op)` at `node`, created if the endpoint bound allows.
    pub fn endpoint_mut(&mut self, node: NodeId, method: &str, op: &str) -> Option<&mut E> {
        let max = self.cfg.max_endpoints_per_service;
        let count = self.endpoints;
        let n = self.node_mut(node);
        let pos = n
            .endpoints
            .iter()
            .position(|(m, o, _)| &**m == method && &**o == op);
        let pos = match pos {
            Some(p) => p,
            None => {
                if count >= max {
                    return None;
                }
                n.endpoints.push((method.into(), op.into(), E::default()));
                self.endpoints += 1;
                self.node(node).endpoints.len() - 1
            }
        };
        Some(&mut self.node_mut(node).endpoints[pos].2)
    }

    /// The template of `node`: literal segments as seen, parameters as `{name}` (a name that
    /// occurs twice gets `_2`, `_3`… appended).
    pub fn template(&self, node: NodeId) -> String {
        use std::fmt::Write as _;
        // The nodes from the root's child down to `node` (issue 18: one walk, and no copy of
        // a literal or a declared name, on every event).
        let mut path = Vec::with_capacity(8);
        let mut cur = node;
        while cur != ROOT {
            let n = self.node(cur);
            path.push(n);
            cur = n.parent;
        }
        path.reverse();
        if path.is_empty() {
            return "/".into();
        }
        let mut out = String::with_capacity(64);
        let mut used: Vec<std::borrow::Cow<'_, str>> = Vec::new();
        let mut prev: Option<&Label> = None;
        for n in path {
            let label = &n.label;
            out.push('/');
            match label {
                Label::Literal(s) => push_escaped_braces(&mut out, s),
                Label::Param(name) => {
                    let name = if name.is_empty() {
                        std::borrow::Cow::Owned(param_name(prev))
                    } else {
                        std::borrow::Cow::Borrowed(&**name)
                    };
                    let count = used.iter().filter(|u| **u == name).count();
                    out.push('{');
                    out.push_str(&name);
                    used.push(name);
                    if count > 0 {
                        // Writing to a String cannot fail.
                        let _ = write!(out, "_{}", count + 1);
                    }
                    out.push('}');
                    if let Suffix::Same(ext) = &n.suffix
                        && !n.rest
                    {
                        out.push_str(ext);
                    }
                }
                Label::Root => {}
            }
            prev = Some(label);
        }
        out
    }

    /// Every endpoint: node, method, operation, payload.
    pub fn endpoints(&self) -> impl Iterator<Item = (NodeId, &str, &str, &E)> {
        self.nodes.iter().enumerate().flat_map(|(i, n)| {
            n.iter().flat_map(move |n| {
                n.endpoints
                    .iter()
                    .map(move |(m, o, e)| (i as NodeId, &**m, &**o, e))
            })
        })
    }

    /// Every endpoint, mutably.
    pub fn endpoints_mut(&mut self) -> impl Iterator<Item = (NodeId, &str, &str, &mut E)> {
        self.nodes.iter_mut().enumerate().flat_map(|(i, n)| {
            n.iter_mut().flat_map(move |n| {
                n.endpoints
                    .iter_mut()
                    .map(move |(m, o, e)| (i as NodeId, &**m, &**o, e))
            })
        })
    }

    /// Shapes of the values parameter `node` took (0 for a literal).
    pub fn value_shapes(&self, node: NodeId) -> ShapeSet {
        let n = self.node(node);
        if n.is_param() { n.value_shapes } else { 0 }
    }

    /// Re-creates a known template (from the store, after a restart) so that templates and
    /// parameter names stay stable: `{name}` segments become parameters with that name,
    /// other segments literals with `hits` hits. Returns the node.
    pub fn seed(&mut self, template: &str, hits: u64) -> Option<NodeId> {
        let mut cur = ROOT;
        for seg in segments(template) {
            let depth = self.node(cur).depth.saturating_add(1);
            let braced = seg
                .strip_prefix('{')
                .and_then(|s| s.split_once('}'))
                .filter(|(n, ext)| {
                    !n.contains('{')
                        && (ext.is_empty() || extension(&format!("x{ext}")) == Some(*ext))
                });
            let next = if let Some((name, ext)) = braced {
                match self.node(cur).param {
                    Some(p) => p,
                    None => {
                        if self.full() {
                            return None;
                        }
                        let mut n = Node::new(
                            Label::Param(strip_suffix_number(name).into()),
                            cur,
                            depth,
                            SegmentShape::Other,
                        );
                        if !ext.is_empty() {
                            n.suffix = Suffix::Same(ext.into());
                        }
                        let p = self.alloc(n);
                        self.node_mut(cur).param = Some(p);
                        p
                    }
                }
            } else {
                let key = unescape_braces(seg);
                match self.node(cur).children.get(key.as_str()) {
                    Some(&c) => c,
                    None => {
                        if self.full() {
                            return None;
                        }
                        let c = self.alloc(Node::new(
                            Label::Literal(key.as_str().into()),
                            cur,
                            depth,
                            SegmentShape::of(&key),
                        ));
                        self.node_mut(cur).children.insert(key.into(), c);
                        c
                    }
                }
            };
            self.node_mut(next).hits += hits;
            cur = next;
        }
        Some(cur)
    }
}

/// Adds a watch entry to parameter node `n` (space-saving replacement when full).
fn add_watch<E>(n: &mut Node<E>, w: Watch) {
    if let Some(existing) = n.watch.iter_mut().find(|x| x.value == w.value) {
        existing.hits += w.hits;
        existing.behavior.absorb(&w.behavior);
    } else if n.watch.len() < WATCH_SLOTS {
        n.watch.push(w);
    } else if let Some(min) = n.watch.iter_mut().min_by_key(|x| x.hits)
        && min.hits < w.hits
    {
        *min = w;
    }
}

/// Records a word value routed to parameter node `n`; returns its hits so far.
fn watch<E>(n: &mut Node<E>, seg: &str, obs: &Observation, fp: Option<u64>) -> u64 {
    if let Some(w) = n.watch.iter_mut().find(|w| &*w.value == seg) {
        w.hits += 1;
        w.behavior.record(obs, fp);
        return w.hits;
    }
    n.values += 1;
    if seg.len() > 64 {
        return 1;
    }
    let mut b = Behavior::default();
    b.record(obs, fp);
    let entry = Watch {
        value: seg.into(),
        hits: 1,
        behavior: b,
    };
    if n.watch.len() < WATCH_SLOTS {
        n.watch.push(entry);
    } else if let Some(min) = n.watch.iter_mut().min_by_key(|w| w.hits) {
        // Space-saving: the newcomer inherits the evicted count, so heavy hitters stay.
        let inherited = min.hits;
        *min = entry;
        min.hits += inherited;
        return min.hits;
    }
    1
}

/// The name of a discovered parameter after `prev`: `user_id` after the literal `users`, else
/// `id`.
fn param_name(prev: Option<&Label>) -> String {
    if let Some(Label::Literal(s)) = prev
        && SegmentShape::of(s) == SegmentShape::Word
    {
        let word = singular(&s.to_ascii_lowercase());
        let clean: String = word
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let clean = clean.trim_matches('_');
        if !clean.is_empty() && clean.len() <= 32 {
            return format!("{clean}_id");
        }
    }
    "id".into()
}

/// English singular of a plural route name (`users` → `user`, `categories` → `category`).
pub fn singular(word: &str) -> String {
    if let Some(stem) = word.strip_suffix("ies")
        && stem.len() >= 2
    {
        return format!("{stem}y");
    }
    for suffix in ["sses", "shes", "ches", "xes"] {
        if word.ends_with(suffix) {
            return word[..word.len() - 2].to_owned();
        }
    }
    if word.ends_with('s') && !word.ends_with("ss") && !word.ends_with("us") && word.len() > 3 {
        return word[..word.len() - 1].to_owned();
    }
    word.to_owned()
}

/// Removes a `_2`-style suffix the renderer added to a repeated name.
fn strip_suffix_number(name: &str) -> &str {
    match name.rsplit_once('_') {
        Some((base, n))
            if !base.is_empty()
                && n.len() <= 2
                && n.bytes().all(|b| b.is_ascii_digit())
                && n != "0"
                && n != "1" =>
        {
            base
        }
        _ => name,
    }
}

/// Literal `{`/`}` in a path segment are percent-encoded in templates, so that a template's
/// braces always mean a parameter.
fn push_escaped_braces(out: &mut String, s: &str) {
    if s.contains(['{', '}']) {
        out.push_str(&s.replace('{', "%7B").replace('}', "%7D"));
    } else {
        out.push_str(s);
    }
}

fn unescape_braces(s: &str) -> String {
    if s.contains("%7B") || s.contains("%7D") {
        s.replace("%7B", "{").replace("%7D", "}")
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default, Debug)]
    struct Count(u64);
    impl Payload for Count {
        fn absorb(&mut self, other: Self) {
            self.0 += other.0;
        }
    }

    fn hit(tree: &mut PathTree<Count>, method: &str, path: &str, status: u16, fp: u64) {
        let obs = Observation {
            method: method_slot(method),
            status: status_slot(Some(status)),
        };
        if let Route::Node(n, _) = tree.route(path, &obs, &mut || fp)
            && let Some(c) = tree.endpoint_mut(n, method, "")
        {
            c.0 += 1;
        }
    }

    fn templates(tree: &PathTree<Count>) -> Vec<String> {
        let mut t: Vec<String> = tree
            .endpoints()
            .map(|(n, m, _, _)| format!("{m} {}", tree.template(n)))
            .collect();
        t.sort();
        t
    }

    #[test]
    fn integers_and_uuids_are_templated_at_once() {
        let mut t = PathTree::new(TemplatingConfig::default());
        hit(&mut t, "GET", "/users/1", 200, 1);
        hit(
            &mut t,
            "GET",
            "/users/2/orders/3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            200,
            2,
        );
        assert_eq!(
            templates(&t),
            vec![
                "GET /users/{user_id}",
                "GET /users/{user_id}/orders/{order_id}"
            ]
        );
    }

    #[test]
    fn opaque_tokens_after_a_few_values() {
        let mut t = PathTree::new(TemplatingConfig::default());
        for tok in ["x9Kq2LmZ0p", "Pq81ZzLm2a", "aa9Q7Lm0Rt"] {
            hit(&mut t, "GET", &format!("/files/{tok}"), 200, 7);
        }
        assert_eq!(templates(&t), vec!["GET /files/{file_id}"]);
    }

    #[test]
    fn distinct_routes_are_not_folded() {
        let mut t = PathTree::new(TemplatingConfig::default());
        for (i, r) in [
            "users", "orders", "accounts", "cards", "payments", "limits", "fx",
        ]
        .iter()
        .enumerate()
        {
            hit(&mut t, "GET", &format!("/api/{r}"), 200, 100 + i as u64);
        }
        assert_eq!(templates(&t).len(), 7, "{:?}", templates(&t));
    }

    #[test]
    fn word_values_fold_but_static_siblings_stay() {
        let mut t = PathTree::new(TemplatingConfig::default());
        for _ in 0..5 {
            hit(&mut t, "POST", "/users/login", 200, 9);
            hit(&mut t, "GET", "/users/search", 200, 8);
        }
        for name in ["alice", "bob", "carol", "dave", "erin", "frank", "grace"] {
            hit(&mut t, "GET", &format!("/users/{name}"), 200, 1);
        }
        let tpl = templates(&t);
        assert!(tpl.contains(&"GET /users/{user_id}".to_owned()), "{tpl:?}");
        assert!(tpl.contains(&"POST /users/login".to_owned()), "{tpl:?}");
        assert!(tpl.contains(&"GET /users/search".to_owned()), "{tpl:?}");
        assert_eq!(tpl.len(), 3, "{tpl:?}");
    }

    #[test]
    fn words_next_to_an_id_fold_only_when_alike() {
        let mut t = PathTree::new(TemplatingConfig::default());
        for i in 0..10 {
            hit(&mut t, "GET", &format!("/accounts/{i}"), 200, 1);
        }
        // Seen once, a word next to an ID is taken as a value; recurring with its own
        // response structure, it is split back out as a static route.
        for _ in 0..6 {
            hit(&mut t, "GET", "/accounts/summary", 200, 2);
            hit(&mut t, "GET", "/accounts/current", 200, 1);
        }
        let tpl = templates(&t);
        assert_eq!(
            tpl,
            vec!["GET /accounts/summary", "GET /accounts/{account_id}"],
            "{tpl:?}"
        );
    }

    #[test]
    fn recurring_distinct_word_is_split_out_of_a_word_parameter() {
        let mut t = PathTree::new(TemplatingConfig::default());
        for name in ["alice", "bob", "carol", "dave", "erin", "frank"] {
            hit(&mut t, "GET", &format!("/users/{name}"), 200, 1);
        }
        for _ in 0..8 {
            hit(&mut t, "POST", "/users/logout", 204, 3);
        }
        let tpl = templates(&t);
        assert!(tpl.contains(&"POST /users/logout".to_owned()), "{tpl:?}");
        assert_eq!(t.counters.split_out, 1);
    }

    #[test]
    fn versions_stay_literal_and_nested_values_fold() {
        let mut t = PathTree::new(TemplatingConfig::default());
        for v in ["v1", "v2", "v3", "v4", "v5", "v6"] {
            for name in ["alice", "bob", "carol", "dave", "erin", "frank"] {
                hit(
                    &mut t,
                    "GET",
                    &format!("/api/{v}/users/{name}/profile"),
                    200,
                    1,
                );
            }
        }
        let tpl = templates(&t);
        assert_eq!(tpl.len(), 6, "{tpl:?}");
        assert!(
            tpl.contains(&"GET /api/v1/users/{user_id}/profile".to_owned()),
            "{tpl:?}"
        );
    }

    #[test]
    fn bounds_send_excess_to_overflow() {
        let cfg = TemplatingConfig {
            max_nodes_per_service: 10,
            ..TemplatingConfig::default()
        };
        let mut t = PathTree::<Count>::new(cfg);
        let obs = Observation {
            method: 0,
            status: 1,
        };
        let mut overflow = 0;
        for i in 0..50u32 {
            // Distinct words at the root: never templated, so the tree must fill up.
            let word: String = i
                .to_string()
                .bytes()
                .map(|d| char::from(b'a' + d - b'0'))
                .collect();
            if t.route(&format!("/r{word}/a/b"), &obs, &mut || 1) == Route::Overflow {
                overflow += 1;
            }
        }
        assert!(t.len() <= 11);
        assert!(overflow > 0);
        assert_eq!(t.counters.overflow_requests, overflow);
    }

    #[test]
    fn seeds_keep_names() {
        let mut t = PathTree::<Count>::new(TemplatingConfig::default());
        let n = t.seed("/links/{n}/{offset}", 3).unwrap();
        assert_eq!(t.template(n), "/links/{n}/{offset}");
        hit(&mut t, "GET", "/links/4/5", 200, 1);
        assert_eq!(templates(&t), vec!["GET /links/{n}/{offset}"]);
    }

    #[test]
    fn repeated_names_get_suffixes() {
        let mut t = PathTree::new(TemplatingConfig::default());
        hit(&mut t, "GET", "/7/8", 200, 1);
        assert_eq!(templates(&t), vec!["GET /{id}/{id_2}"]);
        assert_eq!(singular("categories"), "category");
        assert_eq!(singular("status"), "status");
        assert_eq!(singular("addresses"), "address");
    }
}

#[cfg(test)]
mod word_tests {
    use super::tests_support::*;
    use super::*;

    #[test]
    fn identifier_words_fold_and_literal_siblings_stay() {
        let mut t = PathTree::new(TemplatingConfig::default());
        for name in ["robert.smith", "penahannah", "name1"] {
            hit_id(
                &mut t,
                "GET",
                &format!("/users/v1/{name}"),
                200,
                1,
                Some(true),
            );
        }
        for _ in 0..4 {
            hit_id(&mut t, "GET", "/users/v1/_debug", 200, 2, Some(false));
            hit_id(&mut t, "POST", "/users/v1/login", 200, 3, Some(false));
            hit_id(&mut t, "POST", "/users/v1/register", 200, 4, Some(false));
            hit_id(&mut t, "GET", "/users/v1/me", 200, 1, Some(false));
        }
        for name in ["alice", "bob.jones", "carol"] {
            hit_id(
                &mut t,
                "PUT",
                &format!("/users/v1/{name}/email"),
                204,
                5,
                None,
            );
            hit_id(
                &mut t,
                "DELETE",
                &format!("/users/v1/{name}"),
                200,
                6,
                Some(true),
            );
        }
        let tpl = templates_of(&t);
        assert_eq!(
            tpl,
            vec![
                "DELETE /users/v1/{id}",
                "GET /users/v1/_debug",
                "GET /users/v1/me",
                "GET /users/v1/{id}",
                "POST /users/v1/login",
                "POST /users/v1/register",
                "PUT /users/v1/{id}/email",
            ],
            "{tpl:?}"
        );
    }
}

#[cfg(test)]
mod subpath_tests {
    use super::tests_support::*;
    use super::*;

    #[test]
    fn a_one_off_word_folds_at_the_parameters_first_value() {
        let mut t = PathTree::new(TemplatingConfig::default());
        hit_id(&mut t, "GET", "/stale/never", 401, 1, None);
        hit_id(&mut t, "GET", "/stale/0", 401, 1, None);
        assert_eq!(templates_of(&t), vec!["GET /stale/{stale_id}"]);
    }

    #[test]
    fn a_word_leading_into_the_parameters_sub_path_is_a_value() {
        let mut t = PathTree::new(TemplatingConfig::default());
        // An identifier position: user names seen in their own bodies.
        for name in ["robert.smith", "penahannah"] {
            hit_id(&mut t, "GET", &format!("/users/{name}"), 200, 1, Some(true));
            hit_id(&mut t, "GET", &format!("/users/{name}/posts"), 200, 2, None);
        }
        // Names whose bodies never showed them (a DELETE answered `{}`, an empty list of
        // posts), in either order: the sub-path of `{user_id}` says they are values.
        hit_id(&mut t, "DELETE", "/users/amber.shaw", 200, 3, Some(false));
        hit_id(&mut t, "DELETE", "/users/amber.shaw", 404, 4, None);
        hit_id(
            &mut t,
            "GET",
            "/users/amber.shaw/posts",
            200,
            2,
            Some(false),
        );
        hit_id(
            &mut t,
            "GET",
            "/users/vincent.thompson/posts",
            200,
            2,
            Some(false),
        );
        // An integer position: a fuzzer's `null`.
        for i in 1..4 {
            hit_id(&mut t, "GET", &format!("/posts/{i}/comments"), 200, 5, None);
        }
        hit_id(&mut t, "GET", "/posts/null/comments", 200, 5, Some(false));
        // A static route beside a parameter, without the sub-path, stays.
        for _ in 0..4 {
            hit_id(&mut t, "GET", "/users/me", 200, 1, Some(false));
        }
        assert_eq!(
            templates_of(&t),
            vec![
                "DELETE /users/{user_id}",
                "GET /posts/{post_id}/comments",
                "GET /users/me",
                "GET /users/{user_id}",
                "GET /users/{user_id}/posts",
            ]
        );
    }
}

#[cfg(test)]
mod rest_tests {
    use super::tests_support::*;
    use super::*;

    #[test]
    fn multi_segment_values_become_one_catch_all() {
        let mut t = PathTree::new(TemplatingConfig::default());
        // Values with 1–3 segments (httpbin's `/anything/{anything}`).
        for v in ["11", "12/13", "14/15/16", "17", "18/19", "20/21/22"] {
            for m in ["GET", "POST", "DELETE"] {
                hit_id(&mut t, m, &format!("/anything/{v}"), 200, 9, None);
            }
        }
        assert_eq!(
            templates_of(&t),
            vec![
                "DELETE /anything/{anything_id}",
                "GET /anything/{anything_id}",
                "POST /anything/{anything_id}"
            ]
        );
    }

    #[test]
    fn fixed_arity_parameters_with_other_answers_stay_apart() {
        let mut t = PathTree::new(TemplatingConfig::default());
        for i in 0..6 {
            hit_id(&mut t, "GET", &format!("/links/{i}"), 302, 1, None);
            hit_id(
                &mut t,
                "GET",
                &format!("/links/{i}/{}", i + 1),
                200,
                2,
                None,
            );
        }
        assert_eq!(
            templates_of(&t),
            vec!["GET /links/{link_id}", "GET /links/{link_id}/{id}"]
        );
    }

    #[test]
    fn extensions_are_kept_after_the_parameter() {
        let mut t = PathTree::new(TemplatingConfig::default());
        for i in 0..4 {
            hit_id(
                &mut t,
                "GET",
                &format!("/shop/orders/{i}.json"),
                200,
                1,
                None,
            );
        }
        assert_eq!(templates_of(&t), vec!["GET /shop/orders/{order_id}.json"]);
        let n = t.seed("/shop/orders/{order_id}.json", 1).unwrap();
        assert_eq!(t.template(n), "/shop/orders/{order_id}.json");
    }
}

#[cfg(test)]
mod tests_support {
    use super::*;

    #[derive(Default, Debug)]
    pub struct Count(pub u64);
    impl Payload for Count {
        fn absorb(&mut self, other: Self) {
            self.0 += other.0;
        }
    }

    pub fn hit_id(
        tree: &mut PathTree<Count>,
        method: &str,
        path: &str,
        status: u16,
        fp: u64,
        id: Option<bool>,
    ) {
        let obs = Observation {
            method: method_slot(method),
            status: status_slot(Some(status)),
        };
        let segs: Vec<&str> = segments(path).collect();
        let last = segs.last().copied().unwrap_or_default().to_owned();
        let r = tree.route_with(&segs, &obs, &mut || fp, &mut |s| {
            if s == last { id } else { id.map(|_| false) }
        });
        if let Route::Node(n, _) = r
            && let Some(c) = tree.endpoint_mut(n, method, "")
        {
            c.0 += 1;
        }
    }

    pub fn templates_of(tree: &PathTree<Count>) -> Vec<String> {
        let mut t: Vec<String> = tree
            .endpoints()
            .map(|(n, m, _, _)| format!("{m} {}", tree.template(n)))
            .collect();
        t.sort();
        t.dedup();
        t
    }
}
