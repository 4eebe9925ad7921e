//! The training loop against a toy model whose gradient is known in closed form: the loss falls, the step log is
//! exact, and a run resumed from a mid-run checkpoint ends with the same adapter bits as an uninterrupted one.

use lsn_core::{
    Adapter, Decoder, ForwardOut, Gradient, Intervention, LoraTarget, Model, ModelConfig, Objective, Request,
    TrainBatch,
};
use lsn_lora::{Checkpoints, Example, Target, Task, TrainSpec};

/// A "model" whose loss for a row with label y is ½·Σᵢ (vᵢ − y)² over every adapter value v.
struct Toy {
    cfg: ModelConfig,
}

impl Model for Toy {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }
    fn backend(&self) -> &'static str {
        "toy"
    }
    fn run(&mut self, _: &Request<'_>) -> lsn_core::Result<ForwardOut> {
        Err(lsn_core::Error::Unsupported { backend: "toy", capability: "forward passes".into() })
    }
    fn decoder<'m>(&'m mut self, _: Option<&Intervention>) -> lsn_core::Result<Box<dyn Decoder + 'm>> {
        Err(lsn_core::Error::Unsupported { backend: "toy", capability: "decoding".into() })
    }
    fn set_adapter(&mut self, _: Option<&Adapter>) -> lsn_core::Result<()> {
        Ok(())
    }
    fn gradient(&mut self, adapter: &Adapter, batch: &TrainBatch) -> lsn_core::Result<Gradient> {
        let Objective::Classify { labels } = &batch.objective else { panic!("the toy takes labels") };
        let (mut loss, mut grads) = (0.0f64, adapter.values.iter().map(|v| vec![0.0f32; v.len()]).collect::<Vec<_>>());
        for &y in labels {
            let y = y as f32;
            for (v, g) in adapter.values.iter().zip(&mut grads) {
                for (x, gx) in v.iter().zip(g.iter_mut()) {
                    loss += 0.5 * f64::from((x - y) * (x - y));
                    *gx += x - y;
                }
            }
        }
        Ok(Gradient { loss_sum: loss, count: labels.len() as f64, grads })
    }
}

fn setup() -> (Toy, TrainSpec, Adapter, Vec<Example>) {
    let cfg = lsn_weights::tiny_configs().into_iter().next().expect("a tiny config").1;
    let spec = TrainSpec {
        rank: 2,
        targets: vec![LoraTarget::QProj],
        lr: 0.05,
        head_lr: 0.05,
        batch: 4,
        micro_batch: 2,
        epochs: 3,
        checkpoint_every: 2,
        ..TrainSpec::paper(Task::Xnli)
    };
    let layout = spec.layout(None);
    let initial = lsn_lora::initial_adapter(&layout, &cfg, spec.init_std, spec.seed);
    let examples = (0..10).map(|i| Example { ids: vec![1, 2, 3 + i], target: Target::Label(1) }).collect();
    (Toy { cfg }, spec, initial, examples)
}

fn bits(a: &Adapter) -> Vec<u32> {
    a.values.iter().flatten().map(|x| x.to_bits()).collect()
}

#[test]
fn loss_falls_and_a_resumed_run_ends_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let (mut toy, spec, initial, examples) = setup();
    let full = Checkpoints { path: dir.path().join("full.safetensors"), run_key: "k".into() };
    let saved = dir.path().join("at4.safetensors");
    let mut steps = Vec::new();
    let a = lsn_lora::train(&mut toy, &spec, initial.clone(), &examples, 0, &full, &mut |log, total| {
        steps.push((log.step, total));
        if log.step == 5 {
            // The checkpoint of step 4 is on disk: keep a copy, as a run killed during step 5 would leave it.
            std::fs::copy(&full.path, &saved).unwrap();
        }
    })
    .unwrap();
    assert_eq!(steps.len(), 9, "10 examples in batches of 4: 3 steps per epoch, 3 epochs");
    assert!(steps.iter().all(|&(_, t)| t == 9));
    assert!(a.log.last().unwrap().loss < a.log[0].loss, "{:?}", a.log);
    assert_eq!(a.resumed_at, 0);

    let resumed = Checkpoints { path: saved, run_key: "k".into() };
    let b = lsn_lora::train(&mut toy, &spec, initial.clone(), &examples, 0, &resumed, &mut |_, _| {}).unwrap();
    assert_eq!(b.resumed_at, 4);
    assert_eq!(bits(&a.adapter), bits(&b.adapter));
    assert_eq!(a.log, b.log);

    // A checkpoint of another run is refused, not resumed.
    let other = Checkpoints { path: full.path.clone(), run_key: "another".into() };
    let err = lsn_lora::train(&mut toy, &spec, initial, &examples, 0, &other, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("another run"), "{err}");
}

#[test]
fn accumulation_averages_over_the_whole_effective_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut toy, spec, initial, examples) = setup();
    let run = |micro: usize, name: &str| {
        let spec = TrainSpec { micro_batch: micro, epochs: 1, ..spec.clone() };
        let ck = Checkpoints { path: dir.path().join(name), run_key: "k".into() };
        lsn_lora::train(&mut Toy { cfg: toy.cfg.clone() }, &spec, initial.clone(), &examples, 0, &ck, &mut |_, _| {})
            .unwrap()
    };
    let (one, four) = (run(1, "a"), run(4, "b"));
    for (x, y) in one.adapter.values.iter().flatten().zip(four.adapter.values.iter().flatten()) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
    let _ = &mut toy;
}

#[test]
fn empty_training_sets_and_bad_specs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut toy, spec, initial, _) = setup();
    let ck = Checkpoints { path: dir.path().join("c"), run_key: "k".into() };
    let err = lsn_lora::train(&mut toy, &spec, initial.clone(), &[], 0, &ck, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("no training example"), "{err}");
    let bad = TrainSpec { lr: f32::NAN, ..spec };
    let ex = vec![Example { ids: vec![1, 2], target: Target::Label(0) }];
    assert!(lsn_lora::train(&mut toy, &bad, initial, &ex, 0, &ck, &mut |_, _| {}).is_err());
    assert!(!ck.path.exists(), "nothing written");
}
