//! `Intervention`: test-time edits of chosen FFN neurons and steering vectors. At every position, the activation
//! `a[l, j]` of each chosen neuron is replaced, scaled or added to before it feeds the down projection (and the taps,
//! which then see the edited value): value 0 deactivates a neuron, a high value activates it. A steering vector is
//! added to a layer's output, the residual stream.

use serde::{Deserialize, Serialize};

use crate::{ActivationStats, Error, NeuronId, QUANTILES, Result};

/// What value an intervention writes into each chosen neuron (the paper's columns): 0, or the evaluation language's
/// own per-neuron statistic from a capture run — the mean, or a batch quantile averaged over batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Fill {
    Zero,
    Mean,
    /// Index into [`QUANTILES`] (p5, p10, p25, p50, p75, p90, p95).
    Quantile(usize),
}

impl Fill {
    /// Every fill, in the paper's column order after "no intervention": μ, P75, P90, P95, 0, P5, P10, then P25, P50.
    pub const ALL: [Fill; 9] = [
        Fill::Mean,
        Fill::Quantile(4),
        Fill::Quantile(5),
        Fill::Quantile(6),
        Fill::Zero,
        Fill::Quantile(0),
        Fill::Quantile(1),
        Fill::Quantile(2),
        Fill::Quantile(3),
    ];

    /// `zero`, `mean`, `p5`, `p10`, `p25`, `p50`, `p75`, `p90`, `p95`.
    pub fn name(self) -> String {
        match self {
            Fill::Zero => "zero".into(),
            Fill::Mean => "mean".into(),
            Fill::Quantile(k) => format!("p{}", (QUANTILES[k.min(QUANTILES.len() - 1)] * 100.0).round() as u32),
        }
    }

    pub fn parse(s: &str) -> Result<Fill> {
        let known = || {
            let q: Vec<String> = (0..QUANTILES.len()).map(|k| Fill::Quantile(k).name()).collect();
            format!("zero, mean, {}", q.join(", "))
        };
        match s {
            "zero" | "0" => Ok(Fill::Zero),
            "mean" => Ok(Fill::Mean),
            _ => (0..QUANTILES.len())
                .map(Fill::Quantile)
                .find(|f| f.name() == s)
                .ok_or_else(|| Error::InvalidIntervention(format!("unknown fill {s:?}: use one of {}", known()))),
        }
    }

    /// Whether the values come from a capture's statistics.
    pub fn needs_stats(self) -> bool {
        self != Fill::Zero
    }

    /// The per-neuron values `[layers × intermediate]` this fill takes from `stats` (all 0 for `Zero`). Fails when the
    /// statistics cannot give them (no pass-1 batch captured).
    pub fn values(self, stats: Option<&ActivationStats>) -> Result<Vec<f32>> {
        let stats = match (self, stats) {
            (Fill::Zero, Some(s)) => return Ok(vec![0.0; s.layers * s.intermediate]),
            (Fill::Zero, None) => return Ok(Vec::new()),
            (_, Some(s)) => s,
            (_, None) => {
                return Err(Error::InvalidIntervention(format!(
                    "fill {} takes the language's statistics from a capture: give them",
                    self.name()
                )));
            }
        };
        if stats.pass1.n_batches == 0 || stats.pass1.n_tokens == 0 {
            return Err(Error::InvalidIntervention(format!(
                "the statistics hold no captured batch, so they have no {} to fill with: complete the capture first",
                self.name()
            )));
        }
        let plane = stats.layers * stats.intermediate;
        Ok(match self {
            Fill::Zero => vec![0.0; plane],
            Fill::Mean => stats.mean().into_iter().map(|m| m as f32).collect(),
            Fill::Quantile(k) => stats.quantile_means()[k * plane..(k + 1) * plane].to_vec(),
        })
    }
}

