"""One fit on several devices: data-parallel training of each greedy stage.

Two ways in, one trainer:

- ``torchrun`` on the user's script: a process group is already initialised when ``fit``
  is called, and the greedy CNN trains each layer's stage with
  :class:`DistributedStageTrainer` (:func:`stage_trainer_class`); every other use of the
  engine (probes, the implicit models, a compressed layer's head) trains in each process
  alone, so that code a single rank runs never waits on the others;
- :func:`~sklearn_greedy.training._spawn.fit_on_devices`, for a notebook: it spawns one process
  per device, fits a copy of the estimator in each and returns the fitted copy of rank 0.
  The estimator never holds a process group, so it still clones and pickles.

Only the trainable stage (the new layer and its auxiliary head) is wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel`; the frozen prefix runs on each rank
under ``torch.no_grad`` and never takes part in the gradient exchange. Every rank builds
the same shuffled global batches and trains on its share of each, so that a step on
several devices is the step that one device would take on the whole batch. Features that
are computed once and kept (a frozen prefix's outputs, when nothing is augmented) are
sharded: each rank computes and holds those of its :func:`rank_share` of the rows
(:class:`~sklearn_greedy.training._streaming.RowShard`), and its share of each batch is
the batch's rows it holds.
"""

from __future__ import annotations

import inspect

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from ._engine import StageTrainer
from ._streaming import RowShard

# Buffers are averaged once per epoch, not broadcast at every forward; torch 2.13 renamed
# the switch (broadcast_buffers now warns).
_NO_FORWARD_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else {"broadcast_buffers": False}
)


