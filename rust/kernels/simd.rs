//! Run-time SIMD detection for every kernel, and the `ECOS_FAST_SIMD` cap.
//!
//! The one place that decides which instruction set the kernels use: AVX-512F,
//! AVX2 with FMA, or portable Rust (auto-vectorised). Chosen once per process with
//! `is_x86_feature_detected!`, never with `-C target-cpu=native`, so one wheel runs
//! on any x86-64 or aarch64 machine. The assignment micro-kernel, the k-means
//! fixed-point sums and the K-Center distance loop all dispatch on [`path`].
//!
//! `ECOS_FAST_SIMD` (read once, before the first kernel call) caps the path, so the
//! tests can exercise every path on one machine: `amx`, `avx512bf16`, `avx512f`,
//! `avx2` or `portable`; unset or empty means no cap. Any other value is an error
//! ([`checked`]), not silently ignored: a typo would otherwise test the wrong path.
//!
//! The bf16 first pass of the assignment (`assign_bf16.rs`, AVX512_BF16's
//! `vdpbf16ps`) is a separate choice on top of the AVX-512F path, because whether it
//! pays depends on the core, not only on the flag: on AMD Zen 4 `vdpbf16ps` issues
//! like an FMA (twice the multiply-adds), on this project's Intel Emerald Rapids
//! machines it issues at a quarter of the FMA rate (half the multiply-adds;
//! `benches/bf16_peak.c`). So with `ECOS_FAST_SIMD` unset the assignment uses it only
//! where a one-off calibration ([`bf16_calibration`], ~2 ms on the first call that
//! asks) measures `vdpbf16ps` at ≥ [`BF16_GAIN`] × the float32 FMA multiply-add rate;
//! `avx512bf16` forces it wherever the CPU has AVX512_BF16; any narrower value turns
//! it off.
//!
//! The bf16 first pass has two engines ([`FirstPass`]): `vdpbf16ps` (AVX512_BF16) and
//! Intel AMX tiles (`tdpbf16ps`, AMX-BF16 + AMX-TILE: 16 × 16 × 32 multiply-adds an
//! instruction). AMX is usable only where cpuid reports AMX-BF16 and AMX-TILE, the
//! OS grants this process the tile state (Linux `arch_prctl(ARCH_REQ_XCOMP_PERM,
//! XFEATURE_XTILEDATA)`, requested once, [`amx_usable`]) and XCR0 then has the
//! tile bits; there the bf16 pass (forced or automatic) uses AMX, elsewhere
//! `vdpbf16ps`. `ECOS_FAST_SIMD=amx` forces the AMX pass where it is usable (and is
//! the same as unset elsewhere); `avx512bf16` forces the `vdpbf16ps` pass. The
//! calibration measures AMX too, and the automatic choice compares the rate of the
//! engine it would use with float32 FMA. Where the calibration says yes, each call still starts with a pilot of a
//! few row blocks and keeps bf16 only if the float32 re-checks it needed leave it
//! cheaper (`assign_bf16::pilot_pays`): how many candidates the bound lets through
//! depends on the data. The labels and distances are the float32 kernel's either way (the first
//! pass only narrows the candidates; see `assign_bf16.rs`), so the calibration, which
//! may land differently on a loaded machine, changes only the speed.
//!
//! Determinism. The path changes only speed for K-Center and the k-means sums
//! (same summation order on every path); the assignment labels may differ between
//! paths only where two centroids tie within rounding (see `assign.rs`).

use std::sync::OnceLock;

use crate::errors::{KernelError, KernelResult};

/// The environment variable that caps the path.
pub const ENV_VAR: &str = "ECOS_FAST_SIMD";

/// The values `ECOS_FAST_SIMD` accepts (besides unset or empty: no cap).
pub const ALLOWED: [&str; 5] = ["amx", "avx512bf16", "avx512f", "avx2", "portable"];

/// How much faster (multiply-adds per second, one thread) `vdpbf16ps` must measure
/// than float32 FMA for the automatic choice to take the bf16 first pass: the pass
/// also converts the rows and re-checks candidates in float32.
pub const BF16_GAIN: f64 = 1.25;

/// The bf16 first pass of the assignment: never, where it measures faster, or
/// forced: `vdpbf16ps` (`On`) or AMX where usable (`Amx`, else as `Auto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Mode {
    Off,
    Auto,
    On,
    Amx,
}

