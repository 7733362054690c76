//! Nearest-centroid assignment with a bf16 first pass (Intel AMX `tdpbf16ps` tiles,
//! or AVX512_BF16 `vdpbf16ps`) and a float32 re-check of the candidates it cannot
//! rule out.
//!
//! Algorithm. The same shifted expansion as `assign.rs` (rows and centroids minus
//! `mu`, the rounded centroid mean; score `s_j = ||c_j||² − 2 x·c_j`), but the dot
//! products of the first pass are `vdpbf16ps` over bf16 copies: the centroids are
//! converted once into panels of 32 (or 16) columns holding feature *pairs*
//! (`d` odd: a zero pads the last pair), each block of [`ROW_BLOCK`] rows is
//! converted once, and a 12 × 32 register tile accumulates in f32 — half the
//! instructions of the float32 tile for the same multiply-adds. The columns are in
//! [`panel_order`]: near centroids share panels, so a row's candidates fall in few.
//!
//! The bound. For a row `x` (shifted, f32), its bf16 copy `x~ = x + δx`, and a
//! centroid `c~ = c + δc`: `x~·c~ − x·c = x~·δc + δx·c`, so by Cauchy–Schwarz
//! `|x~·c~ − x·c| ≤ (||x|| + ||δx||)·||δc|| + ||δx||·||c||`, with the residual norms
//! measured from the actual converted values (not assumed from the 2⁻⁸ unit
//! roundoff: about half as large in practice). On top come the f32 accumulation
//! errors of both passes (`γ_n·Σ|x_i c_i|`, `γ_n = n·2⁻²⁴/(1 − n·2⁻²⁴)`), the
//! roundings of the two scores and of the bounds themselves, and absolute terms for
//! flushed denormals. All of it is `e_j = ||x||·P_j + ||δx||·Q_j + R_j` (per-centroid
//! coefficients computed once, inflated by 2⁻¹⁰), so `|s~_j − s_j| ≤ e_j` where
//! `s_j` is *the float32 kernel's own score* (AVX-512 tile: FMAs in feature order).
//! A centroid is a candidate iff `s~_j − e_j ≤ min_l (s~_l + e_l)`: that set holds
//! every centroid with the float32 kernel's minimum score. The tile's epilogue keeps
//! each row's running `min (s~ + e)` and appends (`vpcompressd`) the centroids that
//! pass against it; after the last panel the list is filtered against the final
//! minimum. One candidate: that is the label, no float32 dot at all. Several: the
//! 16-column halves of the panels holding them are re-computed in float32 with the
//! float32 tile's own arithmetic (FMAs in feature order from 0, then `cn − 2·dot`
//! in one rounding; per lane, so the width computed does not change the bits),
//! each panel (or half) once per block for all the rows that need it (up to 12
//! gathered rows per tile; 4- and 8-row tiles for shorter lists: a score's bits
//! depend only on its row and column, not on the tile's height), and the lowest
//! centroid index with the smallest score wins.
//!
//! Two engines ([`FirstPass`]) compute the bf16 dot products; everything else (row
//! conversion, norms, bound, epilogue, re-check, statistics) is shared.
//! - `vdpbf16ps`: the 12 × 32 register tile above.
//! - AMX (`tdpbf16ps`, [`super::amx`]): per 32 rows × one panel, four 16 × 16 f32
//!   C tiles (two row halves × two 16-column halves), each K step loading two A
//!   tiles (16 rows × 16 feature pairs of the converted block) and two B tiles (16
//!   pairs × 16 columns of the panel: the panels' pair-per-u32 layout *is* AMX's
//!   B-tile layout, so one packing serves both engines; panels hold `pairs` rounded
//!   up to 16 rows, zeros past `pairs`, as the converted rows do). The C tiles go to
//!   a stack buffer and the same AVX-512 epilogue runs on each of its 32 rows. The
//!   tile configuration is per thread, so each row block loads it and releases the
//!   tiles after. Used where [`simd::amx_usable`] (cpuid, the Linux permission
//!   request, XCR0), preferred over `vdpbf16ps` there.
//!
//! The AMX bound. Intel's SDM entry for TDPBF16PS says each accumulation is an f32
//! FMA with round to nearest even, that denormal inputs are treated as zero and
//! denormal outputs flushed, and that MXCSR is neither read nor written; its
//! pseudo-code keeps two partial sums per output (even and odd pair elements) over
//! an instruction's 16 pairs and then adds both into C. The products of two bf16
//! values are exact in f32 (8-bit significands) unless they underflow. The bound
//! does not rely on that order, nor on the rounding being exactly RNE (matrix units
//! are not always faithful to their pseudo-code): for *any* order of the `ops`
//! additions an output sees (`2·ppad` FMAs, plus two per instruction for the
//! partial sums and the add into C, plus slack), with every addition's relative
//! error at most `2u` (any faithful rounding, so truncation too), the computed dot
//! is within `γ'·Σ|x~_i c~_i|` of the exact one, `γ' = ops·2u / (1 − ops·2u)` —
//! Higham's order-independent summation bound (§4.2) with the unit roundoff
//! doubled, i.e. `gamma(2·ops)`; for d = 512 that is γ' ≈ 6.5e-5 against the
//! `vdpbf16ps` bound's 3.1e-5, a small share of the bound next to the bf16
//! conversion residuals (≈ 2⁻⁹ relative). Each of those `ops` may also flush a
//! denormal result (an absolute error below 2⁻¹²⁶ each), so the absolute term
//! counts `2·ops` flushes at `TINY`. With that `γ'` and flush count in place of
//! `vdpbf16ps`'s, `e_j` covers `|s~_j − s_j|` as before, and the candidate set, the
//! re-check and hence the labels are unchanged: bit-identical to float32.
//!
//! So the labels are the float32 AVX-512 kernel's bit for bit (not just outside
//! near-ties), and the distances are `assign.rs`'s exact `Σ (x − c)²` for that
//! label. A row whose bounds overflow (not finite) re-checks every panel.
//! [`RecheckStats`] counts the rows re-checked, their candidates and panels.
//!
//! Cost. O(n·k·d) bf16 multiply-adds (`vdpbf16ps`: half the instructions of
//! float32; AMX: a sixteenth of those), O(n·d) for the row copy, conversion and
//! norms, and for each re-checked (row, panel half) pair the float32 work of one
//! row × 16 centroids. Centroids crowded within
//! the bound (near-duplicates) all become candidates: correct, but then slower than
//! float32. Extra memory: O(k·d) for the bf16 and f32 panels, plus
//! O(ROW_BLOCK·(d + min(k, 2048))) per worker (the candidate lists; a row with
//! more candidates than [`LIST_CAP`] re-checks every panel). Packing adds
//! [`panel_order`]'s O(k²·d/32).
//!
//! Determinism. Each row's result depends only on that row and the centroids
//! (fixed blocks, feature-order accumulation), so results are bit-identical for any
//! `n_threads`; the statistics are sums of per-block counts.
//!
//! When it pays. Only where the engine outruns float32 FMA (a calibration in
//! `simd.rs`: the issue measured Zen 4's `vdpbf16ps` at 2×; this project's Intel
//! Emerald Rapids runs `vdpbf16ps` at half the FMA multiply-add rate, 42 vs 87 G/s,
//! `benches/bf16_peak.c`, but AMX at ~15× it: 1647 vs 111 G/s in one calibration),
//! and only where the bound leaves few candidates, which depends on the data: the
//! bound is rigorous, so it grows with `||x − mu||·||c − mu||`, and centroids that
//! crowd within it all need float32. On benches' mixture (1M × 512, k = 1000: 64
//! components, ~15 centroids each) 92 % of rows keep 44 candidates, in 4 panels
//! on average. So the automatic choice ([`assign_auto_ctl`]) runs a pilot of
//! [`PILOT_ROWS`] rows in bf16 and keeps it for the rest only if [`pilot_pays`].
//!
//! Only x86-64 with AVX-512F and AVX512_BF16 runs it ([`super::simd::bf16_allowed`]);
//! everywhere else [`assign_ctl`] refuses and the automatic choice takes `assign.rs`.
//! References: Intel's BF16 white paper (VCVTNE2PS2BF16 rounds to nearest even;
//! VDPBF16PS treats denormals as zero and flushes denormal results, both covered by
//! the absolute terms); the Intel 64 and IA-32 Architectures Software Developer's
//! Manual, Vol. 2, TDPBF16PS (RNE per FMA, DAZ and FTZ, MXCSR ignored) and Vol. 1,
//! ch. 18 (AMX, the tile configuration) with the Linux kernel's `arch_prctl`
//! documentation (`Documentation/arch/x86/xstate.rst`: ARCH_REQ_XCOMP_PERM);
//! Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1 for `γ_n`, §4.2
//! for summation in any order.

