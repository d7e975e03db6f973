"""One rule step on a 2.38M-edge MLP graph (784-1024-1024-512-10, hidden 16).

For the Weight Transformer and MLPRule (documented default configs): seconds per
step without and with gradients, FLOP rate, fraction of this machine's plain
sgemm FLOP rate (measured in the same run) and peak memory.  For the
neighbourhood attention alone: our aggregation against the straightforward PyG
scatter/gather formulation, outputs checked equal.

Both rules' no-grad forward and the attention use the fused C kernel
(``neuralgraph.native``) where it builds; the PyTorch path is timed in the same run
(``seconds_per_step_torch``, ``attention_seconds_torch``) with its outputs checked
against the kernel's.  ``NEURALGRAPH_NATIVE=0`` benchmarks the PyTorch path alone.

    python benchmarks/rule_step.py --json
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Any, Dict, List

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PeakMemory, dump, machine, peak_rss_delta_mb, sgemm_gflops, timeit  # noqa: E402

import neuralgraph as ng  # noqa: E402
from neuralgraph import native  # noqa: E402
from neuralgraph.rules import MLPRule, WeightTransformer, fused  # noqa: E402
from neuralgraph.rules.layout import block_layout  # noqa: E402
from neuralgraph.rules.linear_attention import (  # noqa: E402
    neighbourhood_attention,
    phi,
    rope_angles,
    rope_rotate,
    scatter_attention,
)


def wt_flops_per_edge(r: WeightTransformer) -> int:
    """Multiply-adds x 2 of one WeightTransformer edge update (as documented)."""
    d_in, dim, h, d = 1 + r.hidden_dim, r.dim, r.heads, r.head_dim
    proj = 2 * d_in * 4 * dim + 2 * d_in * 3 * dim + 2 * 2 * dim * dim
    attention = 2 * (2 * h * d * d) + 2 * (2 * h * d * d + 2 * dim)  # states + contraction, 2 dirs
    mlps = 2 * 2 * dim * r.ff_dim + 2 * dim * r.head_width + 2 * r.head_width * d_in
    return proj + attention + mlps


def mlp_flops_per_edge(r: MLPRule) -> int:
    layers = [m for m in r.mlp if isinstance(m, nn.Linear)]
    return sum(2 * m.in_features * m.out_features for m in layers)


def make_graph(widths: List[int], hidden: int) -> ng.NeuralGraph:
    torch.manual_seed(0)
    layers: List[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return ng.to_neural_graph(nn.Sequential(*layers[:-1]), hidden_dim=hidden)


def make_rule(name: str, hidden: int) -> nn.Module:
    rule = WeightTransformer(hidden) if name == "wt" else MLPRule(hidden)
    nn.init.normal_(rule.out.weight, std=0.1)  # non-trivial outputs (a fresh rule is the identity)
    return rule


def fwd_bwd(rule: nn.Module, graph: ng.NeuralGraph) -> None:
    dw, dh = rule(graph)
    (dw.sum() + dh.sum()).backward()


def measure_memory(name: str, grad: bool, widths: List[int], hidden: int) -> None:
    """Child-process entry: print the peak extra RSS (MB) of one rule step."""
    graph = make_graph(widths, hidden)
    rule = make_rule(name, hidden)
    block_layout(graph)  # cached structure, not per-step work
    if grad:
        graph.weight = graph.weight.clone().requires_grad_(True)
    gc.collect()
    with PeakMemory() as mem:
        if grad:
            fwd_bwd(rule, graph)
        else:
            with torch.no_grad():
                rule(graph)
    print(round(mem.mb, 1))


def bench_rule(name: str, graph: ng.NeuralGraph, widths: List[int], repeat: int) -> Dict[str, Any]:
    """Timings, FLOP rate and memory of one rule; ``fraction_of_peak`` is added by the caller."""
    rule = make_rule(name, graph.hidden_dim)
    flops = wt_flops_per_edge(rule) if name == "wt" else mlp_flops_per_edge(rule)
    extra: Dict[str, Any] = {}
    with torch.no_grad():
        t, times = timeit(lambda: rule(graph), repeat=repeat, warmup=1)
        uses_fused = (fused.can_run if name == "wt" else fused.mlp_can_run)(rule, graph) is None
        extra["backend"] = "fused C kernel" if uses_fused else f"torch ({native.status()})"
        if uses_fused:  # the PyTorch path in the same run, outputs compared
            out = rule(graph)
            rule.native = False
            t_torch, _ = timeit(lambda: rule(graph), repeat=max(1, repeat - 1), warmup=1)
            ref = rule(graph)
            rule.native = None
            err = max(float((a - b).abs().max()) for a, b in zip(out, ref))
            scale = max(float(b.abs().max()) for b in ref)
            extra.update(seconds_per_step_torch=sig(t_torch), fused_speedup=round(sig(t_torch) / sig(t), 2),
                         fused_max_abs_diff=err, fused_outputs_equal=err <= 1e-5 * max(1.0, scale))
    w = graph.weight
    graph.weight = w.clone().requires_grad_(True)
    t_grad, times_grad = timeit(lambda: fwd_bwd(rule, graph), repeat=max(1, repeat - 1), warmup=1)
    graph.weight = w
    script = os.path.abspath(__file__)
    common = ["--widths", *map(str, widths), "--hidden", str(graph.hidden_dim)]
    mem = peak_rss_delta_mb(script, "--memory-of", name, *common)
    mem_grad = peak_rss_delta_mb(script, "--memory-of", name, "--grad", *common)
    edge_state_mb = graph.num_edges * (1 + graph.hidden_dim) * 4 / 2 ** 20
    total = flops * graph.num_edges
    return {
        "rule": repr(rule),
        # both rules' no-grad forward spreads chunks over this many threads
        "inference_threads": getattr(rule, "workers", None) or torch.get_num_threads(),
        "seconds_per_step": sig(t),
        "seconds_per_step_grad": sig(t_grad),
        "gflop_per_step": round(total / 1e9, 2),
        "gflops_per_s": sig(total / t / 1e9),
        "peak_mem_mb": mem,
        "peak_mem_over_edge_state": round(mem / edge_state_mb, 2),
        "peak_mem_mb_grad": mem_grad,
        "times": [sig(x) for x in times],
        "times_grad": [sig(x) for x in times_grad],
        **extra,
    }


def sig(x: float, digits: int = 5) -> float:
    """``x`` to ``digits`` significant figures: tiny timings keep their precision, unlike round(x, 4)."""
    return float(f"{x:.{digits}g}")


def bench_attention(graph: ng.NeuralGraph, heads: int, head_dim: int, repeat: int) -> Dict[str, Any]:
    e, dim = graph.num_edges, heads * head_dim
    gen = torch.Generator().manual_seed(0)
    q, k, v = (phi(torch.randn(e, 2 * dim, generator=gen)) for _ in range(3))
    ang = rope_angles(graph.edge_pos, tuple(i % 5 for i in range(heads)), head_dim, 100.0)
    qr = rope_rotate(q.view(e, 2, heads, head_dim), ang).view(e, 2 * dim)
    kr = rope_rotate(k.view(e, 2, heads, head_dim), ang).view(e, 2 * dim)
    blocks = block_layout(graph)
    f, b = slice(0, dim), slice(dim, 2 * dim)

    def torch_path() -> Any:
        return neighbourhood_attention(blocks, graph.num_nodes, heads, (qr[:, f], qr[:, b]), (q[:, f], q[:, b]),
                                       (kr[:, f], kr[:, b]), (k[:, f], k[:, b]), (v[:, f], v[:, b]))

    def reference() -> Any:
        a_f = scatter_attention(graph.edge_index, graph.num_nodes, heads, qr[:, f].contiguous(),
                                q[:, f].contiguous(), kr[:, f].contiguous(), k[:, f].contiguous(),
                                v[:, f].contiguous(), forward=True)
        a_b = scatter_attention(graph.edge_index, graph.num_nodes, heads, qr[:, b].contiguous(),
                                q[:, b].contiguous(), kr[:, b].contiguous(), k[:, b].contiguous(),
                                v[:, b].contiguous(), forward=False)
        return a_f, a_b

    def fused_path() -> Any:
        return fused.fused_attention(graph.edge_index, graph.num_nodes, heads, (qr[:, f], qr[:, b]),
                                     (q[:, f], q[:, b]), (kr[:, f], kr[:, b]), (k[:, f], k[:, b]),
                                     (v[:, f], v[:, b]))

    has_fused = fused.available()
    with torch.no_grad():
        t_torch, _ = timeit(torch_path, repeat=repeat)
        t_ours = timeit(fused_path, repeat=repeat)[0] if has_fused else t_torch
        t_ref, _ = timeit(reference, repeat=max(1, repeat - 1))
        ref = reference()
        outs = {"torch": torch_path()}
        if has_fused:
            outs["fused"] = fused_path()
    t_ours, t_ref, t_torch = sig(t_ours), sig(t_ref), sig(t_torch)
    scale = max(float(ref[i].abs().max()) for i in range(2))
    errs = {k: max(float((o[i] - ref[i]).abs().max()) for i in range(2)) for k, o in outs.items()}
    return {
        "heads": heads,
        "head_dim": head_dim,
        "backend": "fused C kernel" if has_fused else f"torch ({native.status()})",
        "attention_seconds": t_ours,
        "attention_seconds_torch": t_torch,
        "reference_attention_seconds": t_ref,
        "attention_speedup": round(t_ref / t_ours, 2),
        "attention_speedup_torch": round(t_ref / t_torch, 2),
        "max_abs_diff": max(errs.values()),
        "max_abs_diff_by_backend": errs,
        "outputs_equal": all(e <= 1e-4 * max(scale, 1.0) for e in errs.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON (default anyway)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--widths", type=int, nargs="+", default=[784, 1024, 1024, 512, 10])
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--memory-of", choices=["wt", "mlp"], help=argparse.SUPPRESS)
    parser.add_argument("--grad", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        measure_memory(args.memory_of, args.grad, args.widths, args.hidden)
        return
    graph = make_graph(args.widths, args.hidden)
    # the peak: the best sgemm rate of 10 runs, before and after the rule timings (this VM's speed
    # drifts by up to ~40% over minutes; the larger value gives the lower, conservative fraction)
    peak_before = sgemm_gflops(repeat=10, best=True)
    wt = make_rule("wt", args.hidden)
    timed = {key: bench_rule(name, graph, args.widths, args.repeat)
             for key, name in (("weight_transformer", "wt"), ("mlp_rule", "mlp"))}
    peak_after = sgemm_gflops(repeat=10, best=True)
    peak = max(peak_before, peak_after)
    for r in timed.values():
        r["fraction_of_peak"] = round(r["gflops_per_s"] / round(peak, 1), 3)
    result: Dict[str, Any] = {
        "benchmark": "rule_step",
        "graph": f"MLP {'-'.join(map(str, args.widths))}",
        "edges": graph.num_edges,
        "hidden_dim": args.hidden,
        "edge_state_mb": round(graph.num_edges * (1 + args.hidden) * 4 / 2 ** 20, 1),
        "sgemm_gflops": round(peak, 1),
        "sgemm_gflops_before_after": [round(peak_before, 1), round(peak_after, 1)],
        "weight_transformer": timed["weight_transformer"],
        "mlp_rule": timed["mlp_rule"],
        "attention": bench_attention(graph, wt.heads, wt.head_dim, args.repeat),
        "torch_scatter": "not installed (optional extra: pip install -e .[scatter])",
        "machine": machine(),
    }
    try:
        import torch_scatter  # noqa: F401

        result["torch_scatter"] = "installed: PyG's scatter uses it automatically in the reference path"
    except ImportError:
        pass
    dump(result)


if __name__ == "__main__":
    main()
