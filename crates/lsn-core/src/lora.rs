//! LoRA at the backend boundary, as plain data: which linear layers carry an adapter ([`LoraLayout`]), an adapter's
//! values ([`Adapter`]), and one training batch with its objective ([`TrainBatch`]). A backend applies an adapter in
//! its forward passes (`y = x·Wᵀ + (α/r)·(x·Aᵀ)·(B ⊙ M)ᵀ`, the base `W` never copied or merged) and computes the
//! gradient of one batch's summed loss; the optimizer, schedule, clipping and files are lsn-lora's, written once.

use serde::{Deserialize, Serialize};

use crate::{Error, ModelConfig, Result, TokenBatch};

/// A linear layer of a decoder layer that can carry a LoRA adapter (HF module names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    QProj,
    KProj,
    VProj,
    OProj,
    GateProj,
    UpProj,
    DownProj,
}

impl LoraTarget {
    pub const ALL: [LoraTarget; 7] = [
        LoraTarget::QProj,
        LoraTarget::KProj,
        LoraTarget::VProj,
        LoraTarget::OProj,
        LoraTarget::GateProj,
        LoraTarget::UpProj,
        LoraTarget::DownProj,
    ];

    /// The module's own name, as PEFT's `target_modules` lists it: `q_proj`, …, `down_proj`.
    pub fn name(self) -> &'static str {
        match self {
            LoraTarget::QProj => "q_proj",
            LoraTarget::KProj => "k_proj",
            LoraTarget::VProj => "v_proj",
            LoraTarget::OProj => "o_proj",
            LoraTarget::GateProj => "gate_proj",
            LoraTarget::UpProj => "up_proj",
            LoraTarget::DownProj => "down_proj",
        }
    }

    /// The module's path inside a decoder layer: `self_attn.q_proj`, `mlp.gate_proj`, ….
    pub fn path(self) -> String {
        let block = match self {
            LoraTarget::QProj | LoraTarget::KProj | LoraTarget::VProj | LoraTarget::OProj => "self_attn",
            _ => "mlp",
        };
        format!("{block}.{}", self.name())
    }

    /// The target named `name` (`q_proj`, … or `q`, `k`, `v`, `o`, `gate`, `up`, `down`).
    pub fn parse(name: &str) -> Result<LoraTarget> {
        let n = name.trim();
        LoraTarget::ALL.into_iter().find(|t| t.name() == n || t.name().trim_end_matches("_proj") == n).ok_or_else(
            || {
                Error::InvalidLora(format!(
                    "unknown LoRA target {name:?}: use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj or down_proj"
                ))
            },
        )
    }

    /// `(in, out)` features of this linear layer in a model of `cfg`.
    pub fn dims(self, cfg: &ModelConfig) -> (usize, usize) {
        let (d, i) = (cfg.hidden_size, cfg.intermediate_size);
        let (q, kv) = (cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim);
        match self {
            LoraTarget::QProj => (d, q),
            LoraTarget::KProj | LoraTarget::VProj => (d, kv),
            LoraTarget::OProj => (q, d),
            LoraTarget::GateProj | LoraTarget::UpProj => (d, i),
            LoraTarget::DownProj => (i, d),
        }
    }
}

/// The shape of an adapter over every decoder layer: rank, scale, targets, the trainable rows of `gate_proj`'s B, and
/// an optional classification head `Linear(hidden, classes)` (no bias, as HF's `…ForSequenceClassification.score`)
/// on the final-normed hidden state of each row's last real token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraLayout {
    pub rank: usize,
    pub alpha: f32,
    /// Adapted linears, the same in every layer, in [`LoraTarget::ALL`] order.
    pub targets: Vec<LoraTarget>,
    /// The neuron mask of the masked LoRA: `[layers × intermediate]`, true where the neuron's row of `gate_proj`'s
    /// B (`[intermediate, rank]`) trains; every other row is 0 and stays 0. `None`: every row trains.
    pub gate_rows: Option<Vec<bool>>,
    /// Classes of the head, when there is one.
    pub head_classes: Option<usize>,
}

