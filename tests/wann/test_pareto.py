import numpy as np
import pytest

from neuralgraph.wann import crowding_distance, nondominated_fronts, pareto_rank


def test_fronts_and_rank_hand_made():
    # objectives (mean fitness, -connections), both maximised
    objs = np.array([
        [0.9, -10.0],  # 0: front 0 (best fitness)
        [0.5, -2.0],   # 1: front 0 (fewest connections)
        [0.7, -5.0],   # 2: front 0 (between)
        [0.6, -6.0],   # 3: dominated by 2 -> front 1
        [0.4, -7.0],   # 4: dominated by 2, 3 -> front 2
        [0.7, -5.0],   # 5: equal to 2 -> not dominated -> front 0
    ])
    fronts = nondominated_fronts(objs)
    assert [sorted(f.tolist()) for f in fronts] == [[0, 1, 2, 5], [3], [4]]
    rank = pareto_rank(objs)
    assert sorted(rank.tolist()) == list(range(6))
    assert set(rank[[0, 1, 2, 5]].tolist()) == {0, 1, 2, 3}
    assert rank[3] == 4 and rank[4] == 5
    # boundary points of front 0 have infinite crowding distance and rank first
    assert set(rank[[0, 1]].tolist()) == {0, 1}


def test_crowding_distance_values():
    d = crowding_distance(np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 1.0], [4.0, 0.0]]))
    assert np.isinf(d[0]) and np.isinf(d[3])
    np.testing.assert_allclose(d[1:3], [2 / 4 + 3 / 4, 3 / 4 + 2 / 4])


def test_bad_shape():
    with pytest.raises(ValueError, match=r"\[P, K\]"):
        nondominated_fronts(np.zeros(3))
