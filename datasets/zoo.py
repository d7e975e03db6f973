r"""A heterogeneous zoo of small CNNs trained on MNIST / Fashion-MNIST, and its dataset.

The zoo is the input of *generalization prediction*: given a trained network's
weights (as a :class:`~neuralgraph.NeuralGraph`), predict its test accuracy.
Every network ``i`` is drawn deterministically from ``(config.seed, i)``:

* data set: MNIST or Fashion-MNIST;
* 1-3 ``Conv2d`` layers (stride 2, padding ``k // 2``), widths from
  ``config.widths``, one kernel size ``k`` for the whole network, one
  activation, then ``AdaptiveAvgPool2d(2) -> Flatten -> Linear(4 C, 10)``;
* SGD (momentum 0.9) for a random number of steps with a log-uniform learning
  rate, so accuracies spread from chance (~10 %) to ~98 %.

Each finished network is written atomically (temp file + ``os.replace``) to
``<root>/nets/<i>.pt`` with its :class:`NetSpec`, ``state_dict`` and test
accuracy on a fixed subset of the test set, so :func:`build_zoo` resumes by
skipping finished files.  :class:`ZooDataset` turns a built zoo into a list of
neural graphs with ``y`` = test accuracy.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = ["ZooConfig", "NetSpec", "sample_spec", "build_cnn", "train_network", "build_zoo",
           "load_zoo_records", "ZooDataset", "ZOO_ACTIVATIONS"]

#: Activation choices (``torch.nn`` class names).
ZOO_ACTIVATIONS = ("ReLU", "Tanh", "GELU", "LeakyReLU", "Sigmoid")


@dataclass
class ZooConfig:
    """How to build a zoo (loadable from the ``zoo:`` section of a YAML file).

    Args:
        root (str): output folder.
        num_networks (int): zoo size.
        seed (int): master seed; network ``i`` depends only on ``(seed, i)``.
        datasets (list of str): ``"mnist"`` and/or ``"fashion-mnist"``.
        conv_layers (list of int): choices for the number of conv layers.
        widths (list of int): channel-width choices (per layer).
        kernel_sizes (list of int): kernel-size choices (one per network).
        activations (list of str): activation choices (one per network).
        steps (list of int): ``[lo, hi]`` training steps, log-uniform.
        lr (list of float): ``[lo, hi]`` learning rate, log-uniform.
        batch_size (int): SGD batch size.
        test_size (int): size of the fixed test subset for the accuracy.
        num_threads (int): ``torch.set_num_threads`` while building.
        data_root (str, optional): folder with the IDX files (else searched).
    """

    root: str = "runs/zoo"
    num_networks: int = 2000
    seed: int = 0
    datasets: List[str] = field(default_factory=lambda: ["mnist", "fashion-mnist"])
    conv_layers: List[int] = field(default_factory=lambda: [1, 2, 3])
    widths: List[int] = field(default_factory=lambda: [4, 6, 8, 12])
    kernel_sizes: List[int] = field(default_factory=lambda: [3, 5, 7])
    activations: List[str] = field(default_factory=lambda: list(ZOO_ACTIVATIONS))
    steps: List[int] = field(default_factory=lambda: [20, 1500])
    lr: List[float] = field(default_factory=lambda: [5e-3, 0.2])
    batch_size: int = 32
    test_size: int = 2000
    num_threads: int = 1
    data_root: Optional[str] = None

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ZooConfig":
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"unknown ZooConfig keys {bad}; known: {sorted(known)}")
        return cls(**d)


@dataclass
class NetSpec:
    """One zoo member: architecture and training hyperparameters."""

    index: int
    dataset: str
    widths: List[int]
    kernel_size: int
    activation: str
    steps: int
    lr: float
    seed: int

    @property
    def num_conv(self) -> int:
        return len(self.widths)


def _rng(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + index * 7919 + 17) % (2 ** 62))


def _choice(g: torch.Generator, seq: Sequence[Any]) -> Any:
    return seq[int(torch.randint(len(seq), (1,), generator=g))]


def _log_uniform(g: torch.Generator, lo: float, hi: float) -> float:
    u = float(torch.rand((), generator=g))
    return math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def sample_spec(config: ZooConfig, index: int) -> NetSpec:
    """The deterministic :class:`NetSpec` of network ``index``."""
    g = _rng(config.seed, index)
    n_conv = int(_choice(g, config.conv_layers))
    return NetSpec(
        index=index,
        dataset=str(_choice(g, config.datasets)),
        widths=[int(_choice(g, config.widths)) for _ in range(n_conv)],
        kernel_size=int(_choice(g, config.kernel_sizes)),
        activation=str(_choice(g, config.activations)),
        steps=int(round(_log_uniform(g, config.steps[0], config.steps[1]))),
        lr=_log_uniform(g, config.lr[0], config.lr[1]),
        seed=int(torch.randint(2 ** 31 - 1, (1,), generator=g)),
    )


def build_cnn(spec: NetSpec) -> nn.Sequential:
    """``[Conv2d(k, stride 2) -> act] * L -> AdaptiveAvgPool2d(2) -> Flatten -> Linear(4 C, 10)``."""
    if spec.activation not in ZOO_ACTIVATIONS:
        raise ValueError(f"unknown activation {spec.activation!r}; use one of {ZOO_ACTIVATIONS}")
    layers: List[nn.Module] = []
    c = 1
    for w in spec.widths:
        layers += [nn.Conv2d(c, w, spec.kernel_size, stride=2, padding=spec.kernel_size // 2),
                   getattr(nn, spec.activation)()]
        c = w
    layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4 * c, 10)]
    return nn.Sequential(*layers)


class _Data:
    """Train tensors and the fixed test subset of one data set (normalised, ``[N, 1, 28, 28]``)."""

    def __init__(self, name: str, test_size: int, root: Optional[str]) -> None:
        from neuralgraph.datasets.mnist import mnist_tensors

        self.x_train, self.y_train = mnist_tensors(name, "train", root, flatten=False)
        x_test, y_test = mnist_tensors(name, "test", root, flatten=False)
        idx = torch.randperm(x_test.size(0), generator=torch.Generator().manual_seed(0))[:test_size]
        self.x_test, self.y_test = x_test[idx], y_test[idx]


def train_network(spec: NetSpec, data: Any, batch_size: int = 32) -> Tuple[nn.Sequential, float, float]:
    """Train one network; returns ``(model, test_accuracy, final_train_loss)``."""
    g = torch.Generator().manual_seed(spec.seed)
    torch.manual_seed(spec.seed)
    model = build_cnn(spec)
    opt = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    n = data.x_train.size(0)
    loss = torch.tensor(float("nan"))
    model.train()
    for _ in range(spec.steps):
        idx = torch.randint(n, (batch_size,), generator=g)
        loss = loss_fn(model(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        correct = 0
        for lo in range(0, data.x_test.size(0), 1000):
            out = model(data.x_test[lo:lo + 1000])
            correct += int((out.argmax(-1) == data.y_test[lo:lo + 1000]).sum())
        # diverged networks (NaN weights) get chance-level accuracy and are flagged
        finite = all(torch.isfinite(p).all() for p in model.parameters())
    acc = correct / data.x_test.size(0) if finite else float("nan")
    return model, acc, float(loss.detach())


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def build_zoo(config: ZooConfig, resume: bool = True, progress: bool = True,
              log: Optional[Callable[[str], None]] = None, shard: Tuple[int, int] = (0, 1)) -> Path:
    """Train every network of the zoo that is not on disk yet.

    Writes ``<root>/config.json`` and one ``<root>/nets/<i>.pt`` per network.
    With ``resume=False`` an existing non-empty zoo folder is an error (so a
    zoo is never silently mixed from two configs).  ``shard=(k, n)`` trains
    only networks with ``i % n == k``, so ``n`` processes (one per core) can
    build one zoo together.
    """
    k, n_shards = shard
    if not 0 <= k < n_shards:
        raise ValueError(f"shard must be (k, n) with 0 <= k < n, got {shard}")
    from tqdm import tqdm

    root = Path(config.root)
    nets = root / "nets"
    cfg_file = root / "config.json"
    if cfg_file.exists():
        old = json.loads(cfg_file.read_text())
        mine = asdict(config)
        differs = {k for k in mine if k not in ("num_networks", "num_threads", "root", "data_root")
                   and old.get(k) != mine[k]}
        if differs:
            raise ValueError(f"{cfg_file} was built with different settings {sorted(differs)}; "
                             "use another root")
        if not resume and any(nets.glob("*.pt")):
            raise FileExistsError(f"{nets} already holds networks; pass --resume to continue")
    nets.mkdir(parents=True, exist_ok=True)
    tmp = cfg_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(config), indent=2))
    os.replace(tmp, cfg_file)
    torch.set_num_threads(config.num_threads)
    todo = [i for i in range(k, config.num_networks, n_shards) if not (nets / f"{i:05d}.pt").exists()]
    data: Dict[str, _Data] = {}
    t0 = time.time()
    for i in tqdm(todo, desc="zoo", disable=not progress):
        spec = sample_spec(config, i)
        if spec.dataset not in data:
            data[spec.dataset] = _Data(spec.dataset, config.test_size, config.data_root)
        t = time.time()
        model, acc, loss = train_network(spec, data[spec.dataset], config.batch_size)
        _atomic_save({"spec": asdict(spec), "state_dict": model.state_dict(), "test_acc": acc,
                      "train_loss": loss, "seconds": time.time() - t}, nets / f"{i:05d}.pt")
    if log is not None:
        log(f"trained {len(todo)} networks in {time.time() - t0:.1f}s "
            f"(shard {k}/{n_shards}; the others were already done or belong to other shards)")
    return root


def load_zoo_records(root: str | os.PathLike, limit: Optional[int] = None) -> List[Dict[str, Any]]:
    """All saved networks of a zoo, sorted by index (skipping NaN accuracies)."""
    nets = Path(root) / "nets"
    if not nets.is_dir():
        raise FileNotFoundError(f"no zoo at {root}: {nets} is missing (run `neuralgraph zoo-build`)")
    files = sorted(nets.glob("*.pt"))[:limit]
    records = []
    for f in files:
        rec = torch.load(f, weights_only=False)
        if not math.isnan(rec["test_acc"]):
            records.append(rec)
    return records


def _nets_fingerprint(nets: Path) -> List[Tuple[str, int, int]]:
    """``(name, size, mtime_ns)`` of every network file: the key of the ``processed.pt`` cache.

    The cache is rebuilt whenever a network is added, removed or rewritten (e.g. a
    zoo grown from 604 to 2,000 networks, or one network rebuilt), not only when
    the file count changes.
    """
    if not nets.is_dir():
        return []
    return [(f.name, st.st_size, st.st_mtime_ns) for f in sorted(nets.glob("*.pt")) for st in [f.stat()]]


class ZooDataset(torch.utils.data.Dataset):
    r"""A built zoo as a list of :class:`~neuralgraph.NeuralGraph` with accuracies.

    Each graph carries ``y`` (``[1]``, test accuracy in ``[0, 1]``) and ``idx``;
    :attr:`specs` keeps the :class:`NetSpec` of every item for splitting by
    architecture.  Graphs are built with ``hidden_dim=0`` (encoders embed the
    raw weights) and cached in ``<root>/processed.pt``; the cache is keyed by the
    name, size and mtime of every network file, so it is rebuilt when the zoo
    grows or a network is rewritten.

    Use ``torch_geometric.loader.DataLoader`` to batch it.
    """

    def __init__(self, root: str | os.PathLike, limit: Optional[int] = None, cache: bool = True) -> None:
        import neuralgraph as ng

        self.root = Path(root)
        cache_file = self.root / "processed.pt"
        key = _nets_fingerprint(self.root / "nets")
        if cache and limit is None and cache_file.exists():
            payload = torch.load(cache_file, weights_only=False)
            if payload.get("fingerprint") == key:
                self.graphs, self.specs = payload["graphs"], payload["specs"]
                return
        self.graphs, self.specs = [], []
        for rec in load_zoo_records(self.root, limit):
            spec = NetSpec(**rec["spec"])
            model = build_cnn(spec)
            model.load_state_dict(rec["state_dict"])
            graph = ng.to_neural_graph(model.eval(), hidden_dim=0, input_shape=(1, 28, 28))
            graph.y = torch.tensor([rec["test_acc"]], dtype=torch.float32)
            graph.idx = torch.tensor([spec.index])
            self.graphs.append(graph)
            self.specs.append(spec)
        if cache and limit is None:
            _atomic_save({"fingerprint": key, "num_files": len(key), "graphs": self.graphs,
                          "specs": self.specs}, cache_file)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int) -> Any:
        return self.graphs[i]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.graphs)

    @property
    def y(self) -> Tensor:
        """``[N]`` test accuracies."""
        return torch.cat([g.y for g in self.graphs])

    def __repr__(self) -> str:
        return f"ZooDataset({len(self)}, root={str(self.root)!r})"
