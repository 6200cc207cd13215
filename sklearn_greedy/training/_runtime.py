"""Small helpers shared by every estimator: devices, seeds, threads and precision."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """Turn the ``device`` parameter into a :class:`torch.device` that can train here.

    ``"auto"`` picks CUDA when it is available and the CPU otherwise. A device that this
    machine cannot train on (CUDA without a GPU, ``"mps"`` off Apple silicon, ``"meta"``,
    which holds no data) is an error rather than a silent fallback, so that a user who
    asked for the GPU learns that they did not get it.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, (list, tuple)):
        raise ValueError(
            f"device={list(device)!r}: a list of devices trains data-parallel in fit only; "
            "this step (partial_fit, refit_final_head, or an estimator without multi-device "
            "training) needs a single device."
        )
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a valid torch device; use 'auto', 'cpu' or 'cuda'."
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was requested but CUDA is not available.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was requested but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)."
            )
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device={device!r} was requested but MPS is not available.")
    elif resolved.type != "cpu":
        raise ValueError(
            f"device={device!r} cannot train a model; use 'auto', 'cpu', 'cuda' or 'mps'."
        )
    return resolved


def inference_device(fitted_device: torch.device | str) -> torch.device:
    """The device to predict on: where the model was fitted, or the CPU if that is gone.

    A model fitted on a GPU and unpickled on a CPU-only machine must still predict.
    """
    fitted_device = torch.device(fitted_device)
    if fitted_device.type == "cuda" and not torch.cuda.is_available():
        return torch.device("cpu")
    return fitted_device


def base_seed(random_state) -> int:
    """Draw the integer seed an estimator derives all of its torch seeds from."""
    from sklearn.utils import check_random_state

    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def derive_seed(seed: int, *keys: int) -> int:
    """A seed for a sub-task (a layer, a block) that does not depend on the other sub-tasks.

    Deriving rather than drawing in sequence makes ``warm_start`` runs reproduce the layers
    a single long fit would have produced.
    """
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


@contextlib.contextmanager
def torch_seeded(seed: int) -> Iterator[None]:
    """Run a block (typically module construction) under ``seed`` without touching the
    caller's global torch random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def make_generator(seed: int, device: torch.device) -> torch.Generator:
    """A torch generator on ``device`` (shuffling and augmentation draw from it)."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


PRECISIONS = ("auto", "float32", "tf32", "bf16", "fp16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` is TF32 on CUDA (float32's range, a 10-bit mantissa, several times the
    speed on Ampere and Hopper GPUs) and float32 elsewhere."""
    if precision == "auto":
        return "tf32" if device.type == "cuda" else "float32"
    return precision


def default_threads(n_values: int) -> int:
    """Torch's CPU threads for a model whose batches hold ``n_values`` numbers per layer.

    Small models run fastest on one thread: each operation is too short to share, and
    the threads of a busy machine wait on each other (measured in benchmarks/threads.py,
    see RESULTS.md). Larger ones use every core torch was given.
    """
    return 1 if n_values < _SMALL_MODEL_VALUES else torch.get_num_threads()


# batch x channels x pixels of a layer's output, below which one CPU thread is fastest
_SMALL_MODEL_VALUES = 2**20


@contextlib.contextmanager
def torch_runtime(
    device: torch.device, *, n_threads: int | None, precision: str = "float32",
    deterministic: bool = False,
) -> Iterator[None]:  # fmt: skip
    """Run a fit or a prediction with its own CPU threads, float32 precision and determinism,
    and put the process's settings back afterwards.

    Torch keeps these settings process-wide: an estimator that changes them restores
    them, so that two estimators with different settings do not leak into each other.
    """
    saved_threads = torch.get_num_threads()
    saved_flags = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    saved_deterministic = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    try:
        if device.type == "cpu" and n_threads is not None:
            torch.set_num_threads(max(1, int(n_threads)))
        if device.type == "cuda":
            tf32 = precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
            torch.backends.cudnn.deterministic = deterministic
            torch.backends.cudnn.benchmark = not deterministic
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        if torch.get_num_threads() != saved_threads:
            torch.set_num_threads(saved_threads)
        (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
        ) = saved_flags
        torch.use_deterministic_algorithms(saved_deterministic[0], warn_only=saved_deterministic[1])


@contextlib.contextmanager
def restore_on_failure(estimator) -> Iterator[None]:
    """Put the estimator's attributes back as they were if the block raises.

    ``validate_data`` sets ``n_features_in_`` before training starts; without this, a fit
    that fails or is interrupted would leave it out of step with the previous model.
    """
    saved = dict(estimator.__dict__)
    try:
        yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(saved)
        raise


def estimator_runtime(estimator, device: torch.device, n_values: int = 0):
    """A context running torch with ``estimator``'s threads, precision and determinism on
    ``device``, restoring the process's settings on exit.

    The estimator's parameters ``n_threads``, ``precision`` and ``deterministic`` are read
    where it has them; absent ones take their defaults (automatic threads, float32, no
    determinism constraint). ``n_values`` (numbers per batch in the widest layer) picks
    the automatic thread count.
    """
    n_threads = getattr(estimator, "n_threads", None)
    if n_threads is None:
        n_threads = default_threads(n_values)
    precision = resolve_precision(getattr(estimator, "precision", "float32"), device)
    return torch_runtime(
        device,
        n_threads=n_threads,
        precision=precision,
        deterministic=bool(getattr(estimator, "deterministic", False)),
    )
