"""Helpers shared by the benchmark scripts: timing, memory, and the end-to-end baselines.

Torch is imported inside the helpers, not here: the scripts import this module at their
top, and their ``--help`` answers without loading torch.
"""

from __future__ import annotations

import contextlib
import platform
import subprocess
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch


def pick_device(name: str) -> torch.device:
    """``--device``: "auto" is CUDA when present, anything else is passed to torch."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def describe(device: torch.device) -> str:
    """Device, date and commit, for RESULTS.md."""
    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU {platform.machine()}, {torch.get_num_threads()} threads"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{name}; torch {torch.__version__}; {date}; commit {commit}"


@contextlib.contextmanager
def peak_memory(device: torch.device, record: dict, key: str = "peak_mib"):
    """Record the peak CUDA memory allocated inside the block (NaN on the CPU)."""
    import torch

    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    yield
    sync(device)
    record["seconds"] = time.perf_counter() - start
    record[key] = (
        torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    )


def train_plain_loop(
    network: torch.nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    lr_step: int,
    lr_decay: float,
    augment=None,
    seed: int = 0,
) -> torch.nn.Module:
    """A hand-written PyTorch training loop: data on the device, index slices, SGD."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator(device=X.device).manual_seed(seed)
    opt = torch.optim.SGD(network.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_step, gamma=lr_decay)
    network.train()
    for _ in range(epochs):
        perm = torch.randperm(X.shape[0], device=X.device, generator=gen)
        for start in range(0, X.shape[0], batch_size):
            idx = perm[start : start + batch_size]
            xb = X[idx] if augment is None else augment(X[idx], gen)
            loss = F.cross_entropy(network(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
    return network.eval()


def accuracy(network: torch.nn.Module, X: torch.Tensor, y: np.ndarray, batch: int = 1024) -> float:
    import torch

    network.eval()
    with torch.no_grad():
        pred = torch.cat([network(X[s : s + batch]).argmax(1) for s in range(0, len(X), batch)])
    return float((pred.cpu().numpy() == y).mean())
