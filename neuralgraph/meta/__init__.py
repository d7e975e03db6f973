"""Meta-training of local rules: config, trainer, sample pool, perturbations, checkpoints, DDP."""

from neuralgraph.meta.checkpoint import CheckpointError, atomic_save, load_checkpoint
from neuralgraph.meta.config import ArchConfig, DataConfig, GrowConfig, MetaConfig, RuleConfig, TrainConfig
from neuralgraph.meta.grow import GraphFactory, accuracy, embed_conv_layer, grow_trajectory, unroll
from neuralgraph.meta.perturb import zero_out, zero_out_mask
from neuralgraph.meta.pool import SamplePool
from neuralgraph.meta.trainer import MetaTrainer, build_rule, factory_from_config, load_rule

__all__ = [
    "ArchConfig",
    "CheckpointError",
    "DataConfig",
    "GraphFactory",
    "GrowConfig",
    "MetaConfig",
    "MetaTrainer",
    "RuleConfig",
    "SamplePool",
    "TrainConfig",
    "accuracy",
    "atomic_save",
    "build_rule",
    "embed_conv_layer",
    "factory_from_config",
    "grow_trajectory",
    "load_checkpoint",
    "load_rule",
    "unroll",
    "zero_out",
    "zero_out_mask",
]
