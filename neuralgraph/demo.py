r"""``neuralgraph demo``: grow an unseen MNIST CNN with a shipped rule, against Adam.

The demo's CNN rule (:data:`DEMO_CNN_RULE`, ``neuralgraph/checkpoints/wt_mnist_cnn_k5ref.pt``) is a Weight
Transformer meta-trained on small kernel-5 CNNs of the seed-000 family (26-83K parameters; the general rule
``wt_mnist_cnn.pt`` continued by ``examples/grow_cnn_k5_region.yaml`` and ``grow_cnn_k5_region3.yaml``), then
on one of them, :data:`DEMO_CODE_TILE` (``examples/grow_cnn_k5s3_ref.yaml``).  The demo grows
:data:`DEMO_CNN_ARCH`, a CNN it never saw with 4x the filters and 2x the dense units of that CNN, in 3 rule
steps from all-zero weights with no backprop.  Its hidden neurons are indexed modulo the widths of
:data:`DEMO_CODE_TILE` (``grow.code_tile``), so the wide network grows as copies of that CNN's neurons and
computes its function.  It reports the MNIST test accuracy, parameter count and growing time, checks that
the grown graph converted back with ``to_module()`` gives the same accuracy, and then trains the same
architecture with Adam until it reaches the grown network's accuracy, timing both in the same run.

:data:`SHIPPED_RULE` (``wt_mnist_cnn.pt``) is the embedded general rule for kernels 3-6, the default of the
examples: meta-trained on small CNNs in stages: ``examples/grow_cnn.yaml``, ``grow_cnn_stage2.yaml`` (that
rule is kept as ``wt_mnist_cnn_stage2.pt``), ``grow_cnn_stage4k.yaml``, ``grow_cnn_stage5.yaml``,
``grow_cnn_stage6.yaml``, ``grow_cnn_stage7.yaml``, ``grow_cnn_consistency_w3.yaml``,
``grow_cnn_consistency2.yaml`` (these two with the kernel-consistency loss), ``grow_cnn_regrow.yaml``,
``grow_cnn_regrow2.yaml`` (a sample pool with zero-out) and ``grow_cnn_span.yaml`` (training CNNs that span
the grid's widths).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F

__all__ = ["SHIPPED_RULE", "SHIPPED_IRIS_RULE", "DEMO_CNN_RULE", "DEMO_CNN_ARCH", "DEMO_CODE_TILE", "run_demo",
           "default_arch", "adam_steps", "adam_time_to_accuracy", "format_report"]

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
#: Weight Transformer meta-trained on small MNIST CNNs (``examples/grow_cnn.yaml``, ``grow_cnn_stage2.yaml``,
#: ``grow_cnn_stage4k.yaml``, ``grow_cnn_stage5.yaml``, ``grow_cnn_stage6.yaml``, ``grow_cnn_stage7.yaml``,
#: ``grow_cnn_consistency_w3.yaml``, ``grow_cnn_consistency2.yaml``, ``grow_cnn_regrow.yaml``,
#: ``grow_cnn_regrow2.yaml``, ``grow_cnn_span.yaml``).
SHIPPED_RULE = CHECKPOINTS / "wt_mnist_cnn.pt"
#: The demo's CNN rule: the 3-step kernel-5 region rule (``examples/grow_cnn_k5_region3.yaml``) continued on
#: :data:`DEMO_CODE_TILE` alone (``examples/grow_cnn_k5s3_ref.yaml``).
DEMO_CNN_RULE = CHECKPOINTS / "wt_mnist_cnn_k5ref.pt"
#: The demo's CNN (489,634 parameters), never seen in meta-training.
DEMO_CNN_ARCH = "cnn:m=1,k=5,h=200"
#: The training CNN of :data:`DEMO_CNN_RULE`: the demo's hidden neurons are indexed modulo its widths
#: (chosen on the validation split, docs/results/grow_cnn.md, sessions 18-19).
DEMO_CODE_TILE = "cnn:m=0.25,k=5,h=100"
#: MLPRule meta-trained on iris 4-8-3 and 4-8-8-3 (``examples/iris.yaml``).
SHIPPED_IRIS_RULE = CHECKPOINTS / "mlp_iris.pt"


@torch.no_grad()
def _accuracy(fn: Any, x: torch.Tensor, y: torch.Tensor, batch: int = 2000) -> float:
    correct = 0
    for i in range(0, x.size(0), batch):
        correct += int((fn(x[i:i + batch]).argmax(-1) == y[i:i + batch]).sum())
    return correct / x.size(0)


def adam_steps(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int,
               generator: torch.Generator, batch_size: int = 64) -> None:
    """``steps`` optimiser steps of cross-entropy on random batches of ``(x, y)`` drawn with ``generator``."""
    for _ in range(steps):
        idx = torch.randint(0, x.size(0), (batch_size,), generator=generator)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def adam_time_to_accuracy(model: torch.nn.Module, target: float, data: Dict[str, torch.Tensor],
                          time_limit: float, lr: float = 1e-3, batch_size: int = 64, eval_every: int = 50,
                          seed: int = 0) -> Dict[str, Any]:
    """Train ``model`` with Adam until its accuracy on the held-out probe set reaches ``target``.

    The probe accuracy is checked after 5, 10, 20, 40, ... steps (then every
    ``eval_every``); evaluation time is excluded from the reported training time.  Returns the
    seconds, steps, the final test accuracy and whether the target was reached
    within ``time_limit`` seconds of training.
    """
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = data["x_train"], data["y_train"]
    train_time, steps, reached, probe_acc = 0.0, 0, False, 0.0
    model.train()
    while train_time < time_limit:
        t0 = time.perf_counter()
        # check often at first (a weak target is reached in a few steps), then every `eval_every`
        n = min(eval_every, max(5, steps))
        adam_steps(model, opt, x, y, n, gen, batch_size)
        steps += n
        train_time += time.perf_counter() - t0
        model.eval()
        probe_acc = _accuracy(model, data["x_probe"], data["y_probe"])
        model.train()
        if probe_acc >= target:
            reached = True
            break
    model.eval()
    return {"seconds": train_time, "steps": steps, "reached": reached, "probe_accuracy": probe_acc,
            "test_accuracy": _accuracy(model, data["x_test"], data["y_test"])}


def default_arch(cfg: Any) -> str:
    """An architecture the rule never saw: for CNN rules ``cnn:m=0.5,k=5,h=32`` (no kernel-5 CNN with
    m = 0.5 is trained on; 75.4% in the shipped rule's grid, docs/results/grow_cnn.md -- kernel-4
    CNNs grow to 28-60%), 784-50-50-10 for MNIST MLP rules, a wider two-hidden-layer net for
    tabular rules."""
    if any(a.startswith("cnn") for a in cfg.arch.train):
        if "cnn:m=0.5,k=5,h=32" in cfg.trained_archs():
            raise ValueError(f"rule {cfg.name!r} was meta-trained on cnn:m=0.5,k=5,h=32; pass --arch")
        return "cnn:m=0.5,k=5,h=32"
    if cfg.data.name in ("mnist", "fashion-mnist"):
        return "784-50-50-10"
    first = cfg.arch.train[0].split("-")
    return f"{first[0]}-12-12-{first[-1]}"


def _load_data(cfg: Any, arch: str, data_root: Optional[str], seed: int) -> Dict[str, Any]:
    """Train / probe / test tensors: the official MNIST split (probe = 2,000 training images), or the
    rule's own train / validation / test split for other datasets."""
    from neuralgraph.datasets import mnist_tensors
    from neuralgraph.datasets.splits import load_split

    name = cfg.data.name
    if name in ("mnist", "fashion-mnist"):
        flat = not arch.startswith("cnn")
        x_test, y_test = mnist_tensors(name, "test", root=data_root, flatten=flat)
        x_train, y_train = mnist_tensors(name, "train", root=data_root, flatten=flat)
        probe = torch.randperm(x_train.size(0), generator=torch.Generator().manual_seed(seed))[:2000]
        return {"name": name, "x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
                "x_probe": x_train[probe], "y_probe": y_train[probe], "probe": "2,000 training images"}
    d = cfg.data
    split = load_split(d.name, d.val_fraction, d.test_fraction, d.split_seed, d.root or data_root,
                       flatten=d.flatten)
    return {"name": name, "x_train": split.train[0], "y_train": split.train[1], "x_test": split.test[0],
            "y_test": split.test[1], "x_probe": split.val[0], "y_probe": split.val[1],
            "probe": "the validation split"}


