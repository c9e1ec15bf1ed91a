"""Pretrained crosscoders: ``from_pretrained`` and ``push_to_hub`` (the releases themselves are data, in
``registry.yaml``).

``from_pretrained`` accepts a release name, a Hub ``repo_id`` (optionally ``repo_id/sub/folder``) or a
local folder. Hub downloads go through ``huggingface_hub``, so they work offline (``HF_HUB_OFFLINE=1``)
from the Hub cache. A release that ships with the package is never built behind your back: if its
asset is missing, the error names the command that rebuilds it.
"""

from __future__ import annotations

import difflib
import json
import tempfile
from pathlib import Path

import torch

from ..files import MissingAssetError, write_atomically
from ..registry import RELEASES, Release, get_pair, get_release
from .checkpoints import FORMAT_FILES, CheckpointError, Format, load, save
from .model import CrossCoder


def list_releases() -> dict[str, str]:
    """Release names and their one-line descriptions."""
    return {name: release.description for name, release in RELEASES.items()}


def _looks_like_repo_id(name: str) -> bool:
    return name.count("/") >= 1 and not name.startswith((".", "/", "~"))


def _looks_local(name: str) -> bool:
    """A path meant for this disk: absolute or relative by its spelling, or inside a folder that exists here
    (``runs/my-crosscodr`` with a ``runs/`` folder), where a Hub repo id would not be looked for."""
    if name.startswith((".", "/", "~")) or "\\" in name:
        return True
    first = Path(name).parts[0] if Path(name).parts else ""
    return "/" in name and Path(first).is_dir() and name not in RELEASES


def training_record(release: Release | str) -> dict:
    """What a packaged release recorded about its training (``cfg.json``'s ``extra.final_metrics``: final L0, FVE per
    model, dead fraction, seconds, ...); empty for a release that recorded nothing."""
    release = get_release(release) if isinstance(release, str) else release
    if not isinstance(release, Release):
        raise TypeError(f"release must be a Release or a release's name, got {type(release).__name__}")
    if release.format != "native":  # other formats record no training; nothing to download
        return {}
    cfg = json.loads((release_folder(release) / FORMAT_FILES["native"][0]).read_text())
    return dict(cfg.get("extra", {}).get("final_metrics", {}))


def release_folder(release: Release | str, revision: str | None = None) -> Path:
    """The local folder of a release's checkpoint (a ``Release`` or its name): its packaged asset, or a Hub
    download (cache first)."""
    release = get_release(release) if isinstance(release, str) else release
    if not isinstance(release, Release):
        raise TypeError(f"release must be a Release or a release's name, got {type(release).__name__}")
    if release.asset_path is None:
        return download_checkpoint(release.repo_id, release.subfolder, release.format, revision)  # type: ignore[arg-type]
    weights = release.asset_path / FORMAT_FILES[release.format][1]
    if not weights.is_file():
        raise MissingAssetError(f"release {release.name!r} ships as {release.asset_path}, but {weights.name} is "
                                f"missing there. Rebuild it with `{release.rebuild}`.")
    return release.asset_path


def load_release(release: Release | str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 revision: str | None = None) -> CrossCoder:
    """A registered release, ready for raw activations: its hook point, model order and scale factors set.

    A checkpoint whose own config names another hook point than the registry is refused.
    """
    release = get_release(release) if isinstance(release, str) else release
    folder = release_folder(release, revision)
    crosscoder = load(folder, device=device, dtype=dtype)
    recorded = crosscoder.cfg.hook_point
    if recorded is not None and recorded != release.hook_point:
        raise CheckpointError(f"{folder} records hook point {recorded!r}, but the registry says release "
                              f"{release.name!r} sits at {release.hook_point!r}; fix one of them.")
    crosscoder.cfg.hook_point = release.hook_point
    crosscoder.cfg.model_names = list(get_pair(release.pair).model_names)
    if release.scale_factors is not None and not crosscoder.is_folded:
        crosscoder.set_normalization(list(release.scale_factors))
    return crosscoder


