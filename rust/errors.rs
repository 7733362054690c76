//! One error enum for every kernel, mapped to Python exceptions in one place.
//!
//! Python validates inputs first (`ecos_fast._validation`); these are the cheap
//! invariants Rust re-checks so that nothing ever panics across the boundary.
//! Every variant becomes a class of `ecos_fast.errors` (an `EcosError`), so a
//! kernel's refusal reads, and is caught, like every other error of the package;
//! `tests/test_errors.py` raises each variant through `_core._raise_kernel_error`.

use pyo3::PyErr;
use std::fmt;

// The package's own classes, imported from `ecos_fast.errors` when first raised.
pyo3::import_exception!(ecos_fast.errors, InvalidInputError);
pyo3::import_exception!(ecos_fast.errors, ThreadPoolError);

#[derive(Debug, Clone, PartialEq)]
pub enum KernelError {
    /// An argument is out of range or inconsistent with another one.
    InvalidArgument(String),
    /// The thread pool could not be built.
    ThreadPool(String),
    /// A setting read from the environment is invalid (e.g. `ECOS_FAST_SIMD`).
    Config(String),
    /// Cancelled while running (Ctrl-C, or a progress callback that raised): the
    /// binding layer raises the Python error that cancelled it instead.
    Interrupted,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::InvalidArgument(msg) => write!(f, "{msg}"),
            KernelError::ThreadPool(msg) => write!(f, "could not build the thread pool: {msg}"),
            KernelError::Config(msg) => write!(f, "{msg}"),
            KernelError::Interrupted => write!(f, "interrupted"),
        }
    }
}

impl std::error::Error for KernelError {}

impl From<KernelError> for PyErr {
    fn from(err: KernelError) -> PyErr {
        match err {
            // `ecos_fast.errors.InvalidInputError`, a `ValueError`.
            KernelError::InvalidArgument(_) | KernelError::Config(_) => {
                InvalidInputError::new_err(err.to_string())
            }
            // `ecos_fast.errors.ThreadPoolError`, a `RuntimeError`.
            KernelError::ThreadPool(_) => ThreadPoolError::new_err(err.to_string()),
            KernelError::Interrupted => {
                pyo3::exceptions::PyKeyboardInterrupt::new_err(err.to_string())
            }
        }
    }
}

/// Shorthand for an `InvalidArgument` error with a formatted message.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { $crate::errors::KernelError::InvalidArgument(format!($($arg)*)) };
}

pub type KernelResult<T> = Result<T, KernelError>;
