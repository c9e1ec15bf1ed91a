"""Release registry, from_pretrained through a local Hub cache (offline), push_to_hub and its card."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.crosscoder import releases
from helpers.crosscoder.checkpoints import save
from helpers.crosscoder.model import CrossCoder, CrossCoderConfig

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache_snapshot(cache: Path, repo_id: str) -> Path:
    """Lay out a Hub cache entry for ``repo_id`` exactly as huggingface_hub does, and return its snapshot."""
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    snapshot = repo_dir / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    return snapshot


def test_unknown_release_lists_close_matches():
    with pytest.raises(KeyError, match="gemma-2-2b-l14-replication"):
        releases.from_pretrained("gemma-2-2b-l14-replicaton")


def test_registry_seeded_with_public_releases():
    replication = releases.RELEASES["gemma-2-2b-l14-replication"]
    assert replication.repo_id == "ckkissane/crosscoder-gemma-2-2b-model-diff"
    assert replication.scale_factors == (0.2758961493232058, 0.24422852496546169)
    assert {"gemma-2-2b-l13-l1", "gemma-2-2b-l13-batchtopk"} <= set(releases.RELEASES)


def test_from_pretrained_release_offline_from_hub_cache(tmp_path):
    """The registered replication release resolves through huggingface_hub from a local cache."""
    cache = tmp_path / "hub"
    snapshot = hub_cache_snapshot(cache, "ckkissane/crosscoder-gemma-2-2b-model-diff")
    folder = snapshot / "blocks.14.hook_resid_pre"
    folder.mkdir()
    torch.manual_seed(0)
    state = {"W_enc": torch.randn(2, 8, 24), "W_dec": torch.randn(24, 2, 8), "b_enc": torch.zeros(24),
             "b_dec": torch.zeros(2, 8)}
    torch.save(state, folder / "cc_weights.pt")
    (folder / "cfg.json").write_text(json.dumps({"d_in": 8, "dict_size": 24, "enc_dtype": "fp32",
                                                  "hook_point": "blocks.14.hook_resid_pre"}))
    script = (
        "from helpers import from_pretrained\n"
        "cc = from_pretrained('gemma-2-2b-l14-replication')\n"
        "print(cc.cfg.d_hidden, cc.cfg.hook_point, cc.cfg.model_names[1], cc.scale_factors.tolist())\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    d_hidden, hook, chat, scale_a, scale_b = result.stdout.replace("[", "").replace("]", "").replace(",", "").split()
    assert (d_hidden, hook, chat) == ("24", "blocks.14.hook_resid_pre", "google/gemma-2-2b-it")
    assert float(scale_a) == pytest.approx(0.2758961493232058, rel=1e-7)
    assert float(scale_b) == pytest.approx(0.24422852496546169, rel=1e-7)


def test_from_pretrained_repo_id_offline_from_hub_cache(tmp_path):
    cache = tmp_path / "hub"
    snapshot = hub_cache_snapshot(cache, "someone/my-crosscoder")
    original = CrossCoder(CrossCoderConfig(d_model=8, d_hidden=24, seed=5))
    save(original, snapshot / "layer3")
    torch.save(original.W_dec.detach(), tmp_path / "expected.pt")
    script = (
        "import torch; from helpers import from_pretrained\n"
        "cc = from_pretrained('someone/my-crosscoder/layer3')\n"
        f"assert torch.equal(cc.W_dec, torch.load({str(tmp_path / 'expected.pt')!r}))\n"
        "print('ok')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_from_pretrained_local_folder(tmp_path):
    original = CrossCoder(CrossCoderConfig(d_model=8, d_hidden=24))
    loaded = releases.from_pretrained(str(save(original, tmp_path / "cc")))
    assert torch.equal(loaded.W_enc, original.W_enc)


def test_push_to_hub_uploads_weights_and_card(monkeypatch, tmp_path):
    uploaded: dict[str, str] = {}

    class FakeApi:
        def __init__(self, token=None):
            self.token = token

        def create_repo(self, repo_id, **kwargs):
            uploaded["repo"] = repo_id

        def upload_folder(self, repo_id, folder_path, **kwargs):
            for path in Path(folder_path).iterdir():
                uploaded[path.name] = path.read_text(errors="replace") if path.suffix in {".md", ".json"} else "bin"
            return "https://example/commit/1"

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    crosscoder = CrossCoder(CrossCoderConfig(d_model=8, d_hidden=24, model_names=["base", "chat"],
                                             hook_point="blocks.3.hook_resid_pre"))
    url = releases.push_to_hub(crosscoder, "me/cc", recipe={"lr": 5e-5}, metrics={"fve_base": 0.9},
                               taxonomy={"chat_only": 7})
    assert url == "https://example/commit/1" and uploaded["repo"] == "me/cc"
    assert set(uploaded) >= {"README.md", "cfg.json", "crosscoder.safetensors"}
    card = uploaded["README.md"]
    assert "base vs chat" in card and "| lr | 5e-05 |" in card and "| chat_only | 7 |" in card
    assert "| fve_base | 0.9 |" in card


def test_toy_release_loads_by_name_and_reconstructs_toy_activations():
    from helpers.activations.buffer import harvest
    from helpers.activations.models import load_model_pair

    crosscoder = releases.from_pretrained("toy-l3")
    assert crosscoder.cfg.hook_point == "blocks.3.hook_resid_post" and crosscoder.cfg.d_hidden == 2048
    assert crosscoder.cfg.model_names == ["toy:base", "toy:chat"]
    pair = load_model_pair("toy", hook_point=crosscoder.cfg.hook_point)
    tokens = pair.tokenizer(["def join(a, *p):\n    sep = _get_sep(a)\n    path = a\n" * 3],
                            return_tensors="pt")["input_ids"]
    acts = harvest(pair.models, tokens, crosscoder.cfg.hook_point)[0, 1:]
    with torch.no_grad():
        metrics = crosscoder.losses(acts)
    assert metrics.explained_variance > 0.7 and metrics.l0 < 100
