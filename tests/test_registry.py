"""The registry file, your own pairs, load_diff, and loading that never builds behind your back."""

from __future__ import annotations

import shutil

import pytest

from helpers import registry
from helpers.activations.diff import HookPointMismatchError, load_diff
from helpers.crosscoder.releases import load_release
from helpers.files import MissingAssetError
from helpers.registry import RegistryError, get_pair, get_release, register_pair
from helpers.tutorial.notebook import choose_pair


def test_every_pair_names_a_release_of_its_own():
    for name, pair in registry.PAIRS.items():
        release = get_release(pair.release)
        assert release.pair == name and pair.hook_point == release.hook_point
        assert set(registry.PAIRS["toy"].settings) == set(pair.settings), f"{name} lacks knobs the notebooks read"


def test_expected_metrics_and_formats_are_checked():
    with pytest.raises(RegistryError, match="unknown expected metrics"):
        registry.Release(name="x", pair="toy", hook_point="blocks.0.hook_resid_pre", format="native", asset="x",
                         expected={"fve": 0.9})
    with pytest.raises(RegistryError, match="format must be"):
        registry.Release(name="x", pair="toy", hook_point="blocks.0.hook_resid_pre", format="pickle", asset="x")
    with pytest.raises(RegistryError, match="exactly one source"):
        registry.Release(name="x", pair="toy", hook_point="blocks.0.hook_resid_pre", format="native")


def test_unknown_names_suggest_close_matches():
    with pytest.raises(RegistryError, match="Did you mean \\['toy-l3', "):
        get_release("toy-13")
    with pytest.raises(RegistryError, match="Did you mean \\['gemma-2-2b'\\]"):
        get_pair("gemma-2b")


def test_register_your_own_pair(monkeypatch):
    monkeypatch.setattr(registry, "PAIRS", dict(registry.PAIRS))
    mine = register_pair("mine", "org/base", "org/chat", hook_point="blocks.5.hook_resid_pre",
                         settings={"seq_len": 256})
    assert mine.hook_point == "blocks.5.hook_resid_pre" and mine.settings["seq_len"] == 256
    assert mine.settings["stat_tokens"] == get_pair("toy").settings["stat_tokens"]
    assert mine.settings_with(stat_tokens=7)["stat_tokens"] == 7
    with pytest.raises(RegistryError, match="unknown setting"):
        mine.settings_with(stat_tokns=7)
    monkeypatch.setattr("helpers.tutorial.notebook.PAIRS", registry.PAIRS)
    monkeypatch.delenv("CROSSCODER_PAIR", raising=False)
    assert choose_pair("mine") == "mine"
    with pytest.raises(RegistryError, match="exactly one of release= or hook_point="):
        register_pair("other", "a/b", "a/c")
    with pytest.raises(RegistryError, match="unknown crosscoder release"):
        register_pair("other", "a/b", "a/c", release="nope")


def test_missing_asset_is_an_error_naming_the_rebuild(tmp_path, monkeypatch):
    """Loading never trains: a missing packaged release names `python -m helpers.training.recipes toy-release`."""
    moved = tmp_path / "assets"
    shutil.copytree(registry.ASSETS / "toy_release", moved / "toy_release")
    (moved / "toy_release" / "crosscoder.safetensors").unlink()
    monkeypatch.setattr(registry, "ASSETS", moved)
    with pytest.raises(MissingAssetError, match="python -m helpers.training.recipes toy-release"):
        load_release("toy-l3")


def test_missing_toy_pair_is_an_error_naming_the_build(tmp_path, monkeypatch):
    from helpers.toy.shipped import toy_pair_path

    monkeypatch.setenv("CROSSCODER_TOY_DIR", str(tmp_path / "empty"))
    with pytest.raises(MissingAssetError, match=f"python -m helpers.builders.toy_pair --out {tmp_path / 'empty'}"):
        toy_pair_path()
    assert not (tmp_path / "empty").exists(), "nothing was built"


def test_load_diff_loads_the_pair_at_the_release_site():
    diff = load_diff("toy")
    assert diff.hook_point == diff.crosscoder.cfg.hook_point == get_release("toy-l3").hook_point
    assert diff.settings == get_pair("toy").settings and not diff.crosscoder.training
    again = load_diff(diff.crosscoder, diff.pair)
    assert again.crosscoder is diff.crosscoder and again.release is None
    with pytest.raises(HookPointMismatchError, match="belongs to pair 'gemma-2-2b'"):
        load_diff("toy", release="gemma-2-2b-l13-batchtopk")
    with pytest.raises(TypeError):
        load_diff("toy", diff.pair)


