"""``average_rules`` / ``neuralgraph average-rules``: parameter means of rules of one kind."""

import copy
import json

import pytest
import torch

from neuralgraph.cli import main
from neuralgraph.meta import CheckpointError, MetaConfig, atomic_save, build_rule, load_rule
from neuralgraph.meta.average import average_rules
from neuralgraph.meta.trainer import RULE_FORMAT

from .helpers import tiny_config


def _rule_file(path, seed, cfg=None):
    """A rule export with random parameters (``seed``); returns the path and its state dict."""
    cfg = cfg or tiny_config(str(path.parent / "run"))
    rule = build_rule(MetaConfig.from_dict(cfg))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in rule.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    atomic_save({"format": RULE_FORMAT, "config": MetaConfig.from_dict(cfg).to_dict(),
                 "rule_class": type(rule).__name__, "rule_state": rule.state_dict()}, path)
    return str(path), rule.state_dict()


def test_weighted_mean_of_every_tensor(tmp_path):
    files = [_rule_file(tmp_path / f"r{i}.pt", i) for i in range(3)]
    avg = average_rules([f for f, _ in files], weights=[1, 2, 1])
    assert avg["format"] == RULE_FORMAT
    assert [a["weight"] for a in avg["averaged_from"]] == [0.25, 0.5, 0.25]
    for name, t in avg["rule_state"].items():
        want = 0.25 * files[0][1][name] + 0.5 * files[1][1][name] + 0.25 * files[2][1][name]
        torch.testing.assert_close(t, want)
        assert t.dtype == files[0][1][name].dtype
    # default: equal weights
    eq = average_rules([f for f, _ in files])
    for name, t in eq["rule_state"].items():
        torch.testing.assert_close(t, sum(s[name] for _, s in files) / 3)


def test_average_of_copies_is_the_rule_and_loads(tmp_path):
    """Averaging a rule with itself gives it back; the result is a rule export load_rule reads, and
    it updates a graph exactly as the rule does."""
    a, state = _rule_file(tmp_path / "a.pt", 0)
    out = tmp_path / "avg.pt"
    assert main(["average-rules", str(out), a, a]) == 0
    rule, cfg = load_rule(out)
    for name, t in rule.state_dict().items():
        torch.testing.assert_close(t, state[name], rtol=0, atol=1e-7)
    src, _ = load_rule(a)
    from neuralgraph.meta import factory_from_config

    graph = factory_from_config(cfg).template("4-5-3")
    graph.weight = torch.randn(graph.weight.shape)
    with torch.no_grad():
        torch.testing.assert_close(rule(graph)[0], src(graph)[0], rtol=1e-6, atol=1e-6)


def test_growth_time_knobs_may_differ(tmp_path):
    """fire_rate is a growth-time knob: rules trained at other fire rates average (first's kept)."""
    cfg = tiny_config(str(tmp_path / "run"))
    other = copy.deepcopy(cfg)
    other["grow"]["fire_rate"] = 1.0
    a, _ = _rule_file(tmp_path / "a.pt", 0, cfg)
    b, _ = _rule_file(tmp_path / "b.pt", 1, other)
    avg = average_rules([a, b])
    assert avg["config"]["grow"]["fire_rate"] == 0.8


@pytest.mark.parametrize("section,key,value,named", [
    ("rule", "kwargs", {"hidden_dim": 4, "width": 16, "depth": 1}, "rule.kwargs"),
    ("grow", "hidden_init", "binary", "grow.hidden_init"),
    ("grow", "code_base", 50.0, "grow.code_base"),
])
def test_rules_of_other_kinds_are_refused(tmp_path, section, key, value, named):
    cfg = tiny_config(str(tmp_path / "run"))
    other = copy.deepcopy(cfg)
    other[section][key] = value
    a, _ = _rule_file(tmp_path / "a.pt", 0, cfg)
    b, _ = _rule_file(tmp_path / "b.pt", 1, other)
    with pytest.raises(CheckpointError, match=f"b.pt: its rule differs from .*a.pt's in .*{named}"):
        average_rules([a, b])
    with pytest.raises(SystemExit, match=f"average-rules: .*b.pt.*{named}"):
        main(["average-rules", str(tmp_path / "x.pt"), a, b])
    assert not (tmp_path / "x.pt").exists()


def test_data_conditioned_rules_need_the_same_probe_dataset(tmp_path):
    cfg = tiny_config(str(tmp_path / "run"))
    cfg["rule"]["kwargs"]["data_conditioned"] = True
    other = copy.deepcopy(cfg)
    other["data"]["name"] = "digits"
    a, _ = _rule_file(tmp_path / "a.pt", 0, cfg)
    b, _ = _rule_file(tmp_path / "b.pt", 1, other)
    with pytest.raises(CheckpointError, match="data.name"):
        average_rules([a, b])
    # plain rules read no data: the dataset may differ
    cfg["rule"]["kwargs"]["data_conditioned"] = other["rule"]["kwargs"]["data_conditioned"] = False
    a, _ = _rule_file(tmp_path / "a.pt", 0, cfg)
    b, _ = _rule_file(tmp_path / "b.pt", 1, other)
    average_rules([a, b])


def test_bad_arguments(tmp_path):
    a, _ = _rule_file(tmp_path / "a.pt", 0)
    b, _ = _rule_file(tmp_path / "b.pt", 1)
    with pytest.raises(ValueError, match="at least two"):
        average_rules([a])
    with pytest.raises(ValueError, match="3 weights for 2"):
        average_rules([a, b], weights=[1, 1, 1])
    for w in ([1, -1], [0, 0], [float("nan"), 1]):
        with pytest.raises(ValueError, match="finite, >= 0 and not all zero"):
            average_rules([a, b], weights=w)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        average_rules([a, str(tmp_path / "missing.pt")])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        average_rules([a, str(tmp_path / "junk.pt")])
    with pytest.raises(SystemExit, match="average-rules: could not convert"):
        main(["average-rules", str(tmp_path / "x.pt"), a, b, "--weights", "1,x"])


def test_cli_prints_sources(tmp_path, capsys):
    a, _ = _rule_file(tmp_path / "a.pt", 0)
    b, _ = _rule_file(tmp_path / "b.pt", 1)
    assert main(["average-rules", str(tmp_path / "avg.pt"), a, b, "--weights", "3,1"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["averaged_from"] == [{"path": a, "weight": 0.75}, {"path": b, "weight": 0.25}]
