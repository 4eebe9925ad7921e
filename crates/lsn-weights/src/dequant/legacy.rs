//! ggml's 32-element block formats Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0.
//!
//! Each block starts with an f16 scale `d` (and, for the `_1` types, an f16 offset `m`). The low nibbles of the
//! 16 packed bytes hold elements 0..16, the high nibbles elements 16..32; the Q5 types add the fifth bit of
//! element `j` from bit `j` of a little-endian u32.

use super::f16_at;

pub const Q4_0_BYTES: usize = 2 + 16;
pub const Q4_1_BYTES: usize = 2 + 2 + 16;
pub const Q5_0_BYTES: usize = 2 + 4 + 16;
pub const Q5_1_BYTES: usize = 2 + 2 + 4 + 16;
pub const Q8_0_BYTES: usize = 2 + 32;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Pushes 32 values `d * q + m` where `q(j)` are the 4-bit codes in `qs` plus the optional fifth bits in `qh`.
fn nibbles(qs: &[u8], qh: Option<u32>, d: f32, offset_code: i32, m: f32, out: &mut Vec<f32>) {
    let high_bit = |j: usize| qh.map_or(0, |h| ((h >> j) & 1) as i32) << 4;
    for half in 0..2 {
        for (j, &byte) in qs.iter().enumerate() {
            let nib = if half == 0 { byte & 0x0F } else { byte >> 4 } as i32;
            let q = nib | high_bit(j + 16 * half);
            out.push((q - offset_code) as f32 * d + m);
        }
    }
}

pub fn q4_0(b: &[u8], out: &mut Vec<f32>) {
    nibbles(&b[2..18], None, f16_at(b, 0), 8, 0.0, out);
}

pub fn q4_1(b: &[u8], out: &mut Vec<f32>) {
    nibbles(&b[4..20], None, f16_at(b, 0), 0, f16_at(b, 2), out);
}

pub fn q5_0(b: &[u8], out: &mut Vec<f32>) {
    nibbles(&b[6..22], Some(u32_at(b, 2)), f16_at(b, 0), 16, 0.0, out);
}

pub fn q5_1(b: &[u8], out: &mut Vec<f32>) {
    nibbles(&b[8..24], Some(u32_at(b, 4)), f16_at(b, 0), 0, f16_at(b, 2), out);
}

pub fn q8_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    out.extend(b[2..34].iter().map(|&q| q as i8 as f32 * d));
}

#[cfg(test)]
mod tests {
    use half::f16;

    use super::*;

    #[test]
    fn q8_0_by_hand() {
        // d = 0.5; codes 0, 1, -1, 127, -128, then zeros.
        let mut b = vec![0u8; Q8_0_BYTES];
        b[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        b[2..7].copy_from_slice(&[0, 1, 0xFF, 127, 0x80]);
        let mut out = Vec::new();
        q8_0(&b, &mut out);
        assert_eq!(&out[..5], &[0.0, 0.5, -0.5, 63.5, -64.0]);
        assert!(out[5..].iter().all(|&x| x == 0.0));
        assert_eq!(out.len(), 32);
    }

    #[test]
    fn q5_0_by_hand() {
        // d = 2; byte 0 = 0x3A: element 0 has low nibble 0xA, element 16 high nibble 0x3.
        // qh bit 0 set → element 0 code 0x1A = 26 → (26 - 16) * 2 = 20; bit 16 clear → element 16 code 3 → -26.
        let mut b = vec![0u8; Q5_0_BYTES];
        b[..2].copy_from_slice(&f16::from_f32(2.0).to_le_bytes());
        b[2..6].copy_from_slice(&1u32.to_le_bytes());
        b[6] = 0x3A;
        let mut out = Vec::new();
        q5_0(&b, &mut out);
        assert_eq!(out[0], 20.0);
        assert_eq!(out[16], -26.0);
        assert_eq!(out[1], -32.0); // code 0 → (0 - 16) * 2
    }
}
