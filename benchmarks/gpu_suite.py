"""One prepared GPU run (issue 12): CUDA tests, stage throughput, peak memory, CIFAR-10.

A GPU machine is lent rarely and briefly (15 minutes in all, its start included; at most
10 minutes a command), so everything the GPU has to show runs from this one command, in
this order, within ``--budget-s`` seconds of wall time:

a. the CUDA tests, ``python -m pytest -m cuda -q tests/training/test_cuda.py`` in a subprocess;
   its summary line is recorded;
b. stage throughput on the paper's k=3 CIFAR-10 stage shapes (50,000 random 3x32x32
   uint8 images, batch 128) for the 1st and the 3rd stage: the engine through the public
   estimator (``cifar10_params(3)``; per-epoch ``seconds`` from ``history_``; the 3rd
   stage is a ``warm_start`` fit adding layer 3 to a 2-layer model), under each setting
   of ``ENGINE_VARIANTS`` the estimator offers (each ``precision``, then bf16 with
   ``channels_last`` and with ``compile`` too), against a plain hand-written PyTorch loop on the
   same modules (data on the device, index-slice batches, crop and flip on the device,
   the frozen prefix recomputed under ``no_grad`` for each batch, SGD with momentum);
c. peak training memory (``torch.cuda.max_memory_allocated`` minus what was allocated
   before the steps: modules and batch, so no resident data set) of each greedy stage of
   the k=1 network of ``cifar10_params(1)`` at batch 256, against end-to-end training of
   the same final network;
d. CIFAR-10 with ``cifar10_params(3)`` and the paper's 50 epochs per layer: per-layer,
   final and ensemble test accuracy and the whole fit's seconds; then, in the time left,
   the A/B of the auxiliary width: the same fit at the authors' script's M~ = 128
   (``cifar10_params(3, aux_width=128)``) against the paper's text's 256, layer by layer;

and, with ``--scale`` (off by default: without it the budget, the shares and parts a-d
are as above), two more parts after them:

e. streaming throughput: the 1st stage of ``cifar10_params(3)`` through the public
   estimator (per-epoch ``seconds`` from ``history_``), fitted from the CIFAR-10 array
   (``load_cifar10``, as part d has it) and streamed from an ``ImageFolderDataset`` of
   the same images (the archive given as ``--data-dir`` extracted into a temporary
   folder, or the folder itself; else the array's rows written as PNG files) with
   ``min(8, cores)`` workers and pinned memory; the same seed and rows (a
   ``SliceDataset`` of the folder), as many images (up to 50,000) as the part's time
   allows; images/s of both and their ratio, stream / array (issue target: >= 0.8);
f. an ImageNet-shaped stage: 1,024 random 3x224x224 JPEG images in 10 classes written
   to a temporary folder, and one layer of ``imagenet_params(1)`` (``n_layers=1``, one
   epoch, batch 256) streamed from ``ImageFolderDataset(folder, size=(224, 224))``:
   whether it completes, peak ``torch.cuda.max_memory_allocated`` against the device's
   memory, seconds and images/s. A CUDA out-of-memory error is recorded as the finding,
   not raised.

It writes ``OUT/gpu_suite-<date>.json`` (headline keys ``device``, ``torch``, ``cuda``,
``commit``, ``date``, ``command``, ``stage_throughput_ratio``, ``memory_ratio``,
``cifar10_k3_final``, ``cifar10_k3_ensemble``, ``cifar10_k3_fit_s``,
``streaming_throughput_ratio``, ``imagenet_stage_peak_gib`` and ``wall_s``, null where a
part was skipped, and the two of parts e and f without ``--scale``; then each part's
details) and ``OUT/gpu_suite-<date>.md``, a block to paste into ``benchmarks/RESULTS.md``.
Commit the JSON of a GPU run as ``benchmarks/results/gpu_suite-<date>.json``.

Budget: each part gets a share of the budget (``SHARES``) plus whatever the parts before
it left unused; the shares of the later parts stay reserved, so that the tests and the
throughput runs cannot eat the CIFAR-10 fit's time. Before it starts, a part estimates its
cost (from a short timed warm-up, or from part b's measured rates) and is skipped, saying
so and recording null, when the estimate does not fit. A part that overruns is stopped at
its limit (SIGALRM raising a ``KeyboardInterrupt``) and keeps what it measured so far. The
CIFAR-10 model grows by one ``warm_start`` fit per layer, so that a layer that would not
fit is never started; the layers finished are scored either way.

Start line. The device machine has PyTorch with CUDA, scikit-learn, scipy, tqdm,
matplotlib and pytest, no skorch (never imported here) and no internet; it gets a copy of
the working tree without ``.git``, so the data travels in the ignored folder ``.dev/`` and
the commit is given on the command line. Here, once::

    mkdir -p .dev && cp ../shared/data/cifar-10-jpeg/cifar-10-jpeg.tar.gz .dev/
    git rev-parse --short HEAD     # the COMMIT below; add "+dirty" for uncommitted changes

then, as the one device command (carry ``.dev``, timeout 600 s)::

    set -o pipefail; PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python benchmarks/gpu_suite.py \\
        --data-dir .dev/cifar-10-jpeg.tar.gz --out $OUT --budget-s 420 --commit COMMIT \\
        2>&1 | tee $OUT/gpu_suite.log

The whole CIFAR-10 fit of part d takes about 10 minutes on an H200 in TF32 (411 s of
training with ``--cifar-variant bf16+channels_last``, measured), more than one command
leaves room for: with ``--cifar-state FILE`` it pickles its model after each layer, and a
second command with the same options goes on from there if it starts while the machine is
still warm (its files go when it cools). The two that ran the whole table::

    ... --budget-s 470 --parts cifar10 --cifar-variant bf16+channels_last \\
        --cifar-state /tmp/cifar.pkl                  # layers 1-3, 332 s of wall time
    ... the same with --budget-s 200                  # layer 4 and the scores, 144 s

With ``--scale``, parts e and f take ``SCALE_SHARES`` of the budget, 1/8 in all, and
parts a-d share the rest in their usual proportions. They are estimated to need about
25 s and 10 s on an H100 with 16 cores (estimates from smoke runs and known GPU speeds,
not yet measured on a GPU: the CIFAR archive's 50,000 JPEG files decoded by 8 workers at
~0.1 ms each, the array path at part b's rates, worker start-up each epoch), so the budget
should be raised by about 60 s: at ``--budget-s 480`` they get 40 s and 20 s and parts
a-d keep the 420 s they have without ``--scale``; the command then runs about 8.5 of the
10 minutes a command may (same carry and timeout)::

    set -o pipefail; PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python benchmarks/gpu_suite.py \\
        --data-dir .dev/cifar-10-jpeg.tar.gz --out $OUT --budget-s 480 --scale \\
        --commit COMMIT 2>&1 | tee $OUT/gpu_suite.log

Kept at 420 s, ``--scale`` reduces the CIFAR-10 part's time from 252 s to about 220 s,
close to the ~210 s its 200 epochs are estimated to take: its last layer may be skipped.

``load_cifar10`` reads the ``.tar.gz`` without extracting it (about 7 s on 2 CPU cores,
in a background thread while the CUDA tests run); with ``--scale`` a second thread
extracts it meanwhile for part e (about 8 s alone on 2 cores, 24 s sharing them with the
reading and the tests), into a temporary folder removed at the end. An extracted copy
works as well: the archive holds ``train/<class>/`` and ``test/<class>/`` at its top, so
after ``mkdir -p /tmp/cifar10 && tar xzf .dev/cifar-10-jpeg.tar.gz -C /tmp/cifar10`` pass
``--data-dir /tmp/cifar10``.

``--smoke`` runs every part on the CPU with tiny sizes (512 random images, one epoch,
widths / 16; random CIFAR-shaped data when ``--data-dir`` is not given; with ``--scale``,
96 streamed images and 16 ImageNet-shaped ones at batch 8) in well under two minutes;
``tests/test_gpu_suite.py`` runs it with ``--scale``, so that the suite cannot rot.

Usage::

    python benchmarks/gpu_suite.py --data-dir DIR --out OUTDIR [--budget-s 420] [--smoke]
        [--scale] [--commit COMMIT] [--parts stage_throughput,memory] [--variants tf32,bf16]

``--parts`` runs only the named parts (a short device check of one question), sharing the
budget among them in their usual proportions; the others are recorded as skipped.
``--variants`` times only the named engine settings in part b; ``--cifar-variant`` gives
part d's fits one of them (``bf16+channels_last`` ran 1.4-1.8x TF32's images/s on an H200;
the whole k=3 fit then took 411 s of training, still two commands: ``--cifar-state``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import math
import os
import pickle
import platform
import shlex
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path


# ---------------------------------------------------------------------------- command line
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="CIFAR-10: the JPEG .tar.gz, an image folder, batches")
    parser.add_argument("--out", required=True, help="folder for gpu_suite-<date>.json and .md")
    parser.add_argument("--budget-s", type=float, default=420.0, help="wall-clock seconds")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU")
    parser.add_argument(
        "--parts",
        help="comma-separated part names to run (default: all); the others are recorded as "
        "skipped and the budget is shared among these in their usual proportions",
    )
    parser.add_argument(
        "--variants",
        help="comma-separated labels of part b's engine settings (default: all of them; "
        "ENGINE_VARIANTS lists them: float32, tf32, bf16, fp16, bf16+channels_last, "
        "bf16+channels_last+compile)",
    )
    parser.add_argument(
        "--cifar-variant",
        help="an ENGINE_VARIANTS label whose settings part d's fits take (default: the "
        "preset's own, TF32 on CUDA); bf16+channels_last trained 1.4-1.8x faster on an H200",
    )
    parser.add_argument(
        "--scale", action="store_true", help="also parts e and f: streaming, ImageNet shapes"
    )
    parser.add_argument(
        "--cifar-state",
        help="a file where part d pickles its model and measurements after each layer, and "
        "from which it resumes when the file exists with the same settings: the whole "
        "CIFAR-10 fit (7-10 minutes on an H200) spread over two commands on a warm machine",
    )
    parser.add_argument("--commit", help="commit of the tree (default: from git, if present)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    # read before torch, scikit-learn and the package are imported (seconds), so that
    # --help and a mistyped option answer at once; main() reads it again
    parse_args(sys.argv[1:])

# the parts below use these throughout; the tests import this module whole
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import sync  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

from sklearn_greedy import (  # noqa: E402
    GreedyLayerwiseCNNClassifier,
    cifar10_params,
    imagenet_params,
)
from sklearn_greedy.cnn._presets import REFERENCE_SCRIPT_AUX_WIDTH  # noqa: E402
from sklearn_greedy.datasets import (  # noqa: E402
    CIFAR10_CLASSES,
    ImageFolderDataset,
    SliceDataset,
    load_cifar10,
)

REPO = Path(__file__).resolve().parents[1]
# fractions of the budget; a part may also use what the parts before it left unused. At
# 420 s the CIFAR-10 fit keeps at least 252 s: the paper's 200 epochs at the plain loop's
# speed on an H100 (about 42k images/s on the costliest stage) take about 210 s
SHARES = {"cuda_tests": 0.2, "stage_throughput": 0.15, "memory": 0.05, "cifar10": 0.6}
# with --scale, parts e and f take these and the parts above share the rest (7/8) in their
# proportions: at 480 s, 40 s and 20 s for an estimated 25 s and 10 s on an H100, and the
# parts above keep the 420 s they have without --scale
SCALE_SHARES = {"streaming": 1 / 12, "imagenet_stage": 1 / 24}
# the engine settings part b times, each under a label: every precision, then channels-last
# tensors and torch.compile on the fastest arithmetic (bf16); "compile" is Sizes.compile
ENGINE_VARIANTS = {
    "float32": {"precision": "float32"},
    "tf32": {"precision": "tf32"},
    "bf16": {"precision": "bf16"},
    "fp16": {"precision": "fp16"},
    "bf16+channels_last": {"precision": "bf16", "channels_last": True},
    "bf16+channels_last+compile": {"precision": "bf16", "channels_last": True, "compile": True},
}
# torch.compile of one stage (forward and backward, inductor's default mode): seconds of its
# warm-up epoch beyond the epoch itself; a guess to be replaced by a GPU measurement
COMPILE_S = 60.0
CUDA_TEST_ARGS = ("-m", "pytest", "-m", "cuda", "-q", "tests/training/test_cuda.py")
# a pytest run starts Python, torch and a CUDA context before its first test
MIN_TESTS_S = 20.0
# per image, the 3rd k=3 stage does about 2.2x the 1st stage's arithmetic (the prefix's
# forward pass, the 512->256 convolution, two 256-wide head convolutions at 16x16), and
# no later layer does more; rounded up, as estimates here should not fall short
STAGE3_COST = 2.5
# one fit call besides its epochs: validation, the copy to the device, the accuracy pass
FIT_OVERHEAD_S = 2.0
# scoring after the CIFAR-10 fit: two passes over the 10,000 test images
EVAL_RESERVE_S = 10.0
# the streamed fits' DataLoader workers: the issue's 8, fewer on a machine with fewer cores
MAX_WORKERS = 8
# a streamed pass starts its workers anew (the estimator builds one DataLoader per pass)
LOADER_START_S = 1.0
# n workers decode less than n times as fast as one process (collation, the copies between
# processes, pinning): the streamed rate is estimated at 1/STREAM_SLACK of n times it
STREAM_SLACK = 2.0
DECODE_PROBE = 256  # items decoded in this process to estimate the decoding rate
MIN_STREAM_BATCHES = 2  # fewer streamed batches would not time an epoch after the warm-up
IMAGENET_SIZE = (224, 224)
IMAGENET_CLASSES = 10
# per image, layer 1 of imagenet_params(1) does about 1.2x the arithmetic of the 1st k=3
# CIFAR-10 stage (a 12->256 convolution at 112x112 against three at 32x32) and moves about
# 3x its activations; rounded up, as estimates here should not fall short
IMAGENET_COST = 4.0
_START = time.perf_counter()


@dataclass(frozen=True)
class Sizes:
    """How large each part runs: the paper's shapes (``FULL``) or tiny CPU ones (``SMOKE``)."""

    n_images: int = 50_000  # stage throughput: random 3x32x32 uint8 images
    timed_epochs: int = 2  # measured epochs, after one warm-up epoch
    probe_images: int = 2560  # the timed warm-up that estimates an epoch: 20 batches
    width_scale: float = 1.0
    batch_size: int | None = None  # None: the preset's (the paper's 128)
    memory_batch: int = 256
    memory_fit_images: int = 64  # the tiny fits that build the k=1 network's stages
    cifar_epochs: int = 50
    cifar_max_per_class: int | None = None  # train images per class read from --data-dir
    cifar_test_max_per_class: int | None = None
    fake_images: tuple[int, int] = (200, 100)  # smoke run without --data-dir: train, test
    stream_images: int = 50_000  # part e: at most this many train images, array and stream
    imagenet_images: int = 1024  # part f: random 3x224x224 JPEG images
    imagenet_batch: int | None = None  # None: the preset's (the paper's 256)
    # part b's compile= for ENGINE_VARIANTS; the smoke run traces without code generation,
    # which would take tens of seconds on a CPU
    compile: bool | dict = True
    compile_s: float = COMPILE_S
    variants: tuple[str, ...] | None = None  # part b's labels of ENGINE_VARIANTS; None: all
    cifar_variant: str | None = None  # part d's ENGINE_VARIANTS settings; None: the preset's
    cifar_state: str | None = None  # part d's resumable state file (--cifar-state)


