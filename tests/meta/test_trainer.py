import copy
import math

import pytest
import torch

import neuralgraph as ng
from neuralgraph.datasets import mlp
from neuralgraph.meta import GraphFactory, MetaConfig, MetaTrainer, load_rule, unroll
from neuralgraph.meta.grow import _run_steps

from .helpers import tiny_config


def test_checkpointed_unroll_matches_plain_gradients():
    factory = GraphFactory(hidden_dim=4)
    rule = ng.rules.MLPRule(4, width=8, depth=1)
    torch.nn.init.normal_(rule.out.weight, std=0.1)
    tmpl = factory.template("4-5-3")
    x, y = torch.randn(7, 4), torch.randint(0, 3, (7,))
    grads = []
    for ckpt in (True, False):
        rule.zero_grad()
        w, _ = unroll(tmpl, rule, factory.fresh("4-5-3"), 5, 0.7, seed=3, chunk=2, use_checkpoint=ckpt)
        torch.nn.functional.cross_entropy(tmpl.forward(x, weight=w), y).backward()
        grads.append(torch.cat([p.grad.flatten() for p in rule.parameters()]))
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.parametrize("kind", ["mlp", "wt_cnn"])
def test_unroll_checkpoint_modes_give_the_same_gradients(kind, monkeypatch):
    """"torch" and "none" are the same computation (bit-identical); "native" runs the first
    forward on the fused kernel and recomputes with autograd, so it agrees to rounding."""
    torch.manual_seed(0)
    if kind == "mlp":
        factory, spec = GraphFactory(hidden_dim=4), "4-5-3"
        rule = ng.rules.MLPRule(4, width=8, depth=1)
        torch.nn.init.normal_(rule.out.weight, std=0.1)
        x = torch.randn(7, 4)
    else:
        factory = GraphFactory(hidden_dim=10, input_shape=(1, 28, 28), weight_standardization=True)
        spec = "cnn:m=0.125,k=3,h=8"
        rule = ng.rules.WeightTransformer(10, heads=5, head_dim=4, ff_dim=16, head_width=16, zero_init=False)
        x = torch.randn(5, 1, 28, 28)
    y = torch.randint(0, 3, (x.size(0),))
    tmpl = factory.template(spec)
    start = factory.fresh(spec, torch.Generator().manual_seed(1))
    from neuralgraph.rules import fused
    calls = []
    for name in ("wt_forward", "mlp_forward"):
        real = getattr(fused, name)
        monkeypatch.setattr(fused, name, lambda *a, _real=real, **k: calls.append(1) or _real(*a, **k))
    if kind == "mlp":  # a state that requires grad too
        start = (start[0].clone().requires_grad_(), start[1])
    out = {}
    for mode in ("torch", "none", "native"):
        rule.zero_grad()
        w, h = unroll(tmpl, rule, start, 3, 0.8, seed=3, chunk=2, use_checkpoint=mode)
        loss = torch.nn.functional.cross_entropy(tmpl.forward(x, weight=factory.network_weight(spec, w)), y)
        (loss + h.square().mean()).backward()
        grads = torch.cat([p.grad.flatten() for p in rule.parameters()])
        if start[0].requires_grad:
            grads = torch.cat([grads, start[0].grad.flatten()])
            start[0].grad = None
        out[mode] = (float(loss.detach()), grads)
    assert out["torch"][1].abs().sum() > 0
    assert out["torch"][0] == out["none"][0] and torch.equal(out["torch"][1], out["none"][1])
    assert abs(out["native"][0] - out["torch"][0]) < 1e-5
    if ng.native.load() is not None:
        assert calls, "the native mode's first forward should run on the fused kernel"
    assert torch.allclose(out["native"][1], out["torch"][1], rtol=1e-3, atol=1e-5)


def test_unroll_rejects_an_unknown_checkpoint_mode():
    factory = GraphFactory(hidden_dim=4)
    rule = ng.rules.MLPRule(4, width=8, depth=1)
    with pytest.raises(ValueError, match="use_checkpoint"):
        unroll(factory.template("4-5-3"), rule, factory.fresh("4-5-3"), 2, 1.0, seed=0, use_checkpoint="off")
    with pytest.raises(ValueError, match="grad_checkpoint"):
        MetaConfig.from_dict({"arch": {"train": ["4-5-3"]}, "train": {"grad_checkpoint": False}})


