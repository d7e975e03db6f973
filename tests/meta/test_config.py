import json

import pytest

from neuralgraph.meta import MetaConfig
from neuralgraph.meta.config import apply_override

from .helpers import tiny_config, write_config


def test_yaml_json_roundtrip(tmp_path):
    d = tiny_config(tmp_path)
    c1 = MetaConfig.from_file(write_config(tmp_path / "c.yaml", d))
    (tmp_path / "c.json").write_text(json.dumps(d))
    c2 = MetaConfig.from_file(tmp_path / "c.json")
    assert c1 == c2 and c1.train.meta_steps == 6 and c1.rule.kwargs["width"] == 8
    assert MetaConfig.from_dict(c1.to_dict()) == c1


def test_unknown_keys_named(tmp_path):
    d = tiny_config(tmp_path)
    d["train"]["meta_stepz"] = 3
    with pytest.raises(ValueError, match="train.meta_stepz"):
        MetaConfig.from_dict(d)
    with pytest.raises(ValueError, match="unknown config section 'trian'"):
        MetaConfig.from_dict({"trian": {}})


def test_checks_and_overrides(tmp_path):
    d = tiny_config(tmp_path)
    apply_override(d, "train.steps_min=9")
    with pytest.raises(ValueError, match="steps_min"):
        MetaConfig.from_dict(d)
    d = tiny_config(tmp_path)
    d["grow"]["hidden_dim"] = 8
    with pytest.raises(ValueError, match="hidden_dim"):
        MetaConfig.from_dict(d)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        MetaConfig.from_file(tmp_path / "missing.yaml")


def test_scalar_types_checked_and_yaml_exponents_converted(tmp_path):
    # YAML 1.1 loads "1.0e6" (no exponent sign) as a string: a float field converts it
    import yaml

    assert yaml.safe_load("x: 1.0e6")["x"] == "1.0e6"
    d = tiny_config(tmp_path)
    d["train"]["explode_factor"] = "1.0e6"
    d["train"]["lr"] = 1  # an int for a float field
    c = MetaConfig.from_file(write_config(tmp_path / "c.yaml", d))
    assert c.train.explode_factor == 1e6 and isinstance(c.train.explode_factor, float)
    assert c.train.lr == 1.0 and isinstance(c.train.lr, float)
    for key, bad, msg in [("explode_factor", "big", "must be a number"), ("meta_steps", 2.5, "must be an integer"),
                          ("meta_steps", True, "must be an integer"), ("init_widen", "yes", "must be true or false"),
                          ("grad_checkpoint", 3, "must be a string")]:
        d = tiny_config(tmp_path)
        d["train"][key] = bad
        with pytest.raises(ValueError, match=f"train.{key} {msg}"):
            MetaConfig.from_dict(d)
    d = tiny_config(tmp_path)
    d["train"]["init_rule"] = None  # Optional[str]
    assert MetaConfig.from_dict(d).train.init_rule is None


def test_base_configs_merge_and_name_their_faults(tmp_path):
    import yaml

    d = tiny_config(tmp_path)
    d["quick"] = {"train.meta_steps": 2, "train.out_dir": "runs/base_quick"}
    d["train"]["out_dir"] = str(tmp_path / "base_run")
    (tmp_path / "cfgs").mkdir()
    base = write_config(tmp_path / "cfgs" / "base.yaml", d)
    child = {"base": "base.yaml", "name": "child", "rule": {"kwargs": {"width": 12}},
             "arch": {"train": ["4-5-3"]}, "train": {"lr": 5e-4, "out_dir": str(tmp_path / "child_run")},
             "quick": {"train.out_dir": "runs/child_quick"}}
    (tmp_path / "cfgs" / "child.yaml").write_text(yaml.safe_dump(child))
    b, c = MetaConfig.from_file(base), MetaConfig.from_file(tmp_path / "cfgs" / "child.yaml")
    assert c.name == "child" and c.rule.kwargs == {**b.rule.kwargs, "width": 12}  # mappings merge
    assert c.arch.train == ["4-5-3"] and c.train.lr == 5e-4  # lists and scalars replace
    assert c.train.meta_steps == b.train.meta_steps and c.data == b.data and c.grow == b.grow
    q = MetaConfig.from_file(tmp_path / "cfgs" / "child.yaml", quick=True)
    assert q.train.meta_steps == 2 and q.train.out_dir == "runs/child_quick"  # the base's quick block, merged
    # a grandchild (JSON) of the child, in another folder
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "g.json").write_text(json.dumps(
        {"base": "../cfgs/child.yaml", "name": "g", "train": {"seed": 7, "out_dir": "runs/g"},
         "quick": {"train.out_dir": "runs/g_quick"}}))
    g = MetaConfig.from_file(tmp_path / "more" / "g.json")
    assert g.train.seed == 7 and g.train.lr == 5e-4 and g.rule.kwargs["width"] == 12

    def bad(name, body):
        (tmp_path / "cfgs" / name).write_text(yaml.safe_dump(body))
        return tmp_path / "cfgs" / name

    with pytest.raises(ValueError, match="must set its own name"):
        MetaConfig.from_file(bad("noname.yaml", {"base": "base.yaml", "train": {"out_dir": "x"}}))
    with pytest.raises(ValueError, match="inherits train.out_dir"):
        MetaConfig.from_file(bad("samedir.yaml", {"base": "base.yaml", "name": "s"}))
    with pytest.raises(ValueError, match="inherits quick train.out_dir"):
        MetaConfig.from_file(bad("samequick.yaml", {"base": "base.yaml", "name": "s", "train": {"out_dir": "x"}}))
    with pytest.raises(FileNotFoundError, match="base 'nowhere.yaml'"):
        MetaConfig.from_file(bad("missing.yaml", {"base": "nowhere.yaml", "name": "m"}))
    bad("loop_a.yaml", {"base": "loop_b.yaml", "name": "a"})
    with pytest.raises(ValueError, match="config base cycle"):
        MetaConfig.from_file(bad("loop_b.yaml", {"base": "loop_a.yaml", "name": "b"}))
    with pytest.raises(ValueError, match="base must be a config file path"):
        MetaConfig.from_file(bad("listbase.yaml", {"base": ["base.yaml"], "name": "l"}))
    with pytest.raises(ValueError, match="unknown key train.lrr"):  # typos in a child are still named
        MetaConfig.from_file(bad("typo.yaml", {"base": "base.yaml", "name": "t", "train": {"lrr": 1, "out_dir": "y"},
                                               "quick": {"train.out_dir": "z"}}))
