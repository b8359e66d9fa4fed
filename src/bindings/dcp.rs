//! What a sharded save needs to know about where its shards land.

use pyo3::prelude::*;

use super::convert::path_arg;

/// Whether the filesystem holding `path` is one every node sees (NFS, Lustre, ...): a collective
/// pre-flight then sums the bytes of every rank for it, not only the ranks of one node.
#[pyfunction(name = "_shared_filesystem")]
pub(crate) fn shared_filesystem_py(py: Python<'_>, path: &Bound<'_, PyAny>) -> PyResult<bool> {
    let path = path_arg("path", path)?;
    Ok(py.detach(move || crate::guard::shared_filesystem(&path, None, None)))
}
