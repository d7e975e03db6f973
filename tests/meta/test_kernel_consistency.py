"""Kernel-size embedding of conv layers and the kernel-consistency meta-loss."""

import pytest
import torch

from neuralgraph.datasets.splits import Split
from neuralgraph.meta import GraphFactory, MetaConfig, MetaTrainer
from neuralgraph.meta.grow import conv_weight_slots, embed_conv_layer


def _factory():
    return GraphFactory(hidden_dim=4, input_shape=(1, 28, 28))


def _zero_biases(g, w):
    w = w.clone()
    for s in g.arch.param_slots:
        if s.name.endswith("bias"):
            w[s.offset:s.offset + s.numel] = 0
    return w


@pytest.mark.parametrize("ks,kh", [(3, 5), (2, 6), (1, 3)])
def test_embedding_every_conv_layer_reproduces_the_small_network(ks, kh):
    """Same output sizes (odd/odd or even/even kernels with padding k // 2): the host
    network with all conv layers embedded computes the small network's logits, times
    the embedding scale kh / ks per layer (biases zero, so the net is homogeneous)."""
    fac = _factory()
    small, host = fac.template(f"cnn:m=0.125,k={ks},h=8"), fac.template(f"cnn:m=0.125,k={kh},h=8")
    torch.manual_seed(0)
    ws = _zero_biases(small, torch.randn(small.num_edges) * 0.3)
    wh = torch.randn(host.num_edges)
    for layer in range(3):
        wh = embed_conv_layer(small, ws, host, wh, layer)
    conv = {s.offset for s in conv_weight_slots(host)}
    s_rest = [s for s in small.arch.param_slots if s.offset not in {c.offset for c in conv_weight_slots(small)}]
    h_rest = [s for s in host.arch.param_slots if s.offset not in conv]
    for a, b in zip(s_rest, h_rest):  # dense layers and biases from the small network
        assert a.shape == b.shape
        wh[b.offset:b.offset + b.numel] = ws[a.offset:a.offset + a.numel]
    x = torch.rand(5, 1, 28, 28)
    out_s = small.forward(x, weight=ws)
    out_h = host.forward(x, weight=wh)
    torch.testing.assert_close(out_h, out_s * (kh / ks) ** 3, rtol=1e-4, atol=1e-4)


def test_embedding_places_taps_at_equal_offsets_and_keeps_the_rest():
    fac = _factory()
    small, host = fac.template("cnn:m=0.125,k=3,h=8"), fac.template("cnn:m=0.125,k=6,h=8")
    ws, wh = torch.randn(small.num_edges), torch.randn(host.num_edges)
    out = embed_conv_layer(small, ws, host, wh, 1)
    ss, hs = conv_weight_slots(small)[1], conv_weight_slots(host)[1]
    block = out[hs.offset:hs.offset + hs.numel].view(hs.shape)
    # k=3 (padding 1): offsets -1..1 are host (k=6, padding 3) indices 2..4
    torch.testing.assert_close(block[..., 2:5, 2:5], ws[ss.offset:ss.offset + ss.numel].view(ss.shape) * 2.0)
    mask = torch.ones(6, 6, dtype=torch.bool)
    mask[2:5, 2:5] = False
    assert torch.all(block[..., mask] == 0)
    assert torch.equal(out[:hs.offset], wh[:hs.offset])
    assert torch.equal(out[hs.offset + hs.numel:], wh[hs.offset + hs.numel:])
    # differentiable in both weight vectors
    ws.requires_grad_(True)
    wh.requires_grad_(True)
    embed_conv_layer(small, ws, host, wh, 1).pow(2).sum().backward()
    assert ws.grad[ss.offset:ss.offset + ss.numel].abs().sum() > 0 and ws.grad[:ss.offset].abs().sum() == 0
    assert torch.all(wh.grad[hs.offset:hs.offset + hs.numel] == 0) and wh.grad[:hs.offset].abs().sum() > 0


