//! The backend boundary: `Backend` loads a HF checkpoint directory into a `Model`; `Model::run` answers one
//! `Request`, `Model::decoder` generates with a key/value cache.
//!
//! Both traits are object-safe and exchange plain data only, so one suite can run against `&dyn Backend`. A backend
//! implements neither `Model` method itself: it implements an [`crate::Engine`] (the decoder body with its FFN hook,
//! one LM-head chunk, a cached step), and lsn-core's one pipeline on top of it is the `Model`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Adapter, ForwardOut, Gradient, Intervention, ModelConfig, Request, Result, TrainBatch};

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Device {
    #[default]
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for Device {
    type Err = String;
    /// `cpu`, `cuda` (device 0) or `cuda:N`, as every command's `--device` takes it.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("unknown device {s:?}: use cpu, cuda or cuda:N")),
        }
    }
}

/// A HF checkpoint directory: `config.json`, `model.safetensors` (or shards + index), `tokenizer.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    pub dir: PathBuf,
}

impl ModelFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn tokenizer(&self) -> PathBuf {
        self.dir.join("tokenizer.json")
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The element type a backend holds the weight matrices in (embeddings, projections, LM head). Norm weights,
/// activations, the residual stream, adapters and every reduction stay f32 whatever it is: `Bf16` halves the memory
/// of the weights and rounds them once at load (round to nearest, ties to even); each product widens its weight to
/// f32, so a bf16 model computes exactly what an f32 model computes with those rounded weights, on every backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDType {
    #[default]
    F32,
    Bf16,
}

impl WeightDType {
    pub const ALL: [WeightDType; 2] = [WeightDType::F32, WeightDType::Bf16];

    pub fn name(self) -> &'static str {
        match self {
            WeightDType::F32 => "f32",
            WeightDType::Bf16 => "bf16",
        }
    }

    /// Bytes per weight.
    pub fn size(self) -> usize {
        match self {
            WeightDType::F32 => 4,
            WeightDType::Bf16 => 2,
        }
    }
}

impl std::fmt::Display for WeightDType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for WeightDType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        WeightDType::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("unknown weight dtype {s:?}: use f32 or bf16"))
    }
}

/// How to load a model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    pub device: Device,
    /// What the weight matrices are held in.
    pub dtype: WeightDType,
}

/// Where a backend can run. Everything else a `Model` offers (taps, interventions, outputs, cached decoding) every
/// backend must do, so it is not a capability; the harness turns a missing device into a recorded skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Devices this build can run on.
    pub devices: Vec<Device>,
    /// Weight dtypes it can hold on every one of those devices.
    pub dtypes: Vec<WeightDType>,
    /// It trains: `Model::gradient` (a forward with a tape, then backward) is implemented.
    pub train: bool,
    /// It applies a LoRA adapter unmerged (`Model::set_adapter`); otherwise merge the adapter into the weights.
    pub adapters: bool,
}

/// A framework that can load models.
pub trait Backend: Send + Sync {
    /// Short name: `candle`, `tch`, `ort`.
    fn name(&self) -> &'static str;
    fn capabilities(&self) -> Capabilities;
    /// Loads a HF checkpoint directory. The config is validated against the weights' shapes.
    fn load(&self, files: &ModelFiles, opts: &LoadOptions) -> Result<Box<dyn Model>>;
}

/// A loaded model: lsn-core's pipeline over a backend's [`crate::Engine`] (implemented for every engine).
pub trait Model: Send {
    fn config(&self) -> &ModelConfig;
    /// The backend's name, as errors cite it.
    fn backend(&self) -> &'static str;
    /// One forward pass: validates the request, runs the body (taps and intervention at every layer's FFN), and
    /// computes the outputs asked for.
    fn run(&mut self, req: &Request<'_>) -> Result<ForwardOut>;
    /// A key/value-cached decoder over this model, with `intervention` applied at every step.
    fn decoder<'m>(&'m mut self, intervention: Option<&Intervention>) -> Result<Box<dyn crate::Decoder + 'm>>;
    /// Applies `adapter` unmerged (`x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ` in every adapted linear) to every later pass and decoder,
    /// until `None` removes it. Backends without it say `Unsupported` (merge the adapter into the weights instead).
    fn set_adapter(&mut self, adapter: Option<&Adapter>) -> Result<()> {
        let _ = adapter;
        Err(crate::Error::Unsupported { backend: self.backend(), capability: "LoRA adapters".into() })
    }
    /// The summed loss of `batch` under `adapter` and its gradient with respect to every adapter parameter (the
    /// base weights stay frozen). Backends without autograd say `Unsupported`.
    fn gradient(&mut self, adapter: &Adapter, batch: &TrainBatch) -> Result<Gradient> {
        let _ = (adapter, batch);
        Err(crate::Error::Unsupported { backend: self.backend(), capability: "training".into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_dtypes_parse_from_their_names_only() {
        for d in WeightDType::ALL {
            assert_eq!(d.name().parse::<WeightDType>(), Ok(d));
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{d}\""));
        }
        assert_eq!(WeightDType::default(), WeightDType::F32);
        let e = "f16".parse::<WeightDType>().unwrap_err();
        assert!(e.contains("f16") && e.contains("f32 or bf16"), "{e}");
    }

    #[test]
    fn devices_parse_as_cpu_cuda_or_cuda_n() {
        assert_eq!("cpu".parse::<Device>(), Ok(Device::Cpu));
        assert_eq!("cuda".parse::<Device>(), Ok(Device::Cuda(0)));
        assert_eq!("cuda:3".parse::<Device>(), Ok(Device::Cuda(3)));
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU"] {
            let e = bad.parse::<Device>().unwrap_err();
            assert!(e.contains(&format!("{bad:?}")) && e.contains("cpu, cuda or cuda:N"), "{e}");
        }
    }
}
