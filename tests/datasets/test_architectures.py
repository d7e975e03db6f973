import pytest
import torch

import neuralgraph as ng
from neuralgraph.datasets import arch_name, build_arch, cnn, mlp, mlp_grid, parse_arch, sample_cnn, sample_mlp


def test_mlp_and_grid():
    m = mlp([784, 20, 30, 10])
    assert m(torch.zeros(2, 784)).shape == (2, 10)
    assert len(mlp_grid(784, [10, 20], [30], 10)) == 2
    with pytest.raises(ValueError, match="MLP sizes"):
        mlp([5])


@pytest.mark.parametrize("k", [3, 4, 5])
def test_cnn_family_converts(k):
    m = cnn(0.125, k, 16)
    assert [c.out_channels for c in m if isinstance(c, torch.nn.Conv2d)] == [4, 8, 16]
    x = torch.randn(2, 1, 28, 28)
    g = ng.to_neural_graph(m, hidden_dim=4, input_shape=(1, 28, 28))
    assert torch.allclose(g.forward(x), m(x), atol=1e-5)


def test_parse_and_samplers():
    assert parse_arch("784-50-50-10") == ("mlp", {"sizes": [784, 50, 50, 10]})
    assert parse_arch("cnn:m=1.5,k=3,h=100") == ("cnn", {"m": 1.5, "k": 3, "h": 100})
    assert arch_name([4, 8, 3]) == "4-8-3"
    with pytest.raises(ValueError, match="bad architecture"):
        parse_arch("abc")
    g = torch.Generator().manual_seed(0)
    sizes = sample_mlp(g, 4, 3, [8, 16], depth=(1, 3))
    assert sizes[0] == 4 and sizes[-1] == 3 and 3 <= len(sizes) <= 5
    m, k, h = sample_cnn(g, (1.0, 2.0), (3, 5), (100,))
    assert isinstance(build_arch(f"cnn:m={m},k={k},h={h}"), torch.nn.Sequential)
