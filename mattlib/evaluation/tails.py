"""Long-tail genre sets from training counts: the tail sets of Top@K (:func:`tail_sets`, beside
the paper's own :data:`PAPER_TAIL_SETS`) and the head / medium / tail groups
(:func:`frequency_groups`). :mod:`mattlib.evaluation.metrics` re-exports all three."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["PAPER_TAIL_SETS", "frequency_groups", "tail_sets"]

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
