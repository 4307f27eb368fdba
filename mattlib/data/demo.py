"""The embedded demo dataset: synthetic music written in FMA's exact on-disk format.

The real Free Music Archive (22 GiB) cannot ship with the project, so the study runs by default on
a dataset generated here. It is laid out exactly like an FMA root, so the very same loaders
(:mod:`mattlib.data.fma`) serve it and the real data::

    <root>/fma_metadata/tracks.csv      FMA's 52 columns, 2-row header, index ``track_id``
    <root>/fma_metadata/genres.csv      FMA's official genre table (copied from package data)
    <root>/fma_medium/XXX/XXXXXX.mp3    one mono clip per track
    <root>/demo_manifest.csv            generator ground truth (genre, album, artist, split, fault,
                                        planted effect, role, informative, marked, mixed album)
    <root>/README.md                    what this is, and the planted effect's known answer
    <root>/demo_complete.json           marker, written last: the root is complete (its settings)

What is generated
-----------------
* The 16 FMA top genres with fma_medium's long-tail training proportions (Rock 5681 ...
  Easy Listening 13), scaled down with a floor so every genre has tracks in every split
  (at least 3 training, 2 validation and 2 test tracks) while the ordering is kept.
* Artist-disjoint training / validation / test splits (~80/10/10, like FMA's), several albums per
  artist, 1..8 tracks per album, so bags keyed by (album, artist) are meaningful; 2-4 test albums
  mix genres (one guest track of another genre each; the bag's genre is its majority).
* Audio synthesised per genre (:mod:`mattlib.data.demo_synth`): a style that each album perturbs
  and each track perturbs again.
* One **planted effect** with a known answer (:mod:`mattlib.data.planted`): ``null`` (every track
  of an album is one recording), ``bag`` (tracks share the album's genre under strong per-track
  noise) or ``attention`` (about a third of an album's tracks carry the genre, the rest are
  genre-free fillers). The rare genres follow the same rule.
* Three faulty clips, as on real FMA: an empty file, a truncated file and a short clip.

The default effect is ``attention``: it is the one under which every question of the study has a
planted answer that is not zero (bag models above their track models and above late fusion,
attention weight on the informative tracks above uniform), while MATT − MIL stays an open
question, as on real data. ``null`` and ``bag`` are for showing that the study finds nothing where
nothing is planted and that pooling alone is credited as pooling.
:func:`generate_demo_features` writes the same plan with ``features.csv`` instead of audio, in
about a second, for benchmarks that replicate the study many times.

Nothing in it says anything about real music; it only exercises the pipeline at the shape of FMA
medium (long tail, bags, mixed albums, faulty files) and checks that the study finds what was
planted.

Size (measured on 2 CPU cores, default settings: 600 tracks of 3 s, 22050 Hz)
------------------------------------------------------------------------------
* Generation of the default (``attention``): 46 s wall, 38 CPU-s, on 2 cores shared with other
  jobs (load 2-3); ``null`` 41 s and ``bag`` 86 s measured under heavier load (4-5). ~13 MiB.
* What the study's models find on it (FMA's 518 statistics extracted from the clips, the
  MLP 256-128 of :func:`mattlib.study.experiment.run_bag_model`, 40 epochs, patience 8; test
  track accuracy on the 68 test tracks of data seed 0, training seeds 0-2): ``null``: track
  model 49-53 %, late fusion equal to it exactly, MIL 44-57 % (MIL − track −4 to +5), MATT
  43-63 %, MATT's weight on the ``marked`` tracks exactly their uniform share (0.389);
  ``bag``: track 38-43 %, late fusion 47-53 % (+9 to +10), MIL 53-66 % (+13 to +24), MATT
  47-53 %; ``attention``: track 25-32 %, late fusion 47-50 %, MIL 50-54 %, MATT 62-71 %,
  MATT's weight on the informative tracks 0.77 against a uniform 0.39. The features-only
  variants' figures (4 data seeds) are in :func:`generate_demo_features`.
* The difficulty knobs are ``_ALBUM_SPREAD``, ``_TRACK_SPREAD``, ``_CROSSOVER_MAX``,
  ``_BORROW_PROB`` and, per effect, ``_TRACK_PULL_MAX``, ``_FOCUS``, ``_FOCUS_SPREAD`` and
  ``_FILLER`` (:mod:`mattlib.data.demo_synth`).
"""

from __future__ import annotations

from pathlib import Path

from mattlib.data import planted
from mattlib.data.demo_features import (  # noqa: F401 - re-exported
    _medium_features,
    _planted_features,
    generate_demo_features,
    generate_fma_medium_features,
)
from mattlib.data.demo_files import (  # noqa: F401 - re-exported
    DEMO_MARKER,
    DEMO_SUBSET,
    _check_int,
    _read_marker,
    _readme,
    _replaceable,
    _write_root,
    is_demo_root,
)
from mattlib.data.demo_plan import (  # noqa: F401 - re-exported
    _MIN_PER_GENRE,
    FMA_MEDIUM_SPLITS,
    FMA_MEDIUM_TRAINING_COUNTS,
    TRACKS_COLUMNS,
    _genre_totals,
    _medium_counts,
    _plan,
    _split_counts,
)
from mattlib.data.demo_synth import (  # noqa: F401 - re-exported
    _album_style,
    _render_all,
    _render_task,
    planted_tasks,
    synthesize_track,
)
from mattlib.data.planted import DemoError  # noqa: F401 - re-exported
from mattlib.executors import JOBS

