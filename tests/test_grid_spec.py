"""Params files are validated before anything runs: one-line errors naming the valid choices."""

from pathlib import Path

import pytest

from mattlib import runner
from mattlib.models.spec import ModelSpec
from mattlib.runner import cells, spec
from mattlib.study import choices

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, text):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


def test_demo_and_fma_medium_params_are_valid():
    demo = runner.load_grid(ROOT / "params" / "demo.yaml")
    names = [c.notebook for c in demo.cells]
    assert names[0] == "01_data_exploration.ipynb" and names[-1] == "06_long_tail.ipynb"
    assert {Path(n).stem[:2] for n in names} == {"01", "02", "03", "04", "05", "06", "07"}
    # 06 reads the whole run: it waits, alone, in the last stage
    assert [c.notebook for c in demo.stages[-1]] == ["06_long_tail.ipynb"]
    assert demo.stages[-1][0].params["run_dir"] == str(Path("outputs") / "demo")
    ids = [(c.notebook, c.cell_id) for c in demo.cells]
    assert len(ids) == len(set(ids))
    cell = next(c for c in demo.cells if c.notebook == "05_matt.ipynb" and c.cell_id == "all-mlp-matt-1")
    assert cell.params["seed"] == 1 and cell.params["pooling"] == "matt"
    assert cell.output_dir == Path("outputs/demo/05_matt/all-mlp-matt-1")
    # cells start in file order: the log-mel CRNN cells (the longest) go first after 01 and 02
    order = [c.params.get("feature_set") for c in demo.stages[0][2:]]
    assert order[:6] == ["mel"] * 6 and "mel" not in order[6:]
    assert "run_dir" not in cell.params  # only notebooks that declare a parameter receive it
    real = runner.load_grid(ROOT / "params" / "fma_medium.yaml")
    table1 = [c for c in real.cells if c.notebook == "03_baselines.ipynb"]
    assert len({c.params["feature_set"] for c in table1}) == 13  # the paper's 12 and musicnn


@pytest.mark.parametrize(
    "text, message",
    [
        ("notebooks: [{notebook: 09_nope}]", "unknown notebook '09_nope.ipynb'; valid: 01_data_exploration.ipynb"),
        (
            "notebooks: [{notebook: 03_baselines, grid: {feature_set: [all, chromaa]}}]",
            "unknown feature_set 'chromaa'; valid: chroma, tonnetz",
        ),
        ("notebooks: [{notebook: 03_baselines, params: {model: xgboost}}]", "unknown model 'xgboost'; valid: lr, knn"),
        ("notebooks: [{notebook: 05_matt, params: {pooling: attn}}]", "unknown pooling 'attn'; valid: none, late"),
        (
            "notebooks: [{notebook: 05_matt, params: {epochz: 3}}]",
            "05_matt.ipynb: unknown parameter 'epochz'; did you mean 'epochs'? valid: allow_leakage, batch_size",
        ),
        ("colour: red\nnotebooks: [01_data_exploration]", "unknown key 'colour'; valid: defaults, description"),
        # hostile params files: one line each, nothing written (issue 18)
        (
            "defaults: {epochz: 3}\nnotebooks: [01_data_exploration]",
            "defaults: unknown parameter (of no notebook) 'epochz'; did you mean 'epochs'?",
        ),
        ("study: {demo_option: {}}\nnotebooks: [01_data_exploration]", "did you mean 'demo_options'?"),
        ("defaults: [1, 2]\nnotebooks: [01_data_exploration]", "defaults must be a mapping of name: value"),
        ("output_root: 5\nnotebooks: [01_data_exploration]", "output_root must be a folder path, got 5"),
        ("run: ../../escaped\nnotebooks: [01_data_exploration]", "run must be one folder name of letters"),
        ("run: [a, b]\nnotebooks: [01_data_exploration]", "got ['a', 'b']"),
        ("run: a/b\nnotebooks: [01_data_exploration]", "got 'a/b'"),
        (
            "notebooks: [{notebook: 03_baselines, grid: [seed, model]}]",
            "grid of 03_baselines.ipynb must be a mapping of name: value, e.g. {seed: [0, 1, 2]}; got a list",
        ),
        ("notebooks: [{notebook: 03_baselines, grid: {model: lr}}]", "must be a non-empty list"),
        ("notebooks: []", "'notebooks' must be a non-empty list"),
        (
            "notebooks: [{notebook: 03_baselines, grid: {model: [lr]}}, {notebook: 03_baselines, grid: {model: [lr]}}]",
            "two grid cells share the id 'lr'",
        ),
    ],
)
def test_invalid_params_files(tmp_path, text, message):
    with pytest.raises(runner.GridError) as err:
        runner.load_grid(write(tmp_path, text))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(runner.GridError, match="params file not found"):
        runner.load_grid(tmp_path / "nope.yaml")
    with pytest.raises(runner.GridError, match="is a folder; give a params file"):
        runner.load_grid(tmp_path)


