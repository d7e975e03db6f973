"""Optional fused C kernels, built with the system C compiler at first use.

The Weight Transformer's no-grad CPU forward has a fused kernel
(``rules/csrc/wt_fused.c``): every per-edge step of a tile of edges (projection,
``phi``, RoPE, attention, LayerNorm, feed-forward, head) runs in registers and L1
cache instead of as dozens of full-size torch ops.  The kernel is plain C99 (no
Python or torch headers), so building it takes a few seconds; it is compiled for
this machine (``-march=native``) and cached under ``$NEURALGRAPH_CACHE`` (default
``~/.cache/neuralgraph``), keyed on the source, the compiler and the CPU.

Everything works without it: when no compiler is found, the build fails or
``NEURALGRAPH_NATIVE=0`` is set, :func:`load` returns ``None`` and callers use
their PyTorch path (:func:`status` says why).  Tests check the kernel against
that path and the per-edge reference.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Dict, Optional

__all__ = ["load", "status", "cache_dir", "source_path", "NativeUnavailable"]

_SOURCES = {"wt_fused": "wt_fused.c"}
_FLAGS = ["-O3", "-std=gnu99", "-fPIC", "-shared", "-fno-math-errno", "-ffp-contract=fast"]
_ARCH_FLAGS = [["-march=native", "-mprefer-vector-width=512"], ["-march=native"], []]
_lock = threading.Lock()
_libs: Dict[str, Optional[ctypes.CDLL]] = {}
_status: Dict[str, str] = {}


class NativeUnavailable(RuntimeError):
    """A fused kernel was required (``native=True``) but cannot be built or loaded here."""


def source_path(name: str) -> Path:
    """The C source of kernel ``name`` (shipped in ``neuralgraph/rules/csrc``)."""
    import neuralgraph.rules as rules_pkg

    return Path(rules_pkg.__file__).resolve().parent / "csrc" / _SOURCES[name]


def cache_dir() -> Path:
    """Where built kernels live: ``$NEURALGRAPH_CACHE``, else ``$XDG_CACHE_HOME/neuralgraph``,
    else ``~/.cache/neuralgraph``."""
    root = os.environ.get("NEURALGRAPH_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "neuralgraph"


def _writable_cache() -> Path:
    """:func:`cache_dir`, created; if it cannot be written, a per-user folder in the temp dir."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    for d in (cache_dir(), Path(tempfile.gettempdir()) / f"neuralgraph-{user}"):
        try:
            d.mkdir(parents=True, exist_ok=True)
            if os.access(d, os.W_OK):
                return d
        except OSError:
            continue
    raise NativeUnavailable(f"no writable cache folder ({cache_dir()} nor the temp dir)")


def _compiler() -> Optional[str]:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def _cpu_signature() -> str:
    """The CPU model and feature flags (``-march=native`` code is only valid on such a CPU)."""
    sig = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features")):
                    sig.append(line.strip())
                    if len(sig) >= 4:
                        break
    except OSError:
        pass
    return "\n".join(sig)


def _build(name: str) -> ctypes.CDLL:
    """Compile (or reuse the cached build of) kernel ``name`` and load it."""
    cc = _compiler()
    if cc is None:
        raise NativeUnavailable("no C compiler found (tried $CC, cc, gcc, clang)")
    src = source_path(name)
    if not src.is_file():
        raise NativeUnavailable(f"kernel source {src} is missing")
    code = src.read_bytes()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise NativeUnavailable(f"{cc} --version failed: {e}") from e
    errors = []
    cpu, folder = _cpu_signature().encode(), _writable_cache()
    for arch in _ARCH_FLAGS:
        flags = _FLAGS + arch
        key = hashlib.sha256(b"\0".join([code, " ".join(flags).encode(), version.encode(), cpu])).hexdigest()[:16]
        target = folder / f"{name}-{key}.so"
        if not target.is_file():
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
            os.close(fd)
            try:
                run = subprocess.run([cc, *flags, str(src), "-o", tmp, "-lm"], capture_output=True,
                                     text=True, timeout=300)
                if run.returncode != 0:
                    errors.append(f"{cc} {' '.join(flags)}: {run.stderr.strip()[-500:]}")
                    continue
                os.replace(tmp, target)  # atomic: concurrent builders each write their own temp
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        try:
            return ctypes.CDLL(str(target))
        except OSError as e:
            errors.append(f"loading {target}: {e}")
    raise NativeUnavailable(f"could not build {src.name}: " + " | ".join(errors))


def load(name: str = "wt_fused") -> Optional[ctypes.CDLL]:
    """The loaded kernel library ``name``, building it on first use; ``None`` if unavailable
    (no compiler, failed build, or ``NEURALGRAPH_NATIVE=0``) -- see :func:`status`."""
    if os.environ.get("NEURALGRAPH_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        _status[name] = "disabled by NEURALGRAPH_NATIVE=0"
        return None
    with _lock:
        if name not in _libs:
            try:
                _libs[name] = _build(name)
                _status[name] = f"built ({_libs[name]._name})"
            except (NativeUnavailable, OSError, subprocess.SubprocessError) as e:
                _libs[name] = None
                _status[name] = f"{type(e).__name__}: {e}"
        return _libs[name]


def status(name: str = "wt_fused") -> str:
    """Why :func:`load` returned what it did (``"not loaded yet"`` before the first call)."""
    return _status.get(name, "not loaded yet")
