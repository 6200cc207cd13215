"""One fit on several devices: data-parallel training of each greedy stage.

Two ways in, one trainer:

- ``torchrun`` on the user's script: a process group is already initialised when ``fit``
  is called, and :func:`~sklearn_greedy._engine.train_stage` picks
  :class:`DistributedStageTrainer` by itself (:func:`stage_trainer_class`);
- :func:`fit_on_devices`, for a notebook: it spawns one process per device, fits a copy of
  the estimator in each and returns the fitted copy of rank 0. The estimator never holds a
  process group, so it still clones and pickles.

Only the trainable stage (the new layer and its auxiliary head) is wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel`; the frozen prefix runs on each rank
under ``torch.no_grad`` and never takes part in the gradient exchange. Every rank builds
the same shuffled global batches and trains on its contiguous share of each, so that a
step on several devices is the step that one device would take on the whole batch.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os
import pickle
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from numbers import Integral

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel

from ._engine import StageTrainer

# How often the parent wakes while the workers run: to honour the timeout and Ctrl-C.
_POLL_SECONDS = 1.0
# Grace given to a worker asked to stop before it is killed.
_STOP_SECONDS = 5.0
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


def stage_trainer_class() -> type[StageTrainer]:
    """The trainer :func:`~sklearn_greedy._engine.train_stage` uses in this process.

    Returns
    -------
    type
        :class:`DistributedStageTrainer` inside an initialised process group of more than
        one process (``torchrun``, or a worker of :func:`fit_on_devices`), else
        :class:`~sklearn_greedy._engine.StageTrainer`.

    Examples
    --------
    >>> from sklearn_greedy._distributed import stage_trainer_class
    >>> stage_trainer_class().__name__
    'StageTrainer'
    """
    return DistributedStageTrainer if distributed_world_size() > 1 else StageTrainer


class DistributedStageTrainer(StageTrainer):
    """Trains one stage data-parallel over the ranks of the default process group.

    Takes the parameters of :class:`~sklearn_greedy._engine.StageTrainer`, and every rank
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

    Records agree on every rank: the training sums are all-reduced, validation runs on the
    whole validation set on every rank and rank 0's score is the one recorded, so the best
    epoch, keep-best and early stopping agree. Augmentation draws from a generator of
    each rank's own (seeded from the shared one), so that the ranks do not augment their
    shares alike and the shared generator stays in step for the permutations.

    Examples
    --------
    >>> from sklearn_greedy._distributed import DistributedStageTrainer
    >>> from sklearn_greedy._engine import StageTrainer
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
        xb, yb = self._batch(idx, xb)
        with self.config.autocast(xb.device):
            out = self._training_module()(xb)
            loss = self._loss(out, yb, idx)
        share, size_ratio = self._shares.pop(id(idx))
        # this rank's part of the global batch's mean loss; DDP averages the ranks'
        # gradients, hence the factor world_size
        part = loss * share
        if self._initial_loss is None:
            # every rank judges divergence against the same first loss: the global one
            first = part.detach().float().reshape(1).clone()  # all_reduce works in place
            dist.all_reduce(first)
            self._initial_loss = float(first)
        self.optimizer.zero_grad(set_to_none=True)
        (part * self.world_size).backward()
        self.optimizer.step()
        # the epoch's record sums loss x share size: weighted shares of unequal weight
        # need their part rescaled for that sum to be the global batch's loss
        return out, yb, loss if size_ratio is None else part.detach() * size_ratio

    def validation_score(self, *args, **kwargs) -> float:
        """Rank 0's validation score, on every rank.

        Every rank scores the whole validation set with the same weights; taking rank 0's
        value keeps the records equal even where kernels are not bitwise deterministic, so
        that no rank stops early, or keeps an epoch, alone.

        Parameters
        ----------
        *args, **kwargs
            Passed to :meth:`StageTrainer.validation_score`.

        Returns
        -------
        float
            Mean score on the validation data.
        """
        score = torch.tensor(
            [super().validation_score(*args, **kwargs)],
            dtype=torch.float64,
            device=self._model_device(),
        )
        dist.broadcast(score, src=0)
        return float(score)

    # ----------------------------------------------------------------- the hooks
    def _index_batches(self, device: torch.device) -> list[torch.Tensor]:
        self._shares = {}
        return super()._index_batches(device)

    def _local_indices(self, idx: torch.Tensor) -> torch.Tensor:
        n = idx.shape[0]
        if n < self.world_size:
            raise ValueError(
                f"{self.config.label}: a batch of {n} samples cannot be shared by "
                f"{self.world_size} processes; raise batch_size (or the number of samples) "
                "to at least the number of processes."
            )
        local = idx.tensor_split(self.world_size)[self.rank]
        weight = self.data.sample_weight
        if weight is None:
            share, size_ratio = local.shape[0] / n, None
        else:
            share = weight[local].sum() / weight[idx].sum().clamp_min(1e-12)
            size_ratio = n / local.shape[0]
        # keyed by the tensor's identity: the same object comes back to train_step
        self._shares[id(local)] = (share, size_ratio)
        return local

    def _training_module(self) -> nn.Module:
        return self.model if self._ddp is None else self._ddp

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


