"""numba kernels on plain arrays (CSR triples, dense vectors); nothing above them.

Policy: ``@njit(nogil=True, cache=True)`` serial kernels, so single-threaded
dask workers (or the threads of one worker) run them side by side without the
GIL and without oversubscribing cores; preallocated float64 outputs. Kernels
that visit rows in random order (the dual coordinate ascents) ask the cache for
the row :data:`~.prefetch.AHEAD` steps on (:func:`~.prefetch.prefetch`).
"""
