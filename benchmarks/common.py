"""Shared helpers for the benchmarks: timing, peak memory, sgemm peak, machine info."""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from typing import Any, Callable, Dict, List, Tuple

import torch


def timeit(fn: Callable[[], Any], repeat: int = 3, warmup: int = 1) -> Tuple[float, List[float]]:
    """Median wall time of ``fn`` over ``repeat`` runs (after ``warmup``), and all times."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2], times


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class PeakMemory:
    """Peak extra resident memory (MB) inside a ``with`` block, by sampling RSS.

    Freed memory that the allocator keeps is not seen again, so only the first
    measurement in a process is reliable: see :func:`peak_rss_delta_mb`.
    """

    def __enter__(self) -> "PeakMemory":
        import threading

        import psutil

        self._proc = psutil.Process()
        self._base = self._proc.memory_info().rss
        self._peak = self._base
        self._stop = False

        def sample() -> None:
            while not self._stop:
                self._peak = max(self._peak, self._proc.memory_info().rss)
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop = True
        self._thread.join()
        self._peak = max(self._peak, self._proc.memory_info().rss)

    @property
    def mb(self) -> float:
        return (self._peak - self._base) / 2 ** 20


def peak_rss_delta_mb(script: str, *args: str) -> float:
    """Run ``python script *args`` in a fresh process; it must print one float: its peak extra MB."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def sgemm_gflops(n: int = 2048, repeat: int = 5, best: bool = False) -> float:
    """FLOP rate of a plain large float32 matrix multiply on this machine (GFLOP/s): from the
    median time, or with ``best`` the fastest of ``repeat`` runs (a peak on a noisy machine)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    t, times = timeit(lambda: a @ b, repeat=repeat, warmup=2)
    return 2 * n ** 3 / (min(times) if best else t) / 1e9


def machine() -> Dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_average_1m": round(os.getloadavg()[0], 2),  # other jobs on the machine skew timings
    }


def dump(result: Dict[str, Any]) -> None:
    print(json.dumps(result, indent=2, sort_keys=False))
