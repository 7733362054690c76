//! Pure-Rust kernels over slices. No pyo3 here.
//!
//! Prior validation of data is assumed (Python's `_validation` module); kernels
//! re-check only cheap shape invariants and return `KernelError`s.

#[cfg(target_arch = "x86_64")]
pub mod amx;
pub mod assign;
pub mod assign_bf16;
pub mod control;
pub mod finite;
pub mod kcenter;
pub mod kmeans;
pub mod neighbourhood;
pub mod simd;

/// Deterministic test data shared by the kernels' unit tests (no extra crate).
#[cfg(test)]
pub(crate) mod testdata {
    /// `len` values in [-3.5, 3.5) from a 64-bit LCG (Knuth's MMIX constants).
    pub fn lcg_values(seed: u64, len: usize) -> Vec<f32> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 7.0
            })
            .collect()
    }
}
