"""Small helpers shared by every estimator: devices, seeds and tensors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """Turn the ``device`` parameter into a :class:`torch.device`.

    ``"auto"`` picks CUDA when it is available and the CPU otherwise. An explicit CUDA
    device on a machine without one is an error rather than a silent fallback, so that a
    user who asked for the GPU learns that they did not get it.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is not a valid torch device; use 'auto', 'cpu' or 'cuda'."
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available.")
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


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's state, for snapshots and pickling."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


@contextlib.contextmanager
def fast_float32_matmul(device: torch.device) -> Iterator[None]:
    """Allow TF32 tensor cores for float32 matmuls and convolutions on CUDA, then restore.

    TF32 keeps float32's range with a 10-bit mantissa; SGD training does not notice, and
    on Ampere and Hopper GPUs it runs several times faster than full float32.
    """
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


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
