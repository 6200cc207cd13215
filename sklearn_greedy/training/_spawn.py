"""Fits on several devices from one process: spawned workers, one per device.

:func:`fit_on_devices` is what ``device=[...]`` of the estimator runs: it spawns one
process per device, each joining a process group and fitting a copy of the estimator (its
stages then train data-parallel, :mod:`sklearn_greedy.training._distributed`), and returns the
fitted copy of rank 0. A worker that fails or dies stops the others and fails the fit with
its message; nothing half-fitted comes back and no process is left behind.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import pickle
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from numbers import Integral

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ._streaming import MemmapView

# How often the parent wakes while the workers run: to honour the timeout and Ctrl-C.
_POLL_SECONDS = 1.0
# Grace given to a worker asked to stop before it is killed.
_STOP_SECONDS = 5.0
# Set in the workers' environment: the directory of the fit they belong to.
_WORKDIR_ENV = "SKLEARN_GREEDY_DDP_WORKDIR"
# Written there by a worker that found itself re-running its parent's script.
_UNGUARDED = "unguarded-main"
_UNGUARDED_MESSAGE = (
    "The workers of a fit on several devices import the script that started it, and that "
    'script has no `if __name__ == "__main__":` guard: each worker ran the script\'s top '
    "level again (and with it this fit) instead of training. Put the code that fits under "
    '`if __name__ == "__main__":` (see docs/guide/devices.md, "One fit on several devices").'
)


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
    >>> from sklearn_greedy.training._spawn import check_devices
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
    >>> from sklearn_greedy.training._spawn import fit_on_devices
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = GreedyLayerwiseCNNClassifier(image_shape=(1, 8, 8), random_state=0)
    >>> clf = fit_on_devices(clf, ["cuda:0", "cuda:1"], X, y)  # doctest: +SKIP
    """
    if os.environ.get(_WORKDIR_ENV) and getattr(mp.current_process(), "_inheriting", False):
        # a worker importing its parent's script, whose top level starts this fit again
        with open(os.path.join(os.environ[_WORKDIR_ENV], _UNGUARDED), "w"):
            pass
        raise RuntimeError(_UNGUARDED_MESSAGE)
    devices = check_devices(devices)
    params = estimator.get_params(deep=False)
    if "device" not in params:
        raise ValueError(f"{type(estimator).__name__} has no device parameter to set.")
    work = _worker_estimator(estimator, params)
    backend = "nccl" if devices[0].startswith("cuda") else "gloo"
    with tempfile.TemporaryDirectory(prefix="sklearn-greedy-ddp-") as workdir:
        with open(os.path.join(workdir, "payload.pkl"), "wb") as fh:
            pickle.dump(list(fit_params), fh)  # the names, then each value in turn
            for name, value in (("the estimator", work), ("X", X), ("y", y), *fit_params.items()):
                if isinstance(value, np.memmap):  # its file's name travels, not its bytes
                    value = MemmapView.of(value)
                try:  # one at a time, so that the error names what cannot travel
                    pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
                except (pickle.PicklingError, TypeError, AttributeError) as exc:
                    raise TypeError(
                        f"{name} ({type(value).__name__}) cannot be pickled, and a fit on "
                        f"several devices sends it to each device's process: {exc}. Define "
                        "the data set's class and its transforms at module level (no "
                        "lambdas or local functions), or fit on one device."
                    ) from exc
        previous = os.environ.get(_WORKDIR_ENV)
        os.environ[_WORKDIR_ENV] = workdir  # inherited by the workers
        try:
            args = (workdir, devices, backend, os.getpid())
            run_workers(_fit_worker, args, devices, workdir, timeout)
        finally:
            if previous is None:
                del os.environ[_WORKDIR_ENV]
            else:
                os.environ[_WORKDIR_ENV] = previous
        result = os.path.join(workdir, "result.pkl")
        if not os.path.exists(result):
            raise RuntimeError("fit_on_devices: rank 0 finished without writing its fit.")
        with open(result, "rb") as fh:
            fitted = pickle.load(fh)
    for name in ("device", "random_state"):
        if name in params:
            setattr(fitted, name, params[name])
    return fitted


def _opened(value):
    return value.open() if isinstance(value, MemmapView) else value


def _worker_estimator(estimator, params: dict):
    """A shallow copy of ``estimator`` whose random state is one integer for all ranks."""
    from sklearn.utils import check_random_state

    work = copy.copy(estimator)
    random_state = params.get("random_state", 0)
    if "random_state" in params and not isinstance(random_state, Integral):
        seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
        work.set_params(random_state=seed)
    return work


def _fit_worker(rank: int, workdir: str, devices: list[str], backend: str, parent: int) -> None:
    """One process of :func:`fit_on_devices` (module level, for ``spawn``); ``parent`` is
    the pid of the process that spawned it."""
    _exit_with_parent(workdir, parent)
    try:
        _train_as_rank(rank, workdir, devices, backend)
    except BaseException:
        # a peer that left as an orphan breaks this worker's collectives: clean up quietly
        if os.getppid() != parent:
            _leave_orphaned(workdir)
        raise


def _train_as_rank(rank: int, workdir: str, devices: list[str], backend: str) -> None:
    """The body of :func:`_fit_worker`: join the group and fit; rank 0 writes the fit."""
    with record_errors(workdir, rank):
        device = devices[rank]
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        else:
            # the ranks share the machine's cores
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // len(devices)))
        with open(os.path.join(workdir, "payload.pkl"), "rb") as fh:
            names = pickle.load(fh)
            estimator, X, y = (_opened(pickle.load(fh)) for _ in range(3))
            fit_params = {name: _opened(pickle.load(fh)) for name in names}
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


def _exit_with_parent(workdir: str, parent: int) -> None:
    """End this worker when ``parent``, the process that spawned it, is gone (SIGKILLed,
    or out of memory; perhaps before this worker started): a thread watches the parent's
    pid, and the orphan removes the fit's directory (with its copy of the data) before
    exiting, instead of training on to no one."""

    def watch():
        while os.getppid() == parent:
            time.sleep(_POLL_SECONDS)
        _leave_orphaned(workdir)

    def interrupted(signum, frame):
        # torch has the kernel send SIGINT to a worker whose parent died; the fit would
        # take it for a user's interrupt and end "gracefully", keeping its layers
        if os.getppid() != parent:
            _leave_orphaned(workdir)
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, interrupted)
    threading.Thread(target=watch, name="sklearn-greedy-parent-watch", daemon=True).start()


def _leave_orphaned(workdir: str) -> None:
    """Remove the fit's directory and end this worker at once (no one reads its result)."""
    shutil.rmtree(workdir, ignore_errors=True)
    os._exit(1)


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
    >>> from sklearn_greedy.training._spawn import record_errors
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
    >>> from sklearn_greedy.training._spawn import run_workers
    >>> run_workers(print, ("hello",), ["cpu", "cpu"], ".")  # doctest: +SKIP
    """
    saved, tempfile.tempdir = tempfile.tempdir, workdir
    try:  # torch's per-worker error files go in workdir: an orphan removes them with it
        context = mp.start_processes(
            fn, args=args, nprocs=len(devices), join=False, start_method="spawn"
        )
    finally:
        tempfile.tempdir = saved
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
        if os.path.exists(os.path.join(workdir, _UNGUARDED)):
            raise RuntimeError(_UNGUARDED_MESSAGE) from exc
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