FULL = Sizes()
SMOKE = Sizes(
    n_images=128,
    timed_epochs=1,
    probe_images=64,
    width_scale=1 / 16,
    batch_size=32,
    memory_batch=16,
    memory_fit_images=20,
    cifar_epochs=1,
    cifar_max_per_class=20,
    cifar_test_max_per_class=10,
    stream_images=96,
    imagenet_images=16,
    imagenet_batch=8,
    compile={"backend": "eager"},
    compile_s=2.0,
    # the plainest and the most elaborate path: between them, every setting is exercised
    variants=("float32", "bf16+channels_last+compile"),
)


@dataclass
class CifarData:
    """CIFAR-10 train and test sets, where they came from and how long they took to read."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    source: str
    load_s: float


def log(message: str) -> None:
    print(f"[gpu_suite {time.perf_counter() - _START:6.1f} s] {message}", flush=True)


# ---------------------------------------------------------------------------- budget
class Skipped(Exception):
    """A part cannot run here or would not fit in its time; the message says why."""


class DeadlineExceeded(KeyboardInterrupt):
    """Raised by :func:`time_limit`. A ``KeyboardInterrupt``, because that is what the
    estimator's fit survives: it keeps the layers finished before the interrupt."""


class Budget:
    """The suite's wall-clock budget, shared out between its parts in order.

    A part may use its own share plus whatever the parts before it left unused; the
    shares of the parts after it stay reserved.

    Parameters
    ----------
    total_s : float
        Seconds for the whole suite, counted from construction.
    shares : dict of str to float
        Each part's fraction of ``total_s``, in the order the parts run.
    """

    def __init__(self, total_s: float, shares: dict[str, float] = SHARES) -> None:
        self.total_s = total_s
        self.shares = dict(shares)
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allowance(self, part: str) -> float:
        """Seconds ``part`` may use from now on."""
        names = list(self.shares)
        later = sum(self.shares[name] for name in names[names.index(part) + 1 :])
        return self.total_s - self.elapsed() - later * self.total_s


@dataclass
class Deadline:
    """The end of one part's allowance (a ``time.perf_counter`` value)."""

    end: float

    def left(self) -> float:
        return self.end - time.perf_counter()

    def check(self, what: str, estimate_s: float) -> None:
        """Raise :class:`Skipped` when ``what`` is estimated to need more than is left."""
        if estimate_s > self.left():
            raise Skipped(f"{what}: needs ~{estimate_s:.0f} s, {max(self.left(), 0):.0f} s left")


def shares(scale: bool) -> dict[str, float]:
    """Each part's share of the budget, in running order: ``SHARES``; with ``--scale``,
    those scaled down to leave ``SCALE_SHARES`` to parts e and f, run after them."""
    if not scale:
        return dict(SHARES)
    rest = 1 - sum(SCALE_SHARES.values())
    return {**{name: share * rest for name, share in SHARES.items()}, **SCALE_SHARES}