impl std::fmt::Display for Fill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// How an intervention treats a language's neurons: the paper's overwrite, or one of the literature's steering
/// operations (Language Arithmetics, arXiv 2507.22608, read from its code: the hook is on `act_fn(gate_proj(x))` at
/// every position; its statistic is the target language's mean activation over every token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Steer {
    /// `a ← v`: the target's neurons set to a fill value (0 or a statistic; Language Arithmetics' "replacement" with
    /// the mean).
    Fill,
    /// `a ← α · a` on the target's neurons.
    Scale,
    /// `a ← a + α · μ` on the target's neurons, `μ` their mean activation on the target's text (Language
    /// Arithmetics' "additive" activation; its code uses α = 1).
    Add,
    /// The source's neurons set to 0, then the target's `a ← a + α · μ` (Language Arithmetics' "deactivate source +
    /// activate target"; a neuron of both ends at `α · μ`).
    Arithmetic,
    /// No neuron: `α · v / (‖v‖ + 1e-8)` added to one layer's output at every position, `v` the target's mean layer
    /// output minus the source's (CLaS-Bench's difference-of-means steering; [`Steer::diff_mean`]).
    DiffMean,
}

impl Steer {
    pub const ALL: [Steer; 5] = [Steer::Fill, Steer::Scale, Steer::Add, Steer::Arithmetic, Steer::DiffMean];
    /// CLaS-Bench's normalisation epsilon.
    pub const NORM_EPS: f64 = 1e-8;

    pub fn name(self) -> &'static str {
        match self {
            Steer::Fill => "fill",
            Steer::Scale => "scale",
            Steer::Add => "add",
            Steer::Arithmetic => "arithmetic",
            Steer::DiffMean => "diffmean",
        }
    }

    pub fn parse(s: &str) -> Result<Steer> {
        Self::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            Error::InvalidIntervention(format!(
                "unknown steering {s:?}: use one of fill, scale, add, arithmetic, diffmean"
            ))
        })
    }

    /// Whether the operation takes the target's mean activation per neuron (`Add`, `Arithmetic`).
    pub fn needs_mean(self) -> bool {
        matches!(self, Steer::Add | Steer::Arithmetic)
    }

    /// The intervention on `target`'s neurons (and, for `Arithmetic`, `source`'s), with `values` the target's
    /// per-neuron statistic `[layers × intermediate]`: the fill values for `Fill`, the means for `Add` and
    /// `Arithmetic` (unused by `Scale`).
    pub fn build(
        self,
        source: Option<&[NeuronId]>,
        target: &[NeuronId],
        values: &[f32],
        alpha: f32,
        intermediate: usize,
    ) -> Result<Intervention> {
        if !alpha.is_finite() {
            return Err(Error::InvalidIntervention(format!("the steering strength α = {alpha} is not finite")));
        }
        let mut iv = Intervention::default();
        match self {
            Steer::DiffMean => {
                return Err(Error::InvalidIntervention(
                    "difference-of-means steering adds a vector, not neuron edits: build it from the languages' \
                     layer means"
                        .into(),
                ));
            }
            Steer::Fill => iv.set = per_neuron(target, values, intermediate, 1.0)?,
            Steer::Scale => iv.scale = target.iter().map(|&n| (n, alpha)).collect(),
            Steer::Add => iv.add = per_neuron(target, values, intermediate, alpha)?,
            Steer::Arithmetic => {
                let source = source.ok_or_else(|| {
                    Error::InvalidIntervention(
                        "arithmetic steering deactivates a source language's neurons: name the source language".into(),
                    )
                })?;
                iv.set = source.iter().map(|&n| (n, 0.0)).collect();
                iv.add = per_neuron(target, values, intermediate, alpha)?;
            }
        }
        Ok(iv)
    }

    /// CLaS-Bench's steering at `layer`: `α · v / (‖v‖ + 1e-8)` with `v = target − source`, the languages' mean
    /// outputs of that layer (`[hidden]` each).
    pub fn diff_mean(layer: u32, source: &[f64], target: &[f64], alpha: f32) -> Result<Intervention> {
        if source.len() != target.len() || source.is_empty() {
            return Err(Error::InvalidIntervention(format!(
                "the source's and target's layer means have {} and {} entries: they come from different models",
                source.len(),
                target.len()
            )));
        }
        let v: Vec<f64> = target.iter().zip(source).map(|(t, s)| t - s).collect();
        Self::along(layer, &v, alpha)
    }

    /// The matched control of [`Steer::diff_mean`]: the same norm `α` along a random direction (a normal draw per
    /// entry, seeded), at the same layer.
    pub fn random_direction(layer: u32, hidden: usize, alpha: f32, seed: u64) -> Result<Intervention> {
        let mut rng = crate::SeededRng::new(seed);
        let v: Vec<f64> = (0..hidden).map(|_| rng.normal()).collect();
        Self::along(layer, &v, alpha)
    }

    fn along(layer: u32, v: &[f64], alpha: f32) -> Result<Intervention> {
        if !alpha.is_finite() {
            return Err(Error::InvalidIntervention(format!("the steering strength α = {alpha} is not finite")));
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let scale = f64::from(alpha) / (norm + Self::NORM_EPS);
        let vector = v.iter().map(|x| (x * scale) as f32).collect();
        Ok(Intervention { residual: vec![(layer, vector)], ..Intervention::default() })
    }
}

