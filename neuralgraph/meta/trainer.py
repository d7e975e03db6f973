r"""The meta-trainer: learn a local rule that grows working networks.

One meta-step (seed 001, BACKGROUND §3):

1. ``T`` rule steps from the curriculum (``steps_min`` -> ``steps_max``);
2. for every training architecture (this rank's share): a starting state, fresh
   (zero or small random weights, position-code hidden states) or drawn from
   the :class:`~neuralgraph.meta.pool.SamplePool`, optionally zero-out
   perturbed;
3. unroll ``T`` stochastic rule steps with gradient checkpointing over chunks;
4. loss = cross-entropy of the grown network's *logits* on a data batch;
   gradients reach the rule only (BPTT through all steps); per-architecture
   gradient clipping, averaged over architectures and ranks;
5. an Adam step, unless the loss is NaN/inf or exceeds ``explode_factor``
   times its running mean -- then the step is rolled back (skipped, and the
   rule/optimizer restored if the update itself produced non-finite values).

All randomness comes from one seeded ``torch.Generator`` per rank, saved in
checkpoints, so ``--resume`` continues bit-for-bit (same thread count).

Testing aid: the environment variable ``NEURALGRAPH_META_STEP_DELAY`` (seconds)
sleeps after every meta-step, so crash/resume tests can kill a run mid-way.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import neuralgraph.rules as rules
from neuralgraph.datasets.splits import Split, load_split
from neuralgraph.meta import distributed as D
from neuralgraph.meta.checkpoint import FORMAT, VERSION, CheckpointError, atomic_save, config_diff, load_checkpoint
from neuralgraph.meta.config import MetaConfig
from neuralgraph.meta.grow import GraphFactory, accuracy, conv_weight_slots, embed_conv_layer, logits, unroll
from neuralgraph.meta.perturb import zero_out
from neuralgraph.meta.pool import SamplePool
from neuralgraph.meta.widen import widen_rule
from neuralgraph.positional import nested_code_map

__all__ = ["MetaTrainer", "build_rule", "load_rule", "load_start_rule", "factory_from_config", "RULE_FORMAT"]

RULE_FORMAT = "neuralgraph-rule"


def build_rule(cfg: MetaConfig) -> nn.Module:
    """Instantiate ``cfg.rule`` (registered name or ``pkg.mod:Class``) with its kwargs."""
    cls = rules.get(cfg.rule.name)
    kwargs = dict(cfg.rule.kwargs)
    kwargs.setdefault("hidden_dim", cfg.grow.hidden_dim)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"cannot build rule {cfg.rule.name!r} with kwargs {kwargs}: {exc}") from exc


#: Training images a data-conditioned rule sees (the first ones of the training split, fixed).
PROBE_SIZE = 256


def load_start_rule(rule: nn.Module, start: nn.Module) -> None:
    """Load the trained rule ``start`` into ``rule`` (``train.init_rule``).

    The state dicts must match, except that a data-conditioned Weight Transformer takes a
    rule without data conditioning: its data projection keeps its zero initialisation, so
    it computes ``start``'s update exactly until training moves it.

    Raises:
        RuntimeError: the parameters do not match (``load_state_dict``'s message).
    """
    state = start.state_dict()
    if getattr(rule, "data_conditioned", False) and not getattr(start, "data_conditioned", False):
        for k, v in rule.state_dict().items():
            if k.startswith("data_proj."):  # only the Weight Transformer has one
                if v.any():
                    raise RuntimeError(f"{k} of the data-conditioned rule is not zero; it would change "
                                       f"the loaded rule's update")
                state[k] = v
    rule.load_state_dict(state)


def factory_from_config(cfg: MetaConfig, split: Optional[Split] = None) -> GraphFactory:
    """The run's :class:`GraphFactory`; for a data-conditioned rule (``rule.kwargs.data_conditioned``)
    it carries the first :data:`PROBE_SIZE` training inputs (and, for ``coactivation: labels``, their
    labels) as the rule's probe batch (training, growth and evaluation alike; ``split`` is loaded from
    ``cfg.data`` if not given)."""
    g = cfg.grow
    factory = GraphFactory(g.hidden_dim, g.hidden_init, g.code_base, g.input_grid, g.weight_init, g.weight_std,
                           cfg.arch.activation, None if cfg.data.flatten else (1, 28, 28), g.fan_in_scaling,
                           g.weight_standardization, g.hidden_bias, g.kernel_offsets, g.hidden_code_range,
                           g.code_tile)
    if cfg.rule.kwargs.get("data_conditioned"):
        d = cfg.data
        split = split or load_split(d.name, d.val_fraction, d.test_fraction, d.split_seed, d.root,
                                    flatten=d.flatten)
        labels = cfg.rule.kwargs.get("coactivation") == "labels"
        factory.set_data(split.train[0][:PROBE_SIZE], split.train[1][:PROBE_SIZE] if labels else None)
    return factory


def load_rule(path: str | Path) -> Tuple[nn.Module, MetaConfig]:
    """A trained rule and its config from a trainer checkpoint or a ``rule.pt`` export."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"rule file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"rule file {path} is corrupt or unreadable ({exc})") from exc
    if not isinstance(obj, dict) or obj.get("format") not in (FORMAT, RULE_FORMAT):
        raise CheckpointError(f"{path} is neither a meta-training checkpoint nor a rule export")
    cfg = MetaConfig.from_dict(obj["config"])
    rule = build_rule(cfg)
    try:
        rule.load_state_dict(obj["rule_state"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: rule weights do not fit {cfg.rule.name} "
                              f"{cfg.rule.kwargs}: {exc}") from exc
    return rule.eval(), cfg


def _hidden_map(old: MetaConfig, new: MetaConfig) -> Optional[List[int]]:
    """For ``train.init_widen`` with a wider position code (``grow.hidden_dim``): where each
    channel of ``old``'s code sits in ``new``'s (``None`` when the width is unchanged)."""
    go, gn = old.grow, new.grow
    if go.hidden_dim == gn.hidden_dim:
        return None
    if go.hidden_init != gn.hidden_init:
        raise ValueError(f"grow.hidden_init {go.hidden_init!r} -> {gn.hidden_init!r}: only the width "
                         f"of the position code may change")
    return nested_code_map(go.hidden_dim, gn.hidden_dim, gn.hidden_init, go.code_base, gn.code_base)


class MetaTrainer:
    """Meta-trains ``cfg.rule`` on ``cfg.arch.train`` (see module docstring).

    Args:
        cfg (MetaConfig): the run.
        split (Split, optional): data (default: ``load_split(cfg.data...)``).
    """

    def __init__(self, cfg: MetaConfig, split: Optional[Split] = None) -> None:
        self.cfg = cfg
        t = cfg.train
        torch.set_num_threads(max(1, t.threads))
        self.rank, self.world = D.rank(), D.world_size()
        torch.manual_seed(t.seed)
        self.rule = build_rule(cfg)
        if t.out_init_std > 0:
            last = [m for m in self.rule.modules() if isinstance(m, nn.Linear)][-1]
            if t.out_init_layer == "out":
                last = getattr(self.rule, "out", None)
                if not isinstance(last, nn.Linear):
                    raise ValueError(f"train.out_init_layer='out' needs rule.out to be an nn.Linear "
                                     f"({type(self.rule).__name__} has none)")
            with torch.no_grad():
                last.weight.normal_(0.0, t.out_init_std)
        if t.init_rule:
            start, start_cfg = load_rule(t.init_rule)
            try:
                if t.init_widen:
                    widen_rule(start, self.rule, _hidden_map(start_cfg, cfg))
                else:
                    load_start_rule(self.rule, start)
            except (RuntimeError, ValueError) as exc:
                raise CheckpointError(f"train.init_rule {t.init_rule} does not fit rule {cfg.rule.name} "
                                      f"{cfg.rule.kwargs}: {exc}") from exc
        D.broadcast_module(self.rule)
        self.params = [p for p in self.rule.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(self.params, lr=t.lr, weight_decay=t.weight_decay)
        d = cfg.data
        self.split = split or load_split(d.name, d.val_fraction, d.test_fraction, d.split_seed, d.root,
                                         flatten=d.flatten)
        self.factory = factory_from_config(cfg, self.split)
        archs = list(cfg.arch.train)
        self.archs = archs[self.rank::self.world] if len(archs) >= self.world else archs
        self.pairs = [tuple(p) for p in t.kernel_consistency]
        for small, host in self.pairs:
            self._check_pair(small, host)
        self.pool = SamplePool(t.pool_size, t.pool_fresh_prob)
        self.gen = torch.Generator().manual_seed(t.seed * 1000003 + self.rank)
        self.step = 0
        self.history: List[Dict[str, Any]] = []
        self.ema: Optional[float] = None
        self.last_penalty = 0.0  # the fixed-point penalty of the last grow_loss call
        self.elapsed = 0.0
        self.out_dir = Path(t.out_dir)

    # ---------------------------------------------------------------- schedule ----
    def num_rule_steps(self, step: int) -> int:
        t = self.cfg.train
        ramp = max(1, int(t.curriculum_fraction * t.meta_steps))
        if step < ramp:
            return t.steps_min + (t.steps_max - t.steps_min) * step // ramp
        lo = max(t.steps_min, t.steps_max - t.steps_jitter)
        return int(torch.randint(lo, t.steps_max + 1, (1,), generator=self.gen))

    def lr_at(self, step: int) -> float:
        t = self.cfg.train
        frac = min(1.0, step / max(1, t.meta_steps))
        return t.lr * (t.lr_final_fraction + (1 - t.lr_final_fraction) * 0.5 * (1 + math.cos(math.pi * frac)))

    def batch(self) -> Tuple[Tensor, Tensor]:
        x, y = self.split.train
        bs = self.cfg.data.batch_size
        if bs <= 0 or bs >= x.size(0):
            return x, y
        idx = torch.randint(x.size(0), (bs,), generator=self.gen)
        return x[idx], y[idx]

    # ---------------------------------------------------------------- one step ----
    def grow_loss(self, spec: str, state: Tuple[Tensor, Tensor], steps: int, seed: int,
                  x: Tensor, y: Tensor) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        """Loss after growing ``spec`` from ``state`` for ``steps`` steps (differentiable): the
        cross-entropy averaged over the last ``train.loss_steps`` steps, plus the fixed-point
        penalty ``train.update_penalty`` (whose value is left in ``self.last_penalty``)."""
        t, g = self.cfg.train, self.cfg.grow
        template = self.factory.template(spec)
        extra = min(t.loss_steps, steps) - 1
        w, h = unroll(template, self.rule, state, steps - extra, g.fire_rate, seed, t.checkpoint_chunk,
                      t.grad_checkpoint)
        net = self.factory.network_weight
        loss = F.cross_entropy(logits(template, net(spec, w), x), y)
        penalty = []
        self.last_penalty = 0.0
        for i in range(extra):
            w2, h2 = unroll(template, self.rule, (w, h), 1, g.fire_rate, seed + 1 + i, 1, t.grad_checkpoint)
            if t.update_penalty > 0:
                d = (w2 - w).pow(2).mean()
                if t.update_penalty_hidden > 0:
                    d = d + t.update_penalty_hidden * (h2 - h).pow(2).mean()
                penalty.append(torch.log1p(d / t.update_penalty_eps))
            w, h = w2, h2
            loss = loss + F.cross_entropy(logits(template, net(spec, w), x), y)
        loss = loss / (extra + 1)
        if penalty:
            pen = t.update_penalty * torch.stack(penalty).mean()
            self.last_penalty = float(pen.detach())
            loss = loss + pen
        return loss, (w, h)

    def _check_pair(self, small: str, host: str) -> None:
        ts, th = self.factory.template(small), self.factory.template(host)
        n = len(conv_weight_slots(ts))
        if n == 0 or n != len(conv_weight_slots(th)):
            raise ValueError(f"train.kernel_consistency pair {small!r}, {host!r}: need two CNNs with the same "
                             f"number of conv layers, got {n} and {len(conv_weight_slots(th))}")
        for layer in range(n):  # raises a ValueError naming the layer if the kernels do not nest
            embed_conv_layer(ts, ts.weight, th, th.weight, layer)

    def consistency_loss(self, small: str, host: str, steps: int, x: Tensor,
                         y: Tensor) -> Tuple[Tensor, float]:
        """Own loss of a grown ``(small, host)`` pair plus ``consistency_weight`` times
        the host's mean loss with each conv layer taken from the small network.
        Returns ``(loss, hybrid loss)``."""
        t = self.cfg.train
        grown = {}
        own = []
        for spec in (small, host):
            seed = int(torch.randint(2 ** 31, (1,), generator=self.gen))
            loss, (w, _) = self.grow_loss(spec, self.factory.fresh(spec, self.gen), steps, seed, x, y)
            own.append(loss)
            grown[spec] = self.factory.network_weight(spec, w)
        ts, th = self.factory.template(small), self.factory.template(host)
        hyb = [F.cross_entropy(logits(th, embed_conv_layer(ts, grown[small], th, grown[host], layer), x), y)
               for layer in range(len(conv_weight_slots(ts)))]
        hybrid = torch.stack(hyb).mean()
        return (own[0] + own[1]) / 2 + t.consistency_weight * hybrid, float(hybrid.detach())

    def meta_step(self) -> Dict[str, Any]:
        t = self.cfg.train
        t0 = time.perf_counter()
        steps = self.num_rule_steps(self.step)
        x, y = self.batch()
        grads = [torch.zeros_like(p) for p in self.params]
        losses, norms, penalties = [], [], []
        archs = self.archs
        if 0 < t.archs_per_step < len(archs):
            pick = torch.randperm(len(archs), generator=self.gen)[:t.archs_per_step]
            archs = [archs[int(i)] for i in pick.sort()[0]]
        n_items = len(archs) + (1 if self.pairs else 0)

        def add(loss: Tensor) -> float:
            raw = torch.autograd.grad(loss, self.params, allow_unused=True)
            g = [torch.zeros_like(p) if gi is None else gi for gi, p in zip(raw, self.params)]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(gi) for gi in g]))
            scale = min(1.0, t.clip_norm / (float(norm) + 1e-6)) if t.clip_norm > 0 else 1.0
            for acc, gi in zip(grads, g):
                acc.add_(gi, alpha=scale / n_items)
            return float(norm)

        for spec in archs:
            start, slot = self.pool.draw(spec, self.gen)
            pooled = start is not None
            if start is None:
                start = self.factory.fresh(spec, self.gen)
                if t.code_subset_prob > 0 and float(torch.rand((), generator=self.gen)) < t.code_subset_prob:
                    start = (start[0], self.factory.subset_code(spec, self.gen, t.code_subset_range))
            zeroed = bool(pooled and t.zero_out_prob > 0
                          and float(torch.rand((), generator=self.gen)) < t.zero_out_prob)
            if zeroed:
                layer = self.factory.template(spec).edge_pos[:, 0]
                start = (zero_out(start[0], layer, t.zero_out_fraction, self.gen)[0], start[1])
            seed = int(torch.randint(2 ** 31, (1,), generator=self.gen))
            loss, grown = self.grow_loss(spec, start, steps, seed, x, y)
            if t.update_penalty > 0:
                penalties.append(self.last_penalty)
            norms.append(add(loss))
            if t.pool_keep_repaired or not zeroed:
                self.pool.put(spec, slot, (grown[0].detach(), grown[1].detach()))
            losses.append(float(loss.detach()))
        hybrid = None
        if self.pairs:
            small, host = self.pairs[int(torch.randint(len(self.pairs), (1,), generator=self.gen))]
            loss, hybrid = self.consistency_loss(small, host, steps, x, y)
            norms.append(add(loss))
        stats = torch.tensor([sum(losses) / len(losses), sum(norms) / len(norms)])
        D.all_reduce_mean_(grads + [stats])
        loss_mean, norm_mean = float(stats[0]), float(stats[1])
        finite = math.isfinite(loss_mean) and all(bool(torch.isfinite(gi).all()) for gi in grads)
        exploded = finite and self.ema is not None and loss_mean > t.explode_factor * max(self.ema, 1e-3)
        rolled_back = not finite or exploded
        if not rolled_back:
            snapshot = (copy.deepcopy(self.rule.state_dict()), copy.deepcopy(self.opt.state_dict()))
            for p, gi in zip(self.params, grads):
                p.grad = gi
            for group in self.opt.param_groups:
                group["lr"] = self.lr_at(self.step)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            if not all(bool(torch.isfinite(p).all()) for p in self.params):
                self.rule.load_state_dict(snapshot[0])
                self.opt.load_state_dict(snapshot[1])
                rolled_back = True
            else:
                self.ema = loss_mean if self.ema is None else 0.9 * self.ema + 0.1 * loss_mean
        rec = {"step": self.step, "loss": loss_mean, "grad_norm": norm_mean, "rule_steps": steps,
               "lr": self.lr_at(self.step), "rolled_back": rolled_back,
               "seconds": time.perf_counter() - t0}
        if hybrid is not None:
            rec["hybrid_loss"] = hybrid
        if penalties:  # this rank's mean; part of "loss"
            rec["update_penalty"] = sum(penalties) / len(penalties)
        self.step += 1
        return rec

    # ---------------------------------------------------------------- eval -------
    @torch.no_grad()
    def evaluate(self, which: str = "val", steps: Optional[int] = None, seed: int = 12345) -> Dict[str, float]:
        """Accuracy of each training architecture grown ``steps`` steps from fresh."""
        x, y = getattr(self.split, which)
        steps = steps or self.cfg.train.steps_max
        out = {}
        for spec in self.archs:
            gen = torch.Generator().manual_seed(seed)
            state = self.factory.fresh(spec, gen)
            w, _ = unroll(self.factory.template(spec), self.rule, state, steps, self.cfg.grow.fire_rate,
                          seed, chunk=steps, use_checkpoint=False)
            out[spec] = accuracy(self.factory.template(spec), self.factory.network_weight(spec, w), x, y)[0]
        return out

    # ---------------------------------------------------------------- state ------
    @property
    def ckpt_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    def state_dict(self) -> Dict[str, Any]:
        per_rank = D.all_gather_object({"gen": self.gen.get_state(), "pool": self.pool.state_dict()})
        return {"format": FORMAT, "version": VERSION, "config": self.cfg.to_dict(), "step": self.step,
                "rule_class": type(self.rule).__name__, "rule_state": self.rule.state_dict(),
                "opt_state": self.opt.state_dict(), "history": self.history, "ema": self.ema,
                "elapsed": self.elapsed, "world_size": self.world, "per_rank": per_rank,
                "torch_rng": torch.get_rng_state()}

    def save(self, path: Optional[Path] = None) -> None:
        state = self.state_dict()  # collective: every rank takes part
        if self.rank == 0:
            atomic_save(state, path or self.ckpt_path)
        D.barrier()

    def export_rule(self, path: Optional[Path] = None) -> Path:
        path = path or self.out_dir / "rule.pt"
        if self.rank == 0:
            atomic_save({"format": RULE_FORMAT, "config": self.cfg.to_dict(),
                         "rule_class": type(self.rule).__name__,
                         "rule_state": self.rule.state_dict()}, path)
        return path

    def snapshot_path(self, step: int) -> Path:
        """Where ``train.snapshot_every`` exports the rule after meta-step ``step``."""
        return self.out_dir / "snapshots" / f"rule_{step:07d}.pt"

    def load(self, path: Optional[Path] = None) -> None:
        """Restore a checkpoint written by :meth:`save` (same config, same world size)."""
        path = Path(path or self.ckpt_path)
        ckpt = load_checkpoint(path)
        diff = config_diff(ckpt["config"], self.cfg.to_dict())
        if diff:
            raise CheckpointError(f"checkpoint {path} was written with a different config: {diff}")
        if ckpt["world_size"] != self.world:
            raise CheckpointError(f"checkpoint {path} was written by {ckpt['world_size']} processes, "
                                  f"resuming with {self.world}")
        try:
            self.rule.load_state_dict(ckpt["rule_state"])
            self.opt.load_state_dict(ckpt["opt_state"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {path} does not fit rule {self.cfg.rule.name}: {exc}") from exc
        mine = ckpt["per_rank"][self.rank]
        self.gen.set_state(mine["gen"])
        self.pool.load_state_dict(mine["pool"])
        torch.set_rng_state(ckpt["torch_rng"])
        self.step, self.history, self.ema = ckpt["step"], list(ckpt["history"]), ckpt["ema"]
        self.elapsed = float(ckpt.get("elapsed", 0.0))

    # ---------------------------------------------------------------- loop -------
    def fit(self, resume: bool = False) -> List[Dict[str, Any]]:
        """Run (or continue) meta-training up to ``train.meta_steps``; return the history."""
        from tqdm import tqdm

        t = self.cfg.train
        if resume:
            if self.ckpt_path.is_file():
                self.load()
            elif self.rank == 0:
                print(f"no checkpoint at {self.ckpt_path}; starting from scratch")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            (self.out_dir / "config.json").write_text(json.dumps(self.cfg.to_dict(), indent=2))
        bar = tqdm(total=t.meta_steps, initial=self.step, disable=not t.progress or self.rank != 0,
                   desc=f"meta-train {self.cfg.name}", dynamic_ncols=True)
        delay = float(os.environ.get("NEURALGRAPH_META_STEP_DELAY", "0") or 0)
        while self.step < t.meta_steps:
            t0 = time.perf_counter()
            rec = self.meta_step()
            if t.eval_every and self.step % t.eval_every == 0:
                rec["val_acc"] = self.evaluate("val")
            self.elapsed += time.perf_counter() - t0
            rec["elapsed"] = self.elapsed
            self.history.append(rec)
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.4f}", T=rec["rule_steps"])
            if t.log_every and self.step % t.log_every == 0 and self.rank == 0 and not t.progress:
                print(json.dumps(rec), flush=True)
            if t.ckpt_every and self.step % t.ckpt_every == 0:
                self.save()
            if t.snapshot_every and self.step % t.snapshot_every == 0:
                self.export_rule(self.snapshot_path(self.step))
            if delay:
                time.sleep(delay)
        bar.close()
        self.save()
        if self.rank == 0:
            self.export_rule()
            (self.out_dir / "history.json").write_text(json.dumps(self.history))
        return self.history