def download_checkpoint(
    repo_id: str, subfolder: str = "", fmt: Format | None = None, revision: str | None = None
) -> Path:
    """Fetch a checkpoint folder from the Hub (or the local Hub cache) and return its local path."""
    from huggingface_hub import hf_hub_download

    candidates = [FORMAT_FILES[fmt]] if fmt else list(FORMAT_FILES.values())
    errors = []
    for cfg_file, weights_file in candidates:
        try:
            paths = [
                hf_hub_download(repo_id, filename, subfolder=subfolder or None, revision=revision)
                for filename in (cfg_file, weights_file)
            ]
            return Path(paths[1]).parent
        except Exception as error:  # noqa: BLE001 - try the next layout, report all at the end
            errors.append(f"{cfg_file} + {weights_file}: {type(error).__name__}: {error}")
    raise FileNotFoundError(
        f"no crosscoder checkpoint found in {repo_id!r} (subfolder {subfolder!r}). Tried:\n  " + "\n  ".join(errors)
    )


def from_pretrained(
    name_or_path: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    revision: str | None = None,
) -> CrossCoder:
    """Load a crosscoder by release name, Hub repo id (``org/repo`` or ``org/repo/sub/folder``) or local folder.

    Releases carry their hook point, model pair and scale factors, so the crosscoder returned encodes
    raw activations of the two models.
    """
    if not isinstance(name_or_path, str | Path) or not str(name_or_path).strip():
        raise TypeError(f"from_pretrained needs a release name, a Hub repo id or a folder, got {name_or_path!r}")
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return load(local, device=device, dtype=dtype)
    name_or_path = str(name_or_path)
    if local.exists():
        raise CheckpointError(f"{local} is a file; a crosscoder checkpoint is a folder (cfg.json + weights)")
    if _looks_local(name_or_path):
        near = difflib.get_close_matches(local.name, [p.name for p in local.parent.iterdir()] if
                                         local.parent.is_dir() else [], n=3)
        raise FileNotFoundError(f"no such folder: {local}" + (f" (in {local.parent}: did you mean {near}?)"
                                                                   if near else ""))
    if name_or_path in RELEASES or not _looks_like_repo_id(name_or_path):
        return load_release(name_or_path, device, dtype, revision)
    parts = name_or_path.split("/")
    folder = download_checkpoint("/".join(parts[:2]), "/".join(parts[2:]), revision=revision)
    return load(folder, device=device, dtype=dtype)


def model_card(crosscoder: CrossCoder, recipe: dict | None = None, metrics: dict | None = None,
               taxonomy: dict | None = None) -> str:
    """A Hub model card (README.md) describing the crosscoder, how it was trained and how it scores."""
    cfg = crosscoder.cfg
    lines = [
        "---",
        "library_name: crosscoder-helpers",
        "tags: [crosscoder, model-diffing, interpretability, sparse-dictionary]",
        "---",
        f"# Crosscoder: {' vs '.join(cfg.model_names) or f'{cfg.n_models} models'}",
        "",
        f"A sparse crosscoder with {cfg.d_hidden:,} latents on `{cfg.hook_point}` (d_model {cfg.d_model}), "
        f"sparsity `{cfg.activation}`" + (f" with k = {cfg.k}" if cfg.k else "") + ".",
        "Model order: index 0 is the base model, index 1 the fine-tuned model.",
        "",
        "Files: `cfg.json` (architecture) and `crosscoder.safetensors` (weights `W_enc [n_models, d_model, d_hidden]`, "
        "`W_dec [d_hidden, n_models, d_model]`, `b_enc`, `b_dec`, and the per-model normalisation "
        f"`scale_factors` = {[round(float(s), 6) for s in crosscoder.scale_factors]}, applied by the loader so the "
        "crosscoder takes raw activations).",
        "",
        "```python",
        "from helpers import from_pretrained",
        "crosscoder = from_pretrained('<this repo id>')",
        "```",
    ]
    for title, table in (("Training recipe", recipe), ("Validation metrics", metrics), ("Latent taxonomy", taxonomy)):
        if table:
            lines += ["", f"## {title}", "", "| key | value |", "|---|---|"]
            lines += [f"| {key} | {value} |" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def push_to_hub(
    crosscoder: CrossCoder,
    repo_id: str,
    recipe: dict | None = None,
    metrics: dict | None = None,
    taxonomy: dict | None = None,
    token: str | None = None,
    private: bool = False,
) -> str:
    """Upload the crosscoder (native format) with a model card to the Hub; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory() as tmp:
        folder = save(crosscoder, Path(tmp), extra_cfg={"recipe": recipe or {}, "metrics": metrics or {}})
        card = model_card(crosscoder, recipe, metrics, taxonomy)
        write_atomically(folder / "README.md", lambda path: path.write_text(card))
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                                 commit_message="Upload crosscoder")
    return str(getattr(info, "commit_url", info))

