import importlib.util
import os

import torch

HERE = os.path.dirname(__file__)


def _load():
    path = os.path.join(HERE, "..", "..", "examples", "wann_mnist.py")
    spec = importlib.util.spec_from_file_location("wann_mnist_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_runs_on_synthetic_data(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(200, 256, generator=gen)
    y = (x[:, :128].sum(1) > x[:, 128:].sum(1)).long()
    data = {"train": (x[:160], y[:160]), "test": (x[160:], y[160:])}
    res = _load().run(None, generations=2, out_dir=str(tmp_path), data=data, draws=5, train_epochs=1,
                      progress=False, pop_size=8, tournament_size=2, hall_of_fame=2,
                      task_args={"batch_size": 32, "val_size": 40, "chunk": 4})
    assert res["generations"] == 2 and res["individuals"] == 16
    for key in ("test_acc_random_weight_mean", "test_acc_ensemble", "test_acc_tuned_weight", "test_acc_trained"):
        assert 0.0 <= res[key] <= 1.0
    for name in ("champion_topology.png", "accuracy_vs_weight.png", "input_usage.png", "history.png",
                 "results.json"):
        assert (tmp_path / name).exists()
