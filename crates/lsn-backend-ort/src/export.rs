//! The ONNX exporter: the graphs of a Gemma 3 or Llama-family decoder, written from the same HF checkpoint every
//! backend reads, with the FFN tap reductions in the graph (ONNX Runtime cannot hook intermediate tensors).
//!
//! Weights live once in `weights.bin` (f32, each tensor 4 KiB-aligned so the runtime can map it); every graph refers
//! to it as external data. Graphs take only `input_ids` `[batch, seq]` (rows right-padded) plus what the requested
//! taps need; RoPE tables (from lsn-core's frequencies) and causal / sliding masks are computed in the graph.
//!
//! A body graph ([`BodySpec`]) runs the decoder and emits, as asked: per-layer counts of `a > 0`, f64 sums and sums
//! of squares, the two order statistics of each quantile level (in-graph sort) or the activations themselves (host
//! quantiles), counts above per-neuron thresholds; then the final-normed hidden states, the logits, or nothing (the
//! pass stops after the last tap). The head graph maps hidden rows to logits and, on request, the next-token NLL.

use std::collections::BTreeMap;

use lsn_core::arch::{self, Arch};
use lsn_core::layer::LayerOps;
use lsn_core::{Activation, AttentionKind, ModelConfig, TapPoint, positions};
use serde::{Deserialize, Serialize};

use crate::proto::{Attr, Dim, Elem, Graph};

/// Bumped whenever the graphs or the weight layout change; part of the cache key.
pub const EXPORTER_VERSION: u32 = 5;

/// The file every graph takes its weights from.
pub(crate) const WEIGHTS_FILE: &str = "weights.bin";

/// Where each tensor sits in [`WEIGHTS_FILE`]: name → (shape, byte offset). Norm weights are stored as the
/// multiplier the norm applies (`1 + w` for Gemma).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct Manifest {
    pub(crate) tensors: BTreeMap<String, (Vec<usize>, u64)>,
}

/// How a body graph returns the per-batch quantiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Quantiles {
    No,
    /// Sorted in the graph; the order statistics at `quantile_ranks` come back, `[layers, ranks, intermediate]`.
    Graph,
    /// The real tokens' activations come back per layer (`act_<l>`, `[tokens, intermediate]`) for the host reducer.
    Host,
}

/// What a body graph ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Head {
    /// Nothing after the last layer's tap.
    No,
    /// `hidden` `[batch·seq, hidden_size]` after the final norm.
    Hidden,
    /// `logits` `[batch, seq, vocab]`: the whole model, as a stand-alone export.
    Logits,
}

/// One body graph variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct BodySpec {
    pub(crate) count_pos: bool,
    pub(crate) moments: bool,
    pub(crate) quantiles: Quantiles,
    pub(crate) above: bool,
    /// Taps read `gate_proj(x)` before the activation (`TapPoint::GatePre`) instead of the activation.
    pub(crate) gate_pre: bool,
    /// Inputs `intervention_keep` and `intervention_add` (f32, `[layers, intermediate]`): at every position each
    /// activation becomes `keep · a + add` (before the taps); and `steering` (f32, `[layers, hidden]`): each layer's
    /// row added to its output.
    pub(crate) intervene: bool,
    /// A cached step: inputs `past_key_<l>` / `past_value_<l>` `[batch, kv_heads, past, head_dim]` (past may be 0),
    /// the RoPE tables and masks of each attention kind (`rope_cos_global`, `rope_sin_global`, `mask_global`, and
    /// `_sliding`), and `out_index` (the positions whose hidden state comes back); outputs `present_key_<l>` /
    /// `present_value_<l>` with the new tokens appended. lsn-core's decoder computes positions and masks.
    pub(crate) cache: bool,
    /// Output `layer_sums` (f64, `[layers, hidden]`): each layer's output summed over the real tokens
    /// (`real_index`).
    pub(crate) layer_sums: bool,
    pub(crate) head: Head,
}

impl BodySpec {
    /// The decoder with no taps, no intervention and no cache, ending in `head`.
    pub(crate) const fn plain(head: Head) -> Self {
        Self {
            count_pos: false,
            moments: false,
            quantiles: Quantiles::No,
            above: false,
            gate_pre: false,
            intervene: false,
            cache: false,
            layer_sums: false,
            head,
        }
    }

    pub(crate) fn any_tap(&self) -> bool {
        self.count_pos || self.moments || self.quantiles != Quantiles::No || self.above
    }

    /// Whether the graph reads `real_index` (the flat positions of the real tokens).
    pub(crate) fn needs_real(&self) -> bool {
        self.any_tap() || self.layer_sums
    }

