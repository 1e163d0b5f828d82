"""Random-feature kernels on a CSR block: the affine map x W + b, fused and serial.

For a block of n rows (CSR triple ``indptr, indices, data``), a weight matrix
``W`` of shape (n_features, D) (C-contiguous: row ``j`` holds the D weights
of feature ``j``) and offsets ``b`` of shape (D,), :func:`csr_affine` writes

    out[i, k] = b[k] + sum_p data[p] W[indices[p], k],
    p in indptr[i] .. indptr[i + 1] - 1,

into a preallocated float64 ``out`` of shape (n, D): one pass over the
non-zeros, each adding D contiguous weights into the row of ``out`` (which
stays in cache), with the offset folded in. The caller then takes
``scale * cos(out)`` in place with numpy.

Why the cos is not fused here: numpy's cos is vectorized (SIMD) and numba's
is a scalar libm call; measured on a 5,000 x 123 block of a9a density with
D = 1,000, the fused numba cos took about twice as long as this product
followed by ``np.cos(out, out=out)``, and this product is faster than
scipy's ``X @ W`` followed by ``+ b`` (no temporary, one pass). Dense blocks
go to BLAS (``X @ W``) instead.

The kernel is ``@njit(nogil=True, cache=True)`` and serial (see the package
policy in :mod:`dasksvm.kernels`); it takes plain arrays only.
"""

from numba import njit

__all__ = ["csr_affine"]


@njit(nogil=True, cache=True)
def csr_affine(indptr, indices, data, W, b, out):
    """out[i] = x_i W + b for the CSR rows x_i of one block; returns ``out``.

    Parameters
    ----------
    indptr : int array (n + 1,)
    indices : int array (nnz,)
        Column indices (< W.shape[0]); duplicates add up, order is free.
    data : float64 array (nnz,)
    W : float64 array (n_features, D)
    b : float64 array (D,)
    out : float64 array (n, D), overwritten

    Returns
    -------
    out : float64 array (n, D)
    """
    n = indptr.shape[0] - 1
    D = W.shape[1]
    for i in range(n):
        for k in range(D):
            out[i, k] = b[k]
        for p in range(indptr[i], indptr[i + 1]):
            v = data[p]
            j = indices[p]
            for k in range(D):
                out[i, k] += v * W[j, k]
    return out
