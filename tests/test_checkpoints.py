"""Checkpoints: native round trip, the replication's and dictionary_learning's layouts, unsafe pickles."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from helpers.crosscoder.checkpoints import CheckpointError, load, save
from helpers.crosscoder.model import CrossCoder, CrossCoderConfig

REPLICATION_CFG_KEYS = dict(
    seed=49, batch_size=4096, buffer_mult=128, lr=5e-5, num_tokens=400_000_000, l1_coeff=2, beta1=0.9,
    beta2=0.999, d_in=16, dict_size=48, seq_len=1024, enc_dtype="fp32", model_name="gemma-2-2b",
    site="resid_pre", device="cuda:0", model_batch_size=4, log_every=100, save_every=30000,
    dec_init_norm=0.08, hook_point="blocks.14.hook_resid_pre", wandb_project="x", wandb_entity="y",
)


def test_native_round_trip_is_bit_exact(tmp_path, trained_like, activations):
    trained_like.train()
    trained_like.losses(activations)  # populate dead counters
    save(trained_like, tmp_path / "cc", extra_cfg={"note": "hello"})
    assert (tmp_path / "cc" / "cfg.json").is_file() and (tmp_path / "cc" / "crosscoder.safetensors").is_file()
    loaded = load(tmp_path / "cc")
    for name, tensor in trained_like.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert loaded.cfg == trained_like.cfg
    assert torch.equal(loaded(activations), trained_like(activations))
    assert json.loads((tmp_path / "cc" / "cfg.json").read_text())["extra"] == {"note": "hello"}


def test_folded_state_survives_round_trip(tmp_path, trained_like):
    trained_like.fold_scaling()
    loaded = load(save(trained_like, tmp_path / "cc"))
    assert loaded.is_folded
    with pytest.raises(RuntimeError):
        loaded.fold_scaling()


def write_replication(folder, state, cfg=REPLICATION_CFG_KEYS):
    folder.mkdir(parents=True)
    (folder / "cfg.json").write_text(json.dumps(cfg))
    torch.save(state, folder / "cc_weights.pt")


def test_replication_layout_loads_and_reconstructs_like_its_formulas(tmp_path):
    torch.manual_seed(1)
    state = {
        "W_enc": torch.randn(2, 16, 48) * 0.2,
        "W_dec": torch.randn(48, 2, 16) * 0.2,
        "b_enc": torch.randn(48) * 0.05,
        "b_dec": torch.randn(2, 16) * 0.1,
    }
    write_replication(tmp_path / "rep", state)
    scales = [0.2758961493232058, 0.24422852496546169]
    crosscoder = load(tmp_path / "rep", scale_factors=scales)
    assert crosscoder.cfg.hook_point == "blocks.14.hook_resid_pre" and crosscoder.cfg.d_hidden == 48

    raw = torch.randn(32, 2, 16) * 4
    x = raw * torch.tensor(scales)[None, :, None]  # the replication normalised before encoding
    f = torch.relu(torch.einsum("bnd,ndh->bh", x, state["W_enc"]) + state["b_enc"])
    x_hat = torch.einsum("bh,hnd->bnd", f, state["W_dec"]) + state["b_dec"]
    assert torch.allclose(crosscoder.encode(raw), f, atol=1e-5)
    assert torch.allclose(crosscoder(raw), x_hat / torch.tensor(scales)[None, :, None], atol=1e-5)
    folded = load(tmp_path / "rep", scale_factors=scales).fold_scaling()
    assert torch.allclose(folded(raw), crosscoder(raw), atol=1e-5)


def test_replication_cfg_without_required_key_names_key_and_file(tmp_path):
    cfg = {k: v for k, v in REPLICATION_CFG_KEYS.items() if k != "dict_size"}
    state = {"W_enc": torch.zeros(2, 16, 48), "W_dec": torch.zeros(48, 2, 16), "b_enc": torch.zeros(48),
             "b_dec": torch.zeros(2, 16)}
    write_replication(tmp_path / "rep", state, cfg)
    with pytest.raises(CheckpointError, match=r"dict_size.*|.*cfg\.json.*dict_size") as info:
        load(tmp_path / "rep")
    assert "cfg.json" in str(info.value) and "dict_size" in str(info.value)


class _Exploit:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_code_running_pickle_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned.txt"
    folder = tmp_path / "rep"
    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps(REPLICATION_CFG_KEYS))
    torch.save({"W_enc": _Exploit(str(marker))}, folder / "cc_weights.pt")
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused"):
        load(folder)
    assert not marker.exists(), "the pickle's code ran"


def dl_reference(state, x, use_threshold):
    """dictionary_learning's BatchTopKCrossCoder formulas (keep_relative_variance normalisation)."""
    mean, std = state["activation_mean"], state["activation_std"]
    scale = state["target_rms"] / torch.sqrt((std**2).sum(-1) + 1e-8)
    xn = (x - mean) * scale[None, :, None]
    f = torch.relu(torch.einsum("bld,ldf->bf", xn, state["encoder.weight"]) + state["encoder.bias"])
    weights = state["decoder.weight"].norm(dim=2).sum(0, keepdim=True)
    if use_threshold:
        f = f * ((f * weights) > state["threshold"])
    x_hat = torch.einsum("bf,lfd->bld", f, state["decoder.weight"]) + state["decoder.bias"]
    return f, x_hat / (scale[None, :, None] + 1e-8) + mean


