import gzip
import struct

import numpy as np
import pytest
import torch

from neuralgraph.datasets import mnist as M


def _write_idx(path, arr):
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def _fake_mnist(folder, n=5, sums=True):
    rng = np.random.default_rng(0)
    for img, lab in M.FILES.values():
        _write_idx(folder / img, rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / lab, rng.integers(0, 10, (n,)))
    if sums:
        lines = [f"{M._sha256(folder / f)}  {f}" for pair in M.FILES.values() for f in pair]
        (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def test_read_fake_idx_and_verify(tmp_path):
    _fake_mnist(tmp_path)
    M._CACHE.clear()
    x, y = M.load_mnist("mnist", "train", root=tmp_path)
    assert x.shape == (5, 28, 28) and x.dtype == torch.uint8 and y.shape == (5,)
    xf, _ = M.mnist_tensors("mnist", "test", root=tmp_path)
    assert xf.shape == (5, 784)


def test_checksum_mismatch_is_named(tmp_path):
    _fake_mnist(tmp_path)
    M._CACHE.clear()
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(5))  # corrupt after SHA256SUMS
    with pytest.raises(ValueError, match="checksum mismatch for .*t10k-labels"):
        M.load_mnist("mnist", "test", root=tmp_path)


def test_missing_files_error_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURALGRAPH_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setattr(M, "candidate_roots", lambda name, root=None: [tmp_path / "nowhere"])
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz.*nowhere"):
        M.find_root("fashion-mnist")


def test_partial_root_names_missing(tmp_path, monkeypatch):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    monkeypatch.setattr(M, "candidate_roots", lambda name, root=None: [tmp_path])
    with pytest.raises(FileNotFoundError, match="lacks"):
        M.find_root("mnist", tmp_path)


def test_bad_idx_magic(tmp_path):
    p = tmp_path / "bad.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        M.read_idx(p)


def test_lookup_order_env_before_shared(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURALGRAPH_DATA", str(tmp_path))
    roots = M.candidate_roots("mnist", "/explicit")
    assert str(roots[0]) == "/explicit" and roots[1] == tmp_path / "mnist"
    assert roots[-1].as_posix() == "/usr/share/datasets/mnist"


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_data_if_installed(name):
    try:
        root = M.find_root(name)
    except FileNotFoundError:
        pytest.skip(f"{name} not installed")
    M.verify(name, root)  # full SHA256 check of the real files
    x, y = M.load_mnist(name, "test")
    assert x.shape == (10000, 28, 28) and int(y.max()) == 9
