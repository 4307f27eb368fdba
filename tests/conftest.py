"""Shared fixtures: the real FMA slice in tests/data."""

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def torch_one_thread():
    """Run a module's torch code on one thread (small models: threads only add overhead)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fma_root() -> Path:
    """A real (truncated) FMA root: official metadata rows and 20 fma_small clips."""
    return DATA


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """A tiny FMA-format demo (112 tracks of 2 s) with both feature kinds extracted.

    Returns a dict with ``data_root``, ``cache_dir`` and the ``mel`` settings used.
    """
    from mattlib import features
    from mattlib.data import demo

    base = tmp_path_factory.mktemp("tiny_study")
    root = demo.generate_demo(base / "demo", n_tracks=112, seconds=2.0, seed=3, jobs=2, progress=False)
    cache = base / "cache"
    mel = {"sr": 12000, "seconds": 2.0, "n_mels": 96, "hop_length": 256, "n_fft": 512}
    features.extract_subset(root, subset="medium", kind="fma518", out=cache, jobs=2, progress=False)
    features.extract_subset(
        root, subset="medium", kind="mel", out=cache, jobs=2, progress=False, settings=features.MelSettings(**mel)
    )
    return {"data_root": root, "cache_dir": cache, "mel": mel, "base": base}
