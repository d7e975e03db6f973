"""Small helpers of ``neuralgraph.meta.plots``."""


def test_output_path_keeps_dots_in_a_prefix(tmp_path):
    from neuralgraph.meta.plots import output_path

    assert output_path(tmp_path / "grid_m0.5", ".json") == tmp_path / "grid_m0.5.json"
    assert output_path(tmp_path / "grid", ".png") == tmp_path / "grid.png"
    assert output_path(tmp_path / "grid.json", ".png") == tmp_path / "grid.png"