use rayon::prelude::*;

use super::assign::{self as f32pass, centroid_shift, shifted_sq_norm, sq_dist_exact, ROW_BLOCK};
use super::control::Control;
use super::simd::{self, FirstPass};
use crate::errors::KernelResult;
use crate::invalid;

/// Longest candidate list kept per row; past it the row is re-checked whole.
const LIST_CAP: usize = 2048;
/// `cand_n` of a row whose list passed [`LIST_CAP`].
const OVERFLOWED: u32 = u32::MAX;

/// Rows of the register tile (a divisor of [`ROW_BLOCK`]).
const MR: usize = 12;
/// Rows of the AMX tile step (two 16-row A tiles; a divisor of [`ROW_BLOCK`]).
const AMX_MR: usize = 32;
/// Feature pairs per AMX K step (one 64-byte tile row of bf16 pairs).
const AMX_KP: usize = 16;
/// Columns of a full panel (two zmm of f32 lanes), and of the narrow last one.
const NR: usize = 32;
const TAIL_NR: usize = 16;
/// Unit roundoff of f32.
const U32: f64 = 1.0 / (1u64 << 24) as f64;
/// 2⁻¹²⁵: the absolute slack per flushed denormal (twice f32's smallest normal).
const TINY: f64 = 2.350_988_701_644_575e-38;

/// Which pass `assign_auto_ctl` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// bf16 first pass where it pays ([`simd::assign_bf16_auto`]), else float32.
    Auto,
    /// The float32 kernel (`assign.rs`).
    Float32,
    /// The bf16 first pass; an error where the CPU (or `ECOS_FAST_SIMD`) lacks it.
    Bf16,
}

impl Precision {
    /// `"auto"`, `"float32"` or `"bf16"`.
    pub fn parse(name: &str) -> KernelResult<Self> {
        match name {
            "auto" => Ok(Precision::Auto),
            "float32" => Ok(Precision::Float32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(invalid!(
                "precision={other:?} is not one of \"auto\", \"float32\", \"bf16\""
            )),
        }
    }
}

/// What the first pass left to the float32 re-check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecheckStats {
    /// Rows assigned.
    pub rows: u64,
    /// Rows with two or more candidates (re-checked in float32).
    pub rows_rechecked: u64,
    /// Candidates re-checked, summed over those rows.
    pub centroids_rechecked: u64,
    /// Rows whose bounds overflowed and which were re-checked against every centroid.
    pub rows_full: u64,
    /// Panels (32 or 16 centroids) holding candidates of those rows.
    pub panels_rechecked: u64,
    /// 16-centroid halves of those panels computed in float32 (a panel's half
    /// without candidates is skipped).
    pub halves_rechecked: u64,
}

impl RecheckStats {
    fn add(mut self, o: RecheckStats) -> RecheckStats {
        self.rows += o.rows;
        self.rows_rechecked += o.rows_rechecked;
        self.centroids_rechecked += o.centroids_rechecked;
        self.rows_full += o.rows_full;
        self.panels_rechecked += o.panels_rechecked;
        self.halves_rechecked += o.halves_rechecked;
        self
    }
}

/// 64 bytes of bf16 pairs, aligned to a cache line: the packed panels and the
/// converted rows are vectors of these, so every AMX tile row (64 bytes at a
/// multiple of 64) is one cache line, not two.
#[repr(C, align(64))]
#[derive(Clone, Copy, Default)]
struct Line([u32; 16]);

/// `lines` as the u32 they hold.
fn as_u32(lines: &[Line]) -> &[u32] {
    // SAFETY: `Line` is 16 u32 with no padding (repr(C), size 64).
    unsafe { std::slice::from_raw_parts(lines.as_ptr() as *const u32, lines.len() * 16) }
}

/// `lines` as the u32 they hold, mutably.
fn as_u32_mut(lines: &mut [Line]) -> &mut [u32] {
    // SAFETY: as `as_u32`, with the unique borrow.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr() as *mut u32, lines.len() * 16) }
}

/// A run of `width` consecutive centroids packed pair-major.
struct Panel {
    j0: usize,
    width: usize,
}

/// Centroids converted and packed for the bf16 pass, plus the float32 copy the
/// re-check reads.
pub struct PackedBf16<'a> {
    d: usize,
    k: usize,
    /// The engine of the dot products (the bound's constants depend on it).
    pass: FirstPass,
    /// Feature pairs per row (`d` rounded up to even, halved).
    pairs: usize,
    /// `pairs` rounded up to [`AMX_KP`]: the rows each panel holds (zeros past
    /// `pairs`), so an AMX K step never reads past its panel.
    ppad: usize,
    /// bf16 values per converted row in the scratch buffer (a multiple of 32, so
    /// whole-vector stores never reach the next row).
    row_stride: usize,
    centroids: &'a [f32],
    panels: Vec<Panel>,
    /// Panel after panel, each `ppad × width` u32 (bf16 of feature 2p in the low
    /// half, 2p+1 in the high half; zero rows from `pairs` on); panel `p` starts at
    /// `j0 · ppad`. Per 16 pairs and 16 columns this is AMX's B-tile layout.
    b: Vec<Line>,
    /// Per packed column: `||c − mu||²` (+inf in padding) and the bound's
    /// coefficients `P`, `Q`, `R` (0 in padding).
    cn: Vec<f32>,
    pe: Vec<f32>,
    qe: Vec<f32>,
    re: Vec<f32>,
    /// The same panels in f32 (`c − mu`, feature-major, `d × width`, panel `p` at
    /// `j0 · d`): the float32 re-check runs the float32 tile's arithmetic on them.
    bf32: Vec<f32>,
    /// The centroid in each packed column (`i32::MAX` in padding): columns are in
    /// [`panel_order`], so near centroids share panels.
    perm: Vec<i32>,
    mu: Vec<f32>,
}

/// An order of the centroids that puts near ones next to each other, so a row's
/// candidates fall in few panels (the re-check computes whole panels): each centroid
/// joins the nearest of `⌈k/32⌉` evenly spaced seeds, then the groups are laid out
/// one after another, by index within each. O(k²·d/32); the identity order where that
/// exceeds 2²⁸ multiply-adds (~50 ms) or k ≤ 64. Only the speed depends on it.
fn panel_order(c: &[f32], k: usize, d: usize) -> Vec<usize> {
    let g = k.div_ceil(NR);
    if k <= 2 * NR || (k as u128) * (g as u128) * (d as u128) > 1 << 28 {
        return (0..k).collect();
    }
    let seeds: Vec<usize> = (0..g).map(|s| s * k / g).collect();
    let mut group = vec![0usize; k];
    for (j, gj) in group.iter_mut().enumerate() {
        let row = &c[j * d..(j + 1) * d];
        let mut best = f32::INFINITY;
        for (si, &sj) in seeds.iter().enumerate() {
            let dd = sq_dist_exact(row, &c[sj * d..(sj + 1) * d]);
            if dd < best {
                best = dd;
                *gj = si;
            }
        }
    }
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by_key(|&j| (group[j], j));
    order
}

/// Per-worker buffers, reused across blocks.
#[derive(Default)]
pub struct ScratchBf16 {
    a: Vec<f32>,
    /// Converted rows, `row_stride / 2` u32 (bf16 pairs) apart.
    abf: Vec<Line>,
    nx: Vec<f32>,
    ndx: Vec<f32>,
    thr: Vec<f32>,
    cand_n: Vec<u32>,
    cand_j: Vec<i32>,
    cand_lo: Vec<f32>,
    /// Per panel and which of its 16-column halves are needed (`3·p + mask − 1`:
    /// first half, second half, both), the block's rows whose re-check needs them.
    prow: Vec<Vec<u16>>,
    /// Per row, the best float32 score so far, its centroid and packed column.
    best_v: Vec<f32>,
    best_j: Vec<i32>,
    best_q: Vec<usize>,
    /// 12 gathered rows (contiguous) and their 12 × 32 float32 scores.
    tmp: Vec<f32>,
    vout: Vec<f32>,
}

/// f32 → bf16, round to nearest even, denormals flushed to (signed) zero as
/// VCVTNE2PS2BF16 does. Finite inputs of the validated range never overflow.
fn to_bf16(v: f32) -> u16 {
    if v.is_nan() {
        return 0x7fc0;
    }
    let bits = v.to_bits();
    if v.abs() < f32::MIN_POSITIVE {
        return (bits >> 16) as u16 & 0x8000;
    }
    let lsb = (bits >> 16) & 1;
    (bits.wrapping_add(0x7fff + lsb) >> 16) as u16
}

