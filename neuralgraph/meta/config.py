"""Typed configuration of a meta-training run, loadable from YAML or JSON.

Example (``examples/iris.yaml``)::

    name: iris
    rule: {name: mlp, kwargs: {hidden_dim: 16, width: 64, depth: 2}}
    data: {name: iris, batch_size: 0}
    arch: {train: ["4-8-3", "4-8-8-8-3"]}
    train: {meta_steps: 300, steps_min: 1, steps_max: 20}

Unknown keys raise a ``ValueError`` naming the section and key, so typos never
silently fall back to defaults.

A continuation of an earlier run can state only what it changes: a top-level
``base`` names another config file (relative to the file that names it), whose
settings, ``quick`` block included, are the starting point::

    base: iris_fixedpoint_a5.yaml
    name: iris_fixedpoint_a6
    train: {init_rule: runs/iris_fixedpoint_a5/rule.pt, lr: 5.0e-5, seed: 10,
            out_dir: runs/iris_fixedpoint_a6}
    quick: {train.out_dir: runs/iris_fixedpoint_a6_quick}

Mappings merge key by key; every other value, lists included, replaces the
base's.  A config with a base must set its own ``name``, and may not inherit its
base's ``train.out_dir`` (or the quick one), so a continuation never writes
into its base's run directory.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Type, TypeVar

__all__ = ["RuleConfig", "DataConfig", "ArchConfig", "GrowConfig", "TrainConfig", "MetaConfig"]

#: Activation checkpointing modes of meta-training (``TrainConfig.grad_checkpoint``,
#: :func:`neuralgraph.meta.grow.unroll`).
CHECKPOINT_MODES = ("torch", "native", "none")

T = TypeVar("T")


@dataclass
class RuleConfig:
    """Which rule to meta-train: a registered name or ``"pkg.mod:Class"``, plus its kwargs."""

    name: str = "mlp"
    kwargs: Dict[str, Any] = field(default_factory=lambda: {"hidden_dim": 16})


@dataclass
class DataConfig:
    """The task: ``iris``, ``digits``, ``mnist`` or ``fashion-mnist``.

    ``batch_size = 0`` means full batch.  ``flatten`` feeds images to MLPs as
    vectors (``False`` keeps ``[1, 28, 28]`` for CNNs).
    """

    name: str = "iris"
    root: Optional[str] = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    batch_size: int = 0
    eval_batch_size: int = 2000
    flatten: bool = True


@dataclass
class ArchConfig:
    """Training architectures and the evaluation grid.

    ``train``: architecture specs (``"4-8-3"``, ``"cnn:m=1,k=3,h=100"``).
    ``grid_x`` / ``grid_y``: hidden widths of the ``[in, X, Y, out]`` grid
    evaluated by ``neuralgraph eval``.
    """

    train: List[str] = field(default_factory=lambda: ["4-8-3"])
    activation: str = "relu"
    grid_x: List[int] = field(default_factory=list)
    grid_y: List[int] = field(default_factory=list)


@dataclass
class GrowConfig:
    """How a network starts and is grown.

    Args:
        hidden_dim: hidden-state width ``H`` (must match the rule's).
        hidden_init: position code kind (``sinusoidal``, ``binary``, ``zeros``).
        code_base: longest wavelength of the sinusoidal position code.
        input_grid: ``[rows, cols]``: encode a dense first layer's input
            neuron ``j`` by its pixel ``(j // cols, j % cols)`` in the code's
            kernel-row/column axes (images fed to MLPs).
        weight_init: ``zeros`` or ``normal`` (std ``weight_std``).
        fire_rate: probability that an edge is updated in a step.
        fan_in_scaling: the network uses ``weight / sqrt(fan_in)`` (rule
            weights in fan-in-normalised units, see ``GraphFactory``).
        weight_standardization: the network uses each neuron's incoming
            weights standardised (zero mean, unit variance, times the fan-in
            gain); implies ``fan_in_scaling``.
        hidden_bias: ``False`` fixes hidden neurons' biases at zero in the
            network (see ``GraphFactory``).
        kernel_offsets: code conv kernel positions as offsets from the output
            pixel (same code, same offset in kernels of every size; see
            ``GraphFactory``).
        hidden_code_range: ``R > 0`` codes hidden neuron ``i`` of a layer of
            width ``X`` by ``floor(i * R / X)`` instead of ``i``: every hidden
            layer's codes spread over ``0 .. R - 1`` whatever its width (a
            relative position), so a narrow layer samples the same code range
            as a wide one; ``0`` (default) = absolute indices (see
            ``GraphFactory``).
        code_tile: a reference architecture spec: hidden neuron ``i`` of the
            ``l``-th hidden layer is indexed ``i mod W_l`` (``W_l`` the
            reference's ``l``-th hidden width) in the position code and in
            ``edge_pos``, so a network wider than the reference grows as copies
            of the reference's neurons (see ``GraphFactory``); ``""`` = off.
            Usually set at growth time (``--code-tile``), not in training.
    """

    hidden_dim: int = 16
    hidden_init: str = "sinusoidal"
    code_base: float = 1000.0
    input_grid: Optional[List[int]] = None
    weight_init: str = "zeros"
    weight_std: float = 0.0
    fire_rate: float = 0.8
    fan_in_scaling: bool = False
    weight_standardization: bool = False
    hidden_bias: bool = True
    kernel_offsets: bool = False
    hidden_code_range: int = 0
    code_tile: str = ""


@dataclass
class TrainConfig:
    """Meta-optimisation settings.

    The number of rule steps per meta-step grows linearly from ``steps_min`` to
    ``steps_max`` over the first ``curriculum_fraction`` of the meta-steps, then
    is drawn uniformly from ``[steps_max - steps_jitter, steps_max]``.
    ``loss_steps``: average the loss over the last few rule steps (stability).
    ``update_penalty``: add ``update_penalty`` times the mean over those loss
    steps (all but the first) of ``log(1 + d / update_penalty_eps)``, where
    ``d = mean(dw^2) + update_penalty_hidden * mean(dh^2)`` is the step's mean
    squared change of the edge weights (and hidden states): a fixed-point
    penalty.  The logarithm saturates for the large updates of early growth
    (its gradient falls as ``1 / d``), so it acts on nearly converged states,
    asking the rule to stop changing a grown network rather than let it drift
    -- which also makes stochastic (``fire_rate < 1``) growth settle, since a
    rule that proposes no change is unaffected by which edges fire.  Needs
    ``loss_steps >= 2``.  ``0`` (default) = off.
    ``archs_per_step``: architectures grown per meta-step and rank, drawn at
    random from this rank's share (``0`` = all of them).
    ``out_init_std``: if > 0, re-initialise a rule layer's weight with
    ``N(0, out_init_std)``, so growth does not start at the all-zero-weights
    saddle (where a ReLU network has no weight gradients).  Which layer:
    ``out_init_layer = "last"`` (default, kept so recorded runs reproduce) is
    the last ``nn.Linear`` in ``rule.modules()`` order -- for ``MLPRule`` and
    ``WeightTransformer`` that is the head's *hidden* layer, not the update
    layer; ``"out"`` is the update layer ``rule.out`` itself.
    ``init_rule``: start from the rule weights of this trainer checkpoint or
    ``rule.pt`` (same rule class and kwargs) instead of a fresh rule -- a
    second stage of meta-training, e.g. on more architectures.
    ``init_widen``: the rule is wider than ``init_rule`` (larger ``MLPRule.width``,
    ``WeightTransformer.ff_dim`` or ``head_width``, or a wider position code
    ``grow.hidden_dim`` that contains the old one); load it function-preservingly
    (:func:`neuralgraph.meta.widen.widen_rule`: new units get fresh fan-in
    and zero fan-out, new code channels are read by nothing and never updated,
    so the wider rule starts as exactly the old one).
    ``pool_size``: sample-pool slots per architecture (``0`` = no pooling).
    ``zero_out_prob``: probability of zeroing out a pooled starting state.
    ``pool_keep_repaired``: write the state grown from a zeroed-out start back
    into the pool (default, the Growing-NCA recipe).  ``False`` leaves the slot
    holding its undamaged state, so every repair episode starts from a state
    damaged once, as the zero-out evaluation does, rather than from one
    damaged again and again.
    ``code_subset_prob``: probability that a fresh training start codes each
    hidden layer's neurons by a random subset of the indices
    ``0 .. code_subset_range - 1`` (a random injection, drawn per layer) instead
    of ``0 .. width - 1``
    (:meth:`neuralgraph.meta.grow.GraphFactory.subset_code`).  The architectures
    stay the same; only the position codes the rule starts from change, so a
    rule that relies on a layer's codes being exactly the first ``width``
    indices is penalised.  Evaluation always uses ``0 .. width - 1``.  ``0``
    (default) = off, and no random numbers are drawn for it.
    ``grad_checkpoint``: how the unrolled rule steps keep activations for the
    backward pass, per chunk of ``checkpoint_chunk`` steps (see
    :func:`neuralgraph.meta.grow.unroll`): ``"torch"`` (default; recompute with
    ``torch.utils.checkpoint``), ``"native"`` (same memory; the first forward
    runs without autograd, on the rules' fused kernels) or ``"none"`` (keep
    everything: fastest when the graphs are small).  ``"torch"`` and ``"none"``
    give bit-identical gradients.
    ``kernel_consistency``: pairs ``[small, host]`` of CNN specs that differ only
    in kernel size.  Each meta-step also grows one pair (drawn at random) and
    adds, weighted by ``consistency_weight``, the mean cross-entropy of the host
    network with each conv layer in turn replaced by the small network's layer
    (:func:`neuralgraph.meta.grow.embed_conv_layer`) to the two networks' own
    mean loss: a layer grown for one kernel size must work with the layers grown
    for another, so the rule grows one solution across kernel sizes instead of
    one per size (which an unseen size in between would mix).
    ``snapshot_every``: also export the rule every that many meta-steps to
    ``out_dir/snapshots/rule_<step>.pt`` (the ``rule.pt`` format, a few KB to
    a few MB each; ``0`` = off), for learning curves of the grown networks
    (``neuralgraph eval --rule`` takes them).
    """

    meta_steps: int = 200
    lr: float = 1e-3
    lr_final_fraction: float = 0.1
    weight_decay: float = 0.0
    steps_min: int = 1
    steps_max: int = 10
    steps_jitter: int = 0
    curriculum_fraction: float = 0.5
    checkpoint_chunk: int = 5
    grad_checkpoint: str = "torch"
    clip_norm: float = 1.0
    loss_steps: int = 1
    update_penalty: float = 0.0
    update_penalty_eps: float = 1e-6
    update_penalty_hidden: float = 0.0
    out_init_std: float = 0.0
    out_init_layer: str = "last"
    init_rule: Optional[str] = None
    init_widen: bool = False
    archs_per_step: int = 0
    pool_size: int = 0
    pool_fresh_prob: float = 0.25
    zero_out_prob: float = 0.0
    zero_out_fraction: float = 0.3
    pool_keep_repaired: bool = True
    code_subset_prob: float = 0.0
    code_subset_range: int = 0
    explode_factor: float = 10.0
    kernel_consistency: List[List[str]] = field(default_factory=list)
    consistency_weight: float = 1.0
    seed: int = 0
    threads: int = 1
    log_every: int = 10
    ckpt_every: int = 50
    snapshot_every: int = 0
    eval_every: int = 0
    out_dir: str = "runs/meta"
    progress: bool = True


@dataclass
class MetaConfig:
    """A whole meta-training run."""

    name: str = "meta"
    rule: RuleConfig = field(default_factory=RuleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    arch: ArchConfig = field(default_factory=ArchConfig)
    grow: GrowConfig = field(default_factory=GrowConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "MetaConfig":
        if not isinstance(d, dict):
            raise ValueError(f"config must be a mapping, got {type(d).__name__}")
        kinds = {f.name: f for f in dataclasses.fields(cls)}
        kw: Dict[str, Any] = {}
        for key, val in d.items():
            if key not in kinds:
                raise ValueError(f"unknown config section {key!r}; expected one of {sorted(kinds)}")
            if key == "name":
                kw[key] = str(val)
            else:
                kw[key] = _build(_SECTIONS[key], val or {}, key)
        cfg = cls(**kw)
        cfg.check()
        return cfg

    @classmethod
    def from_file(cls, path: str | Path, overrides: Optional[List[str]] = None,
                  quick: bool = False) -> "MetaConfig":
        """Load YAML (``.yaml``/``.yml``) or JSON; ``overrides`` like ``train.meta_steps=5``.

        A top-level ``quick`` mapping (``{"train.meta_steps": 3, ...}``) holds the
        seconds-long test setting of an example; it is applied when ``quick``.  A top-level
        ``base`` is resolved first (:func:`load_config_dict`).
        """
        d = load_config_dict(path)
        quick_set = d.pop("quick", None) or {}
        if quick:
            for key, val in quick_set.items():
                apply_override(d, f"{key}={json.dumps(val)}")
        for ov in overrides or []:
            apply_override(d, ov)
        return cls.from_dict(d)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def trained_archs(self) -> List[str]:
        """Every architecture meta-training grows and trains on: ``arch.train`` plus the
        networks of the ``train.kernel_consistency`` pairs (in first-seen order)."""
        out: List[str] = []
        for spec in list(self.arch.train) + [s for pair in self.train.kernel_consistency for s in pair]:
            if spec not in out:
                out.append(spec)
        return out

    def set_fire_rate(self, fire_rate: Optional[float], name: str = "fire_rate") -> None:
        """Grow with ``fire_rate`` instead of the trained ``grow.fire_rate`` (``None`` keeps it).

        Raises:
            ValueError: ``fire_rate`` outside (0, 1] (the message names it ``name``).
        """
        if fire_rate is not None:
            _check_fire_rate(fire_rate, name)
            self.grow.fire_rate = fire_rate

    def set_code_tile(self, code_tile: Optional[str], name: str = "code_tile") -> None:
        """Grow with hidden neurons indexed modulo the widths of ``code_tile`` (a reference architecture
        spec; ``""`` turns tiling off, ``None`` keeps ``grow.code_tile``).

        Raises:
            ValueError: the spec does not parse or conflicts with the config (the message names it
                ``name``); the config is left unchanged.
        """
        if code_tile is not None:
            old, self.grow.code_tile = self.grow.code_tile, code_tile
            try:
                self.check()
            except ValueError as exc:
                self.grow.code_tile = old
                raise ValueError(f"{name} {code_tile}: {exc}") from exc

    def check(self) -> None:
        t, g = self.train, self.grow
        if not self.arch.train:
            raise ValueError("arch.train must list at least one training architecture")
        if not 1 <= t.steps_min <= t.steps_max:
            raise ValueError(f"need 1 <= train.steps_min <= train.steps_max, got {t.steps_min}, {t.steps_max}")
        _check_fire_rate(g.fire_rate, "grow.fire_rate")
        if g.weight_init not in ("zeros", "normal"):
            raise ValueError(f"grow.weight_init must be 'zeros' or 'normal', got {g.weight_init!r}")
        hd = self.rule.kwargs.get("hidden_dim")
        if hd is not None and int(hd) != g.hidden_dim:
            raise ValueError(f"rule.kwargs.hidden_dim={hd} differs from grow.hidden_dim={g.hidden_dim}")
        if t.out_init_layer not in ("last", "out"):
            raise ValueError(f"train.out_init_layer must be 'last' or 'out', got {t.out_init_layer!r}")
        if t.grad_checkpoint not in CHECKPOINT_MODES:
            raise ValueError(f"train.grad_checkpoint must be one of {CHECKPOINT_MODES}, got {t.grad_checkpoint!r}")
        for pair in t.kernel_consistency:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(a, str) for a in pair)):
                raise ValueError(f"train.kernel_consistency entries must be [small_spec, host_spec], got {pair!r}")
        if t.consistency_weight < 0:
            raise ValueError(f"train.consistency_weight must be >= 0, got {t.consistency_weight}")
        if t.checkpoint_chunk < 1 or t.loss_steps < 1:
            raise ValueError("train.checkpoint_chunk and train.loss_steps must be >= 1")
        if t.update_penalty < 0 or t.update_penalty_hidden < 0 or t.update_penalty_eps <= 0:
            raise ValueError(f"train.update_penalty ({t.update_penalty}) and train.update_penalty_hidden "
                             f"({t.update_penalty_hidden}) must be >= 0 and train.update_penalty_eps "
                             f"({t.update_penalty_eps}) > 0")
        if t.update_penalty > 0 and min(t.loss_steps, t.steps_max) < 2:
            raise ValueError(f"train.update_penalty > 0 penalises the change between consecutive loss steps; "
                             f"it needs train.loss_steps >= 2 and train.steps_max >= 2, got "
                             f"{t.loss_steps} and {t.steps_max}")
        if g.hidden_code_range < 0:
            raise ValueError(f"grow.hidden_code_range must be >= 0, got {g.hidden_code_range}")
        if g.code_tile:
            if g.hidden_code_range:
                raise ValueError("grow.code_tile and grow.hidden_code_range both re-index hidden neurons; "
                                 "set one of them")
            if t.code_subset_prob > 0:
                raise ValueError("train.code_subset_prob draws absolute indices; it does not combine with "
                                 "grow.code_tile")
            from neuralgraph.datasets.architectures import parse_arch
            parse_arch(g.code_tile)
        if not 0.0 <= t.code_subset_prob <= 1.0:
            raise ValueError(f"train.code_subset_prob must lie in [0, 1], got {t.code_subset_prob}")
        if t.code_subset_prob > 0 and t.code_subset_range < 1:
            raise ValueError("train.code_subset_prob > 0 needs train.code_subset_range >= 1 (the index range "
                             f"the codes are drawn from), got {t.code_subset_range}")


def _read_mapping(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        d = yaml.safe_load(text) or {}
    else:
        d = json.loads(text)
    if not isinstance(d, dict):
        raise ValueError(f"config file {path} must hold a mapping, got {type(d).__name__}")
    return d


def merge_config(base: Dict[str, Any], child: Dict[str, Any]) -> Dict[str, Any]:
    """``child`` laid over ``base``: mappings merge key by key (recursively), any other
    value (lists included) replaces the base's.  Neither input is modified."""
    out = dict(base)
    for key, val in child.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], val)
        else:
            out[key] = val
    return out