/// What one parameter of an adapter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamRole {
    /// `lora_A` `[rank, in]` of `target` in `layer`.
    A { layer: usize, target: LoraTarget },
    /// `lora_B` `[out, rank]` of `target` in `layer`.
    B { layer: usize, target: LoraTarget },
    /// The head's weight `[classes, hidden]`.
    Head,
}

/// One parameter: its role, its name in a PEFT `adapter_model.safetensors`, its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    pub role: ParamRole,
    pub name: String,
    pub shape: Vec<usize>,
}

impl ParamSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One adapted linear of an adapter: its layer and target, and the indices of its A and B among
/// [`LoraLayout::params`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoraModule {
    pub layer: usize,
    pub target: LoraTarget,
    pub a: usize,
    pub b: usize,
}

/// PEFT's name of a decoder-layer module's LoRA tensor `which` (`lora_A`/`lora_B`):
/// `base_model.model.model.layers.{layer}.{path}.{which}.weight`.
pub fn peft_name(layer: usize, target: LoraTarget, which: &str) -> String {
    format!("base_model.model.model.layers.{layer}.{}.{which}.weight", target.path())
}

/// PEFT's name of the sequence-classification head it saves as a `modules_to_save` module.
pub const PEFT_HEAD: &str = "base_model.model.score.weight";

impl LoraLayout {
    /// `α / r`, the factor of the adapter's product.
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    /// Checks the layout against a model: rank ≥ 1, finite α, targets known and distinct, a gate mask of the model's
    /// size only when `gate_proj` is a target, a head of ≥ 2 classes.
    pub fn validate(&self, cfg: &ModelConfig) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidLora(m));
        if self.rank == 0 {
            return bad("rank 0: a LoRA adapter needs rank ≥ 1".into());
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return bad(format!("lora_alpha {} must be a positive finite number", self.alpha));
        }
        if self.targets.windows(2).any(|w| w[0] >= w[1]) {
            return bad(format!(
                "LoRA targets {:?} must be distinct, in q, k, v, o, gate, up, down order",
                self.targets
            ));
        }
        if self.targets.is_empty() && self.head_classes.is_none() {
            return bad("an adapter with no target and no head trains nothing".into());
        }
        if let Some(rows) = &self.gate_rows {
            if !self.targets.contains(&LoraTarget::GateProj) {
                return bad("a gate_proj neuron mask was given but gate_proj is not a LoRA target".into());
            }
            let want = cfg.num_layers * cfg.intermediate_size;
            if rows.len() != want {
                return bad(format!(
                    "the gate_proj neuron mask has {} entries; this model has {} layers × {} neurons = {want}",
                    rows.len(),
                    cfg.num_layers,
                    cfg.intermediate_size
                ));
            }
        }
        if self.head_classes.is_some_and(|c| c < 2) {
            return bad("a classification head needs at least 2 classes".into());
        }
        Ok(())
    }

    /// Every parameter, in the order [`Adapter::values`] and [`Gradient::grads`] hold them: per layer, per target,
    /// A then B; then the head.
    pub fn params(&self, cfg: &ModelConfig) -> Vec<ParamSpec> {
        let mut out = Vec::new();
        for layer in 0..cfg.num_layers {
            for &target in &self.targets {
                let (i, o) = target.dims(cfg);
                out.push(ParamSpec {
                    role: ParamRole::A { layer, target },
                    name: peft_name(layer, target, "lora_A"),
                    shape: vec![self.rank, i],
                });
                out.push(ParamSpec {
                    role: ParamRole::B { layer, target },
                    name: peft_name(layer, target, "lora_B"),
                    shape: vec![o, self.rank],
                });
            }
        }
        if let Some(c) = self.head_classes {
            out.push(ParamSpec { role: ParamRole::Head, name: PEFT_HEAD.into(), shape: vec![c, cfg.hidden_size] });
        }
        out
    }

    /// Every adapted linear, in [`LoraLayout::params`] order (each module's A and B are consecutive parameters).
    pub fn modules(&self, cfg: &ModelConfig) -> Vec<LoraModule> {
        let per_layer = self.targets.len();
        (0..cfg.num_layers)
            .flat_map(|layer| self.targets.iter().enumerate().map(move |(k, &target)| (layer, k, target)))
            .map(|(layer, k, target)| {
                let a = 2 * (layer * per_layer + k);
                LoraModule { layer, target, a, b: a + 1 }
            })
            .collect()
    }

    /// The parameters that can change in training: every A and B in full, except the masked `gate_proj` LoRA, whose
    /// B trains only its neurons' rows and whose A trains only in a layer with at least one such row (elsewhere its
    /// product is 0 and its gradient too); plus the head. What "the same parameter count" of two adapters compares.
    pub fn trainable_params(&self, cfg: &ModelConfig) -> usize {
        let mut n = self.head_classes.map_or(0, |c| c * cfg.hidden_size);
        for layer in 0..cfg.num_layers {
            for &target in &self.targets {
                let (i, o) = target.dims(cfg);
                n += match self.gate_rows_of(layer, cfg.intermediate_size).filter(|_| target == LoraTarget::GateProj) {
                    Some(rows) => match rows.iter().filter(|&&b| b).count() {
                        0 => 0,
                        k => self.rank * (i + k),
                    },
                    None => self.rank * (i + o),
                };
            }
        }
        n
    }

    /// The head's index among [`LoraLayout::params`] (the last), when there is a head.
    pub fn head_index(&self, cfg: &ModelConfig) -> Option<usize> {
        self.head_classes.map(|_| 2 * cfg.num_layers * self.targets.len())
    }

    /// Layer `layer`'s rows of the gate mask (`None`: all rows train).
    pub fn gate_rows_of(&self, layer: usize, intermediate: usize) -> Option<&[bool]> {
        self.gate_rows.as_deref().map(|m| &m[layer * intermediate..(layer + 1) * intermediate])
    }
}

