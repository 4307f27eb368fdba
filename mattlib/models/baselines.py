"""Classic track-level baselines (FMA's own baselines): LR, kNN, SVM (RBF), MLP.

Every baseline is a scikit-learn ``Pipeline([('scaler', StandardScaler()), ('clf', ...)])``:
the scaler is fitted on the training data only, as part of ``fit`` (the paper's authors fed
unscaled FMA statistics to these models). Each pipeline has ``predict_proba`` returning
``(n_tracks, C)`` scores in ``classes_`` order, usable by :func:`mattlib.models.fusion.late_fusion`.

SVM scores
----------
scikit-learn 1.9 deprecates ``SVC(probability=True)`` (Platt scaling with an internal 5-fold
CV). :class:`SoftmaxSVC` instead returns the softmax of the one-vs-rest decision function
(``decision_function_shape='ovr'``). It is monotone in the decision values of each track, so
its predicted genre and its Top@K are those of the SVM; across tracks it is *not* calibrated,
so its micro average precision is a ranking of uncalibrated scores. ``make_baseline('svm',
probability='calibrated')`` gives Platt-calibrated scores with ``CalibratedClassifierCV``
(sigmoid, 3-fold) at three times the cost (needs >= 3 training tracks per genre).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted

from mattlib.models.spec import BASELINES

__all__ = ["BASELINES", "CappedKNeighborsClassifier", "SoftmaxSVC", "make_baseline"]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class SoftmaxSVC(SVC):
    """RBF ``SVC`` whose ``predict_proba`` is the softmax of the one-vs-rest decision function.

    ``predict`` is the argmax of those scores (so predictions and scores agree). For two
    classes the decision value ``f`` becomes ``[sigmoid(-f), sigmoid(f)]``.
    """

    def predict_proba(self, X) -> np.ndarray:
        """Scores ``(n, C)`` in ``classes_`` order, rows summing to one (not calibrated)."""
        check_is_fitted(self)
        f = np.asarray(super().decision_function(X), dtype=np.float64)
        if f.ndim == 1:
            f = np.stack([-f / 2, f / 2], axis=1)
        return _softmax(f)

    def predict(self, X) -> np.ndarray:
        """Genre with the highest score."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class CappedKNeighborsClassifier(ClassifierMixin, BaseEstimator):
    """k-nearest neighbours with ``k = min(n_neighbors, n_train)`` (FMA uses k = 200).

    Parameters
    ----------
    n_neighbors : int, default 200
    weights : {'uniform', 'distance'}, default 'uniform'
    n_jobs : int, optional

    Attributes
    ----------
    knn_ : fitted ``KNeighborsClassifier``; ``n_neighbors_`` the k actually used.
    """

    def __init__(self, n_neighbors: int = 200, weights: str = "uniform", n_jobs: int | None = None) -> None:
        self.n_neighbors = n_neighbors
        self.weights = weights
        self.n_jobs = n_jobs

    def fit(self, X, y):
        """Fit on ``X`` (n, d), ``y`` (n,)."""
        if self.n_neighbors < 1:
            raise ValueError(f"n_neighbors must be >= 1, got {self.n_neighbors}")
        X = np.asarray(X)
        self.n_neighbors_ = int(min(self.n_neighbors, X.shape[0]))
        self.knn_ = KNeighborsClassifier(n_neighbors=self.n_neighbors_, weights=self.weights, n_jobs=self.n_jobs)
        self.knn_.fit(X, y)
        self.classes_ = self.knn_.classes_
        self.n_features_in_ = self.knn_.n_features_in_
        return self

    def predict(self, X):
        """Majority genre of the k nearest training tracks."""
        check_is_fitted(self, "knn_")
        return self.knn_.predict(X)

    def predict_proba(self, X):
        """Fraction of the k neighbours in each genre, ``(n, C)``."""
        check_is_fitted(self, "knn_")
        return self.knn_.predict_proba(X)


def make_baseline(name: str, *, seed: int = 0, **kwargs) -> Pipeline:
    """Build a scaled classic baseline.

    Parameters
    ----------
    name : {'lr', 'knn', 'svm', 'sklearn_mlp'}
        Logistic regression; k-NN (k=200, capped at the training size); RBF SVM; scikit-learn's
        MLP (FMA's baseline; the torch MLP encoder is ``mlp``).
    seed : int
        ``random_state`` of the stochastic ones.
    **kwargs
        Passed to the classifier, e.g. ``C`` (lr/svm), ``n_neighbors`` (knn),
        ``hidden_layer_sizes`` / ``max_iter`` (sklearn_mlp). For svm, ``probability='softmax'``
        (default) or ``'calibrated'`` chooses how scores are made (module docstring).

    Returns
    -------
    Pipeline ``[('scaler', StandardScaler()), ('clf', classifier)]``.

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid names).
    """
    if name == "lr":
        kw = {"max_iter": 2000, "C": 1.0} | kwargs
        clf = LogisticRegression(random_state=seed, **kw)
    elif name == "knn":
        clf = CappedKNeighborsClassifier(**({"n_neighbors": 200} | kwargs))
    elif name == "svm":
        probability = kwargs.pop("probability", "softmax")
        kw = {"kernel": "rbf", "C": 1.0, "gamma": "scale"} | kwargs
        if probability == "softmax":
            clf = SoftmaxSVC(random_state=seed, decision_function_shape="ovr", **kw)
        elif probability == "calibrated":
            clf = CalibratedClassifierCV(SVC(random_state=seed, **kw), method="sigmoid", cv=3)
        else:
            raise ValueError(f"svm: probability must be 'softmax' or 'calibrated', got {probability!r}")
    elif name == "sklearn_mlp":
        kw = {"hidden_layer_sizes": (256,), "max_iter": 300, "early_stopping": False} | kwargs
        clf = MLPClassifier(random_state=seed, **kw)
    else:
        raise ValueError(f"unknown baseline {name!r}; valid names: {', '.join(BASELINES)}")
    return Pipeline([("scaler", StandardScaler()), ("clf", clf)])