def run_demo(rule_path: Optional[str | Path] = None, arch: Optional[str] = None,
             steps: Optional[int] = None, seed: int = 0, adam_time_limit: float = 60.0,
             data_root: Optional[str] = None, fire_rate: Optional[float] = None,
             code_tile: Optional[str] = None) -> Dict[str, Any]:
    """Grow ``arch`` with the rule at ``rule_path`` (default: the shipped rule) and time Adam.

    ``fire_rate`` (default: the rule's ``grow.fire_rate``) is the fraction of edges each
    rule step updates; 1.0 updates every edge and makes growth deterministic.
    ``code_tile`` (default: the rule's ``grow.code_tile``, usually off) indexes hidden
    neurons modulo that reference architecture's widths.

    ``arch`` defaults to :func:`default_arch` of the rule's config; the data are
    MNIST (flattened for MLP rules) unless the rule was trained on
    Fashion-MNIST.

    Returns a dict of everything measured (see :func:`format_report`).
    """
    from neuralgraph.datasets.architectures import build_arch
    from neuralgraph.meta.grow import unroll
    from neuralgraph.meta.trainer import factory_from_config, load_rule

    path = Path(rule_path) if rule_path is not None else SHIPPED_RULE
    rule, cfg = load_rule(path)
    cfg.set_fire_rate(fire_rate)
    cfg.set_code_tile(code_tile)
    factory = factory_from_config(cfg)
    arch = arch or default_arch(cfg)
    # Adam is stopped on a probe set that is never the test set
    data = _load_data(cfg, arch, data_root, seed)
    x_test, y_test = data["x_test"], data["y_test"]
    n_steps = steps if steps is not None else cfg.train.steps_max

    template = factory.template(arch)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    with torch.no_grad():
        w, h = unroll(template, rule, factory.fresh(arch, gen), n_steps, cfg.grow.fire_rate, seed,
                      use_checkpoint=False)
    grow_seconds = time.perf_counter() - t0
    graph = factory.graph(arch, (w, h))
    graph.weight = factory.network_weight(arch, w)  # fan-in scaling / weight standardisation, if any
    grown_acc = _accuracy(lambda x: graph.forward(x), x_test, y_test)
    module = graph.to_module().eval()
    module_acc = _accuracy(module, x_test, y_test)
    probe_acc = _accuracy(module, data["x_probe"], data["y_probe"])

    torch.manual_seed(seed)
    adam = adam_time_to_accuracy(build_arch(arch, cfg.arch.activation), probe_acc, data, adam_time_limit,
                                 seed=seed)
    return {
        "rule": str(path), "arch": arch, "dataset": data["name"], "probe": data["probe"],
        "trained_on": cfg.trained_archs(),
        "parameters": graph.num_edges, "rule_steps": n_steps, "fire_rate": cfg.grow.fire_rate,
        "code_tile": cfg.grow.code_tile,
        "grow_seconds": grow_seconds, "grown_test_accuracy": grown_acc,
        "to_module_test_accuracy": module_acc, "grown_probe_accuracy": probe_acc,
        "adam": adam,
        "grow_vs_adam_time_ratio": grow_seconds / adam["seconds"] if adam["reached"] else None,
    }


