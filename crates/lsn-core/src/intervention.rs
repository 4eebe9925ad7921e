//! `Intervention`: test-time overwrites of chosen FFN neurons. At every position, the activation `a[l, j]` of each
//! chosen neuron is replaced by its value before it feeds the down projection (and the taps, which then see the
//! overwritten value): value 0 deactivates a neuron, a high value activates it.

use serde::{Deserialize, Serialize};

use crate::{ActivationStats, Error, NeuronId, QUANTILES, Result};

/// What value an intervention writes into each chosen neuron (the paper's columns): 0, or the evaluation language's
/// own per-neuron statistic from a capture run — the mean, or a batch quantile averaged over batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// The neurons to overwrite and their values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Intervention {
    pub set: Vec<(NeuronId, f32)>,
}

impl Intervention {
    /// Sets every neuron of `neurons` to 0.
    pub fn deactivate(neurons: impl IntoIterator<Item = NeuronId>) -> Self {
        Self { set: neurons.into_iter().map(|n| (n, 0.0)).collect() }
    }

    /// Sets each neuron of `neurons` to its value in `values` (`[layers × intermediate]`, from [`Fill::values`]; an
    /// empty `values` means 0 everywhere).
    pub fn filled(neurons: &[NeuronId], values: &[f32], intermediate: usize) -> Result<Self> {
        let mut set = Vec::with_capacity(neurons.len());
        for &n in neurons {
            let v = if values.is_empty() {
                0.0
            } else {
                *values.get(n.flat(intermediate)).ok_or_else(|| {
                    Error::InvalidIntervention(format!(
                        "neuron ({}, {}) is outside the statistics' {} values: the neuron set and the statistics \
                         come from different models",
                        n.layer,
                        n.index,
                        values.len()
                    ))
                })?
            };
            set.push((n, v));
        }
        Ok(Self { set })
    }

    /// The intervention as dense `[layers × intermediate]` arrays: which neurons are overwritten, and with what.
    /// Fails on a neuron outside the model, a neuron named twice, or a value that is not finite.
    pub fn dense(&self, layers: usize, intermediate: usize) -> Result<(Vec<bool>, Vec<f32>)> {
        let mut mask = vec![false; layers * intermediate];
        let mut value = vec![0f32; layers * intermediate];
        for &(n, v) in &self.set {
            if n.layer as usize >= layers || n.index as usize >= intermediate {
                return Err(Error::InvalidIntervention(format!(
                    "neuron ({}, {}) is outside the model's {layers} layers × {intermediate} FFN neurons: the neuron set \
                     was selected on another model",
                    n.layer, n.index
                )));
            }
            if !v.is_finite() {
                return Err(Error::InvalidIntervention(format!(
                    "neuron ({}, {}) would be set to {v}; use a finite value",
                    n.layer, n.index
                )));
            }
            let at = n.flat(intermediate);
            if std::mem::replace(&mut mask[at], true) {
                return Err(Error::InvalidIntervention(format!(
                    "neuron ({}, {}) is named twice; give each neuron one value",
                    n.layer, n.index
                )));
            }
            value[at] = v;
        }
        Ok((mask, value))
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
        let iv = Intervention { set: vec![(NeuronId::new(1, 2), 3.5), (NeuronId::new(0, 0), 0.0)] };
        let (mask, value) = iv.dense(2, 4).unwrap();
        assert_eq!(mask.iter().filter(|&&m| m).count(), 2);
        assert!(mask[0] && mask[6] && value[6] == 3.5);
        let out = Intervention::deactivate([NeuronId::new(2, 0)]).dense(2, 4).unwrap_err().to_string();
        assert!(out.contains("outside the model"), "{out}");
        let twice = Intervention::deactivate([NeuronId::new(0, 1), NeuronId::new(0, 1)]).dense(2, 4).unwrap_err();
        assert!(twice.to_string().contains("twice"), "{twice}");
        let nan = Intervention { set: vec![(NeuronId::new(0, 1), f32::NAN)] }.dense(2, 4).unwrap_err();
        assert!(nan.to_string().contains("finite"), "{nan}");
    }
}