def asked_shares(all_shares: dict[str, float], parts: str | None) -> dict[str, float]:
    """The shares of the parts ``--parts`` names (all when None), scaled to sum to 1."""
    if parts is None:
        return dict(all_shares)
    names = [name.strip() for name in parts.split(",") if name.strip()]
    unknown = sorted(set(names) - set(all_shares))
    if unknown or not names:
        raise SystemExit(
            f"--parts {parts!r}: unknown or no part names {unknown}; the parts are "
            f"{', '.join(all_shares)}"
        )
    total = sum(all_shares[name] for name in names)
    return {name: share / total for name, share in all_shares.items() if name in names}


def _raise_deadline(signum, frame):
    raise DeadlineExceeded


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`DeadlineExceeded` in the block once ``seconds`` have passed.

    Built on SIGALRM, so a no-op off the main thread or where there is none. Limits nest:
    an inner one can only shorten an outer one, which is re-armed when the inner ends.
    """
    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    outer = signal.getitimer(signal.ITIMER_REAL)[0]
    start = time.perf_counter()
    previous = signal.signal(signal.SIGALRM, _raise_deadline)
    signal.setitimer(signal.ITIMER_REAL, max(min(seconds, outer or seconds), 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.perf_counter() - start), 1e-3))


def run_part(report: dict, name: str, part, budget: Budget) -> dict:
    """Run one part within its allowance; record its status, seconds and measurements.

    ``part(record, deadline)`` fills ``record`` as it goes, so that a part stopped at its
    limit keeps what it measured; it raises :class:`Skipped` when its estimate does not
    fit. A part that fails is recorded as failed and the suite goes on: one broken part
    must not cost a device run the others.
    """
    if name not in budget.shares:
        report[name] = {"status": "skipped", "limit_s": 0.0, "seconds": 0.0}
        report[name]["reason"] = "not in --parts"
        return report[name]
    limit = budget.allowance(name)
    record = report[name] = {"status": None, "limit_s": round(limit, 1)}
    log(f"{name}: up to {limit:.0f} s")
    start = time.perf_counter()
    try:
        if limit < 1:
            raise Skipped("no time left in the budget")
        with time_limit(limit):
            part(record, Deadline(start + limit))
        record["status"] = "done"
    except Skipped as exc:
        record.update(status="skipped", reason=str(exc))
    except DeadlineExceeded:
        record.update(status="stopped", reason=f"stopped at its {limit:.0f} s limit")
    except Exception as exc:
        traceback.print_exc()
        record.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
    finally:
        _free_device_memory()
    record["seconds"] = round(time.perf_counter() - start, 2)
    reason = f" ({record['reason']})" if "reason" in record else ""
    log(f"{name}: {record['status']} in {record['seconds']:.1f} s{reason}")
    return record


def _free_device_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------- shared
def random_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 3x32x32 uint8 images and labels of 10 classes (each present when
    ``n >= 10``): CIFAR-10's shapes; speed and memory do not depend on the content."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    return X, rng.permutation(np.arange(n) % 10)


def preset(k: int, sizes: Sizes, device: torch.device, *, aux_width=None, **overrides) -> dict:
    """``cifar10_params(k)`` (with ``aux_width`` when given) with widths (and batch) set by
    ``sizes``, on ``device``, seeded."""
    params = cifar10_params(k) if aux_width is None else cifar10_params(k, aux_width=aux_width)
    return scaled(params, sizes, sizes.batch_size, device, **overrides)


def scaled(params: dict, sizes: Sizes, batch_size: int | None, device, **overrides) -> dict:
    """``params`` with widths scaled by ``sizes`` and ``batch_size`` (None: kept), on
    ``device``, seeded."""
    params = dict(params)
    for key in ("width", "aux_width", "final_aux_width"):
        if params.get(key):
            params[key] = max(1, round(params[key] * sizes.width_scale))
    if batch_size is not None:
        params["batch_size"] = batch_size
    params.update(device=str(device), random_state=0, verbose=0, **overrides)
    return params


def loader_params() -> dict:
    """The streamed fits' loader: ``min(MAX_WORKERS, cores)`` workers, pinned memory."""
    return {"num_workers": min(MAX_WORKERS, os.cpu_count() or 1), "pin_memory": True}


def depth(params: dict, n_layers: int) -> dict:
    """``n_layers`` and ``downsample_at`` of the first ``n_layers`` layers of the network
    of ``params``: growing it by warm starts, the downsamplings of later layers wait (the
    estimator refuses indices beyond its ``n_layers``)."""
    kept = tuple(j for j in params["downsample_at"] if j < n_layers)
    return {"n_layers": n_layers, "downsample_at": kept}


def cifar_settings(sizes: Sizes) -> dict:
    """Part d's engine settings: those of ``sizes.cifar_variant`` (none: the preset's)."""
    if sizes.cifar_variant is None:
        return {}
    settings = ENGINE_VARIANTS[sizes.cifar_variant]
    return {key: sizes.compile if key == "compile" else value for key, value in settings.items()}


def variant_label(params: dict) -> str | None:
    """The label of ``ENGINE_VARIANTS`` whose settings ``params`` has, the most specific
    one; None when none matches (the preset's "auto" precision, say)."""
    matches = [
        label
        for label, settings in ENGINE_VARIANTS.items()
        if all(
            bool(params.get(key)) == value if key == "compile" else params.get(key) == value
            for key, value in settings.items()
        )
    ]
    return max(matches, key=lambda label: len(ENGINE_VARIANTS[label]), default=None)


def engine_variants(sizes: Sizes) -> dict[str, dict]:
    """Part b's engine settings by label: those of ``ENGINE_VARIANTS`` the estimator offers
    (an older commit lacks some), ``compile=True`` replaced by ``sizes.compile``; only its
    defaults (label "default") when it offers none of them."""
    offered = GreedyLayerwiseCNNClassifier().get_params()
    variants = {
        label: {key: sizes.compile if key == "compile" else value for key, value in v.items()}
        for label, v in ENGINE_VARIANTS.items()
        if set(v) <= set(offered) and (sizes.variants is None or label in sizes.variants)
    }
    return variants or {"default": {}}


def probe_epoch(params: dict, X, y, n_probe: int) -> tuple[float, float]:
    """Estimated seconds of one epoch of the 1st stage over all of ``X``, and of one fit
    call's overhead, from a timed 2-epoch fit on ``n_probe`` images whose second epoch is
    extrapolated. An untimed fit before it pays the process's one-time costs (the CUDA
    context, loading kernels), which would otherwise count as every fit's overhead."""
    n_images = len(X)
    # evenly spaced rows: a data set stored class by class (CIFAR-10's folders) would
    # otherwise give the probe a single class
    rows = np.linspace(0, n_images - 1, min(n_probe, n_images)).astype(int)
    X, y = X[rows], y[rows]
    first = {**params, **depth(params, 1)}
    fit_layers(GreedyLayerwiseCNNClassifier(**{**first, "max_epochs": 1}), X, y)
    start = time.perf_counter()
    clf = GreedyLayerwiseCNNClassifier(**{**first, "max_epochs": 2})
    fit_layers(clf, X, y)
    wall = time.perf_counter() - start
    epochs = [record["seconds"] for record in clf.history_[0]]
    return epochs[-1] * n_images / len(X), max(wall - sum(epochs), 0.0)


def fit_layers(clf: GreedyLayerwiseCNNClassifier, X, y) -> GreedyLayerwiseCNNClassifier:
    """``clf.fit(X, y)``, raising :class:`DeadlineExceeded` again when the estimator absorbed
    it (it keeps the layers finished before an interrupt and returns), so the part stops."""
    clf.fit(X, y)
    if getattr(clf, "n_layers_fitted_", 0) < clf.n_layers:
        raise DeadlineExceeded
    return clf


def split_stage(network: nn.Module, stage: int, device) -> tuple[nn.Module, nn.Module]:
    """(frozen prefix, trainable part) of greedy stage ``stage`` of a ``to_torch()`` network
    whose last layer is that stage's: the stem and the layers before it, then the layer
    and its auxiliary head."""
    prefix = nn.Sequential(network.stem, *network.layers[: stage - 1])
    trainable = nn.Sequential(network.layers[stage - 1], network.head)
    prefix = prefix.to(device).eval().requires_grad_(False)
    return prefix, trainable.to(device).train().requires_grad_(True)


# ---------------------------------------------------------------------------- a. tests
def cuda_tests(record: dict, deadline: Deadline) -> None:
    """Part a: the CUDA tests as a pytest run in a subprocess; keeps its summary line."""
    deadline.check("the CUDA tests", MIN_TESTS_S)
    record["command"] = "python " + " ".join(CUDA_TEST_ARGS)
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run(
            [sys.executable, *CUDA_TEST_ARGS],
            cwd=REPO,
            env=dict(os.environ, PYTHONPATH=path),
            capture_output=True,
            text=True,
            timeout=max(deadline.left() - 1, 1),
        )
    except subprocess.TimeoutExpired as exc:
        record["output_tail"] = _tail(exc.stdout)
        raise DeadlineExceeded from None
    print(done.stdout + done.stderr, flush=True)
    record.update(
        returncode=done.returncode,
        summary=_summary_line(done.stdout),
        output_tail=_tail(done.stdout + done.stderr),
    )


