//! Host kernels' vector width chosen at run time, and the f64 `exp` pieces they share.
//!
//! A kernel body is written once and compiled for AVX-512, AVX2 and the baseline ([`multiversion`]); Rust does not
//! contract `a·b + c` into an FMA, so every version performs the same roundings and gives the same bits. `exp` is
//! evaluated without libm (range reduction and a polynomial), so loops over it vectorise.

/// ln 2 split so that `k · LN2_HI` is exact for |k| < 2²¹ (its low 21 bits are zero).
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
/// 1.5 · 2⁵²: adding it rounds to an integer and leaves that integer in the low bits of the sum.
const ROUND_SHIFT: f64 = 6_755_399_441_055_744.0;
/// 1/n! for n = 13 down to 2: the Taylor series of `expm1(r) = r + r²·(…)` on |r| ≤ ln2/2, whose first omitted
/// term (r¹⁴/14!) is below 2⁻⁵⁸ of the value.
const EXPM1_COEFFS: [f64; 12] = [
    1.0 / 6_227_020_800.0,
    1.0 / 479_001_600.0,
    1.0 / 39_916_800.0,
    1.0 / 3_628_800.0,
    1.0 / 362_880.0,
    1.0 / 40_320.0,
    1.0 / 5_040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
];

/// `(2^k, expm1(r))` with `x = k·ln2 + r`, |r| ≤ ln2/2, for `x` in [−1022·ln2, 1023·ln2]: so `exp(x) = 2^k +
/// 2^k·expm1(r)` and `expm1(x) = 2^k·expm1(r) + (2^k − 1)`. Within an ulp or two of f64 (Taylor to r¹³; the first
/// omitted term is below 2⁻⁵⁸ of the value).
#[inline(always)]
pub(crate) fn exp_parts(x: f64) -> (f64, f64) {
    let shifted = x * std::f64::consts::LOG2_E + ROUND_SHIFT;
    let k = shifted - ROUND_SHIFT;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    let mut p = 0.0;
    for c in EXPM1_COEFFS {
        p = p * r + c;
    }
    let expm1_r = r + r * r * p;
    // 2^k from the integer left in the low bits of `shifted` (two's complement, so negative k wraps into place).
    let scale = f64::from_bits((shifted.to_bits() << 52).wrapping_add(1023 << 52));
    (scale, expm1_r)
}

/// Which vector width this CPU runs the slice kernels at (looked up once per call; `is_x86_feature_detected!`
/// caches).
#[derive(Clone, Copy)]
pub(crate) enum Simd {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

pub(crate) fn simd() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") {
            return Simd::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Simd::Avx2;
        }
    }
    Simd::Portable
}

/// One kernel body compiled three times: for AVX-512, AVX2 and the baseline. Rust does not contract `a·b + c`
/// into an FMA, so every version performs the same roundings and gives the same bits.
macro_rules! multiversion {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
            fn avx512($($arg: $ty),*) { body($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) { body($($arg),*) }
            match $crate::simd::simd() {
                // SAFETY: `simd()` returned these only where the CPU reports the features.
                #[cfg(target_arch = "x86_64")]
                $crate::simd::Simd::Avx512 => unsafe { avx512($($arg),*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                $crate::simd::Simd::Avx2 => unsafe { avx2($($arg),*) },
                $crate::simd::Simd::Portable => body($($arg),*),
            }
        }
    };
}

pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_parts_give_exp_and_expm1() {
        for x in [-708.0f64, -100.5, -20.0, -1.0, -0.3, -1e-9, 0.0, 1e-9, 0.25, 1.0, 7.5, 17.3] {
            let (scale, em) = exp_parts(x);
            let exp = scale + scale * em;
            assert!((exp - x.exp()).abs() <= 4.0 * f64::EPSILON * x.exp(), "exp({x}): {exp} vs {}", x.exp());
            let expm1 = scale * em + (scale - 1.0);
            let want = x.exp_m1();
            assert!((expm1 - want).abs() <= 4.0 * f64::EPSILON * want.abs().max(f64::MIN_POSITIVE), "expm1({x})");
        }
    }
}
