//! Dequantization of GGUF tensor data to f32: the element types, their block sizes, and the dispatch.
//!
//! Block layouts follow ggml (little-endian, blocks laid out back to back along the flattened tensor).

mod kquant;
mod legacy;

use half::{bf16, f16};

use crate::{Error, Result};

/// The element types of GGUF tensors that lsn reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgufDType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl GgufDType {
    /// Elements per block.
    pub fn block_elems(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 => 32,
            Self::Q4K | Self::Q5K | Self::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => legacy::Q4_0_BYTES,
            Self::Q4_1 => legacy::Q4_1_BYTES,
            Self::Q5_0 => legacy::Q5_0_BYTES,
            Self::Q5_1 => legacy::Q5_1_BYTES,
            Self::Q8_0 => legacy::Q8_0_BYTES,
            Self::Q4K => kquant::Q4K_BYTES,
            Self::Q5K => kquant::Q5K_BYTES,
            Self::Q6K => kquant::Q6K_BYTES,
        }
    }

    /// Bytes that `n` elements occupy, or `None` when `n` is not a whole number of blocks.
    pub fn bytes_for(self, n: usize) -> Option<usize> {
        n.is_multiple_of(self.block_elems()).then(|| n / self.block_elems() * self.block_bytes())
    }

    /// The ggml name of the type.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
        }
    }
}

/// Reads a little-endian f16 at `at`.
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Dequantizes `n` elements of type `dtype` from `raw` (which must hold exactly those elements).
/// `tensor` names the tensor in error messages.
pub fn dequantize(tensor: &str, dtype: GgufDType, raw: &[u8], n: usize) -> Result<Vec<f32>> {
    let expected = dtype.bytes_for(n).ok_or_else(|| Error::BadTensorData {
        tensor: tensor.to_owned(),
        reason: format!(
            "{n} elements are not a whole number of {} blocks of {} elements (the file is corrupt)",
            dtype.name(),
            dtype.block_elems()
        ),
    })?;
    if raw.len() != expected {
        return Err(Error::BadTensorData {
            tensor: tensor.to_owned(),
            reason: format!(
                "{n} {} elements need {expected} bytes, got {} (the file is corrupt)",
                dtype.name(),
                raw.len()
            ),
        });
    }
    let mut out = Vec::with_capacity(n);
    let blocks = raw.chunks_exact(dtype.block_bytes());
    match dtype {
        GgufDType::F32 => out.extend(blocks.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        GgufDType::F16 => out.extend(blocks.map(|b| f16_at(b, 0))),
        GgufDType::BF16 => out.extend(blocks.map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())),
        GgufDType::Q4_0 => blocks.for_each(|b| legacy::q4_0(b, &mut out)),
        GgufDType::Q4_1 => blocks.for_each(|b| legacy::q4_1(b, &mut out)),
        GgufDType::Q5_0 => blocks.for_each(|b| legacy::q5_0(b, &mut out)),
        GgufDType::Q5_1 => blocks.for_each(|b| legacy::q5_1(b, &mut out)),
        GgufDType::Q8_0 => blocks.for_each(|b| legacy::q8_0(b, &mut out)),
        GgufDType::Q4K => blocks.for_each(|b| kquant::q4k(b, &mut out)),
        GgufDType::Q5K => blocks.for_each(|b| kquant::q5k(b, &mut out)),
        GgufDType::Q6K => blocks.for_each(|b| kquant::q6k(b, &mut out)),
    }
    debug_assert_eq!(out.len(), n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Candle quantizes random data; our dequantizer must reproduce candle's dequantization of the same bytes.
    fn check_against_candle(ours: GgufDType, theirs: GgmlDType) {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (rows, cols) = (3, 512);
        let mut data: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        data[5] = 3.5; // an outlier so block scales differ
        data[700] = -2.25;
        let t = Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, theirs).unwrap();
        let raw = q.data().unwrap();
        let want: Vec<f32> = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let got = dequantize("t", ours, &raw, rows * cols).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                a == b || (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{} element {i}: ours {a} candle {b}",
                ours.name()
            );
        }
        // Not trivially zero: the quantized values track the input.
        assert!(got.iter().any(|x| x.abs() > 0.5), "{}", ours.name());
    }

    #[test]
    fn every_type_matches_candle() {
        let pairs = [
            (GgufDType::F32, GgmlDType::F32),
            (GgufDType::F16, GgmlDType::F16),
            (GgufDType::BF16, GgmlDType::BF16),
            (GgufDType::Q4_0, GgmlDType::Q4_0),
            (GgufDType::Q4_1, GgmlDType::Q4_1),
            (GgufDType::Q5_0, GgmlDType::Q5_0),
            (GgufDType::Q5_1, GgmlDType::Q5_1),
            (GgufDType::Q8_0, GgmlDType::Q8_0),
            (GgufDType::Q4K, GgmlDType::Q4K),
            (GgufDType::Q5K, GgmlDType::Q5K),
            (GgufDType::Q6K, GgmlDType::Q6K),
        ];
        for (ours, theirs) in pairs {
            assert_eq!(ours.block_bytes(), theirs.type_size(), "{}", ours.name());
            assert_eq!(ours.block_elems(), theirs.block_size(), "{}", ours.name());
            check_against_candle(ours, theirs);
        }
    }

    #[test]
    fn wrong_length_is_an_error() {
        let e = dequantize("blk.0.attn_q.weight", GgufDType::Q8_0, &[0u8; 33], 32).unwrap_err().to_string();
        assert!(e.contains("blk.0.attn_q.weight") && e.contains("34 bytes"), "{e}");
        let e = dequantize("x", GgufDType::Q4K, &[], 100).unwrap_err().to_string();
        assert!(e.contains("whole number"), "{e}");
    }
}
