"""``grow.code_tile``: hidden neurons indexed modulo a reference architecture's widths, so a wider network
grows as copies of the reference's neurons (``GraphFactory.tile_index``)."""

import pytest
import torch

import neuralgraph as ng
from neuralgraph.meta import GraphFactory, MetaConfig, unroll
from neuralgraph.meta.grow import hidden_layers
from neuralgraph.meta.trainer import factory_from_config

from .helpers import tiny_config

CASES = [("5-4-3-2", "5-8-9-2"), ("cnn:m=0.125,k=3,h=6", "cnn:m=0.25,k=3,h=12")]


def _factory(ref: str = "", **kw) -> GraphFactory:
    return GraphFactory(hidden_dim=8, code_base=50.0, input_shape=(1, 28, 28), fan_in_scaling=True,
                        weight_standardization=True, hidden_bias=False, code_tile=ref, **kw)


@pytest.mark.parametrize("ref,spec", CASES)
def test_code_tile_matches_a_per_edge_reference(ref, spec):
    """Edge by edge: a hidden source / target neuron's index becomes ``index mod`` the reference's width of
    that hidden layer, in ``edge_pos`` and in the position code; everything else keeps its position."""
    plain, tiled = _factory(), _factory(ref)
    g0, g = plain.template(spec), tiled.template(spec)
    widths = {layer: w for layer, _, w in hidden_layers(plain.template(ref))}
    order = {layer: i for i, (layer, _, _) in enumerate(hidden_layers(g0))}
    ref_width = {layer: list(widths.values())[i] for layer, i in order.items()}
    pos = g0.edge_pos.clone()
    for e in range(g0.num_edges):
        src, dst = int(g0.edge_index[0, e]), int(g0.edge_index[1, e])
        if int(g0.node_role[dst]) == 1:
            pos[e, 2] = int(g0.node_pos[dst]) % ref_width[int(g0.node_layer[dst])]
        if int(g0.node_role[src]) == 1 and int(g0.edge_kind[e]) == 0:
            pos[e, 1] = int(g0.node_pos[src]) % ref_width[int(g0.node_layer[src])]
    assert torch.equal(g.edge_pos, pos)
    assert not torch.equal(g.edge_pos, g0.edge_pos)
    assert torch.equal(g.hidden, ng.positional.position_code(pos, 8, base=50.0))
    # the reference itself (and anything no wider) keeps its indices
    assert torch.equal(tiled.template(ref).edge_pos, plain.template(ref).edge_pos)
    assert torch.equal(tiled.template(ref).hidden, plain.template(ref).hidden)


def _rule(kind: str) -> torch.nn.Module:
    torch.manual_seed(0 if kind == "mlp" else 1)  # (seeds 0 and 2 grow a CNN whose dense ReLUs are all off)
    if kind == "mlp":
        rule = ng.rules.MLPRule(8, width=16, depth=2)
        torch.nn.init.normal_(rule.out.weight, std=0.3)
    else:
        rule = ng.rules.WeightTransformer(hidden_dim=8, heads=2, head_dim=4, ff_dim=16, head_width=16,
                                          zero_init=False, update_scale=0.5)
    return rule.eval()


def _grow(factory: GraphFactory, rule: torch.nn.Module, spec: str) -> torch.Tensor:
    g = factory.template(spec)
    with torch.no_grad():
        w, _ = unroll(g, rule, (torch.zeros_like(g.weight), g.hidden), 3, 1.0, seed=0, chunk=3,
                      use_checkpoint=False)
    return w


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _key(g) -> list:
    """Each edge's tiled position and kind: equal keys are copies of one reference edge."""
    return [tuple(p) + (int(k),) for p, k in zip(g.edge_pos.tolist(), g.edge_kind)]


def _copied(g_ref, w_ref: torch.Tensor, g) -> torch.Tensor:
    """``[E]`` weights of ``g`` with every edge holding its reference edge's weight."""
    ref_w = dict(zip(_key(g_ref), w_ref.tolist()))
    return torch.tensor([ref_w[k] for k in _key(g)])


