"""DP-SGD per-sample clipping in one backward pass ("book-keeping", Bu et al., ICML 2023).

Opacus's ghost clipping runs two backward passes: the first yields each sample's gradient
norm, the second back-propagates the loss reweighted by the clipping factors. Book-keeping
keeps what the first pass saw (every trainable layer's input and output gradient) and forms
the clipped sum from it directly, so the second pass goes:

* ``nn.Linear``: the norm from ``|a_i|^2 |g_i|^2`` without a per-sample gradient (for a
  sequence, Opacus's ghost norm sampler, or per-sample gradients when the sequence is long),
  the clipped sum as one matrix product ``(c * G)^T A``;
* ``nn.Conv2d`` with 8 or more input channels: per-sample gradients as the weight gradient
  of one grouped convolution;
* other layers Opacus knows (convolutions, GroupNorm, LayerNorm, ...): Opacus's per-sample
  gradients, then ``sum_i c_i grad_i``.

The step is exactly the DP-SGD step of Opacus's hooks and ghost modes (same clipping
factor ``min(1, C / (|g_i| + 1e-6))``); noise, scaling, Poisson sampling and accounting stay
with Opacus's optimizer, data loader and accountant. A model this does not cover keeps
Opacus's ghost clipping: a trainable layer without an Opacus sampler, a trainable embedding
(its per-sample gradients would be batch x vocabulary x width), a parameter shared by two
layers.

From the second step on, a layer fed by another trainable layer passes input gradients
only: its weights do not require grad during the pass, so autograd computes no unclipped
weight gradient for it. Layers fed by data (the first convolution) keep theirs, and it is
overwritten. The first step keeps every weight's gradient and checks that the unclipped
sums equal it, which catches a weight used outside its layer; an input changed in place
after a layer used it is caught on every step.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from opacus.grad_sample import GradSampleModule
from opacus.grad_sample.linear import compute_linear_norm_sample
from torch import nn
from torch.linalg import vector_norm
from torch.utils.hooks import RemovableHandle

from fedbus_executor.errors import ModelError

__all__ = ["BookKeepingClipper"]

_Samples = dict[torch.Tensor, torch.Tensor]


@dataclass
class _Layer:
    name: str
    module: nn.Module
    params: list[nn.Parameter]
    activations: list[tuple[torch.Tensor, int] | None] = field(default_factory=list)
    backprops: list[torch.Tensor] = field(default_factory=list)


def _trainable_layers(model: nn.Module) -> list[_Layer]:
    layers = []
    for name, module in model.named_modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if params:
            layers.append(_Layer(name or type(module).__name__, module, params))
    return layers


class BookKeepingClipper:
    """Clip per sample and sum, leaving the result in each trainable parameter's ``.grad``."""

    def __init__(self, model: nn.Module, *, max_grad_norm: float) -> None:
        if not self.supports(model):
            raise ModelError(
                "book-keeping cannot clip this model: a trainable layer without Opacus samplers, "
                "a trainable embedding or a weight shared by two layers"
            )
        self.max_grad_norm = max_grad_norm
        self._layers = _trainable_layers(model)
        self._handles: list[RemovableHandle] = []
        self._stepping = False
        self._checked = False
        for layer in self._layers:
            self._handles.append(layer.module.register_forward_pre_hook(self._root(layer)))
            self._handles.append(layer.module.register_forward_hook(self._keep_input(layer)))
            self._handles.append(
                layer.module.register_full_backward_hook(self._keep_backprop(layer))
            )

    @staticmethod
    def supports(model: nn.Module) -> bool:
        """Whether book-keeping can clip this model's per-sample gradients.

        Every trainable layer needs an Opacus sampler; trainable embeddings are left to
        Opacus's ghost clipping (their per-sample gradients are batch x vocabulary x width),
        and so is a parameter shared by two layers (its gradient has two sources).
        """
        layers = _trainable_layers(model)
        owners = [id(p) for layer in layers for p in layer.params]
        return len(owners) == len(set(owners)) and all(
            type(layer.module) in GradSampleModule.GRAD_SAMPLERS
            and not isinstance(layer.module, nn.Embedding | nn.EmbeddingBag)
            for layer in layers
        )

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _root(self, layer: _Layer):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, inputs: tuple[object, ...]) -> None:
            fed_by_graph = any(isinstance(t, torch.Tensor) and t.requires_grad for t in inputs)
            if self._stepping and not fed_by_graph:
                for p in layer.params:
                    p.requires_grad_(True)

        return hook

    @staticmethod
    def _keep_input(layer: _Layer):  # type: ignore[no-untyped-def]
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], _out: object) -> None:
            if module.training and torch.is_grad_enabled():
                # the version tells, after the backward pass, whether it was changed in place
                kept = (inputs[0].detach(), inputs[0]._version) if inputs else None
                layer.activations.append(kept)

        return hook

    @staticmethod
    def _keep_backprop(layer: _Layer):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, _gin: object, grad_output: tuple[torch.Tensor, ...]) -> None:
            layer.backprops.append(grad_output[0].detach())

        return hook

    def step(
        self, module: nn.Module, inputs: tuple[torch.Tensor, ...], labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward ``inputs``, back-propagate, leave the clipped per-sample sum in ``.grad``.

        Returns the logits and the per-sample cross-entropy losses, detached.
        """
        params = [p for layer in self._layers for p in layer.params]
        for layer in self._layers:
            layer.activations.clear()
            layer.backprops.clear()
        # The first step keeps every weight's autograd gradient, to check the book-keeping
        # against it; later ones turn on only the layers that start the graph (pre-hook).
        checking = not self._checked
        if not checking:
            for p in params:
                p.requires_grad_(False)
        self._stepping = True
        try:
            logits = module(*inputs)
            losses = nn.functional.cross_entropy(logits, labels, reduction="none")
            if len(labels):
                with warnings.catch_warnings():
                    # a layer fed by data (not by another trainable layer) has no input that
                    # requires grad; its hook sees the output gradient, all book-keeping needs
                    warnings.filterwarnings("ignore", message="Full backward hook is firing")
                    losses.sum().backward()  # type: ignore[no-untyped-call]
        finally:
            self._stepping = False
            for p in params:
                p.requires_grad_(True)
        n = len(labels)
        if n == 0:  # an empty Poisson batch: the noise alone makes the step
            for p in params:
                p.grad = torch.zeros_like(p)
            return logits.detach(), losses.detach()
        squared, parts = self._norms(n, losses.device)
        if checking:
            self._check(parts, n, losses.device)
        coef = (self.max_grad_norm / (squared.sqrt() + 1e-6)).clamp(max=1.0)
        grads = _weighted_sums(parts, coef)
        for p in params:
            grad = grads.get(p)
            if grad is None:  # never expected: refuse rather than keep an unclipped .grad
                raise ModelError(f"no clipped gradient for a parameter of shape {tuple(p.shape)}")
            p.grad = grad
        return logits.detach(), losses.detach()

    def _norms(self, n: int, device: torch.device) -> tuple[torch.Tensor, list[_Part]]:
        """Squared per-sample gradient norms, and what each layer needs for its clipped sum."""
        squared = torch.zeros(n, device=device)
        parts: list[_Part] = []
        for layer in self._layers:
            if len(layer.activations) != 1 or len(layer.backprops) != 1:
                raise ModelError(
                    f"layer {layer.name} ran {len(layer.activations)} times in one forward pass; "
                    "DP-SGD here needs each trainable layer to run once per step"
                )
            kept, g = layer.activations.pop(), layer.backprops.pop()
            if kept is None:
                raise ModelError(f"layer {layer.name} was called without a positional input")
            a, version = kept
            if a._version != version:
                raise ModelError(
                    f"the input of layer {layer.name} was changed in place after the layer "
                    "used it; DP-SGD here needs it unchanged (avoid in-place operations there)"
                )
            if a.is_floating_point():
                a = a.to(g.dtype)
            if self._ghost(layer.module, g):
                squared += _linear_squared_norms(layer.module, a, g)
                parts.append(_Part(layer, a, g, {}))
                continue
            samples = _conv2d_samples(layer.module, a, g)
            if samples is None:
                samples = GradSampleModule.GRAD_SAMPLERS[type(layer.module)](layer.module, [a], g)
            for sample in samples.values():
                squared += vector_norm(sample.reshape(n, -1), dim=1).square()
            parts.append(_Part(layer, a, g, samples))
        return squared, parts

    def _check(self, parts: list[_Part], n: int, device: torch.device) -> None:
        """The unclipped sums must equal autograd's gradient; else the model breaks an assumption.

        A weight used outside its layer (through ``F.linear``, say) would make the per-sample
        gradients wrong without this check.
        """
        sums = _weighted_sums(parts, torch.ones(n, device=device))
        grads = [p.grad for part in parts for p in part.layer.params if p.grad is not None]
        # float32 sums in another order differ by rounding, entries that nearly cancel most:
        # compare whole tensors, against the largest gradient too (a bias before a
        # normalisation has a gradient of rounding noise). A misattributed source differs
        # by a share of the gradient itself.
        scale = max((float(vector_norm(g)) for g in grads), default=0.0)
        for part in parts:
            for p in part.layer.params:
                want, got = p.grad, sums.get(p)
                if want is None or got is None:
                    continue
                bound = 1e-3 * float(vector_norm(want)) + 1e-5 * scale
                if float(vector_norm(got - want)) > bound:
                    raise ModelError(
                        f"layer {part.layer.name}: the gradient of its weights does not come "
                        "from its own inputs alone (a weight shared or used outside the layer?); "
                        "DP-SGD cannot clip it per sample here"
                    )
        self._checked = True

    @staticmethod
    def _ghost(module: nn.Module, backprops: torch.Tensor) -> bool:
        """Ghost norms for a Linear layer when cheaper than per-sample gradients.

        For a sequence of length T, the ghost norm costs T^2 (d_in + d_out) per sample and the
        per-sample gradient T d_in d_out; without a sequence (T = 1) the ghost norm always wins.
        """
        if not isinstance(module, nn.Linear) or backprops.dim() not in (2, 3):
            return False
        steps = 1 if backprops.dim() == 2 else backprops.shape[1]
        d_in, d_out = module.in_features, module.out_features
        return steps == 1 or steps * (d_in + d_out) <= d_in * d_out


@dataclass
class _Part:
    """One layer's input, output gradient and (unless ghost-normed) per-sample gradients."""

    layer: _Layer
    a: torch.Tensor
    g: torch.Tensor
    samples: _Samples


def _weighted_sums(parts: list[_Part], coef: torch.Tensor) -> dict[torch.Tensor, torch.Tensor]:
    """``sum_i coef_i grad_i`` for every parameter."""
    n = coef.shape[0]
    sums: dict[torch.Tensor, torch.Tensor] = {}
    for part in parts:
        if part.samples:
            for param, sample in part.samples.items():
                sums[param] = (coef @ sample.reshape(n, -1)).view_as(param)
            continue
        module, a, g = part.layer.module, part.a, part.g
        assert isinstance(module, nn.Linear)
        scaled = (g * coef.view(n, *([1] * (g.dim() - 1)))).reshape(-1, g.shape[-1])
        if module.weight.requires_grad:
            sums[module.weight] = scaled.t() @ a.reshape(-1, a.shape[-1])
        if module.bias is not None and module.bias.requires_grad:
            sums[module.bias] = scaled.sum(0)
    return sums


def _linear_squared_norms(module: nn.Module, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Squared per-sample gradient norms of a Linear layer, weight and bias together.

    Without a sequence, sample i's weight gradient is the outer product ``g_i a_i^T``, whose
    norm is ``|g_i| |a_i|``; with one, Opacus's ghost norm sampler (``G G^T . A A^T``).
    """
    if g.dim() == 3:
        norms = compute_linear_norm_sample(module, [a], g)
        return torch.stack([norm.square() for norm in norms.values()]).sum(0)
    g2 = g.square().sum(1)
    squared = torch.zeros_like(g2)
    if module.weight.requires_grad:
        squared += g2 * a.square().sum(1)
    if module.bias is not None and module.bias.requires_grad:
        squared += g2
    return squared


def _conv2d_samples(module: nn.Module, a: torch.Tensor, g: torch.Tensor) -> _Samples | None:
    """Per-sample gradients of a Conv2d as one grouped convolution's weight gradient.

    The batch goes into the channels (``n * C_in`` inputs, ``n * C_out`` outputs, ``n``
    groups): the weight gradient of that convolution is every sample's gradient, computed by
    oneDNN/cuDNN. Opacus unfolds the input (``n x C_in k^2 x L``, a copy) and multiplies per
    sample; for fedbus's CNN's second layer the grouped form takes a third of the time. With
    a single input channel the unfolded input is small and Opacus's way is as fast, so None
    (use Opacus) for those, and for the cases this does not cover.
    """
    if (
        type(module) is not nn.Conv2d
        or module.groups != 1
        or module.in_channels < 8
        or isinstance(module.padding, str)
        or module.padding_mode != "zeros"
    ):
        return None
    n, c_in = a.shape[:2]
    c_out = g.shape[1]
    samples: _Samples = {}
    if module.weight.requires_grad:
        shape = (n * c_out, c_in, *module.kernel_size)
        _, weight, _ = torch.ops.aten.convolution_backward(
            g.reshape(1, n * c_out, *g.shape[2:]),
            a.reshape(1, n * c_in, *a.shape[2:]),
            torch.empty(shape, dtype=g.dtype, device=g.device),
            None,
            list(module.stride),
            list(module.padding),
            list(module.dilation),
            False,
            [0, 0],
            n,
            [False, True, False],
        )
        samples[module.weight] = weight.view(n, *module.weight.shape)
    if module.bias is not None and module.bias.requires_grad:
        samples[module.bias] = g.sum((2, 3))
    return samples