/// bf16 → f32 (exact).
#[inline(always)]
fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `(||v||², ||bf16(v) − v||²)` in f64: 8 interleaved partial sums (a fixed order,
/// and it vectorises; one serial f64 chain cost ~4 cycles a feature, a quarter of
/// the bf16 tile's time per row at d = 512, k = 1000 where bf16 runs at 2× FMA).
#[inline(always)]
fn norm_and_residual(v: &[f32], bf: &[u16]) -> (f64, f64) {
    const L: usize = 8;
    let (mut n2, mut r2) = ([0f64; L], [0f64; L]);
    let (vc, hc) = (v.chunks_exact(L), bf.chunks_exact(L));
    let (vr, hr) = (vc.remainder(), hc.remainder());
    for (vs, hs) in vc.zip(hc) {
        for l in 0..L {
            let x = vs[l] as f64;
            let r = from_bf16(hs[l]) as f64 - x;
            n2[l] += x * x;
            r2[l] += r * r;
        }
    }
    for (l, (&x, &h)) in vr.iter().zip(hr).enumerate() {
        let x = x as f64;
        let r = from_bf16(h) as f64 - x;
        n2[l] += x * x;
        r2[l] += r * r;
    }
    (n2.iter().sum(), r2.iter().sum())
}

/// `γ_n = n·u / (1 − n·u)` for f32.
fn gamma(n: usize) -> f64 {
    let nu = n as f64 * U32;
    nu / (1.0 - nu).max(0.5)
}

/// An f64 magnitude rounded up to f32 (so a bound computed from it stays a bound).
fn up(v: f64) -> f32 {
    let f = v as f32;
    if (f as f64) < v {
        f.next_up()
    } else {
        f
    }
}

impl<'a> PackedBf16<'a> {
    /// Convert and pack `k × d` centroids for this process's engine
    /// ([`simd::bf16_pass`]). Checks sizes and that the bf16 pass may run here;
    /// never panics on input.
    pub fn new(c: &'a [f32], k: usize, d: usize) -> KernelResult<Self> {
        Self::new_for(c, k, d, simd::bf16_pass())
    }

    /// [`PackedBf16::new`] for a given engine (`None`: the process's, which must
    /// exist); an error where that engine may not run here.
    pub fn new_for(
        c: &'a [f32],
        k: usize,
        d: usize,
        pass: Option<FirstPass>,
    ) -> KernelResult<Self> {
        if k == 0 {
            return Err(invalid!("n_clusters={k} must be >= 1"));
        }
        if d == 0 {
            return Err(invalid!("n_features={d} must be >= 1"));
        }
        if k > i32::MAX as usize / 2 {
            return Err(invalid!("n_clusters={k} exceeds {}", i32::MAX / 2));
        }
        if c.len() != k * d {
            return Err(invalid!("centroids buffer does not match k={k}, d={d}"));
        }
        simd::checked()?;
        let pass = match pass.or_else(simd::bf16_pass) {
            Some(p) if simd::pass_allowed(p) => p,
            Some(FirstPass::Amx) => {
                return Err(invalid!(
                    "the AMX first pass needs AMX-BF16 and AMX-TILE with the OS's tile \
                     permission ({}), and AVX512_BF16",
                    simd::amx_status()
                        .err()
                        .unwrap_or("ECOS_FAST_SIMD caps the path")
                ))
            }
            _ => {
                return Err(invalid!(
                    "precision=\"bf16\" needs a CPU with AVX-512F and AVX512_BF16 (this one \
                     lacks them, or {}={:?} caps the path); use precision=\"auto\" or \"float32\"",
                    simd::ENV_VAR,
                    std::env::var(simd::ENV_VAR).unwrap_or_default()
                ))
            }
        };
        let mu = centroid_shift(c, k, d);
        let pairs = d.div_ceil(2);
        let ppad = pairs.div_ceil(AMX_KP) * AMX_KP;
        let row_stride = (2 * pairs).div_ceil(32) * 32;
        debug_assert_eq!(row_stride / 2, ppad);
        let mut panels = Vec::new();
        let mut j0 = 0;
        while j0 < k {
            let rest = k - j0;
            let width = if rest >= NR || rest > TAIL_NR {
                NR
            } else {
                TAIL_NR
            };
            panels.push(Panel { j0, width });
            j0 += width;
        }
        let padded = j0;
        // The bound's constants (module doc): γ for the bf16 pass (`vdpbf16ps`: 2
        // roundings per pair step at most; AMX: any order and any faithful rounding
        // of its `ops` additions, so γ at twice the unit roundoff) and the float32
        // pass (one per feature), the score and bound roundings (8.1 u), and the
        // absolute terms for flushed denormals (AMX flushes after each of its ops).
        let (gamma_bf, flushes) = match pass {
            FirstPass::Vdpbf16ps => (gamma(2 * pairs + 2), 4 * pairs),
            FirstPass::Amx => {
                let ops = 2 * ppad + 2 * (ppad / AMX_KP) + 2;
                (gamma(2 * ops), 2 * ops)
            }
        };
        let kc = 2.0 * gamma_bf + 2.0 * gamma(d) + 8.1 * U32;
        let sq = (2.0 * pairs as f64).sqrt();
        let inflate = 1.0 + 1.0 / 1024.0;
        // padded (a multiple of 16) × ppad u32, in cache lines.
        let mut b_lines = vec![Line::default(); padded * ppad / 16];
        let b = as_u32_mut(&mut b_lines);
        let mut cn = vec![f32::INFINITY; padded];
        let (mut pe, mut qe, mut re) = (vec![0f32; padded], vec![0f32; padded], vec![0f32; padded]);
        let order = panel_order(c, k, d);
        let mut bf32 = vec![0f32; padded * d];
        let mut perm = vec![i32::MAX; padded];
        let mut shifted = vec![0f32; d];
        for panel in &panels {
            let w = panel.width;
            let block = &mut b[panel.j0 * ppad..(panel.j0 + w) * ppad];
            let block32 = &mut bf32[panel.j0 * d..(panel.j0 + w) * d];
            for lane in 0..w.min(k - panel.j0) {
                let q = panel.j0 + lane;
                let j = order[q];
                perm[q] = j as i32;
                let row = &c[j * d..(j + 1) * d];
                for (f, ((o, &v), &m)) in shifted.iter_mut().zip(row).zip(&mu).enumerate() {
                    *o = v - m;
                    block32[f * w + lane] = v - m;
                }
                let (mut nc2, mut ndc2) = (0f64, 0f64);
                for p in 0..pairs {
                    let lo = shifted[2 * p];
                    let hi = if 2 * p + 1 < d {
                        shifted[2 * p + 1]
                    } else {
                        0.0
                    };
                    let (bl, bh) = (to_bf16(lo), to_bf16(hi));
                    block[p * w + lane] = bl as u32 | (bh as u32) << 16;
                    for (v, h) in [(lo, bl), (hi, bh)] {
                        let r = from_bf16(h) as f64 - v as f64;
                        nc2 += (v as f64) * (v as f64);
                        ndc2 += r * r;
                    }
                }
                let (nc, ndc) = (nc2.sqrt(), ndc2.sqrt());
                let cnj = shifted_sq_norm(row, &mu);
                let j = q;
                cn[j] = cnj;
                pe[j] = up(inflate * (2.0 * ndc + kc * (nc + ndc) + TINY * sq));
                qe[j] = up(inflate * ((2.0 + kc) * (nc + ndc) + TINY * sq));
                re[j] = up(inflate
                    * (4.0 * U32 * cnj as f64
                        + TINY * sq * (nc + ndc)
                        + TINY * (flushes + d + 4) as f64));
            }
        }
        Ok(PackedBf16 {
            d,
            k,
            pass,
            pairs,
            ppad,
            row_stride,
            centroids: c,
            panels,
            b: b_lines,
            cn,
            pe,
            qe,
            re,
            bf32,
            perm,
            mu,
        })
    }

    /// Assign the `m` rows of `x` (`m × d`, `m ≤ ROW_BLOCK`).
    pub fn block(
        &self,
        x: &[f32],
        s: &mut ScratchBf16,
        labels: &mut [i64],
        dists: &mut [f32],
    ) -> RecheckStats {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `new_for` checked `pass_allowed(self.pass)` (AVX-512F and
            // AVX512_BF16 detected at run time; for AMX also `amx_usable`).
            unsafe {
                match self.pass {
                    FirstPass::Vdpbf16ps => x86::block(self, x, s, labels, dists),
                    FirstPass::Amx => x86::block_amx(self, x, s, labels, dists),
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (x, s, labels, dists);
            unreachable!("PackedBf16::new refuses CPUs without AVX512_BF16")
        }
    }

    /// The block driver, inlined into the `#[target_feature]` wrapper (which passes
    /// its micro-kernels and row conversion).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn block_impl(
        &self,
        x: &[f32],
        s: &mut ScratchBf16,
        labels: &mut [i64],
        dists: &mut [f32],
        tile: TileFn,
        tile_narrow: TileFn,
        mr: usize,
        convert: ConvertFn,
    ) -> RecheckStats {
        let (d, k, pairs, stride) = (self.d, self.k, self.pairs, self.row_stride);
        let ppad = self.ppad;
        let m = labels.len();
        debug_assert!(m <= ROW_BLOCK && x.len() == m * d && dists.len() == m);
        debug_assert!(ROW_BLOCK.is_multiple_of(mr));
        let mpad = m.div_ceil(mr) * mr;
        // Candidate lists of at most LIST_CAP per row (a row that would pass it is
        // re-checked against every panel), so a worker's lists stay ≤ 3 MiB.
        let kpad = self.cn.len().min(LIST_CAP);
        if s.a.len() < mpad * d {
            s.a.resize(mpad * d, 0.0);
        }
        let lda = stride / 2;
        if s.abf.len() * 16 < mpad * lda {
            // lda (= ppad) is a multiple of 16.
            s.abf.resize(mpad * lda / 16, Line::default());
        }
        if s.cand_j.len() < mpad * kpad {
            s.cand_j.resize(mpad * kpad, 0);
            s.cand_lo.resize(mpad * kpad, 0.0);
        }
        s.nx.clear();
        s.nx.resize(mpad, 0.0);
        s.ndx.clear();
        s.ndx.resize(mpad, 0.0);
        s.thr.clear();
        s.thr.resize(mpad, f32::INFINITY);
        s.cand_n.clear();
        s.cand_n.resize(mpad, 0);
        // Shifted rows (the same f32 values the float32 kernel uses), their bf16
        // copies and the two norms of the bound. Padding rows are 0.
        for (dst, src) in s.a.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
            for ((o, &v), &mu) in dst.iter_mut().zip(src).zip(&self.mu) {
                *o = v - mu;
            }
        }
        s.a[m * d..mpad * d].fill(0.0);
        for i in 0..mpad {
            let row = &s.a[i * d..(i + 1) * d];
            let out = &mut as_u32_mut(&mut s.abf)[i * lda..(i + 1) * lda];
            // SAFETY: `row` has d values, `out` room for row_stride ≥ d bf16 (a
            // multiple of 32); u32 is aligned for u16.
            unsafe { convert(row.as_ptr(), d, out.as_mut_ptr() as *mut u16) };
            // SAFETY: the u32 buffer holds 2·lda ≥ d bf16, and u32 is aligned for u16.
            let bf = unsafe { std::slice::from_raw_parts(out.as_ptr() as *const u16, d) };
            let (n2, r2) = norm_and_residual(row, bf);
            s.nx[i] = up(n2.sqrt());
            s.ndx[i] = up(r2.sqrt());
        }
        for panel in &self.panels {
            let w = panel.width;
            let f = if w == NR { tile } else { tile_narrow };
            let bp = &as_u32(&self.b)[panel.j0 * ppad..(panel.j0 + w) * ppad];
            let cols = panel.j0..panel.j0 + w;
            for t in 0..mpad / mr {
                let r0 = t * mr;
                // SAFETY: per `TileFn`'s contract: `mr` converted rows of `ppad`
                // u32 at `stride/2` apart, a `ppad × w` panel, `w` coefficients,
                // `mr` norms/thresholds/counts, and `mr` candidate lists of `kpad` (the
                // tile never stores past one: it marks the row overflowed instead)
                // (a row appends each of its k centroids at most once).
                unsafe {
                    f(
                        as_u32(&s.abf)[r0 * lda..].as_ptr(),
                        lda,
                        bp.as_ptr(),
                        pairs,
                        Coeffs {
                            cn: self.cn[cols.clone()].as_ptr(),
                            pe: self.pe[cols.clone()].as_ptr(),
                            qe: self.qe[cols.clone()].as_ptr(),
                            re: self.re[cols.clone()].as_ptr(),
                        },
                        panel.j0 as i32,
                        Rows {
                            nx: s.nx[r0..].as_ptr(),
                            ndx: s.ndx[r0..].as_ptr(),
                            thr: s.thr[r0..].as_mut_ptr(),
                            cand_n: s.cand_n[r0..].as_mut_ptr(),
                            cand_j: s.cand_j[r0 * kpad..].as_mut_ptr(),
                            cand_lo: s.cand_lo[r0 * kpad..].as_mut_ptr(),
                            list_len: kpad,
                        },
                    )
                };
            }
        }
        let mut stats = RecheckStats {
            rows: m as u64,
            ..RecheckStats::default()
        };
        // Each row's result: a single candidate's column, or the panel halves to
        // re-check (rows listed per panel and halves, so each is read once per block).
        let np = self.panels.len();
        if s.prow.len() < 3 * np {
            s.prow.resize_with(3 * np, Vec::new);
        }
        for l in &mut s.prow[..3 * np] {
            l.clear();
        }
        s.best_v.clear();
        s.best_v.resize(m, f32::INFINITY);
        s.best_j.clear();
        s.best_j.resize(m, i32::MAX);
        s.best_q.clear();
        s.best_q.resize(m, usize::MAX);
        for i in 0..m {
            let t = s.thr[i];
            let n = (s.cand_n[i] as usize).min(kpad);
            let js = &s.cand_j[i * kpad..i * kpad + n];
            let lo = &s.cand_lo[i * kpad..i * kpad + n];
            // The candidates that pass the final threshold (columns ascend, so equal
            // panels are adjacent); per panel, the mask of halves they fall in.
            let (mut kept, mut first, mut panels, mut halves) = (0u64, 0usize, 0u64, 0u64);
            let (mut last_p, mut mask) = (usize::MAX, 0usize);
            if t.is_finite() && s.cand_n[i] != OVERFLOWED {
                for (&q, &l) in js.iter().zip(lo) {
                    if l <= t && self.perm[q as usize] != i32::MAX {
                        if kept == 0 {
                            first = q as usize;
                        }
                        kept += 1;
                        let (p, half) = (q as usize / NR, 1usize << ((q as usize / 16) & 1));
                        if p != last_p {
                            if mask != 0 {
                                s.prow[3 * last_p + mask - 1].push(i as u16);
                                halves += mask.count_ones() as u64;
                            }
                            (last_p, mask, panels) = (p, half, panels + 1);
                        } else {
                            mask |= half;
                        }
                    }
                }
            }
            if kept == 1 {
                s.best_q[i] = first;
                continue;
            }
            if kept == 0 {
                // Overflowed bounds or list: every centroid, as the float32 kernel would.
                for (p, panel) in self.panels.iter().enumerate() {
                    let full = if panel.width == NR { 3 } else { 1 };
                    s.prow[3 * p + full - 1].push(i as u16);
                    stats.halves_rechecked += (panel.width / 16) as u64;
                }
                stats.rows_full += 1;
                stats.panels_rechecked += np as u64;
            } else {
                s.prow[3 * last_p + mask - 1].push(i as u16);
                halves += mask.count_ones() as u64;
                stats.rows_rechecked += 1;
                stats.centroids_rechecked += kept;
                stats.panels_rechecked += panels;
                stats.halves_rechecked += halves;
            }
        }
        // The float32 re-check, ≤ 12 gathered rows × one panel (or one half of it) at a
        // time, with the float32 tile's own arithmetic (bit for bit its scores: each
        // lane's FMAs run in feature order whatever the width), merged per row with
        // ties to the lowest centroid index.
        if s.tmp.len() < MR * d {
            s.tmp.resize(MR * d, 0.0);
        }
        s.vout.resize(MR * NR, 0.0);
        for (p, panel) in self.panels.iter().enumerate() {
            let w = panel.width;
            for (sel, &(h0, nh)) in [(0usize, 1usize), (1, 1), (0, 2)].iter().enumerate() {
                let rows_here = &s.prow[3 * p + sel];
                if rows_here.is_empty() {
                    continue;
                }
                let c0 = panel.j0 + 16 * h0;
                let cw = 16 * nh;
                debug_assert!(h0 * 16 + cw <= w);
                // The f32 panel is d × w, feature-major; this half starts 16·h0 in.
                let bp = &self.bf32[panel.j0 * d + 16 * h0..(panel.j0 + w) * d];
                let cnp = &self.cn[c0..c0 + cw];
                for chunk in rows_here.chunks(MR) {
                    for (r, &i) in chunk.iter().enumerate() {
                        let i = i as usize;
                        s.tmp[r * d..(r + 1) * d].copy_from_slice(&s.a[i * d..(i + 1) * d]);
                    }
                    // SAFETY: tmp holds 12 rows of d (rows past the chunk are stale
                    // but in bounds, and ignored); bp holds (d − 1)·w + cw values from
                    // its start (the half's lanes of each feature, w apart); cnp cw;
                    // vout 12 × 32.
                    unsafe {
                        f32_tile(
                            s.tmp.as_ptr(),
                            chunk.len(),
                            d,
                            bp.as_ptr(),
                            w,
                            nh,
                            cnp.as_ptr(),
                            s.vout.as_mut_ptr(),
                        )
                    };
                    for (r, &i) in chunk.iter().enumerate() {
                        let i = i as usize;
                        for l in 0..cw {
                            let j = self.perm[c0 + l];
                            let v = s.vout[r * NR + l];
                            // As the float32 kernel: strictly smaller, or a finite tie
                            // at a lower index (an all-inf/NaN row keeps label 0).
                            let tie = v == s.best_v[i] && v < f32::INFINITY && j < s.best_j[i];
                            if j != i32::MAX && (v < s.best_v[i] || tie) {
                                (s.best_v[i], s.best_j[i], s.best_q[i]) = (v, j, c0 + l);
                            }
                        }
                    }
                }
            }
        }
        for i in 0..m {
            let j = match s.best_q[i] {
                // No finite score anywhere (overflow): the float32 kernel's label is 0.
                usize::MAX => 0,
                q => (self.perm[q] as usize).min(k - 1),
            };
            labels[i] = j as i64;
            dists[i] = sq_dist_exact(&x[i * d..(i + 1) * d], &self.centroids[j * d..(j + 1) * d]);
        }
        stats
    }
}

/// The float32 tile's scores for the first `rows` (≤ 12) of 12 contiguous rows
/// (`d` apart) × `16·nh` columns of a panel (feature `f`'s lanes at `b + f·ldb`),
/// into `out` (rows of 32; rows past `rows`, up to the next multiple of 4, are
/// computed from whatever `a` holds there). On benches' mixture a 192-row block's
/// re-check lists hold a few rows each (~380 row-halves over at most 94 lists), so a 4- or
/// 8-row tile saves most of a 12-row one.
///
/// # Safety
/// `a` has 12·d values, `b` (d − 1)·ldb + 16·nh, `cn` 16·nh, `out` 12·32; `nh` is
/// 1 or 2; `rows` ≤ 12; AVX-512F (checked by `PackedBf16::new`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn f32_tile(
    a: *const f32,
    rows: usize,
    d: usize,
    b: *const f32,
    ldb: usize,
    nh: usize,
    cn: *const f32,
    out: *mut f32,
) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: per this function's contract.
        unsafe {
            match (rows.div_ceil(4), nh) {
                (0 | 1, 2) => x86::f32_tile::<4, 2>(a, d, b, ldb, cn, out),
                (0 | 1, _) => x86::f32_tile::<4, 1>(a, d, b, ldb, cn, out),
                (2, 2) => x86::f32_tile::<8, 2>(a, d, b, ldb, cn, out),
                (2, _) => x86::f32_tile::<8, 1>(a, d, b, ldb, cn, out),
                (_, 2) => x86::f32_tile::<MR, 2>(a, d, b, ldb, cn, out),
                _ => x86::f32_tile::<MR, 1>(a, d, b, ldb, cn, out),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (a, rows, d, b, ldb, nh, cn, out);
        unreachable!("PackedBf16::new refuses CPUs without AVX512_BF16")
    }
}