    /// The graph's file name in the export directory.
    pub(crate) fn file_name(&self) -> String {
        let q = match self.quantiles {
            Quantiles::No => "",
            Quantiles::Graph => "-quantiles",
            Quantiles::Host => "-activations",
        };
        let h = match self.head {
            Head::No => "",
            Head::Hidden => "-hidden",
            Head::Logits => "-logits",
        };
        format!(
            "body{}{}{q}{}{}{}{}{}{h}.onnx",
            if self.count_pos { "-countpos" } else { "" },
            if self.moments { "-moments" } else { "" },
            if self.above { "-above" } else { "" },
            if self.gate_pre && self.any_tap() { "-gatepre" } else { "" },
            if self.intervene { "-intervened" } else { "" },
            if self.cache { "-cached" } else { "" },
            if self.layer_sums { "-layersums" } else { "" },
        )
    }
}

/// Graph-building context: the config, the family's description and where the weights are.
struct Ctx<'a> {
    cfg: &'a ModelConfig,
    arch: Arch,
    manifest: &'a Manifest,
    g: Graph,
}

impl Ctx<'_> {
    /// The initializer of checkpoint tensor `name` (declared on first use; `ExportDir` has checked that the manifest
    /// holds every tensor of the config).
    fn w(&mut self, name: &str) -> String {
        let (shape, offset) = self.manifest.tensors.get(name).cloned().unwrap_or_default();
        if !self.g.has_initializer(name) {
            self.g.external(name, &shape, WEIGHTS_FILE, offset);
        }
        name.to_owned()
    }

    /// `x @ Wᵀ` for 2-D `x` `[n, in]` and a HF weight `[out, in]`.
    fn linear(&mut self, x: &str, weight: &str) -> String {
        let w = self.w(weight);
        self.g.op("Gemm", &[x, &w], &[Attr::Int("transB", 1)])
    }

    /// RMSNorm over the last axis: `x · 1/sqrt(mean(x²) + eps) · alpha`.
    fn rms_norm(&mut self, x: &str, weight: &str) -> String {
        let alpha = self.w(weight);
        let g = &mut self.g;
        let sq = g.op("Mul", &[x, x], &[]);
        let last = g.ints(&[-1]);
        let ms = g.op("ReduceMean", &[&sq, &last], &[Attr::Int("keepdims", 1)]);
        let eps = g.float(self.cfg.rms_norm_eps as f32);
        let var = g.op("Add", &[&ms, &eps], &[]);
        let root = g.op("Sqrt", &[&var], &[]);
        let inv = g.op("Reciprocal", &[&root], &[]);
        let normed = g.op("Mul", &[x, &inv], &[]);
        g.op("Mul", &[&normed, &alpha], &[])
    }

    /// The FFN activation, in PyTorch's CPU order (GELU-tanh as `lsn_core::activation::gelu_tanh`, saturation included).
    fn activate(&mut self, x: &str, act: Activation) -> String {
        let g = &mut self.g;
        match act {
            Activation::Silu => {
                let s = g.op("Sigmoid", &[x], &[]);
                g.op("Mul", &[x, &s], &[])
            }
            Activation::Gelu => {
                let r = g.float(std::f32::consts::FRAC_1_SQRT_2);
                let (half, one) = (g.float(0.5), g.float(1.0));
                let e = g.op("Mul", &[x, &r], &[]);
                let e = g.op("Erf", &[&e], &[]);
                let e = g.op("Add", &[&e, &one], &[]);
                let hx = g.op("Mul", &[x, &half], &[]);
                g.op("Mul", &[&hx, &e], &[])
            }
            Activation::GeluTanh => {
                let (beta, kappa) =
                    (g.float(lsn_core::activation::GELU_BETA), g.float(lsn_core::activation::GELU_KAPPA));
                let (half, one) = (g.float(0.5), g.float(1.0));
                let sat = g.float(lsn_core::activation::TANH_SATURATION);
                let x2 = g.op("Mul", &[x, x], &[]);
                let x3 = g.op("Mul", &[&x2, x], &[]);
                let kx3 = g.op("Mul", &[&kappa, &x3], &[]);
                let s = g.op("Add", &[x, &kx3], &[]);
                let inner = g.op("Mul", &[&beta, &s], &[]);
                // ONNX Runtime's f32 Tanh is off by up to 5 ulp and reaches −1 already at −8.07, which moves the
                // p90 thresholds of mostly-off neurons (see lsn_core::activation); in f64, rounded once to f32, it is
                // the correctly rounded tanh lsn-core's rule uses (checked on a 2M-point grid: no difference).
                let wide = g.op("Cast", &[&inner], &[Attr::Int("to", Elem::DOUBLE as i64)]);
                let t = g.op("Tanh", &[&wide], &[]);
                let t = g.op("Cast", &[&t], &[Attr::Int("to", Elem::FLOAT as i64)]);
                let mag = g.op("Abs", &[&inner], &[]);
                let saturated = g.op("Greater", &[&mag, &sat], &[]);
                let sign = g.op("Sign", &[&inner], &[]);
                let t = g.op("Where", &[&saturated, &sign, &t], &[]);
                let hx = g.op("Mul", &[&half, x], &[]);
                let t1 = g.op("Add", &[&one, &t], &[]);
                g.op("Mul", &[&hx, &t1], &[])
            }
        }
    }
}