@pytest.mark.parametrize("with_k", [True, False])
def test_dictionary_learning_layout_loads_and_reconstructs_like_its_formulas(tmp_path, with_k):
    torch.manual_seed(2)
    state = {
        "encoder.weight": torch.randn(2, 16, 48) * 0.3,
        "encoder.bias": torch.randn(48) * 0.05,
        "decoder.weight": torch.randn(2, 48, 16) * 0.3,
        "decoder.bias": torch.randn(2, 16) * 0.1,
        "code_normalization_id": torch.tensor(1),
        "activation_mean": torch.randn(2, 16),
        "activation_std": torch.rand(2, 16) + 0.5,
        "target_rms": torch.tensor(1.0),
    }
    if with_k:
        state["k"] = torch.tensor(5)
        state["threshold"] = torch.tensor(0.4)
    else:
        state["threshold"] = torch.tensor(-1.0)  # L1 crosscoders: no threshold is applied
    folder = tmp_path / "dl"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"activation_dim": 16, "dict_size": 48, "num_layers": 2}))
    crosscoder = load(folder).eval()
    assert crosscoder.cfg.activation == ("batchtopk" if with_k else "relu")
    x = torch.randn(40, 2, 16) * 3 + 1
    f, x_hat = dl_reference(state, x, use_threshold=with_k)
    assert torch.allclose(crosscoder.encode(x), f, atol=1e-5)
    assert torch.allclose(crosscoder(x), x_hat, atol=1e-4, rtol=1e-5)


def test_dictionary_learning_unsupported_code_normalisation(tmp_path):
    folder = tmp_path / "dl"
    folder.mkdir()
    save_file({"encoder.weight": torch.zeros(2, 4, 8), "encoder.bias": torch.zeros(8),
               "decoder.weight": torch.zeros(2, 8, 4), "decoder.bias": torch.zeros(2, 4),
               "code_normalization_id": torch.tensor(5)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="DECOUPLED"):
        load(folder)


def test_folder_without_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no crosscoder checkpoint"):
        load(tmp_path)


def test_wrong_tensor_shape_is_reported(tmp_path, small_cfg):
    folder = save(CrossCoder(small_cfg), tmp_path / "cc")
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["d_hidden"] = 50
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"W_enc has shape \(2, 16, 48\).*needs \(2, 16, 50\)"):
        load(folder)


def test_save_is_atomic_no_temp_files_left(tmp_path, small_cfg):
    save(CrossCoder(small_cfg), tmp_path / "cc")
    assert sorted(os.listdir(tmp_path / "cc")) == ["cfg.json", "crosscoder.safetensors"]


