"""The registry of model pairs and crosscoder releases, read from ``registry.yaml`` (the one place their
facts are written), plus ``register_pair`` / ``register_release`` for your own.

A ``Release`` owns its hook point; a ``Pair`` names its release, and its default site is that release's
hook point. Nothing here loads a model or a file: ``helpers.activations.models`` and ``helpers.crosscoder.releases`` do.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGISTRY_FILE = Path(__file__).with_name("registry.yaml")
ASSETS = Path(__file__).with_name("assets")
FORMATS = ("native", "replication", "dictionary_learning")
EXPECTED_METRICS = ("l0", "fve_base", "fve_chat")
ROLES = ("base", "chat")


def model_roles(n_models: int) -> list[str]:
    """The names every result table gives the models: ``base``, ``chat`` (and ``model_2``, ... beyond two).

    The models' real names travel as metadata (``ModelPair.names``, ``DataFrame.attrs["model_names"]``). A
    one-model dictionary (a sparse autoencoder, e.g. on activation differences) calls its input ``input``.
    """
    if n_models == 1:
        return ["input"]
    return list(ROLES[:n_models]) + [f"model_{m}" for m in range(len(ROLES), n_models)]


class RegistryError(KeyError):
    """An unknown pair or release name, or a registry entry that does not make sense."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Release:
    """One crosscoder release (see ``registry.yaml`` for what each field means)."""

    name: str
    pair: str
    hook_point: str
    format: str
    repo_id: str = ""
    subfolder: str = ""
    asset: str = ""
    scale_factors: tuple[float, ...] | None = None
    description: str = ""
    rebuild: str = ""
    expected: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise RegistryError(f"release {self.name!r}: format must be one of {FORMATS}, got {self.format!r}")
        if not self.hook_point:
            raise RegistryError(f"release {self.name!r} has no hook_point")
        if bool(self.repo_id) == bool(self.asset):
            raise RegistryError(f"release {self.name!r} needs exactly one source: a Hub repo_id or a packaged asset")
        unknown = set(self.expected) - set(EXPECTED_METRICS)
        if unknown:
            raise RegistryError(f"release {self.name!r}: unknown expected metrics {sorted(unknown)}; "
                                f"known: {EXPECTED_METRICS}")

    @property
    def asset_path(self) -> Path | None:
        """The packaged folder of a release that ships with the package (``None`` for Hub releases)."""
        return ASSETS / self.asset if self.asset else None


@dataclass(frozen=True)
class Pair:
    """A named model pair: its models (base first), its default release, its data and its notebook knobs."""

    name: str
    base: str
    chat: str
    release: str | None = None
    data: dict[str, Any] = field(default_factory=lambda: {"kind": "none"})
    gated: bool = False
    min_gpu_gib: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    hook_point_override: str | None = None

    @property
    def model_names(self) -> tuple[str, str]:
        return (self.base, self.chat)

    @property
    def hook_point(self) -> str | None:
        """The pair's default site: its release's hook point (or the one given when it was registered)."""
        if self.hook_point_override is not None:
            return self.hook_point_override
        return get_release(self.release).hook_point if self.release else None

    def settings_with(self, **overrides: Any) -> dict[str, Any]:
        """The pair's notebook knobs, capped by the ``CROSSCODER_SCALE`` named in the environment (if any),
        with ``overrides`` applied; an unknown knob or scale name is an error."""
        unknown = set(overrides) - set(self.settings)
        if unknown:
            raise RegistryError(f"unknown setting(s) {sorted(unknown)} for pair {self.name!r}; "
                                f"known: {sorted(self.settings)}")
        caps = scale_caps()
        scaled = {k: min(v, caps[k]) if k in caps else v for k, v in self.settings.items()}
        return {**scaled, **overrides}


def scale_caps() -> dict[str, int]:
    """The caps of the scale named by ``CROSSCODER_SCALE`` (``registry.yaml``'s ``scales``; none when unset)."""
    name = os.environ.get("CROSSCODER_SCALE", "")
    if not name:
        return {}
    if name not in SCALES:
        raise _unknown("CROSSCODER_SCALE", name, SCALES)
    return SCALES[name]


def _release_entry(name: str, entry: dict) -> Release:
    source = entry.get("source", {})
    scale = entry.get("scale_factors")
    return Release(
        name=name, pair=entry["pair"], hook_point=entry["hook_point"], format=entry["format"],
        repo_id=source.get("repo_id", ""), subfolder=source.get("subfolder", ""), asset=source.get("asset", ""),
        scale_factors=tuple(float(s) for s in scale) if scale else None,
        description=entry.get("description", ""), rebuild=entry.get("rebuild", ""),
        expected={key: float(value) for key, value in entry.get("expected", {}).items()},
    )


