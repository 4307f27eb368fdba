"""Planted effects of the demo dataset: what each variant builds in, and the answer it implies.

The demo's genres are synthetic, so its numbers say nothing about music; what they can show is
that the study finds an effect that is there and finds none where there is none. Each variant
(``effect``) of :func:`mattlib.data.demo.generate_demo` and
:func:`mattlib.data.demo.generate_demo_features` builds in one answer:

``null``
    Every track of an album is a rendition of one recording (identical audio, identical
    features), so a bag holds nothing its first track does not.
``bag``
    Every track carries its album's genre under strong independent per-track noise, so
    pooling the tracks of a bag averages the noise out.
``attention``
    About a third of an album's tracks (at least one; a bag of one always) carry the genre;
    the others are *fillers* of one genre-free style, the same for every genre.

The rule holds for every genre alike, the rare ones included, so the tail metrics carry the
effect. Per track, ``demo_manifest.csv`` records the truth: ``effect``, ``role`` (``rendition``,
``informative``, ``filler`` or ``guest``), ``informative`` (the track's content carries its
album's genre), ``marked`` (the tracks ``attention`` makes informative: the same draw for every
effect of one seed, a placebo under ``null`` and ``bag``), ``album_genre`` and ``mixed_album``.

Mixed albums: a few test albums hold one *guest* track of another genre (FMA has such albums).
The bag's genre is then its majority genre. Under ``null`` the guest is a rendition of the
album's recording with another label (the bag and the track models see the same thing);
otherwise it carries its own genre, so a bag model predicting the album's genre is wrong on it.

What ``attention`` does and does not plant: a track-level model cannot classify a filler (its
content is the same for every genre; trained on fillers labelled with their albums' genres, it
learns the genre prior there), and averaging fillers' predictions dilutes late fusion. A bag
model can learn to ignore fillers; attention can do it by weighting, but a mean-pool encoder can
also learn to map the filler style near a constant embedding, so that only the classifier's
bias feels the dilution. So MIL − late fusion and attention weight on the informative tracks
are planted; MATT − MIL is not. (Measured at 600 tracks: in the features-only variant MIL
does learn to ignore fillers, MATT − MIL +4; on the audio demo, where fillers' statistics vary
more, mean-pool MIL trained 40 epochs does not, and MATT − MIL is +7 to +16 over 3 training seeds. That
is a property of the models and their training, not of the data.)

This module is torch-free: it holds the registry (:data:`EFFECTS`) and the role draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mattlib.errors import MattError

__all__ = ["COMPARISONS", "EFFECTS", "DemoError", "Effect", "check_effect", "draw_marked", "assign_roles"]

#: The comparisons each effect answers, in the report's order. "bag − track" is a bag model
#: minus the same encoder on single tracks; "late" is that track model's late fusion (track
#: probabilities averaged over the bag); "MIL" is mean pooling; "MATT" either score form.
COMPARISONS = (
    "bag − track",
    "late − track",
    "MIL − late",
    "MATT − MIL",
    "MATT − late",
    "attention on informative tracks",
)
#: The symbols an answer may take: a paired difference is "+" (planted, positive), "0" (zero
#: by construction) or "?" (not planted); attention is "> uniform", "= uniform".
ANSWERS = ("+", "0", "?", "> uniform", "= uniform")


class DemoError(MattError, ValueError):
    """A demo dataset option out of range (tracks, seconds, sample rate, effect)."""


@dataclass(frozen=True)
class Effect:
    """One planted variant: a one-line description and the known answer per comparison.

    ``answers[c]`` is one of :data:`ANSWERS`; ``notes[c]`` is a short text for the report, beside
    the verdict.
    """

    name: str
    description: str
    answers: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if set(self.answers) != set(COMPARISONS) or set(self.notes) != set(COMPARISONS):
            raise ValueError(f"effect {self.name!r} must answer every comparison {COMPARISONS}")
        bad = {c: a for c, a in self.answers.items() if a not in ANSWERS}
        if bad:
            raise ValueError(f"effect {self.name!r}: answers {bad} not among {ANSWERS}")


_UNIFORM_MARKED = (
    "scored against the manifest's `marked` tracks, here a placebo draw with no effect on the content: "
    "weight on them should equal their uniform share"
)

EFFECTS: dict[str, Effect] = {
    "null": Effect(
        "null",
        "bags carry nothing beyond their tracks: every track of an album is a rendition of one recording",
        answers={
            "bag − track": "0",
            "late − track": "0",
            "MIL − late": "0",
            "MATT − MIL": "0",
            "MATT − late": "0",
            "attention on informative tracks": "= uniform",
        },
        notes={
            "bag − track": "a bag of copies is one track: the bag model is the track model trained with each "
            "track weighted 1 / its bag size (the plain track model differs only by that weighting)",
            "late − track": "averaging an album's identical predictions changes nothing: late fusion equals "
            "the track model exactly",
            "MIL − late": "mean pooling of copies is the track model weighted 1 / bag size; 0 in expectation",
            "MATT − MIL": "identical tracks get identical scores, so attention is uniform and MATT is MIL",
            "MATT − late": "0 in expectation, as MIL − late",
            "attention on informative tracks": "exactly uniform (identical tracks); " + _UNIFORM_MARKED,
        },
    ),
    "bag": Effect(
        "bag",
        "every track carries its album's genre under strong independent per-track noise: pooling helps",
        answers={
            "bag − track": "+",
            "late − track": "+",
            "MIL − late": "?",
            "MATT − MIL": "?",
            "MATT − late": "?",
            "attention on informative tracks": "= uniform",
        },
        notes={
            "bag − track": "pooling averages the per-track noise out",
            "late − track": "averaging track predictions over the album averages the noise too",
            "MIL − late": "not planted: both pool exchangeable tracks; expect a small difference",
            "MATT − MIL": "not planted: tracks are exchangeable, so mean pooling is already the right "
            "statistic; expect about 0 (or below, from attention's extra parameters)",
            "MATT − late": "not planted; expect about MIL − late",
            "attention on informative tracks": "every track is informative; " + _UNIFORM_MARKED,
        },
    ),
    "attention": Effect(
        "attention",
        "about a third of an album's tracks carry its genre (at least one per album); the rest are genre-free fillers",
        answers={
            "bag − track": "+",
            "late − track": "+",
            "MIL − late": "+",
            "MATT − MIL": "?",
            "MATT − late": "+",
            "attention on informative tracks": "> uniform",
        },
        notes={
            "bag − track": "a track model cannot classify fillers (about two thirds of the tracks); every "
            "bag holds at least one informative track",
            "late − track": "the informative tracks' predictions outvote the fillers' (the genre prior) in most albums",
            "MIL − late": "a bag model learns to ignore fillers; late fusion averages their prior in",
            "MATT − MIL": "not planted: a mean-pool encoder can also learn to map fillers to a constant, "
            "leaving the dilution to the classifier's bias",
            "MATT − late": "as MIL − late",
            "attention on informative tracks": "fillers are detectable, so attention should weight the "
            "`marked` (informative) tracks above their uniform share; paper-form MATT's weights differ "
            "by at most e² within a bag",
        },
    ),
}


def check_effect(effect: object) -> str:
    """``effect`` if it names a planted effect, else one ValueError line naming the valid ones."""
    if not isinstance(effect, str) or effect not in EFFECTS:
        raise DemoError(f"unknown demo effect {effect!r}; valid: {', '.join(EFFECTS)}")
    return effect


def draw_marked(manifest: pd.DataFrame, *, seed: int) -> np.ndarray:
    """The tracks ``attention`` makes informative, shape (n_tracks,) bool.

    Per album, ``max(1, round(n / 3))`` of its ``n`` non-guest tracks (``genre == album_genre``),
    at random; guests are never marked. The draw depends on the seed and the plan only, so every
    effect of one seed marks the same tracks.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1AF0]))
    marked = np.zeros(len(manifest), dtype=bool)
    own = (manifest["genre"] == manifest["album_genre"]).to_numpy()
    rows_of = pd.Series(np.arange(len(manifest))[own]).groupby(manifest["album_id"].to_numpy()[own]).indices
    positions = np.flatnonzero(own)
    for album in sorted(rows_of):
        rows = positions[rows_of[album]]
        k = max(1, round(len(rows) / 3))
        marked[rng.choice(rows, size=k, replace=False)] = True
    return marked


def assign_roles(manifest: pd.DataFrame, *, effect: str) -> pd.DataFrame:
    """Add ``effect``, ``role`` and ``informative`` to a plan's manifest (a copy).

    ``manifest`` needs ``genre``, ``album_genre`` and ``marked``. Roles: under ``null`` every
    track is a ``rendition`` of its album's recording (guests too, so they are informative of
    the album's genre); otherwise a guest (``genre != album_genre``) carries its own genre
    (``guest``, not informative of its bag's), and the others are ``informative`` (``bag``: all;
    ``attention``: the marked ones) or ``filler``.
    """
    check_effect(effect)
    out = manifest.copy()
    guest = (out["genre"] != out["album_genre"]).to_numpy()
    if effect == "null":
        role = np.full(len(out), "rendition", dtype=object)
    elif effect == "bag":
        role = np.where(guest, "guest", "informative").astype(object)
    else:
        role = np.where(guest, "guest", np.where(out["marked"].to_numpy(), "informative", "filler")).astype(object)
    out["effect"] = effect
    out["role"] = role
    out["informative"] = np.isin(role, ("rendition", "informative"))
    return out
