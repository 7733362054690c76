//! `ecos_fast._core`: the compiled half of ecos-fast.
//!
//! Module definition only. The maths lives in `kernels/` (pure Rust, no pyo3),
//! the numpy/GIL/thread-pool glue in `bindings.rs`, the error mapping in `errors.rs`.

pub mod bindings;
pub mod errors;
pub mod kernels;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    bindings::register(m)
}
