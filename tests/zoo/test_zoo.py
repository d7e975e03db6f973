"""The CNN model zoo: reproducible, resumable, loadable as neural graphs; generalization prediction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import neuralgraph as ng
from neuralgraph.datasets.zoo import NetSpec, ZooConfig, ZooDataset, build_cnn, build_zoo, sample_spec
from neuralgraph.nn.predict import PredictConfig, kendall_tau, run_prediction, split_by_holdout, stat_features


def tiny_config(root: Path, n: int = 12) -> ZooConfig:
    return ZooConfig(root=str(root), num_networks=n, seed=3, widths=[2, 3], kernel_sizes=[3, 5],
                     steps=[20, 60], test_size=200)


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("zoo")
    build_zoo(tiny_config(root), progress=False)
    return root


def test_specs_deterministic_and_varied() -> None:
    cfg = ZooConfig(num_networks=50)
    specs = [sample_spec(cfg, i) for i in range(50)]
    assert specs[7] == sample_spec(cfg, 7)
    assert {s.num_conv for s in specs} == {1, 2, 3}
    assert {s.kernel_size for s in specs} == {3, 5, 7}
    assert {s.dataset for s in specs} == {"mnist", "fashion-mnist"}
    assert all(20 <= s.steps <= 1500 and 5e-3 <= s.lr <= 0.2 for s in specs)


def test_build_cnn_graph_roundtrip() -> None:
    spec = NetSpec(0, "mnist", [3, 4], 5, "Tanh", 1, 0.1, 0)
    model = build_cnn(spec).eval()
    graph = ng.to_neural_graph(model, hidden_dim=0, input_shape=(1, 28, 28))
    assert graph.num_edges == sum(p.numel() for p in model.parameters())
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(graph.forward(x), model(x), atol=1e-6)
    with pytest.raises(ValueError, match="unknown activation"):
        build_cnn(NetSpec(0, "mnist", [3], 3, "Swish", 1, 0.1, 0))


def test_zoo_files_and_resume(tiny_zoo: Path) -> None:
    files = sorted((tiny_zoo / "nets").glob("*.pt"))
    assert len(files) == 12 and not list((tiny_zoo / "nets").glob("*.tmp"))
    rec = torch.load(files[0], weights_only=False)
    assert set(rec) >= {"spec", "state_dict", "test_acc", "train_loss"}
    accs = [torch.load(f, weights_only=False)["test_acc"] for f in files]
    assert all(0.0 <= a <= 1.0 for a in accs) and max(accs) > 0.2  # some nets beat chance (0.1)
    assert len(set(accs)) > 6  # accuracies spread
    # resume: nothing is retrained; a deleted network is rebuilt identically
    mtimes = {f.name: f.stat().st_mtime_ns for f in files}
    rec3 = torch.load(files[3], weights_only=False)
    files[3].unlink()
    build_zoo(tiny_config(tiny_zoo), resume=True, progress=False)
    again = torch.load(files[3], weights_only=False)
    assert again["test_acc"] == accs[3] and torch.equal(again["state_dict"]["0.weight"], rec3["state_dict"]["0.weight"])
    assert all(f.stat().st_mtime_ns == mtimes[f.name] for f in files if f.name != files[3].name)
    with pytest.raises(FileExistsError, match="--resume"):
        build_zoo(tiny_config(tiny_zoo), resume=False, progress=False)
    other = tiny_config(tiny_zoo)
    other.lr = [0.5, 0.6]
    with pytest.raises(ValueError, match="different settings"):
        build_zoo(other, resume=True, progress=False)


def test_zoo_dataset(tiny_zoo: Path) -> None:
    ds = ZooDataset(tiny_zoo)
    assert len(ds) == 12 and (tiny_zoo / "processed.pt").exists()
    g = ds[0]
    assert g.y.shape == (1,) and g.hidden.shape == (g.num_edges, 0)
    cached = ZooDataset(tiny_zoo)
    assert torch.equal(cached[5].weight, ds[5].weight) and torch.allclose(cached.y, ds.y)
    feats = stat_features(g)
    assert feats.shape == (60,) and feats[-1] == 1.0  # classifier layer always in the last slot


def test_zoo_dataset_cache_follows_the_files(tiny_zoo: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "zoo"
    (root / "nets").mkdir(parents=True)
    files = sorted((tiny_zoo / "nets").glob("*.pt"))
    for f in files[:8]:
        shutil.copy2(f, root / "nets" / f.name)
    assert len(ZooDataset(root)) == 8  # writes the cache
    # the zoo grows (like 604 -> 2,000 networks): the cache is rebuilt with every network
    for f in files[8:]:
        shutil.copy2(f, root / "nets" / f.name)
    grown = ZooDataset(root)
    assert len(grown) == 12 and [s.index for s in grown.specs] == list(range(12))
    assert torch.load(root / "processed.pt", weights_only=False)["num_files"] == 12
    # same file count, one network rewritten: not served from the stale cache
    rec = torch.load(files[0], weights_only=False)
    rec["test_acc"] = 0.5
    torch.save(rec, root / "nets" / files[0].name)
    assert float(ZooDataset(root)[0].y) == 0.5


def test_split_and_tau() -> None:
    specs = [NetSpec(i, "mnist", [2], 3 if i % 3 else 5, "ReLU", 1, 0.1, 0) for i in range(30)]
    train, val, test = split_by_holdout(specs, "kernel_size=5", 0.2, seed=0)
    assert test == [i for i in range(30) if i % 3 == 0]
    assert sorted(train + val + test) == list(range(30)) and len(val) == 4
    with pytest.raises(ValueError, match="not a NetSpec field"):
        split_by_holdout(specs, "depth=2", 0.1, 0)
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert kendall_tau([3, 2, 1], [10, 20, 30]) == pytest.approx(-1.0)


def test_predict_end_to_end(tiny_zoo: Path, tmp_path: Path) -> None:
    cfg = PredictConfig(zoo_root=str(tiny_zoo), out=str(tmp_path), models=["statnn", "ng_gnn", "ng_t"],
                        seeds=[0], holdout="random", epochs=1, hidden=8, layers=1, heads=2,
                        gbr_estimators=10, val_fraction=0.2)
    res = run_prediction(cfg, progress=False)
    for name in cfg.models:
        s = res["summary"][name]
        assert np.isfinite(s["tau_mean"]) or np.isnan(s["tau_mean"])
        saved = json.loads((tmp_path / f"{name}.json").read_text())
        assert saved["summary"]["n_networks"] == 12 and saved["runs"][0]["n_test"] == 2
    with pytest.raises(ValueError, match="unknown models"):
        PredictConfig.from_dict({"models": ["resnet"]})


def test_cli_zoo_build(tmp_path: Path) -> None:
    from neuralgraph.cli import main

    cfg = {"zoo": {"root": str(tmp_path / "z"), "num_networks": 3, "widths": [2], "kernel_sizes": [3],
                   "steps": [5, 6], "test_size": 100, "datasets": ["mnist"]}}
    path = tmp_path / "zoo.json"
    path.write_text(json.dumps(cfg))
    assert main(["zoo-build", str(path), "--no-progress", "--shard", "1/2"]) == 0
    assert sorted(f.name for f in (tmp_path / "z" / "nets").glob("*.pt")) == ["00001.pt"]
    with pytest.raises(ValueError, match="shard"):
        main(["zoo-build", str(path), "--resume", "--shard", "2/2"])
    with pytest.raises(FileNotFoundError, match="not found"):
        main(["zoo-build", str(tmp_path / "missing.yaml")])


def test_example_runs(tiny_zoo: Path, tmp_path: Path) -> None:
    import importlib.util
    from dataclasses import asdict

    path = Path(__file__).resolve().parents[2] / "examples" / "predict_generalization.py"
    spec = importlib.util.spec_from_file_location("predict_generalization", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = {"zoo": asdict(tiny_config(tiny_zoo)),
           "predict": {"holdout": "kernel_size=5", "hidden": 8, "layers": 1, "heads": 2, "gbr_estimators": 5}}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    summary = module.run(str(tmp_path / "c.json"), models=["statnn", "ng_t"], seeds=[0], epochs=1,
                         out=str(tmp_path / "out"), progress=False)
    assert set(summary) == {"statnn", "ng_t"} and summary["ng_t"]["n_networks"] == 12


def test_cli_zoo_predict_overrides(tmp_path: Path) -> None:
    from neuralgraph.cli import main

    path = tmp_path / "zoo.json"
    path.write_text(json.dumps({"zoo": {"root": str(tmp_path / "none")}, "predict": {}}))
    with pytest.raises(ValueError, match="unknown PredictConfig keys"):
        main(["zoo-predict", str(path), "--set", "hiddn=32"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        main(["zoo-predict", str(path), "--set", "hidden"])
    with pytest.raises(FileNotFoundError, match="no zoo at"):
        main(["zoo-predict", str(path), "--set", "hidden=8", "--no-progress"])
