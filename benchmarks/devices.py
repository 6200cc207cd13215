"""A fit on several devices as processes see it: workers' memory, and a killed parent.

Two measurements of ``device=[...]`` (issue 25), on the CPU with gloo ranks:

- **memory**: a memmap of ``--gib`` GiB of float32 3x32x32 images fitted (one layer of
  width 4, one epoch, batch 1024) in one process and by two ranks
  (``device=["cpu", "cpu"]``), each fit in a process of its own; a sampler reads
  ``/proc/PID/smaps_rollup`` of the fit's process and its workers every 0.1 s and keeps
  each one's peak private memory (``Private_Clean + Private_Dirty``) and resident set;
  also the size of the payload sent to the workers;
- **reads**: a data set of 2,000 8x8 images (``__getitem__`` counted per process) fitted
  in one process and by two ranks (2 layers, 3 epochs, a validation split), with nothing
  kept between layers (``prefix_cache="auto"``: a stream's default) and with the first
  layer's features kept (``"host"``; each rank computes and keeps its half): each
  process's reads per item, training, evaluation and cache passes together;
- **kill**: a two-rank fit that would run for hours, its parent SIGKILLed once both ranks
  have joined the process group: seconds until no worker is alive and until the fit's
  temporary directory is gone.

The memmap and every temporary file are removed at the end. Usage::

    python benchmarks/devices.py [--gib 0.6] [--skip-memory] [--skip-kill] [--skip-reads]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import describe

REPO = Path(__file__).resolve().parents[1]

FIT = """
import sys, numpy as np
from sklearn_greedy import GreedyLayerwiseCNNClassifier
if __name__ == "__main__":
    path, n, devices = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    X = np.memmap(path, dtype=np.float32, mode="r", shape=(n, 3, 32, 32))
    y = np.arange(n) % 10
    device = devices[0] if len(devices) == 1 else devices
    clf = GreedyLayerwiseCNNClassifier(n_layers=1, width=4, max_epochs=1, batch_size=1024,
        augment=False, device=device, random_state=0)
    clf.fit(X, y)
    print("fitted", clf.n_layers_fitted_)
"""

READS = """
import os, sys, numpy as np, torch
from torch.utils.data import Dataset
from sklearn_greedy import GreedyLayerwiseCNNClassifier


class CountingImages(Dataset):
    # every read appends a byte to a file named after the reading process
    def __init__(self, n, folder):
        rng = np.random.RandomState(0)
        self.X = rng.rand(n, 1, 8, 8).astype(np.float32)
        self.X[:, :, :4] += (np.arange(n) % 2)[:, None, None, None]
        self.targets = np.arange(n) % 2
        self.folder = folder

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        with open(os.path.join(self.folder, f"reads-{os.getpid()}"), "ab") as fh:
            fh.write(b".")
        return torch.from_numpy(self.X[i]), int(self.targets[i])


if __name__ == "__main__":
    folder, devices, cache = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
    data = CountingImages(2000, folder)
    device = devices[0] if len(devices) == 1 else devices
    clf = GreedyLayerwiseCNNClassifier(n_layers=2, width=4, max_epochs=3, batch_size=100,
        early_stopping=True, n_iter_no_change=100, augment=False, device=device,
        random_state=0, prefix_cache=cache)
    clf.fit(data)
    print("fitted", clf.n_layers_fitted_)
"""

FOREVER = """
import numpy as np
from sklearn_greedy import GreedyLayerwiseCNNClassifier
if __name__ == "__main__":
    X = np.random.RandomState(0).rand(2000, 1, 8, 8).astype(np.float32)
    GreedyLayerwiseCNNClassifier(n_layers=3, width=8, max_epochs=10**4,
        n_iter_no_change=10**6, device=["cpu", "cpu"]).fit(X, np.arange(2000) % 2)
"""


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                parent = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def memory_of(pid: int) -> tuple[int, int] | None:
    """(private, resident) bytes of ``pid``, None once it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            fields = {line.split(":")[0]: line.split()[1] for line in fh if ":" in line}
    except OSError:
        return None
    kib = lambda name: int(fields.get(name, 0)) * 1024  # noqa: E731
    return kib("Private_Clean") + kib("Private_Dirty"), kib("Rss")


def sampled_fit(script: Path, args: list[str], env: dict) -> dict:
    """Run a fit script; each process's peak private and resident memory, sampled."""
    process = subprocess.Popen(
        [sys.executable, str(script), *args], env=env, stdout=subprocess.PIPE, text=True
    )
    peaks: dict[int, list[int]] = {}
    done = threading.Event()

    def sample():
        while not done.is_set():
            for pid in descendants(process.pid):
                memory = memory_of(pid)
                if memory is not None:
                    peak = peaks.setdefault(pid, [0, 0])
                    peak[0], peak[1] = max(peak[0], memory[0]), max(peak[1], memory[1])
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    start = time.perf_counter()
    sampler.start()
    out, _ = process.communicate()
    done.set()
    sampler.join()
    if process.returncode != 0 or "fitted 1" not in out:
        raise RuntimeError(f"the fit failed ({process.returncode}): {out}")
    return {
        "seconds": time.perf_counter() - start,
        "parent": peaks.pop(process.pid, [0, 0]),
        # the resource tracker of multiprocessing holds a few MiB: the workers hold more
        "workers": sorted(peaks.values(), reverse=True)[:2],
    }


