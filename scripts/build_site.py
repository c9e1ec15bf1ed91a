"""Assemble the site's sources from the executed tutorials and the docs, then build it with mkdocs (scripts/site.sh).

outputs/notebooks/toy/NN_*.ipynb (executed under nbmake, with outputs) -> outputs/site-src/: the notebooks, an index
page (the README's introduction and a table of the tutorials), the pages of docs/ (results, guides, design) with
their figures, and the dashboards page that notebook 05 saved on the toy pair. Refuses to build from a missing or
unexecuted notebook, or from a dashboards page of another pair: the site shows what ran on the toy pair.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIR = "toy"
EXECUTED, SOURCES = ROOT / "outputs" / "notebooks" / PAIR, ROOT / "outputs" / "site-src"
DASHBOARDS = EXECUTED / "dashboards" / "latent_dashboards.html"
DOCS = ROOT / "docs"


def title_of(notebook: dict) -> str:
    """The ``# NN · Title`` line of a notebook's first cell."""
    found = re.search(r"^# (\d\d · .+)$", "".join(notebook["cells"][0]["source"]), re.MULTILINE)
    return found.group(1) if found else "untitled"


def executed_notebooks() -> list[Path]:
    """Every tutorial's executed copy; exits with a message if one is missing or has no outputs."""
    tutorials = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    missing = [p.name for p in tutorials if not (EXECUTED / p.name).is_file()]
    if missing:
        sys.exit(f"no executed copy of {missing} in {EXECUTED}: run the tests (.venv/bin/python -m pytest) or "
                 "bash scripts/tutorials.sh first")
    for path in tutorials:
        cells = json.loads((EXECUTED / path.name).read_text())["cells"]
        if not any(c.get("outputs") for c in cells if c["cell_type"] == "code"):
            sys.exit(f"{EXECUTED / path.name} has no outputs: it was not executed")
    return [EXECUTED / p.name for p in tutorials]


def check_dashboards_page(path: Path, pair: str = PAIR) -> None:
    """Raise ``ValueError`` unless ``path`` is the dashboards page notebook 05 saved for ``pair`` (its title)."""
    found = re.search(r"<title>([^<]*)</title>", path.read_text(encoding="utf-8"))
    if not found or not found.group(1).startswith(f"{pair}:"):
        raise ValueError(f"{path} is not the {pair} pair's dashboards page (title: "
                         f"{found.group(1) if found else 'none'!r})")


def index_page(notebooks: list[Path]) -> str:
    readme = (ROOT / "README.md").read_text()
    introduction = readme.split("\n## ", 1)[0].replace("](docs/", "](")
    rows = "\n".join(f"| [{title_of(json.loads(p.read_text()))}]({p.name}) |" for p in notebooks)
    return (f"{introduction}\n\nEvery tutorial below is a notebook as it ran on the toy pair, on a CPU, with its "
            f"figures (interactive) and tables. Open any of them in Colab from its badge to run it yourself.\n\n"
            f"| tutorial |\n|---|\n{rows}\n\n"
            f"The latent dashboards that notebook 05 built: [open the page](dashboards/latent_dashboards.html).\n\n"
            f"Read on: [results on the toy pair](results.md), [your own pair](your_own_pair.md), "
            f"[the Gemma-2-2B path](gemma_rehearsal.md), [training at scale](training_at_scale.md), "
            f"[benchmarks](benchmarks.md), [the package](package.md), [the design](design.md).\n")


def main() -> None:
    notebooks = executed_notebooks()
    if not DASHBOARDS.is_file():
        sys.exit(f"no dashboards page at {DASHBOARDS}: notebook 05 did not run on the {PAIR} pair")
    check_dashboards_page(DASHBOARDS)
    shutil.rmtree(SOURCES, ignore_errors=True)
    SOURCES.mkdir(parents=True)
    for path in notebooks:
        shutil.copy(path, SOURCES / path.name)
    (SOURCES / "index.md").write_text(index_page(notebooks))
    for page in DOCS.glob("*.md"):
        shutil.copy(page, SOURCES / ("design.md" if page.name == "DESIGN.md" else page.name))
    shutil.copytree(DOCS / "figures", SOURCES / "figures")
    shutil.copytree(DASHBOARDS.parent, SOURCES / "dashboards")
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--clean", "--config-file", str(ROOT / "mkdocs.yml")],
                   cwd=ROOT, check=True)
    print(f"site: {ROOT / 'outputs' / 'site' / 'index.html'}")


if __name__ == "__main__":
    main()
