"""Crosscoder checkpoints on disk: our format and the two public foreign formats.

Formats (a checkpoint is a folder):

- ``native``: ``cfg.json`` (a ``CrossCoderConfig``, its variant included) + ``crosscoder.safetensors``
  (``W_enc``, ``W_dec``, ``b_enc``, ``b_dec``, ``scale_factors``, ``activation_mean``, ``scaling_folded``,
  ``threshold``, ``tokens_since_fired``, and ``W_dec_tied`` for designated shared latents). A round trip
  is bit-exact. The weights file also carries the config in its metadata, with a ``save_id`` that ``cfg.json``
  repeats: the weights file is replaced in one rename, so a save killed at any moment leaves the old checkpoint
  or the new one, whole (a ``cfg.json`` from another save than its weights is recognised and the weights' own
  config used).
- ``replication``: the original Gemma-2-2B replication, ``cfg.json`` + ``cc_weights.pt`` (a pickled
  state dict with ``W_enc [2, d, F]``, ``W_dec [F, 2, d]``, ``b_enc [F]``, ``b_dec [2, d]``). Read with
  ``torch.load(weights_only=True)``, so a pickle that would run code is refused.
- ``dictionary_learning``: the dictionary_learning / science-of-finetuning crosscoders,
  ``config.json`` + ``model.safetensors`` with ``encoder.weight [L, d, F]``, ``encoder.bias [F]``,
  ``decoder.weight [L, F, d]``, ``decoder.bias [L, d]`` and, where present, ``activation_mean``,
  ``activation_std``, ``target_rms``, ``k``, ``threshold``, ``code_normalization_id``.
"""

from __future__ import annotations

import json
import pickle
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file

from .. import files
from ..dtypes import DTYPES
from ..files import FileFormatError, write_atomically, write_json
from .model import CrossCoder, CrossCoderConfig

Format = Literal["native", "replication", "dictionary_learning"]
NATIVE_CFG, NATIVE_WEIGHTS = "cfg.json", "crosscoder.safetensors"
REPLICATION_WEIGHTS = "cc_weights.pt"
DL_CFG, DL_WEIGHTS = "config.json", "model.safetensors"
CFG_METADATA = "crosscoder_cfg"  # the config, inside the native weights file's metadata
STALE_AFTER_S = 600  # a save's temporary file untouched this long belongs to a save that died
FORMAT_FILES: dict[str, tuple[str, str]] = {
    "native": (NATIVE_CFG, NATIVE_WEIGHTS),
    "replication": (NATIVE_CFG, REPLICATION_WEIGHTS),
    "dictionary_learning": (DL_CFG, DL_WEIGHTS),
}
# dictionary_learning's CodeNormalization enum values (auto(): CROSSCODER=1, SAE=2, MIXED=3, NONE=4, DECOUPLED=5)
DL_CODE_NORMALIZATIONS = {1: "crosscoder", 2: "sae", 4: "none"}


class CheckpointError(FileFormatError):
    """A checkpoint folder or file that cannot be read as a crosscoder."""


def read_json(path: Path) -> dict:
    """A checkpoint's JSON config; a ``CheckpointError`` naming the file if it is not a JSON object."""
    try:
        return files.read_json(path)
    except FileFormatError as error:
        raise CheckpointError(str(error)) from error


def require(cfg: dict, key: str, path: Path) -> Any:
    """``cfg[key]``, or a ``CheckpointError`` naming the key and the file."""
    if key not in cfg:
        raise CheckpointError(f"{path} has no required key {key!r} (keys present: {sorted(cfg)})")
    return cfg[key]