/// One attention kind's RoPE tables (cos/sin, and both premultiplied by the attention scale for the queries) and
/// additive mask.
struct KindTables {
    cos: String,
    sin: String,
    cos_q: String,
    sin_q: String,
    mask: String,
}

impl KindTables {
    /// `cos`/`sin`/`mask` with the queries' scaled tables derived in the graph (table-sized, once per pass).
    fn new(g: &mut Graph, cos: String, sin: String, mask: String, scale: f64) -> Self {
        let s = g.float(scale as f32);
        let cos_q = g.op("Mul", &[&cos, &s], &[]);
        let sin_q = g.op("Mul", &[&sin, &s], &[]);
        Self { cos, sin, cos_q, sin_q, mask }
    }
}

/// Per-kind RoPE cos/sin and additive mask: for a whole pass computed in the graph (cos/sin `[seq, 1, head_dim]`,
/// mask `[seq, seq]`), for a cached step graph inputs that lsn-core's decoder computes from each slot's position
/// (cos/sin `[batch, seq, 1, head_dim]`, mask `[batch, 1, seq, past + seq]`).
struct Positional {
    global: KindTables,
    sliding: Option<KindTables>,
}

impl Positional {
    fn of(&self, kind: AttentionKind) -> &KindTables {
        match (kind, &self.sliding) {
            (AttentionKind::Sliding, Some(s)) => s,
            _ => &self.global,
        }
    }
}

/// The positional inputs of a cached step graph.
fn positional_inputs(c: &mut Ctx<'_>) -> Positional {
    let (d, scale) = (c.cfg.head_dim, c.cfg.attn_scale);
    let mut input = |kind: &str| {
        let table = [Dim::Named("batch"), Dim::Named("seq"), Dim::Fixed(1), Dim::Fixed(d)];
        let mask = [Dim::Named("batch"), Dim::Fixed(1), Dim::Named("seq"), Dim::Named("past_plus_seq")];
        let cos = c.g.input(&format!("rope_cos_{kind}"), Elem::FLOAT, &table);
        let sin = c.g.input(&format!("rope_sin_{kind}"), Elem::FLOAT, &table);
        let mask = c.g.input(&format!("mask_{kind}"), Elem::FLOAT, &mask);
        KindTables::new(&mut c.g, cos, sin, mask, scale)
    };
    let global = input("global");
    let sliding = c.cfg.layer_kinds.contains(&AttentionKind::Sliding).then(|| input("sliding"));
    Positional { global, sliding }
}

/// The positional tables of a whole pass over `ids`, computed in the graph from lsn-core's frequencies.
fn positional(c: &mut Ctx<'_>, ids: &str) -> Positional {
    let g = &mut c.g;
    let shape = g.op("Shape", &[ids], &[]);
    let one_idx = g.int(1);
    let seq = g.op("Gather", &[&shape, &one_idx], &[Attr::Int("axis", 0)]);
    let (zero, one) = (g.int(0), g.int(1));
    let t = g.op("Range", &[&zero, &seq, &one], &[]);
    let col_axes = g.ints(&[1]);
    let row_axes = g.ints(&[0]);
    let t_col = g.op("Unsqueeze", &[&t, &col_axes], &[]); // [seq, 1]
    let t_row = g.op("Unsqueeze", &[&t, &row_axes], &[]); // [1, seq]
    let tf = g.op("Cast", &[&t_col], &[Attr::Int("to", Elem::FLOAT as i64)]);
    let visible = g.op("LessOrEqual", &[&t_row, &t_col], &[]); // key j ≤ query i
    let (zero_f, neg_inf) = (g.float(0.0), g.float(f32::NEG_INFINITY));
    let mut build = |kind: AttentionKind| {
        let p = positions::layer_positions(c.cfg, kind);
        let g = &mut c.g;
        let half: Vec<f32> = p.inv_freqs.iter().chain(&p.inv_freqs).copied().collect();
        let freqs = g.floats(&half);
        let angle = g.op("Mul", &[&tf, &freqs], &[]); // [seq, head_dim], t · f in f32
        let mid = g.ints(&[1]);
        let cos = g.op("Cos", &[&angle], &[]);
        let cos = g.op("Unsqueeze", &[&cos, &mid], &[]);
        let sin = g.op("Sin", &[&angle], &[]);
        let sin = g.op("Unsqueeze", &[&sin, &mid], &[]);
        let vis = match p.window {
            None => visible.clone(),
            Some(w) => {
                let w = g.int(w as i64);
                let first = g.op("Sub", &[&t_col, &w], &[]);
                let inside = g.op("Greater", &[&t_row, &first], &[]); // i − window < j
                g.op("And", &[&visible, &inside], &[])
            }
        };
        let mask = g.op("Where", &[&vis, &zero_f, &neg_inf], &[]);
        KindTables::new(g, cos, sin, mask, c.cfg.attn_scale)
    };
    let global = build(AttentionKind::Global);
    let sliding = c.cfg.layer_kinds.contains(&AttentionKind::Sliding).then(|| build(AttentionKind::Sliding));
    Positional { global, sliding }
}

