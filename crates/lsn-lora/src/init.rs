//! An adapter's starting values, from the seed alone: `lora_A` from a normal with mean 0 and the spec's standard
//! deviation (the paper's 0.01), `lora_B` zeros (so training starts from the base model), the head as PyTorch
//! initialises a `Linear` (uniform in ±1/√in). Every tensor draws from its own stream, keyed by the seed and its
//! PEFT name, so adapters of different layouts (FTL null, en, random) start from identical values in every tensor
//! they share: a comparison between FTLs is not also a comparison between initializations.

use lsn_core::{Adapter, LoraLayout, ModelConfig, ParamRole, SeededRng};

/// A uniform draw in [0, 1) with 53 random bits.
fn unit(rng: &mut SeededRng) -> f64 {
    rng.below(1 << 53) as f64 / (1u64 << 53) as f64
}

/// A standard normal draw (Box–Muller on two uniforms, the first kept away from 0).
fn normal(rng: &mut SeededRng) -> f64 {
    let u1 = 1.0 - unit(rng);
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The stream of the tensor named `name`: the seed mixed with the first 64 bits of the name's SHA-256.
fn stream(seed: u64, name: &str) -> SeededRng {
    let digest = lsn_core::sha256_hex(name.as_bytes());
    SeededRng::new(seed ^ u64::from_str_radix(&digest[..16], 16).unwrap_or(0))
}

/// The initial adapter of `layout` on a model of `cfg`: each tensor from its own seeded stream.
pub fn initial_adapter(layout: &LoraLayout, cfg: &ModelConfig, init_std: f32, seed: u64) -> Adapter {
    let values = layout
        .params(cfg)
        .iter()
        .map(|p| {
            let mut rng = stream(seed, &p.name);
            match p.role {
                ParamRole::A { .. } => (0..p.len()).map(|_| (f64::from(init_std) * normal(&mut rng)) as f32).collect(),
                ParamRole::B { .. } => vec![0.0; p.len()],
                ParamRole::Head => {
                    let bound = 1.0 / (p.shape[1] as f64).sqrt();
                    (0..p.len()).map(|_| ((2.0 * unit(&mut rng) - 1.0) * bound) as f32).collect()
                }
            }
        })
        .collect();
    Adapter { layout: layout.clone(), values }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lsn_core::LoraTarget;

    fn layout(gate: bool) -> (LoraLayout, ModelConfig) {
        let cfg = lsn_weights::tiny_configs().into_iter().next().expect("a tiny config").1;
        let mut targets = vec![LoraTarget::QProj, LoraTarget::VProj];
        if gate {
            targets.push(LoraTarget::GateProj);
        }
        let gate_rows = gate.then(|| vec![true; cfg.num_layers * cfg.intermediate_size]);
        (LoraLayout { rank: 4, alpha: 8.0, targets, gate_rows, head_classes: Some(3) }, cfg)
    }

    #[test]
    fn layouts_share_the_start_of_every_tensor_they_share() {
        let (null, cfg) = layout(false);
        let (en, _) = layout(true);
        let a = initial_adapter(&null, &cfg, 0.01, 42);
        let b = initial_adapter(&en, &cfg, 0.01, 42);
        let names = |l: &LoraLayout| l.params(&cfg).into_iter().map(|p| p.name).collect::<Vec<_>>();
        let (na, nb) = (names(&null), names(&en));
        assert!(nb.len() > na.len());
        for (n, v) in na.iter().zip(&a.values) {
            let j = nb.iter().position(|m| m == n).expect("shared tensor");
            assert_eq!(v, &b.values[j], "{n}");
        }
        let other = initial_adapter(&null, &cfg, 0.01, 43);
        assert_ne!(a.values[0], other.values[0], "another seed, other values");
        assert_ne!(a.values[0], a.values[2], "tensors draw from different streams");
        let v = &a.values[0];
        let sd = (v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!((sd - 0.01).abs() < 0.002, "A's standard deviation {sd}");
        assert!(a.values[1].iter().all(|&x| x == 0.0), "B starts at 0");
    }
}
