#!/usr/bin/env python3
"""Reference timings for the `svd` benchmark suite: scipy gesdd (float32) and numpy.linalg.svd.

Single BLAS thread: OPENBLAS_NUM_THREADS (and friends) are set before numpy is imported, and
threadpoolctl is used as well when installed. OPENBLAS_CORETYPE is left as the environment has it.
Prints `RESULT <key> <seconds>` lines with the same keys as `deltaplan-bench svd`.

usage: python3 Benchmarks/svd_reference.py [--quick] [--shape MxN] [--scipy-only]
"""
import os
import sys

for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.linalg  # noqa: E402

try:
    from threadpoolctl import threadpool_limits
    _limits = threadpool_limits(limits=1)
except ImportError:  # the environment variables above already pin OpenBLAS to one thread
    _limits = None


def timed(fn, repetitions):
    best = float("inf")
    for _ in range(repetitions):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
        del result
    return best


def main():
    quick = "--quick" in sys.argv
    scipy_only = "--scipy-only" in sys.argv
    only = sys.argv[sys.argv.index("--shape") + 1] if "--shape" in sys.argv else None
    shapes = [(256, 256), (512, 512), (1376, 512)] if quick else [(1024, 1024), (4096, 4096), (11008, 4096)]
    print(f"svd reference: numpy {np.__version__}, scipy {scipy.__version__}, float32, 1 BLAS thread")
    rng = np.random.default_rng(2026)
    for index, (m, n) in enumerate(shapes):
        key = f"{m}x{n}"
        if only is not None and only != key:
            continue
        a = rng.standard_normal((m, n), dtype=np.float32)
        a = np.asfortranarray(a)  # column-major like LAPACK, so scipy does not transpose-copy
        reps = 3 if index == 0 else 1
        t = timed(lambda: scipy.linalg.svd(a, full_matrices=False, lapack_driver="gesdd"), reps)
        print(f"RESULT scipy_svd_full_{key} {t:.3f}")
        print(f"  scipy.linalg.svd(gesdd, float32) {key}: {t:.3f} s", flush=True)
        if scipy_only:
            continue
        t = timed(lambda: np.linalg.svd(a, full_matrices=False), reps)
        print(f"RESULT numpy_svd_full_{key} {t:.3f}")
        print(f"  numpy.linalg.svd {key}: {t:.3f} s", flush=True)


if __name__ == "__main__":
    main()