/// Rotate-half RoPE of `x` `[b, t, heads, d]`: `x · cos + rotate_half(x) · sin`.
fn rope(g: &mut Graph, x: &str, cos: &str, sin: &str) -> String {
    let halves = g.op_n("Split", &[x], &[Attr::Int("axis", -1), Attr::Int("num_outputs", 2)], 2);
    let neg = g.op("Neg", &[&halves[1]], &[]);
    let rot = g.op("Concat", &[&neg, &halves[0]], &[Attr::Int("axis", -1)]);
    let a = g.op("Mul", &[x, cos], &[]);
    let b = g.op("Mul", &[&rot, sin], &[]);
    g.op("Add", &[&a, &b], &[])
}

/// The per-layer tap tensors, concatenated over layers at the end.
#[derive(Default)]
struct TapOuts {
    count_pos: Vec<String>,
    sum: Vec<String>,
    sum_sq: Vec<String>,
    quantiles: Vec<String>,
    above: Vec<String>,
    layer_sums: Vec<String>,
}

/// Inputs the taps read.
struct TapInputs {
    real: String,
    ranks: Option<String>,
    thresholds: Option<String>,
}

fn taps(c: &mut Ctx<'_>, spec: &BodySpec, inp: &TapInputs, a: &str, layer: usize, out: &mut TapOuts) {
    let g = &mut c.g;
    let ar = g.op("Gather", &[a, &inp.real], &[Attr::Int("axis", 0)]); // [tokens, I]
    let axis0 = g.ints(&[0]);
    let zero = g.float(0.0);
    let count = |g: &mut Graph, cond: &str| {
        let f = g.op("Cast", &[cond], &[Attr::Int("to", Elem::FLOAT as i64)]);
        g.op("ReduceSum", &[&f, &axis0], &[Attr::Int("keepdims", 1)])
    };
    if spec.count_pos {
        let pos = g.op("Greater", &[&ar, &zero], &[]);
        out.count_pos.push(count(g, &pos)); // [1, I]
    }
    if spec.moments {
        let wide = g.op("Cast", &[&ar], &[Attr::Int("to", Elem::DOUBLE as i64)]);
        out.sum.push(g.op("ReduceSum", &[&wide, &axis0], &[Attr::Int("keepdims", 1)]));
        let sq = g.op("Mul", &[&wide, &wide], &[]);
        out.sum_sq.push(g.op("ReduceSum", &[&sq, &axis0], &[Attr::Int("keepdims", 1)]));
    }
    match (spec.quantiles, &inp.ranks) {
        (Quantiles::Graph, Some(ranks)) => {
            let k = g.op("Shape", &[&inp.real], &[]);
            let sorted =
                g.op_n("TopK", &[&ar, &k], &[Attr::Int("axis", 0), Attr::Int("largest", 0), Attr::Int("sorted", 1)], 2);
            let picked = g.op("Gather", &[&sorted[0], ranks], &[Attr::Int("axis", 0)]); // [ranks, I]
            out.quantiles.push(g.op("Unsqueeze", &[&picked, &axis0], &[]));
        }
        (Quantiles::Host, _) => {
            let name = format!("act_{layer}");
            g.output(&ar, &name, Elem::FLOAT, &[Dim::Named("tokens"), Dim::Fixed(c.cfg.intermediate_size)]);
        }
        _ => {}
    }
    if let (true, Some(thr)) = (spec.above, &inp.thresholds) {
        let l = g.int(layer as i64);
        let thr_l = g.op("Gather", &[thr, &l], &[Attr::Int("axis", 0)]); // [S, I]
        let axis1 = g.ints(&[1]);
        let a3 = g.op("Unsqueeze", &[&ar, &axis1], &[]); // [tokens, 1, I]
        let over = g.op("Greater", &[&a3, &thr_l], &[]); // [tokens, S, I]
        let n = count(g, &over); // [1, S, I]
        out.above.push(n);
    }
}