def test_input_grid_code_uses_pixel_rows_and_cols():
    f = GraphFactory(hidden_dim=10, input_grid=[2, 3])
    g = f.template("6-2-2")
    plain = GraphFactory(hidden_dim=10).template("6-2-2")
    first = (g.edge_pos[:, 0] == 0) & (g.edge_kind == 0)
    assert not torch.allclose(g.hidden[first], plain.hidden[first])
    assert torch.allclose(g.hidden[~first], plain.hidden[~first])


def test_trainer_runs_learns_and_is_deterministic(tmp_path):
    cfg = MetaConfig.from_dict(tiny_config(tmp_path / "a", meta_steps=15, ckpt_every=0, zero_out_prob=0.0,
                                           pool_size=0, lr=1e-2))
    hist = MetaTrainer(cfg).fit()
    losses = [h["loss"] for h in hist]
    assert len(losses) == 15 and all(torch.isfinite(torch.tensor(losses)))
    assert min(losses[-5:]) < losses[0]  # the rule learns something
    cfg2 = copy.deepcopy(cfg)
    cfg2.train.out_dir = str(tmp_path / "b")
    assert [h["loss"] for h in MetaTrainer(cfg2).fit()] == losses
    rule, cfg3 = load_rule(tmp_path / "a" / "rule.pt")
    assert cfg3.name == "tiny" and isinstance(rule, ng.rules.MLPRule)


def test_nan_loss_is_rolled_back(tmp_path, monkeypatch):
    cfg = MetaConfig.from_dict(tiny_config(tmp_path, meta_steps=3, ckpt_every=0))
    tr = MetaTrainer(cfg)
    before = copy.deepcopy(tr.rule.state_dict())
    real = tr.grow_loss

    def nan_loss(*a, **k):
        loss, st = real(*a, **k)
        return loss * float("nan"), st

    monkeypatch.setattr(tr, "grow_loss", nan_loss)
    rec = tr.meta_step()
    assert rec["rolled_back"]
    for k, v in tr.rule.state_dict().items():
        assert torch.equal(v, before[k])


def test_pool_and_zero_out_paths(tmp_path):
    cfg = MetaConfig.from_dict(tiny_config(tmp_path, meta_steps=6, ckpt_every=0, pool_size=2,
                                           pool_fresh_prob=0.0, zero_out_prob=1.0))
    tr = MetaTrainer(cfg)
    tr.fit()
    assert sum(s is not None for v in tr.pool.slots.values() for s in v) >= 2


def test_pool_keep_repaired_false_keeps_the_undamaged_state(tmp_path):
    """With ``pool_keep_repaired=False`` a repair episode never writes back: the slot keeps the state
    its fresh growth left, so the next repair starts from a state damaged once."""
    cfg = MetaConfig.from_dict(tiny_config(tmp_path, meta_steps=1, ckpt_every=0, pool_size=1,
                                           pool_fresh_prob=0.0, zero_out_prob=1.0, pool_keep_repaired=False))
    tr = MetaTrainer(cfg)
    tr.meta_step()  # the pool is empty: fresh growth fills the single slot of each architecture
    before = {k: [(w.clone(), h.clone()) for w, h in v] for k, v in tr.pool.slots.items()}
    assert before and all(len(v) == 1 for v in before.values())
    for _ in range(2):
        tr.meta_step()  # repair episodes only (fresh_prob 0, every pooled start zeroed)
    for k, v in tr.pool.slots.items():
        assert torch.equal(v[0][0], before[k][0][0]) and torch.equal(v[0][1], before[k][0][1])
    tr.cfg.train.pool_keep_repaired = True  # the default writes the repaired state back
    tr.meta_step()
    assert any(not torch.equal(v[0][0], before[k][0][0]) for k, v in tr.pool.slots.items())


