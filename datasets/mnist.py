r"""MNIST and Fashion-MNIST from the four standard IDX ``.gz`` files, checksum-verified.

Nothing is downloaded unless ``download=True`` is passed explicitly (never in
tests).  Files are looked up, in order, in:

1. the ``root`` argument;
2. ``$NEURALGRAPH_DATA/<name>``;
3. ``<repo>/../shared/datasets/<name>`` (and ``/work/shared/datasets/<name>``);
4. ``/usr/share/datasets/<name>`` (Debian ``dataset-fashion-mnist``).

Every file is verified against ``SHA256SUMS`` in its folder when present, else
against the checksums pinned in :data:`KNOWN_SHA256`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["FILES", "KNOWN_SHA256", "MEAN_STD", "find_root", "read_idx", "load_mnist", "mnist_tensors"]

#: The four files of each split, ``(images, labels)``.
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

#: SHA256 of the gzip files, used when a folder has no ``SHA256SUMS``.
#: Fashion-MNIST: computed once from Debian's ``dataset-fashion-mnist`` files.
KNOWN_SHA256: Dict[str, Dict[str, str]] = {
    "fashion-mnist": {
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    },
    "mnist": {
        "t10k-images-idx3-ubyte.gz": "5634745efa576a17e7d4cf5cd9d09123c75e6538e5114267c2d156edaf519341",
        "t10k-labels-idx1-ubyte.gz": "ae18e77e031ccde52407f794d123116439864147d33ac992975f85dd4dc42af6",
        "train-images-idx3-ubyte.gz": "71524e2cd1ad2968737f7f2f2ff69cbfc32df8ccddff51593f7cb2d4e0eb5b64",
        "train-labels-idx1-ubyte.gz": "fe03b8bd7915f70bf5aa08be480aa413fbd85afcaa58b35d230d335f284fd88e",
    },
}

#: Train pixel mean / std (pixels in [0, 1]).
MEAN_STD = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}

_URLS = {"mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
         "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"}
_VERIFIED: Dict[Tuple[str, int, int], bool] = {}
_CACHE: Dict[Tuple[str, str], Tuple[Tensor, Tensor]] = {}


def _canonical(name: str) -> str:
    key = name.lower().replace("_", "-")
    if key not in KNOWN_SHA256:
        raise ValueError(f"unknown dataset {name!r}; use 'mnist' or 'fashion-mnist'")
    return key


def candidate_roots(name: str, root: Optional[str | os.PathLike] = None) -> List[Path]:
    """The folders searched for ``name``, in lookup order."""
    name = _canonical(name)
    out: List[Path] = []
    if root is not None:
        out.append(Path(root))
    env = os.environ.get("NEURALGRAPH_DATA")
    if env:
        out += [Path(env) / name, Path(env)]
    repo = Path(__file__).resolve().parents[1]
    out += [repo.parent / "shared" / "datasets" / name, Path("/work/shared/datasets") / name,
            Path("/usr/share/datasets") / name]
    seen, uniq = set(), []
    for p in out:
        if str(p) not in seen:
            seen.add(str(p))
            uniq.append(p)
    return uniq


def find_root(name: str, root: Optional[str | os.PathLike] = None) -> Path:
    """The first folder holding all four files of ``name``.

    Raises:
        FileNotFoundError: naming every folder searched and the files expected.
    """
    wanted = [f for pair in FILES.values() for f in pair]
    searched = candidate_roots(name, root)
    for folder in searched:
        if all((folder / f).is_file() for f in wanted):
            return folder
    if root is not None and Path(root).is_dir():
        missing = [f for f in wanted if not (Path(root) / f).is_file()]
        raise FileNotFoundError(f"{name}: {root} lacks {missing}")
    raise FileNotFoundError(
        f"{name} not found. Put the four files {wanted} in one of: "
        + ", ".join(str(p) for p in searched)
        + " (or set NEURALGRAPH_DATA=<dir> holding a '" + _canonical(name) + "' folder)"
        + ("; on Debian: apt-get install dataset-fashion-mnist" if _canonical(name) == "fashion-mnist"
           else ""))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def expected_sha256(name: str, folder: Path) -> Dict[str, str]:
    """Checksums from ``folder/SHA256SUMS`` if present, else the pinned ones."""
    sums = folder / "SHA256SUMS"
    if sums.is_file():
        out = {}
        for line in sums.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                out[parts[1].lstrip("*")] = parts[0].lower()
        return out
    return dict(KNOWN_SHA256[_canonical(name)])


def verify(name: str, folder: Path) -> None:
    """Check every file's SHA256; raise ``ValueError`` naming a corrupt file."""
    expected = expected_sha256(name, folder)
    for pair in FILES.values():
        for fname in pair:
            path = folder / fname
            st = path.stat()
            key = (str(path), st.st_size, int(st.st_mtime))
            if _VERIFIED.get(key):
                continue
            want = expected.get(fname)
            if want is None:
                raise ValueError(f"{folder / 'SHA256SUMS'} has no entry for {fname}")
            got = _sha256(path)
            if got != want:
                raise ValueError(f"checksum mismatch for {path}: sha256 {got}, expected {want}; "
                                 f"delete it and copy a good file")
            _VERIFIED[key] = True


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one (optionally gzipped) IDX file into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:  # type: ignore[operator]
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"{path}: truncated IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {int(np.prod(shape))} values for shape {shape}, "
                         f"got {body.size}")
    return body.reshape(shape)


