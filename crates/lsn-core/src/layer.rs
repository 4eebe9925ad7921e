//! The decoder layer, written once: [`decoder_layer`] and the stack loop [`decoder_layers`] over the small op set
//! [`LayerOps`] that Candle, libtorch and the ONNX graph builder each implement. A backend keeps its fused kernels
//! behind the ops (and the layout of its values: padded, unpadded, 2-D or 3-D); what a layer computes, in which
//! order, and where the FFN hook sits is decided here alone, from the family's [`Arch`](crate::Arch) data in
//! [`LayerWeights`].

use crate::arch::LayerWeights;
use crate::{Activation, AttentionKind, LoraTarget, ModelConfig, TapPoint};

/// The ops one decoder layer is written over. `X` is a value (activations), `W` a weight as the backend holds it
/// (a tensor, or an initializer's name in a graph builder).
pub trait LayerOps {
    type X;
    type W;
    type Error;

    /// RMSNorm over the last axis with multiplier `w` (Gemma's `1 + w` already folded in at load).
    fn norm(&mut self, x: &Self::X, w: &Self::W) -> Result<Self::X, Self::Error>;
    /// `x · wᵀ` for a HF weight `w` `[out, in]`.
    fn linear(&mut self, x: &Self::X, w: &Self::W) -> Result<Self::X, Self::Error>;
    /// `x + b` with `b` `[out]` broadcast over the rows.
    fn bias(&mut self, x: &Self::X, b: &Self::W) -> Result<Self::X, Self::Error>;
    fn add(&mut self, a: &Self::X, b: &Self::X) -> Result<Self::X, Self::Error>;
    fn mul(&mut self, a: &Self::X, b: &Self::X) -> Result<Self::X, Self::Error>;
    /// A projection's output `[tokens, n_heads · head_dim]` in attention's per-head layout `[…, n_heads, head_dim]`.
    fn split_heads(&mut self, x: Self::X, n_heads: usize) -> Result<Self::X, Self::Error>;
    /// Rotate-half RoPE of per-head values with the tables of `kind`; `query` values also come out multiplied by the
    /// attention scale (`ModelConfig::attn_scale`), so attention itself applies none — backends fold it into their
    /// query tables, once per pass.
    fn rope(&mut self, x: &Self::X, kind: AttentionKind, query: bool) -> Result<Self::X, Self::Error>;
    /// Attention of layer `l` (scores soft-capped by `softcap` where given, masked as `kind` says, grouped KV heads
    /// as HF's `repeat_kv`), the layer's keys and values appended to the cache on a cached step. Returns
    /// `[tokens, heads · head_dim]` in the layout the layer's input `x` has.
    fn attend(
        &mut self,
        l: usize,
        kind: AttentionKind,
        q: Self::X,
        k: Self::X,
        v: Self::X,
        softcap: Option<f64>,
    ) -> Result<Self::X, Self::Error>;
    fn activate(&mut self, x: &Self::X, act: Activation) -> Result<Self::X, Self::Error>;
    /// The intervention of layer `l` on `act_fn(gate)`: each edited neuron's `a ← keep · a + add`
    /// ([`Edits::layer`](crate::Edits::layer); `a` as is where none is).
    fn edit(&mut self, l: usize, a: Self::X) -> Result<Self::X, Self::Error>;
    /// The intervention of layer `l` on its output `x` (the residual stream): its steering vector
    /// ([`Edits::residual`](crate::Edits::residual)) added at every position, `x` as is where it has none.
    fn steer(&mut self, l: usize, x: Self::X) -> Result<Self::X, Self::Error>;
    /// Whether this pass sums each layer's output over the real tokens ([`crate::Outputs::layer_sums`]).
    fn sums_output(&self) -> bool {
        false
    }
    /// Adds layer `l`'s output `x` (its real tokens) to the pass's layer sums.
    fn sum_output(&mut self, l: usize, x: &Self::X) -> Result<(), Self::Error> {
        let _ = (l, x);
        Ok(())
    }
    /// Where this pass taps the FFN, or `None` for no taps.
    fn tap_point(&self) -> Option<TapPoint>;
    /// Hands layer `l`'s tapped value to the pass's reducer.
    fn tap(&mut self, l: usize, x: &Self::X) -> Result<(), Self::Error>;