/// The LM head on 2-D hidden rows: `[n, vocab]` logits, soft-capped where the model says so.
fn head(c: &mut Ctx<'_>, hidden: &str) -> String {
    let logits = c.linear(hidden, c.arch.head_weight);
    match c.arch.final_softcap {
        None => logits,
        Some(cap) => softcap_op(&mut c.g, &logits, cap),
    }
}

/// Soft-capping `cap · tanh(x / cap)` (final logits, and Gemma 2's attention scores).
fn softcap_op(g: &mut Graph, x: &str, cap: f64) -> String {
    let cap = g.float(cap as f32);
    let x = g.op("Div", &[x, &cap], &[]);
    let x = g.op("Tanh", &[&x], &[]);
    g.op("Mul", &[&x, &cap], &[])
}

/// Every input of a body graph besides `input_ids`.
struct BodyInputs {
    taps: TapInputs,
    /// `intervention_keep` and `intervention_add` `[layers, intermediate]`, and `steering` `[layers, hidden]`.
    intervention: Option<(String, String, String)>,
    /// `past_key_<l>` / `past_value_<l>` per layer (cached step).
    past: Vec<(String, String)>,
    /// `out_index` `[n]`: the flat positions whose hidden state a cached step returns.
    out_index: Option<String>,
}

