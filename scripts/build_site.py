"""Assemble the site's sources from the executed tutorials, then build it with mkdocs (see scripts/site.sh).

outputs/notebooks/NN_*.ipynb (executed, with outputs) -> outputs/site-src/: the notebooks, an index page
(the README's introduction and a table of the tutorials), the design notes and the dashboards page that
notebook 05 saved. Refuses to build from a missing or unexecuted notebook: the site shows what ran.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXECUTED, SOURCES = ROOT / "outputs" / "notebooks", ROOT / "outputs" / "site-src"
DASHBOARDS = ROOT / "notebooks" / "dashboards"


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


def index_page(notebooks: list[Path]) -> str:
    readme = (ROOT / "README.md").read_text()
    introduction = readme.split("\n## ", 1)[0]
    rows = "\n".join(f"| [{title_of(json.loads(p.read_text()))}]({p.name}) |" for p in notebooks)
    dashboards = ("\nThe latent dashboards that notebook 05 builds: [open the page](dashboards/latent_dashboards.html)."
                  if (DASHBOARDS / "latent_dashboards.html").is_file() else "")
    return (f"{introduction}\n\nEvery page below is a notebook as it ran on the toy pair, on a CPU, with its "
            f"figures (interactive) and tables. Open any of them in Colab from its badge to run it yourself.\n\n"
            f"| tutorial |\n|---|\n{rows}\n{dashboards}\n\nDesign notes: [the package's design](design.md).\n")


def main() -> None:
    notebooks = executed_notebooks()
    shutil.rmtree(SOURCES, ignore_errors=True)
    SOURCES.mkdir(parents=True)
    for path in notebooks:
        shutil.copy(path, SOURCES / path.name)
    (SOURCES / "index.md").write_text(index_page(notebooks))
    shutil.copy(ROOT / "docs" / "DESIGN.md", SOURCES / "design.md")
    if (DASHBOARDS / "latent_dashboards.html").is_file():
        shutil.copytree(DASHBOARDS, SOURCES / "dashboards")
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--clean", "--config-file", str(ROOT / "mkdocs.yml")],
                   cwd=ROOT, check=True)
    print(f"site: {ROOT / 'outputs' / 'site' / 'index.html'}")


if __name__ == "__main__":
    main()