impl std::fmt::Display for Steer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A test-time intervention: edits of chosen FFN neurons' activations `a = act_fn(gate_proj(x))`, applied at every
/// position of every forward pass before the down projection (and the taps), and vectors added to the residual
/// stream at a layer's output.
///
/// A neuron's edits compose in a fixed order: its value is replaced (`set`), then multiplied (`scale`), then added to
/// (`add`); so a neuron both deactivated and boosted ends at `value + c`, as Language Arithmetics' "deactivate the
/// source, activate the target" leaves the neurons the two languages share. Each neuron appears at most once per
/// list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Intervention {
    /// `a ← v`: the paper's fills (0, or a statistic), and Language Arithmetics' deactivation.
    pub set: Vec<(NeuronId, f32)>,
    /// `a ← s · a`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale: Vec<(NeuronId, f32)>,
    /// `a ← a + c`: Language Arithmetics' activation (`c = α · mean` of the target language).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<(NeuronId, f32)>,
    /// `(layer, v)`: `v` (`[hidden]`) added to layer `layer`'s output (the residual stream the next layer reads) at
    /// every position — a difference-of-means steering vector.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub residual: Vec<(u32, Vec<f32>)>,
}

impl Intervention {
    /// Sets every neuron of `neurons` to 0.
    pub fn deactivate(neurons: impl IntoIterator<Item = NeuronId>) -> Self {
        Self { set: neurons.into_iter().map(|n| (n, 0.0)).collect(), ..Self::default() }
    }

    /// Sets each neuron of `neurons` to its value in `values` (`[layers × intermediate]`, from [`Fill::values`]; an
    /// empty `values` means 0 everywhere).
    pub fn filled(neurons: &[NeuronId], values: &[f32], intermediate: usize) -> Result<Self> {
        Ok(Self { set: per_neuron(neurons, values, intermediate, 1.0)?, ..Self::default() })
    }

