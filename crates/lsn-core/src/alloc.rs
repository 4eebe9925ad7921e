//! glibc's malloc thresholds set for the CPU backends' allocation pattern: every eager op allocates its result afresh.
//!
//! A Gemma-3-270M activation of a 4 × 512 batch is 8–16 MiB. Under glibc's default policy such freed buffers go
//! back to the kernel (`munmap` of an mmapped chunk, or a trim of the heap's top), so the next op's buffer faults
//! in fresh zeroed pages. Serving requests up to 32 MiB (glibc's largest allowed mmap threshold) from the heap and
//! never trimming it lets freed buffers be reused. Candle (profile: 13.9% of the capture count pass's samples in the
//! kernel, mostly page faults): count pass 700 → 897 tokens/s, capture peak RSS 1263 → 1270 MiB. libtorch (same
//! setting through `GLIBC_TUNABLES`, capture bench): pass 1 573 → 669, pass 2 515 → 743, count 684 → 801 tokens/s,
//! peak 1373 → 1486 MiB (1.45× the weights); generation 47 → 52, scoring 200 → 229 tokens/s.
//!
//! The setting is process-wide; the candle and tch backends make it once, when the first CPU model loads. Other
//! backends in the same process (the conformance suite runs all three) then run under it too; the bench runs each
//! backend in its own process. ONNX Runtime keeps its own buffers and is not asked for it.

/// `M_TRIM_THRESHOLD` and `M_MMAP_THRESHOLD` of glibc's `<malloc.h>`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const M_TRIM_THRESHOLD: i32 = -1;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const M_MMAP_THRESHOLD: i32 = -3;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    fn mallopt(param: i32, value: i32) -> i32;
}

/// Sets the thresholds once per process; true where glibc accepted both (always false off glibc).
pub fn keep_freed_buffers() -> bool {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DONE.get_or_init(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: mallopt only changes allocator parameters; these two are plain integers in range.
            unsafe { mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, i32::MAX) == 1 }
        }
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        false
    })
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_thresholds() {
        assert!(super::keep_freed_buffers());
        // A second call does not set them again and reports the first answer.
        assert!(super::keep_freed_buffers());
    }
}
