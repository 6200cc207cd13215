"""The training engine: trains one stage (a trainable module over frozen inputs).

Every estimator in the package trains by calling :func:`train_stage` once per layer or
block. A *stage* is a trainable ``model`` that maps features to outputs; the features are
the raw inputs passed through an optional frozen ``prefix`` (the layers trained before),
optionally after a random ``augment`` of the raw batch. The engine owns the things that
make this fast and correct on any device:

- arrays live on the device and batches are index slices of them (no per-sample Python);
  a streaming source (:mod:`sklearn_greedy.training._streaming`: a data set, a memmap, a feature
  cache on the host) answers the same indexing and reads its batches ahead;
- without augmentation, the frozen prefix's output is computed once and kept where
  ``config.prefix_cache`` says (or recomputed per batch when it says None);
- with augmentation, the prefix runs on each augmented batch in eval mode under
  ``torch.no_grad()``;
- losses and scores are accumulated on the device and read once per epoch, so there is
  no host synchronisation per step;
- SGD (momentum, weight decay, step schedule) or Adam; the best parameters seen along the
  trajectory can be kept (Belilovsky et al., Prop. 3.1); early stopping on a validation set;
- a stage whose loss or weights stop being finite, or whose loss explodes, fails with a
  :class:`TrainingDivergedError` instead of returning a broken model.

:class:`StageTrainer` lays the loop out in small steps (skorch's ``fit_loop`` /
``train_step`` split); :func:`train_stage` is the one call estimators make.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch._dynamo  # noqa: F401
from sklearn.exceptions import ConvergenceWarning
from torch import nn

from ._streaming import cache_outputs, iter_sequential

# Above: torch's optimizers import torch._dynamo (and sympy) lazily, on the first
# optimizer built. A KeyboardInterrupt landing inside that import leaves sympy half
# imported and every later fit of the process broken, so it is imported here, with the
# package, before any fit can be interrupted.

BatchFn = Callable[[torch.Tensor], torch.Tensor]

# A stage whose kept training loss ends this many times above its loss at the start has
# diverged: no schedule or plateau explains a thousandfold rise.
_DIVERGENCE_FACTOR = 1e3


class TrainingDivergedError(ValueError, FloatingPointError):
    """A stage's loss or weights stopped being finite, or its loss exploded.

    A ValueError, since the cause is almost always a parameter (a learning rate too high
    for the data's scale), and a FloatingPointError, since that is what happened.
    """


@dataclass
class TrainingConfig:
    """Optimisation settings of one stage, filled in by an estimator from its parameters."""

    max_epochs: int
    batch_size: int
    lr: float
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_decay: float = 1.0
    lr_step: int | None = None
    restart_on_decay: bool = False
    keep_best: bool = True
    n_iter_no_change: int = 10
    tol: float = 1e-4
    verbose: int = 0
    eval_batch_size: int = 1024
    label: str = "stage"
    precision: str = "float32"
    prefix_cache: str | None = "device"
    top_k: int | None = None  # also record top-k accuracy ("train_top5"...) when set
    compile: dict | None = None  # torch.compile's options for the training steps; None: eager

    def compiled(self, module: nn.Module) -> nn.Module:
        """``module`` as the training steps call it: through ``torch.compile(module,
        **compile)`` when ``compile`` is set (same parameters, fused kernels), else as is."""
        return module if self.compile is None else torch.compile(module, **self.compile)

    def autocast(self, device: torch.device):
        """bf16 or float16 autocast for ``precision="bf16"`` or ``"fp16"``; a no-op context
        otherwise."""
        dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
        return torch.autocast(device.type, dtype=dtype, enabled=self.precision in ("bf16", "fp16"))

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """The loss scaling of ``precision="fp16"`` (float16 gradients underflow below
        6e-8: the loss is scaled up before the backward pass, the gradients down before
        the step, and a step with inf or NaN gradients is skipped); disabled otherwise, a
        plain backward pass and step."""
        return torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")


def gradient_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, scaler) -> None:
    """One optimizer step on the gradient of ``loss``, through ``scaler``
    (:meth:`TrainingConfig.grad_scaler`)."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


@dataclass
class StageData:
    """The data of one stage: tensors on the training device, or streaming sources
    (``X``, ``X_val``) that give their batches on it.

    ``X`` holds the raw inputs (before the frozen prefix); ``sample_weight``, when given,
    weights each sample's loss; ``X_val``/``y_val`` drive the best epoch and early
    stopping when given.
    """

    X: torch.Tensor
    y: torch.Tensor
    X_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    sample_weight: torch.Tensor | None = None

    @property
    def has_validation(self) -> bool:
        return self.X_val is not None and self.X_val.shape[0] > 0


@dataclass
class StageResult:
    """What :func:`train_stage` learned about the run (the model is updated in place)."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False

    @property
    def n_iter(self) -> int:
        """Epochs run."""
        return len(self.history)

    @property
    def loss_curve(self) -> list[float]:
        """Mean training loss of each epoch."""
        return [record["train_loss"] for record in self.history]


def accuracy_sum(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Number of correct predictions in a batch (the default classification score)."""
    return (output.argmax(dim=1) == target).sum()


def top_k_sum(output: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """Number of samples whose class is among the ``k`` highest outputs."""
    top = output.topk(min(k, output.shape[1]), dim=1).indices
    return (top == target[:, None]).any(dim=1).sum()


def negative_squared_error_sum(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Minus the summed squared error of a batch (a regression score, higher is better)."""
    return -((output - target) ** 2).sum()


def batched_apply(
    fn: BatchFn, X, batch_size: int, *, out_device: torch.device | None = None
) -> torch.Tensor:
    """Apply ``fn`` to ``X`` (a tensor or a streaming source) in batches under
    ``torch.no_grad`` and concatenate the results."""
    outputs = []
    with torch.no_grad():
        for batch in iter_sequential(X, batch_size):
            out = fn(batch)
            outputs.append(out if out_device is None else out.to(out_device))
        return torch.cat(outputs) if outputs else fn(X[:0])


def batch_slices(n: int, batch_size: int, generator: torch.Generator, device: torch.device):
    """Shuffled index slices. A trailing batch smaller than half a batch joins the one
    before it: BatchNorm's statistics over a handful of samples are noise, and a step on
    them can undo an epoch of training (a single sample cannot be normalised at all)."""
    perm = torch.randperm(n, generator=generator, device=device)
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < batch_size / 2:
        starts.pop()
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else n
        yield perm[start:stop]


def make_optimizer(params, config: TrainingConfig) -> torch.optim.Optimizer:
    """The stage's optimizer: SGD with momentum or Adam, with weight decay."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {config.optimizer!r}.")


def lr_at(epoch: int, config: TrainingConfig) -> float:
    """The learning rate of ``epoch`` (0-based) under the step schedule."""
    if not config.lr_step:
        return config.lr
    return config.lr * config.lr_decay ** (epoch // config.lr_step)


def restarts_at(epoch: int, config: TrainingConfig) -> bool:
    """Whether the optimizer starts afresh at ``epoch`` (0-based): under
    ``restart_on_decay``, at each epoch whose learning rate differs from the one before,
    as the reference code builds a new optimizer at each decay (momentum restarts)."""
    return bool(
        config.restart_on_decay and epoch and lr_at(epoch, config) != lr_at(epoch - 1, config)
    )


def _progress_bar(config: TrainingConfig):
    """A tqdm bar when verbose and tqdm is installed, else None (plain prints)."""
    if not config.verbose:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=config.max_epochs, desc=config.label, leave=True)


class StageInputs:
    """How a trainer turns its data into batches: the frozen prefix cached once when there
    is no augmentation, augmented batches through the prefix otherwise, and the weighted
    loss. Shared by :class:`StageTrainer` and the decoupled trainer; it reads the trainer's
    ``data``, ``prefix``, ``augment``, ``generator``, ``config`` and ``loss_fn``.
    """

    _train_cached = False
    _valid_cached = False

    def _cache_prefix_features(self) -> None:
        """Without augmentation the prefix's output never changes: compute it once and keep
        it where ``config.prefix_cache`` says (None: run the prefix on every batch)."""
        where = self.config.prefix_cache
        if self.prefix is None or where is None:
            return
        size = self.config.eval_batch_size
        data = self.data
        # a new StageData: the caller's tensors are left as they were
        with self.config.autocast(data.X.device):
            if self.augment is None:
                rows = self._cache_rows(data.X.shape[0])
                X = cache_outputs(self.prefix, data.X, size, where, rows)
                self.data, self._train_cached = replace(self.data, X=X), True
            if data.has_validation:
                rows = self._cache_rows(data.X_val.shape[0])
                X_val = cache_outputs(self.prefix, data.X_val, size, where, rows)
                self.data, self._valid_cached = replace(self.data, X_val=X_val), True

    def _cache_rows(self, n: int) -> range | None:
        """The rows of ``n`` whose prefix features this process keeps: all (None), unless
        the ranks of a process group share the fit out."""
        return None

    def _features(self, xb: torch.Tensor, *, cached: bool) -> torch.Tensor:
        """The stage's input for raw inputs ``xb``: the frozen prefix's output, unless
        ``xb`` already is that (read from the cache)."""
        if self.prefix is None or cached:
            return xb
        with torch.no_grad(), self.config.autocast(xb.device):
            return self.prefix(xb)

    def _index_batches(self, device: torch.device) -> list[torch.Tensor]:
        """This epoch's shuffled batches of sample indices (this process's share of each)."""
        n = self.data.X.shape[0]
        return [
            self._local_indices(idx)
            for idx in batch_slices(n, self.config.batch_size, self.generator, device)
        ]

    def _raw_batches(self, index_batches: list[torch.Tensor]):
        """``(idx, raw inputs)`` for each batch: index slices of a tensor, or batches read
        ahead by a streaming source (a data set or an array on disk)."""
        X = self.data.X
        if isinstance(X, torch.Tensor):
            return ((idx, X[idx]) for idx in index_batches)
        return zip(index_batches, X.iter_batches(index_batches))

    def _local_indices(self, idx: torch.Tensor) -> torch.Tensor:
        """The part of a batch this process trains on: all of it, unless distributed."""
        return idx

    def _batch(self, idx: torch.Tensor, xb: torch.Tensor):
        yb = self.data.y[idx]
        if self.augment is not None:
            with torch.no_grad(), self.config.autocast(xb.device):
                xb = self.augment(xb, self.generator)
        return self._features(xb, cached=self._train_cached), yb

    def _loss(self, out, yb, idx):
        weight = self.data.sample_weight
        if weight is None:
            return self.loss_fn(out, yb)
        wb = weight[idx]
        # the weighted mean keeps the loss (and so the learning rate) on the usual scale
        return (self.loss_fn(out, yb, reduction="none") * wb).sum() / wb.sum().clamp_min(1e-12)


class StageTrainer(StageInputs):
    """Trains one stage; :meth:`fit` reads top to bottom as the loop it runs.

    Parameters
    ----------
    model : torch.nn.Module
        The trainable part of the stage, already on the device of the data.
    data : StageData
        Raw training (and validation) tensors.
    loss_fn : callable
        ``loss_fn(output, target)`` returning the mean loss of a batch; with sample
        weights it is called with ``reduction="none"`` and must return per-sample losses.
    config : TrainingConfig
        Optimiser, schedule, best-along-trajectory and early stopping settings.
    generator : torch.Generator
        Source of randomness for shuffling and augmentation, on the device.
    prefix : callable, optional
        The frozen part before ``model``, run under no-grad; cached over the whole data set
        when there is no ``augment``. Its modules must already be in eval mode.
    augment : callable, optional
        ``augment(batch, generator)`` applied to raw training batches.
    score_fn : callable or None, default=accuracy_sum
        ``score_fn(output, target)`` returning the summed score of a batch (higher is
        better). None scores by minus the loss.
    """

    def __init__(
        self, model, data, *, loss_fn, config, generator, prefix=None, augment=None,
        score_fn=accuracy_sum,
    ):  # fmt: skip
        self.model = model
        self.data = data
        self.loss_fn = loss_fn
        self.config = config
        self.generator = generator
        self.prefix = prefix
        self.augment = augment
        self.score_fn = score_fn if score_fn is not None else self._minus_loss_sum
        self.result = StageResult()
        self._best_value = None
        self._best_state = None
        self._no_improve = 0
        self._initial_loss = None

    # ----------------------------------------------------------------- the loop
    def fit(self) -> StageResult:
        """Run the epochs, keep the best parameters, and return what happened."""
        self._cache_prefix_features()
        self.optimizer = make_optimizer(self._trainable(), self.config)
        self._scaler = self.config.grad_scaler(self.data.X.device)
        bar = _progress_bar(self.config)
        try:
            for epoch in range(self.config.max_epochs):
                record = self.run_epoch(epoch)
                self.result.history.append(record)
                self._update_best(record)
                self._report(record, bar)
                if self._no_improve >= self.config.n_iter_no_change:
                    self.result.stopped_early = True
                    break
        finally:
            if bar is not None:
                bar.close()
        self._restore_best()
        self._check_not_diverged()
        self.model.eval()
        return self.result

    def run_epoch(self, epoch: int) -> dict:
        """One pass over the training data, then validation; the epoch's record."""
        start = time.perf_counter()
        lr = self._set_lr(epoch)
        self.model.train()
        device = self.data.X.device
        # loss, score, sample count and top-k hits, summed on the device and read once
        sums = torch.zeros(4, device=device)
        n_local = 0  # a host count: no device operation per batch for it
        for idx, xb in self._raw_batches(self._index_batches(device)):
            out, yb, loss = self.train_step(idx, xb)
            n_local += idx.shape[0]
            with torch.no_grad():
                sums[0] += loss.detach() * idx.shape[0]
                sums[1] += self.score_fn(out.detach(), yb)
                if self.config.top_k:
                    sums[3] += top_k_sum(out.detach(), yb, self.config.top_k)
        sums[2] = n_local
        loss_sum, score_sum, n, top_sum = self._reduce_sums(sums).tolist()
        record = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(n, 1),
            "train_score": score_sum / max(n, 1),
            "valid_score": None,
            "lr": lr,
        }
        self._check_finite(record)
        if self.config.top_k:
            record[f"train_top{self.config.top_k}"] = top_sum / max(n, 1)
        if self.data.has_validation:
            record["valid_score"] = self.validation_score()
            if self.config.top_k:
                record[f"valid_top{self.config.top_k}"] = self.validation_score(
                    lambda out, target: top_k_sum(out, target, self.config.top_k)
                )
        record["seconds"] = time.perf_counter() - start
        return record

    def train_step(self, idx: torch.Tensor, xb: torch.Tensor):
        """Forward, backward and update on the batch ``idx`` of raw inputs ``xb``:
        (output, target, loss)."""
        out, yb, loss = self._forward(idx, xb)
        if self._initial_loss is None:
            self._initial_loss = float(loss.detach())
        self._update(loss)
        return out, yb, loss

    def _forward(self, idx: torch.Tensor, xb: torch.Tensor):
        """The batch through the trained module: (output, target, loss)."""
        xb, yb = self._batch(idx, xb)
        with self.config.autocast(xb.device):
            out = self._training_module()(xb)
            loss = self._loss(out, yb, idx)
        return out, yb, loss

    def _update(self, loss: torch.Tensor) -> None:
        """One optimizer step on the gradient of ``loss``."""
        gradient_step(self.optimizer, loss, self._scaler)

    def validation_score(self, score_fn=None) -> float:
        """Mean score of the model (eval mode) on the validation data (by ``score_fn``,
        default the trainer's)."""
        return float(self._validation_total(score_fn)) / self.data.X_val.shape[0]

    def _validation_total(self, score_fn=None, rows: range | None = None) -> torch.Tensor:
        """The summed score of the model (eval mode) on the validation rows ``rows``
        (default all)."""
        score_fn = self.score_fn if score_fn is None else score_fn
        self.model.eval()
        X_val, y_val, size = self.data.X_val, self.data.y_val, self.config.eval_batch_size
        rows = range(X_val.shape[0]) if rows is None else rows
        total = torch.zeros((), device=y_val.device)
        with torch.no_grad(), self.config.autocast(X_val.device):
            batches = iter_sequential(X_val, size, rows)
            for s, xb in zip(range(rows.start, rows.stop, size), batches):
                out = self.model(self._features(xb, cached=self._valid_cached))
                total = total + score_fn(out, y_val[s : s + xb.shape[0]])
        return total

    # ----------------------------------------------------------------- the steps
    def _training_module(self) -> nn.Module:
        """The module the training steps call: ``model``, compiled once per stage when the
        config asks (a distributed trainer passes its wrapper of ``model``)."""
        return self._compiled(self.model)

    def _compiled(self, module: nn.Module) -> nn.Module:
        cached = getattr(self, "_step_module", None)
        if cached is None or cached[0] is not module:
            self._step_module = (module, self.config.compiled(module))
        return self._step_module[1]

    def _reduce_sums(self, sums: torch.Tensor) -> torch.Tensor:
        """Sums of this process's batches made global (the identity in one process)."""
        return sums

    def _trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def _minus_loss_sum(self, out, target):
        return -self.loss_fn(out, target) * out.shape[0]

    def _set_lr(self, epoch: int) -> float:
        lr = lr_at(epoch, self.config)
        if restarts_at(epoch, self.config):
            self.optimizer = make_optimizer(self._trainable(), replace(self.config, lr=lr))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _check_finite(self, record: dict) -> None:
        # one host sync per epoch: a step can turn the weights to NaN after a finite loss
        finite = math.isfinite(record["train_loss"]) and all(
            bool(torch.isfinite(p).all()) for p in self.model.parameters()
        )
        if not finite:
            raise TrainingDivergedError(
                f"{self.config.label}: training diverged at epoch {record['epoch']} "
                f"(loss {record['train_loss']:.4g}, lr {record['lr']:.4g}); the weights are "
                "no longer finite. Lower lr or check the scale of the input."
            )

    def _update_best(self, record: dict) -> None:
        value = record["valid_score"] if self.data.has_validation else -record["train_loss"]
        best = self._best_value
        self._no_improve = (
            0 if best is None or value > best + self.config.tol else (self._no_improve + 1)
        )
        if best is None or value > best:
            self._best_value = value
            self.result.best_epoch = record["epoch"]
            if self.config.keep_best:
                # a device-side copy: a host copy would synchronise every epoch
                self._best_state = {
                    k: v.detach().clone() for k, v in self.model.state_dict().items()
                }

    def _restore_best(self) -> None:
        if self.config.keep_best and self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        else:
            self.result.best_epoch = self.result.n_iter

    def _check_not_diverged(self) -> None:
        """The kept model's outputs are finite and its loss has not exploded.

        The kept weights are those after an epoch's steps, so a finite recorded loss does
        not vouch for them: the model is run once more, on the first training batch.
        """
        if not self.result.history or self._initial_loss is None:
            return
        rows = range(min(self.config.eval_batch_size, self.data.X.shape[0]))
        loss_sum, count, non_finite = self._first_batch_loss(rows).tolist()
        # what is judged is the model returned: a spike the stage recovered from, or a late
        # blow-up that keep-best stepped back from, leaves a usable model
        worst = loss_sum / max(count, 1)
        limit = _DIVERGENCE_FACTOR * max(self._initial_loss, 1e-3)
        if not (non_finite == 0 and math.isfinite(worst) and worst <= limit):
            raise TrainingDivergedError(
                f"{self.config.label}: training diverged: the loss went from "
                f"{self._initial_loss:.4g} at the first step to {worst:.4g} (lr "
                f"{self.config.lr:.4g}). Lower lr or check the scale of the input."
            )

    def _first_batch_loss(self, rows: range) -> torch.Tensor:
        """(summed loss, samples, non-finite outputs) of the kept model on the training
        rows ``rows``, float64."""
        X, y = self.data.X, self.data.y
        totals = torch.zeros(3, dtype=torch.float64, device=y.device)
        if len(rows):
            xb, yb = X[rows.start : rows.stop], y[rows.start : rows.stop]
            self.model.eval()
            with torch.no_grad(), self.config.autocast(xb.device):
                out = self.model(self._features(xb, cached=self._train_cached))
                loss = self.loss_fn(out, yb).double()
            totals[0] = loss * len(rows)
            totals[1] = len(rows)
            totals[2] = (~torch.isfinite(out)).sum()
        return totals

    def _report(self, record: dict, bar) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(
                loss=f"{record['train_loss']:.4f}",
                train=f"{record['train_score']:.4f}",
                valid="-" if record["valid_score"] is None else f"{record['valid_score']:.4f}",
            )
        elif self.config.verbose:
            valid = record["valid_score"]
            print(
                f"{self.config.label} epoch {record['epoch']}/{self.config.max_epochs}: "
                f"loss={record['train_loss']:.4f} train={record['train_score']:.4f}"
                + ("" if valid is None else f" valid={valid:.4f}")
            )


def train_stage(
    model: nn.Module,
    data: StageData,
    *,
    loss_fn: Callable,
    config: TrainingConfig,
    generator: torch.Generator,
    prefix: BatchFn | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = accuracy_sum,
    trainer_cls: type[StageTrainer] | None = None,
) -> StageResult:
    """Train ``model`` in place on ``prefix(augment(data.X))`` against ``data.y``.

    See :class:`StageTrainer` for the parameters; ``trainer_cls`` is a subclass of it to
    train with instead (the greedy CNN passes the data-parallel trainer of
    :mod:`sklearn_greedy.training._distributed` inside a process group).

    Returns
    -------
    StageResult
        Per-epoch history (``epoch``, ``train_loss``, ``train_score``, ``valid_score``,
        ``lr``, ``seconds``), the epoch whose parameters were kept, and whether training
        stopped early.

    Examples
    --------
    >>> import torch
    >>> from sklearn_greedy.training._engine import StageData, TrainingConfig, train_stage
    >>> data = StageData(torch.randn(64, 3), torch.randint(0, 2, (64,)))
    >>> model = torch.nn.Linear(3, 2)
    >>> config = TrainingConfig(max_epochs=2, batch_size=16, lr=0.1)
    >>> result = train_stage(model, data, loss_fn=torch.nn.functional.cross_entropy,
    ...                      config=config, generator=torch.Generator().manual_seed(0))
    >>> result.n_iter, len(result.loss_curve)
    (2, 2)
    """
    trainer = (trainer_cls or StageTrainer)(
        model, data, loss_fn=loss_fn, config=config, generator=generator, prefix=prefix,
        augment=augment, score_fn=score_fn,
    )  # fmt: skip
    return trainer.fit()


def stage_diagnostics(
    results: list[StageResult],
    *,
    watch_convergence: bool,
    first_new: int = 0,
    stage_name: str = "Stage",
) -> dict:
    """Fitted attributes describing each stage's training, and a ConvergenceWarning for
    every stage trained now (from index ``first_new`` on) that used its whole epoch budget
    while its validation score was still improving.

    Returns
    -------
    attributes : dict
        ``n_iter_`` (epochs run per stage), ``loss_curve_`` (mean training loss per epoch,
        per stage), ``best_epoch_`` (the epoch whose parameters were kept) and
        ``stopped_early_`` (whether the plateau rule ended the stage), named as
        scikit-learn's :class:`~sklearn.neural_network.MLPClassifier` names them.
    """
    if watch_convergence:
        for j, result in enumerate(results[first_new:], start=first_new + 1):
            if result.history and not result.stopped_early:
                warnings.warn(
                    f"{stage_name} {j} reached max_epochs={result.n_iter} while its validation "
                    "score was still improving; raise max_epochs or loosen tol.",
                    ConvergenceWarning,
                    stacklevel=4,
                )
    return {
        "n_iter_": np.asarray([r.n_iter for r in results], dtype=np.int64),
        "loss_curve_": [r.loss_curve for r in results],
        "best_epoch_": np.asarray([r.best_epoch for r in results], dtype=np.int64),
        "stopped_early_": np.asarray([r.stopped_early for r in results], dtype=bool),
    }


def previous_stage_results(previous: dict) -> list[StageResult]:
    """The StageResults of a previous fit's stages, rebuilt from its fitted attributes
    (``previous``: the estimator's ``__dict__``)."""
    if "history_" not in previous:
        return []
    return [
        StageResult(list(h), int(b), bool(s))
        for h, b, s in zip(
            previous["history_"], previous["best_epoch_"], previous["stopped_early_"]
        )
    ]