/// An adapter: its layout and the values of [`LoraLayout::params`], in that order.
#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    pub layout: LoraLayout,
    pub values: Vec<Vec<f32>>,
}

impl Adapter {
    /// Checks the layout against `cfg` and every value against its parameter's shape; masked rows of the gate's B
    /// must be exactly 0 (they never train, so a nonzero one means a corrupt adapter).
    pub fn validate(&self, cfg: &ModelConfig) -> Result<Vec<ParamSpec>> {
        self.layout.validate(cfg)?;
        let params = self.layout.params(cfg);
        if params.len() != self.values.len() {
            return Err(Error::InvalidLora(format!(
                "the adapter holds {} tensors; its layout has {}",
                self.values.len(),
                params.len()
            )));
        }
        for (p, v) in params.iter().zip(&self.values) {
            if p.len() != v.len() {
                return Err(Error::InvalidLora(format!(
                    "{} holds {} values; its shape {:?} needs {}",
                    p.name,
                    v.len(),
                    p.shape,
                    p.len()
                )));
            }
            if let Some(bad) = v.iter().position(|x| !x.is_finite()) {
                return Err(Error::InvalidLora(format!("{} holds a non-finite value at {bad}", p.name)));
            }
            if let ParamRole::B { layer, target: LoraTarget::GateProj } = p.role
                && let Some(rows) = self.layout.gate_rows_of(layer, cfg.intermediate_size)
            {
                let r = self.layout.rank;
                if let Some(j) =
                    rows.iter().enumerate().position(|(j, &m)| !m && v[j * r..(j + 1) * r].iter().any(|&x| x != 0.0))
                {
                    return Err(Error::InvalidLora(format!(
                        "{}: row {j} is outside the neuron mask but not 0",
                        p.name
                    )));
                }
            }
        }
        Ok(params)
    }
}

