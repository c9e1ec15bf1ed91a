"""The package's shape: imports follow the pipeline, no file is too long, facts live in the registry."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import helpers

PACKAGE = Path(helpers.__file__).parent
# The pipeline, earliest first: a module may import only from modules in earlier (or its own) layers.
LAYERS: list[set[str]] = [
    {"files", "dtypes", "validation", "distributed", "gpu_plan", "registry", "toy_corpus"},
    {"organisms"},
    {"data"},
    {"behaviour"},
    {"toy"},
    {"models"},
    {"sites"},
    {"buffer"},
    {"crosscoder_config"},
    {"sparse_step"},
    {"crosscoder"},
    {"checkpoints"},
    {"run_folder"},
    {"training"},
    {"releases"},
    {"diff"},
    {"latents"},
    {"analysis", "scaling", "detection", "evals", "figures", "steering"},
    {"dashboards", "exercises", "live_view", "token_divergence", "difference_lens"},
    {"recipes"},
    {"rehearsal_gemma", "rehearsal_llama"},
    {"comparison", "launch", "rehearsal", "diff_sae", "scoreboard"},
    {"notebook"},
]
LAYER_OF = {module: index for index, layer in enumerate(LAYERS) for module in layer}


def helpers_imports(path: Path) -> set[str]:
    """The ``helpers`` modules a file imports (relative ``from .x import`` and absolute), at any depth."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("helpers."):
                found.add(node.module.split(".")[1])
    return found - {"__init__"}


def test_every_module_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert modules == set(LAYER_OF), f"unplaced: {modules - set(LAYER_OF)}, gone: {set(LAYER_OF) - modules}"


def test_no_import_points_backwards():
    backwards = []
    for path in PACKAGE.glob("*.py"):
        if path.stem == "__init__":
            continue
        for imported in helpers_imports(path):
            if imported != "__version__" and LAYER_OF[imported] > LAYER_OF[path.stem]:
                backwards.append(f"{path.stem} -> {imported}")
    assert not backwards, f"imports against the pipeline: {backwards}"


def test_no_file_over_400_lines():
    long = {p.name: n for p in PACKAGE.glob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_hook_points_are_written_only_in_the_registry():
    """No module holds a concrete site as a value (examples inside messages and docstrings aside)."""
    site = re.compile(r"blocks\.\d+\.hook_\w+")
    offenders = [
        f"{path.name}: {node.value}"
        for path in PACKAGE.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and site.fullmatch(node.value)
    ]
    assert not offenders, f"hook points written outside registry.yaml: {offenders}"


def test_public_api_resolves():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    clashes = set(helpers.__all__) & modules
    assert not clashes, f"an export named like a submodule is shadowed once that module is imported: {clashes}"
    for name in helpers.__all__:
        assert getattr(helpers, name) is not None, name