fn body_inputs(c: &mut Ctx<'_>, spec: &BodySpec) -> BodyInputs {
    let cfg = c.cfg;
    let inter = cfg.intermediate_size;
    let g = &mut c.g;
    let taps = TapInputs {
        real: if spec.needs_real() {
            g.input("real_index", Elem::INT64, &[Dim::Named("tokens")])
        } else {
            String::new()
        },
        ranks: (spec.quantiles == Quantiles::Graph)
            .then(|| g.input("quantile_ranks", Elem::INT64, &[Dim::Named("ranks")])),
        thresholds: spec.above.then(|| {
            let dims = [Dim::Fixed(cfg.num_layers), Dim::Named("n_thresholds"), Dim::Fixed(inter)];
            g.input("thresholds", Elem::FLOAT, &dims)
        }),
    };
    let intervention = spec.intervene.then(|| {
        let dims = [Dim::Fixed(cfg.num_layers), Dim::Fixed(inter)];
        let steer = [Dim::Fixed(cfg.num_layers), Dim::Fixed(cfg.hidden_size)];
        (
            g.input("intervention_keep", Elem::FLOAT, &dims),
            g.input("intervention_add", Elem::FLOAT, &dims),
            g.input("steering", Elem::FLOAT, &steer),
        )
    });
    let kv_dims = kv_dims(cfg, "past");
    let past = if spec.cache {
        (0..cfg.num_layers)
            .map(|l| {
                (
                    g.input(&format!("past_key_{l}"), Elem::FLOAT, &kv_dims),
                    g.input(&format!("past_value_{l}"), Elem::FLOAT, &kv_dims),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    let out_index = spec.cache.then(|| g.input("out_index", Elem::INT64, &[Dim::Named("positions")]));
    BodyInputs { taps, intervention, past, out_index }
}

/// `[batch, kv_heads, slots, head_dim]`, the layout of cached keys and values.
fn kv_dims(cfg: &ModelConfig, slots: &'static str) -> [Dim; 4] {
    [Dim::Named("batch"), Dim::Fixed(cfg.num_kv_heads), Dim::Named(slots), Dim::Fixed(cfg.head_dim)]
}

/// Shape constants of the attention block, built once per graph.
struct AttnShapes {
    q: String,
    kv: String,
    grouped: String,
    by_head: String,
    by_group: String,
    heads_back: String,
    merged: String,
}

fn attn_shapes(c: &mut Ctx<'_>, bt: &str) -> AttnShapes {
    let cfg = c.cfg;
    let (heads, kv, d) = (cfg.num_heads as i64, cfg.num_kv_heads as i64, cfg.head_dim as i64);
    let g = &mut c.g;
    let hd = g.ints(&[heads, d]);
    let kvd = g.ints(&[kv, d]);
    AttnShapes {
        q: g.op("Concat", &[bt, &hd], &[Attr::Int("axis", 0)]),
        kv: g.op("Concat", &[bt, &kvd], &[Attr::Int("axis", 0)]),
        grouped: g.ints(&[0, kv, -1, d]),    // [b, kv, group·t, d]
        by_head: g.ints(&[0, heads, -1, 0]), // scores [b, heads, t, s]
        by_group: g.ints(&[0, kv, -1, 0]),
        heads_back: g.ints(&[0, heads, -1, d]),
        merged: g.ints(&[-1, heads * d]),
    }
}

/// A body graph under construction as lsn-core's [`LayerOps`]: values and weights are the graph's tensor names;
/// values are `[n, width]` (every position of the batch), attention's per-head values `[b, t, heads, d]`.
struct GraphOps<'c, 'a> {
    c: &'c mut Ctx<'a>,
    spec: &'c BodySpec,
    inputs: &'c BodyInputs,
    pos: &'c Positional,
    shapes: &'c AttnShapes,
    outs: &'c mut TapOuts,
}

impl LayerOps for GraphOps<'_, '_> {
    type X = String;
    type W = String;
    type Error = std::convert::Infallible;

    fn norm(&mut self, x: &String, w: &String) -> Result<String, Self::Error> {
        Ok(self.c.rms_norm(x, w))
    }

    fn linear(&mut self, x: &String, w: &String) -> Result<String, Self::Error> {
        Ok(self.c.linear(x, w))
    }

    fn bias(&mut self, x: &String, b: &String) -> Result<String, Self::Error> {
        let b = self.c.w(b);
        Ok(self.c.g.op("Add", &[x, &b], &[]))
    }

    fn add(&mut self, a: &String, b: &String) -> Result<String, Self::Error> {
        Ok(self.c.g.op("Add", &[a, b], &[]))
    }

    fn mul(&mut self, a: &String, b: &String) -> Result<String, Self::Error> {
        Ok(self.c.g.op("Mul", &[a, b], &[]))
    }

    fn split_heads(&mut self, x: String, n_heads: usize) -> Result<String, Self::Error> {
        let shape = if n_heads == self.c.cfg.num_heads { &self.shapes.q } else { &self.shapes.kv };
        Ok(self.c.g.op("Reshape", &[&x, shape], &[]))
    }

    fn rope(&mut self, x: &String, kind: AttentionKind, query: bool) -> Result<String, Self::Error> {
        let t = self.pos.of(kind);
        let (cos, sin) = if query { (&t.cos_q, &t.sin_q) } else { (&t.cos, &t.sin) };
        Ok(rope(&mut self.c.g, x, cos, sin))
    }

    /// With a cache, the layer's keys and values follow the cached ones and are returned as `present_*`.
    fn attend(
        &mut self,
        l: usize,
        kind: AttentionKind,
        q: String,
        k: String,
        v: String,
        softcap: Option<f64>,
    ) -> Result<String, Self::Error> {
        let kv_dims = kv_dims(self.c.cfg, "past_plus_seq");
        let (sh, mask) = (self.shapes, &self.pos.of(kind).mask);
        let g = &mut self.c.g;
        // Grouped-query attention as HF's `repeat_kv`: query head h reads KV head h / group, so the query heads of
        // one KV head are adjacent and fold into its rows.
        let q = g.op("Transpose", &[&q], &[Attr::Ints("perm", vec![0, 2, 1, 3])]); // [b, heads, t, d]
        let q = g.op("Reshape", &[&q, &sh.grouped], &[]); // [b, kv, group·t, d]
        let mut k = g.op("Transpose", &[&k], &[Attr::Ints("perm", vec![0, 2, 1, 3])]); // [b, kv, t, d]
        let mut v = g.op("Transpose", &[&v], &[Attr::Ints("perm", vec![0, 2, 1, 3])]);
        if let Some((pk, pv)) = self.inputs.past.get(l) {
            k = g.op("Concat", &[pk, &k], &[Attr::Int("axis", 2)]); // [b, kv, past + t, d]
            v = g.op("Concat", &[pv, &v], &[Attr::Int("axis", 2)]);
            g.output(&k, &format!("present_key_{l}"), Elem::FLOAT, &kv_dims);
            g.output(&v, &format!("present_value_{l}"), Elem::FLOAT, &kv_dims);
        }
        let kt = g.op("Transpose", &[&k], &[Attr::Ints("perm", vec![0, 1, 3, 2])]); // [b, kv, d, s]
        let s = g.op("MatMul", &[&q, &kt], &[]);
        let mut s = g.op("Reshape", &[&s, &sh.by_head], &[]); // [b, heads, t, s]
        if let Some(cap) = softcap {
            s = softcap_op(g, &s, cap);
        }
        let s = g.op("Add", &[&s, mask], &[]);
        let s = g.op("Softmax", &[&s], &[Attr::Int("axis", -1)]);
        let s = g.op("Reshape", &[&s, &sh.by_group], &[]);
        let att = g.op("MatMul", &[&s, &v], &[]); // [b, kv, group·t, d]
        let att = g.op("Reshape", &[&att, &sh.heads_back], &[]);
        let att = g.op("Transpose", &[&att], &[Attr::Ints("perm", vec![0, 2, 1, 3])]); // [b, t, heads, d]
        Ok(g.op("Reshape", &[&att, &sh.merged], &[]))
    }

    fn activate(&mut self, x: &String, act: Activation) -> Result<String, Self::Error> {
        Ok(self.c.activate(x, act))
    }

    fn edit(&mut self, l: usize, a: String) -> Result<String, Self::Error> {
        let Some((keep, add, _)) = &self.inputs.intervention else { return Ok(a) };
        let g = &mut self.c.g;
        let li = g.int(l as i64);
        let k = g.op("Gather", &[keep, &li], &[Attr::Int("axis", 0)]); // [I], broadcast over positions
        let c = g.op("Gather", &[add, &li], &[Attr::Int("axis", 0)]);
        let a = g.op("Mul", &[&a, &k], &[]);
        Ok(g.op("Add", &[&a, &c], &[]))
    }

    fn steer(&mut self, l: usize, x: String) -> Result<String, Self::Error> {
        let Some((_, _, steering)) = &self.inputs.intervention else { return Ok(x) };
        let g = &mut self.c.g;
        let li = g.int(l as i64);
        let v = g.op("Gather", &[steering, &li], &[Attr::Int("axis", 0)]); // [hidden], broadcast over positions
        Ok(g.op("Add", &[&x, &v], &[]))
    }

    fn sums_output(&self) -> bool {
        self.spec.layer_sums
    }

    fn sum_output(&mut self, _l: usize, x: &String) -> Result<(), Self::Error> {
        let g = &mut self.c.g;
        let xr = g.op("Gather", &[x, &self.inputs.taps.real], &[Attr::Int("axis", 0)]); // [tokens, hidden]
        let wide = g.op("Cast", &[&xr], &[Attr::Int("to", Elem::DOUBLE as i64)]);
        let axis0 = g.ints(&[0]);
        self.outs.layer_sums.push(g.op("ReduceSum", &[&wide, &axis0], &[Attr::Int("keepdims", 1)])); // [1, hidden]
        Ok(())
    }

    fn tap_point(&self) -> Option<TapPoint> {
        self.spec.any_tap().then_some(if self.spec.gate_pre { TapPoint::GatePre } else { TapPoint::Act })
    }

    fn tap(&mut self, l: usize, x: &String) -> Result<(), Self::Error> {
        taps(self.c, self.spec, &self.inputs.taps, x, l, self.outs);
        Ok(())
    }
}

/// The tap outputs, concatenated over layers, and what the graph ends with.
fn body_outputs(c: &mut Ctx<'_>, spec: &BodySpec, inputs: &BodyInputs, x: Option<&str>, bt: &str, outs: &TapOuts) {
    let cfg = c.cfg;
    let layers = Dim::Fixed(cfg.num_layers);
    let width = Dim::Fixed(cfg.intermediate_size);
    let concat = |c: &mut Ctx<'_>, parts: &[String], name: &str, elem: Elem, dims: &[Dim]| {
        if !parts.is_empty() {
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            let all = c.g.op("Concat", &refs, &[Attr::Int("axis", 0)]);
            c.g.output(&all, name, elem, dims);
        }
    };
    concat(c, &outs.count_pos, "count_pos", Elem::FLOAT, &[layers, width]);
    concat(c, &outs.sum, "sum", Elem::DOUBLE, &[layers, width]);
    concat(c, &outs.sum_sq, "sum_sq", Elem::DOUBLE, &[layers, width]);
    concat(c, &outs.quantiles, "quantile_stats", Elem::FLOAT, &[layers, Dim::Named("ranks"), width]);
    concat(c, &outs.above, "count_above", Elem::FLOAT, &[layers, Dim::Named("n_thresholds"), width]);
    concat(c, &outs.layer_sums, "layer_sums", Elem::DOUBLE, &[layers, Dim::Fixed(cfg.hidden_size)]);
    // The last layer's output: `None` when the graph ends at its taps (no head).
    let Some(x) = x else { return };
    let x = match &inputs.out_index {
        Some(at) => c.g.op("Gather", &[x, at], &[Attr::Int("axis", 0)]),
        None => x.to_owned(),
    };
    match spec.head {
        Head::No => {}
        Head::Hidden => {
            let h = c.rms_norm(&x, arch::FINAL_NORM);
            c.g.output(&h, "hidden", Elem::FLOAT, &[Dim::Named("positions"), Dim::Fixed(cfg.hidden_size)]);
        }
        Head::Logits => {
            let h = c.rms_norm(&x, arch::FINAL_NORM);
            let logits = head(c, &h);
            let shape = c.g.ints(&[cfg.vocab_size as i64]);
            let full = c.g.op("Concat", &[bt, &shape], &[Attr::Int("axis", 0)]);
            let logits = c.g.op("Reshape", &[&logits, &full], &[]);
            let dims = [Dim::Named("batch"), Dim::Named("seq"), Dim::Fixed(cfg.vocab_size)];
            c.g.output(&logits, "logits", Elem::FLOAT, &dims);
        }
    }
}

/// The body graph `spec` of `cfg` with weights at `manifest`.
pub(crate) fn body(cfg: &ModelConfig, manifest: &Manifest, spec: &BodySpec) -> Result<Vec<u8>, protobuf::Error> {
    let mut c = Ctx { cfg, arch: Arch::of(cfg), manifest, g: Graph::new("lsn_decoder") };
    let ids = c.g.input("input_ids", Elem::INT64, &[Dim::Named("batch"), Dim::Named("seq")]);
    let inputs = body_inputs(&mut c, spec);
    let pos = if spec.cache { positional_inputs(&mut c) } else { positional(&mut c, &ids) };

    let embed = c.w(arch::EMBED);
    let g = &mut c.g;
    let bt = g.op("Shape", &[&ids], &[]);
    let flat = g.ints(&[-1, cfg.hidden_size as i64]);
    let x = g.op("Gather", &[&embed, &ids], &[Attr::Int("axis", 0)]);
    let mut x = g.op("Reshape", &[&x, &flat], &[]); // [n, hidden]
    if let Some(s) = c.arch.embed_scale {
        let s = c.g.float(s);
        x = c.g.op("Mul", &[&x, &s], &[]);
    }
    let shapes = attn_shapes(&mut c, &bt);
    let mut outs = TapOuts::default();
    let name = |n: &str| Ok::<_, std::convert::Infallible>(n.to_owned());
    let Ok(layers) = (0..cfg.num_layers).map(|l| c.arch.load_layer(cfg, l, name, name)).collect::<Result<Vec<_>, _>>();
    let mut ops = GraphOps { c: &mut c, spec, inputs: &inputs, pos: &pos, shapes: &shapes, outs: &mut outs };
    // Without a head the graph ends at the last layer's taps (capture needs only them).
    let Ok(x) = lsn_core::layer::decoder_layers(&mut ops, cfg, &layers, x, spec.head != Head::No);
    body_outputs(&mut c, spec, &inputs, x.as_deref(), &bt, &outs);
    c.g.into_model_bytes(&format!("lsn {:?} decoder, exporter v{EXPORTER_VERSION}", cfg.family))
}

/// The head graph: `hidden` `[n, hidden_size]` → `logits` `[n, vocab]`; with `nll`, also `targets` `[n]` →
/// `nll` `[n]` = logsumexp − logit[target], in f64 (an f32 sum over a 262144-entry vocabulary biases it ~1e-5).
pub(crate) fn head_graph(cfg: &ModelConfig, manifest: &Manifest, nll: bool) -> Result<Vec<u8>, protobuf::Error> {
    let mut c = Ctx { cfg, arch: Arch::of(cfg), manifest, g: Graph::new("lsn_head") };
    let hidden = c.g.input("hidden", Elem::FLOAT, &[Dim::Named("positions"), Dim::Fixed(cfg.hidden_size)]);
    let logits = head(&mut c, &hidden);
    if nll {
        let targets = c.g.input("targets", Elem::INT64, &[Dim::Named("positions")]);
        let g = &mut c.g;
        let wide = g.op("Cast", &[&logits], &[Attr::Int("to", Elem::DOUBLE as i64)]);
        let last = g.ints(&[1]);
        let lse = g.op("ReduceLogSumExp", &[&wide, &last], &[Attr::Int("keepdims", 0)]);
        let t = g.op("Unsqueeze", &[&targets, &last], &[]);
        let picked = g.op("GatherElements", &[&wide, &t], &[Attr::Int("axis", 1)]);
        let picked = g.op("Squeeze", &[&picked, &last], &[]);
        let diff = g.op("Sub", &[&lse, &picked], &[]);
        let out = g.op("Cast", &[&diff], &[Attr::Int("to", Elem::FLOAT as i64)]);
        g.output(&out, "nll", Elem::FLOAT, &[Dim::Named("positions")]);
    } else {
        c.g.output(&logits, "logits", Elem::FLOAT, &[Dim::Named("positions"), Dim::Fixed(cfg.vocab_size)]);
    }
    c.g.into_model_bytes(&format!("lsn {:?} LM head, exporter v{EXPORTER_VERSION}", cfg.family))
}