def save(crosscoder: CrossCoder, path: str | Path, extra_cfg: dict | None = None) -> Path:
    """Save ``crosscoder`` to the folder ``path`` in the native format; returns the folder.

    ``extra_cfg`` is stored under ``cfg.json``'s ``"extra"`` key (training config, metrics, ...); it must be
    JSON (no NaN), checked before anything is written. Saving over a checkpoint is safe at every moment: the
    folder then holds the old checkpoint or the new one, whole (see the module docstring).
    """
    if not isinstance(crosscoder, CrossCoder):
        raise TypeError(f"save needs a CrossCoder, got {type(crosscoder).__name__}")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"cannot save a checkpoint to {folder}: it is a file, not a folder")
    cfg = {"format": "native", **crosscoder.cfg.to_dict(), "save_id": uuid.uuid4().hex}
    if extra_cfg:
        cfg["extra"] = extra_cfg
    try:
        cfg_text = json.dumps(cfg, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"extra_cfg must be plain JSON (numbers, strings, lists, dicts; no NaN): {error}") from error
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in crosscoder.state_dict().items()}
    remove_stale_temporaries(folder)
    write_atomically(folder / NATIVE_WEIGHTS, lambda tmp: save_file(state, str(tmp), {CFG_METADATA: cfg_text}))
    write_json(folder / NATIVE_CFG, cfg)  # the readable copy; the weights already carry the config
    return folder


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporary files of saves into ``folder`` that died (untouched for ``STALE_AFTER_S``)."""
    if not folder.is_dir():
        return
    for name in (NATIVE_WEIGHTS, NATIVE_CFG):
        for temporary in folder.glob(f".{name}.*.tmp"):
            try:
                if time.time() - temporary.stat().st_mtime > STALE_AFTER_S:
                    temporary.unlink()
            except FileNotFoundError:
                pass  # another save finished with it


def detect_format(folder: Path, fmt: str | None = None) -> Format:
    """Which checkpoint format the folder holds, judged by its files; ``fmt`` names it where several are there."""
    if fmt is not None and fmt not in FORMAT_FILES:
        raise ValueError(f"format must be one of {sorted(FORMAT_FILES)}, got {fmt!r}")
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder" if folder.exists() else f"no such folder: {folder}")
    found = [name for name, (cfg_file, weights_file) in FORMAT_FILES.items()
             if (folder / weights_file).is_file() and ((folder / cfg_file).is_file() or name == "native")]
    if fmt is not None:
        if fmt not in found:
            raise CheckpointError(f"{folder} holds no {fmt} checkpoint ({list(FORMAT_FILES[fmt])}); found {found}")
        return fmt  # type: ignore[return-value]
    if len(found) > 1:
        raise CheckpointError(f"{folder} holds checkpoints in several formats {found}; name the one to load, "
                              f"e.g. load(path, format={found[0]!r})")
    if not found:
        raise CheckpointError(f"{folder} holds no crosscoder checkpoint; expected one of "
                              f"{[list(files) for files in FORMAT_FILES.values()]}, found "
                              f"{sorted(p.name for p in folder.iterdir())}")
    return found[0]  # type: ignore[return-value]


def load(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    scale_factors: list[float] | None = None,
    cfg_overrides: dict | None = None,
    format: Format | None = None,  # noqa: A002 - the word users know
) -> CrossCoder:
    """Load a crosscoder from a checkpoint folder in any supported format, in eval mode (``.train()`` to train).

    Args:
        path: the folder.
        device, dtype: where and in which dtype to put the parameters (dtype defaults to the file's).
        scale_factors: per-model normalisation factors to attach, for formats that do not store them
            (the replication's); they make the crosscoder work on raw activations.
        cfg_overrides: ``CrossCoderConfig`` fields to set (for example ``hook_point``, ``model_names``).
        format: ``native``, ``replication`` or ``dictionary_learning``; needed only where the folder holds several.
    """
    folder = Path(path)
    fmt = detect_format(folder, format)
    loader = {"native": _load_native, "replication": _load_replication, "dictionary_learning": _load_dl}[fmt]
    crosscoder = loader(folder, cfg_overrides or {})
    if scale_factors is not None:
        crosscoder.set_normalization(scale_factors)
    crosscoder.eval()  # inference: BatchTopK uses its threshold, and losses() leaves the counters alone
    return crosscoder.to(device=device, dtype=dtype) if dtype else crosscoder.to(device)


NATIVE_TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec", "scale_factors", "activation_mean", "scaling_folded",
                  "threshold", "tokens_since_fired")
WEIGHTS = ("W_enc", "W_dec", "b_enc", "b_dec")


def _config(fields_: dict, cfg_path: Path) -> CrossCoderConfig:
    """A ``CrossCoderConfig`` from a checkpoint's fields; a bad value is a ``CheckpointError`` naming the file."""
    try:
        return CrossCoderConfig.from_dict(fields_)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{cfg_path}: {error}") from error


def _expected_shapes(cfg: CrossCoderConfig) -> dict[str, tuple[int, ...]]:
    n, d, h = cfg.n_models, cfg.d_model, cfg.d_hidden
    shapes = {"W_enc": (n, d, h), "W_dec": (h, n, d), "b_enc": (h,), "b_dec": (n, d), "scale_factors": (n,),
              "activation_mean": (n, d), "scaling_folded": (), "threshold": (), "tokens_since_fired": (h,)}
    if cfg.shared_latents:
        shapes["W_dec_tied"] = (cfg.shared_latents, d)
    return shapes


def _check_shapes(cfg: CrossCoderConfig, shapes: dict[str, tuple[int, ...]], source: Path,
                  required: tuple[str, ...]) -> None:
    """Compare the file's tensor shapes with the config's before anything is allocated."""
    missing = [name for name in required if name not in shapes]
    if missing:
        raise CheckpointError(f"{source} lacks tensors {missing} (it has {sorted(shapes)})")
    for name, expected in _expected_shapes(cfg).items():
        if name in shapes and tuple(shapes[name]) != expected:
            raise CheckpointError(f"{source}: {name} has shape {tuple(shapes[name])}, but the config "
                                  f"(d_model {cfg.d_model}, d_hidden {cfg.d_hidden}, n_models {cfg.n_models}) "
                                  f"needs {expected}")


def _build(cfg: CrossCoderConfig, state: dict[str, torch.Tensor], source: Path,
           required: tuple[str, ...] = WEIGHTS) -> CrossCoder:
    """A crosscoder from ``state`` after checking shapes, finiteness and scale factors against ``cfg``."""
    _check_shapes(cfg, {name: tuple(t.shape) for name, t in state.items()}, source, required)
    for name, tensor in state.items():
        if name in _expected_shapes(cfg) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{source}: {name} holds {bad} NaN or infinite values; refusing to load it")
    if "scale_factors" in state and not (state["scale_factors"] > 0).all():
        raise CheckpointError(f"{source}: scale_factors must be positive, got {state['scale_factors'].tolist()}")
    crosscoder = CrossCoder(cfg)
    own = crosscoder.state_dict()
    unexplained = sorted(set(state) - set(own))
    if unexplained:
        raise CheckpointError(f"{source} holds tensors {unexplained} that its config does not explain (variant "
                              f"{cfg.variant!r}: shared_latents={cfg.shared_latents}, exclusive_latents="
                              f"{cfg.exclusive_latents}); is the config from another checkpoint?")
    loaded = {name: tensor.to(own[name].dtype) for name, tensor in state.items()}
    crosscoder.load_state_dict(own | loaded)
    return crosscoder


def _safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors header, without reading the tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as file:
            return {name: tuple(file.get_slice(name).get_shape()) for name in file.keys()}
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {error}") from error


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {error}") from error


def native_config(folder: Path) -> tuple[dict, Path]:
    """The native checkpoint's config and where it came from: ``cfg.json``, unless it belongs to another save
    than the weights (a save killed between its two renames), then the config the weights file carries."""
    cfg_path, weights = folder / NATIVE_CFG, folder / NATIVE_WEIGHTS
    embedded = _embedded_config(weights)
    if not cfg_path.is_file():
        if embedded is None:
            raise CheckpointError(f"{folder} has {NATIVE_WEIGHTS} but no {NATIVE_CFG}, and the weights carry no config")
        return embedded, weights
    raw = read_json(cfg_path)
    if embedded is not None and raw.get("save_id") != embedded.get("save_id"):
        return embedded, weights
    return raw, cfg_path


def _embedded_config(weights: Path) -> dict | None:
    from safetensors import safe_open

    try:
        with safe_open(str(weights), "pt") as file:
            text = (file.metadata() or {}).get(CFG_METADATA)
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"{weights} is not a readable safetensors file (truncated or corrupt?): "
                              f"{error}") from error
    if text is None:
        return None
    try:
        embedded = json.loads(text)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{weights}: the config in its metadata is not JSON: {error}") from error
    if not isinstance(embedded, dict):
        raise CheckpointError(f"{weights}: the config in its metadata is not a JSON object")
    return embedded


def _load_native(folder: Path, overrides: dict) -> CrossCoder:
    weights = folder / NATIVE_WEIGHTS
    raw, cfg_path = native_config(folder)
    for key in ("d_model", "d_hidden"):
        require(raw, key, cfg_path)
    cfg = _config({**raw, **overrides}, cfg_path)
    required = NATIVE_TENSORS + (("W_dec_tied",) if cfg.shared_latents else ())
    _check_shapes(cfg, _safetensors_shapes(weights), weights, required)
    return _build(cfg, _read_safetensors(weights), weights, required)


def read_replication_state(path: Path) -> dict[str, torch.Tensor]:
    """Read a pickled state dict with ``torch.load(weights_only=True)``; code-running pickles are refused."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refused to load {path}: it is not a plain tensor state dict (its pickle asks to run code). "
            f"Only load such a file if you trust it, and convert it yourself. Detail: {error}"
        ) from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable PyTorch file (truncated or corrupt?): {error}") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


def _load_replication(folder: Path, overrides: dict) -> CrossCoder:
    cfg_path = folder / NATIVE_CFG
    raw = read_json(cfg_path)
    enc_dtype = str(raw.get("enc_dtype", "fp32"))
    if enc_dtype not in DTYPES:
        raise CheckpointError(f"{cfg_path}: enc_dtype {enc_dtype!r} is not one of {sorted(DTYPES)}")
    state = read_replication_state(folder / REPLICATION_WEIGHTS)
    n_models = state["W_enc"].shape[0] if "W_enc" in state and state["W_enc"].ndim == 3 else 2
    cfg = _config(
        {
            "d_model": require(raw, "d_in", cfg_path),
            "d_hidden": require(raw, "dict_size", cfg_path),
            "n_models": int(n_models),
            "activation": "relu",
            "dec_init_norm": float(raw.get("dec_init_norm", 0.08)),
            "seed": int(raw.get("seed", 0)),
            "hook_point": raw.get("hook_point"),
            "dtype": "float32" if enc_dtype in ("fp32", "float32") else enc_dtype,
            **overrides,
        },
        cfg_path,
    )
    return _build(cfg, state, folder / REPLICATION_WEIGHTS)


def _load_dl(folder: Path, overrides: dict) -> CrossCoder:
    cfg_path = folder / DL_CFG
    raw = read_json(cfg_path)
    shapes = _safetensors_shapes(folder / DL_WEIGHTS)
    for name in ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"):
        if name not in shapes:
            raise CheckpointError(f"{folder / DL_WEIGHTS} lacks tensor {name!r}")
    if len(shapes["encoder.weight"]) != 3:
        raise CheckpointError(f"{folder / DL_WEIGHTS}: encoder.weight has shape {shapes['encoder.weight']}, "
                              "expected [n_models, d_model, dict_size]")
    n_layers, d_model, d_hidden = shapes["encoder.weight"]
    for key, actual in (("activation_dim", d_model), ("dict_size", d_hidden)):
        if key in raw and int(raw[key]) != actual:
            raise CheckpointError(f"{cfg_path}: {key}={raw[key]} but the weights say {actual}")
    state = _read_safetensors(folder / DL_WEIGHTS)
    code_id = int(state["code_normalization_id"]) if "code_normalization_id" in state else 1
    if code_id not in DL_CODE_NORMALIZATIONS:
        raise CheckpointError(
            f"{folder}: code_normalization_id {code_id} (MIXED=3 / DECOUPLED=5) is not supported; "
            f"supported: {DL_CODE_NORMALIZATIONS}"
        )
    k = state.get("k", raw.get("k"))
    activation = "batchtopk" if k is not None else "relu"
    cfg = _config(
        {
            "d_model": int(d_model),
            "d_hidden": int(d_hidden),
            "n_models": int(n_layers),
            "activation": activation,
            "k": int(k) if k is not None else None,
            "code_normalization": DL_CODE_NORMALIZATIONS[code_id],
            "dtype": "float32",
            **overrides,
        },
        cfg_path,
    )
    ours: dict[str, torch.Tensor] = {
        "W_enc": state["encoder.weight"].float(),
        "W_dec": state["decoder.weight"].float().permute(1, 0, 2).contiguous(),
        "b_enc": state["encoder.bias"].float(),
        "b_dec": state["decoder.bias"].float(),
    }
    if "threshold" in state and state["threshold"].numel() == 1:
        ours["threshold"] = state["threshold"].float().reshape(())
    mean, std = state.get("activation_mean"), state.get("activation_std")
    crosscoder = _build(cfg, ours, folder / DL_WEIGHTS)
    if mean is not None and std is not None and not (torch.isnan(mean).any() or torch.isnan(std).any()):
        target_rms = float(state["target_rms"]) if "target_rms" in state else 1.0
        # dictionary_learning (keep_relative_variance): x_norm = (x - mean) * target_rms / sqrt(sum_d std^2)
        scale = target_rms / torch.sqrt(std.float().pow(2).sum(-1) + 1e-8)
        crosscoder.set_normalization(scale, mean.float())
    return crosscoder
