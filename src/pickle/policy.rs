//! The global allow-list, as data. A pickle may name only these callables/classes; anything else
//! (`os.system`, `builtins.eval`, `subprocess.Popen`, ...) is refused with `ForbiddenGlobal`
//! before anything is looked up, and nothing is ever called: REDUCE only records its operands.

/// An allowed global.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    /// `numpy.core.multiarray._reconstruct` (numpy 1.x) or `numpy._core.multiarray._reconstruct` (numpy 2).
    NumpyReconstruct,
    /// `numpy.ndarray`.
    NumpyNdarray,
    /// `numpy.dtype`.
    NumpyDtype,
    /// `ml_dtypes.bfloat16` (= `jax.numpy.bfloat16`).
    Bfloat16,
    /// `__main__.QuantizedWeight8bit`, the release's int8 + scales dataclass.
    QuantizedWeight8bit,
}

/// (module, name, global). The only table of allowed globals.
pub const ALLOWED_GLOBALS: &[(&str, &str, Global)] = &[
    (
        "numpy.core.multiarray",
        "_reconstruct",
        Global::NumpyReconstruct,
    ),
    (
        "numpy._core.multiarray",
        "_reconstruct",
        Global::NumpyReconstruct,
    ),
    ("numpy", "ndarray", Global::NumpyNdarray),
    ("numpy", "dtype", Global::NumpyDtype),
    ("ml_dtypes", "bfloat16", Global::Bfloat16),
    (
        "__main__",
        "QuantizedWeight8bit",
        Global::QuantizedWeight8bit,
    ),
];

/// Resolve a (module, name) pair against the allow-list.
pub fn resolve(module: &str, name: &str) -> Option<Global> {
    ALLOWED_GLOBALS
        .iter()
        .find(|(m, n, _)| *m == module && *n == name)
        .map(|r| r.2)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_listed() {
        assert!(super::resolve("numpy", "ndarray").is_some());
        assert!(super::resolve("os", "system").is_none());
        assert!(super::resolve("builtins", "eval").is_none());
        assert!(super::resolve("numpy", "load").is_none());
    }
}