def download(name: str, root: str | os.PathLike) -> Path:  # pragma: no cover - network
    """Fetch the four files into ``root`` (only when asked explicitly)."""
    import urllib.request

    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    for pair in FILES.values():
        for fname in pair:
            if not (folder / fname).is_file():
                urllib.request.urlretrieve(_URLS[_canonical(name)] + fname, folder / fname)
    return folder


def load_mnist(name: str = "mnist", split: str = "train", root: Optional[str | os.PathLike] = None,
               check: bool = True, download_: bool = False) -> Tuple[Tensor, Tensor]:
    """Raw images and labels of one split.

    Args:
        name (str): ``"mnist"`` or ``"fashion-mnist"``.
        split (str): ``"train"`` (60,000) or ``"test"`` (10,000).
        root (path, optional): folder holding the four ``.gz`` files.
        check (bool, optional): verify SHA256 checksums. (default: ``True``)
        download_ (bool, optional): fetch missing files into ``root``.

    Shapes:
        - **output:** images ``uint8 [N, 28, 28]``, labels ``int64 [N]``
    """
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    name = _canonical(name)
    if download_ and root is not None:  # pragma: no cover - network
        download(name, root)
    folder = find_root(name, root)
    cache_key = (str(folder), split)
    if cache_key in _CACHE:
        return _CACHE[cache_key]
    if check:
        verify(name, folder)
    img_file, lab_file = FILES[split]
    images = torch.from_numpy(read_idx(folder / img_file).copy())
    labels = torch.from_numpy(read_idx(folder / lab_file).astype(np.int64))
    if images.dim() != 3 or images.size(0) != labels.numel():
        raise ValueError(f"{folder}: {tuple(images.shape)} images for {labels.numel()} labels")
    _CACHE[cache_key] = (images, labels)
    return images, labels


def mnist_tensors(name: str = "mnist", split: str = "train", root: Optional[str | os.PathLike] = None,
                  flatten: bool = True, normalize: bool = True) -> Tuple[Tensor, Tensor]:
    """Float images (normalised with the train mean/std) and labels.

    Shapes:
        - **output:** ``[N, 784]`` (``flatten``) or ``[N, 1, 28, 28]``, labels ``[N]``
    """
    images, labels = load_mnist(name, split, root)
    x = images.float().div_(255.0)
    if normalize:
        mean, std = MEAN_STD[_canonical(name)]
        x = (x - mean) / std
    x = x.reshape(x.size(0), -1) if flatten else x.unsqueeze(1)
    return x, labels