# --------------------------------------------------------------------- spawning
def check_devices(devices: Sequence[str | torch.device]) -> list[str]:
    """Validate the devices of a fit on several devices.

    Parameters
    ----------
    devices : list or tuple of str or torch.device
        At least two devices of one type: distinct CUDA devices named with their index
        (``["cuda:0", "cuda:1"]``, one process each, NCCL), or ``"cpu"`` repeated (gloo,
        for testing a distributed fit on a machine without GPUs).

    Returns
    -------
    list of str
        The devices' names, normalised (``"cuda:0"``).

    Raises
    ------
    ValueError
        When ``devices`` is not such a list.

    Examples
    --------
    >>> from sklearn_greedy._distributed import check_devices
    >>> check_devices(["cpu", "cpu"])
    ['cpu', 'cpu']
    >>> check_devices(["cpu"])
    Traceback (most recent call last):
    ...
    ValueError: devices needs at least two devices, got ['cpu']; ...
    """
    if not isinstance(devices, (list, tuple)):
        raise ValueError(
            "devices must be a list or tuple of device names such as ['cuda:0', 'cuda:1'], "
            f"got {devices!r}."
        )
    if len(devices) < 2:
        raise ValueError(
            f"devices needs at least two devices, got {list(devices)!r}; to fit on one "
            "device, pass it alone (device='cuda:0')."
        )
    parsed = []
    for device in devices:
        try:
            parsed.append(torch.device(device))
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ValueError(f"{device!r} in devices is not a torch device name.") from exc
    kinds = sorted({d.type for d in parsed})
    if len(kinds) > 1:
        raise ValueError(f"devices must all be of one type, got {kinds} in {list(devices)!r}.")
    if kinds[0] not in ("cpu", "cuda"):
        raise ValueError(
            f"A fit on several devices runs on CUDA devices (NCCL) or on the CPU (gloo); "
            f"got {kinds[0]!r} devices."
        )
    if kinds[0] == "cuda":
        if any(d.index is None for d in parsed):
            raise ValueError(
                f"Name each GPU with its index ('cuda:0', 'cuda:1'), got {list(devices)!r}."
            )
        indices = [d.index for d in parsed]
        if len(set(indices)) < len(indices):
            raise ValueError(
                f"Each GPU may appear once in devices (one process per GPU), got {list(devices)!r}."
            )
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        missing = [str(d) for d in parsed if d.index >= count]
        if missing:
            raise ValueError(f"{missing} not found: this machine has {count} CUDA device(s).")
    return [str(d) for d in parsed]


