"""``examples/grow_cnn_kernel_probe.py``: grown vs. probe accuracy and cross-kernel layer embedding."""

from __future__ import annotations

import pytest


@pytest.fixture()
def probe(example):
    return example("grow_cnn_kernel_probe")


def test_probe_reports_every_kernel_and_only_nesting_pairs(probe):
    res = probe.run(None, ks=[3, 4, 5], test_size=300, probe_steps=60)
    assert set(res["grown"]) == set(res["probe"]) == {"3", "4", "5"}
    # 3 -> 4, 3 -> 5, 4 -> 5 nest at equal offsets; larger into smaller kernels do not
    assert set(res["embed"]) == {"3->4", "3->5", "4->5"}
    assert all(len(row) == 3 and all(0.0 <= v <= 1.0 for v in row) for row in res["embed"].values())
    # the shipped rule grows kernel 3 and 5 well; retrained dense layers on their features do too
    assert res["grown"]["3"] > 0.7 and res["grown"]["5"] > 0.7
    assert res["probe"]["3"] > 0.5
