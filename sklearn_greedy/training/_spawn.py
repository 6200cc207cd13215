"""Fits on several devices from one process, on torch's own launcher.

:func:`fit_on_devices` is what ``device=[...]`` of the estimator runs: it starts one
process per device through ``torch.distributed.elastic`` (the engine of ``torchrun``,
called from Python: its agent spawns and monitors the workers, and its c10d rendezvous
forms the process group), each fitting a copy of the estimator (its stages then train
data-parallel, :mod:`sklearn_greedy.training._distributed`), and returns the fitted copy
of rank 0. What is ours is what each rank does, and what the launcher cannot know: a
worker that fails or dies stops the others (the agent's) and fails the fit with its
message (ours, by rank); the workers end with their parent even when it is SIGKILLed,
and a fit's time limit ends the workers themselves.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import json
import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Iterator, Sequence
from numbers import Integral

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from ._streaming import MemmapView

# How often an orphaned worker's watch looks at its parent.
_POLL_SECONDS = 1.0
# How long a worker given SIGINT looks for its parent's death before taking it for Ctrl-C.
_ORPHAN_WAIT_SECONDS = 1.0
# Grace the launcher's agent gives a worker asked to stop before it is killed.
_STOP_SECONDS = 5
# The signals the launcher's agent handles while the workers run (its default list).
_HANDLED_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
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

    The processes are started by ``torch.distributed.elastic`` (:func:`run_workers`); each
    joins a process group (NCCL for CUDA devices, gloo for the CPU), fits a copy of
    ``estimator`` with ``device`` set to its own device, and rank 0 writes its fitted copy
    back; the process groups are gone when this returns. ``X`` and the fit's arguments
    travel pickled (a memmap as its file's name, reopened by each worker).
    ``random_state=None`` (or a RandomState) is drawn into one integer first, since every
    rank must shuffle, split and initialise alike.

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
        Seconds the whole fit may take, the workers' start included: past it each
        worker stops (and a collective waiting on a stuck peer gives up), and an error
        is raised; None waits for as long as the workers are alive.
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
    if os.environ.get(_WORKDIR_ENV) and getattr(
        multiprocessing.current_process(), "_inheriting", False
    ):
        # a worker importing its parent's script, whose top level starts this fit again
        with open(os.path.join(os.environ[_WORKDIR_ENV], _UNGUARDED), "w"):
            pass
        raise RuntimeError(_UNGUARDED_MESSAGE)
    devices = check_devices(devices)
    if timeout is not None and not hasattr(signal, "SIGALRM"):
        # each worker keeps the time limit as its own SIGALRM timer
        raise ValueError(
            f"timeout={timeout!r} needs SIGALRM, which this platform ({os.name}) lacks; "
            "pass timeout=None."
        )
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
    the pid of the process that started it."""
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
        # the launcher's rendezvous gave this process its rank and the group's address
        # (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); a collective waiting on a stuck
        # peer gives up when the fit's time is out
        left = _time_left()
        dist.init_process_group(
            backend, timeout=None if left is None else datetime.timedelta(seconds=max(left, 1))
        )
        # the parent's record of a worker that reached training (not one still starting)
        open(os.path.join(workdir, f"joined-{rank}"), "w").close()
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
        # torch has the kernel send SIGINT to a worker whose parent died, and it may come
        # before this process is seen to have a new parent; the fit would take it for a
        # user's interrupt and end "gracefully", keeping its layers
        if _orphaned(parent, wait=_ORPHAN_WAIT_SECONDS):
            _leave_orphaned(workdir)
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, interrupted)
    threading.Thread(target=watch, name="sklearn-greedy-parent-watch", daemon=True).start()