__all__ = [
    "DEMO_SUBSET",
    "DEMO_MARKER",
    "DEFAULT_EFFECT",
    "DEFAULT_N_TRACKS",
    "DEFAULT_SECONDS",
    "FMA_MEDIUM_TRAINING_COUNTS",
    "TRACKS_COLUMNS",
    "FMA_MEDIUM_SPLITS",
    "generate_demo",
    "generate_demo_features",
    "generate_fma_medium_features",
    "is_demo_root",
    "synthesize_track",
]

#: Default number of tracks (fits the study's 10-minute budget on 2 CPU cores).
DEFAULT_N_TRACKS = 600
#: Clip length of the demo (s): FMA clips are 30 s; 3 s keeps `make study` within 6 minutes on 2 cores.
DEFAULT_SECONDS = 3.0
#: The planted effect `make study` runs (see the module docstring for why).
DEFAULT_EFFECT = "attention"
# Bump when the generator changes, so a stale demo is regenerated.
_GENERATOR_VERSION = 2
_MP3_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def generate_demo(
    out: str | Path,
    *,
    effect: str = DEFAULT_EFFECT,
    n_tracks: int = DEFAULT_N_TRACKS,
    seconds: float = DEFAULT_SECONDS,
    seed: int = 0,
    sr: int = 22050,
    jobs: int = JOBS,
    progress: bool = True,
) -> Path:
    """Generate the demo dataset, in FMA's on-disk format, under ``out``.

    The dataset is built in ``<out>.partial`` and renamed to ``out`` once complete, so a killed
    run never looks complete. If ``out`` already holds a complete demo made with the same
    parameters (effect included), nothing is done. An existing ``out`` is replaced only if it is
    empty or holds nothing but demo files (an incomplete or older demo, or one made with other
    parameters); anything else raises.

    Parameters
    ----------
    out : str or Path
        Data root to create (it will hold ``fma_metadata/`` and ``fma_medium/``).
    effect : {"attention", "bag", "null"}, default "attention" (:data:`DEFAULT_EFFECT`)
        The planted effect (:data:`mattlib.data.planted.EFFECTS`); the plan (genres, splits,
        albums, mixed albums, ``marked`` tracks) is the same for every effect of one seed.
    n_tracks : int, default 600
        Number of tracks, at least ``16 * 7 = 112`` (every genre keeps 3 training, 2 validation
        and 2 test tracks).
    seconds : float, default 3.0 (:data:`DEFAULT_SECONDS`)
        Clip duration in seconds (0.5 to 60).
    seed : int, default 0
        Seed; the same seed gives a byte-identical ``tracks.csv`` and the same audio.
    sr : int, default 22050
        Sample rate in Hz of the mono MP3 clips; one of MP3's rates (8000 ... 48000).
    jobs : int, default 2
        Worker processes for synthesis and MP3 encoding (1 = in this process).
    progress : bool, default True
        Show a tqdm progress bar.

    Returns
    -------
    Path
        The data root ``out``.

    Raises
    ------
    ValueError
        If a parameter is out of range or ``effect`` is not a planted effect.
    FileExistsError
        If ``out`` exists and holds files that are not part of a demo dataset.

    Examples
    --------
    >>> root = generate_demo("data/demo-null", effect="null", n_tracks=112, seconds=1.0)  # doctest: +SKIP
    >>> pd.read_csv(root / "demo_manifest.csv")["role"].unique()  # doctest: +SKIP
    array(['rendition'], dtype=object)
    """
    effect = planted.check_effect(effect)
    n_tracks = _check_int("n_tracks", n_tracks, low=_MIN_PER_GENRE * len(FMA_MEDIUM_TRAINING_COUNTS))
    seed = _check_int("seed", seed, low=0)
    jobs = _check_int("jobs", jobs, low=1)
    sr = _check_int("sr", sr, low=1)
    if sr not in _MP3_RATES:
        raise planted.DemoError(f"sr must be an MP3 sample rate {_MP3_RATES}, got {sr}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (0.5 <= float(seconds) <= 60.0):
        raise planted.DemoError(f"seconds must be a number between 0.5 and 60, got {seconds!r}")
    seconds = float(seconds)
    settings = {
        "generator_version": _GENERATOR_VERSION,
        "effect": effect,
        "n_tracks": n_tracks,
        "seconds": seconds,
        "seed": seed,
        "sr": sr,
    }

    def build(partial: Path) -> None:
        tracks, manifest, tasks = _plan(n_tracks=n_tracks, seed=seed)
        manifest = planted.assign_roles(manifest, effect=effect)
        planted_tasks(tasks, manifest, effect=effect, seed=seed)
        tracks.to_csv(partial / "fma_metadata" / "tracks.csv")
        manifest.to_csv(partial / "demo_manifest.csv", index=False)
        (partial / "README.md").write_text(_readme(settings, manifest))
        audio_dir = partial / f"fma_{DEMO_SUBSET}"
        for task in tasks:
            task.update(root=str(audio_dir), seconds=seconds, sr=sr, seed=seed)
        _render_all(tasks, jobs=jobs, progress=progress)

    return _write_root(out, settings, build)