    /// The LoRA factors `(A, s·(B ⊙ M))` on linear `target` of layer `l` (the scale `s = α/r` and the gate's
    /// neuron mask `M` applied once per adapter), or `None` where no adapter targets it.
    fn lora(&self, l: usize, target: LoraTarget) -> Option<(Self::W, Self::W)> {
        let _ = (l, target);
        None
    }
    /// `x·wᵀ + (x·aᵀ)·bᵀ` (with `b` as [`LayerOps::lora`] gives it); a backend may fuse it.
    fn lora_linear(&mut self, x: &Self::X, w: &Self::W, a: &Self::W, b: &Self::W) -> Result<Self::X, Self::Error> {
        let y = self.linear(x, w)?;
        let down = self.linear(x, a)?;
        let up = self.linear(&down, b)?;
        self.add(&y, &up)
    }
    /// Linear `target` of layer `l` with its adapter, where one targets it.
    fn project(&mut self, l: usize, target: LoraTarget, x: &Self::X, w: &Self::W) -> Result<Self::X, Self::Error> {
        match self.lora(l, target) {
            Some((a, b)) => self.lora_linear(x, w, &a, &b),
            None => self.linear(x, w),
        }
    }
}

/// Decoder layer `l` on its input `x`: the next layer's input, or `None` when `stop` (the pass wants only this
/// layer's taps: the FFN's output and everything after it feed nothing).
///
/// Pre-norm attention (q/k/v with their biases where the family has them, q/k RMSNorm per head, RoPE, attention,
/// o, the post-attention norm of sandwich-norm families) and a residual add; then the pre-FFN norm, the gated FFN
/// `down(hook(act_fn(gate(h))) · up(h))` with its hook (the intervention edits, then the taps read the result,
/// or `gate(h)` at [`TapPoint::GatePre`]), the post-FFN norm, a residual add, and the intervention's steering
/// vector of the layer added to its output.
pub fn decoder_layer<O: LayerOps>(
    ops: &mut O,
    cfg: &ModelConfig,
    w: &LayerWeights<O::W>,
    l: usize,
    x: &O::X,
    stop: bool,
) -> Result<Option<O::X>, O::Error> {
    let h = ops.norm(x, &w.input_norm)?;
    let proj = |ops: &mut O, t: LoraTarget, wt: &O::W, b: &Option<O::W>, n: usize| {
        let y = ops.project(l, t, &h, wt)?;
        let y = match b {
            Some(b) => ops.bias(&y, b)?,
            None => y,
        };
        ops.split_heads(y, n)
    };
    let mut q = proj(ops, LoraTarget::QProj, &w.q, &w.q_bias, cfg.num_heads)?;
    let mut k = proj(ops, LoraTarget::KProj, &w.k, &w.k_bias, cfg.num_kv_heads)?;
    let v = proj(ops, LoraTarget::VProj, &w.v, &w.v_bias, cfg.num_kv_heads)?;
    if let (Some(qn), Some(kn)) = (&w.q_norm, &w.k_norm) {
        q = ops.norm(&q, qn)?;
        k = ops.norm(&k, kn)?;
    }
    let q = ops.rope(&q, w.kind, true)?;
    let k = ops.rope(&k, w.kind, false)?;
    let softcap = cfg.attn_logit_softcap.filter(|_| cfg.family.spec().attn_softcap);
    let att = ops.attend(l, w.kind, q, k, v, softcap)?;
    let mut att = ops.project(l, LoraTarget::OProj, &att, &w.o)?;
    if let Some(n) = &w.post_attn_norm {
        att = ops.norm(&att, n)?;
    }
    let x = ops.add(x, &att)?;

    let h = ops.norm(&x, &w.pre_ffn_norm)?;
    let gate = ops.project(l, LoraTarget::GateProj, &h, &w.gate)?;
    let a = ops.activate(&gate, cfg.activation)?;
    let a = ops.edit(l, a)?;
    match ops.tap_point() {
        Some(TapPoint::Act) => ops.tap(l, &a)?,
        Some(TapPoint::GatePre) => ops.tap(l, &gate)?,
        None => {}
    }
    if stop {
        return Ok(None);
    }
    let up = ops.project(l, LoraTarget::UpProj, &h, &w.up)?;
    let au = ops.mul(&a, &up)?;
    let mut f = ops.project(l, LoraTarget::DownProj, &au, &w.down)?;
    if let Some(n) = &w.post_ffn_norm {
        f = ops.norm(&f, n)?;
    }
    let out = ops.add(&x, &f)?;
    let out = ops.steer(l, out)?;
    if ops.sums_output() {
        ops.sum_output(l, &out)?;
    }
    Ok(Some(out))
}