    /// The intervention in the dense layout engines apply, validated against a model of `layers` layers ×
    /// `intermediate` FFN neurons and `hidden` wide. Fails on a neuron or layer outside the model, a neuron named twice
    /// in one list, a vector of the wrong width, or a value that is not finite.
    pub fn dense(&self, layers: usize, intermediate: usize, hidden: usize) -> Result<Edits> {
        let plane = layers * intermediate;
        let mut e = Edits {
            layers,
            width: intermediate,
            hidden,
            keep: vec![1.0; plane],
            add: vec![0.0; plane],
            touched: vec![false; layers],
            residual: vec![None; layers],
        };
        // Each edit as (its list, its verb, what it does to `keep · a + add`), in the order they compose.
        type Apply = fn(&mut f32, &mut f32, f32);
        type Edit<'a> = (&'a [(NeuronId, f32)], &'static str, Apply);
        let edits: [Edit<'_>; 3] = [
            (&self.set, "set", |k, c, v| (*k, *c) = (0.0, v)),
            (&self.scale, "scaled", |k, c, v| (*k, *c) = (*k * v, *c * v)),
            (&self.add, "added to", |_, c, v| *c += v),
        ];
        for (list, what, apply) in edits {
            let mut seen = vec![false; plane];
            for &(n, v) in list {
                if n.layer as usize >= layers || n.index as usize >= intermediate {
                    return Err(Error::InvalidIntervention(format!(
                        "neuron ({}, {}) is outside the model's {layers} layers × {intermediate} FFN neurons: the \
                         neuron set was selected on another model",
                        n.layer, n.index
                    )));
                }
                if !v.is_finite() {
                    return Err(Error::InvalidIntervention(format!(
                        "neuron ({}, {}) would be {what} by {v}; use a finite value",
                        n.layer, n.index
                    )));
                }
                let at = n.flat(intermediate);
                if std::mem::replace(&mut seen[at], true) {
                    return Err(Error::InvalidIntervention(format!(
                        "neuron ({}, {}) is {what} twice; give each neuron one value per edit",
                        n.layer, n.index
                    )));
                }
                apply(&mut e.keep[at], &mut e.add[at], v);
                e.touched[n.layer as usize] = true;
            }
        }
        for (l, v) in &self.residual {
            let l = *l as usize;
            if l >= layers {
                return Err(Error::InvalidIntervention(format!(
                    "a steering vector is added at layer {l}, and the model has {layers} layers (0–{})",
                    layers.saturating_sub(1)
                )));
            }
            if v.len() != hidden {
                return Err(Error::InvalidIntervention(format!(
                    "the steering vector of layer {l} has {} entries; the model's hidden size is {hidden}: the vector \
                     was made on another model",
                    v.len()
                )));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::InvalidIntervention(format!(
                    "the steering vector of layer {l} holds a value that is not finite"
                )));
            }
            if e.residual[l].replace(v.clone()).is_some() {
                return Err(Error::InvalidIntervention(format!(
                    "two steering vectors are added at layer {l}: add their sum once"
                )));
            }
        }
        Ok(e)
    }
}

fn per_neuron(neurons: &[NeuronId], values: &[f32], intermediate: usize, factor: f32) -> Result<Vec<(NeuronId, f32)>> {
    let mut set = Vec::with_capacity(neurons.len());
    for &n in neurons {
        let v = if values.is_empty() {
            0.0
        } else {
            *values.get(n.flat(intermediate)).ok_or_else(|| {
                Error::InvalidIntervention(format!(
                    "neuron ({}, {}) is outside the statistics' {} values: the neuron set and the statistics come \
                     from different models",
                    n.layer,
                    n.index,
                    values.len()
                ))
            })?
        };
        set.push((n, factor * v));
    }
    Ok(set)
}

/// A validated [`Intervention`] in the dense layout engines apply: per neuron `a ← keep · a + add` (`[layers ×
/// intermediate]`; 1 and 0 where untouched), and per layer the vector added to its output.
#[derive(Debug, Clone, PartialEq)]
pub struct Edits {
    pub layers: usize,
    pub width: usize,
    pub hidden: usize,
    pub keep: Vec<f32>,
    pub add: Vec<f32>,
    /// Per layer, whether any of its neurons is edited.
    pub touched: Vec<bool>,
    pub residual: Vec<Option<Vec<f32>>>,
}

impl Edits {
    /// Validates `iv` against the model of `cfg`.
    pub fn new(iv: &Intervention, cfg: &crate::ModelConfig) -> Result<Edits> {
        iv.dense(cfg.num_layers, cfg.intermediate_size, cfg.hidden_size)
    }

    /// Layer `l`'s `(keep, add)`, or `None` when no neuron of the layer is edited (nothing to do there).
    pub fn layer(&self, l: usize) -> Option<(&[f32], &[f32])> {
        let r = l * self.width..(l + 1) * self.width;
        self.touched[l].then(|| (&self.keep[r.clone()], &self.add[r]))
    }

    /// The vector added to layer `l`'s output, if any.
    pub fn residual(&self, l: usize) -> Option<&[f32]> {
        self.residual.get(l).and_then(Option::as_deref)
    }

