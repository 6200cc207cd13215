"""Torch block solvers: local search with Adam through the training engine, and Algorithm 2.

:func:`adam_block` trains one block's subproblem (7) of Gautam et al. with Adam through
:func:`~sklearn_greedy.training._engine.train_stage` (Remark 2), for any loss; for the squared loss
the head may be re-fitted exactly afterwards (``TorchSetup.refit_head``).
:func:`alternating_block` is Algorithm 2: exact least squares (11) for the head
alternating with the single-hidden-layer problem (12), which moves the block's weights
only. The numpy solvers, the shared block data and the exact heads are in
:mod:`sklearn_greedy.implicit._solvers`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..training._engine import StageData, StageResult, TrainingConfig, train_stage
from ..training._runtime import make_generator, torch_seeded
from ._model import (
    BlockModule,
    activation_torch,
    draw_range,
    ridge_lstsq,
    rows_at,
    weighted_mean,
)
from ._solvers import BlockData, BlockFit, _Scaled, block_states, screen_units

#: A screened start of an Adam-trained block (``TorchSetup.screen``) draws this many
#: training samples and this many random candidate units: a few hundredths of a second
#: per block, whatever the size of the data.
SCREEN_SAMPLES, SCREEN_CANDIDATES = 4096, 256


@dataclass
class TorchSetup:
    """How the torch solvers train: the engine's settings and the loss."""

    config: TrainingConfig
    device: torch.device
    seed: int
    loss_fn: object
    score_fn: object
    torch_targets: object
    squared_loss: bool
    alpha: float
    #: how the new units start: "screened" (the candidates that best follow the loss's
    #: negative gradient), "sample" (each unit's hyperplane through a random training
    #: sample) or "default" (torch's default initialisation of a linear layer)
    init: str = "sample"
    #: re-fit the head ``C_1..C_i`` by exact (ridge) least squares after the block
    #: (squared loss only)
    refit_head: bool = True


def _module(data: BlockData, n_new: int, activation: str, setup: TorchSetup, q: int):
    """A :class:`BlockModule` starting at the previous model, and its stage data."""
    n_prev, n_inputs = data.X.shape[1], data.U.shape[1]
    with torch_seeded(setup.seed):
        module = BlockModule(n_prev, n_inputs, n_new, q, activation_torch(activation))
    C, c = data.prev_head
    with torch.no_grad():
        module.head_prev.weight.copy_(torch.as_tensor(C))
        module.head_prev.bias.copy_(torch.as_tensor(c))
    module.to(setup.device)
    F = data.F_t
    generator = make_generator(setup.seed + 1, setup.device)
    if setup.init != "default":
        _sample_biases(module, data, n_new, setup, generator)
    if setup.init == "screened":
        _screened_start(module, data, activation, setup, q)
    stage = StageData(F, setup.torch_targets(data.T).to(setup.device))
    if data.weights is not None:
        stage.sample_weight = torch.as_tensor(data.weights, dtype=torch.float32, device=F.device)
    if data.has_validation:
        stage.X_val = data.F_val_t
        stage.y_val = setup.torch_targets(data.T_val).to(setup.device)
    return module, stage, generator


def _sample_biases(module, data: BlockData, n_new: int, setup: TorchSetup, generator):
    """Data-dependent biases: each new unit's hyperplane passes through a random training
    sample, so no unit starts dead or constant on the data."""
    F = data.F_t
    if data.weights is None:
        rows = torch.randint(0, F.shape[0], (n_new,), generator=generator, device=setup.device)
    else:  # a sample of weight k is drawn as k repeated samples would be
        m = draw_range(data.weights, F.shape[0])
        draws = torch.randint(0, m, (n_new,), generator=generator, device=setup.device)
        rows = torch.as_tensor(rows_at(draws.cpu().numpy(), data.weights, m), device=F.device)
    with torch.no_grad():
        module.hidden.bias.copy_(-(module.hidden.weight * F[rows]).sum(dim=1))


