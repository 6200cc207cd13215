"""The training engine: trains one stage (a trainable module over frozen inputs).

Every estimator in the package trains by calling :func:`train_stage` once per layer or
block. A *stage* is a trainable ``model`` that maps features to outputs; the features are
the raw inputs passed through an optional frozen ``prefix`` (the layers trained before),
optionally after a random ``augment`` of the raw batch. The engine owns the things that
make this fast and correct on any device:

- data lives on the device and batches are index slices of it (no per-sample Python);
- without augmentation, the frozen prefix's output is computed once and cached;
- with augmentation, the prefix runs on each augmented batch in eval mode under
  ``torch.no_grad()``;
- losses and scores are accumulated on the device and read once per epoch, so there is
  no host synchronisation per step; float32 matmuls may use TF32 on CUDA;
- SGD (momentum, weight decay, step schedule) or Adam; the best parameters seen along the
  trajectory can be kept (Belilovsky et al., Prop. 3.1); early stopping on a validation set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from ._utils import fast_float32_matmul

BatchFn = Callable[[torch.Tensor], torch.Tensor]


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
    keep_best: bool = True
    n_iter_no_change: int = 10
    tol: float = 1e-4
    verbose: int = 0


@dataclass
class StageResult:
    """What :func:`train_stage` learned about the run (the model is updated in place)."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False


def accuracy_sum(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Number of correct predictions in a batch (the default classification score)."""
    return (output.argmax(dim=1) == target).sum()


def negative_squared_error_sum(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Minus the summed squared error of a batch (a regression score, higher is better)."""
    return -((output - target) ** 2).sum()


def batched_apply(
    fn: BatchFn, X: torch.Tensor, batch_size: int, *, out_device: torch.device | None = None
) -> torch.Tensor:
    """Apply ``fn`` to ``X`` in slices under ``torch.no_grad`` and concatenate the results."""
    outputs = []
    with torch.no_grad():
        for start in range(0, X.shape[0], batch_size):
            out = fn(X[start : start + batch_size])
            outputs.append(out if out_device is None else out.to(out_device))
    return torch.cat(outputs) if outputs else fn(X[:0])


def _batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device):
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