def _outputs(tiled: GraphFactory, ref: str, w_ref: torch.Tensor, spec: str, w: torch.Tensor):
    """``(x, reference logits, wide logits)`` on a random batch ``x``."""
    g_ref, g = tiled.template(ref), tiled.template(spec)
    x = torch.randn(6, 5) if ref[0] != "c" else torch.randn(6, 1, 28, 28)
    return (x, g_ref.forward(x, weight=tiled.network_weight(ref, w_ref)),
            g.forward(x, weight=tiled.network_weight(spec, w)))


UNEVEN = [("5-4-3-2", "5-6-7-2"), ("cnn:m=0.125,k=3,h=6", "cnn:m=0.1875,k=3,h=10")]


@pytest.mark.parametrize("kind", ["mlp", "wt"])
@pytest.mark.parametrize("ref,spec", CASES + UNEVEN)
def test_tiled_growth_copies_the_reference(kind, ref, spec):
    """Edges with the same tiled indices grow exactly the reference edge's weight: the template's
    ``neighbour_weight`` (``1 / copies``) makes every neighbourhood sum the reference's, even and uneven
    widths alike.  The wide network then computes the reference's function (its logits, to float
    rounding).  Without the neighbour weights the copies drift from the reference (the bias edge's
    share in the sums); without tiling the wide network is a different one."""
    rule = _rule(kind)
    tiled = _factory(ref)
    w_ref, w = _grow(tiled, rule, ref), _grow(tiled, rule, spec)
    g_ref, g = tiled.template(ref), tiled.template(spec)
    keys = _key(g)
    first: dict = {}
    for e, k in enumerate(keys):
        first.setdefault(k, e)
    assert len(first) < len(keys) * 0.75  # many edges are copies
    assert torch.allclose(w, w[[first[k] for k in keys]], atol=1e-6)  # exact copies
    assert _rel(w, _copied(g_ref, w_ref, g)) < 1e-5  # ... of the reference's edges

    x, ref_out, out = _outputs(tiled, ref, w_ref, spec, w)
    assert ref_out.abs().max() > 1e-2
    assert _rel(out, ref_out) < 1e-4

    nw = g.neighbour_weight
    del g.neighbour_weight  # plain neighbourhood means
    try:
        assert _rel(_grow(tiled, rule, spec), _copied(g_ref, w_ref, g)) > 1e-3
    finally:
        g.neighbour_weight = nw

    plain = _factory()
    w_plain = _grow(plain, rule, spec)
    plain_out = plain.template(spec).forward(x, weight=plain.network_weight(spec, w_plain))
    assert _rel(plain_out, ref_out) > 1e-2


@pytest.mark.parametrize("ref,spec", CASES + UNEVEN)
def test_copied_weights_compute_the_reference_function(ref, spec):
    """Give every edge of the wide network exactly its reference edge's rule-space weight (random here): the
    network weights then compute the reference's function, to float rounding.  The ``tile_factor``
    (``1 / copies`` times the ratio of fan-in gains, see ``_tile_weights``) is what does it: without it
    the logits differ."""
    torch.manual_seed(0)
    tiled = _factory(ref)
    g_ref, g = tiled.template(ref), tiled.template(spec)
    w_ref = torch.randn(g_ref.num_edges) * 0.5
    w = _copied(g_ref, w_ref, g)
    x, ref_out, out = _outputs(tiled, ref, w_ref, spec, w)
    assert ref_out.abs().max() > 1e-2
    assert _rel(out, ref_out) < 1e-5
    factor = g.__dict__["tile_factor"]
    assert factor is not None and g_ref.__dict__.get("tile_factor") is None
    g.__dict__["tile_factor"] = None  # the same network weights without the compensation
    try:
        assert _rel(g.forward(x, weight=tiled.network_weight(spec, w)), ref_out) > 1e-2
    finally:
        g.__dict__["tile_factor"] = factor


@pytest.mark.parametrize("standardization,fan_in", [(False, True), (False, False)])
def test_copied_weights_without_standardisation(standardization, fan_in):
    """The same function identity with the fan-in gain alone and with plain weights."""
    torch.manual_seed(1)
    ref, spec = UNEVEN[1]
    tiled = GraphFactory(hidden_dim=8, input_shape=(1, 28, 28), fan_in_scaling=fan_in,
                         weight_standardization=standardization, code_tile=ref)
    w_ref = torch.randn(tiled.template(ref).num_edges) * 0.3
    w = _copied(tiled.template(ref), w_ref, tiled.template(spec))
    _, ref_out, out = _outputs(tiled, ref, w_ref, spec, w)
    assert ref_out.abs().max() > 1e-2
    assert _rel(out, ref_out) < 1e-5


