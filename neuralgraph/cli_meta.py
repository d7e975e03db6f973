"""``neuralgraph meta-train | grow | eval``: meta-train a rule, grow a network with it, map a grid.

::

    neuralgraph meta-train examples/iris.yaml [--resume] [--set train.meta_steps=50]
    torchrun --nproc_per_node 2 -m neuralgraph meta-train examples/iris.yaml
    neuralgraph grow --rule runs/iris/rule.pt --arch 4-16-16-3 --steps 20 --save grown.pt --plot w.png
    neuralgraph eval --rule runs/mnist/rule.pt --grid 20,40,60,80,100 --steps 20 --out docs/figures/grid
    neuralgraph average-rules soup.pt runs/a/rule.pt runs/b/rule.pt [--weights 1,1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, List, Optional, Tuple

__all__ = ["add_parser", "run_meta_train", "run_grow", "run_eval", "run_average", "eval_grid"]

#: growth ``s`` of an ``eval`` grid cell uses seed ``EVAL_SEED + s``
EVAL_SEED = 1000

FIRE_RATE_HELP = ("fraction of edges each rule step updates (default: the rule's training fire rate, "
                  "grow.fire_rate in its config); 1.0 updates every edge")


CODE_TILE_HELP = ("reference architecture whose hidden widths index the grown network's hidden neurons "
                  "(neuron i of the l-th hidden layer -> i mod the reference's l-th width): a network wider "
                  "than the rule's training architectures grows as exact copies of the reference's neurons "
                  "and computes the grown reference's function; a CNN with larger kernels (k=4 for a k=3 "
                  "reference) gets the reference's kernels at equal offsets and zero elsewhere "
                  "(grow.code_tile; default: the rule's config, usually off)")


def _grow_options(args: argparse.Namespace, cfg: Any) -> None:
    """Apply ``--fire-rate`` (checked to lie in (0, 1]) and ``--code-tile`` (checked against the rest of
    the config) to ``cfg.grow``; a bad value exits with a message naming the option."""
    try:
        cfg.set_fire_rate(args.fire_rate, "--fire-rate")
        cfg.set_code_tile(args.code_tile, "--code-tile")
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc


def add_parser(sub: Any) -> None:
    p = sub.add_parser("meta-train", help="meta-train a local rule from a YAML/JSON config")
    p.add_argument("config", help="YAML or JSON MetaConfig")
    p.add_argument("--resume", action="store_true", help="continue from <out_dir>/checkpoint.pt")
    p.add_argument("--quick", action="store_true", help="apply the config's seconds-long `quick` setting")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config entry (repeatable)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (base chain, --quick and --set applied) as YAML and exit")
    p.set_defaults(func=run_meta_train)

    g = sub.add_parser("grow", help="grow a network with a trained rule and report its accuracy")
    g.add_argument("--rule", required=True, help="rule.pt export or trainer checkpoint")
    g.add_argument("--arch", required=True, help="e.g. 784-50-50-10 or cnn:m=1,k=3,h=100")
    g.add_argument("--steps", type=int, default=20, help="rule steps")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--split", default="test", choices=["train", "val", "test"])
    g.add_argument("--save", help="write the grown nn.Sequential (torch.save) here")
    g.add_argument("--plot", help="PNG of weight evolution over rule steps")
    g.add_argument("--json", action="store_true", help="print the trajectory as JSON")
    g.add_argument("--fire-rate", type=float, default=None, help=FIRE_RATE_HELP)
    g.add_argument("--code-tile", default=None, metavar="SPEC", help=CODE_TILE_HELP)
    g.add_argument("--every", type=int, default=1,
                   help="evaluate every N rule steps (step 0 and the last step always; large CNNs "
                        "spend most of the time in evaluation)")
    g.set_defaults(func=run_grow)

    e = sub.add_parser("eval", help="accuracy heatmap of a rule over an [in, X, Y, out] grid")
    e.add_argument("--rule", required=True)
    e.add_argument("--grid", help="X widths[:Y widths], e.g. 20,40,60:20,40 (default: the config's grid)")
    e.add_argument("--steps", type=int, default=20)
    e.add_argument("--samples", type=int, default=1,
                   help=f"grown networks per architecture (seeds {EVAL_SEED}, {EVAL_SEED + 1}, ...); with > 1 "
                        "the JSON also holds each growth's accuracy and the seed spread")
    e.add_argument("--fire-rate", type=float, default=None, help=FIRE_RATE_HELP)
    e.add_argument("--code-tile", default=None, metavar="SPEC", help=CODE_TILE_HELP)
    e.add_argument("--split", default="test", choices=["val", "test"])
    e.add_argument("--out", required=True, help="output prefix: writes PREFIX.png and PREFIX.json")
    e.add_argument("--threads", type=int, default=1)
    e.set_defaults(func=run_eval)

    a = sub.add_parser("average-rules", help="average the parameters of rules of one kind (model soup / SWA)")
    a.add_argument("out", help="where to write the averaged rule export")
    a.add_argument("rules", nargs="+", help="two or more rule.pt exports, snapshots or checkpoints")
    a.add_argument("--weights", help="comma-separated non-negative weights, one per rule (default: equal)")
    a.set_defaults(func=run_average)


def run_meta_train(args: argparse.Namespace) -> int:
    from neuralgraph.meta import distributed as D
    from neuralgraph.meta.config import MetaConfig
    from neuralgraph.meta.trainer import MetaTrainer

    cfg = MetaConfig.from_file(args.config, args.overrides, quick=args.quick)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None, width=120), end="")
        return 0
    D.init_from_env("gloo")
    try:
        trainer = MetaTrainer(cfg)
        hist = trainer.fit(resume=args.resume)
        if D.rank() == 0:
            last = hist[-1] if hist else {}
            print(json.dumps({"name": cfg.name, "meta_steps": trainer.step, "world_size": D.world_size(),
                              "final_loss": last.get("loss"), "wall_s": round(trainer.elapsed, 1),
                              "rule": str(trainer.out_dir / "rule.pt")}))
    finally:
        D.shutdown()
    return 0


def run_average(args: argparse.Namespace) -> int:
    from neuralgraph.meta.average import save_average
    from neuralgraph.meta.checkpoint import CheckpointError

    try:
        weights = None if args.weights is None else [float(v) for v in args.weights.split(",")]
        sources = save_average(args.out, args.rules, weights)
    except (ValueError, CheckpointError, FileNotFoundError) as exc:
        raise SystemExit(f"average-rules: {exc}") from exc
    print(json.dumps({"out": args.out, "averaged_from": sources}))
    return 0


def _data(cfg: Any, split: str) -> Tuple[Any, Any]:
    from neuralgraph.datasets.splits import load_split

    d = cfg.data
    s = load_split(d.name, d.val_fraction, d.test_fraction, d.split_seed, d.root, flatten=d.flatten)
    return getattr(s, split)


def run_grow(args: argparse.Namespace) -> int:
    import torch

    from neuralgraph.datasets.architectures import arch_name
    from neuralgraph.meta.grow import grow_trajectory
    from neuralgraph.meta.trainer import factory_from_config, load_rule

    torch.set_num_threads(1)
    rule, cfg = load_rule(args.rule)
    _grow_options(args, cfg)
    factory = factory_from_config(cfg)
    spec = arch_name(args.arch)
    data = _data(cfg, args.split)
    if args.every < 1:
        raise SystemExit(f"--every must be >= 1, got {args.every}")
    t0 = time.perf_counter()
    rec = grow_trajectory(factory, rule, spec, args.steps, cfg.grow.fire_rate, args.seed, data,
                          every=args.every, track_edges=8 if args.plot else 0)
    secs = time.perf_counter() - t0
    template = factory.template(spec)
    n_params = template.num_edges
    print(f"{spec}: {n_params} parameters, {args.split} accuracy {rec['acc'][-1]:.4f} after {args.steps} "
          f"rule steps (best {max(rec['acc']):.4f} at step {rec['step'][rec['acc'].index(max(rec['acc']))]}), "
          f"grown in {rec['grow_seconds']:.2f} s, {secs:.2f} s incl. evaluation"
          + (f" (hidden neurons indexed modulo {cfg.grow.code_tile}"
             + ("; its kernels embedded, the other taps zero" if template.__dict__.get("tile_kernels") else "")
             + ")" if cfg.grow.code_tile else ""))
    if args.save:
        torch.save(factory.module(spec, rec["state"][0]), args.save)
        print(f"saved grown module to {args.save}")
    if args.plot:
        from neuralgraph.meta.plots import weight_evolution

        weight_evolution(rec["step"], rec["weights"], rec["tracked_layers"], rec["acc"], args.plot,
                         f"{spec} grown by {cfg.rule.name} ({cfg.name})")
        print(f"wrote {args.plot}")
    if args.json:
        print(json.dumps({k: rec[k] for k in ("step", "acc", "loss")}))
    return 0


def eval_grid(rule: Any, cfg: Any, xs: List[int], ys: List[int], steps: int, samples: int,
              data: Tuple[Any, Any], progress: bool = True,
              per_seed: Optional[List[List[List[float]]]] = None) -> List[List[float]]:
    """Mean accuracy ``[iy][ix]`` of ``[in, X, Y, out]`` networks grown ``steps`` steps.

    Growth ``s`` of a cell uses seed ``EVAL_SEED + s``. ``per_seed``, if given (an empty list), receives the
    single growths' accuracies ``[iy][ix][s]``."""
    import torch
    from tqdm import tqdm

    from neuralgraph.meta.grow import accuracy, unroll
    from neuralgraph.meta.trainer import factory_from_config

    factory = factory_from_config(cfg)
    x, y = data
    n_in, n_out = int(x[0].numel()), int(y.max()) + 1
    vals = [[0.0] * len(xs) for _ in ys]
    if per_seed is not None:
        per_seed[:] = [[[] for _ in xs] for _ in ys]
    cells = [(iy, ix) for iy in range(len(ys)) for ix in range(len(xs))]
    with torch.no_grad():
        for iy, ix in tqdm(cells, disable=not progress, desc="eval grid"):
            spec = f"{n_in}-{xs[ix]}-{ys[iy]}-{n_out}"
            accs = []
            for s in range(samples):
                seed = EVAL_SEED + s
                gen = torch.Generator().manual_seed(seed)
                w, _ = unroll(factory.template(spec), rule, factory.fresh(spec, gen), steps,
                              cfg.grow.fire_rate, seed, chunk=steps, use_checkpoint=False)
                accs.append(accuracy(factory.template(spec), factory.network_weight(spec, w), x, y)[0])
            factory.forget(spec)
            vals[iy][ix] = sum(accs) / len(accs)
            if per_seed is not None:
                per_seed[iy][ix] = accs
    return vals


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from neuralgraph.datasets.architectures import parse_arch
    from neuralgraph.meta.plots import grid_heatmap, output_path
    from neuralgraph.meta.trainer import load_rule

    torch.set_num_threads(args.threads)
    rule, cfg = load_rule(args.rule)
    _grow_options(args, cfg)
    if args.grid:
        xs_s, _, ys_s = args.grid.partition(":")
        xs = [int(v) for v in xs_s.split(",")]
        ys = [int(v) for v in ys_s.split(",")] if ys_s else xs
    else:
        xs, ys = list(cfg.arch.grid_x), list(cfg.arch.grid_y or cfg.arch.grid_x)
    if not xs or not ys:
        raise SystemExit("eval: give --grid or set arch.grid_x/grid_y in the rule's config")
    data = _data(cfg, args.split)
    t0 = time.perf_counter()
    per_seed: List[List[List[float]]] = []
    vals = eval_grid(rule, cfg, xs, ys, args.steps, args.samples, data, per_seed=per_seed)
    secs = time.perf_counter() - t0
    train = []
    for spec in cfg.arch.train:
        kind, kw = parse_arch(spec)
        if kind == "mlp" and len(kw["sizes"]) == 4:
            train.append((kw["sizes"][1], kw["sizes"][2]))
    flat = [v for row in vals for v in row]
    summary = {"rule": str(args.rule), "config": cfg.name, "steps": args.steps, "samples": args.samples,
               "fire_rate": cfg.grow.fire_rate, "code_tile": cfg.grow.code_tile,
               "split": args.split, "xs": xs, "ys": ys, "acc": vals, "train_archs": train,
               "mean": sum(flat) / len(flat), "best": max(flat), "worst": min(flat), "seconds": round(secs, 1)}
    if args.samples > 1:  # the seed spread: per cell max - min over the growths, and each growth's accuracy
        spread = [max(a) - min(a) for row in per_seed for a in row]
        summary.update(acc_per_seed=per_seed, seeds=[EVAL_SEED + s for s in range(args.samples)],
                       spread_mean=sum(spread) / len(spread), spread_max=max(spread))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    output_path(out, ".json").write_text(json.dumps(summary, indent=1))
    grid_heatmap(vals, xs, ys, train, output_path(out, ".png"),
                 f"{cfg.name}: {args.split} accuracy after {args.steps} rule steps\n"
                 f"mean {summary['mean']:.3f}, best {summary['best']:.3f}; red = training architectures")
    print(json.dumps({k: summary[k] for k in ("mean", "best", "worst", "spread_mean", "spread_max", "seconds")
                      if k in summary}))
    print(f"wrote {output_path(out, '.png')} and {output_path(out, '.json')}")
    return 0
