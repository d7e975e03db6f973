r"""Generalization prediction on a model zoo: weights -> test accuracy.

Three predictors are trained on the same split and scored by Kendall's
:math:`\tau` between predicted and true test accuracy on a split of
*held-out architectures* (e.g. every network with 5x5 kernels):

* ``ng_gnn``: :class:`~neuralgraph.nn.NGGNN` on the neural graphs;
* ``ng_t``: :class:`~neuralgraph.nn.NGTransformer` on the neural graphs;
* ``statnn``: the StatNN baseline (`Unterthiner et al., 2020
  <https://arxiv.org/abs/2002.11448>`_): mean, variance and 5 quantiles of the
  weights and biases of every layer -> ``GradientBoostingRegressor``.

Run with ``neuralgraph zoo-predict examples/zoo.yaml`` (or
``examples/predict_generalization.py``).
"""

from __future__ import annotations

import copy
import json
import os
import resource
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["PredictConfig", "stat_features", "split_by_holdout", "kendall_tau", "run_prediction",
           "build_encoder", "MODELS"]

MODELS = ("statnn", "ng_gnn", "ng_t")


@dataclass
class PredictConfig:
    """Settings of ``zoo-predict`` (the ``predict:`` section of the YAML file).

    Args:
        zoo_root (str, optional): built zoo folder (default: the ``zoo.root``).
        out (str): folder for ``<model>.json`` results.
        models (list of str): any of :data:`MODELS`.
        seeds (list of int): one full training run per seed.
        holdout (str): ``"<spec field>=<value>"``: the test split (held-out
            architectures), e.g. ``"kernel_size=5"``, or ``"random"``.
        val_fraction (float): part of the training split used for model
            selection (best validation :math:`\tau` epoch).
        epochs (int): neural-model training epochs.
        batch_size (int): graphs per batch.
        lr (float): AdamW learning rate.
        weight_decay (float): AdamW weight decay.
        hidden (int): encoder width.
        layers (int): encoder layers.
        heads (int): NG-T heads.
        attention (str): NG-T attention, ``"linear"`` or ``"softmax"``.
        num_probes (int): probe inputs (``0``: off).
        gbr_estimators (int): StatNN boosting rounds.
        num_threads (int): ``torch.set_num_threads``.
        limit (int, optional): use only the first ``limit`` networks.
    """

    zoo_root: Optional[str] = None
    out: str = "runs/zoo_predict"
    models: List[str] = field(default_factory=lambda: list(MODELS))
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    holdout: str = "kernel_size=5"
    val_fraction: float = 0.1
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: int = 32
    layers: int = 3
    heads: int = 4
    attention: str = "linear"
    num_probes: int = 0
    gbr_estimators: int = 300
    num_threads: int = 1
    limit: Optional[int] = None

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "PredictConfig":
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"unknown PredictConfig keys {bad}; known: {sorted(known)}")
        cfg = cls(**d)
        unknown = [m for m in cfg.models if m not in MODELS]
        if unknown:
            raise ValueError(f"unknown models {unknown}; use any of {MODELS}")
        return cfg


# ---------------------------------------------------------------------------- StatNN
_QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _stats(t: Tensor) -> List[float]:
    t = t.double().flatten()
    q = torch.quantile(t, torch.tensor(_QUANTILES, dtype=torch.float64))
    return [float(t.mean()), float(t.var(unbiased=False))] + q.tolist()


def stat_features(graph: Any, max_layers: int = 4) -> np.ndarray:
    """StatNN features of one network: 7 statistics of the weights and 7 of the
    biases of each parametrised layer, plus a presence flag.

    Layers are aligned as ``[first, second, ..., (padding), last]`` so the
    classifier layer always lands in the last slot whatever the depth.

    Shapes:
        - **output:** ``[max_layers * 15]``
    """
    layer = graph.edge_pos[:, 0]
    kind = graph.edge_kind
    n_layers = int(layer.max()) + 1
    if n_layers > max_layers:
        raise ValueError(f"stat_features: network has {n_layers} layers > max_layers={max_layers}")
    slots = list(range(n_layers - 1)) + [max_layers - 1]
    feats = np.zeros((max_layers, 15))
    for lay, slot in zip(range(n_layers), slots):
        w = graph.weight[(layer == lay) & (kind == 0)]
        b = graph.weight[(layer == lay) & (kind == 1)]
        feats[slot, :7] = _stats(w)
        if b.numel():
            feats[slot, 7:14] = _stats(b)
        feats[slot, 14] = 1.0
    return feats.reshape(-1)