def fit_on_devices(
    estimator, devices, X, y=None, *, timeout: float | None = None, **fit_params
):  # fmt: skip
    """Fit ``estimator`` data-parallel on several devices, one spawned process each.

    Each process joins a process group (NCCL for CUDA devices, gloo for the CPU, through a
    file in a temporary directory), fits a copy of ``estimator`` with ``device`` set to its
    own device, and rank 0 writes its fitted copy back; the process groups are gone when
    this returns. ``random_state=None`` (or a RandomState) is drawn into one integer first,
    since every rank must shuffle, split and initialise alike.

    Parameters
    ----------
    estimator : estimator with a ``device`` parameter
        The estimator to fit; it is left unchanged (its fitted state, when it has one,
        travels with it, for ``warm_start``).
    devices : list of str
        Devices, as accepted by :func:`check_devices`.
    X : array-like
        Training data, passed to every process's ``fit``.
    y : array-like, default=None
        Targets.
    timeout : float or None, default=None
        Seconds the whole fit may take before the workers are stopped and an error is
        raised; None waits for as long as the workers are alive.
    **fit_params : dict
        Further arguments of ``estimator.fit`` (``sample_weight``, ``X_val``, ...).

    Returns
    -------
    fitted : estimator
        A fitted copy of ``estimator``, with the same parameters (``device`` and
        ``random_state`` included).

    Raises
    ------
    RuntimeError
        When a worker raises, is killed or the timeout runs out: it names the rank and
        the worker's error; every worker is stopped and nothing fitted is returned.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_greedy import GreedyLayerwiseCNNClassifier
    >>> from sklearn_greedy._distributed import fit_on_devices
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = GreedyLayerwiseCNNClassifier(image_shape=(1, 8, 8), random_state=0)
    >>> clf = fit_on_devices(clf, ["cuda:0", "cuda:1"], X, y)  # doctest: +SKIP
    """
    devices = check_devices(devices)
    params = estimator.get_params(deep=False)
    if "device" not in params:
        raise ValueError(f"{type(estimator).__name__} has no device parameter to set.")
    work = _worker_estimator(estimator, params)
    backend = "nccl" if devices[0].startswith("cuda") else "gloo"
    with tempfile.TemporaryDirectory(prefix="sklearn-greedy-ddp-") as workdir:
        with open(os.path.join(workdir, "payload.pkl"), "wb") as fh:
            pickle.dump((work, X, y, fit_params), fh, protocol=pickle.HIGHEST_PROTOCOL)
        run_workers(_fit_worker, (workdir, devices, backend), devices, workdir, timeout)
        result = os.path.join(workdir, "result.pkl")
        if not os.path.exists(result):
            raise RuntimeError("fit_on_devices: rank 0 finished without writing its fit.")
        with open(result, "rb") as fh:
            fitted = pickle.load(fh)
    for name in ("device", "random_state"):
        if name in params:
            setattr(fitted, name, params[name])
    return fitted


def _worker_estimator(estimator, params: dict):
    """A shallow copy of ``estimator`` whose random state is one integer for all ranks."""
    from sklearn.utils import check_random_state

    work = copy.copy(estimator)
    random_state = params.get("random_state", 0)
    if "random_state" in params and not isinstance(random_state, Integral):
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        work.set_params(random_state=seed)
    return work


