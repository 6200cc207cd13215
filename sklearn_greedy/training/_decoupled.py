"""Decoupled greedy training (Belilovsky, Eickenberg and Oyallon, "Decoupled Greedy Learning
of CNNs", ICML 2020): every layer at once.

Each layer trains on the same batches as the others, with its own auxiliary loss and its
own optimizer; its input is the output of the layer below on the same batch, detached, so
no gradient flows between layers. One pass over the data trains all the layers: the data is
shuffled, sliced and augmented once per batch, where the sequential schedule does it once per
layer and recomputes the frozen prefix on every augmented batch.

Built from the engine's pieces (``StageInputs``, ``make_optimizer``, ``lr_at``,
``StageResult`` of :mod:`sklearn_greedy.training._engine`), with the engine's
conventions: data on the device, batches as index slices, one host synchronisation per
epoch, the optimizer re-created at each learning-rate decay when ``restart_on_decay``.

Keep-best and early stopping act on the network as a whole: each layer's head was trained
on the layers below *as they were at that epoch*, so the layers are kept (and stopped)
together, at the epoch of the best score of the last layer's head (validation accuracy, or
minus its training loss without validation data).

``delay`` staggers the starts: layer ``j`` trains in epochs ``[j * delay, j * delay + E)``
of a run of ``E + (J - 1) * delay`` epochs, each layer on its own learning-rate schedule,
then runs frozen (eval mode, no gradient) under the layers still training. With
``delay=0`` every layer trains at once; with ``delay >= E`` (taken as ``E``) no two layers
train at the same time, which is the sequential schedule. In between, each layer above the
first starts on inputs that have begun to settle and ends its training on frozen ones, as
in the sequential schedule, while the data is still loaded and augmented once per batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from torch import nn

from ._engine import (
    StageData,
    StageInputs,
    StageResult,
    TrainingConfig,
    TrainingDivergedError,
    accuracy_sum,
    gradient_step,
    lr_at,
    make_optimizer,
    restarts_at,
    top_k_sum,
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
    delay : int, default=0
        Epochs between the starts of consecutive layers (see the module's docstring);
        every layer trains ``config.max_epochs`` epochs.
    """

    def __init__(
        self, layers, heads, data: StageData, *, loss_fn: Callable, config: TrainingConfig,
        generator: torch.Generator, prefix=None, augment=None, labels=None, delay: int = 0,
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
        if delay < 0:
            raise ValueError(f"delay must be a non-negative number of epochs, got {delay}.")
        # past E epochs a delay would only leave epochs in which nothing trains
        delay = min(delay, config.max_epochs)
        self.starts = [j * delay for j in range(len(self.layers))]
        self.n_epochs = config.max_epochs + self.starts[-1]
        self._initial_losses: list[float | None] = [None] * len(self.layers)
        self._best_value = None
        self._best_state = None
        self._no_improve = 0

    # ----------------------------------------------------------------- the loop
    def fit(self) -> list[StageResult]:
        """Run the epochs and return one :class:`StageResult` per layer."""
        self._cache_prefix_features()
        self.optimizer = self._make_optimizer(self.config)
        self._scaler = self.config.grad_scaler(self.data.X.device)
        # the trained layers and heads as the steps call them (compiled when asked)
        self._layer_steps = [self.config.compiled(layer) for layer in self.layers]
        self._head_steps = [self.config.compiled(head) for head in self.heads]
        for epoch in range(self.n_epochs):
            records = self.run_epoch(epoch)
            for j, record in records.items():
                self.results[j].history.append(record)
            self._report(records)
            if epoch < self.starts[-1]:
                continue  # the last layer, which keep-best and stopping follow, waits
            self._update_best(records[len(self.layers) - 1], epoch + 1)
            if self._no_improve >= self.config.n_iter_no_change:
                for result in self.results:  # those with epochs left
                    result.stopped_early = result.n_iter < self.config.max_epochs
                break
        self._restore_best()
        self._check_not_diverged()
        for stage in self._stages:
            stage.eval()
        return self.results

    def training_layers(self, epoch: int) -> range:
        """The layers that train in ``epoch``; those below run frozen, those above wait."""
        E = self.config.max_epochs
        active = [j for j, start in enumerate(self.starts) if start <= epoch < start + E]
        return range(active[0], active[-1] + 1)

    def run_epoch(self, epoch: int) -> dict[int, dict]:
        """One pass over the data training the layers of this epoch; a record for each,
        by layer index (its ``epoch`` counts that layer's own epochs)."""
        start = time.perf_counter()
        active = self.training_layers(epoch)
        lrs = self._set_lr(epoch, active)
        for j, stage in enumerate(self._stages):
            stage.train(j in active)
        device = self.data.X.device
        # per training layer: loss, accuracy and top-k sums
        sums = torch.zeros(3, len(active), device=device)
        n, top_k = self.data.X.shape[0], self.config.top_k
        for idx, xb in self._raw_batches(self._index_batches(device)):
            xb, yb = self._batch(idx, xb)
            losses, outs = self.train_step(xb, yb, idx, active)
            with torch.no_grad():
                for i, (loss, out) in enumerate(zip(losses, outs)):
                    sums[0, i] += loss.detach() * idx.shape[0]
                    sums[1, i] += accuracy_sum(out.detach(), yb)
                    if top_k:
                        sums[2, i] += top_k_sum(out.detach(), yb, top_k)
        losses, scores, tops = (sums / n).tolist()
        valid = self.validation_scores(active) if self.data.has_validation else None
        seconds = time.perf_counter() - start
        records = {}
        for i, j in enumerate(active):
            record = {"epoch": epoch - self.starts[j] + 1, "train_loss": losses[i],
                      "train_score": scores[i], "valid_score": None if valid is None else
                      valid[i][0], "lr": lrs[i], "seconds": seconds}  # fmt: skip
            if top_k:
                record[f"train_top{top_k}"] = tops[i]
                if valid is not None:
                    record[f"valid_top{top_k}"] = valid[i][1]
            records[j] = record
        self._check_finite(records)
        return records

    def train_step(self, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor,
                   active: range | None = None):  # fmt: skip
        """Forward, backward and update of the ``active`` layers (all by default) and
        their heads on one batch; the layers below them run frozen, those above not at all.

        Layer ``j`` sees the output of layer ``j - 1`` detached, so the graphs of the
        layers are disjoint: one backward of the summed losses gives each layer exactly
        the gradient of its own loss, and one optimizer step (a parameter group per layer)
        updates each as its own optimizer would, for a fraction of the per-call overhead
        of one backward and one step per layer. Returns each active layer's loss and head
        output.
        """
        active = range(len(self.layers)) if active is None else active
        losses, outs = [], []
        with self.config.autocast(xb.device):
            with torch.no_grad():
                for layer in self.layers[: active[0]]:
                    xb = layer(xb)
            for j in active:
                h = self._layer_steps[j](xb)
                out = self._head_steps[j](h)
                losses.append(self._loss(out, yb, idx))
                outs.append(out)
                xb = h.detach()
        for j, loss in zip(active, losses):
            if self._initial_losses[j] is None:
                self._initial_losses[j] = float(loss.detach())
        gradient_step(self.optimizer, torch.stack(losses).sum(), self._scaler)
        return losses, outs

    def validation_scores(self, active: range | None = None) -> list[tuple[float, float]]:
        """Accuracy and top-k accuracy (0 without ``config.top_k``) of the heads of the
        ``active`` layers (all by default), in eval mode on the validation data, in one
        pass."""
        active = range(len(self.layers)) if active is None else active
        for stage in self._stages:
            stage.eval()
        X_val, y_val, size = self.data.X_val, self.data.y_val, self.config.eval_batch_size
        totals = torch.zeros(len(active), 2, device=X_val.device)
        with torch.no_grad(), self.config.autocast(X_val.device):
            for s, x in zip(range(0, X_val.shape[0], size), iter_sequential(X_val, size)):
                x, yb = self._features(x, cached=self._valid_cached), y_val[s : s + x.shape[0]]
                for j, layer in enumerate(self.layers[: active[-1] + 1]):
                    x = layer(x)
                    if j in active:
                        out = self.heads[j](x)
                        totals[j - active[0], 0] += accuracy_sum(out, yb)
                        if self.config.top_k:
                            totals[j - active[0], 1] += top_k_sum(out, yb, self.config.top_k)
        return [tuple(row) for row in (totals / X_val.shape[0]).tolist()]

    # ----------------------------------------------------------------- the steps
    @staticmethod
    def _trainable(stage: nn.Module) -> list[nn.Parameter]:
        return [p for p in stage.parameters() if p.requires_grad]

    def _make_optimizer(self, config: TrainingConfig) -> torch.optim.Optimizer:
        """One optimizer with a parameter group per layer: SGD and Adam act on each
        parameter alone, so this is each layer's own optimizer, stepped in one call."""
        groups = [{"params": self._trainable(stage)} for stage in self._stages]
        return make_optimizer(groups, config)

    def _set_lr(self, epoch: int, active: range) -> list[float]:
        """Each active layer's rate on its own schedule; a layer whose rate decays gets a
        fresh optimizer state under ``restart_on_decay`` (the other layers keep theirs)."""
        lrs = []
        for j in active:
            own = epoch - self.starts[j]
            lr = lr_at(own, self.config)
            group = self.optimizer.param_groups[j]
            if restarts_at(own, self.config):
                for p in group["params"]:
                    self.optimizer.state.pop(p, None)  # as a new optimizer would start
            group["lr"] = lr
            lrs.append(lr)
        return lrs

    def _check_finite(self, records: dict[int, dict]) -> None:
        for j, record in records.items():
            label, stage = self.labels[j], self._stages[j]
            finite = math.isfinite(record["train_loss"]) and all(
                bool(torch.isfinite(p).all()) for p in stage.parameters()
            )
            if not finite:
                raise TrainingDivergedError(
                    f"{label}: training diverged at epoch {record['epoch']} (loss "
                    f"{record['train_loss']:.4g}, lr {record['lr']:.4g}); the weights are no "
                    "longer finite. Lower lr or check the scale of the input."
                )

    def _update_best(self, last: dict, epoch: int) -> None:
        """Track the last layer's ``last`` record of (global, 1-based) ``epoch``."""
        value = last["valid_score"] if self.data.has_validation else -last["train_loss"]
        best = self._best_value
        improved = best is None or value > best + self.config.tol
        self._no_improve = 0 if improved else self._no_improve + 1
        if best is None or value > best:
            self._best_value = value
            for result, start in zip(self.results, self.starts):
                # a layer whose training had ended was kept as it ended
                result.best_epoch = min(epoch - start, self.config.max_epochs)
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

    def _report(self, records: dict[int, dict]) -> None:
        if not self.config.verbose:
            return
        parts = []
        for j, record in records.items():
            label = self.labels[j]
            valid = record["valid_score"]
            parts.append(
                f"{label} loss={record['train_loss']:.4f} train={record['train_score']:.4f}"
                + ("" if valid is None else f" valid={valid:.4f}")
            )
        first = min(records)
        epoch = records[first]["epoch"] + self.starts[first]
        print(f"{self.config.label} epoch {epoch}/{self.n_epochs}: " + "; ".join(parts))


def train_decoupled(layers, heads, data: StageData, **kwargs) -> list[StageResult]:
    """Train ``layers`` (each with its head) together, decoupled; see :class:`DecoupledTrainer`.

    Returns
    -------
    list of StageResult
        One per layer: its per-epoch history (``seconds`` is the whole epoch's, shared by
        the layers training in it), the kept epoch (one epoch of the run, counted in each
        layer's own epochs) and whether training stopped early.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_greedy.training._engine import StageData, TrainingConfig
    >>> from sklearn_greedy.training._decoupled import train_decoupled
    >>> layers = [nn.Linear(4, 8), nn.Linear(8, 8)]
    >>> heads = [nn.Linear(8, 2), nn.Linear(8, 2)]
    >>> data = StageData(torch.randn(64, 4), torch.randint(0, 2, (64,)))
    >>> results = train_decoupled(
    ...     layers, heads, data, loss_fn=nn.functional.cross_entropy,
    ...     config=TrainingConfig(max_epochs=2, batch_size=16, lr=0.1),
    ...     generator=torch.Generator().manual_seed(0))
    >>> [r.n_iter for r in results]
    [2, 2]

    Staggered by one epoch, the second layer starts when the first has had one:

    >>> results = train_decoupled(
    ...     layers, heads, data, loss_fn=nn.functional.cross_entropy,
    ...     config=TrainingConfig(max_epochs=2, batch_size=16, lr=0.1),
    ...     generator=torch.Generator().manual_seed(0), delay=1)
    >>> [r.n_iter for r in results], [r.history[0]["epoch"] for r in results]
    ([2, 2], [1, 1])
    """
    return DecoupledTrainer(layers, heads, data, **kwargs).fit()