# ---------------------------------------------------------------------------- splits, metric
def split_by_holdout(specs: Sequence[Any], holdout: str, val_fraction: float, seed: int,
                     ) -> Tuple[List[int], List[int], List[int]]:
    """``(train, val, test)`` index lists; test = networks matching ``holdout``."""
    n = len(specs)
    g = np.random.default_rng(seed)
    if holdout == "random":
        perm = g.permutation(n)
        n_test = n // 5
        test, rest = sorted(perm[:n_test].tolist()), perm[n_test:].tolist()
    else:
        if "=" not in holdout:
            raise ValueError(f"holdout must be 'random' or 'field=value', got {holdout!r}")
        key, value = holdout.split("=", 1)
        if not hasattr(specs[0], key):
            raise ValueError(f"holdout field {key!r} is not a NetSpec field")
        match = [str(getattr(s, key)) == value for s in specs]
        test = [i for i in range(n) if match[i]]
        rest = [i for i in range(n) if not match[i]]
        rest = [rest[i] for i in g.permutation(len(rest))]
    if not test or len(rest) < 2:
        raise ValueError(f"holdout {holdout!r} gives {len(test)} test and {len(rest)} train networks")
    n_val = max(1, int(round(val_fraction * len(rest))))
    return sorted(rest[n_val:]), sorted(rest[:n_val]), test


def kendall_tau(pred: Sequence[float] | np.ndarray, true: Sequence[float] | np.ndarray) -> float:
    """Kendall's :math:`\\tau_b` (scipy)."""
    from scipy.stats import kendalltau

    if len(pred) < 2:
        return float("nan")
    return float(kendalltau(np.asarray(pred), np.asarray(true)).statistic)


# ---------------------------------------------------------------------------- neural models
def build_encoder(name: str, cfg: PredictConfig, weight_scale: float, delta: float) -> nn.Module:
    from neuralgraph.nn import NGGNN, NGTransformer

    if name == "ng_gnn":
        return NGGNN(cfg.hidden, cfg.layers, 1, delta=delta, num_probes=cfg.num_probes,
                     input_shape=(1, 28, 28), weight_scale=weight_scale)
    if name == "ng_t":
        return NGTransformer(cfg.hidden, cfg.layers, 1, heads=cfg.heads, attention=cfg.attention,
                             num_probes=cfg.num_probes, input_shape=(1, 28, 28), weight_scale=weight_scale)
    raise ValueError(f"unknown encoder {name!r}")


@torch.no_grad()
def _predict(model: nn.Module, graphs: Sequence[Any], batch_size: int) -> np.ndarray:
    from torch_geometric.loader import DataLoader

    model.eval()
    out = [model(b).view(-1) for b in DataLoader(list(graphs), batch_size=batch_size)]
    return torch.cat(out).numpy()