def distributed_world_size() -> int:
    """Number of processes of the default process group; 1 outside of one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def is_main_rank() -> bool:
    """Whether this process speaks for the fit: rank 0 of the default process group, or
    any process outside of one (the others stay silent, so a fit prints each line once)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def rank_share(n: int) -> range:
    """The rows of ``n`` this process evaluates in a pass that every rank of the default
    process group runs alike: a contiguous ``1 / world_size`` of them (all ``n`` outside a
    group). Sum what each rank finds with :func:`summed_over_ranks`.

    Examples
    --------
    >>> from sklearn_greedy.training._distributed import rank_share
    >>> rank_share(10)
    range(0, 10)
    """
    world = distributed_world_size()
    if world == 1:
        return range(n)
    rank = dist.get_rank()
    return range(rank * n // world, (rank + 1) * n // world)


def shard_rows(n: int) -> range | None:
    """The rows of ``n`` whose features this process keeps in a cache that every rank of
    the default process group builds alike: its :func:`rank_share`, so that each rank
    computes and holds ``1 / world_size`` of the cache and its evaluation passes read
    exactly those rows; None (all of them) outside a group, or when some rank's share
    would be empty.

    Examples
    --------
    >>> from sklearn_greedy.training._distributed import shard_rows
    >>> shard_rows(10) is None
    True
    """
    world = distributed_world_size()
    return None if world == 1 or n < world else rank_share(n)


def summed_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over the ranks of the default process group (a copy; ``values``
    itself outside a group). Every rank must call it, in the same order."""
    if distributed_world_size() == 1:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values


def stage_trainer_class() -> type[StageTrainer]:
    """The trainer of the greedy CNN's layer stages in this process.

    Returns
    -------
    type
        :class:`DistributedStageTrainer` inside an initialised process group of more than
        one process (``torchrun``, or a worker of
        :func:`~sklearn_greedy.training._spawn.fit_on_devices`), else
        :class:`~sklearn_greedy.training._engine.StageTrainer`.

    Examples
    --------
    >>> from sklearn_greedy.training._distributed import stage_trainer_class
    >>> stage_trainer_class().__name__
    'StageTrainer'
    """
    return DistributedStageTrainer if distributed_world_size() > 1 else StageTrainer


class DistributedStageTrainer(StageTrainer):
    """Trains one stage data-parallel over the ranks of the default process group.

    Takes the parameters of :class:`~sklearn_greedy.training._engine.StageTrainer`, and every rank
    must pass the same data, the same configuration and a generator in the same state
    (an integer ``random_state``): each rank draws the same permutation and trains on its
    contiguous share of each global batch of ``config.batch_size`` samples. The stage is
    wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` for the duration of
    :meth:`fit` (``device_ids`` on CUDA); the frozen ``prefix`` is not. Each rank's loss is
    weighted by its share of the batch (of its sample weights), so that the gradient DDP
    averages over the ranks is the gradient of the whole batch's loss even when the shares
    differ; with plain SGD the weights stay within rounding of a one-process run.

    BatchNorm: on CUDA the stage's BatchNorm layers become
    :class:`~torch.nn.SyncBatchNorm` while it trains (statistics over the global batch)
    and are put back afterwards. ``SyncBatchNorm`` does not run on the CPU, so with gloo
    each rank normalises by the statistics of its own share of the batch, as
    ``nn.DataParallel`` does; the running statistics are averaged over the ranks after
    every epoch. A CPU run with BatchNorm is therefore close to, not equal to, a
    one-process run.

    Records agree on every rank: the training sums are all-reduced, and each rank scores
    its share of the validation set (:func:`rank_share`), the summed scores all-reduced,
    so the best epoch, keep-best and early stopping agree. Augmentation draws from a generator of
    each rank's own (seeded from the shared one), so that the ranks do not augment their
    shares alike and the shared generator stays in step for the permutations.

    Examples
    --------
    >>> from sklearn_greedy.training._distributed import DistributedStageTrainer
    >>> from sklearn_greedy.training._engine import StageTrainer
    >>> issubclass(DistributedStageTrainer, StageTrainer)
    True
    """

    def __init__(self, model, data, **kwargs):
        super().__init__(model, data, **kwargs)
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self._ddp = None
        self._shares = {}
        if self.augment is not None:
            self.augment = _RankAugment(self.augment, self.generator, self.rank)

    # ----------------------------------------------------------------- the loop
    def fit(self):
        """Check the ranks agree, wrap the stage, train it, and unwrap it.

        Returns
        -------
        StageResult
            The same on every rank.
        """
        device = self._model_device()
        self._check_ranks_agree(device)
        restore = _use_sync_batchnorm(self.model) if device.type == "cuda" else None
        try:
            # rank 0's buffers for all: a fresh stage's are equal anyway, a warm one's may not be
            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)
            # DDP broadcasts rank 0's parameters here, so the ranks start from the same stage;
            # the buffers are averaged once per epoch instead of broadcast at every forward
            self._ddp = DistributedDataParallel(
                self.model,
                device_ids=[device] if device.type == "cuda" else None,
                **_NO_FORWARD_BUFFER_SYNC,
            )
            return super().fit()
        finally:
            self._ddp = None
            if restore is not None:
                restore()

    def train_step(self, idx: torch.Tensor, xb: torch.Tensor):
        """Forward, backward and update on this rank's share ``idx`` of a global batch.

        Parameters
        ----------
        idx : torch.Tensor
            Indices of this rank's share of the batch.
        xb : torch.Tensor
            Their raw inputs.

        Returns
        -------
        tuple
            (output, target, loss) of this rank's share; ``loss`` is such that its sum,
            times each rank's number of samples, over the ranks is the global batch's loss
            times its size (the mean loss of this share without sample weights).
        """
        out, yb, loss = self._forward(idx, xb)
        share, size_ratio = self._shares.pop(id(idx))
        if idx.shape[0] == 0:
            # a share without rows (sharded features) still joins the step, whose
            # backward is collective: a zero loss through the outputs, zero gradients
            loss = out.float().sum() * 0.0
        # this rank's part of the global batch's mean loss; DDP averages the ranks'
        # gradients, hence the factor world_size
        part = loss * share
        if self._initial_loss is None:
            # every rank judges divergence against the same first loss: the global one
            first = part.detach().float().reshape(1).clone()  # all_reduce works in place
            dist.all_reduce(first)
            self._initial_loss = float(first)
        self._update(part * self.world_size)
        # the epoch's record sums loss x share size: weighted shares of unequal weight
        # need their part rescaled for that sum to be the global batch's loss
        return out, yb, loss if size_ratio is None else part.detach() * size_ratio

    def validation_score(self, *args, **kwargs) -> float:
        """The validation score of the whole set, the same on every rank.

        Each rank scores its share of the rows with the same weights and the sums are
        all-reduced: one pass over the set for all ranks together, and one value on every
        rank (all-reduce hands each the same result), so that no rank stops early, or
        keeps an epoch, alone.

        Parameters
        ----------
        *args, **kwargs
            Passed to :meth:`StageTrainer._validation_total` (``score_fn``).

        Returns
        -------
        float
            Mean score on the validation data.
        """
        n = self.data.X_val.shape[0]
        total = self._validation_total(*args, rows=rank_share(n), **kwargs)
        return float(summed_over_ranks(total.double().reshape(1))) / n

    def _first_batch_loss(self, rows: range) -> torch.Tensor:
        """The divergence check's first batch shared out like the other evaluation passes:
        each rank runs its share of ``rows`` (of its own rows when the features are
        sharded), and the sums are all-reduced, so every rank reaches the same verdict."""
        share = rank_share(len(rows))
        X = self.data.X
        if isinstance(X, RowShard):
            # sharded features: as many of this rank's own rows, so that the ranks judge
            # as many rows as one process, though not the same ones
            mine = range(X.rows.start, min(X.rows.start + len(share), X.rows.stop))
        else:
            mine = range(rows.start + share.start, rows.start + share.stop)
        return summed_over_ranks(super()._first_batch_loss(mine))

    # ----------------------------------------------------------------- the hooks
    def _index_batches(self, device: torch.device) -> list[torch.Tensor]:
        self._shares = {}
        return super()._index_batches(device)

    def _local_indices(self, idx: torch.Tensor) -> torch.Tensor:
        n = idx.shape[0]
        X = self.data.X
        if isinstance(X, RowShard):
            # the rows of the batch whose features this rank holds: about 1 / world_size
            # of it, none in a rare batch (the step still runs: see train_step); a mask's
            # size is known only on the host, one synchronisation per batch on CUDA
            local = idx[(idx >= X.rows.start) & (idx < X.rows.stop)]
        elif n < self.world_size:
            raise ValueError(
                f"{self.config.label}: a batch of {n} samples cannot be shared by "
                f"{self.world_size} processes; raise batch_size (or the number of samples) "
                "to at least the number of processes."
            )
        else:
            local = idx.tensor_split(self.world_size)[self.rank]
        weight = self.data.sample_weight
        if weight is None:
            share, size_ratio = local.shape[0] / n, None
        else:
            share = weight[local].sum() / weight[idx].sum().clamp_min(1e-12)
            size_ratio = n / max(local.shape[0], 1)
        # keyed by the tensor's identity: the same object comes back to train_step
        self._shares[id(local)] = (share, size_ratio)
        return local

    def _cache_rows(self, n: int) -> range | None:
        return shard_rows(n)

    def _training_module(self) -> nn.Module:
        return self._compiled(self.model if self._ddp is None else self._ddp)

    def _reduce_sums(self, sums: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(sums)
        # the epoch's training pass is over: the ranks' BatchNorm running statistics
        # (per-rank on the CPU) become their mean before validation and keep-best read them
        self._average_buffers()
        return sums

    # ----------------------------------------------------------------- helpers
    def _model_device(self) -> torch.device:
        first = next(self.model.parameters(), None)
        return self.data.y.device if first is None else first.device

    def _average_buffers(self) -> None:
        for buffer in self.model.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer.div_(self.world_size)

    def _check_ranks_agree(self, device: torch.device) -> None:
        """Every rank must index the same data with the same permutations: a rank with
        another validation split, or another seed, would train on the wrong samples
        without any error."""
        data, config = self.data, self.config
        settings = [config.batch_size, config.max_epochs, config.lr, data.has_validation]
        # as many numbers on every rank, whatever it was given: all_gather needs that
        parts = [torch.tensor(settings, dtype=torch.float64)]
        parts += [_checksum(t) for t in (data.X, data.y, data.sample_weight)]
        parts += [_checksum(t) for t in (data.X_val, data.y_val)]
        state = self.generator.get_state().to(torch.float64)
        parts.append((state * torch.arange(1, state.numel() + 1, dtype=torch.float64)).sum())
        mine = torch.cat([p.reshape(-1).cpu() for p in parts]).to(device)
        gathered = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(gathered, mine)
        differ = [
            r for r, g in enumerate(gathered) if not torch.allclose(g, gathered[0], rtol=1e-9)
        ]
        if differ:
            raise ValueError(
                f"{config.label}: the processes were given different data, settings or random "
                f"states (ranks {differ} differ from rank 0). Every rank must fit on the same "
                "data with the same integer random_state (a validation split drawn with "
                "random_state=None differs from rank to rank)."
            )


class _RankAugment:
    """An augmentation drawing from this rank's own generator, seeded from the shared one.

    The shared generator must draw the same numbers on every rank to give the same
    permutations; augmenting shares of different sizes from it would put it out of step.
    """

    def __init__(self, augment, shared: torch.Generator, rank: int):
        self.augment = augment
        seed = int(torch.randint(2**62, (1,), generator=shared, device=shared.device))
        self.generator = torch.Generator(device=shared.device)
        self.generator.manual_seed(seed + rank)

    def __call__(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.augment(batch, self.generator)


def _checksum(tensor) -> torch.Tensor:
    """Two numbers that change when a tensor's values or their order change."""
    if tensor is None:
        return torch.zeros(2, dtype=torch.float64)
    if not isinstance(tensor, torch.Tensor):  # a streaming source: its length only
        return torch.tensor([float(tensor.shape[0]), 0.0], dtype=torch.float64)
    rows = tensor.reshape(tensor.shape[0], -1).sum(1, dtype=torch.float64)
    position = torch.arange(1, rows.shape[0] + 1, dtype=torch.float64, device=rows.device)
    return torch.stack([rows.sum(), (rows * position).sum()]).cpu()


def _use_sync_batchnorm(model: nn.Module):
    """Swap the BatchNorm layers of ``model`` for SyncBatchNorm ones, in place; return the
    function that puts the originals back.

    The SyncBatchNorm layers share the originals' parameters and buffers, so what they
    learn is in the originals, and the caller's model ends with plain BatchNorm (which
    runs anywhere, without a process group).
    """
    originals = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if isinstance(child, _BatchNorm)
    ]
    for parent, name, child in originals:
        setattr(parent, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))

    def restore():
        for parent, name, child in originals:
            setattr(parent, name, child)

    return restore
