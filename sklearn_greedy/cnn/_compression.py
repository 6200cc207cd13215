"""Layerwise model compression (Belilovsky et al., 2019, Sec. 4.3): Taylor filter pruning.

Right after layer ``j`` is trained, its filters are ranked by the first-order Taylor
criterion of Molchanov et al. (2016): for channel ``c`` of the layer's output ``z``,

    Theta(c) = mean over samples of | mean over positions of  z_c * dL/dz_c |,

the first-order change of the auxiliary loss ``L`` when the channel is removed, computed
on the training data in eval mode. The lowest-ranked filters are cut from the layer (its
convolution and BatchNorm lose those output channels, the auxiliary classifier the
matching inputs), then the auxiliary classifier alone is fine-tuned on the remaining
features. The next layer is built on the reduced width. The modules are truly smaller:
nothing is masked, so parameter counts and exported networks shrink.
"""

from __future__ import annotations

from dataclasses import replace
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..training._distributed import rank_share, summed_over_ranks
from ._modules import AuxiliaryClassifier, GreedyLayer, LayerSpec


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or frozen) of ``module``.

    >>> count_parameters(nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in module.parameters())


def prune_targets(prune_to, trained_widths: list[int]) -> list[int | None]:
    """The width each layer keeps, from the ``prune_to`` parameter (None: not pruned).

    ``prune_to`` is None, an int (every layer keeps that many filters), a float in (0, 1]
    (each layer keeps that fraction of its trained width, rounded, at least one), or a
    sequence with one entry per layer, each an int or None. A target equal to a layer's
    trained width leaves it as trained (None). A target above a layer's
    trained width, zero or negative is refused with a ValueError naming ``prune_to``.

    >>> prune_targets(0.5, [128, 128, 256])
    [64, 64, 128]
    >>> prune_targets([64, None], [128, 128])
    [64, None]
    """
    n_layers = len(trained_widths)
    if prune_to is None:
        return [None] * n_layers
    if isinstance(prune_to, bool):
        raise ValueError(f"prune_to must be an int, a fraction or a list, got {prune_to!r}.")
    if isinstance(prune_to, Integral):
        targets = [int(prune_to)] * n_layers
    elif isinstance(prune_to, Real):
        if not 0 < prune_to <= 1:
            raise ValueError(f"prune_to={prune_to!r}: a fraction must be in (0, 1].")
        targets = [max(1, round(prune_to * w)) for w in trained_widths]
    else:
        targets = list(np.asarray(prune_to, dtype=object).ravel())
        if len(targets) != n_layers:
            raise ValueError(
                f"prune_to has {len(targets)} entries but the network has n_layers="
                f"{n_layers}: give one width (or None) per layer."
            )
    checked = []
    for j, (target, width) in enumerate(zip(targets, trained_widths), start=1):
        if target is None:
            checked.append(None)
            continue
        if isinstance(target, (bool, np.bool_)) or not isinstance(target, (Integral, np.integer)):
            raise ValueError(f"prune_to gives layer {j} {target!r}; widths must be ints or None.")
        if not 1 <= target <= width:
            raise ValueError(
                f"prune_to asks layer {j} to keep {target} filters, but it is trained with "
                f"{width}: a target must be between 1 and the trained width."
            )
        # a target equal to the trained width removes nothing: the layer stays as trained
        checked.append(int(target) if target < width else None)
    return checked


def pruned_plan(plan: list[LayerSpec], targets: list[int | None]) -> list[LayerSpec]:
    """The layers' shapes after pruning: layer ``j`` outputs ``targets[j]`` channels and
    layer ``j + 1`` reads them."""
    final = []
    for j, spec in enumerate(plan):
        if j and targets[j - 1] is not None:
            spec = replace(spec, in_channels=targets[j - 1])
        if targets[j] is not None:
            spec = replace(spec, out_channels=targets[j])
        final.append(spec)
    return final


def round_widths(trained: int, target: int, rounds: int) -> list[int]:
    """The widths of ``rounds`` pruning rounds from ``trained`` filters down to ``target``,
    geometrically spaced, each round removing at least one filter (fewer rounds when
    there are fewer filters to remove).

    Examples
    --------
    >>> from sklearn_greedy.cnn._compression import round_widths
    >>> round_widths(128, 64, 1), round_widths(128, 64, 3), round_widths(4, 3, 3)
    ([64], [102, 81, 64], [3])
    """
    widths = []
    for r in range(1, rounds + 1):
        w = int(round(trained * (target / trained) ** (r / rounds)))
        w = max(target, min(w, (widths[-1] if widths else trained) - 1))
        if not widths or w < widths[-1]:
            widths.append(w)
    return widths


