//! An adapter's starting values, from the seed alone: `lora_A` from a normal with mean 0 and the spec's standard
//! deviation (the paper's 0.01), `lora_B` zeros (so training starts from the base model), the head as PyTorch
//! initialises a `Linear` (uniform in ±1/√in).

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

/// The initial adapter of `layout` on a model of `cfg`: one seeded stream drawn in parameter order.
pub fn initial_adapter(layout: &LoraLayout, cfg: &ModelConfig, init_std: f32, seed: u64) -> Adapter {
    let mut rng = SeededRng::new(seed);
    let values = layout
        .params(cfg)
        .iter()
        .map(|p| match p.role {
            ParamRole::A { .. } => (0..p.len()).map(|_| (f64::from(init_std) * normal(&mut rng)) as f32).collect(),
            ParamRole::B { .. } => vec![0.0; p.len()],
            ParamRole::Head => {
                let bound = 1.0 / (p.shape[1] as f64).sqrt();
                (0..p.len()).map(|_| ((2.0 * unit(&mut rng) - 1.0) * bound) as f32).collect()
            }
        })
        .collect();
    Adapter { layout: layout.clone(), values }
}
