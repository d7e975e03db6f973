"""Why does a grid rule carry over badly to some widths?  Two probes of grown [784, X, Y, 10] MLPs.

``codes``: grow each MLP with its hidden neurons coded by other indices than ``0 .. width - 1``
(:meth:`neuralgraph.meta.grow.GraphFactory.code` with ``node_index``): every other index, the
indices stretched over ``0 .. range - 1``, random subsets of ``0 .. range - 1``.  A rule whose
features follow from a neuron's code in a smooth, width-independent way would grow similar networks
from all of them; one that needs exactly the first ``width`` codes would not.

``layers``: grow each MLP, then retrain its last one or two linear layers with Adam (earlier layers
frozen) and score it again: how much of the gap to a trained network is in the grown first-layer
features and how much in the layers after them.

    python examples/mnist_grid_probe.py codes --rule neuralgraph/checkpoints/mlp_mnist_grid.pt \
        --archs 784-20-50-10 784-30-50-10 784-20-20-10 784-50-20-10 784-100-100-10
    python examples/mnist_grid_probe.py layers --rule neuralgraph/checkpoints/mlp_mnist_grid.pt \
        --archs 784-20-50-10 784-40-50-10 784-50-20-10 784-50-50-10
    python examples/mnist_grid_probe.py codes --quick   # seconds (used by the tests)

Scores are on the validation images the meta-trainer held out (``--split test`` for the test set),
after ``--steps`` rule steps with every edge firing unless ``--fire-rate`` says otherwise.
"""

from __future__ import annotations

import argparse
import copy
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F

from neuralgraph.datasets.architectures import parse_arch
from neuralgraph.datasets.splits import load_split
from neuralgraph.meta import load_rule, unroll
from neuralgraph.meta.grow import GraphFactory, accuracy, hidden_layers
from neuralgraph.meta.trainer import factory_from_config

GRID_RULE = "neuralgraph/checkpoints/mlp_mnist_grid.pt"


def _check_mlp(arch: str) -> None:
    if parse_arch(arch)[0] != "mlp":
        raise ValueError(f"{arch}: the probes take MLP specs like 784-50-50-10")


def node_index_for(factory: GraphFactory, arch: str, layer_maps: Dict[int, torch.Tensor]) -> torch.Tensor:
    """``[|V|]`` neuron indices with hidden layer ``l`` (1 = the first hidden layer) re-indexed by
    ``layer_maps[l]`` (a ``[width]`` tensor: old index -> new index)."""
    g = factory.template(arch)
    index = g.node_pos.clone()
    layers = {layer: (sel, width) for layer, sel, width in hidden_layers(g)}
    for layer, m in layer_maps.items():
        sel, width = layers.get(layer, (None, 0))
        if width != m.numel():
            raise ValueError(f"{arch}: hidden layer {layer} has {width} neurons, the map {m.numel()}")
        index[sel] = m[g.node_pos[sel]]
    return index


def grow_with_code(factory: GraphFactory, rule: Any, arch: str, hidden: torch.Tensor, steps: int,
                   fire_rate: float, seed: int) -> torch.Tensor:
    g = factory.template(arch)
    with torch.no_grad():
        w, _ = unroll(g, rule, (torch.zeros_like(g.weight), hidden), steps, fire_rate, seed, chunk=steps,
                      use_checkpoint=False)
    return w