def _train_neural(name: str, cfg: PredictConfig, graphs: Sequence[Any], split: Tuple[List[int], ...],
                  seed: int, progress: bool) -> Dict[str, Any]:
    from torch_geometric.loader import DataLoader
    from tqdm import tqdm

    from neuralgraph.nn import log_degree_delta

    train, val, test = split
    torch.manual_seed(seed)
    tr = [graphs[i] for i in train]
    w_all = torch.cat([g.weight for g in tr])
    model = build_encoder(name, cfg, float(w_all.std()), log_degree_delta(tr))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    y_val = np.array([float(graphs[i].y) for i in val])
    best = (-2.0, 0, copy.deepcopy(model.state_dict()))
    loader = DataLoader(tr, batch_size=cfg.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    history = []
    for epoch in tqdm(range(cfg.epochs), desc=f"{name} seed {seed}", disable=not progress):
        model.train()
        tot = 0.0
        for batch in loader:
            loss = nn.functional.mse_loss(model(batch).view(-1), batch.y.view(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            tot += float(loss.detach()) * batch.num_graphs
        sched.step()
        tau_val = kendall_tau(_predict(model, [graphs[i] for i in val], 64), y_val)
        history.append({"epoch": epoch, "train_mse": tot / len(tr), "val_tau": tau_val})
        if tau_val > best[0]:
            best = (tau_val, epoch, copy.deepcopy(model.state_dict()))
    model.load_state_dict(best[2])
    pred = _predict(model, [graphs[i] for i in test], 64)
    return {"pred": pred, "best_epoch": best[1], "val_tau": best[0], "history": history,
            "num_params": sum(p.numel() for p in model.parameters())}


def _train_statnn(cfg: PredictConfig, graphs: Sequence[Any], split: Tuple[List[int], ...],
                  seed: int) -> Dict[str, Any]:
    from sklearn.ensemble import GradientBoostingRegressor

    train, val, test = split
    feats = np.stack([stat_features(g) for g in graphs])
    y = np.array([float(g.y) for g in graphs])
    gbr = GradientBoostingRegressor(n_estimators=cfg.gbr_estimators, max_depth=3, learning_rate=0.05,
                                    subsample=0.8, random_state=seed)
    gbr.fit(feats[train], y[train])
    return {"pred": gbr.predict(feats[test]), "val_tau": kendall_tau(gbr.predict(feats[val]), y[val])}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_prediction(cfg: PredictConfig, progress: bool = True,
                   log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Train and score every model of ``cfg.models`` for every seed.

    Writes ``<out>/<model>.json`` (per-seed :math:`\\tau`, times, peak RSS) and
    returns ``{"summary": {model: {"tau_mean", "tau_std", ...}}, "runs": ...}``.
    """
    from neuralgraph.datasets.zoo import ZooDataset

    torch.set_num_threads(cfg.num_threads)
    if cfg.zoo_root is None:
        raise ValueError("PredictConfig.zoo_root is not set")
    t0 = time.time()
    ds = ZooDataset(cfg.zoo_root, limit=cfg.limit)
    graphs, specs = ds.graphs, ds.specs
    load_s = time.time() - t0
    rss_loaded = _rss_mib()
    if log:
        log(f"loaded {len(graphs)} networks from {cfg.zoo_root} in {load_s:.1f}s (peak RSS {rss_loaded:.0f} MiB)")
    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: Dict[str, Any] = {}
    runs: Dict[str, Any] = {}
    for name in cfg.models:
        per_seed = []
        for seed in cfg.seeds:
            split = split_by_holdout(specs, cfg.holdout, cfg.val_fraction, seed)
            t = time.time()
            res = (_train_statnn(cfg, graphs, split, seed) if name == "statnn"
                   else _train_neural(name, cfg, graphs, split, seed, progress))
            secs = time.time() - t
            y_test = [float(graphs[i].y) for i in split[2]]
            tau = kendall_tau(res["pred"], y_test)
            entry = {"seed": seed, "tau": tau, "val_tau": res["val_tau"], "train_seconds": secs,
                     "n_train": len(split[0]), "n_val": len(split[1]), "n_test": len(split[2]),
                     "peak_rss_mib": _rss_mib()}
            entry.update({k: res[k] for k in ("best_epoch", "num_params", "history") if k in res})
            per_seed.append(entry)
            if log:
                log(f"{name} seed {seed}: tau={tau:.4f} (val {res['val_tau']:.4f}) in {secs:.1f}s, "
                    f"peak RSS {entry['peak_rss_mib']:.0f} MiB")
        taus = np.array([r["tau"] for r in per_seed])
        summary[name] = {"tau_mean": float(taus.mean()), "tau_std": float(taus.std(ddof=0)),
                         "taus": taus.tolist(),
                         "train_seconds_mean": float(np.mean([r["train_seconds"] for r in per_seed])),
                         "peak_rss_mib": max(r["peak_rss_mib"] for r in per_seed),
                         "rss_after_load_mib": rss_loaded, "n_networks": len(graphs),
                         "holdout": cfg.holdout}
        runs[name] = per_seed
        payload = {"config": asdict(cfg), "summary": summary[name], "runs": per_seed,
                   "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
        tmp = out_dir / f"{name}.json.tmp"
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, out_dir / f"{name}.json")
    return {"summary": summary, "runs": runs}