def test_unknown_rule_is_clear(tmp_path):
    d = tiny_config(tmp_path)
    d["rule"] = {"name": "nope", "kwargs": {}}
    with pytest.raises(ValueError, match="unknown rule 'nope'"):
        MetaTrainer(MetaConfig.from_dict(d))
    d["rule"] = {"name": "mlp", "kwargs": {"hidden_dim": 4, "bogus": 1}}
    with pytest.raises(ValueError, match="cannot build rule"):
        MetaTrainer(MetaConfig.from_dict(d))


def test_run_steps_identity_for_fresh_rule():
    factory = GraphFactory(hidden_dim=4)
    tmpl = factory.template("4-5-3")
    w, h = factory.fresh("4-5-3")
    w2, h2 = _run_steps(tmpl, ng.rules.MLPRule(4, width=8), w, h, 3, 0.5, 0)
    assert torch.equal(w2, w) and torch.equal(h2, h)  # zero-initialised last layer
    assert mlp([4, 5, 3])(torch.zeros(1, 4)).shape == (1, 3)


def test_weight_standardization_and_saved_module_agree():
    f = GraphFactory(hidden_dim=4, weight_standardization=True, weight_init="normal", weight_std=1.0)
    spec = "6-5-4-3"
    w, _ = f.fresh(spec, torch.Generator().manual_seed(0))
    tmpl = f.template(spec)
    net = f.network_weight(spec, w)
    lin = [m for m in f.module(spec, w) if isinstance(m, torch.nn.Linear)]
    w1 = lin[0].weight * 6 ** 0.5  # undo the fan-in gain
    assert torch.allclose(w1.mean(1), torch.zeros(5), atol=1e-5)
    assert torch.allclose(w1.var(1, unbiased=False), torch.ones(5), atol=1e-3)
    assert not torch.allclose((lin[2].weight * 2).mean(1), torch.zeros(3), atol=1e-3)  # output layer free
    x = torch.randn(4, 6)
    assert torch.allclose(f.module(spec, w)(x), tmpl.forward(x, weight=net), atol=1e-6)
    assert torch.allclose(f.gain(spec)[tmpl.edge_kind == 1], torch.ones(5 + 4 + 3))


def test_weight_standardization_of_conv_layers_is_per_output_channel_over_c_k_k():
    """Conv weights W[o, c, u, v]: one standardisation per output channel o over its C*k*k
    incoming weights (kernel positions included), gain 1/sqrt(C*k*k); the dense layer after
    Flatten standardises over C*H*W, the output layer keeps plain fan-in scaling."""
    f = GraphFactory(hidden_dim=5, weight_standardization=True, weight_init="normal", weight_std=1.0,
                     input_shape=(1, 28, 28))
    spec = "cnn:m=0.125,k=3,h=8"
    w, _ = f.fresh(spec, torch.Generator().manual_seed(0))
    tmpl = f.template(spec)
    mod = f.module(spec, w)
    convs = [m for m in mod if isinstance(m, torch.nn.Conv2d)]
    lins = [m for m in mod if isinstance(m, torch.nn.Linear)]
    for conv in convs + lins[:1]:
        wt = conv.weight.flatten(1)  # [O, fan_in]
        z = wt * wt.size(1) ** 0.5  # undo the fan-in gain
        assert torch.allclose(z.mean(1), torch.zeros(z.size(0)), atol=1e-5)
        assert torch.allclose(z.var(1, unbiased=False), torch.ones(z.size(0)), atol=1e-3)
    assert convs[1].weight.shape[1:] == (4, 3, 3)  # fan-in 4 * 3 * 3 = 36
    out = lins[-1].weight * lins[-1].weight.size(1) ** 0.5
    assert not torch.allclose(out.mean(1), torch.zeros(10), atol=1e-3)  # output layer free
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(mod(x), tmpl.forward(x, weight=f.network_weight(spec, w)), atol=1e-5)


@pytest.mark.parametrize("layer", ["last", "out"])
def test_out_init_layer_picks_the_reinitialised_layer(tmp_path, layer):
    cfg = MetaConfig.from_dict(tiny_config(tmp_path, out_init_std=0.02, out_init_layer=layer))
    rule = MetaTrainer(cfg).rule
    out_changed = bool(rule.out.weight.abs().sum() > 0)  # MLPRule's update layer starts at zero
    assert out_changed == (layer == "out")
    with pytest.raises(ValueError, match="out_init_layer"):
        MetaConfig.from_dict(tiny_config(tmp_path, out_init_layer="first"))