def load_config_dict(path: str | Path, _chain: tuple = ()) -> Dict[str, Any]:
    """The raw mapping of a config file (YAML or JSON) with its ``base`` chain resolved.

    ``base: FILE`` (relative to the naming file's folder) loads FILE first, recursively, and lays
    this file over it (:func:`merge_config`).  Errors name the file at fault: a missing base, a
    cycle, a config with a base but no ``name`` of its own, or one that inherits its base's
    ``train.out_dir`` (plain or ``quick``) and would write into the base's run directory.
    """
    path = Path(path)
    d = _read_mapping(path)
    base = d.pop("base", None)
    if base is None:
        return d
    if not isinstance(base, str) or not base:
        raise ValueError(f"config {path}: base must be a config file path, got {base!r}")
    bpath = Path(base) if Path(base).is_absolute() else path.parent / base
    here = path.resolve()
    chain = _chain + (here,)
    if bpath.resolve() in chain:
        names = " -> ".join(str(p) for p in chain + (bpath.resolve(),))
        raise ValueError(f"config base cycle: {names}")
    if not bpath.is_file():
        raise FileNotFoundError(f"config {path}: base {base!r} ({bpath}) does not exist")
    parent = load_config_dict(bpath, chain)
    if "name" not in d:
        raise ValueError(f"config {path} has a base ({bpath}, named {parent.get('name')!r}) "
                         "and must set its own name")
    merged = merge_config(parent, d)

    def out_dirs(x: Dict[str, Any]) -> tuple:
        train = x.get("train") or {}
        quick = x.get("quick") or {}
        return (train.get("out_dir") if isinstance(train, dict) else None,
                quick.get("train.out_dir") if isinstance(quick, dict) else None)

    for which, mine, theirs in zip(("train.out_dir", "quick train.out_dir"), out_dirs(merged), out_dirs(parent)):
        if theirs is not None and mine == theirs:
            raise ValueError(f"config {path} inherits {which} {theirs!r} from its base {bpath}; set its own "
                             "so the run does not write into the base's run directory")
    return merged