def _make_optimizer(params, config: TrainingConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {config.optimizer!r}.")


def _lr_at(epoch: int, config: TrainingConfig) -> float:
    if not config.lr_step:
        return config.lr
    return config.lr * config.lr_decay ** (epoch // config.lr_step)


def _progress(config: TrainingConfig, desc: str):
    """A tqdm bar when verbose and tqdm is installed, else None (plain prints)."""
    if not config.verbose:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=config.max_epochs, desc=desc, leave=True)


def train_stage(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    config: TrainingConfig,
    generator: torch.Generator,
    prefix: BatchFn | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    X_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
    score_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = accuracy_sum,
    eval_batch_size: int = 1024,
    desc: str = "stage",
) -> StageResult:
    """Train ``model`` in place on ``prefix(augment(X))`` against ``y``.

    Parameters
    ----------
    model : torch.nn.Module
        The trainable part of the stage, already on the device of ``X``.
    X, y : torch.Tensor
        Raw training inputs and targets, on the device.
    loss_fn : callable
        ``loss_fn(output, target)`` returning the mean loss of a batch.
    config : TrainingConfig
        Optimiser, schedule, best-along-trajectory and early stopping settings.
    generator : torch.Generator
        Source of randomness for shuffling and augmentation, on the device.
    prefix : callable, optional
        The frozen part before ``model``; it is run in no-grad mode and cached over the
        whole data set when there is no ``augment``. Its modules must already be in eval
        mode with gradients off.
    augment : callable, optional
        ``augment(batch, generator)`` applied to raw training batches.
    X_val, y_val : torch.Tensor, optional
        Validation data (never augmented). When given, the best epoch and early stopping
        follow the validation score; otherwise they follow the training loss.
    score_fn : callable or None
        ``score_fn(output, target)`` returning the summed score of a batch (higher is
        better); accuracy by default. ``None`` scores by minus the loss.
    eval_batch_size : int
        Batch size for cached prefix features and validation passes.
    desc : str
        Label for progress output.

    Returns
    -------
    StageResult
        Per-epoch history (``epoch``, ``train_loss``, ``train_score``, ``valid_score``,
        ``lr``, ``seconds``), the epoch whose parameters were kept, and whether training
        stopped early.

    Examples
    --------
    >>> import torch
    >>> from sklearn_greedy._engine import TrainingConfig, train_stage
    >>> X, y = torch.randn(64, 3), torch.randint(0, 2, (64,))
    >>> model = torch.nn.Linear(3, 2)
    >>> config = TrainingConfig(max_epochs=2, batch_size=16, lr=0.1)
    >>> result = train_stage(model, X, y, loss_fn=torch.nn.functional.cross_entropy,
    ...                      config=config, generator=torch.Generator().manual_seed(0))
    >>> len(result.history)
    2
    """
    device = X.device
    n = X.shape[0]
    if score_fn is None:

        def score_fn(out, target):
            return -loss_fn(out, target) * out.shape[0]

    def features(batch: torch.Tensor) -> torch.Tensor:
        return batch if prefix is None else prefix(batch)

    cache = augment is None
    if cache and prefix is not None:
        X = batched_apply(prefix, X, eval_batch_size)
    has_val = X_val is not None and X_val.shape[0] > 0
    if has_val and prefix is not None:
        X_val = batched_apply(prefix, X_val, eval_batch_size)

    optimizer = _make_optimizer([p for p in model.parameters() if p.requires_grad], config)
    result = StageResult()
    best_value = None
    best_state = None
    no_improve = 0
    bar = _progress(config, desc)
    with fast_float32_matmul(device):
        try:
            for epoch in range(config.max_epochs):
                start = time.perf_counter()
                lr = _lr_at(epoch, config)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                model.train()
                loss_sum = torch.zeros((), device=device)
                score_sum = torch.zeros((), device=device)
                for idx in _batches(n, config.batch_size, generator, device):
                    xb, yb = X[idx], y[idx]
                    if not cache:
                        with torch.no_grad():
                            xb = features(augment(xb, generator))
                    out = model(xb)
                    loss = loss_fn(out, yb)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    with torch.no_grad():
                        loss_sum += loss.detach() * idx.shape[0]
                        score_sum += score_fn(out.detach(), yb)
                record = {
                    "epoch": epoch + 1,
                    "train_loss": loss_sum.item() / n,
                    "train_score": score_sum.item() / n,
                    "valid_score": None,
                    "lr": lr,
                }
                if not torch.isfinite(torch.tensor(record["train_loss"])):
                    raise FloatingPointError(
                        f"{desc}: the training loss became {record['train_loss']} at epoch "
                        f"{epoch + 1}; lower lr or check the input scale."
                    )
                if has_val:
                    model.eval()
                    with torch.no_grad():
                        val_sum = sum(
                            score_fn(
                                model(X_val[s : s + eval_batch_size]),
                                y_val[s : s + eval_batch_size],
                            )
                            for s in range(0, X_val.shape[0], eval_batch_size)
                        )
                    record["valid_score"] = float(val_sum) / X_val.shape[0]
                    value = record["valid_score"]
                else:
                    value = -record["train_loss"]
                record["seconds"] = time.perf_counter() - start
                result.history.append(record)

                if best_value is None or value > best_value + config.tol:
                    no_improve = 0
                else:
                    no_improve += 1
                if best_value is None or value > best_value:
                    best_value = value
                    result.best_epoch = epoch + 1
                    if config.keep_best:
                        # a device-side copy: a host copy would synchronise every epoch
                        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        loss=f"{record['train_loss']:.4f}",
                        train=f"{record['train_score']:.4f}",
                        valid="-" if not has_val else f"{record['valid_score']:.4f}",
                    )
                elif config.verbose:
                    print(
                        f"{desc} epoch {epoch + 1}/{config.max_epochs}: "
                        f"loss={record['train_loss']:.4f} train={record['train_score']:.4f}"
                        + (f" valid={record['valid_score']:.4f}" if has_val else "")
                    )
                if no_improve >= config.n_iter_no_change:
                    result.stopped_early = True
                    break
        finally:
            if bar is not None:
                bar.close()
    if config.keep_best and best_state is not None:
        model.load_state_dict(best_state)
    else:
        result.best_epoch = len(result.history)
    model.eval()
    return result