def test_hidden_bias_false_zeroes_hidden_biases_only():
    f = GraphFactory(hidden_dim=4, weight_standardization=True, weight_init="normal", weight_std=1.0,
                     hidden_bias=False)
    spec = "6-5-4-3"
    w, _ = f.fresh(spec, torch.Generator().manual_seed(0))
    lin = [m for m in f.module(spec, w) if isinstance(m, torch.nn.Linear)]
    assert torch.equal(lin[0].bias, torch.zeros(5)) and torch.equal(lin[1].bias, torch.zeros(4))
    assert lin[2].bias.abs().sum() > 0  # output biases stay free


def test_init_rule_starts_from_a_saved_rule(tmp_path):
    first = MetaTrainer(MetaConfig.from_dict(tiny_config(tmp_path / "a", meta_steps=2, pool_size=0)))
    first.fit()
    cfg = MetaConfig.from_dict(tiny_config(tmp_path / "b", init_rule=str(tmp_path / "a" / "rule.pt")))
    second = MetaTrainer(cfg)
    for p, q in zip(first.rule.parameters(), second.rule.parameters()):
        assert torch.equal(p, q)
    bad = tiny_config(tmp_path / "c", init_rule=str(tmp_path / "a" / "rule.pt"))
    bad["rule"]["kwargs"]["width"] = 16
    with pytest.raises(Exception, match="does not fit"):
        MetaTrainer(MetaConfig.from_dict(bad))


