//! Thin wrappers over the Intel AMX tile instructions the bf16 first pass uses
//! (`ldtilecfg`, `tilezero`, `tileloadd`, `tdpbf16ps`, `tilestored`, `tilerelease`),
//! as inline `asm!`: the `std::arch` AMX intrinsics are unstable on the toolchain
//! this crate builds with. The compiler never allocates the tile registers itself,
//! so their contents persist from one `asm!` block to the next on a thread.
//!
//! One configuration for every user ([`configure`]): palette 1, tiles 0–7 all 16
//! rows × 64 bytes (a 16 × 16 f32 accumulator, a 16-row × 16-pair bf16 A tile, or a
//! 16-pair × 16-column B tile in the "VNNI" pair layout). The configuration is per
//! thread: each task that uses tiles calls [`configure`] first and [`release`]
//! after. Every function here requires that this process may execute tile
//! instructions (`simd::amx_usable`: cpuid AMX-BF16 + AMX-TILE, the Linux
//! permission granted, XCR0's tile bits) and, except `configure`, that the calling
//! thread has configured the tiles.

use std::arch::asm;

/// The 64-byte tile configuration (`ldtilecfg`'s operand).
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

/// The configuration: palette 1, start row 0, tiles 0–7 of 16 rows × 64 bytes.
const CONFIG: TileConfig = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64; // colsb (u16 little-endian; high byte 0)
        c[48 + t] = 16; // rows
        t += 1;
    }
    TileConfig(c)
};

/// Load [`CONFIG`] for this thread (zeroes every tile).
///
/// # Safety
/// AMX usable in this process.
#[inline(always)]
pub unsafe fn configure() {
    // SAFETY: CONFIG is a valid palette-1 configuration of 64 bytes, aligned.
    unsafe { asm!("ldtilecfg [{0}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly)) };
}

/// Release this thread's tile state (back to the init state).
///
/// # Safety
/// AMX usable in this process.
#[inline(always)]
pub unsafe fn release() {
    // SAFETY: tilerelease only resets the tile state.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// Zero tile `T`.
///
/// # Safety
/// AMX usable, tiles configured on this thread.
#[inline(always)]
pub unsafe fn tilezero<const T: u8>() {
    // SAFETY: per the contract.
    unsafe { asm!("tilezero tmm{t}", t = const T, options(nostack, nomem)) };
}

/// Load tile `T`: 16 rows of 64 bytes, `stride` bytes apart, from `p`.
///
/// # Safety
/// AMX usable, tiles configured; `p + r·stride .. + 64` readable for r < 16.
#[inline(always)]
pub unsafe fn tileload<const T: u8>(p: *const u32, stride: usize) {
    // SAFETY: per the contract.
    unsafe {
        asm!(
            "tileloadd tmm{t}, [{p} + {s}*1]",
            t = const T,
            p = in(reg) p,
            s = in(reg) stride,
            options(nostack, readonly)
        )
    };
}

/// Store tile `T` (16 rows of 64 bytes) to `p`, rows `stride` bytes apart.
///
/// # Safety
/// AMX usable, tiles configured; `p + r·stride .. + 64` writable for r < 16.
#[inline(always)]
pub unsafe fn tilestore<const T: u8>(p: *mut f32, stride: usize) {
    // SAFETY: per the contract.
    unsafe {
        asm!(
            "tilestored [{p} + {s}*1], tmm{t}",
            t = const T,
            p = in(reg) p,
            s = in(reg) stride,
            options(nostack)
        )
    };
}

/// `C += A · B` on tiles (`tdpbf16ps tmmC, tmmA, tmmB`): per element, the 32 bf16
/// products of an A row's 16 pairs and a B column's 16 pairs, accumulated in f32.
///
/// # Safety
/// AMX usable, tiles configured; `C`, `A`, `B` distinct.
#[inline(always)]
pub unsafe fn tdpbf16ps<const C: u8, const A: u8, const B: u8>() {
    // SAFETY: per the contract.
    unsafe {
        asm!(
            "tdpbf16ps tmm{c}, tmm{a}, tmm{b}",
            c = const C,
            a = const A,
            b = const B,
            options(nostack, nomem)
        )
    };
}