def _check_fire_rate(fire_rate: float, name: str) -> None:
    if not 0.0 < fire_rate <= 1.0:
        raise ValueError(f"{name} must lie in (0, 1], got {fire_rate}")


def _build(cls: Type[T], d: Dict[str, Any], section: str) -> T:
    if not isinstance(d, dict):
        raise ValueError(f"config section {section!r} must be a mapping, got {d!r}")
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in d:
        if key not in names:
            raise ValueError(f"unknown key {section}.{key}; expected one of {sorted(names)}")
    return cls(**{k: coerce_field(v, names[k].type, f"{section}.{k}") for k, v in d.items()})


def coerce_field(value: Any, kind: Any, key: str) -> Any:
    """Check a scalar config value against its dataclass field type (``"float"``, ``"int"``,
    ``"bool"``, ``"str"`` and their ``Optional[...]``); other types pass unchecked.  Shared by
    the meta-training and the WANN configs.  A float written as
    ``1.0e6`` loads from YAML (1.1) as a *string*: such strings are converted, anything else
    of the wrong type is a ``ValueError`` naming the key."""
    kind = str(kind).replace(" ", "")
    if kind.startswith("Optional[") and kind.endswith("]"):
        if value is None:
            return None
        kind = kind[len("Optional["):-1]
    if kind == "float":
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"config {key} must be a number, got {value!r}")
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"config {key} must be an integer, got {value!r}")
    if kind == "bool" and not isinstance(value, bool):
        raise ValueError(f"config {key} must be true or false, got {value!r}")
    if kind == "str" and not isinstance(value, str):
        raise ValueError(f"config {key} must be a string, got {value!r}")
    return value


_SECTIONS = {"rule": RuleConfig, "data": DataConfig, "arch": ArchConfig, "grow": GrowConfig,
             "train": TrainConfig}


def apply_override(d: Dict[str, Any], override: str) -> None:
    """Apply ``"section.key=value"`` (value parsed as YAML) to a config dict in place."""
    import yaml

    key, sep, val = override.partition("=")
    if not sep or "." not in key:
        raise ValueError(f"override must look like section.key=value, got {override!r}")
    parts = key.split(".")
    node = d
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = yaml.safe_load(val)