def test_kernel_offsets_code_the_same_spatial_offset_alike_in_every_kernel_size():
    from neuralgraph.meta.grow import KERNEL_CENTRE

    plain = GraphFactory(hidden_dim=10, input_shape=(1, 28, 28))
    centred = GraphFactory(hidden_dim=10, input_shape=(1, 28, 28), kernel_offsets=True)
    codes = {}
    for k in (3, 4, 5):
        spec = f"cnn:m=0.125,k={k},h=8"
        g, p = centred.template(spec), plain.template(spec)
        first = slice(0, 4 * k * k)  # layer 0's weights [4, 1, k, k]: padding k // 2
        assert torch.equal(g.edge_pos, p.edge_pos)  # only the code changes, not the graph
        rows = g.edge_pos[first, 3]
        for r in range(k):
            codes.setdefault((k, r - k // 2), g.hidden[first][rows == r][0, 6:8])
        # everything but the conv weights' kernel axes is coded as before
        conv_w = torch.zeros(g.weight.numel(), dtype=torch.bool)
        for slot in g.arch.param_slots:
            if g.arch.ops[slot.op_index].kind == "Conv2d" and slot.name.endswith("weight"):
                conv_w[slot.offset:slot.offset + slot.numel] = True
        assert torch.equal(g.hidden[:, :6], p.hidden[:, :6])
        assert torch.equal(g.hidden[~conv_w], p.hidden[~conv_w])
        assert not torch.equal(g.hidden[conv_w], p.hidden[conv_w])
    # offset 0 (the tap over the output pixel) has one code in kernels 3, 4 and 5; offset -1 too
    for off in (0, -1):
        assert torch.allclose(codes[(3, off)], codes[(4, off)]) and torch.allclose(codes[(3, off)], codes[(5, off)])
    assert not torch.allclose(codes[(3, 0)], codes[(3, -1)])
    assert KERNEL_CENTRE >= 2
    cfg = MetaConfig.from_dict({"arch": {"train": ["cnn:m=0.125,k=3,h=8"]}, "data": {"flatten": False},
                                "grow": {"hidden_dim": 10, "kernel_offsets": True},
                                "rule": {"name": "weight_transformer", "kwargs": {"hidden_dim": 10}}})
    from neuralgraph.meta.trainer import factory_from_config
    assert factory_from_config(cfg, split=object()).kernel_offsets


def test_data_conditioned_weight_transformer_starts_from_a_plain_one(tmp_path):
    """``train.init_rule`` loads a Weight Transformer without data conditioning into a
    data-conditioned one (zero data projection: same update), which then trains on the
    factory's probe batch, through the pool and zero-out, and moves its projection."""
    wt = {"name": "weight_transformer", "kwargs": {"hidden_dim": 4, "ff_dim": 8, "head_width": 8,
                                                   "zero_init": False}}
    plain = tiny_config(tmp_path / "a", meta_steps=2, pool_size=0)
    plain["rule"] = copy.deepcopy(wt)
    MetaTrainer(MetaConfig.from_dict(plain)).fit()
    dc = tiny_config(tmp_path / "b", meta_steps=4, init_rule=str(tmp_path / "a" / "rule.pt"))
    dc["rule"] = copy.deepcopy(wt)
    dc["rule"]["kwargs"]["data_conditioned"] = True
    trainer = MetaTrainer(MetaConfig.from_dict(dc))
    start, _ = load_rule(tmp_path / "a" / "rule.pt")
    assert not trainer.rule.data_proj.weight.any()
    for name, p in start.named_parameters():
        assert torch.equal(p, trainer.rule.get_parameter(name)), name
    hist = trainer.fit()
    assert all(torch.isfinite(torch.tensor([h["loss"] for h in hist])))
    assert trainer.rule.data_proj.weight.abs().max() > 0
    rule, _ = load_rule(tmp_path / "b" / "rule.pt")
    assert rule.data_conditioned and torch.equal(rule.data_proj.weight, trainer.rule.data_proj.weight)


def _subset_code_reference(factory, spec, gen_seed, code_range):
    """Brute force: draw the same per-layer injections, then re-index every edge one by one."""
    g = factory.template(spec)
    gen = torch.Generator().manual_seed(gen_seed)
    new = {}  # node -> new index
    hidden = [v for v in range(g.num_nodes) if int(g.node_role[v]) == 1]
    for layer in sorted({int(g.node_layer[v]) for v in hidden}):
        nodes = [v for v in hidden if int(g.node_layer[v]) == layer]
        pick = torch.randperm(max(len(nodes), code_range), generator=gen)[:len(nodes)]
        for v in nodes:
            new[v] = int(pick[int(g.node_pos[v])])
    pos = g.edge_pos.clone()
    for e in range(g.num_edges):
        s, d = int(g.edge_index[0, e]), int(g.edge_index[1, e])
        if s in new:
            pos[e, 1] = new[s]
        if d in new:
            pos[e, 2] = new[d]
    return ng.positional.position_code(pos, factory.hidden_dim, factory.hidden_init, base=factory.code_base)


@pytest.mark.parametrize("spec", ["6-5-4-3", "cnn:m=0.0625,k=3,h=5"])
def test_subset_code_matches_a_per_edge_reference(spec):
    f = GraphFactory(hidden_dim=8, code_base=50.0, input_shape=(1, 28, 28))
    g = f.template(spec)
    assert torch.equal(f.code(g, g.node_pos.clone()), g.hidden)  # the identity index: the usual code
    for seed, rng in ((0, 9), (1, 0), (2, 40)):
        got = f.subset_code(spec, torch.Generator().manual_seed(seed), rng)
        assert torch.equal(got, _subset_code_reference(f, spec, seed, rng))
    got = f.subset_code(spec, torch.Generator().manual_seed(3), 40)
    out_bias = (g.edge_kind == 1) & (g.node_role[g.edge_index[1]] == 2)
    assert torch.equal(got[out_bias], g.hidden[out_bias])  # outputs keep their codes
    assert not torch.equal(got, g.hidden)


def test_subset_code_as_a_permutation_grows_the_same_function():
    """With ``code_range`` equal to the widths the subset is a permutation of each hidden layer's
    codes, and the permutation-equivariant MLPRule grows the same network with its hidden units
    permuted: the same logits."""
    torch.manual_seed(0)
    f = GraphFactory(hidden_dim=6, weight_init="normal", weight_std=0.0)
    rule = ng.rules.MLPRule(6, width=16, depth=2)
    torch.nn.init.normal_(rule.out.weight, std=0.3)
    spec = "5-7-7-3"
    tmpl = f.template(spec)
    x = torch.randn(11, 5)
    outs = []
    for h in (tmpl.hidden, f.subset_code(spec, torch.Generator().manual_seed(4), 7)):
        with torch.no_grad():
            w, _ = unroll(tmpl, rule, (torch.zeros_like(tmpl.weight), h), 3, 1.0, seed=0, chunk=3,
                          use_checkpoint=False)
        outs.append(tmpl.forward(x, weight=w))
    assert outs[0].abs().sum() > 0
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    with torch.no_grad():  # a subset of a wider range is a different start, so a different network
        w, _ = unroll(tmpl, rule, (torch.zeros_like(tmpl.weight),
                                   f.subset_code(spec, torch.Generator().manual_seed(4), 30)), 3, 1.0,
                      seed=0, chunk=3, use_checkpoint=False)
    assert not torch.allclose(outs[0], tmpl.forward(x, weight=w), atol=1e-3)


def test_code_subset_training_starts_from_subset_codes(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="code_subset_range"):
        MetaConfig.from_dict(tiny_config(tmp_path, code_subset_prob=0.5))
    with pytest.raises(ValueError, match="code_subset_prob must lie"):
        MetaConfig.from_dict(tiny_config(tmp_path, code_subset_prob=1.5, code_subset_range=8))
    starts = []
    for prob in (0.0, 1.0):
        cfg = MetaConfig.from_dict(tiny_config(tmp_path / str(prob), meta_steps=1, ckpt_every=0, pool_size=0,
                                               code_subset_prob=prob, code_subset_range=8))
        tr = MetaTrainer(cfg)
        seen = []

        def spy(spec, start, *a, _seen=seen, _grow_loss=tr.grow_loss):
            _seen.append((spec, start))
            return _grow_loss(spec, start, *a)

        monkeypatch.setattr(tr, "grow_loss", spy)
        tr.meta_step()
        starts.append(seen)
    for spec, (_, h) in starts[0]:  # off: the template's code
        assert torch.equal(h, tr.factory.template(spec).hidden)
    for spec, (_, h) in starts[1]:  # always on: a subset code of the range 0..7
        assert not torch.equal(h, tr.factory.template(spec).hidden)


def test_relative_hidden_codes():
    """``hidden_code_range=R``: hidden neuron ``i`` of a width-``X`` layer is coded as ``floor(i * R / X)``
    (checked edge by edge); a layer as wide as ``R`` keeps its absolute codes; wider is refused."""
    f_abs = GraphFactory(hidden_dim=8, code_base=50.0)
    f_rel = GraphFactory(hidden_dim=8, code_base=50.0, hidden_code_range=12)
    spec = "5-4-12-3"
    g = f_rel.template(spec)
    pos = g.edge_pos.clone()
    width = {1: 4, 2: 12}  # node layer -> width of the hidden layers
    for e in range(g.num_edges):
        for axis, v in ((1, int(g.edge_index[0, e])), (2, int(g.edge_index[1, e]))):
            if int(g.node_role[v]) == 1 and (axis == 2 or int(g.edge_kind[e]) == 0):
                pos[e, axis] = int(g.node_pos[v]) * 12 // width[int(g.node_layer[v])]
    assert torch.equal(g.hidden, ng.positional.position_code(pos, 8, base=50.0))
    layer2 = (g.edge_pos[:, 0] == 2) & (g.edge_kind == 0)  # 12 -> 3: sources as wide as the range
    assert torch.equal(g.hidden[layer2], f_abs.template(spec).hidden[layer2])
    assert not torch.equal(g.hidden, f_abs.template(spec).hidden)
    with pytest.raises(ValueError, match="hidden layer 2 has 13 neurons, more than grow.hidden_code_range=12"):
        f_rel.template("5-4-13-3")
    with pytest.raises(ValueError, match="hidden_code_range must be >= 0"):
        GraphFactory(hidden_code_range=-1)
    with pytest.raises(ValueError, match="does not combine"):
        f_rel.subset_code(spec, None, 20)


def test_hidden_code_range_reaches_the_factory_and_the_saved_rule(tmp_path):
    from neuralgraph.meta.trainer import factory_from_config

    d = tiny_config(tmp_path, meta_steps=1, ckpt_every=0)
    d["grow"]["hidden_code_range"] = 8
    tr = MetaTrainer(MetaConfig.from_dict(d))
    tr.fit()
    assert tr.factory.hidden_code_range == 8
    _, cfg = load_rule(tr.out_dir / "rule.pt")
    assert factory_from_config(cfg).hidden_code_range == 8
    d["grow"]["hidden_code_range"] = -2
    with pytest.raises(ValueError, match="grow.hidden_code_range must be >= 0"):
        MetaConfig.from_dict(d)


def test_update_penalty_matches_a_by_hand_reference(tmp_path):
    """grow_loss with train.update_penalty = the plain loss + lambda * mean_i log(1 + d_i / eps), with
    d_i = mean(dw^2) + c * mean(dh^2) over the loss steps after the first, recomputed here step by step."""
    lam, eps, c = 0.3, 1e-4, 0.5
    cfg = MetaConfig.from_dict(tiny_config(tmp_path, loss_steps=3, steps_max=4, update_penalty=lam,
                                           update_penalty_eps=eps, update_penalty_hidden=c))
    tr = MetaTrainer(cfg)
    torch.manual_seed(0)
    with torch.no_grad():  # a fresh rule proposes no change; give it some
        for p in tr.rule.parameters():
            p.add_(0.3 * torch.randn_like(p))
    spec, steps, seed = "4-4-3", 4, 7
    x, y = tr.split.train
    start = tr.factory.fresh(spec, torch.Generator().manual_seed(0))
    loss, (w, h) = tr.grow_loss(spec, start, steps, seed, x, y)
    cfg0 = copy.deepcopy(cfg)
    cfg0.train.update_penalty = 0.0
    tr0 = MetaTrainer(cfg0)
    tr0.rule.load_state_dict(tr.rule.state_dict())
    plain, (w0, h0) = tr0.grow_loss(spec, start, steps, seed, x, y)
    assert torch.equal(w, w0) and torch.equal(h, h0)
    tpl = tr.factory.template(spec)
    with torch.no_grad():  # states: 2 steps, then one step at a time with seeds seed + 1, seed + 2
        states = [unroll(tpl, tr.rule, start, 2, 0.8, seed, cfg.train.checkpoint_chunk)]
        for i in range(2):
            states.append(unroll(tpl, tr.rule, states[-1], 1, 0.8, seed + 1 + i, 1))
    terms = [math.log1p((float((b[0] - a[0]).pow(2).mean()) + c * float((b[1] - a[1]).pow(2).mean())) / eps)
             for a, b in zip(states, states[1:])]
    assert terms[0] > 0 and terms[1] > 0
    assert torch.allclose(states[-1][0], w, atol=1e-5)  # no-grad steps may take the fused kernel
    assert float(loss.detach()) == pytest.approx(float(plain.detach()) + lam * sum(terms) / 2, rel=1e-5)
    assert tr.last_penalty == pytest.approx(lam * sum(terms) / 2, rel=1e-5)
    g = torch.autograd.grad(loss - plain, [p for p in tr.rule.parameters()], allow_unused=True)
    assert any(gi is not None and float(gi.abs().sum()) > 0 for gi in g)  # the penalty trains the rule
    tr.step = cfg.train.meta_steps  # past the curriculum: 4 rule steps, 3 loss steps
    rec = tr.meta_step()
    assert rec["rule_steps"] == 4 and 0 < rec["update_penalty"] < rec["loss"]
    tr.grow_loss(spec, start, 1, seed, x, y)  # one step: no pair of loss steps, no penalty
    assert tr.last_penalty == 0.0


@pytest.mark.parametrize("train,match", [({"update_penalty": -1.0}, "update_penalty"),
                                         ({"update_penalty": 1.0, "update_penalty_eps": 0.0}, "eps"),
                                         ({"update_penalty": 1.0, "loss_steps": 1}, "loss_steps >= 2")])
def test_update_penalty_config_errors(tmp_path, train, match):
    with pytest.raises(ValueError, match=match):
        MetaConfig.from_dict(tiny_config(tmp_path, **train))
