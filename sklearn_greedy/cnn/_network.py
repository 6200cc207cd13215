"""The fitted greedy CNN as one torch module, and what the estimator computes from it.

:class:`LayerwiseNetwork` holds everything a fit learns (input stem, layers, per-layer
auxiliary heads) and runs them layer by layer; the functions around it build one
training stage, plan-check a network before any training, and combine the heads' logits.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..training._distributed import rank_share, summed_over_ranks
from ..training._engine import StageResult, previous_stage_results
from ..training._streaming import iter_sequential
from ._modules import AuxiliaryClassifier, GreedyLayer, LayerSpec


class LayerwiseNetwork(nn.Module):
    """Container of everything a fit learns: input stem, layers and per-layer heads."""

    def __init__(self, stem: nn.Module, channels_last: bool = False) -> None:
        super().__init__()
        self.stem = stem
        self.layers = nn.ModuleList()
        self.heads = nn.ModuleList()
        self.channels_last = channels_last

    def standardized(self, x: torch.Tensor) -> torch.Tensor:
        """The stem's output, in the memory format the layers run fastest in: channels
        last when asked (oneDNN's CPU convolutions and cuDNN's tensor cores prefer it; the
        layers keep the format their input has)."""
        x = self.stem(x)
        # getattr: networks pickled before the option existed
        if getattr(self, "channels_last", False) and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def per_layer(self, x: torch.Tensor, stop: int | None = None):
        """Yield the representation after each of the first ``stop`` layers."""
        x = self.standardized(x)
        for layer in self.layers[:stop]:
            x = layer(x)
            yield x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The representation after every trained layer (the next stage's input)."""
        x = self.standardized(x)
        for layer in self.layers:
            x = layer(x)
        return x

    def all_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every layer's auxiliary classifier, shape (n_layers, n, n_classes)."""
        return torch.stack([head(h) for head, h in zip(self.heads, self.per_layer(x))])

    def head_logits(self, x: torch.Tensor, depth: int) -> torch.Tensor:
        """Logits of layer ``depth``'s (1-based) auxiliary classifier."""
        *_, h = self.per_layer(x, depth)
        return self.heads[depth - 1](h)


@dataclass
class GrowingNetwork:
    """The network being grown by a fit, and what each layer's training left."""

    model: LayerwiseNetwork
    results: list[StageResult] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    first_new: int = 0
    pruning: list = field(default_factory=list)
    # the training (and validation) data after the last layer, kept between layers when
    # there is no augmentation: the next layer trains on it, its prefix never rerun
    features: object = None

    @classmethod
    def fresh(cls, stem: nn.Module, device, channels_last: bool = False) -> GrowingNetwork:
        """A network of ``stem`` alone, frozen on ``device``."""
        growth = cls(LayerwiseNetwork(stem))
        growth.model.to(device)
        return growth._frozen(channels_last)

    @classmethod
    def resumed(cls, previous: dict, device, channels_last: bool = False) -> GrowingNetwork:
        """A copy of the network of a previous fit (``previous``: the fitted estimator's
        ``__dict__``), to grow further (warm start, partial_fit)."""
        growth = cls(copy.deepcopy(previous["model_"]).to(device))
        growth.results = previous_stage_results(previous)
        growth.scores = list(previous["layer_scores_"])
        growth.widths = list(previous["layer_widths_"])
        growth.pruning = list(previous.get("pruning_", [None] * len(growth.widths)))
        growth.first_new = len(growth.widths)
        return growth._frozen(channels_last)

    def _frozen(self, channels_last: bool) -> GrowingNetwork:
        self.model.channels_last = channels_last  # a runtime choice of each fit
        self.model.eval().requires_grad_(False)
        return self


def accuracy(logits_fn, X, y: torch.Tensor, batch_size: int, *, sharded: bool = False) -> float:
    """Accuracy of the logits ``logits_fn(batch)`` over ``X`` (a tensor or a streaming
    source) against ``y``, in batches without gradients. ``sharded``: every rank of the
    process group runs this pass alike, each on its share of the rows
    (:func:`~sklearn_greedy.training._distributed.rank_share`), and the hits are summed."""
    n = y.shape[0]
    rows = rank_share(n) if sharded else range(n)
    hits = torch.zeros((), dtype=torch.int64, device=y.device)
    with torch.no_grad():
        starts = range(rows.start, rows.stop, batch_size)
        for start, batch in zip(starts, iter_sequential(X, batch_size, rows)):
            out = logits_fn(batch)
            hits += (out.argmax(1) == y[start : start + out.shape[0]]).sum()
    if sharded:
        hits = summed_over_ranks(hits)
    return int(hits) / n if n else float("nan")


def last_head_accuracy(model: LayerwiseNetwork, data, batch_size: int, *, sharded=False) -> float:
    """Accuracy of the last trained layer's head on ``data`` (un-augmented, eval mode)."""
    depth = len(model.layers)
    return accuracy(
        lambda batch: model.head_logits(batch, depth), data.X, data.y, batch_size, sharded=sharded
    )


def build_stage(spec: LayerSpec, n_classes: int, k: int, batch_norm: bool):
    """Layer ``j`` and its auxiliary classifier, freshly initialised (under the caller's
    seed)."""
    layer = GreedyLayer(spec.in_channels, spec.out_channels, spec.downsample, batch_norm)
    head = AuxiliaryClassifier(spec.out_channels, n_classes, k, spec.aux_width, batch_norm)
    return layer, head


