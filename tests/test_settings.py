"""One definition of every study setting: notebooks, params files, registries and paths agree."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mattlib import paths, runner
from mattlib.data import datasets, fma
from mattlib.features import MelSettings
from mattlib.study import choices, experiment
from mattlib.study.settings import Settings, SettingsError
from mattlib.views import report

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
#: What tells one notebook's experiment from another's; every other default is the study's.
IDENTITY = {
    "output_dir": None,
    "model": {"03_baselines"},
    "pooling": {"05_matt", "07_case_study"},
    "run_dir": {"06_long_tail"},
}


def _parameters(notebook: Path) -> dict:
    nb = json.loads(notebook.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    namespace: dict = {}
    exec("".join(cell["source"]), {}, namespace)
    return namespace


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_defaults_are_the_settings_defaults(notebook):
    defaults = Settings().to_dict()
    params = _parameters(notebook)
    unknown = sorted(set(params) - set(defaults))
    assert not unknown, f"{notebook.name} declares {unknown}, which Settings does not"
    for name, value in params.items():
        allowed = IDENTITY.get(name, set())
        if name in IDENTITY and (allowed is None or notebook.stem in allowed):
            continue
        assert value == defaults[name], f"{notebook.name}: {name} = {value!r}, Settings has {defaults[name]!r}"
    # the next cell turns the parameters into the settings object
    nb = json.loads(notebook.read_text())
    sources = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert "Settings.for_notebook(globals())" in sources[1]


def test_every_mel_setting_reaches_the_log_mel_settings():
    settings = Settings(mel_crop="centre", mel_seconds=5.0)
    mel = settings.mel
    assert isinstance(mel, MelSettings) and (mel.crop, mel.seconds) == ("centre", 5.0)
    fields = {n.removeprefix("mel_") for n in Settings.names() if n.startswith("mel_")}
    assert fields <= {f.name for f in __import__("dataclasses").fields(MelSettings)}
    assert {k: getattr(mel, k) for k in fields} == {k: getattr(settings, f"mel_{k}") for k in fields}
    for notebook in NOTEBOOKS:
        params = _parameters(notebook)
        if any(k.startswith("mel_") for k in params):
            assert {f"mel_{k}" for k in fields} <= set(params), notebook.name


def test_every_registered_name_is_accepted_everywhere(tmp_path):
    for pooling in choices.POOLINGS:
        Settings(pooling=pooling)
        experiment.model_label("mlp", pooling)
    for model in choices.MODELS:
        Settings(model=model)
        experiment.model_label(model, "none")
    for feature_set in choices.FEATURE_SETS:
        Settings(feature_set=feature_set)
    for kind in datasets.DATASETS:
        Settings(dataset=kind)
    with pytest.raises(SettingsError, match="unknown pooling .attention.; valid: none"):
        Settings(pooling="attention")
    for pooling in choices.POOLINGS:  # a params file accepts it too
        path = tmp_path / f"{pooling}.yaml"
        path.write_text(f"defaults: {{pooling: {pooling}}}\nnotebooks: [{{notebook: 04_mil}}]\n")
        runner.load_grid(path)


_SUM_POOLING = """
import torch

from mattlib.models.mil.base import PooledLinear, check_bags, uniform_attention


class SumPooling(PooledLinear):
    def forward(self, instances, mask, labels=None):
        check_bags(instances, mask, self.in_dim)
        bag = (instances * mask.unsqueeze(-1)).sum(dim=1)
        return self.classifier(self.drop(bag)), uniform_attention(mask, instances.dtype)
