"""Book-keeping clipping: the same clipped gradient sum as per-sample gradients computed apart."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from fedbus_executor.bookkeeping import BookKeepingClipper
from fedbus_executor.dataset import DatasetSpec
from fedbus_executor.errors import ModelError
from fedbus_executor.models import build_model


def _reference(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, clip: float
) -> dict[str, torch.Tensor]:
    """sum_i min(1, C / (|g_i| + 1e-6)) g_i, each g_i from its own one-sample backward pass."""
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}

    def one(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, p, (x.unsqueeze(0),))
        return nn.functional.cross_entropy(out, y.unsqueeze(0))

    per_sample = vmap(grad(one), in_dims=(None, 0, 0))(params, inputs, labels)
    norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in per_sample.values()]).sum(0).sqrt()
    coef = (clip / (norms + 1e-6)).clamp(max=1.0)
    return {k: torch.einsum("n,n...->...", coef, g) for k, g in per_sample.items()}


def _clipped(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, clip: float
) -> dict[str, torch.Tensor]:
    clipper = BookKeepingClipper(model, max_grad_norm=clip)
    model.zero_grad(set_to_none=True)
    logits, losses = clipper.step(model, (inputs,), labels)
    clipper.close()
    assert logits.shape == (len(labels), 10)
    plain = nn.functional.cross_entropy(model(inputs), labels, reduction="none")
    assert torch.allclose(losses, plain)
    return {k: v.grad for k, v in model.named_parameters() if v.requires_grad}  # type: ignore[misc]


class _Tokens(nn.Module):
    """Embedding, LayerNorm, a Linear over a sequence (3-D activations), then a head."""

    def __init__(self, width: int = 16, seq_out: int = 24) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, width)
        self.norm = nn.LayerNorm(width)
        self.seq = nn.Linear(width, seq_out)
        self.head = nn.Linear(seq_out, 10)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(
            torch.tanh(self.seq(self.norm(self.embed(tokens)))).mean(1)
        )
        return logits


def _images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


SPEC = DatasetSpec(name="t", feature_shape=(1, 28, 28), classes=tuple("0123456789"))


@pytest.mark.parametrize("clip", [0.05, 1.0, 1e6])  # every sample clipped .. none clipped
@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_matches_per_sample_reference_on_image_models(name: str, clip: float) -> None:
    torch.manual_seed(1)
    model = build_model(name, SPEC)
    x, y = _images(12)
    want = _reference(model, x, y, clip)
    got = _clipped(model, x, y, clip)
    assert got.keys() == want.keys()
    for key in want:
        assert torch.allclose(got[key], want[key], rtol=1e-4, atol=1e-6), key


def test_no_clipping_gives_the_plain_summed_gradient() -> None:
    torch.manual_seed(2)
    model = build_model("cnn", SPEC)
    x, y = _images(8)
    got = _clipped(model, x, y, 1e9)
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y, reduction="sum").backward()  # type: ignore[no-untyped-call]
    for key, param in model.named_parameters():
        assert param.grad is not None
        assert torch.allclose(got[key], param.grad, rtol=1e-4, atol=1e-6), key


def test_token_model_sequence_linear_and_layernorm_behind_a_frozen_embedding() -> None:
    torch.manual_seed(3)
    model = _Tokens()
    assert not BookKeepingClipper.supports(model)  # a trainable embedding: Opacus's ghost path
    model.embed.weight.requires_grad_(False)
    assert BookKeepingClipper.supports(model)
    tokens = torch.randint(0, 50, (10, 7))
    labels = torch.randint(0, 10, (10,))
    want = _reference(model, tokens, labels, 0.5)
    got = _clipped(model, tokens, labels, 0.5)
    assert set(got) == set(want) == {"norm.weight", "norm.bias", "seq.weight", "seq.bias",
                                     "head.weight", "head.bias"}  # fmt: skip
    for key in want:
        assert torch.allclose(got[key], want[key], rtol=1e-4, atol=1e-6), key


def test_the_second_step_matches_too() -> None:
    torch.manual_seed(6)
    model = build_model("cnn", SPEC)
    clipper = BookKeepingClipper(model, max_grad_norm=0.3)
    x, y = _images(9)
    clipper.step(model, (x[:4],), y[:4])  # the first step checks against autograd
    model.zero_grad(set_to_none=True)
    clipper.step(model, (x,), y)
    clipper.close()
    want = _reference(model, x, y, 0.3)
    for key, param in model.named_parameters():
        assert param.grad is not None
        assert torch.allclose(param.grad, want[key], rtol=1e-4, atol=1e-6), key


def test_frozen_layers_get_no_gradient_and_keep_requires_grad() -> None:
    torch.manual_seed(4)
    model = build_model("cnn", SPEC)
    features, head = model.get_submodule("features"), model.get_submodule("head")
    for p in features.parameters():
        p.requires_grad_(False)
    x, y = _images(6)
    want = _reference(model, x, y, 0.1)
    got = _clipped(model, x, y, 0.1)
    assert set(got) == set(want)
    assert all(k.startswith("head.") for k in got)
    for key in want:
        assert torch.allclose(got[key], want[key], rtol=1e-4, atol=1e-6), key
    assert not any(p.requires_grad for p in features.parameters())
    assert all(p.requires_grad for p in head.parameters())
    assert all(p.grad is None for p in features.parameters())


def test_empty_poisson_batch_gives_zero_gradients() -> None:
    model = build_model("cnn", SPEC)
    clipper = BookKeepingClipper(model, max_grad_norm=1.0)
    x, y = _images(0)
    _, losses = clipper.step(model, (x,), y)
    assert losses.shape == (0,)
    for param in model.parameters():
        assert param.grad is not None
        assert not param.grad.any()


def test_layer_run_twice_is_refused_and_unknown_layer_not_supported() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Linear(10, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.inner(torch.relu(self.inner(x)))
            return out

    model = Twice()
    clipper = BookKeepingClipper(model, max_grad_norm=1.0)
    with pytest.raises(ModelError, match="inner ran 2 times"):
        clipper.step(model, (torch.rand(4, 10),), torch.randint(0, 10, (4,)))

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale

    assert not BookKeepingClipper.supports(Scaled())
    with pytest.raises(ModelError, match="Opacus samplers"):
        BookKeepingClipper(Scaled(), max_grad_norm=1.0)


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "bias"),
    [(1, 1, 1, True), (2, 0, 1, False), (1, 2, 2, True), (2, (1, 0), 1, True)],
)
def test_grouped_conv_per_sample_gradients_equal_opacus(
    stride: int, padding: int | tuple[int, int], dilation: int, bias: bool
) -> None:
    from opacus.grad_sample.conv import compute_conv_grad_sample

    from fedbus_executor.bookkeeping import _conv2d_samples

    torch.manual_seed(5)
    conv = nn.Conv2d(8, 6, 3, stride=stride, padding=padding, dilation=dilation, bias=bias)
    a = torch.rand(5, 8, 11, 9)
    g = torch.rand_like(conv(a))
    got = _conv2d_samples(conv, a, g)
    want = compute_conv_grad_sample(conv, [a], g)
    assert got is not None
    assert got.keys() == want.keys()
    for param in want:
        assert torch.allclose(got[param], want[param], rtol=1e-4, atol=1e-5)


def test_grouped_conv_leaves_other_convolutions_to_opacus() -> None:
    from fedbus_executor.bookkeeping import _conv2d_samples

    a, g = torch.rand(2, 8, 6, 6), torch.rand(2, 8, 6, 6)
    assert _conv2d_samples(nn.Conv2d(8, 8, 3, padding=1, groups=2), a, g) is None
    assert _conv2d_samples(nn.Conv2d(8, 8, 3, padding="same"), a, g) is None
    assert _conv2d_samples(nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"), a, g) is None
    assert _conv2d_samples(nn.Conv2d(1, 8, 3, padding=1), a[:, :1], g) is None


def test_tied_weights_are_left_to_opacus() -> None:
    model = _Tokens(width=10, seq_out=10)
    model.head = nn.Linear(10, 50)
    model.head.weight = model.embed.weight  # tied, as language models do
    model.embed.weight.requires_grad_(True)
    assert not BookKeepingClipper.supports(model)


def test_a_weight_used_outside_its_layer_is_refused_at_the_first_step() -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.fc(x) + nn.functional.linear(x, self.fc.weight)
            return out

    model = Functional()
    clipper = BookKeepingClipper(model, max_grad_norm=1.0)
    with pytest.raises(ModelError, match="does not come from its own inputs"):
        clipper.step(model, (torch.rand(4, 6),), torch.randint(0, 10, (4,)))


def test_an_input_changed_in_place_is_refused() -> None:
    class InPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l1, self.l2 = nn.Linear(6, 6), nn.Linear(6, 10)
            self.in_place = False

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.l1(x) + 0
            out: torch.Tensor = self.l2(h)
            if self.in_place:
                h.mul_(3)
            return out

    model = InPlace()
    clipper = BookKeepingClipper(model, max_grad_norm=1.0)
    x, y = torch.rand(4, 6), torch.randint(0, 10, (4,))
    clipper.step(model, (x,), y)
    model.in_place = True
    with pytest.raises(ModelError, match="changed in place"):
        clipper.step(model, (x,), y)


def test_a_layer_called_with_keywords_only_is_refused() -> None:
    class Keywords(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(6, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(input=x)  # type: ignore[no-any-return]

    model = Keywords()
    clipper = BookKeepingClipper(model, max_grad_norm=1.0)
    with pytest.raises(ModelError, match="without a positional input"):
        clipper.step(model, (torch.rand(4, 6),), torch.randint(0, 10, (4,)))
