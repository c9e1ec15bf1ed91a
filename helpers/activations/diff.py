"""Where a crosscoder meets a model pair: ``load_diff`` and the compatibility check every consumer runs.

``load_diff("toy")`` loads a registered pair's release and the pair at the release's hook point;
``load_diff("gemma-2-2b", release="gemma-2-2b-l13-batchtopk")`` another release of the pair;
``load_diff(crosscoder, pair)`` checks a crosscoder you have against a pair you loaded. A crosscoder
and a pair at different hook points never meet silently: ``check_compatible`` raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..crosscoder.model import CrossCoder
from ..crosscoder.releases import load_release
from ..registry import Pair, RegistryError, Release, get_pair, get_release
from ..validation import instance
from .models import ModelPair, load_model_pair


class HookPointMismatchError(ValueError):
    """A crosscoder and a model pair that read different sites (or have different shapes)."""


def check_compatible(crosscoder: CrossCoder, pair: ModelPair) -> str:
    """Raise ``HookPointMismatchError`` unless ``crosscoder`` reads ``pair`` at the pair's hook point with
    the pair's width and number of models; returns that hook point."""
    instance("crosscoder", crosscoder, CrossCoder)
    instance("pair", pair, ModelPair)
    hook_point = crosscoder.cfg.hook_point
    if not hook_point:
        raise HookPointMismatchError(
            "this crosscoder records no hook point, so it cannot be matched to a pair; set "
            f"crosscoder.cfg.hook_point (the pair is loaded at {pair.hook_point!r})")
    if hook_point != pair.hook_point:
        raise HookPointMismatchError(
            f"the crosscoder reads {hook_point!r} but the pair {pair.name!r} was loaded at {pair.hook_point!r}; "
            f"load the pair at the crosscoder's site: load_diff(crosscoder, {pair.name!r}) or "
            f"load_model_pair(..., hook_point={hook_point!r})")
    if crosscoder.cfg.d_model != pair.d_model or crosscoder.cfg.n_models != len(pair.models):
        raise HookPointMismatchError(
            f"the crosscoder takes {crosscoder.cfg.n_models} models of width {crosscoder.cfg.d_model}, the pair "
            f"{pair.name!r} has {len(pair.models)} of width {pair.d_model}")
    return hook_point


@dataclass
class Diff:
    """A crosscoder and the pair it was trained on, loaded at its hook point, with the pair's notebook knobs."""

    crosscoder: CrossCoder
    pair: ModelPair
    release: Release | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def hook_point(self) -> str:
        return self.pair.hook_point

    @property
    def name(self) -> str:
        return self.pair.name


def load_diff(what: str | CrossCoder, pair: str | ModelPair | None = None, *, release: str | None = None,
              device: str | torch.device = "cpu", settings: dict[str, Any] | None = None,
              model_dtype: torch.dtype = torch.float32) -> Diff:
    """One call to start a diff.

    Args:
        what: a registered pair name (its release is loaded, or ``release``), or a ``CrossCoder``.
        pair: with a crosscoder, the pair: a loaded ``ModelPair`` (checked) or a registered name (loaded at
            the crosscoder's hook point).
        release: with a pair name, a release other than the pair's default (it must belong to the pair).
        device: where to put the models and the crosscoder.
        settings: overrides of the pair's notebook knobs, by name.
        model_dtype: the models' dtype (bfloat16 halves their memory on a GPU; the crosscoder stays float32).
    """
    if isinstance(what, CrossCoder):
        if pair is None or release is not None:
            raise TypeError("load_diff(crosscoder, pair) takes a pair (a ModelPair or a registered name), no release")
        crosscoder, chosen = what.to(device), None
        if isinstance(pair, str):
            pair = load_model_pair(pair, hook_point=crosscoder.cfg.hook_point, device=device, dtype=model_dtype)
    else:
        if pair is not None:
            raise TypeError("load_diff(pair_name) takes no second pair; use release= to pick another release")
        profile: Pair = get_pair(what)
        if not (release or profile.release):
            raise RegistryError(f"pair {profile.name!r} has no release; pass release=..., or train a crosscoder "
                                "(notebook 02) and call load_diff(crosscoder, pair)")
        chosen = get_release(release or profile.release)
        if chosen.pair != profile.name:
            raise HookPointMismatchError(
                f"release {chosen.name!r} belongs to pair {chosen.pair!r}, not {profile.name!r}")
        crosscoder = load_release(chosen, device=device)
        pair = load_model_pair(profile.name, hook_point=chosen.hook_point, device=device, dtype=model_dtype)
    check_compatible(crosscoder, pair)
    profile_settings = pair.profile.settings_with(**(settings or {})) if pair.profile else dict(settings or {})
    return Diff(crosscoder=crosscoder.eval(), pair=pair, release=chosen, settings=profile_settings)