def test_a_checkpoint_that_contradicts_the_registry_is_refused(tmp_path, monkeypatch):
    import json

    from helpers.crosscoder.checkpoints import CheckpointError

    moved = tmp_path / "assets"
    shutil.copytree(registry.ASSETS / "toy_release", moved / "toy_release")
    cfg_file = moved / "toy_release" / "cfg.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["hook_point"] = "blocks.2.hook_resid_pre"
    cfg_file.write_text(json.dumps(cfg))
    monkeypatch.setattr(registry, "ASSETS", moved)
    with pytest.raises(CheckpointError, match="records hook point 'blocks.2.hook_resid_pre'"):
        load_release("toy-l3")


def test_scale_caps_token_counts_and_sizes_only(monkeypatch):
    from helpers.registry import SCALES, get_pair

    full = get_pair("gemma-2-2b").settings_with()
    monkeypatch.setenv("CROSSCODER_SCALE", "smoke")
    smoke = get_pair("gemma-2-2b").settings_with(lr=1e-3)
    caps = SCALES["smoke"]
    assert smoke["stat_tokens"] == min(full["stat_tokens"], caps["stat_tokens"]) < full["stat_tokens"]
    assert smoke["d_hidden"] == caps["d_hidden"] and smoke["lr"] == 1e-3  # overrides still win
    assert {k for k in full if smoke[k] != full[k]} <= set(caps) | {"lr"}, "nothing but the capped knobs moves"
    assert get_pair("toy").settings_with()["seq_len"] == 128  # caps only shrink
    monkeypatch.setenv("CROSSCODER_SCALE", "huge")
    with pytest.raises(RegistryError, match="CROSSCODER_SCALE"):
        get_pair("toy").settings_with()


def test_notebooks_know_whether_a_scale_caps_their_budget(monkeypatch, capsys):
    """Notebook 02 asserts a usable crosscoder only at the pair's own budget (``ctx.scale`` empty)."""
    from helpers.tutorial.notebook import setup

    monkeypatch.delenv("CROSSCODER_PAIR", raising=False)
    monkeypatch.delenv("CROSSCODER_SCALE", raising=False)
    assert setup("toy").scale == ""
    monkeypatch.setenv("CROSSCODER_SCALE", "smoke")
    assert setup("toy").scale == "smoke" and "'num_tokens': 65536" in capsys.readouterr().out


def test_registry_files_named_in_the_environment_add_and_replace_entries(tmp_path, monkeypatch):
    mine = tmp_path / "mine.yaml"
    mine.write_text("""
releases:
  toy-l3:  # a mirror of a built-in release replaces it
    pair: toy
    hook_point: blocks.3.hook_resid_post
    format: native
    source: {repo_id: me/toy-l3-mirror}
pairs:
  mine:
    base: org/base
    chat: org/chat
    hook_point: blocks.12.hook_resid_pre
    like: toy
    settings: {seq_len: 256}
""")
    monkeypatch.setenv("CROSSCODER_REGISTRY", str(mine))
    releases, pairs, _ = registry._read_registry()
    assert releases["toy-l3"].repo_id == "me/toy-l3-mirror" and releases["toy-l3-batchtopk"] == get_release(
        "toy-l3-batchtopk"), "the named entry replaced, the others as built in"
    assert pairs["mine"].hook_point == "blocks.12.hook_resid_pre" and pairs["mine"].release is None
    assert pairs["mine"].settings == {**get_pair("toy").settings, "seq_len": 256}


@pytest.mark.parametrize(("name", "content", "error"), [
    ("absent.yaml", None, "do not exist"),
    ("neither.yaml", "pairs:\n  mine: {base: org/base, chat: org/chat}\n", "exactly one of release or hook_point"),
    ("malformed.yaml", "pairs:\n  mine: {chat: org/chat, hook_point: blocks.1.hook_resid_pre}\n",
     "malformed.yaml: an entry lacks a field"),
    ("like.yaml", "pairs:\n  mine: {base: a, chat: b, hook_point: blocks.1.hook_resid_pre, like: tyo}\n",
     "Did you mean"),
])
def test_bad_registry_files_are_clear_errors(tmp_path, monkeypatch, name: str, content: str | None, error: str):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("CROSSCODER_REGISTRY", str(path))
    with pytest.raises(RegistryError, match=error):
        registry._read_registry()