def _orphaned(parent: int, wait: float) -> bool:
    """Whether this process's parent is no longer ``parent``, looking for up to ``wait``
    seconds (a Ctrl-C in the terminal reaches the parent and its workers alike, and the
    parent then stops them itself)."""
    end = time.monotonic() + wait
    while os.getppid() == parent:
        if time.monotonic() >= end:
            return False
        time.sleep(0.02)
    return True


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
    """Run ``fn(rank, *args)`` in one process per device, started and monitored by
    ``torch.distributed.elastic``, and wait for them all.

    The launcher's agent runs in this process: its c10d rendezvous (a TCP store on a free
    local port, as ``torchrun --standalone``) gives each worker its rank and the process
    group's address, its monitor stops every worker as soon as one fails or dies, and a
    failed fit is not restarted (``max_restarts=0``: its error is the user's to see). The
    launcher's logs and error files go to ``workdir``, removed with it.

    Parameters
    ----------
    fn : callable
        A module-level function (``spawn`` imports it by name in each process); its
        exceptions are reported by rank.
    args : tuple
        Further arguments of ``fn``, picklable.
    devices : list of str
        One device per process (named in error messages).
    workdir : str
        Directory where the workers record their errors and the launcher its logs.
    timeout : float or None, default=None
        Seconds the workers may take, from now: past it each raises ``TimeoutError``
        (a SIGALRM timer of its own, which interrupts Python code), and the fit fails.

    Raises
    ------
    RuntimeError
        Naming the rank that failed first and its error, after every worker is stopped.
    KeyboardInterrupt
        When this process is interrupted (Ctrl-C, SIGTERM) while the workers run; they
        are stopped first.

    Examples
    --------
    >>> from sklearn_greedy.training._spawn import run_workers
    >>> run_workers(print, ("hello",), ["cpu", "cpu"], ".")  # doctest: +SKIP
    """
    deadline = None if timeout is None else time.time() + timeout
    settings = dict(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=len(devices),
        run_id=f"sklearn-greedy-{uuid.uuid4().hex}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        start_method="spawn",
        logs_specs=DefaultLogsSpecs(log_dir=os.path.join(workdir, "launcher")),
        signals_to_handle=",".join(_HANDLED_SIGNALS),
        shutdown_timeout=_STOP_SECONDS,
    )
    # the last two are newer than torch 2.3; without them the launcher handles the same
    # signals and gives a stopped worker 30 s
    known = {field.name for field in dataclasses.fields(LaunchConfig)}
    config = LaunchConfig(**{key: value for key, value in settings.items() if key in known})
    try:
        with (
            _launcher_quiet(),
            _signal_handlers_restored(),
            _temporary_files_in(workdir, len(devices)),
        ):
            elastic_launch(config, _as_rank)(fn, args, workdir, deadline, timeout)
    except ChildFailedError as exc:
        raise RuntimeError(_failure_message(exc, devices, workdir)) from exc
    except SignalException as exc:
        # the agent stopped the workers on this process's signal: to the caller, an interrupt
        raise KeyboardInterrupt(f"fit on {devices} interrupted by {exc.sigval.name}") from exc


def _as_rank(fn, args: tuple, workdir: str, deadline: float | None, timeout) -> None:
    """The launcher's entry point in each worker: ``fn(rank, *args)`` with this worker's
    rank, its errors recorded for the parent, and the fit's time limit as its own alarm."""
    rank = int(os.environ["RANK"])
    with record_errors(workdir, rank):
        if deadline is not None:
            _alarm_at(deadline, timeout)
        fn(rank, *args)


# this worker's time limit, a time.time() (None: none), set by _alarm_at
_deadline: float | None = None


def _alarm_at(deadline: float, timeout) -> None:
    """Raise ``TimeoutError`` in this worker's main thread at ``deadline`` (a
    ``time.time()``), at once when it has passed (the worker was slow to start)."""

    def expired(signum, frame):
        raise TimeoutError(
            f"the fit did not finish within timeout={timeout} s; its workers were stopped."
        )

    global _deadline
    _deadline = deadline
    signal.signal(signal.SIGALRM, expired)
    left = deadline - time.time()
    if left <= 0:
        expired(signal.SIGALRM, None)
    signal.setitimer(signal.ITIMER_REAL, left)


