"""The package's folders are the study's stages: a stage imports only the stages before it and the
shared utilities (README, "Architecture"), at module level or inside a function."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mattlib"
STAGES = ["data", "features", "models", "training", "evaluation", "study", "views", "runner", "pipeline", "cli"]
UTILITIES = {"paths", "locks", "processes", "provenance", "executors", "registry", "devices", "atomic", "errors"}


def imported_parts(path: Path) -> set[str]:
    """The top-level parts of ``mattlib`` that ``path`` imports (``from mattlib import x`` names x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "mattlib" else [f"mattlib.{a.name}" for a in node.names]
        found |= {n.split(".")[1] for n in names if n.startswith("mattlib.")}
    return found


def test_every_stage_imports_only_the_stages_before_it():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if part in UTILITIES or part == "__init__":
            assert not imported_parts(path) - UTILITIES, f"{path}: a utility imports a stage"
            continue
        allowed = set(STAGES[: STAGES.index(part) + 1]) | UTILITIES
        upward += [f"{path.relative_to(PACKAGE)} imports {p}" for p in sorted(imported_parts(path) - allowed)]
    assert upward == []


def test_the_stage_list_names_every_folder():
    parts = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert parts - {"__init__"} == set(STAGES) | UTILITIES


def test_every_error_mattlib_raises_on_purpose_derives_from_one_base():
    import importlib
    import inspect

    from mattlib.errors import MattError

    modules = [
        ".".join(("mattlib", *p.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        for p in sorted(PACKAGE.rglob("*.py"))
    ]
    own = {
        (name, obj)
        for m in modules
        for name, obj in vars(importlib.import_module(m)).items()
        if inspect.isclass(obj)
        and issubclass(obj, Exception)
        and obj.__module__.startswith("mattlib")
        and not name.startswith("_")  # private control flow (a cell that was never started)
    }
    assert len(own) >= 12 and all(issubclass(obj, MattError) for _, obj in own), sorted(
        name for name, obj in own if not issubclass(obj, MattError)
    )