/// A panel's per-column inputs to the epilogue (`w` each).
struct Coeffs {
    cn: *const f32,
    pe: *const f32,
    qe: *const f32,
    re: *const f32,
}

/// A tile's 12 rows: norms, running thresholds, and candidate lists
/// (`list_len` apart, counts in `cand_n`).
struct Rows {
    nx: *const f32,
    ndx: *const f32,
    thr: *mut f32,
    cand_n: *mut u32,
    cand_j: *mut i32,
    cand_lo: *mut f32,
    list_len: usize,
}

/// The bf16 micro-kernel: `mr` rows (12 for `vdpbf16ps`, 32 for AMX) × `W`
/// centroids over `pairs` feature pairs, then the epilogue (scores, bounds,
/// thresholds, candidates). Arguments: the first row's converted pairs and the row
/// stride (in u32, `ppad`: zeros past `pairs`), the panel (`ppad` rows), `pairs`,
/// the panel's coefficients, its first centroid index, and the rows' state.
type TileFn = unsafe fn(*const u32, usize, *const u32, usize, Coeffs, i32, Rows);

/// Convert `d` f32 to bf16 into a buffer of `d` rounded up to 32 (zeros after `d`).
type ConvertFn = unsafe fn(*const f32, usize, *mut u16);

/// [`assign_ctl`] without a control (never cancelled).
#[allow(clippy::too_many_arguments)]
pub fn assign(
    x: &[f32],
    n: usize,
    d: usize,
    c: &[f32],
    k: usize,
    dc: usize,
    labels: &mut [i64],
    dists: &mut [f32],
) -> KernelResult<RecheckStats> {
    assign_ctl(x, n, d, c, k, dc, labels, dists, &super::control::NEVER)
}

