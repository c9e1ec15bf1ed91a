"""The front door and the site: a short README, every page in the site's navigation, the toy pair's dashboards,
and the README's figure true to the release it draws."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch
import yaml

from helpers import from_pretrained, relative_norms

ROOT = Path(__file__).resolve().parents[1]


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nav_entries(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [entry for value in node.values() for entry in nav_entries(value)]
    return [entry for item in node for entry in nav_entries(item)]


def test_readme_is_a_front_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme) <= 10_000, len(readme)
    for link in re.findall(r"\]\(((?:docs|notebooks)/[^)#]+)\)", readme):
        assert (ROOT / link).is_file(), f"README links a missing file: {link}"


def test_every_page_and_notebook_is_in_the_site_navigation():
    nav = set(nav_entries(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))
    pages = {"design.md" if p.name == "DESIGN.md" else p.name for p in (ROOT / "docs").glob("*.md")}
    notebooks = {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert pages | notebooks | {"index.md"} == nav, (pages | notebooks | {"index.md"}) ^ nav


def test_the_site_publishes_the_toy_pairs_dashboards(tmp_path):
    build_site = script("build_site")
    assert build_site.DASHBOARDS == ROOT / "outputs" / "notebooks" / "toy" / "dashboards" / "latent_dashboards.html"
    toy, other, untitled = tmp_path / "toy.html", tmp_path / "other.html", tmp_path / "none.html"
    toy.write_text("<html><head><title>toy: crosscoder latent dashboards</title></head></html>")
    other.write_text("<html><head><title>rehearsal-llama: crosscoder latent dashboards</title></head></html>")
    untitled.write_text("<html></html>")
    build_site.check_dashboards_page(toy)
    for page in (other, untitled):
        with pytest.raises(ValueError, match="not the toy pair's dashboards page"):
            build_site.check_dashboards_page(page)


def test_readme_figure_matches_the_release():
    svg = (ROOT / "docs" / "figures" / "relative_norms.svg").read_text()
    release = re.search(r'data-release="([^"]+)"', svg).group(1)
    drawn = [int(count) for count in re.findall(r'data-count="(\d+)"', svg)]
    norms = relative_norms(from_pretrained(release))
    edges = torch.linspace(0, 1, len(drawn) + 1)
    expected = [int(((norms >= low) & ((norms < high) if high < 1 else (norms <= high))).sum())
                for low, high in zip(edges[:-1], edges[1:])]
    assert drawn == expected
    assert sum(drawn) == from_pretrained(release).cfg.d_hidden - int(norms.isnan().sum())