/// The engine of the bf16 first pass's dot products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstPass {
    /// AVX512_BF16 `vdpbf16ps` (a 12 × 32 register tile).
    Vdpbf16ps,
    /// AMX-BF16 `tdpbf16ps` (32 × 32 of four 16 × 16 f32 tiles).
    Amx,
}

impl FirstPass {
    /// The name `build_info` reports and `first_pass=` accepts.
    pub fn name(self) -> &'static str {
        match self {
            FirstPass::Vdpbf16ps => "avx512bf16",
            FirstPass::Amx => "amx",
        }
    }

    /// The inverse of [`FirstPass::name`].
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "avx512bf16" => Some(FirstPass::Vdpbf16ps),
            "amx" => Some(FirstPass::Amx),
            _ => None,
        }
    }
}

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
        None | Some("") | Some("amx") | Some("avx512bf16") | Some("avx512f") => {
            Ok(SimdPath::Avx512)
        }
        Some("avx2") => Ok(SimdPath::Avx2Fma),
        Some("portable") => Ok(SimdPath::Portable),
        Some(other) => Err(KernelError::Config(format!(
            "{ENV_VAR}={other:?} is not one of {}; unset it (or leave it empty) for the \
             widest path this CPU has",
            ALLOWED.map(|a| format!("{a:?}")).join(", ")
        ))),
    }
}

/// The bf16 mode a value of `ECOS_FAST_SIMD` asks for (its validity is
/// [`parse_cap`]'s to check).
pub fn parse_bf16(value: Option<&str>) -> Bf16Mode {
    match value.map(str::trim) {
        None | Some("") => Bf16Mode::Auto,
        Some("avx512bf16") => Bf16Mode::On,
        Some("amx") => Bf16Mode::Amx,
        Some(_) => Bf16Mode::Off,
    }
}

/// Whether this CPU has AVX512_BF16 (with AVX-512F).
fn bf16_detected() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the bf16 first pass may run in this process: the CPU has AVX512_BF16,
/// the path is AVX-512F, and `ECOS_FAST_SIMD` does not cap it below `avx512bf16`.
pub fn bf16_allowed() -> bool {
    bf16_pass().is_some()
}

/// Whether `pass` may run in this process: AVX-512F path, AVX512_BF16 (the row
/// conversion), and for AMX [`amx_usable`] with `ECOS_FAST_SIMD` not capping it
/// (`avx512bf16` is a cap below `amx`, as `avx512f` is below `avx512bf16`).
pub fn pass_allowed(pass: FirstPass) -> bool {
    let base = bf16_mode() != Bf16Mode::Off && path() == SimdPath::Avx512 && bf16_detected();
    base && (pass == FirstPass::Vdpbf16ps || (bf16_mode() != Bf16Mode::On && amx_usable()))
}

/// The engine the bf16 first pass uses in this process (`precision="bf16"` and the
/// automatic choice): AMX where usable (unless `ECOS_FAST_SIMD=avx512bf16`), else
/// `vdpbf16ps`; `None` where neither may run.
pub fn bf16_pass() -> Option<FirstPass> {
    if !pass_allowed(FirstPass::Vdpbf16ps) {
        return None;
    }
    if pass_allowed(FirstPass::Amx) {
        Some(FirstPass::Amx)
    } else {
        Some(FirstPass::Vdpbf16ps)
    }
}

