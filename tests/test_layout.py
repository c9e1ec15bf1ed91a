"""The package's shape: subpackages follow the pipeline, imports run one way, no file is too long, facts live in
the registry."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import helpers

PACKAGE = Path(helpers.__file__).parent
ROOT = PACKAGE.parent
# The pipeline, bottom to top: a module may import from a lower subpackage, or from an earlier (or its own) layer
# of its own subpackage. "" is the top level's leaves.
SUBPACKAGES: dict[str, list[set[str]]] = {
    "": [{"files", "dtypes", "validation", "distributed", "registry"}],
    "toy": [{"corpus"}, {"organisms", "narrow"}, {"shipped", "token_ids"}],
    "crosscoder": [{"config"}, {"sparse_step", "relu_step", "jumprelu"}, {"model"}, {"checkpoints"}, {"releases"}],
    "activations": [{"sites"}, {"data"}, {"hub_data", "models"}, {"buffer", "runs", "alignment"}, {"diff"}],
    "training": [{"gpu_plan", "run_folder", "config"}, {"trainer"}, {"recipes"}, {"launch"}],
    "analysis": [{"norms"}, {"latents"}, {"behaviour", "scaling"},
                 {"figures", "detection", "evals", "steering", "interventions"}, {"dashboards", "comparison"},
                 {"aligned_dashboards"}],
    "methods": [{"token_divergence", "difference_lens", "patchscope", "logit_mining"}, {"diff_sae", "difference_pca"},
                {"scoreboard"}, {"reading"}],
    "builders": [{"toy_corpus", "toy_pair"}, {"rehearsal_gemma", "rehearsal_llama", "narrow"}, {"narrow_readers"},
                 {"rehearsal", "cross_arch"}],
    "tutorial": [{"notebook", "exercises", "live_view"}],
}
RANK = {(f"{package}.{module}" if package else module): (order, layer)
        for order, (package, layers) in enumerate(SUBPACKAGES.items())
        for layer, modules in enumerate(layers) for module in modules}
# The subpackages a notebook may import from beside ``helpers`` itself.
NOTEBOOK_SUBPACKAGES = {"tutorial", "analysis", "methods", "training", "toy"}


def module_name(path: Path) -> str:
    """``helpers/analysis/evals.py`` -> ``analysis.evals``."""
    return ".".join(path.relative_to(PACKAGE).with_suffix("").parts)


def package_modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if p.name not in {"__init__.py", "__main__.py"}]


def helpers_imports(path: Path) -> set[str]:
    """The ``helpers`` modules a file imports (relative and absolute, at any depth), as ``package.module``."""
    own_package = module_name(path).split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = own_package[: len(own_package) - (node.level - 1)]
        elif node.module and node.module.split(".")[0] == "helpers":
            base = []
        else:
            continue
        module = (node.module or "").split(".")
        module = module[1:] if not node.level else module
        stem = [*base, *[part for part in module if part]]
        for alias in node.names:
            candidate = ".".join([*stem, alias.name])
            found.add(candidate if candidate in RANK else ".".join(stem))
    return found - {"", "__version__"}


def test_every_module_has_a_place():
    modules = {module_name(p) for p in package_modules()}
    assert modules == set(RANK), f"unplaced: {modules - set(RANK)}, gone: {set(RANK) - modules}"


def test_at_most_ten_top_level_modules():
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 10, top


def test_no_import_points_backwards():
    backwards = []
    for path in package_modules():
        own = module_name(path)
        for imported in helpers_imports(path):
            assert imported in RANK, f"{own} imports {imported}, which is not a module of the layout"
            (own_order, own_layer), (their_order, their_layer) = RANK[own], RANK[imported]
            if their_order > own_order or (their_order == own_order and their_layer > own_layer):
                backwards.append(f"{own} -> {imported}")
    assert not backwards, f"imports against the pipeline: {backwards}"


def test_the_import_reader_resolves_every_form():
    """The reader of imports resolves every form the package uses (so the rule above cannot pass by blindness)."""
    probe = PACKAGE / "crosscoder" / "model.py"
    assert {"crosscoder.config", "crosscoder.sparse_step", "distributed"} <= helpers_imports(probe)
    assert "toy.organisms" in helpers_imports(PACKAGE / "activations" / "data.py")
    assert "files" in helpers_imports(PACKAGE / "crosscoder" / "checkpoints.py")


def test_subpackages_document_themselves():
    for package in SUBPACKAGES:
        if package:
            init = PACKAGE / package / "__init__.py"
            assert init.is_file() and ast.get_docstring(ast.parse(init.read_text())), package


def test_no_file_over_400_lines():
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_hook_points_are_written_only_in_the_registry():
    """No module holds a concrete site as a value (examples inside messages and docstrings aside)."""
    site = re.compile(r"blocks\.\d+\.hook_\w+")
    offenders = [
        f"{module_name(path)}: {node.value}"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and site.fullmatch(node.value)
    ]
    assert not offenders, f"hook points written outside registry.yaml: {offenders}"


def test_public_api_resolves():
    names = {module_name(p).split(".")[0] for p in PACKAGE.rglob("*.py")}
    clashes = set(helpers.__all__) & names
    assert not clashes, f"an export named like a subpackage or module is shadowed once it is imported: {clashes}"
    for name in helpers.__all__:
        assert getattr(helpers, name) is not None, name


def test_notebooks_import_from_helpers_and_a_few_subpackages():
    used = set()
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] == "code":
                used |= set(re.findall(r"\bhelpers\.(\w+)", "".join(cell["source"])))
    assert used <= NOTEBOOK_SUBPACKAGES | set(helpers.__all__), used - NOTEBOOK_SUBPACKAGES - set(helpers.__all__)
