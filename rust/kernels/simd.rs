//! Run-time SIMD detection for every kernel, and the `ECOS_FAST_SIMD` cap.
//!
//! The one place that decides which instruction set the kernels use: AVX-512F,
//! AVX2 with FMA, or portable Rust (auto-vectorised). Chosen once per process with
//! `is_x86_feature_detected!`, never with `-C target-cpu=native`, so one wheel runs
//! on any x86-64 or aarch64 machine. The assignment micro-kernel, the k-means
//! fixed-point sums and the K-Center distance loop all dispatch on [`path`].
//!
//! `ECOS_FAST_SIMD` (read once, before the first kernel call) caps the path, so the
//! tests can exercise every path on one machine: `avx512f` (no cap), `avx2` or
//! `portable`; unset or empty means no cap. Any other value is an error
//! ([`checked`]), not silently ignored: a typo would otherwise test the wrong path.
//!
//! Determinism. The path changes only speed for K-Center and the k-means sums
//! (same summation order on every path); the assignment labels may differ between
//! paths only where two centroids tie within rounding (see `assign.rs`).

use std::sync::OnceLock;

use crate::errors::{KernelError, KernelResult};

/// The environment variable that caps the path.
pub const ENV_VAR: &str = "ECOS_FAST_SIMD";

/// The values `ECOS_FAST_SIMD` accepts (besides unset or empty: no cap).
pub const ALLOWED: [&str; 3] = ["avx512f", "avx2", "portable"];

/// The instruction set the kernels use, widest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdPath {
    Portable,
    Avx2Fma,
    Avx512,
}

impl SimdPath {
    /// The name `build_info` reports, e.g. `"avx512f"`.
    pub fn name(self) -> &'static str {
        match self {
            SimdPath::Avx512 => "avx512f",
            SimdPath::Avx2Fma => "avx2+fma",
            SimdPath::Portable => "portable",
        }
    }
}

/// The widest path a value of `ECOS_FAST_SIMD` allows (`None`/empty: no cap).
pub fn parse_cap(value: Option<&str>) -> KernelResult<SimdPath> {
    match value.map(str::trim) {
        None | Some("") | Some("avx512f") => Ok(SimdPath::Avx512),
        Some("avx2") => Ok(SimdPath::Avx2Fma),
        Some("portable") => Ok(SimdPath::Portable),
        Some(other) => Err(KernelError::Config(format!(
            "{ENV_VAR}={other:?} is not one of {}; unset it (or leave it empty) for the \
             widest path this CPU has",
            ALLOWED.map(|a| format!("{a:?}")).join(", ")
        ))),
    }
}

/// The widest path this CPU supports.
fn detected() -> SimdPath {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return SimdPath::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return SimdPath::Avx2Fma;
        }
    }
    SimdPath::Portable
}

/// The path of this process (detected and capped once), or the error for an unknown
/// `ECOS_FAST_SIMD` value. Every binding checks it before running a kernel.
pub fn checked() -> KernelResult<SimdPath> {
    static PATH: OnceLock<KernelResult<SimdPath>> = OnceLock::new();
    PATH.get_or_init(|| {
        let raw = std::env::var_os(ENV_VAR);
        let value = raw.as_ref().map(|v| v.to_string_lossy());
        let cap = parse_cap(value.as_deref())?;
        Ok(detected().min(cap))
    })
    .clone()
}

/// The path the kernels dispatch on. With an invalid `ECOS_FAST_SIMD` (which
/// [`checked`] reports before any kernel runs) this is the portable path, which is
/// always safe to run.
#[inline]
pub fn path() -> SimdPath {
    checked().unwrap_or(SimdPath::Portable)
}

/// Sum `L` accumulator lanes by folding them in halves (lane l += lane l + w for
/// w = L/2, …, 1): the fixed reduction order of the exact distance loops of
/// assignment and K-Center, on every path. `L` is a power of two.
#[inline(always)]
pub fn fold_halves<const L: usize>(mut v: [f32; L]) -> f32 {
    let mut w = L;
    while w > 1 {
        w /= 2;
        for l in 0..w {
            v[l] += v[l + w];
        }
    }
    v[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_parse_and_unknown_values_are_errors() {
        assert_eq!(parse_cap(None).unwrap(), SimdPath::Avx512);
        assert_eq!(parse_cap(Some("")).unwrap(), SimdPath::Avx512);
        assert_eq!(parse_cap(Some("avx512f")).unwrap(), SimdPath::Avx512);
        assert_eq!(parse_cap(Some("avx2")).unwrap(), SimdPath::Avx2Fma);
        assert_eq!(parse_cap(Some("portable")).unwrap(), SimdPath::Portable);
        let err = parse_cap(Some("avx3")).unwrap_err();
        assert!(matches!(err, KernelError::Config(_)));
        let msg = err.to_string();
        for name in ALLOWED {
            assert!(msg.contains(name), "{msg}");
        }
        assert!(msg.contains("\"avx3\""), "{msg}");
    }

    #[test]
    fn fold_halves_adds_lane_pairs_in_a_fixed_tree() {
        assert_eq!(fold_halves([1.0f32]), 1.0);
        assert_eq!(fold_halves([1.0f32, 2.0, 3.0, 4.0]), 10.0);
        // ((1e8 + -1e8) + (1 + 1)): the tree, not left to right (which would give 1).
        assert_eq!(fold_halves([1e8f32, 1.0, -1e8, 1.0]), 2.0);
    }

    #[test]
    fn the_cap_never_widens_the_detected_path() {
        assert!(path() <= detected());
        assert_eq!(detected().min(SimdPath::Portable), SimdPath::Portable);
    }
}
