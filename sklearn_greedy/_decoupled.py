"""Decoupled greedy training (Belilovsky, Eickenberg and Oyallon, "Decoupled Greedy Learning
of CNNs", ICML 2020): every layer at once.

Each layer trains on the same batches as the others, with its own auxiliary loss and its
own optimizer; its input is the output of the layer below on the same batch, detached, so
no gradient flows between layers. One pass over the data trains all the layers: the data is
shuffled, sliced and augmented once per batch, where the sequential schedule does it once per
layer and recomputes the frozen prefix on every augmented batch.

Built from the engine's public pieces (:class:`~sklearn_greedy._engine.StageInputs`,
:func:`~sklearn_greedy._engine.make_optimizer`, :func:`~sklearn_greedy._engine.lr_at`,
:class:`~sklearn_greedy._engine.StageResult`), with the engine's conventions: data on the
device, batches as index slices, one host synchronisation per epoch, the optimizer
re-created at each learning-rate decay when ``restart_on_decay``.

Keep-best and early stopping act on the network as a whole: each layer's head was trained
on the layers below *as they were at that epoch*, so the layers are kept (and stopped)
together, at the epoch of the best score of the last layer's head (validation accuracy, or
minus its training loss without validation data).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from ._engine import (
    StageData,
    StageInputs,
    StageResult,
    TrainingConfig,
    TrainingDivergedError,
    accuracy_sum,
    lr_at,
    make_optimizer,
)
from ._streaming import iter_sequential

# as in the engine: a kept loss a thousand times above the first step's has diverged
_DIVERGENCE_FACTOR = 1e3


class DecoupledTrainer(StageInputs):
    """Trains a stack of stages ``(layer, head)`` together, each on its own loss.

    Parameters
    ----------
    layers : list of torch.nn.Module
        The new layers, in order, on the device of the data.
    heads : list of torch.nn.Module
        One auxiliary classifier per layer.
    data : StageData
        Raw training (and validation) tensors.
    loss_fn : callable
        ``loss_fn(output, target)``; called with ``reduction="none"`` under sample weights.
    config : TrainingConfig
        Settings shared by every layer's optimizer (SGD or Adam, schedule, keep-best,
        plateau rule).
    generator : torch.Generator
        Shuffling and augmentation.
    prefix : callable, optional
        Frozen layers below the new ones (a warm start), in eval mode.
    augment : callable, optional
        ``augment(batch, generator)`` applied once per raw training batch.
    labels : list of str, optional
        Names of the layers in messages.
    """

    def __init__(
        self, layers, heads, data: StageData, *, loss_fn: Callable, config: TrainingConfig,
        generator: torch.Generator, prefix=None, augment=None, labels=None,
    ):  # fmt: skip
        self.layers = list(layers)
        self.heads = list(heads)
        self.data = data
        self.loss_fn = loss_fn
        self.config = config
        self.generator = generator
        self.prefix = prefix
        self.augment = augment
        self.labels = labels or [f"layer {j + 1}" for j in range(len(self.layers))]
        self.results = [StageResult() for _ in self.layers]
        self._stages = [nn.Sequential(layer, head) for layer, head in zip(layers, heads)]
        self._initial_losses: list[float | None] = [None] * len(self.layers)
        self._best_value = None
        self._best_state = None
        self._no_improve = 0

    # ----------------------------------------------------------------- the loop
    def fit(self) -> list[StageResult]:
        """Run the epochs and return one :class:`StageResult` per layer."""
        self._cache_prefix_features()
        self.optimizer = self._make_optimizer(self.config)
        for epoch in range(self.config.max_epochs):
            records = self.run_epoch(epoch)
            for result, record in zip(self.results, records):
                result.history.append(record)
            self._update_best(records, epoch + 1)
            self._report(records)
            if self._no_improve >= self.config.n_iter_no_change:
                for result in self.results:
                    result.stopped_early = True
                break
        self._restore_best()
        self._check_not_diverged()
        for stage in self._stages:
            stage.eval()
        return self.results

    def run_epoch(self, epoch: int) -> list[dict]:
        """One pass over the data training every layer; one record per layer."""
        start = time.perf_counter()
        lr = self._set_lr(epoch)
        for stage in self._stages:
            stage.train()
        device = self.data.X.device
        n_stages = len(self._stages)
        loss_sums = torch.zeros(n_stages, device=device)
        score_sums = torch.zeros(n_stages, device=device)
        n = self.data.X.shape[0]
        for idx, xb in self._raw_batches(self._index_batches(device)):
            xb, yb = self._batch(idx, xb)
            losses, outs = self.train_step(xb, yb, idx)
            with torch.no_grad():
                for j, (loss, out) in enumerate(zip(losses, outs)):
                    loss_sums[j] += loss.detach() * idx.shape[0]
                    score_sums[j] += accuracy_sum(out.detach(), yb)
        losses, scores = (loss_sums / n).tolist(), (score_sums / n).tolist()
        valid = self.validation_scores() if self.data.has_validation else [None] * n_stages
        seconds = time.perf_counter() - start
        records = [
            {"epoch": epoch + 1, "train_loss": losses[j], "train_score": scores[j],
             "valid_score": valid[j], "lr": lr, "seconds": seconds}
            for j in range(n_stages)
        ]  # fmt: skip
        self._check_finite(records)
        return records

    def train_step(self, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor):
        """Forward, backward and update of every layer and its head on one batch.

        Layer ``j`` sees the output of layer ``j - 1`` detached, so the graphs of the
        layers are disjoint: one backward of the summed losses gives each layer exactly
        the gradient of its own loss, and one optimizer step (a parameter group per layer)
        updates each as its own optimizer would, for a fraction of the per-call overhead
        of one backward and one step per layer. Returns each layer's loss and head output.
        """
        losses, outs = [], []
        with self.config.autocast(xb.device):
            for layer, head in zip(self.layers, self.heads):
                h = layer(xb)
                out = head(h)
                losses.append(self._loss(out, yb, idx))
                outs.append(out)
                xb = h.detach()
        if self._initial_losses[0] is None:
            self._initial_losses = [float(loss.detach()) for loss in losses]
        self.optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()
        self.optimizer.step()
        return losses, outs

    def validation_scores(self) -> list[float]:
        """Accuracy of every layer's head (eval mode) on the validation data, in one pass."""
        for stage in self._stages:
            stage.eval()
        X_val, y_val, size = self.data.X_val, self.data.y_val, self.config.eval_batch_size
        totals = torch.zeros(len(self._stages), device=X_val.device)
        with torch.no_grad(), self.config.autocast(X_val.device):
            for s, x in zip(range(0, X_val.shape[0], size), iter_sequential(X_val, size)):
                x, yb = self._features(x, cached=self._valid_cached), y_val[s : s + x.shape[0]]
                for j, (layer, head) in enumerate(zip(self.layers, self.heads)):
                    x = layer(x)
                    totals[j] += accuracy_sum(head(x), yb)
        return (totals / X_val.shape[0]).tolist()

    # ----------------------------------------------------------------- the steps
    @staticmethod
    def _trainable(stage: nn.Module) -> list[nn.Parameter]:
        return [p for p in stage.parameters() if p.requires_grad]

    def _make_optimizer(self, config: TrainingConfig) -> torch.optim.Optimizer:
        """One optimizer with a parameter group per layer: SGD and Adam act on each
        parameter alone, so this is each layer's own optimizer, stepped in one call."""
        groups = [{"params": self._trainable(stage)} for stage in self._stages]
        return make_optimizer(groups, config)

    def _set_lr(self, epoch: int) -> float:
        lr = lr_at(epoch, self.config)
        if self.config.restart_on_decay and epoch and lr != lr_at(epoch - 1, self.config):
            self.optimizer = self._make_optimizer(replace(self.config, lr=lr))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _check_finite(self, records: list[dict]) -> None:
        for label, stage, record in zip(self.labels, self._stages, records):
            finite = math.isfinite(record["train_loss"]) and all(
                bool(torch.isfinite(p).all()) for p in stage.parameters()
            )
            if not finite:
                raise TrainingDivergedError(
                    f"{label}: training diverged at epoch {record['epoch']} (loss "
                    f"{record['train_loss']:.4g}, lr {record['lr']:.4g}); the weights are no "
                    "longer finite. Lower lr or check the scale of the input."
                )

    def _update_best(self, records: list[dict], epoch: int) -> None:
        last = records[-1]
        value = last["valid_score"] if self.data.has_validation else -last["train_loss"]
        best = self._best_value
        improved = best is None or value > best + self.config.tol
        self._no_improve = 0 if improved else self._no_improve + 1
        if best is None or value > best:
            self._best_value = value
            for result in self.results:
                result.best_epoch = epoch
            if self.config.keep_best:
                self._best_state = [
                    {k: v.detach().clone() for k, v in s.state_dict().items()} for s in self._stages
                ]

    def _restore_best(self) -> None:
        if self.config.keep_best and self._best_state is not None:
            for stage, state in zip(self._stages, self._best_state):
                stage.load_state_dict(state)
        else:
            for result in self.results:
                result.best_epoch = result.n_iter

    def _check_not_diverged(self) -> None:
        """Every kept layer gives finite outputs and a loss that has not exploded."""
        size = self.config.eval_batch_size
        x, yb = self.data.X[:size], self.data.y[:size]
        with torch.no_grad(), self.config.autocast(x.device):
            x = self._features(x, cached=self._train_cached)
            for j, (layer, head) in enumerate(zip(self.layers, self.heads)):
                if self._initial_losses[j] is None:
                    return
                self._stages[j].eval()
                x = layer(x)
                out = head(x)
                loss = float(self.loss_fn(out, yb))
                worst = max([loss] + self.results[j].loss_curve)
                limit = _DIVERGENCE_FACTOR * max(self._initial_losses[j], 1e-3)
                if not (bool(torch.isfinite(out).all()) and math.isfinite(loss) and worst <= limit):
                    raise TrainingDivergedError(
                        f"{self.labels[j]}: training diverged: the loss went from "
                        f"{self._initial_losses[j]:.4g} at the first step to {worst:.4g} "
                        f"(lr {self.config.lr:.4g}). Lower lr or check the scale of the input."
                    )

    def _report(self, records: list[dict]) -> None:
        if not self.config.verbose:
            return
        parts = []
        for label, record in zip(self.labels, records):
            valid = record["valid_score"]
            parts.append(
                f"{label} loss={record['train_loss']:.4f} train={record['train_score']:.4f}"
                + ("" if valid is None else f" valid={valid:.4f}")
            )
        epoch = records[0]["epoch"]
        print(f"{self.config.label} epoch {epoch}/{self.config.max_epochs}: " + "; ".join(parts))


def train_decoupled(layers, heads, data: StageData, **kwargs) -> list[StageResult]:
    """Train ``layers`` (each with its head) together, decoupled; see :class:`DecoupledTrainer`.

    Returns
    -------
    list of StageResult
        One per layer: its per-epoch history (``seconds`` is the whole epoch's, shared by
        every layer), the kept epoch (the same for all) and whether training stopped early.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_greedy._engine import StageData, TrainingConfig
    >>> from sklearn_greedy._decoupled import train_decoupled
    >>> layers = [nn.Linear(4, 8), nn.Linear(8, 8)]
    >>> heads = [nn.Linear(8, 2), nn.Linear(8, 2)]
    >>> data = StageData(torch.randn(64, 4), torch.randint(0, 2, (64,)))
    >>> results = train_decoupled(
    ...     layers, heads, data, loss_fn=nn.functional.cross_entropy,
    ...     config=TrainingConfig(max_epochs=2, batch_size=16, lr=0.1),
    ...     generator=torch.Generator().manual_seed(0))
    >>> [r.n_iter for r in results]
    [2, 2]
    """
    return DecoupledTrainer(layers, heads, data, **kwargs).fit()
