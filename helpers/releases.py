"""Pretrained crosscoders: a registry of releases, ``from_pretrained`` and ``push_to_hub``.

A release name maps to a Hub repository, the folder inside it, the file format, the model pair, the
hook point and any normalisation factors the files do not carry. ``from_pretrained`` accepts a release
name, a Hub ``repo_id`` (optionally ``repo_id/sub/folder``) or a local folder; Hub downloads go through
``huggingface_hub``, so they work offline (``HF_HUB_OFFLINE=1``) from the Hub cache.
"""

from __future__ import annotations

import difflib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoints import FORMAT_FILES, Format, load, save, write_atomically
from .crosscoder import CrossCoder


@dataclass(frozen=True)
class Release:
    """One published crosscoder.

    Attributes:
        repo_id: Hub repository (a model repo).
        subfolder: folder inside the repository that holds the checkpoint ("" for the root).
        format: the checkpoint format (see ``helpers.checkpoints``).
        model_names: the model pair, base first.
        hook_point: TransformerLens hook name of the site.
        scale_factors: per-model normalisation factors, for formats that do not store them.
        description: one line for listings.
        local_builder: for releases built on this machine (the toy release), a function that creates
            the checkpoint folder when it is missing and returns it; ``repo_id`` is then unused.
    """

    repo_id: str
    subfolder: str
    format: Format
    model_names: tuple[str, ...]
    hook_point: str
    scale_factors: tuple[float, ...] | None = None
    description: str = ""
    local_builder: Callable[[], Path] | None = field(default=None, compare=False, repr=False)


def _toy_release_path() -> Path:
    from .recipes import toy_release_path

    return toy_release_path()


RELEASES: dict[str, Release] = {
    "gemma-2-2b-l14-replication": Release(
        repo_id="ckkissane/crosscoder-gemma-2-2b-model-diff",
        subfolder="blocks.14.hook_resid_pre",
        format="replication",
        model_names=("google/gemma-2-2b", "google/gemma-2-2b-it"),
        hook_point="blocks.14.hook_resid_pre",
        # Published normalisation constants (mean norm -> sqrt(2304)); not stored in the files.
        scale_factors=(0.2758961493232058, 0.24422852496546169),
        description="L1 crosscoder, 16,384 latents, 400M tokens of Pile + LmSys (the original replication)",
    ),
    "gemma-2-2b-l13-l1": Release(
        repo_id="science-of-finetuning/gemma-2-2b-crosscoder-l13-mu4.1e-02-lr1e-04",
        subfolder="",
        format="dictionary_learning",
        model_names=("google/gemma-2-2b", "google/gemma-2-2b-it"),
        # "layer 13" in dictionary_learning is the output of decoder layer 13.
        hook_point="blocks.13.hook_resid_post",
        description="L1 crosscoder (Minder et al. 2025), layer-13 residual stream, 73,728 latents",
    ),
    "gemma-2-2b-l13-batchtopk": Release(
        repo_id="science-of-finetuning/gemma-2-2b-L13-k100-lr1e-04-local-shuffling-CCLoss",
        subfolder="",
        format="dictionary_learning",
        model_names=("google/gemma-2-2b", "google/gemma-2-2b-it"),
        hook_point="blocks.13.hook_resid_post",
        description="BatchTopK crosscoder, k=100 (Minder et al. 2025), layer-13 residual stream, 73,728 latents",
    ),
    "toy-l3": Release(
        repo_id="",
        subfolder="",
        format="native",
        model_names=("toy:base", "toy:chat"),
        hook_point="blocks.3.hook_resid_post",
        description="L1 crosscoder, 2,048 latents, output of the toy pair's last block (ships with the package)",
        local_builder=_toy_release_path,
    ),
}


def register_release(name: str, release: Release) -> None:
    """Add (or replace) a release in the registry."""
    RELEASES[name] = release


def list_releases() -> dict[str, str]:
    """Release names and their one-line descriptions."""
    return {name: release.description for name, release in RELEASES.items()}


def _looks_like_repo_id(name: str) -> bool:
    return name.count("/") >= 1 and not name.startswith((".", "/", "~"))


def resolve_release(name: str) -> Release:
    """The registered release called ``name``; unknown names get an error listing close matches."""
    if name in RELEASES:
        return RELEASES[name]
    close = difflib.get_close_matches(name, list(RELEASES), n=3, cutoff=0.4)
    hint = f" Did you mean {close}?" if close else ""
    raise KeyError(f"unknown crosscoder release {name!r}.{hint} Known releases: {sorted(RELEASES)}")


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

    Releases carry their hook point, model pair and scale factors, so the crosscoder returned
    encodes raw activations of the two models.
    """
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        return load(local, device=device, dtype=dtype)
    if name_or_path in RELEASES or not _looks_like_repo_id(name_or_path):
        release = resolve_release(name_or_path)
        if release.local_builder is not None:
            folder = release.local_builder()
        else:
            folder = download_checkpoint(release.repo_id, release.subfolder, release.format, revision)
        overrides = {"hook_point": release.hook_point, "model_names": list(release.model_names)}
        crosscoder = load(folder, device=device, dtype=dtype, cfg_overrides=overrides)
        if release.scale_factors is not None and not crosscoder.is_folded:
            crosscoder.set_normalization(list(release.scale_factors))
        return crosscoder
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

