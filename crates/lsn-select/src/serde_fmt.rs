//! How `neurons/<method>.json` writes what JSON cannot say directly: a neuron as the pair `[layer, index]`, and
//! an infinite score as the string `"inf"` (JSON has no infinity).

use std::collections::BTreeMap;

use lsn_core::NeuronId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One neuron as `[layer, index]`.
pub(crate) mod pair {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(n: &NeuronId, s: S) -> Result<S::Ok, S::Error> {
        [n.layer, n.index].serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NeuronId, D::Error> {
        <[u32; 2]>::deserialize(d).map(|[l, i]| NeuronId::new(l, i))
    }
}

/// Per language, a list of neurons as `[[layer, index], …]`.
pub(crate) mod pairs_by_lang {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(m: &BTreeMap<String, Vec<NeuronId>>, s: S) -> Result<S::Ok, S::Error> {
        let pairs: BTreeMap<&String, Vec<[u32; 2]>> =
            m.iter().map(|(k, v)| (k, v.iter().map(|n| [n.layer, n.index]).collect())).collect();
        pairs.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<NeuronId>>, D::Error> {
        let pairs = BTreeMap::<String, Vec<[u32; 2]>>::deserialize(d)?;
        Ok(pairs.into_iter().map(|(k, v)| (k, v.into_iter().map(|[l, i]| NeuronId::new(l, i)).collect())).collect())
    }
}

/// A number, or `"inf"` / `"-inf"` / `"nan"` for the values JSON has no number for.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Num {
    Finite(f32),
    Special(String),
}

fn to_num(x: f32) -> Num {
    match x {
        f32::INFINITY => Num::Special("inf".into()),
        f32::NEG_INFINITY => Num::Special("-inf".into()),
        x if x.is_nan() => Num::Special("nan".into()),
        x => Num::Finite(x),
    }
}

fn from_num<E: serde::de::Error>(n: Num) -> Result<f32, E> {
    match n {
        Num::Finite(x) => Ok(x),
        Num::Special(s) => match s.as_str() {
            "inf" => Ok(f32::INFINITY),
            "-inf" => Ok(f32::NEG_INFINITY),
            "nan" => Ok(f32::NAN),
            other => Err(E::custom(format!("expected a number, \"inf\", \"-inf\" or \"nan\", found {other:?}"))),
        },
    }
}

/// An f32 that may be infinite.
pub(crate) mod float {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(x: &f32, s: S) -> Result<S::Ok, S::Error> {
        to_num(*x).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        from_num(Num::deserialize(d)?)
    }
}

/// An optional f32 that may be infinite (`None` is left out by `skip_serializing_if`).
pub(crate) mod opt_float {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(x: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
        x.map(to_num).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
        Option::<Num>::deserialize(d)?.map(from_num).transpose()
    }
}