def _time_left() -> float | None:
    """Seconds left of this worker's time limit (None: no limit)."""
    return None if _deadline is None else _deadline - time.time()


@contextlib.contextmanager
def _signal_handlers_restored() -> Iterator[None]:
    """The launcher installs its own handlers for the signals it forwards to the workers
    and leaves them installed: put the process's own back afterwards (Ctrl-C raising
    KeyboardInterrupt again)."""
    names = [name for name in _HANDLED_SIGNALS if hasattr(signal, name)]
    saved = {name: signal.getsignal(getattr(signal, name)) for name in names}
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            for name, handler in saved.items():
                signal.signal(getattr(signal, name), handler)


@contextlib.contextmanager
def _temporary_files_in(workdir: str, n_ranks: int) -> Iterator[None]:
    """Python's temporary files of this process in ``workdir`` while the workers start:
    torch.multiprocessing names a file there for each worker to write its traceback to,
    which the launcher leaves behind (issue 25: no files left); in the fit's directory it
    goes with the directory. Process-wide, so it lasts only until every rank has joined
    (the names are given at the start) or the launch ends."""
    saved, tempfile.tempdir = tempfile.tempdir, workdir
    done = threading.Event()

    def restore_once_started():
        joined = [os.path.join(workdir, f"joined-{rank}") for rank in range(n_ranks)]
        while not done.wait(0.05):
            if all(os.path.exists(path) for path in joined):
                break
        tempfile.tempdir = saved

    watcher = threading.Thread(target=restore_once_started, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        tempfile.tempdir = saved


@contextlib.contextmanager
def _launcher_quiet() -> Iterator[None]:
    """Keep the launcher's agent from logging each worker's traceback and its own steps
    (warnings and errors): the fit's exception carries the error that matters, once."""
    prefixes = ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing")
    loggers = [
        logging.getLogger(name)
        for name in list(logging.Logger.manager.loggerDict)
        if name.startswith(prefixes)
    ] + [logging.getLogger(prefix) for prefix in prefixes]
    saved = [(logger, logger.level) for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def _failure_message(exc: ChildFailedError, devices: list[str], workdir: str) -> str:
    """The error of the fit, from the workers' records and the launcher's report.

    A worker that died outside Python's reach (a signal, ``os._exit``, out of memory)
    left no record and is the cause: the others' errors (a broken connection) are its
    echo; SIGTERM is the agent stopping the others, never a cause. Otherwise the first
    recorded error is.
    """
    records = {}
    for rank in range(len(devices)):
        path = os.path.join(workdir, f"error-{rank}.json")
        if os.path.exists(path):
            with open(path) as fh:
                records[rank] = json.load(fh)
    first = min(records.values(), key=lambda r: r["time"]) if records else None
    deaths = sorted(
        (failure.timestamp, rank, failure)
        for rank, failure in exc.failures.items()
        if rank not in records and failure.exitcode != -signal.SIGTERM
    )
    if os.path.exists(os.path.join(workdir, _UNGUARDED)):
        return _UNGUARDED_MESSAGE
    if deaths or first is None:
        _, rank, failure = deaths[0] if deaths else (0, *exc.get_first_failure())
        code = failure.exitcode
        how = f"signal {failure.signal_name()}" if code < 0 else f"exit code {code}"
        message = (
            f"The worker of rank {rank} (device {devices[rank]!r}) died without an error "
            f"message ({how}; killed, or out of memory?)."
        )
        if first is not None:
            message += f" Rank {first['rank']} then failed: {first['summary']}"
        return message
    rank = first["rank"]
    return (
        f"The worker of rank {rank} (device {devices[rank]!r}) failed: {first['summary']}"
        f"\n\nTraceback of rank {rank}:\n{first['traceback']}"
    )