"""


def test_a_pooling_registered_in_one_place_is_valid_everywhere(tmp_path, monkeypatch):
    """One module + one line in mil.POOLINGS: settings, params files, labels and make_pooling take it."""
    from mattlib.models import mil

    params = tmp_path / "sum.yaml"
    params.write_text("defaults: {pooling: sum}\nnotebooks: [{notebook: 04_mil}]\n")
    with pytest.raises(SettingsError, match="unknown pooling 'sum'"):
        Settings(pooling="sum")
    with pytest.raises(runner.GridError, match="sum"):
        runner.load_grid(params)

    (tmp_path / "sum_pooling.py").write_text(_SUM_POOLING)
    monkeypatch.syspath_prepend(tmp_path)
    monkeypatch.setitem(mil.POOLINGS, "sum", "sum_pooling:SumPooling")

    assert choices.POOLINGS[-1] == "sum" and choices.POOLINGS[:2] == ("none", "late")
    assert Settings(pooling="sum").pooling == "sum"
    runner.load_grid(params)
    assert experiment.model_label("mlp", "sum") == "MLP+sum"
    import torch

    pooling = mil.make_pooling("sum", in_dim=3, n_classes=2)
    assert type(pooling).__name__ == "SumPooling"
    logits, attention = pooling(torch.ones(2, 4, 3), torch.tensor([[True] * 4, [True, False, False, False]]))
    assert logits.shape == (2, 2) and attention[1].tolist() == [1.0, 0.0, 0.0, 0.0]


def test_settings_and_the_registries_load_without_torch():
    """The params-file validator reads the pooling / encoder registries without importing torch."""
    code = (
        "import sys; from mattlib import runner; from mattlib.study import choices, settings; "
        "settings.Settings(pooling='matt', model='crnn_tf'); choices.POOLINGS; choices.MODELS; "
        "from mattlib.models.mil import POOLINGS, make_pooling; from mattlib.models.encoders import ENCODERS; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_relative_notebook_paths_resolve_from_the_notebooks_folder(monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[1] / "notebooks")  # where JupyterLab starts the kernel
    settings = Settings.for_notebook(
        {
            "data_root": "data/demo",
            "cache_dir": "outputs/cache/demo",
            "output_dir": "outputs/adhoc/05_matt",
            "In": [],
            "_": None,
        }
    )
    root = paths.project_root()
    assert settings.data_root == str(root / "data" / "demo")
    assert settings.cache_dir == str(root / "outputs" / "cache" / "demo")
    assert Settings.for_notebook({"data_root": "/abs/fma"}).data_root == "/abs/fma"


def _collection_with_features(root: Path) -> None:
    """A generic collection (not FMA's layout): 4 genres, albums of 2-5 tracks, one mixed-genre
    test album, and a features.csv in FMA's 518-column layout with a genre signal."""
    rng = np.random.default_rng(0)
    genres, rows, track = ["ambient", "metal", "jazz", "folk"], [], 100
    for split, albums_per_genre in [("training", 4), ("validation", 2), ("test", 2)]:
        for g, genre in enumerate(genres):
            for a in range(albums_per_genre if g < 2 else max(1, albums_per_genre // 2)):
                album = 1000 * (1 + ["training", "validation", "test"].index(split)) + 10 * g + a
                for _ in range(4 if g < 2 else 2 + a % 2):
                    rows.append((track, album, album + 7, genre, split))  # one artist per album: no leak
                    track += 1
    table = pd.DataFrame(rows, columns=["track_id", "album_id", "artist_id", "genre", "split"])
    mixed = table.index[(table["split"] == "test") & (table["genre"] == "ambient")][:1]
    table.loc[mixed, "genre"] = "jazz"  # a test album whose tracks disagree
    datasets.write_collection(root, table)
    centres = rng.normal(size=(len(genres), 518)) * 2
    values = centres[table["genre"].map(genres.index)] + rng.normal(size=(len(table), 518))
    fma.write_features(root / "features.csv", pd.DataFrame(values, index=table["track_id"]))


@pytest.mark.slow
def test_the_study_runs_on_a_generic_collection(tmp_path, torch_one_thread):
    root = tmp_path / "collection"
    _collection_with_features(root)
    settings = Settings(data_root=str(root), cache_dir=str(tmp_path / "cache"), feature_set="mfcc+contrast")
    data = experiment.load(settings)  # the notebooks' call: the settings object, handed on whole
    assert data.classes == ["ambient", "metal", "folk", "jazz"]  # largest training genres first (ties by name)
    test_bags = data.split("test").groupby("bag_id")["genre"].nunique()
    assert test_bags.max() == 2  # the mixed album stays one bag
    assert set(experiment.study_tail_sets(data.train_counts)) == {"<100", "<200"}
    run_dir = tmp_path / "run"
    with pytest.raises(ValueError, match="model lr is a scikit-learn baseline and takes no bag pooling"):
        experiment.train(data, settings.replace(model="lr", pooling="matt"))
    baseline = experiment.train(data, settings.replace(model="lr", pooling="none"))  # a scikit-learn baseline
    assert [r.label for r in baseline.results] == ["LR", "LR+late"]
    baseline.save(run_dir / "03_baselines" / "lr", notebook="03_baselines")
    bag_model = experiment.train(
        data,
        settings.replace(
            model="mlp",
            pooling="matt",
            epochs=3,
            hidden=(32,),
            device="cpu",
            patience=None,
            output_dir=str(tmp_path / "o"),
        ),
    )
    assert len(bag_model.history) == 3 and (tmp_path / "o" / "checkpoints" / "best.pt").exists()
    bag_model.save(run_dir / "05_matt" / "mlp", notebook="05_matt")
    frame = report.collect(run_dir)
    assert {"LR", "LR+late", "MLP+MATT"} <= set(frame["label"])
    assert frame.loc[frame["label"] == "LR", "accuracy"].iloc[0] > 0.5  # the genre signal is learnt


def _same(a, b) -> bool:
    return (list(a) == list(b)) if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) else a == b


#: Parameters that share a setting's name but not its concept (the setting is ``musicnn_model``).
_OTHER_CONCEPTS = {("mattlib.features.musicnn", "model"), ("mattlib.features.musicnn_net", "model")}


def test_no_function_declares_a_default_that_disagrees_with_settings():
    """A parameter named like a setting has no default, None ("not given"), or the one Settings
    declares: a script calling a lower layer trains what the notebook trains (a different concept
    takes another name)."""
    import importlib
    import inspect

    package = Path(__file__).parents[1] / "mattlib"
    defaults = Settings().to_dict()
    disagree = []
    for path in sorted(package.rglob("*.py")):
        name = ".".join(("mattlib", *path.relative_to(package).with_suffix("").parts)).removesuffix(".__init__")
        module = importlib.import_module(name)
        own = [o for o in vars(module).values() if getattr(o, "__module__", None) == name and callable(o)]
        functions = [
            f for o in own for f in ([o] if not inspect.isclass(o) else vars(o).values()) if inspect.isfunction(f)
        ]
        for fn in functions:
            for p in inspect.signature(fn).parameters.values():
                if (
                    p.name not in defaults
                    or p.default is p.empty
                    or p.default is None
                    or (name, p.name) in _OTHER_CONCEPTS
                ):
                    continue
                if not _same(p.default, defaults[p.name]):
                    disagree.append(f"{name}.{fn.__qualname__}({p.name}={p.default!r}), Settings: {defaults[p.name]!r}")
    assert disagree == []