/// Every layer of `layers` in order from the first layer's input `x`: the last layer's output, or `None` when
/// `hidden` is false (the pass stops after the last layer's taps, unless it sums the layers' outputs).
pub fn decoder_layers<O: LayerOps>(
    ops: &mut O,
    cfg: &ModelConfig,
    layers: &[LayerWeights<O::W>],
    mut x: O::X,
    hidden: bool,
) -> Result<Option<O::X>, O::Error> {
    let last = layers.len().saturating_sub(1);
    for (l, w) in layers.iter().enumerate() {
        match decoder_layer(ops, cfg, w, l, &x, l == last && !hidden && !ops.sums_output())? {
            Some(y) => x = y,
            None => return Ok(None),
        }
    }
    Ok(Some(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the ops a layer issues, as strings.
    struct Trace {
        log: Vec<String>,
        taps: Option<TapPoint>,
    }

    impl LayerOps for Trace {
        type X = String;
        type W = String;
        type Error = std::convert::Infallible;

        fn norm(&mut self, x: &String, w: &String) -> Result<String, Self::Error> {
            Ok(self.op(format!("norm({x},{w})")))
        }
        fn linear(&mut self, x: &String, w: &String) -> Result<String, Self::Error> {
            Ok(self.op(format!("lin({x},{w})")))
        }
        fn bias(&mut self, x: &String, b: &String) -> Result<String, Self::Error> {
            Ok(self.op(format!("bias({x},{b})")))
        }
        fn add(&mut self, a: &String, b: &String) -> Result<String, Self::Error> {
            Ok(self.op(format!("add({a},{b})")))
        }
        fn mul(&mut self, a: &String, b: &String) -> Result<String, Self::Error> {
            Ok(self.op(format!("mul({a},{b})")))
        }
        fn split_heads(&mut self, x: String, n: usize) -> Result<String, Self::Error> {
            Ok(self.op(format!("heads{n}({x})")))
        }
        fn rope(&mut self, x: &String, kind: AttentionKind, query: bool) -> Result<String, Self::Error> {
            Ok(self.op(format!("rope{}{kind:?}({x})", if query { "q" } else { "k" })))
        }
        fn attend(
            &mut self,
            l: usize,
            kind: AttentionKind,
            q: String,
            k: String,
            v: String,
            softcap: Option<f64>,
        ) -> Result<String, Self::Error> {
            Ok(self.op(format!("attend{l}{kind:?}{softcap:?}({q},{k},{v})")))
        }
        fn activate(&mut self, x: &String, act: Activation) -> Result<String, Self::Error> {
            Ok(self.op(format!("{act:?}({x})")))
        }
        fn edit(&mut self, l: usize, a: String) -> Result<String, Self::Error> {
            Ok(self.op(format!("edit{l}({a})")))
        }
        fn steer(&mut self, l: usize, x: String) -> Result<String, Self::Error> {
            Ok(self.op(format!("steer{l}({x})")))
        }
        fn tap_point(&self) -> Option<TapPoint> {
            self.taps
        }
        fn tap(&mut self, l: usize, x: &String) -> Result<(), Self::Error> {
            self.op(format!("tap{l}({x})"));
            Ok(())
        }
    }

    impl Trace {
        fn op(&mut self, s: String) -> String {
            self.log.push(s);
            format!("%{}", self.log.len() - 1)
        }
    }

    fn weights(cfg: &ModelConfig, l: usize) -> LayerWeights<String> {
        let arch = crate::Arch::of(cfg);
        arch.load_layer(cfg, l, |n| Ok::<_, std::convert::Infallible>(n.to_owned()), |n| Ok(n.to_owned())).unwrap()
    }

    #[test]
    fn llama_layer_is_pre_norm_attention_then_gated_ffn() {
        let cfg = crate::config::tests::llama_config();
        let mut t = Trace { log: Vec::new(), taps: Some(TapPoint::Act) };
        let out = decoder_layer(&mut t, &cfg, &weights(&cfg, 0), 0, &"x".to_owned(), false).unwrap();
        let p = "model.layers.0";
        let want = [
            format!("norm(x,{p}.input_layernorm.weight)"),
            format!("lin(%0,{p}.self_attn.q_proj.weight)"),
            format!("heads{}(%1)", cfg.num_heads),
            format!("lin(%0,{p}.self_attn.k_proj.weight)"),
            format!("heads{}(%3)", cfg.num_kv_heads),
            format!("lin(%0,{p}.self_attn.v_proj.weight)"),
            format!("heads{}(%5)", cfg.num_kv_heads),
            "ropeqGlobal(%2)".to_owned(),
            "ropekGlobal(%4)".to_owned(),
            "attend0GlobalNone(%7,%8,%6)".to_owned(),
            format!("lin(%9,{p}.self_attn.o_proj.weight)"),
            "add(x,%10)".to_owned(),
            format!("norm(%11,{p}.post_attention_layernorm.weight)"),
            format!("lin(%12,{p}.mlp.gate_proj.weight)"),
            "Silu(%13)".to_owned(),
            "edit0(%14)".to_owned(),
            "tap0(%15)".to_owned(),
            format!("lin(%12,{p}.mlp.up_proj.weight)"),
            "mul(%15,%17)".to_owned(),
            format!("lin(%18,{p}.mlp.down_proj.weight)"),
            "add(%11,%19)".to_owned(),
            "steer0(%20)".to_owned(),
        ];
        assert_eq!(t.log, want);
        assert_eq!(out.as_deref(), Some("%21"));
    }

    #[test]
    fn gemma_layer_has_qk_and_sandwich_norms_and_stops_after_the_gate_tap() {
        let cfg = crate::config::tests::gemma_config();
        let mut t = Trace { log: Vec::new(), taps: Some(TapPoint::GatePre) };
        let out = decoder_layers(&mut t, &cfg, &[weights(&cfg, 0)], "x".to_owned(), false).unwrap();
        assert_eq!(out, None);
        let has = |s: &str| t.log.iter().any(|o| o.contains(s));
        assert!(has("self_attn.q_norm") && has("self_attn.k_norm") && has("post_attention_layernorm"));
        assert!(has("pre_feedforward_layernorm") && !has("up_proj") && !has("post_feedforward_layernorm"));
        // The taps read gate(h), before the activation and the edit.
        let gate = t.log.iter().position(|o| o.contains("gate_proj")).unwrap();
        assert_eq!(t.log.last().unwrap(), &format!("tap0(%{gate})"));
    }
}