/// Labels and squared distances of the nearest centroids through the bf16 first
/// pass: the float32 AVX-512 kernel's results, bit for bit, and what was
/// re-checked. An error where the bf16 pass cannot run (no AVX512_BF16, or
/// `ECOS_FAST_SIMD` caps it). Stops at the next row block once `ctl` is cancelled.
#[allow(clippy::too_many_arguments)]
pub fn assign_ctl(
    x: &[f32],
    n: usize,
    d: usize,
    c: &[f32],
    k: usize,
    dc: usize,
    labels: &mut [i64],
    dists: &mut [f32],
    ctl: &Control,
) -> KernelResult<RecheckStats> {
    if d != dc {
        return Err(invalid!(
            "features have n_features={d} but centroids have n_features={dc}"
        ));
    }
    if x.len() != n * d || labels.len() != n || dists.len() != n {
        return Err(invalid!("buffer sizes do not match n={n}, d={d}, k={k}"));
    }
    assign_ctl_for(x, n, d, c, k, dc, labels, dists, None, ctl)
}

/// [`assign_ctl`] with a given engine for the first pass (`None`: this process's,
/// [`simd::bf16_pass`]); an error where that engine may not run here.
#[allow(clippy::too_many_arguments)]
pub fn assign_ctl_for(
    x: &[f32],
    n: usize,
    d: usize,
    c: &[f32],
    k: usize,
    dc: usize,
    labels: &mut [i64],
    dists: &mut [f32],
    pass: Option<FirstPass>,
    ctl: &Control,
) -> KernelResult<RecheckStats> {
    if d != dc {
        return Err(invalid!(
            "features have n_features={d} but centroids have n_features={dc}"
        ));
    }
    if x.len() != n * d || labels.len() != n || dists.len() != n {
        return Err(invalid!("buffer sizes do not match n={n}, d={d}, k={k}"));
    }
    let packed = PackedBf16::new_for(c, k, d, pass)?;
    let stats = assign_packed(x, &packed, labels, dists, ctl);
    ctl.check()?;
    Ok(stats)
}

/// The bf16 pass over `x` with centroids already packed (sizes already checked).
fn assign_packed(
    x: &[f32],
    packed: &PackedBf16<'_>,
    labels: &mut [i64],
    dists: &mut [f32],
    ctl: &Control,
) -> RecheckStats {
    labels
        .par_chunks_mut(ROW_BLOCK)
        .zip(dists.par_chunks_mut(ROW_BLOCK))
        .zip(x.par_chunks(ROW_BLOCK * packed.d))
        .map_init(ScratchBf16::default, |s, ((lab, dis), xb)| {
            if ctl.is_cancelled() {
                RecheckStats::default()
            } else {
                packed.block(xb, s, lab, dis)
            }
        })
        .reduce(RecheckStats::default, RecheckStats::add)
}

/// Rows the automatic choice assigns with the bf16 pass before deciding whether it
/// pays on this data (a multiple of [`ROW_BLOCK`]).
pub const PILOT_ROWS: usize = 8 * ROW_BLOCK;

/// Whether the rest of a call should stay on the bf16 pass, from the pilot's
/// re-check counts, `k`, and the measured `gain` (bf16 ÷ float32 multiply-add rate).
///
/// A cost model per row, in cycles per feature: the float32 tile does `k/32` (two
/// 16-lane FMAs a cycle); the bf16 tile `k/(32·gain)`; a re-checked (row, half
/// panel) pair 0.55 (a twelfth of a 12 × 16 float32 tile, and the row's
/// gathering); the row conversion, norms and epilogue about `0.5`. bf16 stays if
/// that is at most 0.8 × float32: `gain` 2 at k = 1000 allows ~16 halves a row.
pub fn pilot_pays(stats: &RecheckStats, k: usize, gain: f64) -> bool {
    if stats.rows == 0 || gain <= 0.0 {
        return false;
    }
    let rows = stats.rows as f64;
    let k = k as f64;
    // A re-checked (row, half panel) pair is a twelfth of a 12 × 16 float32 tile:
    // half a cycle per feature, plus ~10 % to gather the rows.
    let halves = stats.halves_rechecked as f64 / rows;
    let f32_cost = k / 32.0;
    let bf16_cost = k / (32.0 * gain) + 0.55 * halves + 0.5;
    bf16_cost <= 0.8 * f32_cost
}