def test_code_tile_errors_and_config(tmp_path):
    with pytest.raises(ValueError, match="has 2 hidden layers, the reference 5-4-3 has 1"):
        _factory("5-4-3").template("5-8-9-2")
    with pytest.raises(ValueError, match="set one of them"):
        GraphFactory(code_tile="5-4-3", hidden_code_range=4)
    with pytest.raises(ValueError, match="does not combine"):
        _factory("5-4-3-2").subset_code("5-8-9-2", None, 20)
    d = tiny_config(tmp_path)
    d["grow"]["code_tile"] = "4-8-3"
    cfg = MetaConfig.from_dict(d)
    assert factory_from_config(cfg).code_tile == "4-8-3"
    d["grow"]["hidden_code_range"] = 8
    with pytest.raises(ValueError, match="set one of them"):
        MetaConfig.from_dict(d)
    d["grow"]["hidden_code_range"] = 0
    d["grow"]["code_tile"] = "cnn:q=3"
    with pytest.raises(ValueError, match="unknown key 'q'"):
        MetaConfig.from_dict(d)
    # set_code_tile (the --code-tile of grow / eval / demo): checked, and a bad spec changes nothing
    d["grow"]["code_tile"] = ""
    cfg = MetaConfig.from_dict(d)
    cfg.set_code_tile(None)
    assert cfg.grow.code_tile == ""
    cfg.set_code_tile("4-8-3")
    assert cfg.grow.code_tile == "4-8-3"
    with pytest.raises(ValueError, match="--code-tile cnn:q=3: .*unknown key 'q'"):
        cfg.set_code_tile("cnn:q=3", "--code-tile")
    assert cfg.grow.code_tile == "4-8-3"



def test_forget_rebuilds_the_template():
    """``GraphFactory.forget`` drops a cached template and its gains; the rebuilt template is equal (with its
    tiling weights), and other specs stay cached."""
    tiled = _factory("5-4-3-2")
    g, other = tiled.template("5-8-9-2"), tiled.template("5-6-7-2")
    gain = tiled.gain("5-8-9-2")
    tiled.forget([5, 8, 9, 2])
    g2 = tiled.template("5-8-9-2")
    assert g2 is not g and tiled.template("5-6-7-2") is other
    for key in ("edge_pos", "hidden", "neighbour_weight"):
        assert torch.equal(getattr(g2, key), getattr(g, key))
    assert torch.equal(tiled.gain("5-8-9-2"), gain)
    tiled.forget("5-1-2")  # never built: nothing to drop


# a kernel-3 reference embedded in CNNs of kernel 4 (a 4x4 last feature map against 3x3) and kernel 5
KERNELS = [("cnn:m=0.125,k=3,h=6", "cnn:m=0.125,k=4,h=6"), ("cnn:m=0.125,k=3,h=6", "cnn:m=0.25,k=4,h=12"),
           ("cnn:m=0.125,k=3,h=6", "cnn:m=0.1875,k=5,h=10")]


def _kept(g) -> torch.Tensor:
    """``[E]`` bool: the edges with a reference edge (the others weigh 0 in every neighbourhood)."""
    return (g.neighbour_weight > 0).all(1)


def _copied_kept(g_ref, w_ref: torch.Tensor, g) -> torch.Tensor:
    keep = _kept(g)
    ref_w = dict(zip(_key(g_ref), w_ref.tolist()))
    return torch.tensor([ref_w[k] if kk else 0.0 for k, kk in zip(_key(g), keep.tolist())])