def _fit_worker(rank: int, workdir: str, devices: list[str], backend: str) -> None:
    """One process of :func:`fit_on_devices` (module level, for ``spawn``)."""
    with record_errors(workdir, rank):
        device = devices[rank]
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        else:
            # the ranks share the machine's cores
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // len(devices)))
        with open(os.path.join(workdir, "payload.pkl"), "rb") as fh:
            estimator, X, y, fit_params = pickle.load(fh)
        estimator.set_params(device=device)
        dist.init_process_group(
            backend,
            init_method="file://" + os.path.join(workdir, "rendezvous"),
            rank=rank,
            world_size=len(devices),
        )
        # on failure the group is left to die with the process: destroying it could wait
        # on a peer stuck in a collective
        estimator.fit(X, y, **fit_params)
        if rank == 0:
            partial = os.path.join(workdir, "result.pkl.part")
            with open(partial, "wb") as fh:
                pickle.dump(estimator, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(partial, os.path.join(workdir, "result.pkl"))
        dist.destroy_process_group()


@contextlib.contextmanager
def record_errors(workdir: str, rank: int) -> Iterator[None]:
    """Run a worker's body; on an exception, write its rank, time and traceback to
    ``workdir`` for the parent, then let it propagate.

    The first failure is the cause; the others are usually its echo (a peer's collective
    failing because the first process is gone), so the parent reports the earliest one.

    Parameters
    ----------
    workdir : str
        Directory shared with the parent.
    rank : int
        This worker's rank.

    Yields
    ------
    None
        The worker's body runs inside.

    Examples
    --------
    >>> import tempfile
    >>> from sklearn_greedy._distributed import record_errors
    >>> with tempfile.TemporaryDirectory() as workdir, record_errors(workdir, 0):
    ...     pass
    """
    try:
        yield
    except Exception as exc:
        record = {
            "rank": rank,
            "time": time.time(),
            "summary": "".join(traceback.format_exception_only(type(exc), exc)).strip(),
            "traceback": traceback.format_exc(),
        }
        with open(os.path.join(workdir, f"error-{rank}.json"), "w") as fh:
            json.dump(record, fh)
        raise


def run_workers(fn, args: tuple, devices: list[str], workdir: str, timeout=None) -> None:
    """Run ``fn(rank, *args)`` in one spawned process per device and wait for them all.

    Parameters
    ----------
    fn : callable
        A module-level function (``spawn`` imports it by name in each process); wrap its
        body in :class:`record_errors` for the errors to be reported by rank.
    args : tuple
        Further arguments of ``fn``, picklable.
    devices : list of str
        One device per process (named in error messages).
    workdir : str
        Directory where the workers record their errors.
    timeout : float or None, default=None
        Seconds to wait for the workers before stopping them.

    Raises
    ------
    RuntimeError
        Naming the rank that failed first and its error, after every worker is stopped.

    Examples
    --------
    >>> from sklearn_greedy._distributed import run_workers
    >>> run_workers(print, ("hello",), ["cpu", "cpu"], ".")  # doctest: +SKIP
    """
    context = mp.start_processes(
        fn, args=args, nprocs=len(devices), join=False, start_method="spawn"
    )
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not context.join(timeout=_POLL_SECONDS):
            if deadline is not None and time.monotonic() > deadline:
                raise RuntimeError(
                    f"The workers on {devices} did not finish within timeout={timeout} s; "
                    "they were stopped."
                )
    except mp.ProcessRaisedException as exc:
        raise RuntimeError(_failure_message(exc, devices, workdir)) from exc
    except mp.ProcessExitedException as exc:
        rank = exc.error_index
        raise RuntimeError(
            f"The worker of rank {rank} (device {devices[rank]!r}) died without an error "
            f"message: {exc} (killed, or out of memory?)."
        ) from exc
    finally:
        _stop(context.processes)
        for path in context.error_files:
            if path and os.path.exists(path):
                os.unlink(path)


def _failure_message(exc, devices: list[str], workdir: str) -> str:
    records = []
    for rank in range(len(devices)):
        path = os.path.join(workdir, f"error-{rank}.json")
        if os.path.exists(path):
            with open(path) as fh:
                records.append(json.load(fh))
    if not records:  # it failed outside record_errors: torch's own message has it
        rank = exc.error_index
        return f"The worker of rank {rank} (device {devices[rank]!r}) failed:{exc}"
    first = min(records, key=lambda r: r["time"])
    rank = first["rank"]
    return (
        f"The worker of rank {rank} (device {devices[rank]!r}) failed: {first['summary']}\n\n"
        f"Traceback of rank {rank}:\n{first['traceback']}"
    )


def _stop(processes) -> None:
    """Terminate the workers still alive, then kill those that ignore it: none outlives
    the call (a timeout, an error elsewhere, or Ctrl-C in the parent)."""
    alive = [p for p in processes if p.is_alive()]
    for process in alive:
        process.terminate()
    end = time.monotonic() + _STOP_SECONDS
    for process in alive:
        process.join(max(0.0, end - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
