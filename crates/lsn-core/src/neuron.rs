//! `NeuronId`: one FFN neuron, index `index` of `act_fn(gate_proj(x))` in layer `layer`.

use serde::{Deserialize, Serialize};

/// One FFN neuron. Ordered by (layer, index), the order used for ties everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NeuronId {
    pub layer: u32,
    pub index: u32,
}

impl NeuronId {
    pub fn new(layer: u32, index: u32) -> Self {
        Self { layer, index }
    }

    /// Position of this neuron in a flat `[layers, intermediate]` array.
    pub fn flat(self, intermediate: usize) -> usize {
        self.layer as usize * intermediate + self.index as usize
    }
}