def test_kernel_map_matches_a_per_edge_reference():
    """Edge by edge on a kernel-4 CNN grown as a kernel-3 one: a conv tap ``(u, v)`` is kept iff the
    reference has a tap at the same offset from the output pixel (``u - 2 = s - 1``: ``u`` in 1..3), and
    then takes the reference tap's position ``(u - 1, v - 1)`` and code; a dense input from the flattened
    4x4 map is kept iff it comes from the reference's 3x3 pixels.  Kept edges count in the neighbourhood
    sums, the others 0."""
    ref, spec = KERNELS[0]
    tiled = _factory(ref, kernel_offsets=True)
    g0, g, g_ref = _factory().template(spec), tiled.template(spec), tiled.template(ref)
    conv = (g0.edge_kind == 0) & (g0.edge_pos[:, 0] <= 2)
    dense = (g0.edge_kind == 0) & (g0.edge_pos[:, 0] == 3)
    keep, pos = torch.ones(g0.num_edges, dtype=torch.bool), g0.edge_pos.clone()
    for e in range(g0.num_edges):
        u, v = int(g0.edge_pos[e, 3]), int(g0.edge_pos[e, 4])
        if conv[e]:
            keep[e] = 1 <= u <= 3 and 1 <= v <= 3
            if keep[e]:
                pos[e, 3], pos[e, 4] = u - 1, v - 1
        elif dense[e]:
            keep[e] = u < 3 and v < 3
    assert int((~keep).sum()) == (16 - 9) * (4 + 4 * 8 + 8 * 16 + 16 * 6)
    assert torch.equal(_kept(g), keep)
    assert torch.equal(g.edge_pos[keep], pos[keep])
    ref_code = dict(zip(_key(g_ref), g_ref.hidden))
    for e in torch.nonzero(keep).flatten().tolist():
        assert torch.equal(g.hidden[e], ref_code[_key(g)[e]])
    assert torch.equal(g.neighbour_weight[~keep], torch.zeros(int((~keep).sum()), 2))


@pytest.mark.parametrize("kind", ["mlp", "wt"])
@pytest.mark.parametrize("ref,spec", KERNELS)
@pytest.mark.parametrize("offsets", [True, False])
def test_larger_kernels_grow_and_compute_the_reference(kind, ref, spec, offsets):
    """A CNN with larger kernels (and wider layers) grown with a smaller-kernel ``code_tile`` reference:
    every kept edge grows its reference edge's weight, the other edges' network weights are 0, and the
    network computes the grown reference's function (its logits, to float rounding).  Untiled, the rule
    grows another network."""
    rule = _rule(kind)
    tiled = _factory(ref, kernel_offsets=offsets)
    w_ref, w = _grow(tiled, rule, ref), _grow(tiled, rule, spec)
    g_ref, g = tiled.template(ref), tiled.template(spec)
    keep = _kept(g)
    assert 0 < int((~keep).sum()) < g.num_edges
    assert _rel(w[keep], _copied_kept(g_ref, w_ref, g)[keep]) < 1e-5
    net = tiled.network_weight(spec, w)
    assert bool((net[~keep] == 0).all()) and bool((net[keep] != 0).any())
    x, ref_out, out = _outputs(tiled, ref, w_ref, spec, w)
    assert ref_out.abs().max() > 1e-2
    assert _rel(out, ref_out) < 1e-4
    module = tiled.module(spec, w)  # to_module: the same function
    with torch.no_grad():
        assert _rel(module(x), ref_out) < 1e-4

    plain = _factory(kernel_offsets=offsets)
    plain_out = plain.template(spec).forward(x, weight=plain.network_weight(spec, _grow(plain, rule, spec)))
    assert _rel(plain_out, ref_out) > 1e-2


def test_kernel_map_errors():
    """A reference kernel that does not fit at equal offsets, and a reference feature map larger than the
    network's, are refused with the specs in the message; equal kernels need no map."""
    with pytest.raises(ValueError, match=r"cnn:m=0.125,k=4,h=6 grown as cnn:m=0.125,k=5,h=6: conv layer 0's "
                                         r"reference kernel \(5, 5\) .* does not fit"):
        _factory("cnn:m=0.125,k=5,h=6").template("cnn:m=0.125,k=4,h=6")
    with pytest.raises(ValueError, match=r"flattened feature map \(4, 4\) is larger than its own \(3, 3\)"):
        _factory("cnn:m=0.125,k=4,h=6").template("cnn:m=0.125,k=5,h=6")
    tiled = _factory("cnn:m=0.125,k=3,h=6")
    g = tiled.template("cnn:m=0.25,k=3,h=12")
    assert bool((g.neighbour_weight > 0).all())