    /// Edits `a` `[n, width]` of layer `l` in place (the host rule engines must match).
    pub fn apply(&self, l: usize, a: &mut [f32]) {
        if let Some((keep, add)) = self.layer(l) {
            for row in a.chunks_mut(self.width) {
                for ((x, &k), &c) in row.iter_mut().zip(keep).zip(add) {
                    *x = *x * k + c;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_parse_by_name_and_take_their_statistic() {
        for f in Fill::ALL {
            assert_eq!(Fill::parse(&f.name()).unwrap(), f);
        }
        assert_eq!(Fill::parse("p90").unwrap(), Fill::Quantile(5));
        let e = Fill::parse("p99").unwrap_err().to_string();
        assert!(e.contains("p95") && e.contains("mean"), "{e}");
        assert!(Fill::Mean.values(None).unwrap_err().to_string().contains("statistics"));
        let empty = ActivationStats::new(1, 2);
        assert!(Fill::Quantile(0).values(Some(&empty)).unwrap_err().to_string().contains("no captured batch"));
        let iv = Intervention::filled(&[NeuronId::new(0, 1)], &[5.0, 6.0], 2).unwrap();
        assert_eq!(iv.set, vec![(NeuronId::new(0, 1), 6.0)]);
        assert!(Intervention::filled(&[NeuronId::new(1, 1)], &[5.0, 6.0], 2).is_err());
    }

    #[test]
    fn dense_places_values_and_rejects_bad_neurons() {
        let iv = Intervention {
            set: vec![(NeuronId::new(1, 2), 3.5), (NeuronId::new(0, 0), 0.0)],
            ..Intervention::default()
        };
        let e = iv.dense(2, 4, 3).unwrap();
        assert_eq!(e.keep.iter().filter(|&&k| k == 0.0).count(), 2);
        assert!(e.keep[0] == 0.0 && e.keep[6] == 0.0 && e.add[6] == 3.5 && e.touched == [true, true]);
        let out = Intervention::deactivate([NeuronId::new(2, 0)]).dense(2, 4, 3).unwrap_err().to_string();
        assert!(out.contains("outside the model"), "{out}");
        let twice = Intervention::deactivate([NeuronId::new(0, 1), NeuronId::new(0, 1)]).dense(2, 4, 3).unwrap_err();
        assert!(twice.to_string().contains("twice"), "{twice}");
        let nan = Intervention { set: vec![(NeuronId::new(0, 1), f32::NAN)], ..Intervention::default() };
        assert!(nan.dense(2, 4, 3).unwrap_err().to_string().contains("finite"));
    }

    #[test]
    fn steering_builds_the_literatures_operations() {
        let (a, b, c) = (NeuronId::new(0, 0), NeuronId::new(0, 1), NeuronId::new(1, 1));
        let mean = [0.5, 1.0, 2.0, 4.0];
        let add = Steer::Add.build(None, &[b, c], &mean, 2.0, 2).unwrap();
        assert_eq!(add.add, vec![(b, 2.0), (c, 8.0)]);
        assert!(add.set.is_empty() && add.scale.is_empty());
        let scale = Steer::Scale.build(None, &[b], &[], 3.0, 2).unwrap();
        assert_eq!(scale.scale, vec![(b, 3.0)]);
        // The source's neurons off, the target's boosted; a neuron of both ends at α·μ.
        let arith = Steer::Arithmetic.build(Some(&[a, b]), &[b, c], &mean, 1.0, 2).unwrap();
        let e = arith.dense(2, 2, 1).unwrap();
        let mut x = vec![3.0, 3.0];
        e.apply(0, &mut x);
        assert_eq!(x, vec![0.0, 1.0]);
        assert!(Steer::Arithmetic.build(None, &[b], &mean, 1.0, 2).unwrap_err().to_string().contains("source"));
        assert_eq!(Steer::Fill.build(None, &[c], &mean, 1.0, 2).unwrap().set, vec![(c, 4.0)]);
        assert!(Steer::Add.build(None, &[c], &mean, f32::NAN, 2).is_err());
        for k in Steer::ALL {
            assert_eq!(Steer::parse(k.name()).unwrap(), k);
        }
        assert!(Steer::parse("boost").unwrap_err().to_string().contains("arithmetic"));
        // Difference of means: unit direction of target − source, times α, at the layer.
        let iv = Steer::diff_mean(3, &[1.0, 1.0], &[4.0, 5.0], 10.0).unwrap();
        assert_eq!(iv.residual.len(), 1);
        let (l, v) = &iv.residual[0];
        assert_eq!(*l, 3);
        assert!((v[0] - 6.0).abs() < 1e-5 && (v[1] - 8.0).abs() < 1e-5, "{v:?}");
        assert!(Steer::diff_mean(0, &[1.0], &[1.0, 2.0], 1.0).is_err());
        assert!(Steer::DiffMean.build(None, &[c], &mean, 1.0, 2).is_err());
        let r = Steer::random_direction(2, 64, 5.0, 7).unwrap();
        let norm = r.residual[0].1.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 5.0).abs() < 1e-4, "{norm}");
        assert_eq!(r, Steer::random_direction(2, 64, 5.0, 7).unwrap());
        assert_ne!(r, Steer::random_direction(2, 64, 5.0, 8).unwrap());
    }

    #[test]
    fn edits_compose_set_then_scale_then_add_and_vectors_are_checked() {
        let (a, b) = (NeuronId::new(0, 1), NeuronId::new(1, 0));
        let iv = Intervention {
            set: vec![(a, 2.0)],
            scale: vec![(a, 3.0), (b, -0.5)],
            add: vec![(a, 1.0), (b, 4.0)],
            residual: vec![(1, vec![0.5, -1.0])],
        };
        let e = iv.dense(2, 2, 2).unwrap();
        // Two positions of each layer. Neuron (0, 1): set to 2, ×3, +1 → 7. Neuron (1, 0): 10 × −0.5 + 4 → −1;
        // untouched neurons keep their value.
        let (mut x0, mut x1) = (vec![10.0, 10.0, -3.0, 5.0], vec![10.0, 10.0, 2.0, -8.0]);
        e.apply(0, &mut x0);
        e.apply(1, &mut x1);
        assert_eq!((x0, x1), (vec![10.0, 7.0, -3.0, 7.0], vec![-1.0, 10.0, 3.0, -8.0]));
        let plain = Intervention { add: vec![(b, 1.0)], ..Intervention::default() }.dense(2, 2, 2).unwrap();
        assert!(plain.layer(0).is_none() && plain.layer(1).is_some());
        assert_eq!(e.residual(1), Some(&[0.5, -1.0][..]));
        assert_eq!(e.residual(0), None);
        // The same neuron may appear in different lists, not twice in one; vectors fit the model.
        let twice = Intervention { add: vec![(a, 1.0), (a, 1.0)], ..Intervention::default() };
        assert!(twice.dense(2, 2, 2).unwrap_err().to_string().contains("added to twice"));
        let wide = Intervention { residual: vec![(0, vec![1.0; 3])], ..Intervention::default() };
        assert!(wide.dense(2, 2, 2).unwrap_err().to_string().contains("hidden size is 2"));
        let deep = Intervention { residual: vec![(2, vec![1.0; 2])], ..Intervention::default() };
        assert!(deep.dense(2, 2, 2).unwrap_err().to_string().contains("2 layers"));
        let two = Intervention { residual: vec![(0, vec![1.0; 2]), (0, vec![0.0; 2])], ..Intervention::default() };
        assert!(two.dense(2, 2, 2).unwrap_err().to_string().contains("two steering vectors"));
        let inf = Intervention { residual: vec![(0, vec![f32::INFINITY, 0.0])], ..Intervention::default() };
        assert!(inf.dense(2, 2, 2).unwrap_err().to_string().contains("not finite"));
        // Serialised interventions of earlier versions (only `set`) still read.
        let old: Intervention = serde_json::from_str(r#"{"set":[[{"layer":0,"index":1},0.0]]}"#).unwrap();
        assert!(old.scale.is_empty() && old.residual.is_empty() && old.set.len() == 1);
    }
}