def channel_stats(
    X, batch_size: int, *, sharded: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation, in float64 batches (X may be uint8, or a
    streaming source). ``sharded``: as for :func:`accuracy`, each rank reads its share."""
    rows = rank_share(X.shape[0]) if sharded else range(X.shape[0])
    sums = torch.zeros(2, X.shape[1], dtype=torch.float64, device=X.device)
    for batch in iter_sequential(X, batch_size, rows):
        batch = batch.double()
        sums[0] += batch.sum(dim=(0, 2, 3))
        sums[1] += (batch**2).sum(dim=(0, 2, 3))
    if sharded:
        sums = summed_over_ranks(sums)
    total, squares = sums
    count = X.shape[0] * X.shape[2] * X.shape[3]
    mean = total / count
    std = (squares / count - mean**2).clamp_min(0).sqrt()
    # constant channels (std 0) are centred but not blown up
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return mean.float(), std.float()


def values_per_sample(plan: list[LayerSpec], image_shape, input_downsample: bool) -> int:
    """The most numbers one sample has at any point of the network (its input or a layer's
    output), from the plan: each downsampling halves the side, rounding up."""
    c, h, w = image_shape
    largest = c * h * w
    if input_downsample:
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    for spec in plan:
        if spec.downsample is not None:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        largest = max(largest, spec.out_channels * h * w)
    return largest


def layer_shapes(model: LayerwiseNetwork, image_shape, device) -> list[tuple[int, int, int]]:
    """Shape (C, h, w) of one sample after each layer, from a forward pass of one image."""
    with torch.no_grad():
        probe = torch.zeros((1, *image_shape), device=device)
        return [tuple(int(d) for d in h.shape[1:]) for h in model.per_layer(probe)]


def ensemble_logits(logits: torch.Tensor) -> torch.Tensor:
    """The paper's ensemble ``Z = sum_j 2^j z_j / sum_j 2^j`` of per-layer logits
    (n_layers, n, n_classes): deeper layers, better on their own, weigh more."""
    weights = 2.0 ** torch.arange(1, logits.shape[0] + 1, dtype=logits.dtype)
    return torch.einsum("j,jnc->nc", weights / weights.sum(), logits)


# A layer's convolution weights beyond this many numbers (8 GiB of float32) cannot be
# meant: a plan that asks for them is a parameter mistake, refused before training.
_MAX_LAYER_WEIGHTS = 2**31


def check_plan(plan: list[LayerSpec], image_shape, *, input_downsample: bool) -> None:
    """Refuse a network that cannot be built or run on these images, before training.

    Each downsampling halves the image side (rounding up, since odd sizes are padded);
    once the image is down to one pixel another one only quadruples the width. The
    widths double at each downsampling, so a long run of them also asks for more
    weights than any device holds.
    """
    _, h, w = image_shape
    side = max(h, w)
    allowed = max(1, math.ceil(math.log2(side))) if side > 1 else 1
    n_down = sum(spec.downsample is not None for spec in plan) + int(input_downsample)
    if n_down > allowed:
        raise ValueError(
            f"The network downsamples {n_down} times (downsample_at"
            + (" and input_downsample" if input_downsample else "")
            + f") but images of {h}x{w} pixels allow at most {allowed}: each downsampling "
            "halves the image side. Remove positions from downsample_at."
        )
    for j, spec in enumerate(plan):
        conv_in = spec.in_channels * (4 if spec.downsample == "invertible" else 1)
        n_weights = 9 * conv_in * spec.out_channels
        if n_weights > _MAX_LAYER_WEIGHTS:
            raise ValueError(
                f"Layer {j + 1} would have {spec.out_channels} channels and {n_weights:.3g} "
                f"convolution weights (width doubles at each downsampling); lower width or "
                "use fewer downsamplings."
            )


def check_warm_start(previous: dict, *, classes, image_shape, plan, architecture, n_layers):
    """The warm-start contract: what a fit continuing ``previous`` may not change.

    The classes, the image shape, the architecture (``architecture``, the parameters that
    shaped the fitted layers) and the fitted layers' own plan must stay; ``n_layers`` may
    only grow. Everything else (training settings, device, seed of the new layers) may
    change.
    """
    if not np.array_equal(previous["classes_"], classes):
        raise ValueError(
            "warm_start=True needs the classes of the previous fit "
            f"({previous['classes_'].tolist()}), got {classes.tolist()}."
        )
    if tuple(previous["image_shape_"]) != tuple(image_shape):
        raise ValueError(
            f"warm_start=True needs images of shape {previous['image_shape_']} as in the "
            f"previous fit, got {tuple(image_shape)}."
        )
    fitted = previous["architecture_"]
    for name, value in architecture.items():
        if value != fitted[name]:
            raise ValueError(
                f"warm_start=True cannot change {name} (the fitted layers were built with "
                f"{name}={fitted[name]!r}, now {value!r}); set warm_start=False to refit."
            )
    n_fitted = previous["n_layers_fitted_"]
    if n_layers < n_fitted:
        raise ValueError(
            f"n_layers={n_layers} must be at least the number of layers already fitted "
            f"({n_fitted}) when warm_start=True."
        )
    for j, spec in enumerate(previous["layer_specs_"]):
        new = plan[j]
        if (new.in_channels, new.out_channels, new.downsample) != (
            spec.in_channels, spec.out_channels, spec.downsample,
        ):  # fmt: skip
            raise ValueError(
                f"warm_start=True cannot change fitted layer {j + 1}: downsample_at now gives "
                "it a different downsampling or width."
            )