def taylor_scores(
    layer: nn.Module, head: nn.Module, prefix, X: torch.Tensor, y: torch.Tensor, *,
    batch_size: int, sample_weight: torch.Tensor | None = None, sharded: bool = False,
) -> torch.Tensor:  # fmt: skip
    """Molchanov et al.'s first-order Taylor criterion of each output channel of ``layer``.

    For each sample, the spatial mean of ``activation * gradient`` of the auxiliary loss
    (cross-entropy of ``head``, weighted by ``sample_weight``) with respect to the layer's
    output, in absolute value; averaged over the samples. Both modules run in eval mode.
    ``sharded``: every rank of the process group calls it alike, scores its
    :func:`~sklearn_greedy.training._distributed.rank_share` of the rows, and the sums are
    all-reduced.

    Returns
    -------
    torch.Tensor of shape (C,)
        One non-negative score per channel; the lowest are the first to prune.
    """
    n = X.shape[0]
    rows = rank_share(n) if sharded else range(n)
    # an empty share still gives its (zero) sums to the all-reduce
    starts = range(rows.start, rows.stop, batch_size) if len(rows) else [rows.start]
    total = None
    for start in starts:
        stop = min(start + batch_size, rows.stop)
        xb, yb = X[start:stop], y[start:stop]
        with torch.no_grad():
            h = layer(prefix(xb))
        h.requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(head(h), yb, reduction="none")
            if sample_weight is not None:
                loss = loss * sample_weight[start:stop]
            (grad,) = torch.autograd.grad(loss.sum(), h)
        per_sample = (h.detach() * grad).mean(dim=(2, 3)).abs()
        part = per_sample.double().sum(0)
        total = part if total is None else total + part
    if sharded:
        total = summed_over_ranks(total)
    return (total / n).float()


def channels_to_keep(scores: torch.Tensor, width: int) -> torch.Tensor:
    """Indices (ascending) of the ``width`` highest-scoring channels.

    >>> channels_to_keep(torch.tensor([0.3, 0.1, 0.5, 0.2]), 2).tolist()
    [0, 2]
    """
    top = torch.topk(scores, width, sorted=False).indices
    return torch.sort(top).values


def _set_parameter(module: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(module, name)
    setattr(module, name, nn.Parameter(value.clone(), requires_grad=old.requires_grad))


def _keep_batch_norm(bn: nn.Module, idx: torch.Tensor) -> None:
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        return
    for name in ("weight", "bias"):
        if getattr(bn, name) is not None:
            _set_parameter(bn, name, getattr(bn, name).detach()[idx])
    for name in ("running_mean", "running_var"):
        if getattr(bn, name) is not None:
            setattr(bn, name, getattr(bn, name)[idx].clone())
    bn.num_features = int(idx.numel())


def prune_layer_outputs(layer: GreedyLayer, keep: torch.Tensor) -> None:
    """Keep only the output channels ``keep`` of a greedy layer (in place)."""
    conv = layer.conv
    _set_parameter(conv, "weight", conv.weight.detach()[keep])
    if conv.bias is not None:
        _set_parameter(conv, "bias", conv.bias.detach()[keep])
    conv.out_channels = int(keep.numel())
    _keep_batch_norm(layer.bn, keep)


def _keep_linear_inputs(linear: nn.Linear, idx: torch.Tensor) -> None:
    _set_parameter(linear, "weight", linear.weight.detach()[:, idx])
    linear.in_features = int(idx.numel())


def _flat_indices(keep: torch.Tensor, per_channel: int) -> torch.Tensor:
    """Indices, in a flattened (C, h, w) vector, of the channels ``keep``."""
    offsets = torch.arange(per_channel, device=keep.device)
    return (keep.view(-1, 1) * per_channel + offsets.view(1, -1)).flatten()


def network_size(model) -> int:
    """Parameters of an assembled network: its layers and its last head (the earlier
    auxiliary heads serve only staged predictions and the ensemble)."""
    return sum(count_parameters(m) for m in model.layers) + count_parameters(model.heads[-1])


def prune_head_inputs(head: nn.Module, keep: torch.Tensor) -> None:
    """Make ``head`` read only the input channels ``keep`` (in place).

    Handles the auxiliary classifiers of the package: the first hidden convolution of an
    :class:`~sklearn_greedy.nn.AuxiliaryClassifier` (or, for ``k = 1``, its 2x2 BatchNorm
    and linear layer), and the first linear layer of a VGG classifier.
    """
    from ._vgg import VGGClassifier

    if isinstance(head, VGGClassifier):
        side = head.avgpool.output_size
        side = side if isinstance(side, int) else side[0]
        _keep_linear_inputs(head.classifier[0], _flat_indices(keep, side * side))
        return
    if not isinstance(head, AuxiliaryClassifier):
        raise TypeError(f"Cannot prune the inputs of a {type(head).__name__}.")
    if len(head.hidden):
        conv = head.hidden[0]
        _set_parameter(conv, "weight", conv.weight.detach()[:, keep])
        conv.in_channels = int(keep.numel())
        return
    flat = _flat_indices(keep, 4)  # the 2x2 average, flattened channel-major
    _keep_batch_norm(head.bn, flat)
    _keep_linear_inputs(head.linear, flat)


def prune_stage(layer: GreedyLayer, head: nn.Module, keep: torch.Tensor) -> None:
    """Remove every channel of ``layer``'s output but ``keep``, in the layer and its head."""
    prune_layer_outputs(layer, keep)
    prune_head_inputs(head, keep)