/// Which pass the rows of one call took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Taken {
    Float32,
    Bf16,
    /// The automatic choice's pilot ran in bf16, the rest in float32.
    PilotThenFloat32,
}

/// The assignment with the pass `precision` asks for: the results are the same
/// either way (the bf16 pass reproduces the float32 kernel). `Auto` takes bf16 only
/// where [`simd::assign_bf16_auto`] says it pays on this core, and then only past a
/// pilot of [`PILOT_ROWS`] rows if [`pilot_pays`] on this data
/// (`ECOS_FAST_SIMD=avx512bf16` skips the pilot).
#[allow(clippy::too_many_arguments)]
pub fn assign_auto_ctl(
    x: &[f32],
    n: usize,
    d: usize,
    c: &[f32],
    k: usize,
    dc: usize,
    labels: &mut [i64],
    dists: &mut [f32],
    precision: Precision,
    ctl: &Control,
) -> KernelResult<()> {
    let gain = match precision {
        Precision::Float32 => None,
        Precision::Bf16 => Some(f64::INFINITY),
        Precision::Auto if d == dc && simd::assign_bf16_auto(d, k) => {
            let pass = simd::bf16_pass().unwrap_or(FirstPass::Vdpbf16ps);
            Some(
                simd::bf16_calibration()
                    .filter(|_| !simd::bf16_forced())
                    .map_or(f64::INFINITY, |cal| cal.gain(pass)),
            )
        }
        Precision::Auto => None,
    };
    assign_with_gain(x, n, d, c, k, dc, labels, dists, gain, ctl).map(|_| ())
}

