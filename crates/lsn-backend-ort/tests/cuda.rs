//! With feature `cuda` (on a GPU machine with onnxruntime-gpu 1.31's library in `ORT_DYLIB_PATH`): the CUDA
//! execution provider gives the CPU's logits, NLL and tap statistics on the tiny models.
#![cfg(feature = "cuda")]

use lsn_backend_ort::OrtBackend;
use lsn_core::{Backend, Device, LoadOptions, ModelFiles, Outputs, Request, Taps, TokenBatch};
use lsn_weights::{tiny_configs, write_random_model};

#[test]
fn the_cuda_execution_provider_matches_the_cpu() {
    let backend = OrtBackend::with_cache(tempfile::tempdir().unwrap().keep());
    assert!(backend.capabilities().devices.contains(&Device::Cuda(0)), "no CUDA device visible to ONNX Runtime");
    for (name, cfg) in tiny_configs() {
        let dir = tempfile::tempdir().unwrap();
        write_random_model(&cfg, 9, dir.path()).unwrap();
        let files = ModelFiles::new(dir.path());
        let batch = TokenBatch::padded(&[(1..40).collect(), (4..17).collect()], 0).unwrap();
        let mut outs = Vec::new();
        for device in [Device::Cpu, Device::Cuda(0)] {
            let mut model = backend.load(&files, &LoadOptions { device, ..LoadOptions::default() }).unwrap();
            let logits = model.run(&Request::new(&batch, Outputs::LOGITS).taps(&Taps::pass1())).unwrap();
            let nll = model.run(&Request::new(&batch, Outputs::NLL)).unwrap().nll.unwrap();
            outs.push((logits, nll));
        }
        let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        let (cpu, gpu) = (&outs[0], &outs[1]);
        let dl = max_diff(&cpu.0.logits.as_ref().unwrap().data, &gpu.0.logits.as_ref().unwrap().data);
        let dn = max_diff(&cpu.1.data, &gpu.1.data);
        let (tc, tg) = (cpu.0.taps.as_ref().unwrap(), gpu.0.taps.as_ref().unwrap());
        let dq = max_diff(tc.quantiles.as_ref().unwrap(), tg.quantiles.as_ref().unwrap());
        let dc =
            tc.count_pos.as_ref().unwrap().iter().zip(tg.count_pos.as_ref().unwrap()).filter(|(a, b)| a != b).count();
        eprintln!(
            "{name}: CUDA vs CPU max |Δlogit| {dl:.3e}, |ΔNLL| {dn:.3e}, |Δquantile| {dq:.3e}, {dc} count_pos differ"
        );
        assert!(dl <= 1e-3 && dn <= 1e-4 && dq <= 1e-4, "{name}");
        assert!(dc <= 2, "{name}");
    }
}