/// Whether this process may execute AMX-BF16 tile instructions: cpuid leaf 7 has
/// AMX-BF16 (EDX bit 22) and AMX-TILE (bit 24), Linux granted the tile data state
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18)`, syscall
/// 158, requested once per process: the permission covers all its threads), and
/// XCR0 has the tile bits 17 and 18. Decided once, before the first tile instruction.
pub fn amx_usable() -> bool {
    amx_status().is_ok()
}

/// [`amx_usable`], with the reason where not (for `build_info`).
pub fn amx_status() -> Result<(), &'static str> {
    static AMX: OnceLock<Result<(), &'static str>> = OnceLock::new();
    *AMX.get_or_init(|| {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            amx::request()
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        {
            Err("not x86-64 Linux")
        }
    })
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod amx {
    use std::arch::asm;
    use std::arch::x86_64::{__cpuid_count, _xgetbv};

    /// `arch_prctl` (x86-64 Linux syscall number) and its AMX request.
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;

    pub fn request() -> Result<(), &'static str> {
        let l0 = __cpuid_count(0, 0);
        if l0.eax < 7 {
            return Err("cpuid has no leaf 7");
        }
        let l7 = __cpuid_count(7, 0);
        let (amx_bf16, amx_tile) = (l7.edx >> 22 & 1 == 1, l7.edx >> 24 & 1 == 1);
        if !(amx_bf16 && amx_tile) {
            return Err("no AMX-BF16/AMX-TILE");
        }
        let l1 = __cpuid_count(1, 0);
        if l1.ecx >> 27 & 1 == 0 {
            return Err("no OSXSAVE");
        }
        let ret: i64;
        // SAFETY: the arch_prctl system call with integer arguments; it reads and
        // writes no user memory; the kernel clobbers rcx and r11.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack)
            );
        }
        if ret != 0 {
            return Err("arch_prctl(ARCH_REQ_XCOMP_PERM) refused");
        }
        // SAFETY: OSXSAVE is set (checked above), so xgetbv is available.
        let xcr0 = unsafe { xgetbv0() };
        if xcr0 >> 17 & 3 != 3 {
            return Err("XCR0 lacks the tile state");
        }
        Ok(())
    }

    /// XCR0.
    ///
    /// # Safety
    /// The CPU has OSXSAVE.
    #[target_feature(enable = "xsave")]
    unsafe fn xgetbv0() -> u64 {
        _xgetbv(0)
    }
}

/// The bf16 mode `ECOS_FAST_SIMD` asks for, read once per process (as the cap).
fn bf16_mode() -> Bf16Mode {
    static MODE: OnceLock<Bf16Mode> = OnceLock::new();
    *MODE.get_or_init(|| {
        let raw = std::env::var_os(ENV_VAR);
        parse_bf16(raw.as_ref().map(|v| v.to_string_lossy()).as_deref())
    })
}

/// Whether the bf16 pass was forced on (`ECOS_FAST_SIMD=avx512bf16`) rather than
/// left to the calibration (and the assignment's pilot).
pub fn bf16_forced() -> bool {
    match bf16_mode() {
        Bf16Mode::On => true,
        Bf16Mode::Amx => amx_usable(),
        _ => false,
    }
}

/// One thread's multiply-add rates (1e9 per second): float32 FMA (`vfmadd231ps`
/// zmm, 16 per instruction), bf16 (`vdpbf16ps` zmm, 32 per instruction) and, where
/// [`amx_usable`], AMX (`tdpbf16ps`, 16 × 16 × 32 per instruction).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bf16Calibration {
    pub f32_gmadds: f64,
    pub bf16_gmadds: f64,
    pub amx_gmadds: Option<f64>,
}

impl Bf16Calibration {
    /// The multiply-add rate of `pass` over float32 FMA's.
    pub fn gain(&self, pass: FirstPass) -> f64 {
        let rate = match pass {
            FirstPass::Vdpbf16ps => self.bf16_gmadds,
            FirstPass::Amx => self.amx_gmadds.unwrap_or(0.0),
        };
        rate / self.f32_gmadds.max(1e-9)
    }

    /// Whether the bf16 first pass with `pass` pays on this core.
    pub fn pays_with(&self, pass: FirstPass) -> bool {
        self.gain(pass) >= BF16_GAIN
    }

    /// Whether the bf16 first pass with this process's engine pays on this core.
    pub fn pays(&self) -> bool {
        bf16_pass().is_some_and(|p| self.pays_with(p))
    }
}

/// The one-off calibration (measured on first use, then cached; `None` where the
/// CPU lacks AVX512_BF16): 16 independent accumulator chains of each instruction,
/// the best of 5 short runs (a neighbour on a shared core only ever slows a run).
/// The accumulators stay in registers (no `black_box` inside the loop: spilling
/// them each round measured float32 at a third of its rate).
pub fn bf16_calibration() -> Option<Bf16Calibration> {
    static CAL: OnceLock<Option<Bf16Calibration>> = OnceLock::new();
    *CAL.get_or_init(|| {
        if !bf16_detected() {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: AVX-512F and AVX512_BF16 were detected just above; AMX only
            // where `amx_usable` (cpuid, permission granted, XCR0).
            Some(unsafe { calibrate::run(amx_usable()) })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            None
        }
    })
}

/// Whether the assignment of `n_features`-wide rows against `n_clusters` centroids
/// takes the bf16 first pass when the caller leaves it to us.
///
/// Small problems stay on float32: below 64 features or 64 centroids the row
/// conversion and the candidate bookkeeping are a large share of the work (a rule
/// of thumb, not measured on a core where bf16 pays).
pub fn assign_bf16_auto(n_features: usize, n_clusters: usize) -> bool {
    if !bf16_allowed() {
        return false;
    }
    if bf16_forced() {
        return true;
    }
    n_features >= 64 && n_clusters >= 64 && bf16_calibration().is_some_and(|c| c.pays())
}

/// What `build_info` reports as the assignment path for large problems: the first
/// pass's engine (`"amx"`, `"avx512bf16"`) where the automatic choice takes it, else
/// the float32 path's name.
pub fn assign_path_name() -> &'static str {
    match bf16_pass() {
        Some(p) if assign_bf16_auto(usize::MAX, usize::MAX) => p.name(),
        _ => path().name(),
    }
}

#[cfg(target_arch = "x86_64")]
mod calibrate {
    use std::arch::x86_64::*;
    use std::hint::black_box;
    use std::time::Instant;

    use super::Bf16Calibration;

    const REPS: usize = 20_000;

    /// Seconds for `REPS` × 16 `vfmadd231ps` zmm.
    #[target_feature(enable = "avx512f")]
    fn fma_run() -> f64 {
        let m = black_box(_mm512_set1_ps(0.999_999));
        let c = black_box(_mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); 16];
        let t = Instant::now();
        for _ in 0..REPS {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(m, c, *a);
            }
        }
        let s = t.elapsed().as_secs_f64();
        black_box(acc);
        s
    }

    /// Seconds for `REPS` × 16 `vdpbf16ps` zmm.
    #[target_feature(enable = "avx512f,avx512bf16")]
    fn bf16_run() -> f64 {
        let v = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-4), _mm512_set1_ps(1e-4));
        let (m, c) = (black_box(v), black_box(v));
        let mut acc = [_mm512_set1_ps(1.0); 16];
        let t = Instant::now();
        for _ in 0..REPS {
            for a in acc.iter_mut() {
                *a = _mm512_dpbf16_ps(*a, m, c);
            }
        }
        let s = t.elapsed().as_secs_f64();
        black_box(acc);
        s
    }

    /// Rounds of 6 independent `tdpbf16ps` (one per accumulator tile).
    const AMX_REPS: usize = 4_000;

    /// Seconds for `AMX_REPS` × 6 `tdpbf16ps` (16 × 16 × 32 multiply-adds each).
    ///
    /// # Safety
    /// AMX is usable in this process (`amx_usable`).
    unsafe fn amx_run() -> f64 {
        use crate::kernels::amx;
        let a = [0x38d1_38d1u32; 256]; // bf16 pairs of ~1e-4
                                       // SAFETY: AMX usable (contract); the tiles are configured before use and
                                       // released after; `a` has 16 rows of 64 bytes.
        unsafe {
            amx::configure();
            amx::tilezero::<0>();
            amx::tilezero::<1>();
            amx::tilezero::<2>();
            amx::tilezero::<3>();
            amx::tilezero::<4>();
            amx::tilezero::<5>();
            amx::tileload::<6>(a.as_ptr(), 64);
            amx::tileload::<7>(a.as_ptr(), 64);
            let t = Instant::now();
            for _ in 0..black_box(AMX_REPS) {
                amx::tdpbf16ps::<0, 6, 7>();
                amx::tdpbf16ps::<1, 6, 7>();
                amx::tdpbf16ps::<2, 6, 7>();
                amx::tdpbf16ps::<3, 6, 7>();
                amx::tdpbf16ps::<4, 6, 7>();
                amx::tdpbf16ps::<5, 6, 7>();
            }
            let mut out = [0f32; 256];
            amx::tilestore::<0>(out.as_mut_ptr(), 64);
            let s = t.elapsed().as_secs_f64();
            amx::release();
            black_box(out);
            s
        }
    }

    /// # Safety
    /// The CPU supports AVX-512F and AVX512_BF16; with `with_amx`, AMX is usable.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn run(with_amx: bool) -> Bf16Calibration {
        let (mut tf, mut tb, mut ta) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
        for _ in 0..5 {
            tf = tf.min(fma_run());
            tb = tb.min(bf16_run());
            if with_amx {
                // SAFETY: AMX usable (contract).
                ta = ta.min(unsafe { amx_run() });
            }
        }
        let insts = (REPS * 16) as f64;
        Bf16Calibration {
            f32_gmadds: insts * 16.0 / tf.max(1e-9) / 1e9,
            bf16_gmadds: insts * 32.0 / tb.max(1e-9) / 1e9,
            amx_gmadds: with_amx.then(|| (AMX_REPS * 6) as f64 * 8192.0 / ta.max(1e-9) / 1e9),
        }
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

/// Fold 8 lanes (one 256-bit register) like [`fold_halves`]' last three halvings
/// (lane l += lane l + 4, then + 2, then + 1): the explicit-SIMD distance loops end
/// with it, so their sums have the portable order's bits.
///
/// # Safety
/// The CPU must support AVX.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn fold8(u: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let v = _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps::<1>(u));
    let w = _mm_add_ps(v, _mm_movehl_ps(v, v));
    _mm_cvtss_f32(_mm_add_ss(w, _mm_shuffle_ps::<1>(w, w)))
}

/// The tail of an explicit-AVX2 distance loop: the `tail` (< 8·`acc.len()`)
/// coordinates at `pa` / `pb` as one more block whose missing coordinates load as
/// 0, register `r` taking coordinates 8r…8r + 7 (adding +0 to a non-negative
/// partial sum changes no bit, so the sums keep the portable order's bits).
///
/// # Safety
/// The CPU supports AVX2; `pa` and `pb` point to at least `tail` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub(crate) unsafe fn add_sq_tail_avx2(
    acc: &mut [std::arch::x86_64::__m256],
    pa: *const f32,
    pb: *const f32,
    tail: usize,
) {
    use std::arch::x86_64::*;
    for (r, acc) in acc.iter_mut().enumerate() {
        let lanes = tail.saturating_sub(8 * r).min(8);
        if lanes == 0 {
            break;
        }
        // Lane l is enabled when its sign bit is set: l < lanes.
        let m = _mm256_cmpgt_epi32(
            _mm256_set1_epi32(lanes as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        // SAFETY: the mask enables only lanes 8r + l < tail, inside both buffers;
        // masked-off lanes are not read.
        let dv = unsafe {
            _mm256_sub_ps(
                _mm256_maskload_ps(pa.add(8 * r), m),
                _mm256_maskload_ps(pb.add(8 * r), m),
            )
        };
        *acc = _mm256_add_ps(*acc, _mm256_mul_ps(dv, dv));
    }
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
        assert_eq!(parse_cap(Some("avx512bf16")).unwrap(), SimdPath::Avx512);
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
    fn bf16_mode_follows_the_cap() {
        assert_eq!(parse_bf16(None), Bf16Mode::Auto);
        assert_eq!(parse_bf16(Some(" ")), Bf16Mode::Auto);
        assert_eq!(parse_bf16(Some("avx512bf16")), Bf16Mode::On);
        assert_eq!(parse_bf16(Some("amx")), Bf16Mode::Amx);
        assert_eq!(parse_cap(Some("amx")).unwrap(), SimdPath::Avx512);
        for p in [FirstPass::Amx, FirstPass::Vdpbf16ps] {
            assert_eq!(FirstPass::parse(p.name()), Some(p));
        }
        for narrower in ["avx512f", "avx2", "portable"] {
            assert_eq!(parse_bf16(Some(narrower)), Bf16Mode::Off);
        }
    }

    #[test]
    fn the_calibration_measures_both_rates_where_bf16_exists() {
        match bf16_calibration() {
            Some(c) => {
                assert!(c.f32_gmadds > 0.0 && c.bf16_gmadds > 0.0, "{c:?}");
                assert_eq!(c.amx_gmadds.is_some(), amx_usable(), "{c:?}");
                assert!(c.amx_gmadds.is_none_or(|r| r > 0.0), "{c:?}");
            }
            None => assert!(!bf16_detected()),
        }
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
