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
    tokenizers: str = "shared"

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


def _unknown(kind: str, name: str, known: dict) -> RegistryError:
    close = difflib.get_close_matches(str(name), list(known), n=3, cutoff=0.4)
    hint = f" Did you mean {close}?" if close else ""
    return RegistryError(f"unknown {kind} {name!r}.{hint} Known: {sorted(known)}")


# The fields an entry may hold, and what each must be. Every error names the file, the entry and the key.
RELEASE_FIELDS = {"pair": str, "hook_point": str, "format": str, "source": dict, "scale_factors": list,
                  "description": str, "rebuild": str, "expected": dict}
PAIR_FIELDS = {"base": str, "chat": str, "release": str, "hook_point": str, "like": str, "data": dict, "gated": bool,
               "min_gpu_gib": (int, float), "settings": dict, "tokenizers": str}
# shared: one tokenizer, the same tokens for both models; separate: each model its own, activations paired where the
# tokenizations line up (helpers.activations.alignment)
TOKENIZER_MODES = ("shared", "separate")
SOURCE_FIELDS = ("repo_id", "subfolder", "asset")
SECTIONS = ("releases", "pairs", "scales")


class _Entry:
    """One registry entry being read: errors name its file, its kind and name, and the key."""

    def __init__(self, path: Path, kind: str, name: str, entry: Any, fields_: dict[str, Any]) -> None:
        self.path, self.where = path, f"{path}: {kind} {name!r}"
        if not isinstance(entry, dict):
            raise RegistryError(f"{self.where} must be a mapping of fields, got {entry!r}")
        unknown = sorted(set(entry) - set(fields_))
        if unknown:
            raise RegistryError(f"{self.where}: unknown field(s) " + ", ".join(
                f"{key!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(
                    str(key), list(fields_), n=1)) else "") for key in unknown) + f"; fields: {sorted(fields_)}")
        for key, expected in fields_.items():
            value = entry.get(key)
            if value is not None and (not isinstance(value, expected) or isinstance(value, bool) is not (
                    expected is bool)):
                raise RegistryError(f"{self.where}: {key}: {value!r} is not {_kind_of(expected)}")
        self.entry = entry

    def required(self, key: str) -> Any:
        if self.entry.get(key) in (None, ""):
            raise RegistryError(f"{self.where} has no {key}")
        return self.entry[key]

    def error(self, message: str) -> RegistryError:
        return RegistryError(f"{self.where}: {message}")


def _kind_of(expected: Any) -> str:
    names = {str: "a string", dict: "a mapping", list: "a list", bool: "true or false", (int, float): "a number"}
    return names.get(expected, str(expected))