/// What a training batch's loss is.
#[derive(Debug, Clone, PartialEq)]
pub enum Objective {
    /// Cross-entropy of the head's logits at each row's last real token against `labels[row]`.
    Classify { labels: Vec<u32> },
    /// Next-token cross-entropy at every position `(r, t)` with `t + 1 < lengths[r]` and `weights[r·seq + t] > 0`,
    /// predicting token `t + 1`, weighted by `weights` (1 counts a position, 0 leaves it out).
    NextToken { weights: Vec<f32> },
}

/// One micro-batch of training.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainBatch {
    pub batch: TokenBatch,
    pub objective: Objective,
}

impl TrainBatch {
    /// Checks the objective against the batch and the layout: labels below the head's classes (and a head at all),
    /// one finite non-negative weight per position.
    pub fn validate(&self, layout: &LoraLayout) -> Result<()> {
        self.batch.validate()?;
        let b = &self.batch;
        match &self.objective {
            Objective::Classify { labels } => {
                let Some(c) = layout.head_classes else {
                    return Err(Error::InvalidLora("a classification batch needs an adapter with a head".into()));
                };
                if labels.len() != b.rows {
                    return Err(Error::InvalidBatch(format!("{} labels for {} rows", labels.len(), b.rows)));
                }
                if let Some(&l) = labels.iter().find(|&&l| l as usize >= c) {
                    return Err(Error::InvalidBatch(format!("label {l} but the head has {c} classes")));
                }
            }
            Objective::NextToken { weights } => {
                if weights.len() != b.rows * b.seq_len {
                    return Err(Error::InvalidBatch(format!(
                        "{} loss weights for {} rows × {} positions",
                        weights.len(),
                        b.rows,
                        b.seq_len
                    )));
                }
                if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
                    return Err(Error::InvalidBatch("loss weights must be finite and ≥ 0".into()));
                }
            }
        }
        Ok(())
    }

    /// The next-token positions that count: `(flat position, target id, weight)` for `(r, t)` with `t + 1 <
    /// lengths[r]` and a positive weight, in row-major order.
    pub fn next_token_terms(&self) -> Vec<(u32, u32, f32)> {
        let Objective::NextToken { weights } = &self.objective else { return Vec::new() };
        let targets = self.batch.next_token_targets().into_iter();
        targets.filter(|t| weights[t.0 as usize] > 0.0).map(|(p, id, _)| (p, id, weights[p as usize])).collect()
    }
}