/// [`assign_auto_ctl`] with the decision made: `None` float32; `Some(inf)` bf16
/// throughout; `Some(gain)` bf16 for the pilot, then [`pilot_pays`] decides.
#[allow(clippy::too_many_arguments)]
pub fn assign_with_gain(
    x: &[f32],
    n: usize,
    d: usize,
    c: &[f32],
    k: usize,
    dc: usize,
    labels: &mut [i64],
    dists: &mut [f32],
    gain: Option<f64>,
    ctl: &Control,
) -> KernelResult<Taken> {
    let Some(gain) = gain else {
        f32pass::assign_ctl(x, n, d, c, k, dc, labels, dists, ctl)?;
        return Ok(Taken::Float32);
    };
    if gain.is_infinite() || n <= PILOT_ROWS {
        assign_ctl(x, n, d, c, k, dc, labels, dists, ctl)?;
        return Ok(Taken::Bf16);
    }
    if d != dc || x.len() != n * d || labels.len() != n || dists.len() != n {
        // The float32 kernel reports the mismatch.
        f32pass::assign_ctl(x, n, d, c, k, dc, labels, dists, ctl)?;
        return Ok(Taken::Float32);
    }
    let packed = PackedBf16::new(c, k, d)?;
    let (lp, lr) = labels.split_at_mut(PILOT_ROWS);
    let (dp, dr) = dists.split_at_mut(PILOT_ROWS);
    let (xp, xr) = x.split_at(PILOT_ROWS * d);
    let stats = assign_packed(xp, &packed, lp, dp, ctl);
    ctl.check()?;
    if pilot_pays(&stats, k, gain) {
        assign_packed(xr, &packed, lr, dr, ctl);
        ctl.check()?;
        Ok(Taken::Bf16)
    } else {
        drop(packed);
        f32pass::assign_ctl(xr, n - PILOT_ROWS, d, c, k, dc, lr, dr, ctl)?;
        Ok(Taken::PilotThenFloat32)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{
        Coeffs, PackedBf16, RecheckStats, Rows, ScratchBf16, AMX_KP, AMX_MR, MR, NR, OVERFLOWED,
    };
    use crate::kernels::amx;

    /// [`PackedBf16::block_impl`] compiled for AVX-512F + AVX512_BF16.
    ///
    /// # Safety
    /// The CPU supports AVX-512F and AVX512_BF16.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16,fma")]
    pub unsafe fn block(
        p: &PackedBf16<'_>,
        x: &[f32],
        s: &mut ScratchBf16,
        labels: &mut [i64],
        dists: &mut [f32],
    ) -> RecheckStats {
        p.block_impl(x, s, labels, dists, tile::<2>, tile::<1>, MR, convert)
    }

    /// [`PackedBf16::block_impl`] with the AMX first pass: the tiles are configured
    /// for this block on this thread (a rayon task may run on any worker) and
    /// released after it.
    ///
    /// # Safety
    /// The CPU supports AVX-512F and AVX512_BF16, and AMX is usable in this process
    /// (`simd::amx_usable`).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16,fma")]
    pub unsafe fn block_amx(
        p: &PackedBf16<'_>,
        x: &[f32],
        s: &mut ScratchBf16,
        labels: &mut [i64],
        dists: &mut [f32],
    ) -> RecheckStats {
        // SAFETY: AMX usable (contract); configured before any tile instruction.
        unsafe { amx::configure() };
        let st = p.block_impl(
            x,
            s,
            labels,
            dists,
            amx_tile::<2>,
            amx_tile::<1>,
            AMX_MR,
            convert,
        );
        // SAFETY: as above.
        unsafe { amx::release() };
        st
    }

    /// A 16-column-aligned f32 buffer for four 16 × 16 C tiles (32 rows × 32).
    #[repr(C, align(64))]
    struct CTiles([f32; AMX_MR * NR]);

    /// The AMX bf16 tile: 32 rows × 16·NH centroids, accumulated in NH·2 C tiles
    /// (tmm0/tmm1: rows 0–15, tmm2/tmm3: rows 16–31; A in tmm4/tmm5, B in
    /// tmm6/tmm7), one K step of 16 feature pairs per `tdpbf16ps`; the C tiles are
    /// stored to a stack buffer and the same epilogue as [`tile`] runs on each row.
    ///
    /// # Safety
    /// As [`tile`] with 32 rows, plus: `lda` and the panel's rows are ≥ `pairs`
    /// rounded up to 16 (zeros past `pairs`), AMX usable and configured on this
    /// thread by [`amx::configure`].
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16,fma")]
    pub unsafe fn amx_tile<const NH: usize>(
        a: *const u32,
        lda: usize,
        b: *const u32,
        pairs: usize,
        co: Coeffs,
        j0: i32,
        rows: Rows,
    ) {
        let w = 16 * NH;
        let steps = pairs.div_ceil(AMX_KP);
        let (sa, sb) = (lda * 4, w * 4);
        let mut c = CTiles([0.0; AMX_MR * NR]);
        // SAFETY (whole body): each A load reads 16 rows of 64 bytes at `lda` u32
        // apart within the 32 converted rows (`lda` ≥ 16·steps), each B load 16
        // panel rows of 64 bytes (the panel has ≥ 16·steps rows of `w` u32); the
        // stores write within `c`; the epilogue's pointers per [`tile`]'s contract.
        unsafe {
            amx::tilezero::<0>();
            amx::tilezero::<2>();
            if NH == 2 {
                amx::tilezero::<1>();
                amx::tilezero::<3>();
            }
            for st in 0..steps {
                let ap = a.add(st * AMX_KP);
                let bp = b.add(st * AMX_KP * w);
                amx::tileload::<4>(ap, sa);
                amx::tileload::<6>(bp, sb);
                amx::tileload::<5>(ap.add(16 * lda), sa);
                amx::tdpbf16ps::<0, 4, 6>();
                amx::tdpbf16ps::<2, 5, 6>();
                if NH == 2 {
                    amx::tileload::<7>(bp.add(16), sb);
                    amx::tdpbf16ps::<1, 4, 7>();
                    amx::tdpbf16ps::<3, 5, 7>();
                }
            }
            let cp = c.0.as_mut_ptr();
            amx::tilestore::<0>(cp, NR * 4);
            amx::tilestore::<2>(cp.add(16 * NR), NR * 4);
            if NH == 2 {
                amx::tilestore::<1>(cp.add(16), NR * 4);
                amx::tilestore::<3>(cp.add(16 * NR + 16), NR * 4);
            }
            for r in 0..AMX_MR {
                let mut acc = [_mm512_setzero_ps(); NH];
                for (h, v) in acc.iter_mut().enumerate() {
                    *v = _mm512_load_ps(cp.add(r * NR + h * 16));
                }
                epilogue::<NH>(&acc, r, &co, j0, &rows);
            }
        }
    }

    /// The float32 re-check tile: R rows × 16·NH columns with exactly the float32
    /// AVX-512 tile's arithmetic (`assign.rs`: per lane, FMAs in feature order from
    /// 0, then `cn − 2·dot` in one `vfnmadd`), so its scores bit for bit; they are
    /// stored, not folded into minima (the columns are not in centroid order).
    ///
    /// # Safety
    /// The CPU supports AVX-512F; `a` has R rows of `d`, `b` `(d − 1)·ldb + 16·NH`
    /// (feature `f`'s 16·NH lanes at `f·ldb`), `cn` `16·NH`, `out` R rows of 32.
    #[target_feature(enable = "avx512f,fma")]
    pub unsafe fn f32_tile<const R: usize, const NH: usize>(
        a: *const f32,
        d: usize,
        b: *const f32,
        ldb: usize,
        cn: *const f32,
        out: *mut f32,
    ) {
        let mut acc = [[_mm512_setzero_ps(); NH]; R];
        // SAFETY (whole body): offsets stay within the contract's lengths.
        unsafe {
            for f in 0..d {
                let mut bv = [_mm512_setzero_ps(); NH];
                for (h, v) in bv.iter_mut().enumerate() {
                    *v = _mm512_loadu_ps(b.add(f * ldb + h * 16));
                }
                for (r, accr) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*a.add(r * d + f));
                    for h in 0..NH {
                        accr[h] = _mm512_fmadd_ps(av, bv[h], accr[h]);
                    }
                }
            }
            let two = _mm512_set1_ps(2.0);
            for (r, accr) in acc.iter().enumerate() {
                for (h, &dot) in accr.iter().enumerate() {
                    let v = _mm512_fnmadd_ps(dot, two, _mm512_loadu_ps(cn.add(h * 16)));
                    _mm512_storeu_ps(out.add(r * NR + h * 16), v);
                }
            }
        }
    }

    /// `d` f32 at `src` to bf16 at `dst` (rounded up to 32 values, zeros after `d`).
    ///
    /// # Safety
    /// The CPU supports AVX-512F and AVX512_BF16; `src` has `d` values, `dst` room
    /// for `d` rounded up to 32.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn convert(src: *const f32, d: usize, dst: *mut u16) {
        let mut f = 0;
        // SAFETY: masked loads read only the first `d` values; each store writes 32
        // bf16 within the rounded-up destination.
        unsafe {
            while f < d {
                let rest = d - f;
                let m0: __mmask16 = if rest >= 16 {
                    0xffff
                } else {
                    (1u16 << rest) - 1
                };
                let m1: __mmask16 = if rest >= 32 {
                    0xffff
                } else if rest > 16 {
                    (1u16 << (rest - 16)) - 1
                } else {
                    0
                };
                let lo = _mm512_maskz_loadu_ps(m0, src.add(f));
                let hi = _mm512_maskz_loadu_ps(m1, src.add(f + 16));
                let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_storeu_si512(dst.add(f) as *mut __m512i, v);
                f += 32;
            }
        }
    }

    /// The bf16 tile: 12 rows × 16·NH centroids (NH = 2: 24 zmm accumulators).
    ///
    /// # Safety
    /// The CPU supports AVX-512F and AVX512_BF16; `a` points to 12 rows of `pairs`
    /// u32 `lda` apart, `b` to `pairs·16·NH` u32, the coefficients to `16·NH` f32
    /// each, the rows' pointers to 12 entries each and the lists to 12 × `list_len`,
    /// with each count plus the centroids left in this row ≤ `list_len`.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16,fma")]
    pub unsafe fn tile<const NH: usize>(
        a: *const u32,
        lda: usize,
        b: *const u32,
        pairs: usize,
        co: Coeffs,
        j0: i32,
        rows: Rows,
    ) {
        let w = 16 * NH;
        debug_assert!(w <= NR);
        let mut acc = [[_mm512_setzero_ps(); NH]; MR];
        // SAFETY (whole body): offsets stay within the lengths in the contract;
        // unaligned loads/stores throughout; the transmutes reinterpret 512 bits.
        unsafe {
            for p in 0..pairs {
                let mut bv = [_mm512_setzero_si512(); NH];
                for (h, v) in bv.iter_mut().enumerate() {
                    *v = _mm512_loadu_si512(b.add(p * w + h * 16) as *const __m512i);
                }
                for (r, accr) in acc.iter_mut().enumerate() {
                    let av: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*a.add(r * lda + p) as i32));
                    for h in 0..NH {
                        let bh: __m512bh = std::mem::transmute(bv[h]);
                        accr[h] = _mm512_dpbf16_ps(accr[h], av, bh);
                    }
                }
            }
            for (r, accr) in acc.iter().enumerate() {
                epilogue::<NH>(accr, r, &co, j0, &rows);
            }
        }
    }

    /// The epilogue of one row `r` of a tile against 16·NH columns: scores
    /// `cn − 2·dot` (one rounding), the bounds `e = nx·P + ndx·Q + R`, the row's
    /// running threshold `min (s~ + e)`, and the columns with `s~ − e` at or below it
    /// appended to the row's list (or the row marked overflowed).
    ///
    /// # Safety
    /// As [`tile`]'s contract for row `r` and these coefficients.
    #[target_feature(enable = "avx512f,avx512bw,fma")]
    #[inline]
    unsafe fn epilogue<const NH: usize>(
        accr: &[__m512; NH],
        r: usize,
        co: &Coeffs,
        j0: i32,
        rows: &Rows,
    ) {
        // SAFETY (whole body): offsets stay within the lengths in the contract.
        unsafe {
            let two = _mm512_set1_ps(2.0);
            let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            let nx = _mm512_set1_ps(*rows.nx.add(r));
            let ndx = _mm512_set1_ps(*rows.ndx.add(r));
            let mut lo = [_mm512_setzero_ps(); NH];
            let mut hmin = _mm512_set1_ps(f32::INFINITY);
            for h in 0..NH {
                let off = h * 16;
                let sc = _mm512_fnmadd_ps(accr[h], two, _mm512_loadu_ps(co.cn.add(off)));
                let e = _mm512_fmadd_ps(
                    nx,
                    _mm512_loadu_ps(co.pe.add(off)),
                    _mm512_fmadd_ps(
                        ndx,
                        _mm512_loadu_ps(co.qe.add(off)),
                        _mm512_loadu_ps(co.re.add(off)),
                    ),
                );
                lo[h] = _mm512_sub_ps(sc, e);
                hmin = _mm512_min_ps(hmin, _mm512_add_ps(sc, e));
            }
            let rmin = _mm512_reduce_min_ps(hmin);
            let tp = rows.thr.add(r);
            // NaN never lowers the threshold (overflowed rows end up +inf).
            let t = if rmin < *tp { rmin } else { *tp };
            *tp = t;
            let tv = _mm512_set1_ps(t);
            let np = rows.cand_n.add(r);
            let list = r * rows.list_len;
            for (h, &l) in lo.iter().enumerate() {
                let m = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(l, tv);
                if m != 0 && *np != OVERFLOWED {
                    if *np as usize + m.count_ones() as usize > rows.list_len {
                        *np = OVERFLOWED;
                        continue;
                    }
                    let at = list + *np as usize;
                    let ids = _mm512_add_epi32(_mm512_set1_epi32(j0 + (h * 16) as i32), lanes);
                    _mm512_mask_compressstoreu_epi32(rows.cand_j.add(at), m, ids);
                    _mm512_mask_compressstoreu_ps(rows.cand_lo.add(at), m, l);
                    *np += m.count_ones();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testdata::lcg_values;

    /// Both engines where they may run, each checked against the float32 kernel;
    /// the stats of the last one run (the engines' bounds differ a little).
    fn both(x: &[f32], c: &[f32], n: usize, k: usize, d: usize) -> Option<RecheckStats> {
        let mut last = None;
        for pass in [FirstPass::Vdpbf16ps, FirstPass::Amx] {
            if !simd::pass_allowed(pass) {
                continue;
            }
            let (mut l32, mut d32) = (vec![0i64; n], vec![0f32; n]);
            f32pass::assign(x, n, d, c, k, d, &mut l32, &mut d32).unwrap();
            let (mut lb, mut db) = (vec![0i64; n], vec![0f32; n]);
            let ctl = &crate::kernels::control::NEVER;
            let st = assign_ctl_for(x, n, d, c, k, d, &mut lb, &mut db, Some(pass), ctl).unwrap();
            assert_eq!(
                lb, l32,
                "{pass:?}: labels differ from the float32 kernel (n={n}, k={k}, d={d})"
            );
            let same = db.iter().zip(&d32).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{pass:?}: distances differ from the float32 kernel");
            assert_eq!(st.rows, n as u64);
            last = Some(st);
        }
        last
    }

    #[test]
    fn both_engines_on_odd_shapes_and_huge_norms() {
        // n, k, d not multiples of 16/32 (AMX K and row tails), and values far out.
        for &(n, k, d, scale) in &[
            (33, 17, 31, 1.0f32),
            (47, 49, 33, 1.0),
            (200, 1000, 70, 1.0),
            (65, 40, 130, 1e6),
            (20, 3, 1, 1e-3),
        ] {
            let x: Vec<f32> = lcg_values(n as u64 + 7, n * d)
                .iter()
                .map(|v| v * scale)
                .collect();
            let c: Vec<f32> = lcg_values(k as u64 + 9, k * d)
                .iter()
                .map(|v| v * scale)
                .collect();
            both(&x, &c, n, k, d);
        }
    }

    #[test]
    fn the_amx_pass_is_chosen_where_usable() {
        if simd::bf16_allowed() && simd::amx_usable() && !simd::bf16_forced() {
            assert_eq!(simd::bf16_pass(), Some(FirstPass::Amx));
            let c = lcg_values(1, 64);
            assert_eq!(PackedBf16::new(&c, 8, 8).unwrap().pass, FirstPass::Amx);
        }
        if !simd::amx_usable() {
            let c = lcg_values(1, 64);
            assert!(PackedBf16::new_for(&c, 8, 8, Some(FirstPass::Amx)).is_err());
        }
    }

    #[test]
    fn bf16_round_trip_and_rounding() {
        assert_eq!(from_bf16(to_bf16(1.0)), 1.0);
        assert_eq!(from_bf16(to_bf16(-3.5)), -3.5);
        // 1 + 2^-8 is a tie between 1 and 1 + 2^-7: to even (1).
        assert_eq!(from_bf16(to_bf16(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(from_bf16(to_bf16(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert_eq!(from_bf16(to_bf16(1e-40)), 0.0);
        let v = 1.2345f32;
        assert!(((from_bf16(to_bf16(v)) - v) / v).abs() <= 1.0 / 256.0);
    }

    #[test]
    fn labels_and_distances_equal_the_float32_kernel() {
        for &(n, k, d) in &[
            (500, 45, 7),
            (300, 100, 64),
            (200, 33, 33),
            (97, 1, 5),
            (50, 17, 1),
        ] {
            let x = lcg_values(n as u64 * 31 + d as u64, n * d);
            let c = lcg_values(k as u64 * 17 + 3, k * d);
            both(&x, &c, n, k, d);
        }
    }

    #[test]
    fn near_duplicate_centroids_are_all_rechecked() {
        let (n, k, d) = (200, 40, 48);
        let x = lcg_values(5, n * d);
        let base = lcg_values(6, d);
        // 40 copies of one centroid, each nudged by a few ulps.
        let c: Vec<f32> = (0..k)
            .flat_map(|j| base.iter().map(move |&v| v * (1.0 + j as f32 * 1e-7)))
            .collect();
        if let Some(st) = both(&x, &c, n, k, d) {
            assert_eq!(st.rows_rechecked, n as u64);
        }
    }

    #[test]
    fn recheck_lists_of_every_length_use_a_tile_that_fits_and_match_float32() {
        // 8 far-apart pairs of near-duplicate centroids in one 16-column panel: every
        // row keeps both centroids of its pair, so the block's one re-check list holds
        // all n rows, and rows near different pairs have different labels (a row
        // scored by a tile too short for the list would take a stale row's label).
        // n = 1..=13 runs the 4-, 8- and 12-row float32 tiles (13: 12 + 1).
        let (k, d) = (16, 37);
        let far: Vec<f32> = lcg_values(41, (k / 2) * d)
            .iter()
            .map(|v| 8.0 * v)
            .collect();
        let c: Vec<f32> = (0..k)
            .flat_map(|j| {
                let row = &far[(j / 2) * d..(j / 2 + 1) * d];
                row.iter().map(move |&v| v * (1.0 + (j % 2) as f32 * 1e-6))
            })
            .collect();
        for n in 1..=13 {
            let noise = lcg_values(42 + n as u64, n * d);
            let x: Vec<f32> = (0..n * d)
                .map(|i| c[((i / d) * 5 % k) * d + i % d] + 1e-3 * noise[i])
                .collect();
            if let Some(st) = both(&x, &c, n, k, d) {
                assert_eq!(st.rows_rechecked, n as u64, "{st:?}");
            }
        }
    }

    #[test]
    fn the_pilot_keeps_bf16_only_when_few_candidates_are_left() {
        let st = |rows, panels| RecheckStats {
            rows,
            rows_rechecked: rows,
            centroids_rechecked: 2 * panels,
            rows_full: 0,
            panels_rechecked: panels,
            halves_rechecked: 2 * panels,
        };
        // k = 1000 at 2× bf16, per feature: f32 31.25; bf16 15.6 + 0.5 + 4 per group
        // of 8 half-panels (at least one per re-checked row).
        assert!(pilot_pays(&st(100, 300), 1000, 2.0));
        assert!(!pilot_pays(&st(100, 3000), 1000, 2.0));
        // No gain: never.
        assert!(!pilot_pays(&st(100, 0), 1000, 0.48));
        assert!(!pilot_pays(&RecheckStats::default(), 1000, 2.0));
    }

    #[test]
    fn the_automatic_choice_gives_the_float32_results_on_either_branch() {
        if !simd::bf16_allowed() {
            return;
        }
        let (n, k, d) = (PILOT_ROWS + 500, 512, 32);
        // Clear data: rows next to well separated centroids (few candidates).
        let c: Vec<f32> = lcg_values(11, k * d).iter().map(|v| v * 4.0).collect();
        let noise = lcg_values(12, n * d);
        let x: Vec<f32> = (0..n * d)
            .map(|i| c[((i / d) * 7 % k) * d + i % d] + 0.01 * noise[i])
            .collect();
        // Crowded data: every centroid within ulps of one point.
        let base = lcg_values(13, d);
        let crowd: Vec<f32> = (0..k)
            .flat_map(|j| base.iter().map(move |&v| v * (1.0 + (j % 5) as f32 * 1e-7)))
            .collect();
        for (cs, want) in [(&c, Taken::Bf16), (&crowd, Taken::PilotThenFloat32)] {
            let (mut l32, mut d32) = (vec![0i64; n], vec![0f32; n]);
            f32pass::assign(&x, n, d, cs, k, d, &mut l32, &mut d32).unwrap();
            let (mut la, mut da) = (vec![0i64; n], vec![0f32; n]);
            let ctl = &crate::kernels::control::NEVER;
            let taken = assign_with_gain(&x, n, d, cs, k, d, &mut la, &mut da, Some(2.0), ctl);
            assert_eq!(taken.unwrap(), want);
            assert_eq!(la, l32);
            assert!(da.iter().zip(&d32).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    #[test]
    fn overflowing_bounds_recheck_every_panel_and_still_match_float32() {
        if !simd::bf16_allowed() {
            return;
        }
        // Values past `_validation`'s limit: the bf16 scores overflow to inf, the
        // row's threshold is not finite, and every panel is re-checked in float32.
        let (n, k, d) = (30, 70, 8);
        let big =
            |seed, len| -> Vec<f32> { lcg_values(seed, len).iter().map(|v| v * 1e19).collect() };
        let (x, c) = (big(21, n * d), big(22, k * d));
        if let Some(st) = both(&x, &c, n, k, d) {
            assert!(st.rows_full > 0, "{st:?}");
        }
    }

    #[test]
    fn rows_past_the_candidate_list_cap_are_rechecked_whole() {
        let (n, k, d) = (30, LIST_CAP + 100, 8);
        let x = lcg_values(31, n * d);
        let base = lcg_values(32, d);
        let c: Vec<f32> = (0..k)
            .flat_map(|j| base.iter().map(move |&v| v * (1.0 + (j % 7) as f32 * 1e-7)))
            .collect();
        if let Some(st) = both(&x, &c, n, k, d) {
            assert_eq!(st.rows_full, n as u64, "{st:?}");
        }
    }

    #[test]
    fn refuses_bad_shapes() {
        let mut lab = vec![0i64; 2];
        let mut dis = vec![0f32; 2];
        assert!(assign(&[0.0; 4], 2, 2, &[0.0; 3], 1, 3, &mut lab, &mut dis).is_err());
        assert!(assign(&[0.0; 4], 2, 2, &[], 0, 2, &mut lab, &mut dis).is_err());
        assert!(Precision::parse("fp8").is_err());
        assert_eq!(Precision::parse("bf16").unwrap(), Precision::Bf16);
    }
}
