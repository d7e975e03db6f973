"""Why a CNN rule fails on a kernel size: feature quality vs. layer compatibility across kernel sizes.

For one ``(m, h)`` and several kernel sizes, grows every ``cnn:m,k,h`` with the rule (no backprop) and reports

* ``grown``: test accuracy of the grown network;
* ``probe``: test accuracy after retraining only the dense layers (fresh init, Adam, ``--probe-steps``
  batches of 128) on the grown conv features -- are the grown features any good?
* ``embed[small->host][layer]``: accuracy of the grown ``host`` network with conv layer ``layer`` taken
  from the grown ``small`` network (:func:`neuralgraph.meta.grow.embed_conv_layer`, taps at equal
  offsets) -- does a layer grown for one kernel size work with the layers grown for another?

    python examples/grow_cnn_kernel_probe.py --rule neuralgraph/checkpoints/wt_mnist_cnn.pt \
        --ks 2 3 4 5 6 --out docs/results/bench/kernel_probe.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F


def run(rule_path: Optional[str] = None, m: float = 0.125, h: int = 16, ks: Sequence[int] = (2, 3, 4, 5, 6),
        test_size: int = 2000, probe_steps: int = 400, seed: int = 0) -> Dict[str, Any]:
    from neuralgraph.datasets import mnist_tensors
    from neuralgraph.demo import SHIPPED_RULE
    from neuralgraph.meta.grow import accuracy, conv_weight_slots, embed_conv_layer, unroll
    from neuralgraph.meta.trainer import factory_from_config, load_rule

    t0 = time.perf_counter()
    rule, cfg = load_rule(rule_path or SHIPPED_RULE)
    fac = factory_from_config(cfg)
    x, y = mnist_tensors(cfg.data.name, "test", flatten=False)
    x, y = x[:test_size], y[:test_size]
    xt, yt = mnist_tensors(cfg.data.name, "train", flatten=False)
    specs = {k: f"cnn:m={m:g},k={k},h={h}" for k in ks}
    nets, grown, probe = {}, {}, {}
    for k, spec in specs.items():
        t = fac.template(spec)
        with torch.no_grad():
            w, _ = unroll(t, rule, fac.fresh(spec, torch.Generator().manual_seed(seed)), cfg.train.steps_max,
                          cfg.grow.fire_rate, seed, use_checkpoint=False)
            nets[k] = fac.network_weight(spec, w)
        grown[k] = accuracy(t, nets[k], x, y)[0]
        probe[k] = _probe(fac.module(spec, w), xt, yt, x, y, probe_steps, seed)
    embed: Dict[str, list] = {}
    for ks_ in ks:
        for kh in ks:
            if ks_ == kh:
                continue
            small, host = fac.template(specs[ks_]), fac.template(specs[kh])
            row = []
            for layer in range(len(conv_weight_slots(small))):
                try:
                    hyb = embed_conv_layer(small, nets[ks_], host, nets[kh], layer)
                except ValueError:
                    row = []
                    break
                row.append(accuracy(host, hyb, x, y)[0])
            if row:
                embed[f"{ks_}->{kh}"] = row
    return {"rule": str(rule_path or SHIPPED_RULE), "m": m, "h": h, "ks": list(ks), "test_size": test_size,
            "probe_steps": probe_steps, "grown": {str(k): v for k, v in grown.items()},
            "probe": {str(k): v for k, v in probe.items()}, "embed": embed,
            "seconds": round(time.perf_counter() - t0, 1)}


def _probe(module: torch.nn.Sequential, xt, yt, x, y, steps: int, seed: int) -> float:
    """Retrain the dense layers after ``Flatten`` from a fresh init on frozen conv features."""
    cut = next(i for i, mod in enumerate(module) if isinstance(mod, torch.nn.Flatten)) + 1
    feat = module[:cut].eval()
    torch.manual_seed(seed)
    head = torch.nn.Sequential(*[torch.nn.Linear(mod.in_features, mod.out_features)
                                 if isinstance(mod, torch.nn.Linear) else mod for mod in module[cut:]])
    opt = torch.optim.Adam(head.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(xt), (128,), generator=gen)
        with torch.no_grad():
            f = feat(xt[idx])
        loss = F.cross_entropy(head(f), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((head(feat(x)).argmax(-1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rule", default=None)
    parser.add_argument("--m", type=float, default=0.125)
    parser.add_argument("--h", type=int, default=16)
    parser.add_argument("--ks", type=int, nargs="+", default=[2, 3, 4, 5, 6])
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--probe-steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="seconds: kernels 3 and 5, 200 images, 5 probe steps")
    parser.add_argument("--out", default=None, help="JSON file")
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    if a.quick:
        a.ks, a.test_size, a.probe_steps = [3, 5], 200, 5
    res = run(a.rule, a.m, a.h, a.ks, a.test_size, a.probe_steps)
    text = json.dumps(res, indent=1)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
