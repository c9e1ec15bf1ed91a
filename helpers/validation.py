"""Argument checks shared by configs, buffers and sources: each error names the value and what was expected."""

from __future__ import annotations

import math
from typing import Any


def positive_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` if it is an integer (not a bool) in ``[minimum, maximum]``; a ``ValueError`` naming ``name``
    otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum is not None
                                                                                    and value > maximum):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return value


def optional_positive_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int | None:
    return None if value is None else positive_int(name, value, minimum, maximum)


def real(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
         high_open: bool = False) -> float:
    """``value`` as a float if it is a finite number in the range; a ``ValueError`` naming ``name`` otherwise.

    ``low_open`` / ``high_open`` exclude the ends (``real("lr", lr, 0, low_open=True)`` means lr > 0).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return float(value)


def activations(name: str, x: Any, n_models: int, d_model: int, batched: bool = True) -> None:
    """``x`` must be a floating-point tensor ``[batch, n_models, d_model]`` (``[..., n_models, d_model]`` unless
    ``batched``); a ``ValueError`` naming ``name`` and the shape otherwise."""
    import torch

    lead = "batch" if batched else "..."
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or (batched and x.ndim != 3) or x.shape[-2:] != (n_models,
                                                                                                       d_model):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must have shape [{lead}, {n_models}, {d_model}], got {shape}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def instance(name: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    """``value`` if it is a ``kind``; a ``TypeError`` naming ``name``, the expected and the given type otherwise."""
    if not isinstance(value, kind):
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise TypeError(f"{name} must be a {expected}, got {type(value).__name__}")
    return value


def non_empty(name: str, values: Any) -> list:
    """``values`` as a list if there is at least one; a ``ValueError`` naming ``name`` otherwise."""
    if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a list, got {type(values).__name__}")
    values = list(values)
    if not values:
        raise ValueError(f"{name} must not be empty")
    return values


def non_empty_strings(name: str, values: Any) -> list[str]:
    """``values`` as a list of at least one non-empty string; a ``TypeError`` or ``ValueError`` naming ``name``
    and the first bad entry otherwise."""
    values = non_empty(name, values)
    for index, value in enumerate(values):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be non-empty strings; entry {index} is {value!r:.60}")
    return values


def one_of(name: str, value: Any, choices: tuple) -> Any:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value
