//! Pure-Rust kernels over slices. No pyo3 here.
//!
//! Prior validation of data is assumed (Python's `_validation` module); kernels
//! re-check only cheap shape invariants and return `KernelError`s.

pub mod distance;
pub mod finite;
pub mod kcenter;
pub mod kmeans;
