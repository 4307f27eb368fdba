"""The long tail: genre sets from training counts. The tail sets of Top@K (:func:`tail_sets`,
beside the paper's own :data:`PAPER_TAIL_SETS`), their thresholds on FMA medium and on smaller
datasets (:func:`tail_thresholds`, :func:`study_tail_sets`) and the head / medium / tail groups
(:func:`frequency_groups`). :mod:`mattlib.evaluation.metrics` re-exports the first three."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from mattlib.data.fma import FMA_MEDIUM_TRAIN_COUNTS, FMA_MEDIUM_TRAIN_TRACKS

__all__ = ["PAPER_TAIL_SETS", "frequency_groups", "study_tail_sets", "tail_sets", "tail_thresholds"]

#: The paper's own tail sets (its "<100" included International, which has more than 100
#: training tracks on FMA medium; kept for comparison with :func:`tail_sets`).
PAPER_TAIL_SETS: dict[str, list[str]] = {
    "<100": ["Easy Listening", "Blues", "Soul-RnB", "Spoken", "International"],
    "<200": ["Easy Listening", "Blues", "Soul-RnB", "Spoken", "International", "Country"],
}


def tail_sets(
    train_counts: Mapping[str, int],
    *,
    thresholds: Sequence[float] | Mapping[str, float] = (100, 200),
) -> dict[str, list[str]]:
    """Tail genre sets from training counts: ``{'<100': [...], '<200': [...]}``.

    A genre is in the set of threshold ``t`` when it has fewer than ``t`` training tracks
    (listed rarest first). On FMA medium: <100 = Easy Listening, Blues, Soul-RnB, Spoken;
    <200 adds Country. Compare with :data:`PAPER_TAIL_SETS`.

    Parameters
    ----------
    train_counts : Mapping genre -> training tracks
    thresholds : sequence of numbers, or Mapping name -> number
        A sequence names each set ``f"<{t:g}"``; a mapping gives the names, e.g.
        ``{'<100': 5.02, '<200': 10.04}`` for thresholds scaled to a smaller dataset.
    """
    counts = {str(g): int(c) for g, c in train_counts.items()}
    ordered = sorted(counts, key=lambda g: (counts[g], g))
    named = dict(thresholds) if isinstance(thresholds, Mapping) else {f"<{t:g}": t for t in thresholds}
    return {name: [g for g in ordered if counts[g] < t] for name, t in named.items()}


def frequency_groups(
    train_counts: Mapping[str, int], *, head_min: int = 1000, tail_max: int = 200
) -> dict[str, list[str]]:
    """Split genres by training counts: head (>= head_min), tail (< tail_max), medium (between)."""
    if tail_max > head_min:
        raise ValueError(f"tail_max ({tail_max}) must not exceed head_min ({head_min})")
    groups: dict[str, list[str]] = {"head": [], "medium": [], "tail": []}
    for g, c in sorted(train_counts.items(), key=lambda kv: (-int(kv[1]), str(kv[0]))):
        c = int(c)
        groups["head" if c >= head_min else "tail" if c < tail_max else "medium"].append(str(g))
    return groups


def tail_thresholds(train_counts: pd.Series | dict, *, base: tuple[int, ...] = (100, 200, 1000)) -> tuple[float, ...]:
    """Thresholds (training tracks) of the tail sets ``<100``, ``<200`` and of the head group.

    On a dataset the size of FMA medium (at least half its 19,922 training tracks) they are the
    paper's 100 and 200 (and 1000 for the head). On a smaller dataset (the demo), where every
    genre needs a floor of tracks to be testable, a count threshold would be meaningless; the
    threshold is then placed so that the set holds as many of the rarest genres as it does on FMA
    medium (``<100``: the 4 rarest, ``<200``: the 5 rarest; head: the 6 largest), midway between
    the neighbouring counts.
    """
    counts = pd.Series(train_counts, dtype=float).sort_values()
    if counts.empty or counts.sum() <= 0:
        raise ValueError("no training tracks: cannot place tail thresholds")
    if counts.sum() >= FMA_MEDIUM_TRAIN_TRACKS / 2:
        return tuple(float(b) for b in base)
    reference = sorted(FMA_MEDIUM_TRAIN_COUNTS.values())
    values = counts.to_numpy()
    thresholds = []
    for b in base:
        k = sum(c < b for c in reference)  # genres below b on FMA medium
        k = min(max(k, 1), len(values) - 1)
        thresholds.append(float((values[k - 1] + values[k]) / 2))
    return tuple(thresholds)


def study_tail_sets(train_counts: pd.Series) -> dict[str, list[str]]:
    """Tail sets ``{"<100": [...], "<200": [...]}`` from training counts, thresholds placed by
    :func:`tail_thresholds` (keys keep the FMA-medium names)."""
    lt100, lt200, _ = tail_thresholds(train_counts)
    return tail_sets(train_counts.to_dict(), thresholds={"<100": lt100, "<200": lt200})
