"""Turn a non-data-conditioned MNIST MLPRule (e.g. runs/mnist_grid_fast_24k/rule.pt) into a data-conditioned
one that computes the same update: copy every weight, add zero input columns to the first layer for the new
inputs (two for the source/target activations, a third for the edge correlation with ``coactivation``).

Usage: python examples/mnist_dc_warm_start.py SRC_RULE DC_CONFIG OUT_RULE
"""
import sys

import torch

from neuralgraph.meta import MetaConfig
from neuralgraph.meta.checkpoint import atomic_save
from neuralgraph.meta.trainer import RULE_FORMAT, build_rule, factory_from_config, load_rule

src, cfg_path, out = sys.argv[1:4]
old, _ = load_rule(src)
cfg = MetaConfig.from_file(cfg_path)
new = build_rule(cfg)
state = old.state_dict()
w0 = state["mlp.0.weight"]
extra = new.mlp[0].in_features - w0.size(1)
state["mlp.0.weight"] = torch.cat([w0, torch.zeros(w0.size(0), extra)], dim=1)
new.load_state_dict(state)
# check: same update on a training architecture
f_old, f_new = factory_from_config(load_rule(src)[1]), factory_from_config(cfg)
spec = cfg.arch.train[0]
st = f_old.fresh(spec)
g_old, g_new = f_old.graph(spec, (st[0] + 0.3 * torch.randn_like(st[0]), st[1])), None
g_new = f_new.graph(spec, (g_old.weight, g_old.hidden))
with torch.no_grad():
    a, b = old(g_old), new(g_new)
print("max |dw diff|", float((a[0] - b[0]).abs().max()), "max |dh diff|", float((a[1] - b[1]).abs().max()))
atomic_save({"format": RULE_FORMAT, "config": cfg.to_dict(), "rule_class": type(new).__name__,
             "rule_state": new.state_dict()}, out)
print("wrote", out)