def _screened_start(module, data: BlockData, activation: str, setup: TorchSetup, q: int):
    """Start the new units at the random candidates that best follow the loss's negative
    gradient at the previous model (:func:`screen_units` on ``SCREEN_SAMPLES`` training
    samples): with the new head columns at zero, these are the units along which the
    first steps lower the loss fastest, as in gradient boosting. Each unit keeps its
    hyperplane and the row norm of the default initialisation."""
    F = data.F_t
    n, n_inputs = F.shape[0], module.n_inputs
    rng = np.random.default_rng(setup.seed + 2)
    rows = np.sort(rng.choice(n, min(n, SCREEN_SAMPLES), replace=False))
    Fs = F[torch.as_tensor(rows, device=F.device)].double().cpu().numpy()
    weights = None if data.weights is None else data.weights[rows]
    C, c = data.prev_head
    out = Fs[:, n_inputs:] @ C.T + c
    if data.T.ndim == 1:  # class codes: the cross-entropy's negative gradient
        probabilities = np.exp(out - out.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        residual = np.eye(q)[data.T[rows]] - probabilities
    else:
        residual = data.T[rows] - out
    scaled = _Scaled(Fs, weights)
    centred = Fs[:, n_inputs:] - weighted_mean(Fs[:, n_inputs:], weights)
    if weights is not None:
        root = np.sqrt(weights)[:, None]
        residual, centred = residual * root, centred * root
    basis = np.linalg.qr(centred)[0] if centred.shape[1] else None
    n_new = module.hidden.out_features
    theta = screen_units(
        scaled.F1[:, :-1], residual, basis, n_new, rng, SCREEN_CANDIDATES, activation,
        weights=weights,
    )  # fmt: skip
    W, b = scaled.unscale(theta)
    with torch.no_grad():
        norms = module.hidden.weight.double().norm(dim=1).cpu().numpy()
        factor = norms / np.maximum(np.linalg.norm(W, axis=1), 1e-12)
        weight = torch.as_tensor(W * factor[:, None], dtype=module.hidden.weight.dtype)
        module.hidden.weight.copy_(weight)
        module.hidden.bias.copy_(torch.as_tensor(b * factor, dtype=module.hidden.bias.dtype))


def _exact_head(data: BlockData, W, b, activation, alpha):
    states = np.hstack([data.X, block_states(activation, W, b, data.X, data.U)])
    return ridge_lstsq(states, data.T, alpha * data.total_weight, data.weights)


def _train(module, stage: StageData, setup: TorchSetup, generator) -> StageResult:
    """One run of the engine on a block's stage, with the solver's settings."""
    return train_stage(
        module, stage, loss_fn=setup.loss_fn, config=setup.config, generator=generator,
        score_fn=setup.score_fn,
    )  # fmt: skip


def adam_block(data: BlockData, n_new: int, *, activation: str, setup: TorchSetup, q: int):
    """Block ``i`` by Adam on subproblem (7): the new units and the whole head together,
    the head starting at the previous model's (so the block starts at its loss). The head
    is the one Adam left, or its exact least-squares refit (``setup.refit_head``)."""
    module, stage, generator = _module(data, n_new, activation, setup, q)
    result = _train(module, stage, setup, generator)
    W, b = module.block_weights()
    if setup.squared_loss and setup.refit_head:
        head = _exact_head(data, W, b, activation, setup.alpha)
    else:
        head = module.head()
    return BlockFit(W, b, head, result)


def alternating_block(
    data: BlockData, n_new: int, *, activation: str, setup: TorchSetup, q: int, n_rounds: int
):
    """Algorithm 2: ``n_rounds`` of exact least squares (11) for ``C_1..C_i``, then the
    single-hidden-layer problem (12) for ``A~_i = [A_{i,:}, B_i]`` alone on the residual
    ``Y - sum_{j<i} C_j X_j``, by Adam: the whole head, ``C_i`` included, stays at its
    least-squares value during (12). The head returned is the last round's (11), or with
    ``setup.refit_head`` a final (11) for the last ``A~_i``."""
    module, stage, generator = _module(data, n_new, activation, setup, q)
    n_prev = data.X.shape[1]
    combined = StageResult()
    for _ in range(n_rounds):
        W, b = module.block_weights()
        C, c = _exact_head(data, W, b, activation, setup.alpha)
        with torch.no_grad():
            dev = setup.device
            module.head_prev.weight.copy_(torch.as_tensor(C[:, :n_prev], device=dev))
            module.head_prev.bias.copy_(torch.as_tensor(c, device=dev))
            module.head_new.weight.copy_(torch.as_tensor(C[:, n_prev:], device=dev))
        heads = (module.head_prev, module.head_new)
        for head in heads:
            head.requires_grad_(False)
        result = _train(module, stage, setup, generator)
        for head in heads:
            head.requires_grad_(True)
        offset = len(combined.history)
        combined.history.extend({**r, "epoch": r["epoch"] + offset} for r in result.history)
        combined.best_epoch = offset + result.best_epoch
        combined.stopped_early = result.stopped_early
    W, b = module.block_weights()
    if setup.refit_head:
        return BlockFit(W, b, _exact_head(data, W, b, activation, setup.alpha), combined)
    return BlockFit(W, b, module.head(), combined)