def probe_codes(factory: GraphFactory, rule: Any, arch: str, data: Any, steps: int, fire_rate: float,
                code_range: int, draws: int, seed: int = 1000) -> Dict[str, Any]:
    """Accuracy of ``arch`` grown from each code variant (see the module docstring)."""
    g = factory.template(arch)
    x, y = data
    _check_mlp(arch)

    def score(maps: Dict[int, torch.Tensor]) -> float:
        w = grow_with_code(factory, rule, arch, factory.code(g, node_index_for(factory, arch, maps)), steps,
                           fire_rate, seed)
        return accuracy(g, factory.network_weight(arch, w), x, y)[0]

    gen = torch.Generator().manual_seed(seed)
    out: Dict[str, Any] = {"arch": arch, "first_codes": score({})}
    for i, (layer, _, width) in enumerate(hidden_layers(g), start=1):
        name = "x" if i == 1 else "y" if i == 2 else f"h{i}"
        out[f"{name}_every_other"] = score({layer: torch.arange(width) * 2})
        if width <= code_range:
            out[f"{name}_stretched"] = score({layer: torch.arange(width) * code_range // width})
            out[f"{name}_random_subsets"] = [score({layer: torch.randperm(code_range, generator=gen)[:width]})
                                             for _ in range(draws)]
    return out


def probe_layers(factory: GraphFactory, rule: Any, arch: str, train: Any, data: Any, steps: int,
                 fire_rate: float, epochs: int, seed: int = 1000) -> Dict[str, Any]:
    """Accuracy of grown ``arch`` and of copies with the last 1 / 2 linear layers retrained by Adam."""
    g = factory.template(arch)
    w = grow_with_code(factory, rule, arch, g.hidden, steps, fire_rate, seed)
    net = factory.module(arch, w)
    xv, yv = data
    xt, yt = train

    def acc(m: torch.nn.Module) -> float:
        with torch.no_grad():
            return float((m(xv).argmax(1) == yv).float().mean())

    out: Dict[str, Any] = {"arch": arch, "grown": acc(net)}
    for k in (1, 2):
        m = copy.deepcopy(net)
        lins = [mod for mod in m if isinstance(mod, torch.nn.Linear)]
        for p in m.parameters():
            p.requires_grad_(False)
        params = [p for mod in lins[-k:] for p in mod.parameters()]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, 1e-3)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), 128):
                b = perm[i:i + 128]
                loss = F.cross_entropy(m(xt[b]), yt[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
        out[f"retrained_last_{k}"] = acc(m)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    from _common import provenance, write_json

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("probe", choices=["codes", "layers"])
    p.add_argument("--rule", default=GRID_RULE)
    p.add_argument("--archs", nargs="+", help="MLP specs (default 784-20-50-10 784-50-50-10; --quick: "
                   "784-10-10-10)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--fire-rate", type=float, default=1.0)
    p.add_argument("--split", default="val", choices=["val", "test"])
    p.add_argument("--range", dest="code_range", type=int, default=100,
                   help="codes of the stretched and random-subset variants lie in 0 .. RANGE - 1")
    p.add_argument("--draws", type=int, default=2, help="random subsets per hidden layer")
    p.add_argument("--epochs", type=int, default=2, help="Adam epochs of the layers probe")
    p.add_argument("--eval-size", type=int, default=0, help="score on the first N images (0 = all)")
    p.add_argument("--train-size", type=int, default=0, help="retrain on the first N images (0 = all)")
    p.add_argument("--json", help="also write the JSON here")
    p.add_argument("--quick", action="store_true", help="500 images, one draw, one epoch on 1,000: seconds")
    a = p.parse_args(argv)
    if a.quick:
        a.archs = a.archs or ["784-10-10-10"]
        a.eval_size, a.train_size, a.epochs, a.draws = 500, 1000, 1, 1
    a.archs = a.archs or ["784-20-50-10", "784-50-50-10"]
    torch.set_num_threads(1)
    rule, cfg = load_rule(a.rule)
    cfg.set_fire_rate(a.fire_rate, "--fire-rate")
    factory = factory_from_config(cfg)
    if factory.hidden_code_range:
        raise SystemExit(f"{a.rule}: the probes re-index absolute codes; this rule uses relative ones "
                         "(grow.hidden_code_range)")
    d = cfg.data
    split = load_split(d.name, d.val_fraction, d.test_fraction, d.split_seed, d.root, flatten=d.flatten)
    x, y = getattr(split, a.split)
    if a.eval_size:
        x, y = x[:a.eval_size], y[:a.eval_size]
    xt, yt = split.train
    if a.train_size:
        xt, yt = xt[:a.train_size], yt[:a.train_size]
    results = []
    for arch in a.archs:
        if a.probe == "codes":
            results.append(probe_codes(factory, rule, arch, (x, y), a.steps, cfg.grow.fire_rate, a.code_range,
                                       a.draws))
        else:
            results.append(probe_layers(factory, rule, arch, (xt, yt), (x, y), a.steps, cfg.grow.fire_rate,
                                        a.epochs))
    write_json({"probe": a.probe, "rule": a.rule, "steps": a.steps, "fire_rate": cfg.grow.fire_rate,
                "split": a.split, "range": a.code_range, "epochs": a.epochs, "results": results,
                **provenance()}, a.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