def test_a_huge_dict_size_is_refused_before_anything_is_allocated(tmp_path, small_cfg, monkeypatch):
    """cfg says 10^12 latents, the file holds 48: the header is compared first, nothing of 10^12 is built."""
    from helpers.crosscoder import model as crosscoder_module

    folder = save(CrossCoder(small_cfg), tmp_path / "cc")
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["d_hidden"] = 10**12
    (folder / "cfg.json").write_text(json.dumps(cfg))
    built = []
    monkeypatch.setattr(crosscoder_module.CrossCoder, "__init__", lambda self, cfg: built.append(cfg))
    with pytest.raises(CheckpointError, match="W_enc has shape \\(2, 16, 48\\)"):
        load(folder)
    assert not built


@pytest.mark.parametrize("tensor", ["W_dec", "b_enc", "threshold"])
def test_non_finite_weights_are_refused(tmp_path, small_cfg, tensor):
    from safetensors.torch import load_file, save_file

    folder = save(CrossCoder(small_cfg), tmp_path / "cc")
    state = load_file(str(folder / "crosscoder.safetensors"))
    flat = state[tensor].clone().reshape(-1)
    flat[0] = float("nan")
    state[tensor] = flat.view_as(state[tensor])
    save_file(state, str(folder / "crosscoder.safetensors"))
    with pytest.raises(CheckpointError, match=f"{tensor} holds 1 NaN or infinite values"):
        load(folder)


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_non_positive_scale_factors_are_refused(tmp_path, small_cfg, value):
    from safetensors.torch import load_file, save_file

    folder = save(CrossCoder(small_cfg), tmp_path / "cc")
    state = load_file(str(folder / "crosscoder.safetensors"))
    state["scale_factors"] = torch.tensor([1.0, value])
    save_file(state, str(folder / "crosscoder.safetensors"))
    with pytest.raises(CheckpointError, match="scale_factors must be positive"):
        load(folder)


def test_a_native_checkpoint_missing_scaling_folded_is_refused(tmp_path, trained_like):
    """Loading it as unfolded would silently rescale a folded crosscoder's outputs."""
    from safetensors.torch import load_file, save_file

    folder = save(trained_like.fold_scaling(), tmp_path / "cc")
    state = load_file(str(folder / "crosscoder.safetensors"))
    del state["scaling_folded"]
    save_file(state, str(folder / "crosscoder.safetensors"))
    with pytest.raises(CheckpointError, match="lacks tensors \\['scaling_folded'\\]"):
        load(folder)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_weights_name_the_file(tmp_path, small_cfg, damage):
    folder = save(CrossCoder(small_cfg), tmp_path / "cc")
    weights = folder / "crosscoder.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="crosscoder.safetensors is not a readable safetensors file"):
        load(folder)


def test_truncated_replication_file_names_the_file(tmp_path):
    folder = tmp_path / "rep"
    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps({"d_in": 16, "dict_size": 48}))
    torch.save({"W_enc": torch.zeros(2, 16, 48)}, folder / "cc_weights.pt")
    data = (folder / "cc_weights.pt").read_bytes()
    (folder / "cc_weights.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="cc_weights.pt is not a readable PyTorch file"):
        load(folder)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("d_hidden", "48", "d_hidden must be an integer"),
    ("activation", "gelu", "activation must be one of"),
    ("hook_point", "", "hook_point must be a hook name"),
    ("dec_init_norm", None, "dec_init_norm must be a finite number"),
])
def test_wrongly_typed_cfg_values_name_the_file_and_key(tmp_path, small_cfg, key, value, message):
    folder = save(CrossCoder(small_cfg), tmp_path / "cc")
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg[key] = value
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=f"cfg.json: {message}"):
        load(folder)


def test_a_loaded_batchtopk_crosscoder_encodes_with_its_threshold(tmp_path):
    """Loaded in eval mode: the learned threshold decides, not the batch's top k * batch."""
    crosscoder = CrossCoder(CrossCoderConfig(d_model=16, d_hidden=48, activation="batchtopk", k=4))
    with torch.no_grad():
        crosscoder.threshold.fill_(0.01)
    loaded = load(save(crosscoder, tmp_path / "cc"))
    x = torch.randn(30, 2, 16)
    assert not loaded.training
    assert torch.equal(loaded.encode(x), crosscoder.eval().encode(x))
    counters = loaded.tokens_since_fired.clone()
    loaded.losses(x)
    assert torch.equal(loaded.tokens_since_fired, counters), "evaluating does not touch the training counters"
