"""Params files are validated before anything runs: one-line errors naming the valid choices."""

from pathlib import Path

import pytest

from mattlib import choices, grid

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, text):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


def test_demo_and_fma_medium_params_are_valid():
    demo = grid.load_grid(ROOT / "params" / "demo.yaml")
    names = [c.notebook for c in demo.cells]
    assert names[0] == "01_data_exploration.ipynb" and names[-1] == "06_long_tail.ipynb"
    assert {Path(n).stem[:2] for n in names} == {"01", "02", "03", "04", "05", "06", "07"}
    # 06 reads the whole run: it waits, alone, in the last stage
    assert [c.notebook for c in demo.stages[-1]] == ["06_long_tail.ipynb"]
    assert demo.stages[-1][0].params["run_dir"] == str(Path("outputs") / "demo")
    ids = [(c.notebook, c.cell_id) for c in demo.cells]
    assert len(ids) == len(set(ids))
    cell = next(c for c in demo.cells if c.notebook == "05_matt.ipynb" and c.cell_id == "mlp-all-matt-1")
    assert cell.params["seed"] == 1 and cell.params["pooling"] == "matt"
    assert cell.output_dir == Path("outputs/demo/05_matt/mlp-all-matt-1")
    assert "run_dir" not in cell.params  # only notebooks that declare a parameter receive it
    real = grid.load_grid(ROOT / "params" / "fma_medium.yaml")
    table1 = [c for c in real.cells if c.notebook == "03_baselines.ipynb"]
    assert len({c.params["feature_set"] for c in table1}) == 12


@pytest.mark.parametrize(
    "text, message",
    [
        ("notebooks: [{notebook: 09_nope}]", "unknown notebook '09_nope.ipynb'; valid: 01_data_exploration.ipynb"),
        ("notebooks: [{notebook: 03_baselines, grid: {feature_set: [all, chromaa]}}]",
         "unknown feature_set 'chromaa'; valid: chroma, tonnetz"),
        ("notebooks: [{notebook: 03_baselines, params: {model: xgboost}}]", "unknown model 'xgboost'; valid: lr, knn"),
        ("notebooks: [{notebook: 05_matt, params: {pooling: attn}}]", "unknown pooling 'attn'; valid: none, late"),
        ("notebooks: [{notebook: 03_baselines, params: {epochz: 3}}]", "has no parameter 'epochz'; valid: cache_dir"),
        ("colour: red\nnotebooks: [01_data_exploration]", "unknown key(s) ['colour']"),
        ("notebooks: [{notebook: 03_baselines, grid: {model: lr}}]", "must be a non-empty list"),
        ("notebooks: []", "'notebooks' must be a non-empty list"),
        ("notebooks: [{notebook: 03_baselines, grid: {model: [lr]}}, {notebook: 03_baselines, grid: {model: [lr]}}]",
         "two grid cells share the id 'lr'"),
    ],
)
def test_invalid_params_files(tmp_path, text, message):
    with pytest.raises(grid.GridError) as err:
        grid.load_grid(write(tmp_path, text))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(grid.GridError, match="params file not found"):
        grid.load_grid(tmp_path / "nope.yaml")


def test_data_root_override_gets_its_own_cache(tmp_path):
    spec = grid.load_grid(ROOT / "params" / "demo.yaml", data_root=tmp_path)
    cell = spec.cells[2]
    assert cell.params["data_root"] == str(tmp_path)
    assert cell.params["cache_dir"] != "outputs/cache/demo"
    assert Path(cell.params["cache_dir"]).name.startswith(tmp_path.name)


def test_choices_match_the_registries():
    from mattlib import baselines, encoders, features, mil

    assert set(choices.FEATURE_SETS) - {"mel"} == set(features.FEATURE_SETS)
    for name in choices.BASELINES:
        baselines.make_baseline(name)
    for name in ("none", "mean", "max", "matt", "gated"):
        mil.make_pooling(name, in_dim=4, n_classes=3)
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
        assigned = [line.split("=")[0].strip() for line in tagged[0].source.splitlines()
                    if line and not line.startswith("#") and "=" in line]
        # papermill silently drops a line it cannot parse (e.g. an '=' inside a comment)
        assert sorted(papermill.inspect_notebook(str(path))) == sorted(assigned), path.name
        assert {"output_dir"} <= set(assigned)


def test_a_cell_is_finished_only_with_the_same_params_and_notebook_source(tmp_path):
    import yaml as _yaml

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "03_x.ipynb").write_text('{"cells": []}')
    out = tmp_path / "out"
    out.mkdir()
    cell = grid.Cell("03_x.ipynb", "lr", {"model": "lr", "output_dir": str(out)}, out)
    (out / "params.yaml").write_text(_yaml.safe_dump(cell.params))
    (out / "source.sha1").write_text(grid._source_digest(notebooks / "03_x.ipynb"))
    assert not grid.is_finished(cell, notebook_dir=notebooks)  # no metrics.json yet
    (out / "metrics.json").write_text("{}")
    assert grid.is_finished(cell, notebook_dir=notebooks)
    changed = grid.Cell("03_x.ipynb", "lr", {"model": "svm", "output_dir": str(out)}, out)
    assert not grid.is_finished(changed, notebook_dir=notebooks)
    (notebooks / "03_x.ipynb").write_text('{"cells": [1]}')  # the notebook was edited
    assert not grid.is_finished(cell, notebook_dir=notebooks)
