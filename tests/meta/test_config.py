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
