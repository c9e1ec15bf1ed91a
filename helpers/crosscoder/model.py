"""The CrossCoder: a sparse dictionary trained jointly on the activations of n >= 2 models.

Shapes follow the original Gemma-2-2B replication, so its checkpoints load without permutation:

    x      [batch, n_models, d_model]     activations, one row per model
    W_enc  [n_models, d_model, d_hidden]
    W_dec  [d_hidden, n_models, d_model]  one decoder vector per latent and model
    b_enc  [d_hidden]
    b_dec  [n_models, d_model]

Normalisation. Each model's activations are mapped to the crosscoder's working space by ``(x - activation_mean[m]) *
scale_factors[m]`` (the replication uses a zero mean and a scale that brings the mean norm to ``sqrt(d_model)``).
The factors are buffers of the crosscoder, saved with it, so ``encode`` and ``decode`` take and return *raw*
activations unless told ``normalized=True``. ``fold_scaling()`` folds them into the weights; the crosscoder
remembers that it did, so it never folds twice, and quantities that depend on the working space (decoder norms, the
sparsity weights, the BatchTopK selection) are computed exactly as before folding.

Variants (``CrossCoderConfig``): *designated shared* latents decode through one tied vector ``W_dec_tied
[shared_latents, d_model]`` (in the working space, for every model); *dedicated* latents decode into their own model
only. The decoder every computation uses is ``decoder_weight()``: ``W_dec`` masked (exclusive latents' other models,
and the tied rows, are zero by construction) with the tied vectors in place; for the standard crosscoder it is
``W_dec`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import einops
import torch
from torch import nn

from ..distributed import any_over_batch, batch_is_global, batch_world_size, global_top_values
from ..validation import activations, instance, optional_positive_int, real
from .config import TOP_K_ACTIVATIONS, CrossCoderConfig
from .jumprelu import jump_relu, jumprelu_penalties
from .relu_step import relu_step
from .sparse_step import batch_top_k, dense_aux_k_loss, sparse_forward


@dataclass
class CrossCoderLosses:
    """What ``CrossCoder.losses`` returns. Scalars are 0-d tensors; ``total`` carries the graph.

    Attributes:
        total: reconstruction + l1_coeff * sparsity + (aux_k_coeff, or pre_act_coeff for jumprelu) * aux_k
            + delta_coeff * delta; what the optimiser sees.
        reconstruction: squared error summed over models and d_model, averaged over the batch.
        sparsity: decoder-norm-weighted L1 of the latents (for jumprelu: the tanh penalty), averaged over the batch.
        aux_k: auxiliary dead-latent loss: aux-k for the top-k variants (0 when no latent is dead), Anthropic's
            pre-activation loss for ``jumprelu``, 0 for ``relu``.
        l0: mean number of active latents per token.
        explained_variance: mean over tokens of 1 - ||x - x_hat||^2 / ||x - mean_batch(x)||^2.
        explained_variance_per_model: the same per model, ``[n_models]``.
        latents: the latent activations, ``[batch, d_hidden]`` (detached).
        delta: the delta-crosscoder's loss ``||(x_B - x_A) - (x_hat_B - x_hat_A)||^2`` summed over d_model,
            averaged over the batch (computed for every two-model crosscoder; in ``total`` with ``cfg.delta_coeff``).
    """

    total: torch.Tensor
    reconstruction: torch.Tensor
    sparsity: torch.Tensor
    aux_k: torch.Tensor
    l0: torch.Tensor
    explained_variance: torch.Tensor
    explained_variance_per_model: torch.Tensor
    latents: torch.Tensor
    delta: torch.Tensor


class CrossCoder(nn.Module):
    """A sparse crosscoder over ``n_models`` models at one site (see the module docstring)."""

    def __init__(self, cfg: CrossCoderConfig):
        super().__init__()
        self.cfg = instance("cfg", cfg, CrossCoderConfig)
        n, d, h = cfg.n_models, cfg.d_model, cfg.d_hidden
        generator = torch.Generator().manual_seed(cfg.seed)
        w_dec = torch.randn(h, n, d, generator=generator)
        w_dec = w_dec / w_dec.norm(dim=-1, keepdim=True) * cfg.dec_init_norm
        self.W_dec = nn.Parameter(w_dec.to(cfg.torch_dtype))
        self.W_enc = nn.Parameter(
            einops.rearrange(w_dec, "d_hidden n_models d_model -> n_models d_model d_hidden")
            .contiguous()
            .to(cfg.torch_dtype)
        )
        self.b_enc = nn.Parameter(torch.zeros(h, dtype=cfg.torch_dtype))
        self.b_dec = nn.Parameter(torch.zeros(n, d, dtype=cfg.torch_dtype))
        self.register_buffer("scale_factors", torch.ones(n))
        self.register_buffer("activation_mean", torch.zeros(n, d))
        self.register_buffer("scaling_folded", torch.tensor(False))
        self.register_buffer("threshold", torch.tensor(-1.0))
        self.learns_threshold = True
        self.register_buffer("tokens_since_fired", torch.zeros(h, dtype=torch.long))
        if cfg.activation == "jumprelu":  # thresholds in the pre-activation space, unchanged by fold_scaling
            initial = torch.full((h,), cfg.jumprelu_init_threshold, dtype=cfg.torch_dtype)
            self.log_threshold = nn.Parameter(initial.log())
        mask = cfg.decoder_mask()
        self._constrained = mask is not None
        if self._constrained:
            self.register_buffer("decoder_mask", mask.to(cfg.torch_dtype), persistent=False)
            with torch.no_grad():
                self.W_dec.mul_(self.decoder_mask[..., None])
            if cfg.shared_latents:
                tied = torch.randn(cfg.shared_latents, d, generator=generator)
                self.W_dec_tied = nn.Parameter((tied / tied.norm(dim=-1, keepdim=True) * cfg.dec_init_norm)
                                               .to(cfg.torch_dtype))
            with torch.no_grad():  # the encoder starts as the transpose of the decoder actually in use
                self.W_enc.copy_(einops.rearrange(self.decoder_weight(), "h n d -> n d h"))
        penalty = cfg.penalty_scales()
        self._penalised = penalty is not None
        if self._penalised:
            self.register_buffer("penalty_scales", penalty, persistent=False)

    # ------------------------------------------------------------------ normalisation

    @property
    def is_folded(self) -> bool:
        return bool(self.scaling_folded)

    def set_normalization(
        self, scale_factors: torch.Tensor | list[float], activation_mean: torch.Tensor | None = None
    ) -> None:
        """Set the per-model scale factors ``[n_models]`` (and optionally means ``[n_models, d_model]``)."""
        if self.is_folded:
            raise RuntimeError("the scale factors are folded into the weights already; set them before folding")
        scale = torch.as_tensor(scale_factors, dtype=torch.float32)
        if scale.shape != (self.cfg.n_models,) or not torch.all(torch.isfinite(scale) & (scale > 0)):
            raise ValueError(
                f"scale_factors must be {self.cfg.n_models} positive finite numbers, got {scale.tolist()}"
            )
        self.scale_factors.copy_(scale)
        if activation_mean is not None:
            mean = torch.as_tensor(activation_mean, dtype=torch.float32)
            if mean.shape != self.activation_mean.shape:
                expected = tuple(self.activation_mean.shape)
                raise ValueError(f"activation_mean must be {expected}, got {tuple(mean.shape)}")
            self.activation_mean.copy_(mean)

    def _check_input(self, x: torch.Tensor, batched: bool = True) -> None:
        activations("activations", x, self.cfg.n_models, self.cfg.d_model, batched)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw activations ``[..., n_models, d_model]`` -> the crosscoder's working space."""
        self._check_input(x, batched=False)
        return ((x - self.activation_mean.to(x.dtype)) * self.scale_factors.to(x.dtype)[:, None]).to(x.dtype)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Working-space activations ``[..., n_models, d_model]`` -> raw activations."""
        self._check_input(x, batched=False)
        return (x / self.scale_factors.to(x.dtype)[:, None] + self.activation_mean.to(x.dtype)).to(x.dtype)

    @torch.no_grad()
    def fold_scaling(self) -> CrossCoder:
        """Fold the normalisation into the weights so that they act on raw activations directly.

        ``W_enc[m] *= s_m``, ``b_enc -= sum_m s_m mean_m @ W_enc[m]``, ``W_dec[:, m] /= s_m``,
        ``b_dec[m] = b_dec[m] / s_m + mean_m``. Raises if already folded.
        """
        if self.is_folded:
            raise RuntimeError("fold_scaling() was already applied to this crosscoder; folding twice is an error")
        scale = self.scale_factors.to(self.W_enc.dtype)
        mean = self.activation_mean.to(self.W_enc.dtype)
        self.b_enc -= torch.einsum("nd,ndh->h", mean * scale[:, None], self.W_enc)
        self.W_enc *= scale[:, None, None]
        self.W_dec /= scale[None, :, None]
        self.b_dec.copy_(self.b_dec / scale[:, None] + mean)
        self.scaling_folded.fill_(True)
        return self

    def _to_weight_space(self, x: torch.Tensor, normalized: bool) -> torch.Tensor:
        if self.is_folded:
            return self.denormalize(x) if normalized else x
        return x if normalized else self.normalize(x)

    def _from_weight_space(self, x: torch.Tensor, normalized: bool) -> torch.Tensor:
        if self.is_folded:
            return self.normalize(x) if normalized else x
        return x if normalized else self.denormalize(x)

    # ------------------------------------------------------------------ decoder geometry

    def _working_decoder(self) -> torch.Tensor:
        """The variants' decoder in the working space, ``[d_hidden, n_models, d_model]`` (tied rows exact)."""
        scale = self.scale_factors.to(self.W_dec.dtype)[None, :, None]
        decoder = (self.W_dec * scale if self.is_folded else self.W_dec) * self.decoder_mask[..., None]
        if self.cfg.shared_latents:
            tied = self.W_dec_tied[:, None, :].expand(-1, self.cfg.n_models, -1)
            decoder = torch.cat([tied, decoder[self.cfg.shared_latents:]])
        return decoder

    def decoder_weight(self) -> torch.Tensor:
        """The decoder as the stored weights act on (raw activations once folded), ``[d_hidden, n_models, d_model]``."""
        if not self._constrained:
            return self.W_dec
        decoder = self._working_decoder()
        return decoder / self.scale_factors.to(decoder.dtype)[None, :, None] if self.is_folded else decoder

    def decoder_norms(self) -> torch.Tensor:
        """Norm of each latent's decoder vector per model in the working space, ``[d_hidden, n_models]``.

        Independent of folding: after ``fold_scaling`` the stored vectors are divided by the scale
        factors, and this multiplies them back, so relative norms mean the same thing either way.
        """
        if self._constrained:
            return self._working_decoder().norm(dim=-1)
        norms = self.W_dec.norm(dim=-1)
        if self.is_folded:
            norms = norms * self.scale_factors.to(norms.dtype)[None, :]
        return norms

    def decoder_vectors(self, normalized: bool = True) -> torch.Tensor:
        """Every latent's decoder vector per model, ``[d_hidden, n_models, d_model]``.

        In the working (normalised) space if ``normalized``, else in raw activation space (the vector
        a latent of activation 1 adds to each model's raw activation), whether or not scaling is folded.
        """
        scale = self.scale_factors.to(self.W_dec.dtype)[None, :, None]
        if self._constrained:
            working = self._working_decoder()
            return working if normalized else working / scale
        if self.is_folded:
            return self.W_dec * scale if normalized else self.W_dec
        return self.W_dec if normalized else self.W_dec / scale

    def code_weights(self) -> torch.Tensor:
        """Per-latent weight of the sparsity penalty and of top-k selection, ``[d_hidden]``."""
        norms = self.decoder_norms()
        if self.cfg.code_normalization == "crosscoder":
            return norms.sum(dim=-1)
        if self.cfg.code_normalization == "sae":
            return norms.pow(2).sum(dim=-1).sqrt()
        return torch.ones_like(norms[:, 0])

    # ------------------------------------------------------------------ encode / decode

    def pre_activations(self, x: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """Encoder pre-activations ``[batch, d_hidden]`` for activations ``x`` ``[batch, n_models, d_model]``."""
        self._check_input(x)
        x = self._to_weight_space(x, normalized).to(self.W_enc.dtype)
        return einops.einsum(x, self.W_enc, "batch n d, n d h -> batch h") + self.b_enc

    @torch.no_grad()
    def active_indices(self, scores: torch.Tensor, k: int | None,
                       update_threshold: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """The top-k variants' selection: ``(rows, cols)`` of the kept entries of decoder-norm-weighted
        post-ReLU scores ``[batch, d_hidden]``, sorted by row. ``topk``: each token's ``k`` largest;
        ``batchtopk``: the learned threshold at inference, else the batch's ``k * batch`` largest (which
        also update the threshold when ``update_threshold``; over all ranks inside ``distributed.global_batch()``).
        The dense and the sparse step both use it."""
        k = k or self.cfg.k
        batch = scores.shape[0]
        if self.cfg.activation == "topk":
            cols = scores.topk(k, dim=-1, sorted=False).indices.sort(dim=-1).values.flatten()
            return torch.arange(batch, device=scores.device).repeat_interleave(k), cols
        if not self.training and self.threshold >= 0:
            rows, cols = (scores > self.threshold).nonzero(as_tuple=True)
            return rows, cols
        n_keep = k * batch * batch_world_size()  # over the global batch when training data-parallel
        rows, cols, selected = batch_top_k(scores, n_keep, per_row=4 * k)
        if batch_is_global():  # keep this rank's entries among the global batch's n_keep largest
            selected = global_top_values(selected, n_keep)
            keep = scores[rows, cols] >= selected.min()
            rows, cols = rows[keep], cols[keep]
        if update_threshold:
            self._update_threshold(selected)
        return rows, cols

    def _sparsify(self, acts: torch.Tensor, k: int | None, update_threshold: bool) -> torch.Tensor:
        """Apply the configured sparsity to post-ReLU activations ``[batch, d_hidden]``."""
        if self.cfg.activation == "relu":
            return acts
        if self.cfg.activation == "jumprelu":  # relu(h) * 1[h > theta] = h * 1[h > theta], as theta > 0
            return acts * (acts > self.log_threshold.exp())
        rows, cols = self.active_indices(acts.detach() * self.code_weights().detach(), k, update_threshold)
        mask = torch.zeros_like(acts, dtype=torch.bool)
        mask[rows, cols] = True
        return acts * mask

    @torch.no_grad()
    def _update_threshold(self, selected_scores: torch.Tensor) -> None:
        """The EMA of the smallest selected score, as dictionary_learning's ``BatchTopKCrossCoderTrainer``; not while
        ``learns_threshold`` is off (the Trainer holds it off up to ``TrainConfig.threshold_start_step``)."""
        positive = selected_scores[selected_scores > 0]
        if positive.numel() == 0 or not self.learns_threshold:
            return
        beta = self.cfg.threshold_beta if self.threshold >= 0 else 0.0  # the first update sets it
        self.threshold.copy_(beta * self.threshold + (1 - beta) * positive.min().float())

    def encode(self, x: torch.Tensor, normalized: bool = False, k: int | None = None) -> torch.Tensor:
        """Latent activations ``[batch, d_hidden]`` of activations ``x`` ``[batch, n_models, d_model]``.

        ``x`` is raw unless ``normalized``. For ``batchtopk`` in eval mode the learned threshold is used
        (batch top-k if none has been learned yet); ``k`` overrides ``cfg.k`` (for k annealing).
        """
        acts = torch.relu(self.pre_activations(x, normalized))
        return self._sparsify(acts, k, update_threshold=False)

    def decode(self, latents: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """Reconstruction ``[batch, n_models, d_model]`` of latents ``[batch, d_hidden]``, raw unless ``normalized``."""
        if latents.ndim != 2 or latents.shape[-1] != self.cfg.d_hidden:
            raise ValueError(f"latents must have shape [batch, {self.cfg.d_hidden}], got {tuple(latents.shape)}")
        decoder = self.decoder_weight()
        out = einops.einsum(latents.to(decoder.dtype), decoder, "batch h, h n d -> batch n d") + self.b_dec
        return self._from_weight_space(out, normalized)

    def forward(self, x: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """Reconstruct ``x`` ``[batch, n_models, d_model]``; raw in, raw out unless ``normalized``."""
        return self.decode(self.encode(x, normalized), normalized)

    # ------------------------------------------------------------------ losses

    def losses(self, x: torch.Tensor, normalized: bool = False, l1_coeff: float = 0.0, k: int | None = None,
               sparse: bool | None = None) -> CrossCoderLosses:
        """All training losses and metrics for a batch ``x`` ``[batch, n_models, d_model]``.

        Losses are computed in the working (normalised) space, as in the replication. In training
        mode this also updates the dead-latent counters and the BatchTopK threshold. ``sparse`` (default:
        on for ``topk`` / ``batchtopk`` on unfolded weights) decodes and back-propagates through the active
        latents only (``helpers.crosscoder.sparse_step``); ``sparse=False`` forces the dense step. A relu
        crosscoder's step runs through ``helpers.crosscoder.relu_step`` (fewer passes, same gradients).
        """
        self._check_input(x)
        if x.shape[0] * batch_world_size() < 2:
            raise ValueError(f"losses needs a batch of 2 activations or more (explained variance and aux-k are "
                             f"relative to its variance), got {x.shape[0]}")
        real("l1_coeff", l1_coeff, 0)
        optional_positive_int("k", k, maximum=self.cfg.d_hidden)
        x_norm = x if normalized else self.normalize(x)
        if self.is_folded:
            x_norm = x_norm.to(self.W_enc.dtype)
        top_k = self.cfg.activation in TOP_K_ACTIVATIONS
        use_sparse = top_k and not self.is_folded if sparse is None else sparse
        if use_sparse and (not top_k or self.is_folded):
            raise ValueError("the sparse step needs a topk / batchtopk crosscoder whose scaling is not folded")
        weights = self.code_weights() * self.penalty_scales if self._penalised else self.code_weights()
        if use_sparse:
            latents, x_hat, sparsity, aux, active = sparse_forward(self, x_norm, k, update_threshold=self.training)
            l0 = torch.tensor(active.numel() / x_norm.shape[0], device=x_norm.device)
            fired = torch.zeros(self.cfg.d_hidden, dtype=torch.bool, device=x_norm.device).index_fill_(0, active, True)
        elif self.cfg.activation == "relu" and not self.is_folded:  # the L1 step in fewer passes (relu_step)
            latents, x_hat, sparsity, l0, fired = relu_step(x_norm, self.W_enc, self.b_enc, self.decoder_weight(),
                                                            self.b_dec, weights)
        elif self.cfg.activation == "jumprelu":  # helpers.crosscoder.jumprelu
            pre, threshold = self.pre_activations(x_norm, normalized=True), self.log_threshold.exp()
            latents = jump_relu(pre, threshold, self.cfg.jumprelu_bandwidth)
            sparsity, aux = jumprelu_penalties(latents, pre, threshold, weights, self.cfg.tanh_scale)
            l0, fired = (latents > 0).sum(-1).float().mean(), (latents > 0).any(0)
            x_hat = self.decode(latents, normalized=True)
        else:
            acts = torch.relu(self.pre_activations(x_norm, normalized=True))
            latents = self._sparsify(acts, k, update_threshold=self.training)
            sparsity = (latents.float() @ weights.float()).mean()
            l0 = latents.detach().sign().sum(-1).mean()  # latents >= 0: sign is 1 where active (fast on CPU)
            fired = latents.detach().amax(dim=0) > 0
            x_hat = self.decode(latents, normalized=True)
        x_target = x_norm.to(x_hat.dtype)
        error = (x_hat - x_target).float()
        squared_error = error.pow(2)
        reconstruction = squared_error.sum(dim=(-2, -1)).mean()
        centred = (x_target - x_target.mean(0)).float().pow(2)
        ev_per_model = (1 - squared_error.sum(-1) / centred.sum(-1)).mean(0)
        explained_variance = (1 - squared_error.sum((-2, -1)) / centred.sum((-2, -1))).mean()
        delta = (error[:, 1] - error[:, 0]).pow(2).sum(-1).mean() if self.cfg.n_models == 2 else error.new_zeros(())

        if not use_sparse and self.cfg.activation != "jumprelu":
            aux = dense_aux_k_loss(self, acts, error.detach()) if top_k else torch.zeros((), device=x.device)
        if self.training:
            self._update_dead_counters(any_over_batch(fired), x_norm.shape[0] * batch_world_size())
        aux_coeff = self.cfg.pre_act_coeff if self.cfg.activation == "jumprelu" else self.cfg.aux_k_coeff
        total = reconstruction + l1_coeff * sparsity + aux_coeff * aux + self.cfg.delta_coeff * delta
        return CrossCoderLosses(
            total=total,
            reconstruction=reconstruction,
            sparsity=sparsity,
            aux_k=aux,
            l0=l0,
            explained_variance=explained_variance.detach(),
            explained_variance_per_model=ev_per_model.detach(),
            latents=latents.detach(),
            delta=delta.detach(),
        )

    def dead_mask(self) -> torch.Tensor:
        """Latents that have not fired in ``cfg.dead_after_tokens`` training tokens, ``[d_hidden]`` bool."""
        return self.tokens_since_fired >= self.cfg.dead_after_tokens

    @torch.no_grad()
    def _update_dead_counters(self, fired: torch.Tensor, n_tokens: int) -> None:
        """Reset the counters of the latents that ``fired`` (bool ``[d_hidden]``), advance the rest by ``n_tokens``."""
        self.tokens_since_fired += n_tokens
        self.tokens_since_fired[fired] = 0

    def extra_repr(self) -> str:
        c = self.cfg
        k = f", k={c.k}" if c.k else ""
        return f"n_models={c.n_models}, d_model={c.d_model}, d_hidden={c.d_hidden}, activation={c.activation}{k}, " \
               f"folded={self.is_folded}"