def _pair_entry(name: str, entry: dict, pairs: dict[str, Pair]) -> Pair:
    if (entry.get("release") is None) == (entry.get("hook_point") is None):
        raise RegistryError(f"pair {name!r}: give exactly one of release or hook_point")
    settings = dict(entry.get("settings", {}))
    if "like" in entry:  # the knobs of an already registered pair, overridden by name
        if entry["like"] not in pairs:
            raise _unknown(f"pair (the `like` of pair {name!r})", entry["like"], pairs)
        settings = {**pairs[entry["like"]].settings, **settings}
    return Pair(name=name, base=entry["base"], chat=entry["chat"], release=entry.get("release"),
                data=dict(entry.get("data", {"kind": "none"})), gated=bool(entry.get("gated", False)),
                min_gpu_gib=float(entry.get("min_gpu_gib", 0.0)), settings=settings,
                hook_point_override=entry.get("hook_point"))


def registry_files() -> list[Path]:
    """The built-in ``registry.yaml``, then the files named by ``CROSSCODER_REGISTRY`` (separated by ``:``)."""
    extra = [Path(p) for p in os.environ.get("CROSSCODER_REGISTRY", "").split(os.pathsep) if p]
    missing = [str(p) for p in extra if not p.is_file()]
    if missing:
        raise RegistryError(f"CROSSCODER_REGISTRY names file(s) that do not exist: {missing}")
    return [REGISTRY_FILE, *extra]


def _read_registry() -> tuple[dict[str, Release], dict[str, Pair], dict[str, dict[str, int]]]:
    """Every registry file in ``registry_files()`` order: a later file's entry replaces an earlier one of the
    same name (a mirror of a release, say), and its pairs may take their knobs from an earlier pair (``like``)."""
    import yaml

    releases: dict[str, Release] = {}
    pairs: dict[str, Pair] = {}
    scales: dict[str, dict[str, int]] = {}
    for path in registry_files():
        raw = yaml.safe_load(path.read_text()) or {}
        try:
            releases.update({name: _release_entry(name, entry) for name, entry in raw.get("releases", {}).items()})
            for name, entry in raw.get("pairs", {}).items():
                pairs[name] = _pair_entry(name, entry, pairs)
        except (KeyError, TypeError, AttributeError) as error:
            raise RegistryError(f"{path}: an entry lacks a field or is malformed ({error!r}); see the field "
                                f"list at the top of {REGISTRY_FILE}") from error
        scales.update({name: {knob: int(cap) for knob, cap in caps.items()}
                       for name, caps in raw.get("scales", {}).items()})
    return releases, pairs, scales


RELEASES, PAIRS, SCALES = _read_registry()


def _unknown(kind: str, name: str, known: dict) -> RegistryError:
    close = difflib.get_close_matches(str(name), list(known), n=3, cutoff=0.4)
    hint = f" Did you mean {close}?" if close else ""
    return RegistryError(f"unknown {kind} {name!r}.{hint} Known: {sorted(known)}")


def get_release(name: str) -> Release:
    """The registered release called ``name``; unknown names get an error listing close matches."""
    if name not in RELEASES:
        raise _unknown("crosscoder release", name, RELEASES)
    return RELEASES[name]


def get_pair(name: str) -> Pair:
    """The registered pair called ``name``; unknown names get an error listing close matches."""
    if name not in PAIRS:
        raise _unknown("model pair", name, PAIRS)
    return PAIRS[name]


def register_release(release_: Release) -> Release:
    """Add (or replace) a release; its pair must be registered."""
    get_pair(release_.pair)
    RELEASES[release_.name] = release_
    return release_


def register_pair(name: str, base: str, chat: str, *, release: str | None = None, hook_point: str | None = None,
                  data: dict[str, Any] | None = None, settings: dict[str, Any] | None = None, gated: bool = False,
                  min_gpu_gib: float = 0.0, like: str = "toy") -> Pair:
    """Register your own pair so that every notebook accepts it by name (``PAIR = name``).

    Give either a ``release`` (its hook point becomes the pair's site) or a ``hook_point``. ``settings``
    start from those of the pair named by ``like`` and are overridden by name.
    """
    if (release is None) == (hook_point is None):
        raise RegistryError(f"pair {name!r}: give exactly one of release= or hook_point=")
    if release is not None:
        get_release(release)  # raises on an unknown release
    template = get_pair(like)
    registered = Pair(name=name, base=base, chat=chat, release=release, data=dict(data or {"kind": "none"}),
                      gated=gated, min_gpu_gib=min_gpu_gib, settings=template.settings_with(**(settings or {})),
                      hook_point_override=hook_point)
    PAIRS[name] = registered
    return registered