def test_a_params_file_that_is_not_utf8_names_its_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("run: demo\n# caf\u00e9\nnotebooks: [01_data_exploration]\n".encode("latin-1"))
    with pytest.raises(runner.GridError) as err:
        runner.load_grid(path)
    assert str(err.value) == f"{path}: line 2 is not UTF-8 (byte 0xe9); save the file as UTF-8"
    assert not (tmp_path / "outputs").exists()


def test_data_root_override_gets_its_own_cache(tmp_path):
    spec = runner.load_grid(ROOT / "params" / "demo.yaml", data_root=tmp_path)
    cell = spec.cells[2]
    assert cell.params["data_root"] == str(tmp_path)
    assert cell.params["cache_dir"] != "outputs/cache/demo"
    assert Path(cell.params["cache_dir"]).name.startswith(tmp_path.name)


def test_choices_match_the_registries():
    from mattlib import features
    from mattlib.models import baselines, encoders, mil

    assert set(choices.FEATURE_SETS) - {"mel", "musicnn"} == set(features.FEATURE_SETS)
    for name in choices.BASELINES:
        baselines.make_baseline(name)
    # poolings and encoders are read from their registries; "late" is late fusion of "none"
    assert choices.POOLINGS == ("none", "late", "mean", "max", "matt", "gated")
    assert choices.MODELS == ("lr", "knn", "svm", "sklearn_mlp", "mlp", "crnn", "crnn_tf")
    for name in mil.POOLINGS:
        mil.make_pooling(name, in_dim=4, n_classes=3)
    for name in encoders.ENCODERS:
        options = ModelSpec(encoder=name).encoder_options()
        assert hasattr(
            encoders.make_encoder(name, input_shape=(8,) if name == "mlp" else (16, 16), **options), "out_dim"
        )
    with pytest.raises(ValueError, match="valid"):
        encoders.make_encoder("resnet", input_shape=(8,))


def test_every_notebook_is_output_free_and_all_its_parameters_parse():
    import nbformat
    import papermill

    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert [p.name[:2] for p in notebooks] == ["01", "02", "03", "04", "05", "06", "07"]
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        assigned = [
            line.split("=")[0].strip()
            for line in tagged[0].source.splitlines()
            if line and not line.startswith("#") and "=" in line
        ]
        # papermill silently drops a line it cannot parse (e.g. an '=' inside a comment)
        assert sorted(papermill.inspect_notebook(str(path))) == sorted(assigned), path.name
        assert {"output_dir"} <= set(assigned)