def memory(gib: float, scratch: Path, env: dict) -> None:
    import numpy as np

    n = int(gib * 2**30) // (3 * 32 * 32 * 4)
    path = scratch / "X.dat"
    X = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, 3, 32, 32))
    for start in range(0, n, 8192):
        X[start : start + 8192] = np.random.default_rng(start).random(
            (min(8192, n - start), 3, 32, 32), dtype=np.float32
        )
    X.flush()
    del X
    script = scratch / "fit.py"
    script.write_text(FIT)
    mib = lambda b: b / 2**20  # noqa: E731
    print(f"memmap: {n} images, {mib(path.stat().st_size):.0f} MiB")
    one = sampled_fit(script, [str(path), str(n), "cpu"], env)
    two = sampled_fit(script, [str(path), str(n), "cpu,cpu"], env)
    payloads = list(scratch.glob("sklearn-greedy-ddp-*/payload.pkl"))
    print("| fit | process | peak private (MiB) | peak RSS (MiB) | seconds |")
    print("|---|---|---|---|---|")
    print(f"| one process | the fit | {mib(one['parent'][0]):.0f} | "
          f"{mib(one['parent'][1]):.0f} | {one['seconds']:.1f} |")  # fmt: skip
    print(f"| two ranks | the parent | {mib(two['parent'][0]):.0f} | "
          f"{mib(two['parent'][1]):.0f} | {two['seconds']:.1f} |")  # fmt: skip
    for rank, (private, rss) in enumerate(two["workers"]):
        print(f"| two ranks | worker {rank + 1} | {mib(private):.0f} | {mib(rss):.0f} | |")
    worst = max(private for private, _ in two["workers"]) / one["parent"][0]
    print(f"largest worker's peak private memory / the one-process fit's: {worst:.2f}x")
    print(f"payload files left: {payloads}")


def reads(scratch: Path, env: dict) -> None:
    script = scratch / "reads.py"
    script.write_text(READS)
    rows = []
    for cache in ("auto", "host"):
        for devices in ("cpu", "cpu,cpu"):
            folder = scratch / f"reads-{devices.count(',') + 1}-{cache}"
            folder.mkdir()
            out = subprocess.run(
                [sys.executable, str(script), str(folder), devices, cache], env=env,
                cwd=scratch, capture_output=True, text=True,
            )  # fmt: skip
            if out.returncode != 0 or "fitted 2" not in out.stdout:
                raise RuntimeError(f"the fit failed: {out.stderr[-2000:]}")
            counts = sorted((p.stat().st_size for p in folder.iterdir()), reverse=True)
            rows.append((devices, cache, counts))
    print("| fit | prefix_cache | reads per item, by process |")
    print("|---|---|---|")
    for devices, cache, counts in rows:
        per_item = ", ".join(f"{count / 2000:.2f}" for count in counts)
        print(f"| {devices} | {cache} | {per_item} |")


def kill(scratch: Path, env: dict) -> None:
    script = scratch / "forever.py"
    script.write_text(FOREVER)
    parent = subprocess.Popen(
        [sys.executable, str(script)], cwd=scratch, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    workdirs = lambda: list(scratch.glob("sklearn-greedy-ddp-*"))  # noqa: E731
    deadline = time.monotonic() + 120
    while not any((d / "joined-1").exists() for d in workdirs()):
        if time.monotonic() > deadline or parent.poll() is not None:
            raise RuntimeError("the two ranks never joined")
        time.sleep(0.2)
    time.sleep(2.0)  # training
    workers = [pid for pid in descendants(parent.pid) if pid != parent.pid]
    killed = time.monotonic()
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    gone = files = None
    while time.monotonic() - killed < 60 and (gone is None or files is None):
        alive = [pid for pid in workers if _running(pid)]
        if gone is None and not alive:
            gone = time.monotonic() - killed
        if files is None and not workdirs():
            files = time.monotonic() - killed
        time.sleep(0.05)
    print(
        f"parent SIGKILLed with {len(workers)} processes below it (ranks and the resource "
        f"tracker): all gone after {gone} s, the fit's directory after {files} s"
    )


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=0.6, help="memmap size (default 0.6)")
    parser.add_argument("--skip-memory", action="store_true", help="not the memory part")
    parser.add_argument("--skip-kill", action="store_true", help="not the kill part")
    parser.add_argument("--skip-reads", action="store_true", help="not the reads part")
    args = parser.parse_args(argv)
    import torch

    print(describe(torch.device("cpu")))
    scratch = Path(tempfile.mkdtemp(prefix="devices-bench-"))
    env = dict(os.environ, TMPDIR=str(scratch), PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    try:
        if not args.skip_memory:
            memory(args.gib, scratch, env)
        if not args.skip_reads:
            reads(scratch, env)
        if not args.skip_kill:
            kill(scratch, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
