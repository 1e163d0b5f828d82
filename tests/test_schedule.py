"""Properties of the 1-factorization (circle method) schedule."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dasksvm.parallel.schedule import n_rounds, one_factorization


def _check(n):
    rounds = list(one_factorization(n))
    assert len(rounds) == n_rounds(n) == (0 if n == 0 else (n - 1 if n % 2 == 0 else n))
    seen = []
    for rnd in rounds:
        flat = [v for pair in rnd for v in pair]
        # a matching: no vertex twice in one round
        assert len(flat) == len(set(flat))
        for a, b in rnd:
            assert 0 <= a < b < n
        if n % 2 == 0:
            assert len(rnd) == n // 2  # perfect matching
        else:
            assert len(rnd) == (n - 1) // 2  # exactly one vertex has the bye
        seen.extend(rnd)
    # every unordered pair exactly once per epoch
    assert sorted(seen) == list(itertools.combinations(range(n), 2))


@pytest.mark.parametrize("n", range(65))
def test_one_factorization_all_small_n(n):
    _check(n)


@settings(deadline=None)
@given(st.integers(min_value=1, max_value=200))
def test_one_factorization_property(n):
    _check(n)


def test_odd_n_each_vertex_sits_out_once():
    n = 7
    rounds = list(one_factorization(n))
    byes = [set(range(n)) - {v for p in rnd for v in p} for rnd in rounds]
    assert all(len(b) == 1 for b in byes)
    assert sorted(next(iter(b)) for b in byes) == list(range(n))


def test_small_cases_explicit():
    assert list(one_factorization(1)) == [[]]
    assert list(one_factorization(2)) == [[(0, 1)]]
    assert list(one_factorization(4)) == [[(0, 3), (1, 2)], [(0, 2), (1, 3)], [(0, 1), (2, 3)]]


def test_negative_n_rejected():
    with pytest.raises(ValueError, match="n must be >= 0"):
        list(one_factorization(-1))
