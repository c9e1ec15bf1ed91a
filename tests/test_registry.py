"""The registry file, your own pairs, load_diff, and loading that never builds behind your back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from helpers import registry
from helpers.activations.diff import HookPointMismatchError, load_diff
from helpers.crosscoder.releases import load_release
from helpers.files import MissingAssetError
from helpers.registry import RegistryError, get_pair, get_release, register_pair
from helpers.tutorial.notebook import choose_pair


def test_every_pair_names_a_release_of_its_own_or_a_site():
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


PAIR = "base: a, chat: b, hook_point: blocks.1.hook_resid_pre"


@pytest.mark.parametrize(("name", "content", "error"), [
    ("absent.yaml", None, "do not exist"),
    ("neither.yaml", "pairs:\n  mine: {base: org/base, chat: org/chat}\n",
     r"neither.yaml: pair 'mine': give exactly one of release or hook_point"),
    ("malformed.yaml", "pairs:\n  mine: {chat: org/chat, hook_point: blocks.1.hook_resid_pre}\n",
     r"malformed.yaml: pair 'mine' has no base"),
    ("like.yaml", f"pairs:\n  mine: {{{PAIR}, like: tyo}}\n",
     r"like.yaml: pair 'mine': unknown pair \(its like\) 'tyo'.*Did you mean"),
    ("cycle.yaml", f"pairs:\n  one: {{{PAIR}, like: two}}\n  two: {{{PAIR}, like: one}}\n",
     r"cycle.yaml: pair '(one|two)': like: '(one|two)' makes a cycle: (one -> two -> one|two -> one -> two)"),
    ("self.yaml", f"pairs:\n  one: {{{PAIR}, like: one}}\n", r"like: 'one' makes a cycle: one -> one"),
    ("yaml.yaml", "pairs:\n  mine: {base: a\n", r"yaml.yaml is not valid YAML"),
    ("latin1.yaml", b"pairs:\n  caf\xe9: {base: a}\n", r"latin1.yaml is not a UTF-8 text file"),
    ("lots.yaml", f"pairs:\n  mine: {{{PAIR}, min_gpu_gib: lots}}\n",
     r"lots.yaml: pair 'mine': min_gpu_gib: 'lots' is not a number"),
    ("big.yaml", "scales:\n  mine: {d_hidden: big}\n",
     r"big.yaml: scale 'mine': d_hidden: 'big' is not a positive integer"),
    ("knob.yaml", f"pairs:\n  mine: {{{PAIR}, settings: {{d_hiden: 64}}}}\n",
     r"knob.yaml: pair 'mine': settings: unknown knob 'd_hiden'. Did you mean \['d_hidden'"),
    ("knobtype.yaml", f"pairs:\n  mine: {{{PAIR}, settings: {{lr: fast}}}}\n",
     r"knobtype.yaml: pair 'mine': settings: lr: 'fast' is not a positive number"),
    ("field.yaml", f"pairs:\n  mine: {{{PAIR}, min_gpu_gb: 3}}\n",
     r"field.yaml: pair 'mine': unknown field\(s\) 'min_gpu_gb' \(did you mean 'min_gpu_gib'\?\)"),
    ("twice.yaml", f"pairs:\n  mine: {{{PAIR}}}\n  mine: {{{PAIR}}}\n", r"twice.yaml, line 3: 'mine' is given twice"),
    ("list.yaml", "- pairs\n", r"list.yaml must be a mapping"),
    ("section.yaml", "pair: {}\n", r"section.yaml: unknown section\(s\) \['pair'\]"),
    ("release.yaml", "releases:\n  r: {pair: toy, hook_point: blocks.1.hook_resid_pre, format: native, "
     "source: {asset: x}, scale_factors: [1.0, -2]}\n",
     r"release.yaml: release 'r': scale_factors: -2 is not a positive"),
    ("orphan.yaml", "releases:\n  r: {pair: toy2, hook_point: blocks.1.hook_resid_pre, format: native, "
     "source: {asset: x}}\n", r"release 'r': unknown pair 'toy2'"),
])
def test_bad_registry_files_are_clear_errors(tmp_path, monkeypatch, name: str, content: str | bytes | None,
                                             error: str):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    monkeypatch.setenv("CROSSCODER_REGISTRY", str(path))
    with pytest.raises(RegistryError, match=error):
        registry._read_registry()


def test_like_resolves_whatever_the_order(tmp_path, monkeypatch):
    path = tmp_path / "order.yaml"
    path.write_text(f"pairs:\n  first: {{{PAIR}, like: second, settings: {{seq_len: 32}}}}\n"
                    f"  second: {{{PAIR}, like: toy, settings: {{d_hidden: 64}}}}\n")
    monkeypatch.setenv("CROSSCODER_REGISTRY", str(path))
    _, pairs, _ = registry._read_registry()
    assert pairs["first"].settings == {**get_pair("toy").settings, "d_hidden": 64, "seq_len": 32}


def test_a_bad_registry_file_fails_import_helpers_only_with_that_clear_error(tmp_path):
    path = tmp_path / "cycle.yaml"
    path.write_text(f"pairs:\n  one: {{{PAIR}, like: two}}\n  two: {{{PAIR}, like: one}}\n")
    done = subprocess.run([sys.executable, "-c", "import helpers; helpers.PAIRS"], capture_output=True, text=True,
                          env={**os.environ, "CROSSCODER_REGISTRY": str(path)})
    assert done.returncode == 1
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"helpers.registry.RegistryError: {path}: pair "), done.stderr


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"name": ""}, "non-empty string"),
    ({"base": 3}, r"register_pair: pair 'mine': base: 3 is not a string"),
    ({"min_gpu_gib": "lots"}, r"min_gpu_gib: 'lots' is not a number"),
    ({"min_gpu_gib": -1}, r"min_gpu_gib: -1 is negative"),
    ({"settings": {"d_hidden": "big"}}, r"settings: d_hidden: 'big' is not a positive integer"),
    ({"settings": {"seq_lenn": 3}}, r"unknown knob 'seq_lenn'"),
    ({"data": "hub"}, r"data: 'hub' is not a mapping"),
])
def test_register_pair_checks_every_argument(kwargs, error):
    arguments = {"name": "mine", "base": "org/base", "chat": "org/chat", "hook_point": "blocks.1.hook_resid_pre"}
    with pytest.raises(RegistryError, match=error):
        register_pair(**{**arguments, **kwargs})
    assert "mine" not in registry.PAIRS
