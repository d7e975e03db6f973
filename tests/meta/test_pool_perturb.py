import pytest
import torch

from neuralgraph.meta import SamplePool, zero_out, zero_out_mask


def test_zero_out_whole_layer_and_fraction():
    layer = torch.tensor([0] * 500 + [1] * 500 + [2] * 500)
    g = torch.Generator().manual_seed(0)
    w = torch.ones(1500)
    out, lay = zero_out(w, layer, 0.3, g, layer=1)
    assert lay == 1 and (out[500:1000] == 0).all()
    rest = torch.cat([out[:500], out[1000:]])
    assert 0.22 < float((rest == 0).float().mean()) < 0.38
    assert (w == 1).all()  # out of place
    m, lay2 = zero_out_mask(layer, 0.0, torch.Generator().manual_seed(1))
    assert int(m.sum()) == 500 and lay2 in (0, 1, 2)
    with pytest.raises(ValueError, match="fraction"):
        zero_out(w, layer, 1.5)
    with pytest.raises(ValueError, match="layer 7"):
        zero_out(w, layer, 0.1, layer=7)


def test_pool_draw_put_and_state():
    pool = SamplePool(3, fresh_prob=0.0)
    g = torch.Generator().manual_seed(0)
    st, slot = pool.draw("a", g)
    assert st is None and 0 <= slot < 3  # empty pool: fresh
    pool.put("a", slot, (torch.ones(4), torch.zeros(4, 2)))
    st2, slot2 = pool.draw("a", g)
    assert slot2 == slot and torch.equal(st2[0], torch.ones(4))
    st2[0].add_(5)  # drawing returns a copy
    assert torch.equal(pool.slots["a"][slot][0], torch.ones(4))
    pool.put("a", slot, (torch.full((4,), float("nan")), torch.zeros(4, 2)))
    assert pool.slots["a"][slot] is None  # diverged states are dropped
    other = SamplePool(3)
    other.load_state_dict(pool.state_dict())
    with pytest.raises(ValueError, match="slots"):
        SamplePool(2).load_state_dict(pool.state_dict())
    assert SamplePool(0).draw("a", g) == (None, -1)