def _tail(output, n_chars: int = 3000) -> str:
    # TimeoutExpired carries bytes even when the run asked for text
    if isinstance(output, bytes):
        output = output.decode(errors="replace")
    return (output or "")[-n_chars:]


def _summary_line(stdout: str) -> str:
    lines = [line.strip(" =") for line in stdout.splitlines() if line.strip(" =")]
    return lines[-1] if lines else ""


# ---------------------------------------------------------------------------- b. throughput
def stage_throughput(record: dict, deadline: Deadline, *, sizes: Sizes, device) -> None:
    """Part b: images/s of the engine (each precision) and of a plain loop, 1st and 3rd
    stage of the k=3 CIFAR-10 network; ``ratio`` is the 3rd stage's best engine / loop."""
    X, y = random_images(sizes.n_images, seed=0)
    params = preset(3, sizes, device, max_epochs=1 + sizes.timed_epochs)
    variants = engine_variants(sizes)
    record.update(
        n_images=len(X),
        batch_size=params["batch_size"],
        width=params["width"],
        timed_epochs=sizes.timed_epochs,
        variants={label: _plain(settings) for label, settings in variants.items()},
    )
    epoch_s, overhead_s = probe_epoch(params, X, y, sizes.probe_images)
    n_compiled = sum(bool(v.get("compile")) for v in variants.values())

    def cost(epoch_s: float) -> float:
        epochs = 1 + sizes.timed_epochs
        fixed = 2 * n_compiled * sizes.compile_s  # each compiled variant, both stages
        return throughput_cost(epoch_s, overhead_s, len(variants), epochs) + fixed

    record["estimate_s"] = cost(epoch_s)
    if record["estimate_s"] > 0.9 * deadline.left():
        # images/s does not depend on how many images are timed: time fewer (no fewer
        # than the probe's) rather than skip the part; the cost is linear in the epoch's
        per_epoch = cost(epoch_s) - cost(0.0)
        fraction = max(0.9 * deadline.left() - cost(0.0), 0.0) / per_epoch
        n = min(max(int(len(X) * fraction), sizes.probe_images), len(X))
        X, y = X[:n], y[:n]
        record["estimate_s"] = cost(epoch_s * n / sizes.n_images)
        record["n_images"] = n
    deadline.check("stage throughput", record["estimate_s"])
    on_device = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    record["stage1"] = time_stage(1, params, (X, y), on_device, None, variants)
    base = GreedyLayerwiseCNNClassifier(**{**params, **depth(params, 2), "max_epochs": 1})
    base.fit(X, y)
    record["stage3"] = time_stage(3, params, (X, y), on_device, base, variants)
    record["ratio"] = record["stage3"]["ratio"]


def throughput_cost(epoch_s: float, overhead_s: float, n_variants: int, epochs: int) -> float:
    """Estimated seconds of part b from the 1st stage's epoch: for each of the two stages,
    one engine fit per variant and the plain loop, ``epochs`` epochs each, the 3rd stage
    at ``STAGE3_COST`` times the 1st; plus the 2-layer base fit (one epoch per layer)."""
    stage3_s = STAGE3_COST * epoch_s
    timed = (n_variants + 1) * epochs * (epoch_s + stage3_s)
    base = epoch_s + stage3_s
    return timed + base + (2 * n_variants + 1) * overhead_s


def time_stage(stage: int, params: dict, data, on_device, base, variants) -> dict:
    """The engine under each variant's settings, then the plain loop on the same modules."""
    X, y = data
    engine = {}
    for label, settings in variants.items():
        clf = fit_stage(params, X, y, stage, base, settings)
        seconds = [record["seconds"] for record in clf.history_[stage - 1]]
        engine[label] = rate(len(X), seconds)
    # the loop trains the same modules, freshly initialised
    network = clf.to_torch(pretrained=False, random_state=0)
    prefix, trainable = split_stage(network, stage, on_device[0].device)
    seconds = plain_loop_seconds(prefix, trainable, *on_device, params=params)
    plain = rate(len(X), seconds)
    best = max(engine, key=lambda label: engine[label]["images_per_s"])
    ratio = engine[best]["images_per_s"] / plain["images_per_s"]
    log(f"stage {stage}: best engine ({best}) {ratio:.2f}x the plain loop")
    return {"engine": engine, "plain_loop": plain, "best_engine": best, "ratio": ratio}


def fit_stage(params: dict, X, y, stage: int, base, extra: dict) -> GreedyLayerwiseCNNClassifier:
    """The estimator trained up to ``stage`` layers with the settings ``extra``, only the
    last layer timed: from scratch for the 1st stage, as a warm start on ``base``
    (``stage - 1`` layers) after."""
    if base is None:
        clf = GreedyLayerwiseCNNClassifier(**{**params, **depth(params, stage), **extra})
    else:
        clf = copy.deepcopy(base).set_params(
            **depth(params, stage), warm_start=True, max_epochs=params["max_epochs"], **extra
        )
    return fit_layers(clf, X, y)


def rate(n_images: int, epoch_seconds: list[float]) -> dict:
    """Mean seconds of the epochs after the first (the warm-up), and images/s."""
    timed = epoch_seconds[1:] or epoch_seconds
    seconds = sum(timed) / len(timed)
    return {
        "s_per_epoch": seconds,
        "images_per_s": n_images / seconds,
        "epoch_seconds": epoch_seconds,
    }


