"""The hierarchical bootstrap (seeds and albums): coverage by simulation, and the ways it can fail.

The coverage tests draw many synthetic paired test sets with a known difference between two
models and a strong correlation within albums (an album is right or wrong as a whole), then count
how often the 95 % interval holds the true difference. Resampling albums must cover about 95 % of
the time; resampling tracks (ignoring the albums) or only albums (ignoring seed variance) must
visibly under-cover, which shows the test can fail.
"""

import numpy as np
import pytest

from mattlib.evaluation import uncertainty as unc

N_SIMS = 200
N_BOOT = 400


def _scores(correct: np.ndarray) -> np.ndarray:
    """(n, 2) scores whose argmax is genre 0 (the true one) exactly where ``correct``."""
    return np.stack([np.where(correct, 1.0, 0.0), np.where(correct, 0.0, 1.0)], axis=-1)


def _simulate(rng, *, n_albums=40, q_a=0.6, q_b=0.5, n_seeds=1, seed_sd=0.0):
    """One paired test set: album sizes 1-8, each album right or wrong as a whole per model and
    seed; a seed shifts a model's success probability by N(0, seed_sd). True A − B: q_a − q_b."""
    sizes = rng.integers(1, 9, n_albums)
    units = np.repeat(np.arange(n_albums), sizes)
    test = unc.TestSet(y=np.zeros(len(units), dtype=np.int64), units=units, n_units=n_albums)

    def model(q):
        out = []
        for _ in range(n_seeds):
            p = np.clip(q + rng.normal(0, seed_sd), 0, 1)
            out.append(_scores((rng.random(n_albums) < p)[units]))
        return np.stack(out)

    return test, model(q_a), model(q_b)


def _covers(test, a, b, *, truth, unit, seed, hierarchical=True):
    metric = unc.top_k(1)
    if unit == "track":  # the wrong unit: every track its own album
        test = unc.TestSet(y=test.y, units=np.arange(len(test.y)), n_units=len(test.y))
    weights = unc.album_counts(test.n_units, n_boot=N_BOOT, seed=seed)[:, test.units]
    va, vb = (unc.metric_values(metric, s, test, weights) for s in (a, b))
    if hierarchical:
        da, db = unc.replicates(va, n_boot=N_BOOT, seed=seed + 1), unc.replicates(vb, n_boot=N_BOOT, seed=seed + 2)
    else:  # seeds averaged first: album-only resampling
        da, db = va.mean(axis=0), vb.mean(axis=0)
    low, high = unc.interval(da - db)
    return low <= truth <= high


def _coverage(unit: str, *, hierarchical=True, n_seeds=1, seed_sd=0.0) -> float:
    rng = np.random.default_rng(2026)
    hits = [
        _covers(
            *_simulate(rng, n_seeds=n_seeds, seed_sd=seed_sd), truth=0.1, unit=unit, seed=i, hierarchical=hierarchical
        )
        for i in range(N_SIMS)
    ]
    return float(np.mean(hits))


@pytest.fixture(scope="module")
def coverages():
    return {
        "album": _coverage("album"),
        "track": _coverage("track"),
        "seeds+albums": _coverage("album", n_seeds=5, seed_sd=0.12),
        "albums only": _coverage("album", hierarchical=False, n_seeds=5, seed_sd=0.12),
    }


def test_album_bootstrap_covers_near_nominal_and_track_bootstrap_undercovers(coverages):
    assert 0.90 <= coverages["album"] <= 0.99, coverages
    assert coverages["track"] < 0.80, coverages  # tracks of an album are not independent


def test_seed_variance_needs_the_seed_level(coverages):
    # with training-seed variance, resampling albums only claims more certainty than the data hold
    assert coverages["albums only"] < 0.80, coverages
    assert coverages["seeds+albums"] >= coverages["albums only"] + 0.08, coverages
    assert coverages["seeds+albums"] >= 0.85, coverages


def test_a_replicate_without_tail_albums_is_left_out_not_scored_zero():
    # 10 albums, one tail album of 2 tracks that the model gets right: Top@1 on the tail is 100 %
    units = np.repeat(np.arange(10), 2)
    y = np.where(units == 0, 1, 0)
    test = unc.TestSet(y=y, units=units, n_units=10)
    scores = np.zeros((1, len(y), 2))
    scores[0, np.arange(len(y)), y] = 1.0
    weights = unc.album_counts(10, n_boot=500, seed=0)[:, units]
    values = unc.metric_values(unc.top_k(1, [1]), scores, test, weights)
    assert np.isnan(values).any()  # replicates that drew no tail album
    assert unc.interval(values[0]) == (1.0, 1.0)  # never [0, 1]


def test_one_seed_is_the_album_bootstrap_and_seed_draws_vary():
    values = np.arange(12.0).reshape(3, 4)
    assert np.array_equal(unc.replicates(values[:1], n_boot=4, seed=0), values[0])
    draws = unc.replicates(values, n_boot=4, seed=0)
    counts = unc.seed_counts(3, n_boot=4, seed=0)
    assert draws == pytest.approx([(counts[r] * values[:, r]).sum() / 3 for r in range(4)])


def test_holm_and_p_values():
    assert unc.holm([0.01, np.nan, 0.04, 0.03]).round(3)[[0, 2, 3]].tolist() == [0.03, 0.06, 0.06]
    assert np.isnan(unc.holm([0.01, np.nan])[1])
    assert unc.p_value(np.full(99, 1.0)) == pytest.approx(2 / 100)
    assert unc.p_value(np.r_[np.full(50, -1.0), np.full(50, 1.0)]) == 1.0


def test_weighted_average_precision_matches_scikit_learn_and_mean_recall_skips_absent_genres():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    score, positive = rng.integers(0, 6, 60) / 5, rng.random(60) < 0.3
    got = unc.weighted_average_precision(score, positive, np.ones((1, 60)))[0]
    assert got == pytest.approx(average_precision_score(positive, score), abs=1e-12)
    # doubling every weight changes nothing; a weighting without positives is undefined
    assert unc.weighted_average_precision(score, positive, np.full((1, 60), 2.0))[0] == pytest.approx(got)
    assert np.isnan(unc.weighted_average_precision(score, positive, np.where(positive, 0.0, 1.0)[None])[0])

    test = unc.TestSet(y=np.array([0, 0, 1, 2]), units=np.arange(4), n_units=4)
    scores = np.eye(3)[[0, 1, 1, 0]][None]  # right, wrong, right, wrong
    w = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=float)  # the second drops genres 1 and 2
    values = unc.metric_values(unc.mean_recall([0, 1, 2], name="r"), scores, test, w)[0]
    assert values == pytest.approx([(0.5 + 1 + 0) / 3, 0.5])
