"""Classic baselines: every one is a scaled pipeline; scaling matters; SVM scores; kNN cap."""

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mattlib.models.baselines import BASELINES, make_baseline


def _data(n=300, seed=0):
    """Genre decided by feature 0 (tiny scale); five noise features on a huge scale."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x0 = 0.01 * (y + 0.15 * rng.normal(size=n))
    noise = 1000.0 * rng.normal(size=(n, 5))
    return np.column_stack([x0, noise]), y


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", BASELINES)
def test_every_baseline_is_a_scaled_pipeline(name):
    model = make_baseline(name, seed=0)
    assert isinstance(model, Pipeline)
    assert isinstance(model.steps[0][1], StandardScaler), model.steps
    X, y = _data(150)
    kw = {"max_iter": 50} if name == "mlp" else {}
    model = make_baseline(name, seed=0, **kw).fit(X[:100], y[:100])
    proba = model.predict_proba(X[100:])
    assert proba.shape == (50, 3)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-6)
    np.testing.assert_array_equal(model.classes_[proba.argmax(1)], model.predict(X[100:]))
    # the scaler saw the training rows only
    np.testing.assert_allclose(model.named_steps["scaler"].mean_, X[:100].mean(0))


def test_scaling_matters():
    X, y = _data()
    scaled = make_baseline("knn", seed=0, n_neighbors=15).fit(X[:200], y[:200])
    raw = KNeighborsClassifier(n_neighbors=15).fit(X[:200], y[:200])
    acc_scaled = (scaled.predict(X[200:]) == y[200:]).mean()
    acc_raw = (raw.predict(X[200:]) == y[200:]).mean()
    print(f"\nkNN accuracy: scaled {acc_scaled:.2f}, unscaled {acc_raw:.2f}")
    assert acc_scaled > 0.6 and acc_scaled > acc_raw + 0.2, (acc_scaled, acc_raw)


def test_knn_caps_k_at_training_size():
    X, y = _data(30)
    model = make_baseline("knn", seed=0).fit(X, y)
    assert model.named_steps["clf"].n_neighbors_ == 30
    assert make_baseline("knn", seed=0).named_steps["clf"].n_neighbors == 200


def test_svm_scores_follow_the_decision_function():
    X, y = _data(120)
    model = make_baseline("svm", seed=0).fit(X, y)
    proba = model.predict_proba(X)
    dec = model.decision_function(X)
    np.testing.assert_array_equal(np.argsort(proba, 1), np.argsort(dec, 1))
    calibrated = make_baseline("svm", seed=0, probability="calibrated").fit(X, y)
    assert calibrated.predict_proba(X).shape == (120, 3)
    with pytest.raises(ValueError, match="softmax"):
        make_baseline("svm", probability="platt")


def test_unknown_baseline_lists_valid_names():
    with pytest.raises(ValueError) as err:
        make_baseline("rf", seed=0)
    for name in ("lr", "knn", "svm", "sklearn_mlp"):
        assert name in str(err.value)