def crop_flip(batch: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, as one gather on the
    batch's device (the flip folded into the column indices)."""
    n, c, h, w = batch.shape
    device = batch.device
    padded = F.pad(batch, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n, 1), device=device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), device=device, generator=generator)
    rows = dy + torch.arange(h, device=device)
    cols = dx + torch.arange(w, device=device)
    flip = torch.rand(n, 1, device=device, generator=generator) < 0.5
    cols = torch.where(flip, cols.flip(1), cols)
    sample = torch.arange(n, device=device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=device).view(1, c, 1, 1)
    return padded[sample, channel, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


def plain_loop_seconds(prefix, trainable, X, y, *, params: dict, seed: int = 0) -> list[float]:
    """Seconds of each of ``params["max_epochs"]`` epochs of a hand-written loop: data on
    the device, index-slice batches, crop and flip on the device, the frozen prefix
    recomputed under ``no_grad`` for each batch, SGD with momentum and weight decay."""
    device = X.device
    generator = torch.Generator(device=device).manual_seed(seed)
    optimizer = torch.optim.SGD(
        trainable.parameters(),
        lr=params["lr"],
        momentum=params["momentum"],
        weight_decay=params["weight_decay"],
    )
    batch_size = params["batch_size"]
    seconds = []
    for _ in range(params["max_epochs"]):
        sync(device)
        start = time.perf_counter()
        order = torch.randperm(X.shape[0], device=device, generator=generator)
        for first in range(0, X.shape[0], batch_size):
            idx = order[first : first + batch_size]
            with torch.no_grad():
                features = prefix(crop_flip(X[idx], generator))
            loss = F.cross_entropy(trainable(features), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        sync(device)
        seconds.append(time.perf_counter() - start)
    return seconds


# ---------------------------------------------------------------------------- c. memory
def memory(record: dict, deadline: Deadline, *, sizes: Sizes, device) -> None:
    """Part c: peak memory of each greedy stage's training steps against end-to-end
    training of the same final network (the k=1 network of ``cifar10_params(1)``)."""
    params = preset(1, sizes, device, max_epochs=1)
    n_layers = params["n_layers"]
    measured = device.type == "cuda"
    record.update(
        batch_size=sizes.memory_batch, width=params["width"], n_layers=n_layers, measured=measured
    )
    X, y = random_images(sizes.memory_fit_images, seed=1)
    clf = GreedyLayerwiseCNNClassifier(**params)
    start = time.perf_counter()
    networks = [grow(clf, params, 1, X, y)]
    # the deeper fits cost more than the first, the measured steps less than a fit
    deadline.check("peak memory", 2 * n_layers * (time.perf_counter() - start))
    networks += [grow(clf, params, j, X, y) for j in range(2, n_layers + 1)]
    images, labels = random_images(sizes.memory_batch, seed=2)
    batch, target = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
    greedy = [
        training_peak_bytes(*split_stage(network, j, device), batch, target)
        for j, network in enumerate(networks, start=1)
    ]
    whole = networks[-1].to(device).train().requires_grad_(True)
    end_to_end = training_peak_bytes(nn.Sequential(), whole, batch, target)
    record["greedy_peak_mib"] = [_mib(b) for b in greedy]
    record["end_to_end_peak_mib"] = _mib(end_to_end)
    record["ratio"] = end_to_end / max(greedy) if measured else None


def grow(clf: GreedyLayerwiseCNNClassifier, params: dict, n_layers: int, X, y) -> nn.Module:
    """Grow ``clf`` to ``n_layers`` (one short warm-start fit) and return its network,
    freshly initialised: the stem, the layers and the last layer's auxiliary head."""
    fit_layers(clf.set_params(**depth(params, n_layers), warm_start=True), X, y)
    return clf.to_torch(pretrained=False, random_state=0)


def training_peak_bytes(prefix: nn.Module, trainable: nn.Module, batch, target) -> int | None:
    """Peak CUDA memory of two SGD steps of ``trainable`` on ``prefix``'s output (the
    second step holds the momentum buffers too), minus what was allocated before: the
    modules and the batch. None off CUDA, where the steps still run (the smoke run)."""
    device = batch.device
    optimizer = torch.optim.SGD(trainable.parameters(), lr=0.01, momentum=0.9)
    cuda = device.type == "cuda"
    if cuda:
        sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(2):
        with torch.no_grad():
            features = prefix(batch)
        loss = F.cross_entropy(trainable(features), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if not cuda:
        return None
    sync(device)
    return torch.cuda.max_memory_allocated(device) - before


def _mib(n_bytes: int | None) -> float | None:
    return None if n_bytes is None else n_bytes / 2**20


# ---------------------------------------------------------------------------- d. CIFAR-10
def load_data(data_dir: str | None, sizes: Sizes, smoke: bool) -> CifarData:
    """CIFAR-10 from ``data_dir`` (anything ``load_cifar10`` reads: the JPEG ``.tar.gz``,
    an image folder, python batches); random CIFAR-shaped data in a smoke run without it."""
    start = time.perf_counter()
    if data_dir is None:
        if not smoke:
            raise Skipped("no --data-dir given")
        X, y = random_images(sum(sizes.fake_images), seed=3)
        n = sizes.fake_images[0]
        return CifarData(X[:n], y[:n], X[n:], y[n:], "random images", time.perf_counter() - start)
    X_train, y_train = load_cifar10(data_dir, "train", max_per_class=sizes.cifar_max_per_class)
    X_test, y_test = load_cifar10(data_dir, "test", max_per_class=sizes.cifar_test_max_per_class)
    return CifarData(X_train, y_train, X_test, y_test, str(data_dir), time.perf_counter() - start)


def start_loading(data_dir: str | None, sizes: Sizes, smoke: bool) -> Future:
    """Read the data in a background thread, started now: its decoding then overlaps the
    CUDA tests, which run in a subprocess and leave this process idle."""
    return in_background(load_data, data_dir, sizes, smoke)


def in_background(fn, *args) -> Future:
    """``fn(*args)`` in a thread of its own, started now."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn, *args)
    pool.shutdown(wait=False)
    return future


def cifar10(record: dict, deadline: Deadline, *, sizes: Sizes, device, data: Future, rates: dict):
    """Part d: ``cifar10_params(3)`` on CIFAR-10, grown one warm-start fit per layer while
    the next layer fits in the time left; per-layer, final and ensemble test accuracy. With
    ``sizes.cifar_state``, it resumes from the layers a previous command trained and saves
    its model after each layer (:class:`CifarState`)."""
    cifar = data.result()
    params = {**preset(3, sizes, device, max_epochs=sizes.cifar_epochs), **cifar_settings(sizes)}
    record.update(
        variant=sizes.cifar_variant,
        source=cifar.source,
        load_s=cifar.load_s,
        n_train=len(cifar.X_train),
        n_test=len(cifar.X_test),
        epochs_per_layer=params["max_epochs"],
        n_layers=params["n_layers"],
        width=params["width"],
    )
    state = CifarState(sizes.cifar_state, params)
    clf, previous = state.load()
    if clf is None:
        epoch_seconds = layer_epoch_seconds(rates, params, cifar, sizes.probe_images)
        clf = GreedyLayerwiseCNNClassifier(**params)
    else:
        # the layers measured by the previous command bound the deeper ones better than
        # a warm-up would, and cost no time
        epoch_seconds = resumed_epoch_seconds(previous, params)
        record["resumed_layers"] = clf.n_layers_fitted_
        log(f"CIFAR-10: resumed after layer {clf.n_layers_fitted_} from {state.path}")
    record["estimate_s"] = sum(params["max_epochs"] * s + FIT_OVERHEAD_S for s in epoch_seconds)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fit_seconds = grow_layers(
        clf, params, cifar, epoch_seconds, deadline, record, done=previous, saved=state.save
    )
    if device.type == "cuda":
        record["peak_mib_with_data"] = _mib(torch.cuda.max_memory_allocated(device))
    record["layer_fit_s"] = fit_seconds
    score_layers(clf, cifar, record)
    if len(fit_seconds) == params["n_layers"]:
        record["fit_s"] = sum(fit_seconds)
    record["aux_width"] = params["aux_width"]
    if "stopped" in record:
        # the time a command has left belongs to the rest of the fit (the next command)
        reason = "not run: part d's fit stopped before its last layer"
        record["authors_aux_width"] = {"status": reason}
    else:
        ab = authors_aux_width(sizes, device, cifar, epoch_seconds, deadline)
        record["authors_aux_width"] = ab


class CifarState:
    """Part d's model and its layers' seconds in one pickle at ``path`` (none: nothing is
    saved or loaded), so that a fit longer than one device command continues in the next:
    the machine stays warm between two commands, and its files with it. A file written
    under other settings is ignored, as is one that does not load."""

    def __init__(self, path: str | None, params: dict) -> None:
        self.path = None if path is None else Path(path)
        self.params = params

    def load(self) -> tuple[GreedyLayerwiseCNNClassifier | None, list[float]]:
        if self.path is None or not self.path.exists():
            return None, []
        try:
            with open(self.path, "rb") as f:
                saved = pickle.load(f)
        except Exception as exc:  # a file cut short by a killed command: start afresh
            log(f"CIFAR-10: ignoring {self.path}: {exc!r}")
            return None, []
        if saved["params"] != _comparable(self.params):
            log(f"CIFAR-10: ignoring {self.path}: written under other settings")
            return None, []
        return saved["model"], list(saved["layer_fit_s"])

    def save(self, clf: GreedyLayerwiseCNNClassifier, layer_fit_s: list[float]) -> None:
        if self.path is None:
            return
        saved = {"params": _comparable(self.params), "model": clf, "layer_fit_s": layer_fit_s}
        partial_path = self.path.with_name(self.path.name + ".partial")
        with open(partial_path, "wb") as f:
            pickle.dump(saved, f)
        # a command killed while writing leaves the previous layer's file whole
        os.replace(partial_path, self.path)


def _comparable(params: dict) -> dict:
    """``params`` without the device, which a pickled model does not depend on."""
    return {key: repr(value) for key, value in params.items() if key != "device"}


def resumed_epoch_seconds(layer_fit_s: list[float], params: dict) -> list[float]:
    """Seconds per epoch of every layer from those a previous command measured: the
    measured ones as they were, each later one at the costliest deeper layer measured (no
    layer after the 3rd does more arithmetic, STAGE3_COST), or the 1st's times STAGE3_COST
    when only the 1st was measured."""
    per_epoch = [max(s - FIT_OVERHEAD_S, 0.0) / params["max_epochs"] for s in layer_fit_s]
    deeper = max(per_epoch[1:], default=STAGE3_COST * per_epoch[0])
    return per_epoch + [deeper] * (params["n_layers"] - len(per_epoch))


def authors_aux_width(sizes: Sizes, device, cifar: CifarData, epoch_seconds, deadline) -> dict:
    """The A/B of part d: the same fit with the authors' script's auxiliary width
    (``cifar10_params(3, aux_width=REFERENCE_SCRIPT_AUX_WIDTH)``, scaled as part d), layer
    by layer while time is left; its per-layer test accuracy, or why it did not run. The
    narrower auxiliary costs less, so part d's per-epoch estimates bound it."""
    params = preset(
        3, sizes, device, aux_width=REFERENCE_SCRIPT_AUX_WIDTH, max_epochs=sizes.cifar_epochs
    )
    params.update(cifar_settings(sizes))
    record = {"aux_width": params["aux_width"], "n_layers": params["n_layers"]}
    clf = GreedyLayerwiseCNNClassifier(**params)
    try:
        record["layer_fit_s"] = grow_layers(clf, params, cifar, epoch_seconds, deadline, record)
    except (Skipped, DeadlineExceeded) as exc:
        record["status"] = f"not run: {exc}"
        return record
    score_layers(clf, cifar, record)
    record["status"] = "done" if "stopped" not in record else "partial"
    return record


def layer_epoch_seconds(rates: dict, params: dict, cifar: CifarData, n_probe: int) -> list[float]:
    """Estimated seconds per epoch of each layer: the 1st at the 1st stage's rate measured
    in part b, the deeper ones at the 3rd stage's; from a timed warm-up fit without them."""
    measured = _engine_rates(rates, params)
    n = len(cifar.X_train)
    if measured is None:
        first, _ = probe_epoch(params, cifar.X_train, cifar.y_train, n_probe)
        deeper = STAGE3_COST * first
    else:
        first, deeper = n / measured[0], n / measured[1]
    return [first] + [deeper] * (params["n_layers"] - 1)


def _engine_rates(rates: dict, params: dict) -> tuple[float, float] | None:
    """Images/s of the engine on stages 1 and 3 at the settings of ``params`` when part b
    measured them (:func:`variant_label`), else at the fastest ones measured (skipping a
    layer only when even that would not finish it; the time limit catches the rest); None
    without part b."""
    if "stage3" not in rates:
        return None
    stages = rates["stage1"]["engine"], rates["stage3"]["engine"]
    label = variant_label(params)
    if label not in stages[1]:
        label = max(stages[1], key=lambda key: stages[1][key]["images_per_s"])
    return stages[0][label]["images_per_s"], stages[1][label]["images_per_s"]


def grow_layers(
    clf, params, cifar: CifarData, epoch_seconds, deadline, record, *, done=(), saved=None
) -> list[float]:
    """Train layer after layer by warm-start fits while the next is estimated to fit in the
    time left (less ``EVAL_RESERVE_S`` for scoring); return each layer's seconds, those of
    ``done`` (the layers ``clf`` already has) first. Without a first layer the part is
    skipped (or stopped); after one, what was trained is kept, and ``saved(clf, seconds)``
    is called after each layer."""
    fit_seconds = list(done)
    for j, epoch_s in enumerate(epoch_seconds, start=1):
        if j <= len(fit_seconds):
            continue
        estimate = clf.max_epochs * epoch_s + FIT_OVERHEAD_S
        room = deadline.left() - EVAL_RESERVE_S
        if estimate > room:
            reason = f"layer {j} not started: needs ~{estimate:.0f} s, {room:.0f} s left"
            if j == 1:
                raise Skipped(reason)
            record["stopped"] = reason
            break
        start = time.perf_counter()
        try:
            with time_limit(room):
                grown = clf.set_params(**depth(params, j), warm_start=True)
                fit_layers(grown, cifar.X_train, cifar.y_train)
        except DeadlineExceeded:
            if j == 1:
                raise
            # the estimator keeps (or puts back) the layers finished before
            record["stopped"] = f"layer {j} stopped at the time limit"
            break
        fit_seconds.append(time.perf_counter() - start)
        log(f"CIFAR-10 layer {j}: {fit_seconds[-1]:.1f} s (estimated {estimate:.0f} s)")
        if saved is not None:
            saved(clf, fit_seconds)
    return fit_seconds


def score_layers(clf: GreedyLayerwiseCNNClassifier, cifar: CifarData, record: dict) -> None:
    """Per-layer test accuracy (``staged_predict``); final and ensemble once all layers are
    trained."""
    per_layer = [float(np.mean(p == cifar.y_test)) for p in clf.staged_predict(cifar.X_test)]
    record["per_layer_test_accuracy"] = per_layer
    record["train_accuracy"] = [float(a) for a in clf.layer_scores_]
    record["precision"] = clf.get_params().get("precision")
    if clf.n_layers_fitted_ == record["n_layers"]:
        record["final"] = per_layer[-1]
        record["ensemble"] = float(clf.set_params(ensemble=True).score(cifar.X_test, cifar.y_test))


# ---------------------------------------------------------------------------- e. streaming
def streaming(
    record: dict, deadline: Deadline, *, sizes: Sizes, device, data, folder, rates, scratch
):
    """Part e (``--scale``): images/s of the 1st k=3 CIFAR-10 stage fitted from the array and
    streamed from an ``ImageFolderDataset`` of the same images, with the same seed and as
    many images as the time allows; ``ratio`` is stream / array."""
    cifar = data.result()
    params = preset(3, sizes, device, max_epochs=1 + sizes.timed_epochs, **loader_params())
    params.update(depth(params, 1))
    root, source = cifar_folder(folder, cifar, sizes.stream_images, scratch)
    dataset = ImageFolderDataset(root, split="train", classes=CIFAR10_CLASSES)
    positions = matching_items(dataset.targets, cifar.y_train)
    candidates = np.flatnonzero(positions >= 0)[: sizes.stream_images]
    record.update(
        source=source,
        batch_size=params["batch_size"],
        width=params["width"],
        num_workers=params["num_workers"],
        pin_memory=params["pin_memory"],
        timed_epochs=sizes.timed_epochs,
    )
    array_rate = stage1_rate(rates, params, cifar, sizes.probe_images)
    stream_rate = min(array_rate, streamed_rate(dataset, positions[candidates], params))
    n, record["estimate_s"] = streaming_images(
        deadline, len(candidates), params, array_rate, stream_rate
    )
    rows = np.sort(np.random.default_rng(0).choice(candidates, n, replace=False))
    X, y = cifar.X_train[rows], cifar.y_train[rows]
    subset = SliceDataset(dataset, idx=None, indices=positions[rows])
    record.update(n_images=n, images_match=same_images(subset, X))
    record["array"] = timed_fit(params, X, y)
    record["stream"] = timed_fit(params, subset, None)
    record["ratio"] = record["stream"]["images_per_s"] / record["array"]["images_per_s"]
    log(f"streaming: {record['ratio']:.2f}x the array path's images/s ({n} images)")


def start_extracting(data_dir: str | None, scratch: Path) -> Future:
    """Find or extract (into ``scratch``) the CIFAR-10 image folder of part e in a
    background thread, started now, as the data are read: both overlap the CUDA tests."""
    return in_background(cifar_image_folder, data_dir, scratch)


def cifar_image_folder(data_dir: str | None, scratch: Path) -> tuple[Path, str] | None:
    """The folder holding ``train/<class>/`` and where it came from: ``data_dir`` itself,
    or its ``.tar.gz`` extracted into ``scratch``; None for python batches or no data."""
    if data_dir is None:
        return None
    path = Path(data_dir)
    if (path / "train").is_dir():
        return path, f"image folder {data_dir}"
    archives = [path] if path.is_file() else sorted(path.glob("*.tar.gz"))
    if len(archives) != 1 or not tarfile.is_tarfile(archives[0]):
        return None
    start = time.perf_counter()
    extract(archives[0], scratch / "cifar10")
    log(f"extracted {archives[0]} in {time.perf_counter() - start:.1f} s")
    return scratch / "cifar10", f"{archives[0]}, extracted"


def extract(archive: Path, into: Path) -> None:
    """Unpack ``archive`` into ``into``; where Python has tarfile's "data" filter, members
    that would land outside ``into``, links out of it and device files are refused."""
    into.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:
            tar.extractall(into)


def cifar_folder(folder: Future, cifar: CifarData, n_max: int, scratch: Path) -> tuple[Path, str]:
    """The image folder to stream: the one ``folder`` found, else the first ``n_max`` rows
    of the array written as PNG files (lossless: each file decodes to its row)."""
    found = folder.result()
    if found is not None:
        return found
    root = scratch / "cifar10-png"
    write_cifar_folder(cifar.X_train[:n_max], cifar.y_train[:n_max], root)
    return root, f"PNG files written from {cifar.source}"


def write_cifar_folder(X: np.ndarray, y: np.ndarray, root: Path) -> None:
    """Images as ``root/train/<class>/<row>.png``, named so that each class's files list in
    row order (as :func:`matching_items` expects)."""
    for row, (image, label) in enumerate(zip(X, y)):
        folder = root / "train" / CIFAR10_CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{row:06d}.png")


def matching_items(targets: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The position in the folder of each row of the array, -1 where it has none: both list
    a class's images in file order, so the k-th row of class c is the k-th item of class c
    (``load_cifar10``'s ``max_per_class`` keeps the first ones of each class)."""
    positions = np.full(len(labels), -1)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        items = np.flatnonzero(targets == c)[: len(rows)]
        positions[rows[: len(items)]] = items
    return positions


def same_images(dataset, X: np.ndarray, n: int = 4) -> bool:
    """Whether the first ``n`` items of ``dataset`` decode to the first rows of ``X``."""
    return all(np.array_equal(dataset[i][0].numpy(), X[i]) for i in range(min(n, len(X))))


def stage1_rate(rates: dict, params: dict, cifar: CifarData, n_probe: int) -> float:
    """Images/s of the 1st k=3 stage on an array: part b's, else from a timed warm-up fit."""
    measured = _engine_rates(rates, params)
    if measured is not None:
        return measured[0]
    epoch_s, _ = probe_epoch(params, cifar.X_train, cifar.y_train, n_probe)
    return len(cifar.X_train) / epoch_s


def streamed_rate(dataset, items: np.ndarray, params: dict) -> float:
    """Estimated images/s of the estimator's loader over ``dataset``: this process's rate
    of decoding up to ``DECODE_PROBE`` of ``items``, times the workers, over
    ``STREAM_SLACK``."""
    probe = items[:DECODE_PROBE]
    start = time.perf_counter()
    for i in probe:
        dataset[int(i)]
    per_item = (time.perf_counter() - start) / len(probe)
    return max(params["num_workers"], 1) / (STREAM_SLACK * per_item)


def streaming_images(deadline: Deadline, n_max: int, params, array_rate, stream_rate):
    """The most images (up to ``n_max``, at least ``MIN_STREAM_BATCHES`` batches) whose
    array and streamed fits are estimated to fit in the time left, and that estimate:
    every epoch and the accuracy pass after the layer, each pass of the stream starting its
    workers; skipped when even the fewest would not fit."""
    passes = params["max_epochs"] + 1
    per_image = passes * (1 / array_rate + 1 / stream_rate)
    fixed = 2 * FIT_OVERHEAD_S + passes * LOADER_START_S
    n_min = min(n_max, MIN_STREAM_BATCHES * params["batch_size"])
    deadline.check(f"streaming {n_min} images", fixed + n_min * per_image)
    n = max(n_min, min(n_max, int((deadline.left() - fixed) / per_image)))
    return n, fixed + n * per_image


def timed_fit(params: dict, X, y) -> dict:
    """A 1st-stage fit: ``rate`` of its epochs (from ``history_``), and the whole fit's
    seconds (with its checks, the copy to the device and the accuracy pass)."""
    start = time.perf_counter()
    clf = fit_layers(GreedyLayerwiseCNNClassifier(**params), X, y)
    fit_s = time.perf_counter() - start
    return {**rate(len(X), [record["seconds"] for record in clf.history_[0]]), "fit_s": fit_s}


# ---------------------------------------------------------------------------- f. ImageNet
def imagenet_stage(record: dict, deadline: Deadline, *, sizes: Sizes, device, rates, scratch):
    """Part f (``--scale``): one epoch of layer 1 of ``imagenet_params(1)`` streamed from a
    folder of random 3x224x224 JPEG images: whether it completes, its peak memory and
    speed. A CUDA out-of-memory error is the finding, recorded, not a failure."""
    params = imagenet_stage_params(sizes, device)
    start = time.perf_counter()
    root = write_random_jpegs(scratch / "imagenet", sizes.imagenet_images, seed=4)
    record.update(
        n_images=sizes.imagenet_images,
        batch_size=params["batch_size"],
        width=params["width"],
        num_workers=params["num_workers"],
        generate_s=time.perf_counter() - start,
    )
    dataset = ImageFolderDataset(root, size=IMAGENET_SIZE)
    record["estimate_s"] = imagenet_cost(dataset, params, rates)
    deadline.check("the ImageNet-shaped stage", record["estimate_s"])
    record.update(imagenet_fit(params, dataset, device))
    log(f"ImageNet-shaped stage: completed {record['completed']}")


def imagenet_stage_params(sizes: Sizes, device) -> dict:
    """Layer 1 of ``imagenet_params(1)``, one epoch, streamed with the suite's loader."""
    params = scaled(
        imagenet_params(1), sizes, sizes.imagenet_batch, device, max_epochs=1, **loader_params()
    )
    return {**params, **depth(params, 1)}


def write_random_jpegs(root: Path, n: int, seed: int) -> Path:
    """``n`` random 224x224 RGB JPEG images in ``IMAGENET_CLASSES`` class folders of
    ``root``: ImageNet's input shape (its files are larger on average and resized when
    decoded, so they decode slower than these); speed and memory do not depend on the
    content."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        folder = root / f"class{i % IMAGENET_CLASSES}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(*IMAGENET_SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)
    return root


def imagenet_cost(dataset, params: dict, rates: dict) -> float:
    """Estimated seconds of the fit: its epoch and the accuracy pass after it, each decoding
    every image (at ``streamed_rate``) and, where part b measured the 1st CIFAR-10 stage,
    computing at ``IMAGENET_COST`` times that stage's time per image."""
    n = len(dataset)
    decode_s = n / streamed_rate(dataset, np.arange(n), params)
    measured = _engine_rates(rates, params)
    compute_s = 0.0 if measured is None else IMAGENET_COST * n / measured[0]
    return 2 * (decode_s + compute_s + LOADER_START_S) + FIT_OVERHEAD_S


def imagenet_fit(params: dict, dataset, device) -> dict:
    """Fit the stage on ``dataset``: completed or CUDA out of memory, seconds, images/s of
    its one epoch (the warm-up included) and peak memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        clf = fit_layers(GreedyLayerwiseCNNClassifier(**params), dataset, None)
    except torch.cuda.OutOfMemoryError as exc:
        result = {"completed": False, "note": f"CUDA out of memory: {str(exc).splitlines()[0]}"}
    else:
        epoch_s = clf.history_[0][0]["seconds"]
        result = {"completed": True, "epoch_s": epoch_s, "images_per_s": len(dataset) / epoch_s}
    result["fit_s"] = time.perf_counter() - start
    return {**peak_memory_gib(device), **result}


def peak_memory_gib(device) -> dict:
    """Peak memory allocated since the last reset and the device's memory, in GiB; None
    off CUDA, with a note."""
    if device.type != "cuda":
        return {"peak_gib": None, "device_memory_gib": None, "note": "not measured off CUDA"}
    total = torch.cuda.get_device_properties(device).total_memory
    return {
        "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30,
        "device_memory_gib": total / 2**30,
    }


# ---------------------------------------------------------------------------- report
def git_commit() -> str:
    """Short hash of HEAD, with "+dirty" for uncommitted changes; "unknown" without git."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def environment(args, argv: list[str], device: torch.device) -> dict:
    """Where and what ran: device, versions, commit, date and the command line."""
    cuda = device.type == "cuda"
    if cuda:
        name = torch.cuda.get_device_name(device)
        memory_gib = torch.cuda.get_device_properties(device).total_memory / 2**30
    else:
        name = f"CPU {platform.machine()}, {torch.get_num_threads()} torch threads"
        memory_gib = None
    return {
        "device": name,
        "device_memory_gib": memory_gib,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(),
        "commit": args.commit or git_commit(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "benchmarks/gpu_suite.py", *argv]),
        "smoke": args.smoke,
        "scale": args.scale,
        "budget_s": args.budget_s,
    }


def headline(report: dict) -> dict:
    """The figures issue 12 asks for (and, with ``--scale``, those of parts e and f), null
    where their part did not run or get that far."""
    cifar = report["cifar10"]
    return {
        "stage_throughput_ratio": report["stage_throughput"].get("ratio"),
        "memory_ratio": report["memory"].get("ratio"),
        "cifar10_k3_final": cifar.get("final"),
        "cifar10_k3_ensemble": cifar.get("ensemble"),
        "cifar10_k3_fit_s": cifar.get("fit_s"),
        "streaming_throughput_ratio": report.get("streaming", {}).get("ratio"),
        "imagenet_stage_peak_gib": report.get("imagenet_stage", {}).get("peak_gib"),
    }


def ordered(report: dict, wall_s: float) -> dict:
    """The report with the headline figures first and each part's details after them."""
    names = shares(report["scale"])
    first = {key: value for key, value in report.items() if key not in names}
    parts = {name: report[name] for name in names}
    return {**first, **headline(report), "wall_s": wall_s, **parts}


def _plain(value):
    """A JSON-ready copy: NaN and infinities become null, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def write_outputs(report: dict, out: Path) -> tuple[Path, Path]:
    """Write the JSON report and its markdown block into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"gpu_suite-{report['date'][:10]}" + ("-smoke" if report["smoke"] else "")
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_text(json.dumps(_plain(report), indent=2, allow_nan=False) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path


# ---------------------------------------------------------------------------- markdown
# (what, report key, comparison, issue 12's bound, format)
TARGETS = (
    ("3rd-stage throughput, engine / plain loop", "stage_throughput_ratio", ">=", 1.5, "{:.2f}x"),
    ("peak memory, end-to-end / largest greedy stage", "memory_ratio", ">=", 5.0, "{:.2f}x"),
    ("CIFAR-10 k=3 final-layer test accuracy", "cifar10_k3_final", ">=", 0.9, "{:.2%}"),
    ("CIFAR-10 k=3 whole fit", "cifar10_k3_fit_s", "<=", 180.0, "{:.0f} s"),
    (
        "streamed / array images/s, 1st k=3 stage",
        "streaming_throughput_ratio",
        ">=",
        0.8,
        "{:.2f}x",
    ),
    ("suite wall time", "wall_s", "<=", 420.0, "{:.0f} s"),
)


def _fmt(value, spec: str = "{:.3f}") -> str:
    return "-" if value is None else spec.format(value)


def markdown(report: dict) -> str:
    """The block to paste into ``benchmarks/RESULTS.md``."""
    title = f"## GPU suite (issue 12): {report['device']}, {report['date'][:10]}"
    lines = [title, ""]
    if report["smoke"]:
        lines += ["Smoke run on the CPU with tiny sizes: it checks the suite, not a result.", ""]
    memory = report["device_memory_gib"]
    device = report["device"] + ("" if memory is None else f" ({memory:.0f} GiB)")
    lines += [
        f"Device: {device}; torch {report['torch']}, CUDA {report['cuda']}, "
        f"cuDNN {report['cudnn']}. Commit {report['commit']}, {report['date']}. "
        f"Wall time {report['wall_s']:.0f} s of a {report['budget_s']:.0f} s budget"
        + (", `--scale` parts included." if report["scale"] else "."),
        "",
        f"    PYTHONPATH=$PWD {report['command']}",
        "",
    ]
    tables = [_parts_table, _targets_table, _throughput_table, _memory_table, _cifar_table]
    if report["scale"]:
        tables += [_streaming_table, _imagenet_table]
    for table in tables:
        lines += table(report) + [""]
    return "\n".join(lines)


def _parts_table(report: dict) -> list[str]:
    lines = ["| part | status | seconds (limit) | note |", "|---|---|---|---|"]
    for name in shares(report["scale"]):
        part = report[name]
        note = part.get("summary") or part.get("reason") or part.get("stopped") or ""
        note = note or part.get("note", "")
        seconds = f"{part['seconds']:.1f} ({part['limit_s']:.0f})"
        lines.append(f"| {name} | {part['status']} | {seconds} | {note} |")
    return lines


def _targets_table(report: dict) -> list[str]:
    lines = ["| target | reached | met |", "|---|---|---|"]
    for label, key, op, bound, spec in TARGETS:
        value = report.get(key)
        met = "-" if value is None else ("yes" if _holds(value, op, bound) else "**no**")
        lines.append(f"| {label} {op} {spec.format(bound)} | {_fmt(value, spec)} | {met} |")
    return lines


def _holds(value: float, op: str, bound: float) -> bool:
    return value >= bound if op == ">=" else value <= bound


def _throughput_table(report: dict) -> list[str]:
    part = report["stage_throughput"]
    if "stage1" not in part:
        return [f"Stage throughput: {part['status']}."]
    lines = [
        f"Stage throughput: k=3 stages, {part['n_images']} random 3x32x32 images, batch "
        f"{part['batch_size']}, width {part['width']}; seconds per epoch: the mean of "
        f"{part['timed_epochs']} timed after a warm-up epoch.",
        "",
        "| stage | path | s/epoch | images/s | vs plain loop |",
        "|---|---|---|---|---|",
    ]
    for stage in ("stage1", "stage3"):
        if stage in part:
            lines += _throughput_rows(stage[-1], part[stage])
    return lines


def _throughput_rows(stage: str, result: dict) -> list[str]:
    plain = result["plain_loop"]["images_per_s"]
    paths = [(f"engine, {label}", r) for label, r in result["engine"].items()]
    rows = []
    for path, r in paths + [("plain PyTorch loop", result["plain_loop"])]:
        rows.append(
            f"| {stage} | {path} | {r['s_per_epoch']:.3f} | {r['images_per_s']:.0f} | "
            f"{r['images_per_s'] / plain:.2f}x |"
        )
    return rows


def _memory_table(report: dict) -> list[str]:
    part = report["memory"]
    if "greedy_peak_mib" not in part:
        return [f"Peak memory: {part['status']}."]
    how = "measured" if part["measured"] else "not measured off CUDA"
    lines = [
        f"Peak training memory ({how}): k=1 network of `cifar10_params(1)`, width "
        f"{part['width']}, batch {part['batch_size']}, two SGD steps, modules and batch "
        "excluded.",
        "",
        "| training | peak MiB |",
        "|---|---|",
    ]
    for j, mib in enumerate(part["greedy_peak_mib"], start=1):
        lines.append(f"| greedy stage {j} | {_fmt(mib, '{:.0f}')} |")
    lines.append(f"| end-to-end | {_fmt(part['end_to_end_peak_mib'], '{:.0f}')} |")
    return lines


def _cifar_table(report: dict) -> list[str]:
    part = report["cifar10"]
    if "per_layer_test_accuracy" not in part:
        return [f"CIFAR-10: {part['status']} {part.get('reason', '')}".rstrip() + "."]
    lines = [
        f"CIFAR-10 from {part['source']}: {part['n_train']} train / {part['n_test']} test, "
        f"`cifar10_params(3)`, epochs per layer: {part['epochs_per_layer']}, one warm-start "
        f"fit per layer; final {_fmt(part.get('final'), '{:.4f}')}, ensemble "
        f"{_fmt(part.get('ensemble'), '{:.4f}')}, whole fit {_fmt(part.get('fit_s'), '{:.0f} s')}"
        f"; peak GPU memory {_fmt(part.get('peak_mib_with_data'), '{:.0f} MiB')}, data included.",
        "",
        "| layer | test accuracy | train accuracy | fit seconds |",
        "|---|---|---|---|",
    ]
    rows = zip(part["per_layer_test_accuracy"], part["train_accuracy"], part["layer_fit_s"])
    for j, (test, train, seconds) in enumerate(rows, start=1):
        lines.append(f"| {j} | {test:.4f} | {train:.4f} | {seconds:.1f} |")
    ab = part.get("authors_aux_width")
    if ab is not None:
        lines.append("")
        if "per_layer_test_accuracy" in ab:
            accuracies = ", ".join(f"{a:.4f}" for a in ab["per_layer_test_accuracy"])
            lines.append(
                f"A/B of the auxiliary width: M~ = {ab['aux_width']} (the authors' script) "
                f"against {part.get('aux_width')} (the paper's text, above): per-layer test "
                f"accuracy {accuracies}; {ab['status']}."
            )
        else:
            lines.append(f"A/B of the auxiliary width: {ab['status']}.")
    return lines


def _streaming_table(report: dict) -> list[str]:
    part = report["streaming"]
    if "stream" not in part:
        return [f"Streaming throughput: {part['status']} {part.get('reason', '')}".rstrip() + "."]
    same = "the same images" if part["images_match"] else "**not** the same images"
    lines = [
        f"Streaming throughput: 1st stage of `cifar10_params(3)`, {part['n_images']} CIFAR-10 "
        f"train images ({same} in both), batch {part['batch_size']}, width {part['width']}; "
        f"streamed from {part['source']} with {part['num_workers']} workers, pinned memory. "
        f"Seconds per epoch: the mean of {part['timed_epochs']} timed after a warm-up epoch.",
        "",
        "| input | s/epoch | images/s | vs array | whole fit s |",
        "|---|---|---|---|---|",
    ]
    array = part["array"]["images_per_s"]
    for label, key in (("array, on the device", "array"), ("ImageFolderDataset", "stream")):
        r = part[key]
        lines.append(
            f"| {label} | {r['s_per_epoch']:.3f} | {r['images_per_s']:.0f} | "
            f"{r['images_per_s'] / array:.2f}x | {r['fit_s']:.1f} |"
        )
    return lines


def _imagenet_table(report: dict) -> list[str]:
    part = report["imagenet_stage"]
    if "completed" not in part:
        return [f"ImageNet-shaped stage: {part['status']} {part.get('reason', '')}".rstrip() + "."]
    peak, total = part["peak_gib"], part["device_memory_gib"]
    memory = "-" if peak is None else f"{peak:.2f} of {total:.0f} GiB"
    return [
        f"ImageNet-shaped stage: layer 1 of `imagenet_params(1)`, one epoch on "
        f"{part['n_images']} random 3x224x224 JPEG images, batch {part['batch_size']}, width "
        f"{part['width']}, streamed with {part['num_workers']} workers.",
        "",
        "| completed | peak memory | fit s | images/s (one epoch, warm-up included) |",
        "|---|---|---|---|",
        f"| {'yes' if part['completed'] else '**no**: ' + part['note']} | {memory} | "
        f"{part['fit_s']:.1f} | {_fmt(part.get('images_per_s'), '{:.0f}')} |",
    ]


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    """Run the suite; return the report that was written (``wall_s`` counts from here, after
    the imports)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    budget = Budget(args.budget_s, asked_shares(shares(args.scale), args.parts))
    sizes = SMOKE if args.smoke else FULL
    if args.variants is not None:
        labels = tuple(label.strip() for label in args.variants.split(","))
        unknown = sorted(set(labels) - set(ENGINE_VARIANTS))
        if unknown:
            raise SystemExit(f"--variants: unknown {unknown}; known: {', '.join(ENGINE_VARIANTS)}")
        sizes = dataclasses.replace(sizes, variants=labels)
    if args.cifar_variant is not None:
        if args.cifar_variant not in ENGINE_VARIANTS:
            known = ", ".join(ENGINE_VARIANTS)
            raise SystemExit(f"--cifar-variant: unknown {args.cifar_variant!r}; known: {known}")
        sizes = dataclasses.replace(sizes, cifar_variant=args.cifar_variant)
    if args.cifar_state is not None:
        sizes = dataclasses.replace(sizes, cifar_state=args.cifar_state)
    if args.smoke:
        # tiny tensors run fastest on one thread, and a smoke run shares its machine
        torch.set_num_threads(1)
    cuda = torch.cuda.is_available() and not args.smoke
    device = torch.device("cuda" if cuda else "cpu")
    report = environment(args, argv, device)
    log(f"{report['device']}, torch {report['torch']}, budget {args.budget_s:.0f} s")
    if not cuda and not args.smoke:
        log("no CUDA device: full sizes on the CPU; parts that would not fit are skipped")
    with tempfile.TemporaryDirectory(prefix="gpu_suite-") as scratch:
        run_parts(report, args, sizes, device, budget, Path(scratch))
    report = ordered(report, budget.elapsed())
    for path in write_outputs(report, Path(args.out)):
        log(f"wrote {path}")
    return report


def run_parts(report: dict, args, sizes: Sizes, device, budget: Budget, scratch: Path) -> None:
    """Parts a-d, then e and f with ``--scale``; temporary files go into ``scratch``."""
    data = start_loading(args.data_dir, sizes, args.smoke)
    folder = start_extracting(args.data_dir, scratch) if args.scale else None
    run_part(report, "cuda_tests", cuda_tests, budget)
    # decoding images in a thread would compete for the GIL with the timed loops
    wait([future for future in (data, folder) if future is not None])
    run_part(
        report, "stage_throughput", partial(stage_throughput, sizes=sizes, device=device), budget
    )
    run_part(report, "memory", partial(memory, sizes=sizes, device=device), budget)
    rates = report["stage_throughput"]
    cifar = partial(cifar10, sizes=sizes, device=device, data=data, rates=rates)
    run_part(report, "cifar10", cifar, budget)
    if not args.scale:
        return
    common = dict(sizes=sizes, device=device, rates=rates, scratch=scratch)
    run_part(report, "streaming", partial(streaming, data=data, folder=folder, **common), budget)
    run_part(report, "imagenet_stage", partial(imagenet_stage, **common), budget)


if __name__ == "__main__":
    main()