def test_a_cell_is_finished_only_with_the_same_params_notebook_source_and_code(tmp_path):
    import shutil

    import yaml as _yaml

    from mattlib.provenance import code_digest

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "03_x.ipynb").write_text('{"cells": []}')
    out = tmp_path / "run" / "03_x" / "lr"
    out.mkdir(parents=True)
    cell = runner.Cell("03_x.ipynb", "lr", {"model": "lr", "output_dir": str(out)}, out)
    (out / "params.yaml").write_text(_yaml.safe_dump({"model": "lr"}))
    (out / "source.sha1").write_text(cells._source_digest(notebooks / "03_x.ipynb"))
    (out / "code.sha1").write_text(code_digest())
    assert runner.cell_status(cell, notebook_dir=notebooks) == "new"  # no metrics.json yet
    (out / "metrics.json").write_text("{}")
    assert runner.is_finished(cell, notebook_dir=notebooks)
    # a finished run folder that is moved still counts as finished (its path is not a parameter)
    moved = tmp_path / "elsewhere" / "03_x" / "lr"
    shutil.copytree(out, moved)
    assert runner.is_finished(
        runner.Cell("03_x.ipynb", "lr", {"model": "lr", "output_dir": str(moved)}, moved), notebook_dir=notebooks
    )
    changed = runner.Cell("03_x.ipynb", "lr", {"model": "svm", "output_dir": str(out)}, out)
    assert runner.cell_status(changed, notebook_dir=notebooks) == "parameters"
    (out / "code.sha1").write_text("0" * 40)  # made by other mattlib code
    assert runner.cell_status(cell, notebook_dir=notebooks) == "code"
    (notebooks / "03_x.ipynb").write_text('{"cells": [1]}')  # the notebook was edited
    assert runner.cell_status(cell, notebook_dir=notebooks) == "notebook"


def test_the_code_digest_changes_with_a_library_function(tmp_path):
    import shutil

    from mattlib.provenance import PACKAGE_DIR, code_digest

    copy = tmp_path / "mattlib"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_digest(package_dir=copy) == code_digest()
    metrics = copy / "evaluation" / "metrics.py"
    metrics.write_text(metrics.read_text().replace("def ", "def _changed_helper():\n    return 1\n\n\ndef ", 1))
    assert code_digest(package_dir=copy) != code_digest()


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("epochs", '"ten"', "epochs must be an integer >= 1, got 'ten' (str)"),
        ("epochs", "-3", "epochs must be an integer >= 1, got -3"),
        ("batch_size", "0", "batch_size must be an integer >= 1, got 0"),
        ("lr", "1e-3", "YAML reads 1e-3 as text: write 1.0e-3"),
        ("hidden", "[64, 0]", "hidden must be a non-empty list, each an integer >= 1"),
        ("patience", "true", "patience must be an integer >= 1 or null, got True"),
    ],
)
def test_types_and_ranges_fail_when_the_params_file_is_read(tmp_path, setting, value, message):
    text = f"defaults: {{{setting}: {value}}}\nnotebooks: [{{notebook: 04_mil}}]"
    with pytest.raises(runner.GridError) as err:
        runner.load_grid(write(tmp_path, text))
    assert message in str(err.value) and "04_mil.ipynb" in str(err.value)
    assert "\n" not in str(err.value)


def test_settings_object():
    from mattlib.study.settings import Settings, SettingsError

    s = Settings.from_parameters({"epochs": 5, "hidden": [32], "colour": "red"})
    assert s.epochs == 5 and s.hidden == (32,) and s.extra == {"colour": "red"}
    assert s.replace(batch_size=4).to_dict()["batch_size"] == 4
    assert Settings.from_parameters(s.to_dict()) == s
    with pytest.raises(SettingsError, match="batch_size must be an integer >= 1, got 0"):
        s.replace(batch_size=0)
    with pytest.raises(SettingsError, match="unknown setting"):
        Settings.from_parameters({"colour": "red"}, strict=True)
    # every notebook parameter the study declares has one declared constraint
    for path in sorted((ROOT / "notebooks").glob("0[3-5]_*.ipynb")):
        assert set(spec._notebook_parameters(path)) <= set(Settings.names()) | {"logit_adjustment"}, path.name
