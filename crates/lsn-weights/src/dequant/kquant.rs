//! ggml's 256-element "K-quant" super-block formats Q4_K, Q5_K and Q6_K.
//!
//! Q4_K/Q5_K: f16 `d`, f16 `dmin`, 12 bytes packing eight 6-bit (scale, min) pairs, then (Q5_K) 32 bytes of fifth
//! bits, then 128 bytes of nibbles; each 64-element chunk uses the low nibbles (first 32) and high nibbles (next 32)
//! of 32 bytes, value = `d·scale·q − dmin·min`.
//! Q6_K: 128 bytes of low nibbles, 64 bytes of 2-bit high parts, 16 signed 8-bit scales, f16 `d` last;
//! value = `d·scale·(q − 32)` with one scale per 16 elements.

use super::f16_at;

pub const Q4K_BYTES: usize = 2 + 2 + 12 + 128;
pub const Q5K_BYTES: usize = 2 + 2 + 12 + 32 + 128;
pub const Q6K_BYTES: usize = 128 + 64 + 16 + 2;

/// The 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes.
fn scale_min(j: usize, s: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((s[j] & 63) as f32, (s[j + 4] & 63) as f32)
    } else {
        let sc = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
        let m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        (sc as f32, m as f32)
    }
}

/// Shared body of Q4_K and Q5_K; `qh` holds the fifth bits (Q5_K only).
fn q45k(b: &[u8], qh: Option<&[u8]>, qs: &[u8], out: &mut Vec<f32>) {
    let (d, dmin, scales) = (f16_at(b, 0), f16_at(b, 2), &b[4..16]);
    for chunk in 0..4 {
        let q = &qs[32 * chunk..32 * chunk + 32];
        for half in 0..2 {
            let (sc, m) = scale_min(2 * chunk + half, scales);
            let (dl, ml) = (d * sc, dmin * m);
            let bit = 1u8 << (2 * chunk + half);
            for l in 0..32 {
                let nib = if half == 0 { q[l] & 0x0F } else { q[l] >> 4 };
                let high = qh.map_or(0, |h| if h[l] & bit != 0 { 16 } else { 0 });
                out.push(dl * (nib + high) as f32 - ml);
            }
        }
    }
}

pub fn q4k(b: &[u8], out: &mut Vec<f32>) {
    q45k(b, None, &b[16..144], out);
}

pub fn q5k(b: &[u8], out: &mut Vec<f32>) {
    q45k(b, Some(&b[16..48]), &b[48..176], out);
}

pub fn q6k(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 208);
    let start = out.len();
    out.resize(start + 256, 0.0);
    let y = &mut out[start..];
    for half in 0..2 {
        let ql = &b[64 * half..64 * half + 64];
        let qh = &b[128 + 32 * half..128 + 32 * half + 32];
        let sc = &b[192 + 8 * half..192 + 8 * half + 8];
        let y = &mut y[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let code = |low: u8, shift: u32| ((low | (((qh[l] >> shift) & 3) << 4)) as i32 - 32) as f32;
            let q = [code(ql[l] & 0x0F, 0), code(ql[l + 32] & 0x0F, 2), code(ql[l] >> 4, 4), code(ql[l + 32] >> 4, 6)];
            for (k, qk) in q.iter().enumerate() {
                y[l + 32 * k] = d * (sc[is + 2 * k] as i8 as f32) * qk;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use half::f16;

    use super::*;

    #[test]
    fn q4k_by_hand() {
        // d = 1, dmin = 0.5. Sub-block 0: scale 3, min 2; sub-block 1: scale 5, min 4; sub-block 4 uses the
        // split encoding: scale = (s[8] & 15) | (s[0] >> 6) << 4 = 1 | 1 << 4 = 17, min = (s[8] >> 4) | (s[4] >> 6) << 4 = 2.
        let mut b = vec![0u8; Q4K_BYTES];
        b[..2].copy_from_slice(&f16::from_f32(1.0).to_le_bytes());
        b[2..4].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        let s = &mut b[4..16];
        s[0] = 3 | (1 << 6);
        s[1] = 5;
        s[4] = 2;
        s[5] = 4;
        s[8] = 1 | (2 << 4);
        b[16] = 0x7 | (0x9 << 4); // element 0 code 7, element 32 code 9
        b[16 + 64] = 0x2; // chunk 2 byte 0: element 128 code 2 (sub-block 4)
        let mut out = Vec::new();
        q4k(&b, &mut out);
        assert_eq!(out.len(), 256);
        assert_eq!(out[0], 3.0 * 7.0 - 0.5 * 2.0);
        assert_eq!(out[1], -1.0); // code 0
        assert_eq!(out[32], 5.0 * 9.0 - 0.5 * 4.0);
        assert_eq!(out[128], 17.0 * 2.0 - 0.5 * 2.0);
    }

    #[test]
    fn q6k_by_hand() {
        // d = 0.25, scale of elements 0..16 = 2, of 32..48 = -3. Element 0: low nibble 5, high bits 2 → 37 - 32 = 5.
        let mut b = vec![0u8; Q6K_BYTES];
        b[0] = 5;
        b[128] = 2 | (1 << 2); // element 0 high bits 2; element 32 high bits 1
        b[32] = 0; // element 32 low nibble 0 → code 16 - 32 = -16
        b[192] = 2;
        b[194] = (-3i8) as u8;
        b[208..210].copy_from_slice(&f16::from_f32(0.25).to_le_bytes());
        let mut out = Vec::new();
        q6k(&b, &mut out);
        assert_eq!(out[0], 0.25 * 2.0 * 5.0);
        assert_eq!(out[32], 0.25 * -3.0 * -16.0);
        assert_eq!(out[1], 0.25 * 2.0 * -32.0);
    }
}