def test_embedding_rejects_kernels_that_do_not_nest():
    fac = _factory()
    k3, k5 = fac.template("cnn:m=0.125,k=3,h=8"), fac.template("cnn:m=0.125,k=5,h=8")
    wide = fac.template("cnn:m=0.25,k=5,h=8")
    with pytest.raises(ValueError, match="does not fit inside host kernel"):
        embed_conv_layer(k5, k5.weight, k3, k3.weight, 0)
    with pytest.raises(ValueError, match="differ in channels"):
        embed_conv_layer(k3, k3.weight, wide, wide.weight, 1)
    with pytest.raises(ValueError, match="out of range"):
        embed_conv_layer(k3, k3.weight, k5, k5.weight, 3)


def _cnn_config(tmp_path, pairs, **train):
    t = {"meta_steps": 3, "steps_min": 1, "steps_max": 1, "out_dir": str(tmp_path), "progress": False,
         "log_every": 0, "ckpt_every": 0, "seed": 0, "lr": 1e-3, "grad_checkpoint": "none",
         "kernel_consistency": pairs}
    t.update(train)
    return {"name": "tiny_cnn", "rule": {"name": "weight_transformer",
                                        "kwargs": {"hidden_dim": 4, "heads": 1, "head_dim": 4, "ff_dim": 8,
                                                   "head_width": 8}},
            "data": {"flatten": False, "batch_size": 8}, "arch": {"train": ["cnn:m=0.125,k=3,h=8"]},
            "grow": {"hidden_dim": 4, "fan_in_scaling": True, "kernel_offsets": True}, "train": t}


def _split():
    g = torch.Generator().manual_seed(0)
    xy = lambda n: (torch.rand(n, 1, 28, 28, generator=g), torch.randint(10, (n,), generator=g))  # noqa: E731
    return Split(xy(32), xy(8), xy(8))


def test_trainer_adds_the_consistency_loss_and_changes_the_update(tmp_path):
    pairs = [["cnn:m=0.125,k=3,h=8", "cnn:m=0.125,k=5,h=8"]]
    tr = MetaTrainer(MetaConfig.from_dict(_cnn_config(tmp_path / "a", pairs)), split=_split())
    rec = tr.meta_step()
    assert rec["hybrid_loss"] > 0 and torch.isfinite(torch.tensor(rec["hybrid_loss"]))
    plain = MetaTrainer(MetaConfig.from_dict(_cnn_config(tmp_path / "b", [])), split=_split())
    assert "hybrid_loss" not in plain.meta_step()
    changed = any(not torch.equal(a, b) for a, b in zip(tr.rule.state_dict().values(),
                                                        plain.rule.state_dict().values()))
    assert changed  # same seed and start: the pair's gradient made the difference


def test_bad_pairs_are_rejected_with_the_pair_named(tmp_path):
    with pytest.raises(ValueError, match="small_spec, host_spec"):
        MetaConfig.from_dict(_cnn_config(tmp_path, [["cnn:m=0.125,k=3,h=8"]]))
    with pytest.raises(ValueError, match="consistency_weight"):
        MetaConfig.from_dict(_cnn_config(tmp_path, [], consistency_weight=-1.0))
    cfg = MetaConfig.from_dict(_cnn_config(tmp_path, [["cnn:m=0.125,k=5,h=8", "cnn:m=0.125,k=3,h=8"]]))
    with pytest.raises(ValueError, match="does not fit"):
        MetaTrainer(cfg, split=_split())
    cfg = MetaConfig.from_dict(_cnn_config(tmp_path, [["cnn:m=0.125,k=3,h=8", "4-4-3"]]))
    with pytest.raises(ValueError, match="4-4-3"):
        MetaTrainer(cfg, split=_split())


def test_trained_archs_include_the_consistency_pairs(tmp_path):
    pairs = [["cnn:m=0.125,k=3,h=8", "cnn:m=0.125,k=5,h=8"], ["cnn:m=0.125,k=2,h=8", "cnn:m=0.125,k=6,h=8"]]
    cfg = MetaConfig.from_dict(_cnn_config(tmp_path, pairs))
    assert cfg.trained_archs() == ["cnn:m=0.125,k=3,h=8", "cnn:m=0.125,k=5,h=8", "cnn:m=0.125,k=2,h=8",
                                   "cnn:m=0.125,k=6,h=8"]
