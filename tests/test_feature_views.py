"""Notebook 02's views: the extraction table, failure reasons, a log-mel per genre, distributions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mattlib import features as F
from mattlib.views import features as feature_views


class _Store:
    """The two members of a MelStore that the view reads."""

    def __init__(self, arrays: dict[int, np.ndarray]):
        self.track_ids = np.array(list(arrays))
        self._arrays = arrays

    def get(self, track_id):
        return self._arrays[int(track_id)]


def test_one_log_mel_panel_per_genre_and_the_spare_panels_blank():
    mel = F.MelSettings(seconds=2.0)
    ids = [1, 2, 3, 4, 5]
    store = _Store({t: np.full(mel.shape, float(t), np.float16) for t in ids})
    genre = pd.Series(["Rock", "Rock", "Folk", "Jazz", "Blues"], index=ids, name="genre")
    fig = feature_views.mel_per_genre(store, genre, mel=mel, columns=3)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert sorted(ax.get_title() for ax in panels) == [
        "Blues (track 5)",
        "Folk (track 3)",
        "Jazz (track 4)",
        "Rock (track 1)",  # the first track of each genre
    ]
    assert len(fig.axes) == 2 * 3 + 1  # a 2 x 3 grid and the colour bar
    assert panels[0].images[0].get_extent() == [0, 2.0, 0, mel.n_mels]


def test_failure_reasons_count_every_listed_failure(tmp_path):
    listed = tmp_path / "failures.csv"
    pd.DataFrame(
        {"track_id": [1, 2, 3], "error": ["empty file (0 bytes)", "empty file (0 bytes)", "truncated"]}
    ).to_csv(listed, index=False)

    class Report:
        paths = {"failures": listed}

    reasons = feature_views.failure_reasons(Report())
    assert reasons["count"].to_dict() == {"empty file (0 bytes)": 2, "truncated": 1}


def test_feature_distributions_draw_one_panel_per_column():
    columns = F.fma518_columns()
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.standard_normal((8, len(columns))), columns=columns, index=range(8))
    genre = pd.Series(["Rock", "Folk"] * 4, index=range(8))
    fig = feature_views.feature_distributions(table, genre)
    assert [ax.get_title() for ax in fig.axes] == [" ".join(c) for c in feature_views.DISTRIBUTION_COLUMNS]
