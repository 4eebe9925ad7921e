//! Selection of language-specific neurons from per-language activation counts (DESIGN §4), matching the published
//! reference code: LAPE as in Mondal et al.'s `lang_neurons.py` (preset `mondal`) and Tang et al.'s `identify.py`
//! (preset `tang`), ActProb-90p, and a seeded random control. Pure functions, no I/O; f32 arithmetic in the
//! reference's order so thresholds and sets agree with the torch code bit for bit (`tests/reference.rs`).

mod act_prob;
mod error;
mod lape;
mod random;
mod rank;
mod selection;
mod serde_fmt;
mod table;

pub use act_prob::{ACT_PROB_RATE, act_prob};
pub use error::{Error, Result};
pub use lape::{LapeParams, LapePreset, lape};
pub use lsn_core::taps::quantile_linear_f32;
pub use random::{RANDOM_PER_LAYER, random, random_per_layer};
pub use rank::{kth_smallest, round_half_even, round_len_rate, round_rate_layers_width};
pub use selection::{ActProbScore, LapeScore, Selection, SelectionSource, Thresholds};
pub use table::{CountTable, LangCounts};