/// The summed loss of one micro-batch and its gradient with respect to every adapter parameter (in
/// [`LoraLayout::params`] order). `count` is what the sum is over (rows, or the sum of the counted weights), so
/// the trainer can average over an accumulated effective batch exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradient {
    pub loss_sum: f64,
    pub count: f64,
    pub grads: Vec<Vec<f32>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ModelConfig {
        crate::config::tests::gemma_config()
    }

    #[test]
    fn params_are_named_as_peft_saves_them() {
        let c = cfg();
        let l = LoraLayout {
            rank: 4,
            alpha: 8.0,
            targets: vec![LoraTarget::QProj, LoraTarget::GateProj],
            gate_rows: None,
            head_classes: Some(3),
        };
        l.validate(&c).unwrap();
        let p = l.params(&c);
        assert_eq!(p.len(), c.num_layers * 4 + 1);
        assert_eq!(p[0].name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
        assert_eq!(p[0].shape, vec![4, c.hidden_size]);
        assert_eq!(p[3].name, "base_model.model.model.layers.0.mlp.gate_proj.lora_B.weight");
        assert_eq!(p[3].shape, vec![c.intermediate_size, 4]);
        assert_eq!(p.last().unwrap().shape, vec![3, c.hidden_size]);
        for m in l.modules(&c) {
            assert_eq!(p[m.a].role, ParamRole::A { layer: m.layer, target: m.target });
            assert_eq!(p[m.b].role, ParamRole::B { layer: m.layer, target: m.target });
        }
        assert_eq!(l.head_index(&c), Some(p.len() - 1));
        assert_eq!(LoraTarget::parse("gate").unwrap(), LoraTarget::GateProj);
        assert!(LoraTarget::parse("lm_head").is_err());
    }

    #[test]
    fn bad_layouts_are_refused() {
        let c = cfg();
        let ok = LoraLayout {
            rank: 2,
            alpha: 4.0,
            targets: vec![LoraTarget::GateProj],
            gate_rows: None,
            head_classes: None,
        };
        assert!(ok.validate(&c).is_ok());
        for bad in [
            LoraLayout { rank: 0, ..ok.clone() },
            LoraLayout { alpha: f32::NAN, ..ok.clone() },
            LoraLayout { targets: vec![LoraTarget::VProj, LoraTarget::QProj], ..ok.clone() },
            LoraLayout { gate_rows: Some(vec![true; 3]), ..ok.clone() },
            LoraLayout {
                targets: vec![LoraTarget::QProj],
                gate_rows: Some(vec![true; c.num_layers * c.intermediate_size]),
                ..ok.clone()
            },
            LoraLayout { targets: vec![], ..ok.clone() },
        ] {
            assert!(bad.validate(&c).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn masked_gate_rows_must_be_zero() {
        let c = cfg();
        let mut rows = vec![false; c.num_layers * c.intermediate_size];
        rows[1] = true;
        let layout = LoraLayout {
            rank: 2,
            alpha: 4.0,
            targets: vec![LoraTarget::GateProj],
            gate_rows: Some(rows),
            head_classes: None,
        };
        let params = layout.params(&c);
        let mut a = Adapter { layout, values: params.iter().map(|p| vec![0.0; p.len()]).collect() };
        a.values[1][2] = 1.0; // row 1 of layer 0's B: inside the mask
        assert!(a.validate(&c).is_ok());
        a.values[1][0] = 1.0; // row 0: outside
        assert!(a.validate(&c).unwrap_err().to_string().contains("row 0 is outside the neuron mask"));
    }

    #[test]
    fn trainable_params_count_only_the_masked_rows_and_their_layers_a() {
        let c = cfg();
        let full = LoraLayout {
            rank: 3,
            alpha: 6.0,
            targets: vec![LoraTarget::QProj, LoraTarget::GateProj],
            gate_rows: None,
            head_classes: Some(3),
        };
        // Without a mask every parameter trains.
        assert_eq!(full.trainable_params(&c), full.params(&c).iter().map(ParamSpec::len).sum::<usize>());
        // Two neurons in layer 0, one in the last layer, none elsewhere: those layers' A and those rows of B.
        let mut rows = vec![false; c.num_layers * c.intermediate_size];
        rows[0] = true;
        rows[5] = true;
        rows[(c.num_layers - 1) * c.intermediate_size] = true;
        let masked =
            LoraLayout { targets: vec![LoraTarget::GateProj], gate_rows: Some(rows), head_classes: None, ..full };
        assert_eq!(masked.trainable_params(&c), 3 * (c.hidden_size + 2) + 3 * (c.hidden_size + 1));
    }

    #[test]
    fn next_token_terms_skip_padding_and_zero_weights() {
        let batch = TokenBatch::padded(&[vec![5, 6, 7], vec![8, 9]], 0).unwrap();
        let tb = TrainBatch { batch, objective: Objective::NextToken { weights: vec![1.0, 0.0, 1.0, 1.0, 1.0, 1.0] } };
        assert_eq!(tb.next_token_terms(), vec![(0, 6, 1.0), (3, 9, 1.0)]);
    }
}