def format_report(r: Dict[str, Any]) -> str:
    adam = r["adam"]
    lines = [
        f"rule:              {r['rule']}",
        f"meta-trained on:   {', '.join(r['trained_on'])}",
        f"grown (unseen):    {r['arch']}  ({r['parameters']:,} parameters)",
        f"rule steps:        {r['rule_steps']} (no backprop; fire rate {r['fire_rate']:g})",
        *([f"hidden neurons:    indexed modulo the widths of {r['code_tile']} (copies of its neurons)"]
          if r.get("code_tile") else []),
        f"growing time:      {r['grow_seconds']:.2f} s",
        f"{r['dataset']} test accuracy: {100 * r['grown_test_accuracy']:.2f}% "
        f"(to_module(): {100 * r['to_module_test_accuracy']:.2f}%)",
    ]
    if adam["reached"]:
        lines.append(f"Adam to the same accuracy ({100 * r['grown_probe_accuracy']:.2f}% on {r['probe']}): "
                     f"{adam['seconds']:.2f} s, {adam['steps']} steps "
                     f"(test accuracy {100 * adam['test_accuracy']:.2f}%)")
        lines.append(f"grow / Adam time: {r['grow_vs_adam_time_ratio']:.2f}")
    else:
        lines.append(f"Adam did not reach {100 * r['grown_probe_accuracy']:.2f}% within {adam['seconds']:.0f} s "
                     f"({adam['steps']} steps, probe accuracy {100 * adam['probe_accuracy']:.2f}%)")
    return "\n".join(lines)
