"""The notebooks read their parameters through ``settings`` only (one validated place), and carry no
outputs in the repository."""

import ast
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_reads_its_parameters_through_settings(path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    params = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    declared = {t.id for node in ast.parse("".join(params["source"])).body for t in getattr(node, "targets", [])}
    assert declared, path.name
    bare = []
    for cell in cells[cells.index(params) + 1 :]:
        source = "".join(cell["source"])
        if "Settings.for_notebook(globals())" in source:
            continue  # the one cell that reads them
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in declared:
                bare.append(f"{node.id} (line {node.lineno})")
    assert bare == [], f"{path.name} reads parameters outside settings: {bare}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_source_notebooks_carry_no_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    assert not [c for c in cells if c.get("outputs") or c.get("execution_count")], path.name