def _positive_number(entry: _Entry, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or value != value:
        raise entry.error(f"{key}: {value!r} is not a positive number")
    return float(value)


def _release_entry(path: Path, name: str, raw: Any) -> Release:
    entry = _Entry(path, "release", name, raw, RELEASE_FIELDS)
    source = entry.entry.get("source") or {}
    unknown = set(source) - set(SOURCE_FIELDS)
    if unknown or not all(isinstance(value, str) for value in source.values()):
        raise entry.error(f"source: {source!r} must hold strings under {list(SOURCE_FIELDS)} only")
    scale = entry.entry.get("scale_factors")
    expected = entry.entry.get("expected") or {}
    try:
        return Release(
            name=name, pair=entry.required("pair"), hook_point=entry.required("hook_point"),
            format=entry.required("format"), repo_id=source.get("repo_id", ""), subfolder=source.get("subfolder", ""),
            asset=source.get("asset", ""),
            scale_factors=tuple(_positive_number(entry, "scale_factors", s) for s in scale) if scale else None,
            description=entry.entry.get("description") or "", rebuild=entry.entry.get("rebuild") or "",
            expected={key: _positive_number(entry, f"expected.{key}", value) for key, value in expected.items()},
        )
    except RegistryError as error:
        raise error if str(error).startswith(str(path)) else entry.error(str(error)) from None


def _resolve_settings(name: str, raw_pairs: dict[str, tuple[_Entry, dict]], chain: tuple[str, ...] = ()) -> dict:
    """A pair's settings: those of the pair its ``like`` names (resolved the same way, wherever it is written),
    overridden by its own; a cycle of ``like`` is an error naming it."""
    entry, own = raw_pairs[name]
    like = entry.entry.get("like")
    if like is None:
        return dict(own)
    if like in chain + (name,):
        raise entry.error(f"like: {like!r} makes a cycle: {' -> '.join((*chain, name, like))}")
    if like not in raw_pairs:
        raise entry.error(str(_unknown("pair (its like)", like, raw_pairs)))
    return {**_resolve_settings(like, raw_pairs, (*chain, name)), **own}


def _check_settings(entry: _Entry, settings: dict, knobs: dict[str, Any]) -> dict:
    """Every knob known (close match suggested otherwise) and of the type the built-in pairs give it."""
    for knob, value in settings.items():
        if knob not in knobs:
            raise entry.error(f"settings: {_unknown('knob', knob, knobs)}")
        kind = type(knobs[knob])
        if kind is int and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise entry.error(f"settings: {knob}: {value!r} is not a positive integer")
        if kind is float:
            _positive_number(entry, f"settings: {knob}", value)
        if kind in (str, list) and not isinstance(value, kind):
            raise entry.error(f"settings: {knob}: {value!r} is not {_kind_of(kind)}")
    return settings


def _pair_entry(name: str, entry: _Entry, settings: dict) -> Pair:
    if (entry.entry.get("release") is None) == (entry.entry.get("hook_point") is None):
        raise entry.error("give exactly one of release or hook_point")
    min_gpu_gib = entry.entry.get("min_gpu_gib", 0.0)
    if min_gpu_gib < 0:
        raise entry.error(f"min_gpu_gib: {min_gpu_gib!r} is negative")
    tokenizers = _tokenizer_mode(entry, entry.entry.get("tokenizers", "shared"))
    return Pair(name=name, base=entry.required("base"), chat=entry.required("chat"), release=entry.entry.get("release"),
                data=dict(entry.entry.get("data") or {"kind": "none"}), gated=bool(entry.entry.get("gated", False)),
                min_gpu_gib=float(min_gpu_gib), settings=settings, hook_point_override=entry.entry.get("hook_point"),
                tokenizers=tokenizers)


def _tokenizer_mode(entry: _Entry, mode: str) -> str:
    if mode not in TOKENIZER_MODES:
        close = difflib.get_close_matches(str(mode), TOKENIZER_MODES, n=1)
        raise entry.error(f"tokenizers: {mode!r} is not one of {list(TOKENIZER_MODES)}"
                          + (f" (did you mean {close[0]!r}?)" if close else ""))
    return mode


def _scale_entry(path: Path, name: str, caps: Any) -> dict[str, int]:
    if not isinstance(caps, dict):
        raise RegistryError(f"{path}: scale {name!r} must be a mapping of knob: cap, got {caps!r}")
    for knob, cap in caps.items():
        if isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0:
            raise RegistryError(f"{path}: scale {name!r}: {knob}: {cap!r} is not a positive integer")
    return dict(caps)


def registry_files() -> list[Path]:
    """The built-in ``registry.yaml``, then the files named by ``CROSSCODER_REGISTRY`` (separated by ``:``)."""
    extra = [Path(p) for p in os.environ.get("CROSSCODER_REGISTRY", "").split(os.pathsep) if p]
    missing = [str(p) for p in extra if not p.is_file()]
    if missing:
        raise RegistryError(f"CROSSCODER_REGISTRY names file(s) that do not exist: {missing}")
    return [REGISTRY_FILE, *extra]


def _load_yaml(path: Path) -> dict:
    """One registry file as a mapping; malformed YAML, a non-UTF-8 file and a name given twice in one section are
    errors naming the file (and the line)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):  # noqa: ANN001 - PyYAML's signature
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise RegistryError(f"{path}, line {key_node.start_mark.line + 1}: {key!r} is given twice in "
                                        f"the same mapping (first on line {seen[key]})")
                seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep=deep)

    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=StrictLoader)  # noqa: S506 - a SafeLoader
    except UnicodeDecodeError as error:
        raise RegistryError(f"{path} is not a UTF-8 text file: {error}") from error
    except yaml.YAMLError as error:
        raise RegistryError(f"{path} is not valid YAML: {error}") from error
    raw = raw if raw is not None else {}
    if not isinstance(raw, dict):
        raise RegistryError(f"{path} must be a mapping with {list(SECTIONS)}, got a {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise RegistryError(f"{path}: unknown section(s) {unknown}; sections: {list(SECTIONS)}")
    for section in SECTIONS:
        if not isinstance(raw.get(section) or {}, dict):
            raise RegistryError(f"{path}: {section} must be a mapping of names to entries")
    return raw


def _read_registry() -> tuple[dict[str, Release], dict[str, Pair], dict[str, dict[str, int]]]:
    """Every registry file in ``registry_files()`` order: a later file's entry replaces an earlier one of the
    same name (a mirror of a release, say); a pair's ``like`` names any pair of any file, in any order."""
    releases: dict[str, Release] = {}
    raw_pairs: dict[str, tuple[_Entry, dict]] = {}
    scales: dict[str, dict[str, int]] = {}
    for path in registry_files():
        raw = _load_yaml(path)
        for name, entry in (raw.get("releases") or {}).items():
            releases[name] = _release_entry(path, str(name), entry)
        for name, entry in (raw.get("pairs") or {}).items():
            checked = _Entry(path, "pair", str(name), entry, PAIR_FIELDS)
            raw_pairs[str(name)] = (checked, dict(checked.entry.get("settings") or {}))
        for name, caps in (raw.get("scales") or {}).items():
            scales[str(name)] = _scale_entry(path, str(name), caps)
    knobs = raw_pairs["toy"][1] if "toy" in raw_pairs else {}
    pairs = {name: _pair_entry(name, entry, _check_settings(entry, _resolve_settings(name, raw_pairs), knobs))
             for name, (entry, _) in raw_pairs.items()}
    for name, release in releases.items():
        if release.pair not in pairs:
            raise RegistryError(f"release {name!r}: {_unknown('pair', release.pair, pairs)}")
    for name, pair in pairs.items():
        if pair.release is not None and pair.release not in releases:
            raise RegistryError(f"pair {name!r}: {_unknown('release', pair.release, releases)}")
    return releases, pairs, scales


RELEASES, PAIRS, SCALES = _read_registry()


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
    if not isinstance(release_, Release):
        raise TypeError(f"register_release needs a Release (helpers.Release(name=..., pair=..., hook_point=..., "
                        f"format=..., repo_id=... or asset=...)), got {type(release_).__name__}")
    get_pair(release_.pair)
    RELEASES[release_.name] = release_
    return release_


def register_pair(name: str, base: str, chat: str, *, release: str | None = None, hook_point: str | None = None,
                  data: dict[str, Any] | None = None, settings: dict[str, Any] | None = None, gated: bool = False,
                  min_gpu_gib: float = 0.0, like: str = "toy", tokenizers: str = "shared") -> Pair:
    """Register your own pair so that every notebook accepts it by name (``PAIR = name``).

    Give either a ``release`` (its hook point becomes the pair's site) or a ``hook_point``. ``settings``
    start from those of the pair named by ``like`` and are overridden by name. ``tokenizers="separate"`` declares
    models with different tokenizers (see ``TOKENIZER_MODES``).
    """
    if not isinstance(name, str) or not name.strip():
        raise RegistryError(f"a pair's name must be a non-empty string, got {name!r}")
    if (release is None) == (hook_point is None):
        raise RegistryError(f"pair {name!r}: give exactly one of release= or hook_point=")
    given = {"base": base, "chat": chat, "release": release, "hook_point": hook_point, "data": data, "gated": gated,
             "min_gpu_gib": min_gpu_gib, "settings": settings, "tokenizers": tokenizers}
    entry = _Entry(Path("register_pair"), "pair", name, {k: v for k, v in given.items() if v is not None}, PAIR_FIELDS)
    entry.required("base"), entry.required("chat")
    _tokenizer_mode(entry, tokenizers)
    if min_gpu_gib < 0:
        raise entry.error(f"min_gpu_gib: {min_gpu_gib!r} is negative")
    if release is not None:
        get_release(release)  # raises on an unknown release
    template = get_pair(like)
    _check_settings(entry, settings or {}, PAIRS["toy"].settings)
    registered = Pair(name=name, base=base, chat=chat, release=release, data=dict(data or {"kind": "none"}),
                      gated=gated, min_gpu_gib=float(min_gpu_gib), settings=template.settings_with(**(settings or {})),
                      hook_point_override=hook_point, tokenizers=tokenizers)
    PAIRS[name] = registered
    return registered
