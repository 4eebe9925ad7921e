//! `Intervention`: test-time overwrites of chosen FFN neurons. At every position, the activation `a[l, j]` of each
//! chosen neuron is replaced by its value before it feeds the down projection (and the taps, which then see the
//! overwritten value): value 0 deactivates a neuron, a high value activates it.

use serde::{Deserialize, Serialize};

use crate::{Error, NeuronId, Result};

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
