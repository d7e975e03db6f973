r"""The WANN evolutionary search (`Gaier & Ha, 2019 <https://arxiv.org/abs/1906.04358>`_), batched in torch.

Each generation: evaluate every topology with each shared weight value
(one batched call, :mod:`neuralgraph.wann.evaluate`), rank with a Pareto
sort -- with probability ``p_moo`` on (mean performance, fewer connections),
otherwise on (mean, max performance) --, keep the ``elite_ratio`` best, cull
the ``cull_ratio`` worst, and fill the population with mutated winners of
rank tournaments.  The state is checkpointed atomically and resumes exactly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from neuralgraph.wann.activations import activation_code
from neuralgraph.wann.dag import WANNGraph
from neuralgraph.wann.mutate import mutate
from neuralgraph.wann.pareto import pareto_rank
from neuralgraph.wann.tasks import make_task

__all__ = ["WANNConfig", "WANNSearch", "DEFAULT_WEIGHTS", "load_champion"]

#: The fixed series of shared weight values of the WANN paper.
DEFAULT_WEIGHTS: Tuple[float, ...] = (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0)


@dataclass
class WANNConfig:
    """Hyperparameters of a WANN search (defaults: the paper's MNIST settings where they fit a CPU).

    Args:
        task (str): ``"mnist"`` or ``"cartpole"``.
        task_args (dict): keyword arguments of the task (see :mod:`neuralgraph.wann.tasks`).
        pop_size (int): population size.
        generations (int): maximum number of generations.
        time_limit_min (float): stop (and checkpoint) after this many minutes; 0 = no limit.
        weights (tuple): shared weight values evaluated per network.
        p_init_enable (float): probability that an input -> output edge starts enabled.
        p_add_connection, p_add_node, p_change_activation, p_reenable (float): mutation mix.
        p_moo (float): probability of ranking on (mean, -connections) rather than (mean, max).
        elite_ratio, cull_ratio (float): fraction kept unchanged / excluded from breeding.
        tournament_size (int): rank tournament size.
        hall_of_fame (int): best-of-generation networks kept as champion candidates.
        seed (int): random seed.
        out_dir (str): where checkpoint, history and champion go.
        checkpoint_every (int): generations between checkpoints.
        device (str): ``"cpu"``, ``"cuda"`` or ``"auto"``.
        num_threads (int): torch CPU threads (0 = leave as is).
    """

    task: str = "mnist"
    task_args: Dict[str, Any] = field(default_factory=dict)
    pop_size: int = 960
    generations: int = 4096
    time_limit_min: float = 0.0
    weights: Tuple[float, ...] = DEFAULT_WEIGHTS
    p_init_enable: float = 0.05
    p_add_connection: float = 0.20
    p_add_node: float = 0.25
    p_change_activation: float = 0.50
    p_reenable: float = 0.05
    p_moo: float = 0.8
    elite_ratio: float = 0.2
    cull_ratio: float = 0.2
    tournament_size: int = 32
    hall_of_fame: int = 32
    seed: int = 0
    out_dir: str = "runs/wann"
    checkpoint_every: int = 10
    device: str = "auto"
    num_threads: int = 0

    def __post_init__(self) -> None:
        self.weights = tuple(float(w) for w in self.weights)
        if self.pop_size < 2 or self.tournament_size < 1:
            raise ValueError(f"WANNConfig: pop_size must be >= 2 and tournament_size >= 1, got "
                             f"{self.pop_size}, {self.tournament_size}")
        if not (0 <= self.elite_ratio < 1 and 0 <= self.cull_ratio < 1 and 0 <= self.p_moo <= 1):
            raise ValueError("WANNConfig: elite_ratio and cull_ratio must lie in [0, 1), p_moo in [0, 1]")

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "WANNConfig":
        from neuralgraph.meta.config import coerce_field

        kinds = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(kinds))
        if unknown:
            raise ValueError(f"WANNConfig: unknown keys {unknown}; valid keys are {sorted(kinds)}")
        return cls(**{k: coerce_field(v, kinds[k], f"WANNConfig.{k}") for k, v in d.items()})

    @classmethod
    def from_file(cls, path: str) -> "WANNConfig":
        """Load from a ``.yaml``/``.yml`` or ``.json`` file."""
        with open(path) as f:
            if path.endswith((".yaml", ".yml")):
                import yaml

                d = yaml.safe_load(f) or {}
            else:
                d = json.load(f)
        if not isinstance(d, dict):
            raise ValueError(f"{path}: a WANN config must be a mapping, got {type(d).__name__}")
        return cls.from_dict(d)

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


def _pack(g: WANNGraph) -> Tuple[np.ndarray, ...]:
    return (g.edge_index.numpy(), g.edge_enabled.numpy(), g.node_act.numpy(), g.node_role.numpy())


class WANNSearch:
    """Run (or resume) a WANN search.

    Args:
        config (WANNConfig): hyperparameters.
        task (object, optional): a task instance (default: built from ``config``).
    """

    def __init__(self, config: WANNConfig, task: Optional[Any] = None) -> None:
        self.config = config
        self.device = config.resolved_device()
        self.task = task if task is not None else make_task(
            config.task, **{"device": self.device, **config.task_args})
        self.weights = torch.tensor(config.weights)
        self.rng = np.random.default_rng(config.seed)
        self.gen = torch.Generator().manual_seed(config.seed)
        out_act = activation_code(self.task.output_act)
        self.population: List[WANNGraph] = [
            WANNGraph.minimal(self.task.num_inputs, self.task.num_outputs, config.p_init_enable, out_act, self.rng)
            for _ in range(config.pop_size)]
        self.generation = 0
        self.history: List[Dict[str, float]] = []
        self.hall: List[Tuple[float, int, WANNGraph]] = []  # (mean fitness, generation, graph)
        self.elapsed = 0.0
        self.probs = (config.p_add_connection, config.p_add_node, config.p_change_activation, config.p_reenable)

    # --- checkpointing ------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> str:
        return os.path.join(self.config.out_dir, "checkpoint.pkl")

    def state_dict(self) -> Dict[str, Any]:
        return {"config": dataclasses.asdict(self.config), "generation": self.generation,
                "population": [_pack(g) for g in self.population], "rng": self.rng.bit_generator.state,
                "gen": self.gen.get_state(), "history": self.history,
                "hall": [(f, i, _pack(g)) for f, i, g in self.hall], "elapsed": self.elapsed}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        mine = dataclasses.asdict(self.config)
        run_keys = ("generations", "time_limit_min", "out_dir", "checkpoint_every", "device", "num_threads")
        changed = sorted(k for k, v in state["config"].items() if k not in run_keys and mine.get(k) != v)
        if changed:
            warnings.warn(f"WANNSearch: resuming a checkpoint written with different settings for {changed}; "
                          "the result will differ from an uninterrupted run", stacklevel=2)
        self.generation = state["generation"]
        self.population = [WANNGraph.from_arrays(*a) for a in state["population"]]
        self.rng.bit_generator.state = state["rng"]
        self.gen.set_state(state["gen"])
        self.history = state["history"]
        self.hall = [(f, i, WANNGraph.from_arrays(*a)) for f, i, a in state["hall"]]
        self.elapsed = state["elapsed"]

    def save_checkpoint(self) -> str:
        """Write the full search state atomically (temp file + ``os.replace``)."""
        os.makedirs(self.config.out_dir, exist_ok=True)
        tmp = self.checkpoint_path + ".tmp"
        with open(tmp, "wb") as f:
            pickle.dump(self.state_dict(), f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self.checkpoint_path)
        return self.checkpoint_path

    def resume(self) -> bool:
        """Load ``out_dir/checkpoint.pkl`` if present; returns whether it did."""
        if not os.path.isfile(self.checkpoint_path):
            return False
        with open(self.checkpoint_path, "rb") as f:
            self.load_state_dict(pickle.load(f))
        return True

    # --- one generation -----------------------------------------------------------------
    def rank(self, fit: np.ndarray) -> np.ndarray:
        """Pareto rank of the population from its fitness ``[P, W]`` (draws the objective pair)."""
        mean, best = fit.mean(1), fit.max(1)
        if self.rng.random() < self.config.p_moo:
            conns = np.array([g.num_connections for g in self.population], dtype=np.float64)
            objs = np.stack([mean, -conns], 1)
        else:
            objs = np.stack([mean, best], 1)
        return pareto_rank(objs)

    def step(self) -> Dict[str, float]:
        """Evaluate, rank and breed one generation."""
        cfg, pop = self.config, self.population
        with torch.no_grad():
            fit = self.task.fitness(pop, self.weights, self.gen).double().numpy()  # (P, W)
        order = np.argsort(self.rank(fit), kind="stable")
        mean = fit.mean(1)
        best = int(np.argmax(mean))
        conns = np.array([g.num_connections for g in pop])
        stats = {"generation": self.generation, "mean_fit_best": float(mean[best]),
                 "max_fit_best": float(fit.max()), "mean_fit_pop": float(mean.mean()),
                 "connections_best": int(conns[best]), "connections_pop": float(conns.mean()),
                 "hidden_best": pop[best].num_hidden}
        self.hall.append((float(mean[best]), self.generation, pop[best]))
        self.hall = sorted(self.hall, key=lambda t: -t[0])[:cfg.hall_of_fame]
        # breed
        p = len(pop)
        n_elite = int(np.floor(cfg.elite_ratio * p))
        pool = order[: max(1, p - int(np.floor(cfg.cull_ratio * p)))]
        children = [pop[i] for i in order[:n_elite]]
        n_child = p - n_elite
        picks = self.rng.integers(len(pool), size=(n_child, cfg.tournament_size)).min(1)
        children += [mutate(pop[pool[k]], self.rng, self.probs) for k in picks.tolist()]
        self.population = children
        self.generation += 1
        self.history.append(stats)
        return stats

    def run(self, generations: Optional[int] = None, progress: bool = True) -> List[Dict[str, float]]:
        """Run until ``generations`` (default ``config.generations``) or the time limit; checkpoints."""
        cfg = self.config
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        total = cfg.generations if generations is None else generations
        start, t0 = self.generation, time.perf_counter()
        elapsed0 = self.elapsed
        bar = tqdm(total=total, initial=start, desc=f"wann:{cfg.task}", disable=not progress)
        while self.generation < total:
            stats = self.step()
            self.elapsed = elapsed0 + time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix(mean=f"{stats['mean_fit_best']:.3f}", conns=stats["connections_best"],
                            hidden=stats["hidden_best"])
            done = cfg.time_limit_min > 0 and (self.elapsed - elapsed0) >= 60 * cfg.time_limit_min
            if self.generation % cfg.checkpoint_every == 0 or self.generation >= total or done:
                self.save_checkpoint()
            if done:
                break
        bar.close()
        del start
        return self.history

    # --- result ---------------------------------------------------------------------------
    def candidates(self, top: int = 32) -> List[WANNGraph]:
        """Hall of fame plus the first ``top`` of the current population (by last mean fitness order)."""
        return [g for _, _, g in self.hall] + self.population[:top]

    def champion(self, top: int = 32) -> Tuple[WANNGraph, float]:
        """The candidate with the best held-out task score (mean over the weight values)."""
        cands = self.candidates(top)
        with torch.no_grad():
            score = self.task.score(cands, self.weights).double().mean(1)
        i = int(torch.argmax(score))
        return cands[i], float(score[i])

    def save_champion(self, graph: WANNGraph, score: float) -> str:
        os.makedirs(self.config.out_dir, exist_ok=True)
        path = os.path.join(self.config.out_dir, "champion.pt")
        tmp = path + ".tmp"
        torch.save({"edge_index": graph.edge_index, "edge_enabled": graph.edge_enabled,
                    "node_act": graph.node_act, "node_role": graph.node_role, "score": score,
                    "generation": self.generation, "elapsed_s": self.elapsed,
                    "config": dataclasses.asdict(self.config)}, tmp)
        os.replace(tmp, path)
        with open(os.path.join(self.config.out_dir, "history.json"), "w") as f:
            json.dump(self.history, f)
        return path


def load_champion(path: str) -> Tuple[WANNGraph, Dict[str, Any]]:
    """Read a ``champion.pt`` written by :meth:`WANNSearch.save_champion`."""
    d = torch.load(path, weights_only=False)
    g = WANNGraph.from_arrays(d["edge_index"].numpy(), d["edge_enabled"].numpy(), d["node_act"].numpy(),
                              d["node_role"].numpy())
    g.validate()
    return g, d
