"""Streaming fits: memory that does not grow with the data, the same model as the array
path, and a prefix cache that keeps each layer's epochs as cheap as the first's.

Three measurements (issue 9), each fit in its own process so that peak resident memory
(``ru_maxrss``) belongs to that fit alone:

1. **memory**: ``fit`` on a lazy :class:`~sklearn_greedy.datasets.ImageFolderDataset` of
   ``n`` and of ``4n`` images (the CIFAR-10 JPEG folder, and a generated folder of larger
   96x96 PNG images); the streamed fit's peak RSS should grow by < 20 %, where the array
   path (``load_image_folder``, then ``fit``) grows with the data;
2. **agreement**: streamed and array fits on the same CIFAR images and seed, test accuracy;
3. **prefix cache**: per-epoch seconds of each of J=4 layers on a streamed CIFAR subset
   without augmentation, prefix recomputed per batch (``prefix_cache=None``) against the
   host cache (``prefix_cache="host"``).

Usage (CIFAR-10 JPEG folder extracted from ``../shared/data/cifar-10-jpeg``)::

    mkdir -p /tmp/cifar10
    tar xzf ../shared/data/cifar-10-jpeg/cifar-10-jpeg.tar.gz -C /tmp/cifar10
    python benchmarks/streaming.py --cifar-dir /tmp/cifar10 --n 2500

``--smoke`` runs everything on tiny generated folders (no CIFAR needed).

``--memmap-gib G`` instead measures a memmap fit's resident memory (issue 25): a G GiB
float32 memmap of 3x32x32 images in a temporary file (removed after), one layer of width
4, one epoch, batch 1024, in a child process each: rows read from the file (the default)
and through the mapping (the previous behaviour, still that of copy-on-write memmaps);
peak RSS, and private and file-backed resident memory after the fit::

    python benchmarks/streaming.py --memmap-gib 2

``--long-stream N`` instead checks that a stream longer than any sample of it trains the
array's model (issue 25): N generated 3x8x8 images (a weak class signal, 5 % of them
far off), fitted (2 layers of width 4, 2 epochs) from the array, from a memmap of it and
from a ``TensorDataset`` of it, with the same seed; each fit's ``layer_scores_``::

    python benchmarks/streaming.py --long-stream 16000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _fit_params(args, **extra) -> dict:
    params = dict(
        n_layers=2, width=args.width, max_epochs=args.epochs, batch_size=128, augment=True,
        random_state=0, device="cpu", num_workers=args.workers,
    )  # fmt: skip
    params.update(extra)
    return params


# ---------------------------------------------------------------------------- child
def _status_mib() -> dict:
    """Resident memory of this process from /proc (Linux): private, file-backed, peak."""
    found = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return found


def memmap_child(args) -> None:
    """One memmap fit in this process; prints a JSON line with its resident memory."""
    from sklearn_greedy import GreedyLayerwiseCNNClassifier
    from sklearn_greedy.training import _streaming

    if args.mode == "memmap-mapping":
        _streaming.FileRows.of = lambda array: None  # every row read through the mapping
    X = np.memmap(args.folder, dtype=np.float32, mode="r", shape=(args.size, 3, 32, 32))
    y = np.arange(args.size) % 10
    base = _status_mib()
    start = time.perf_counter()
    GreedyLayerwiseCNNClassifier(
        n_layers=1, width=4, max_epochs=1, batch_size=1024, random_state=0, device="cpu",
        normalize=((0.5,) * 3, (0.25,) * 3),
    ).fit(X, y)  # fmt: skip
    after = _status_mib()
    print(json.dumps({
        "mode": args.mode[len("memmap-"):], "import_mib": base["VmHWM"],
        "peak_mib": after["VmHWM"], "private_after_mib": after["RssAnon"],
        "file_after_mib": after["RssFile"], "seconds": time.perf_counter() - start,
    }))  # fmt: skip


def memmap_part(args) -> dict:
    """Both children on one generated memmap file, removed after."""
    n = int(args.memmap_gib * 2**30 // (3 * 32 * 32 * 4))
    work = tempfile.mkdtemp(prefix="streaming_memmap_")
    path = os.path.join(work, "x.dat")
    try:
        X = np.memmap(path, dtype=np.float32, mode="w+", shape=(n, 3, 32, 32))
        rng = np.random.default_rng(0)
        for start in range(0, n, 8192):
            X[start : start + 8192] = rng.random(X[start : start + 8192].shape, np.float32)
        X.flush()
        del X
        rows = []
        for mode in ("memmap-file", "memmap-mapping"):
            command = [sys.executable, __file__, "--child", "--mode", mode, "--folder", path,
                       "--size", str(n)]  # fmt: skip
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"file_gib": n * 3 * 32 * 32 * 4 / 2**30, "n_images": n, "rows": rows}


def memmap_markdown(result: dict) -> str:
    lines = [f"### A memmap fit's resident memory ({result['describe']})", "",
             f"`{result['command']}`: {result['memmap']['file_gib']:.2f} GiB of float32 "
             f"3x32x32 images ({result['memmap']['n_images']}), one layer of width 4, one "
             "epoch, batch 1024", "",
             "| rows read from | peak RSS (MiB) | of which torch's import | private after | "
             "file-backed after | fit (s) |", "|---|---|---|---|---|---|"]  # fmt: skip
    for row in result["memmap"]["rows"]:
        lines.append(
            f"| {row['mode']} | {row['peak_mib']:.0f} | {row['import_mib']:.0f} | "
            f"{row['private_after_mib']:.0f} | {row['file_after_mib']:.0f} | "
            f"{row['seconds']:.0f} |"
        )
    return "\n".join(lines)


def child(args) -> None:
    """One fit in this process; prints a JSON line with its peak RSS and seconds."""
    if args.mode.startswith("memmap"):
        return memmap_child(args)
    from sklearn_greedy import GreedyLayerwiseCNNClassifier
    from sklearn_greedy.datasets import ImageFolderDataset, load_image_folder

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    clf = GreedyLayerwiseCNNClassifier(**_fit_params(args))
    if args.mode == "stream":
        clf.fit(ImageFolderDataset(args.folder, size=(args.size, args.size)))
    else:
        X, y = load_image_folder(args.folder, size=(args.size, args.size))
        clf.fit(X, y)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"base_mib": base, "peak_mib": peak, "seconds": seconds}))


def run_child(args, folder: str, mode: str, size: int) -> dict:
    command = [
        sys.executable, __file__, "--child", "--folder", folder, "--mode", mode,
        "--size", str(size),
        "--width", str(args.width), "--epochs", str(args.epochs),
        "--workers", str(args.workers),
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- folders
def linked_subset(source: str, target: str, n: int) -> str:
    """A class-folder tree of ``n`` images of ``source``, as symbolic links (balanced)."""
    classes = sorted(os.listdir(source))
    per_class = n // len(classes)
    for name in classes:
        os.makedirs(os.path.join(target, name), exist_ok=True)
        files = sorted(os.listdir(os.path.join(source, name)))[:per_class]
        for file in files:
            os.symlink(os.path.join(source, name, file), os.path.join(target, name, file))
    return target


def generated_folder(target: str, n: int, size: int, seed: int = 0) -> str:
    """``n`` PNG images of ``size`` pixels in 4 classes (a bright quadrant, plus noise)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    half = size // 2
    for i in range(n):
        label = i % 4
        image = rng.integers(0, 96, size=(size, size, 3), dtype=np.uint8)
        r, c = divmod(label, 2)
        image[r * half : (r + 1) * half, c * half : (c + 1) * half] += 128
        os.makedirs(os.path.join(target, f"class{label}"), exist_ok=True)
        Image.fromarray(image).save(os.path.join(target, f"class{label}", f"{i:06d}.png"))
    return target


# ---------------------------------------------------------------------------- parts
def memory_part(args, folders: dict) -> list[dict]:
    rows = []
    for name, (small, large, size) in folders.items():
        for mode in ("stream", "array"):
            a, b = run_child(args, small, mode, size), run_child(args, large, mode, size)
            growth = (b["peak_mib"] - a["peak_mib"]) / a["peak_mib"]
            rows.append({"data": name, "mode": mode, "peak_n_mib": a["peak_mib"],
                         "peak_4n_mib": b["peak_mib"], "growth": growth,
                         "seconds_n": a["seconds"], "seconds_4n": b["seconds"]})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def agreement_part(args, train_dir: str, test_dir: str, size: int) -> dict:
    from sklearn_greedy import GreedyLayerwiseCNNClassifier
    from sklearn_greedy.datasets import ImageFolderDataset, load_image_folder

    X, y = load_image_folder(train_dir, size=(size, size))
    X_test, y_test = load_image_folder(test_dir, size=(size, size))
    params = _fit_params(args, n_layers=3)
    array = GreedyLayerwiseCNNClassifier(**params).fit(X, y)
    lazy = ImageFolderDataset(train_dir, size=(size, size))
    stream = GreedyLayerwiseCNNClassifier(**params).fit(lazy)
    test = ImageFolderDataset(test_dir, size=(size, size))
    row = {"array_test": array.score(X_test, y_test), "stream_test": stream.score(test)}
    row["difference"] = row["stream_test"] - row["array_test"]
    print(json.dumps(row), flush=True)
    return row


def cache_part(args, train_dir: str, size: int) -> dict:
    from sklearn_greedy import GreedyLayerwiseCNNClassifier
    from sklearn_greedy.datasets import ImageFolderDataset

    rows = {}
    for cache in (None, "host"):
        params = _fit_params(args, n_layers=4, augment=False, prefix_cache=cache)
        data = ImageFolderDataset(train_dir, size=(size, size))
        clf = GreedyLayerwiseCNNClassifier(**params).fit(data)
        rows[str(cache)] = [float(np.mean([r["seconds"] for r in h])) for h in clf.history_]
        print(json.dumps({"prefix_cache": str(cache), "epoch_seconds": rows[str(cache)]}))
    return rows


def markdown(result: dict) -> str:
    lines = [f"### Streaming fits ({result['describe']})", "", f"`{result['command']}`", "",
             "| data | input | peak RSS n (MiB) | peak RSS 4n (MiB) | growth |",
             "|---|---|---|---|---|"]  # fmt: skip
    for row in result["memory"]:
        lines.append(
            f"| {row['data']} | {row['mode']} | {row['peak_n_mib']:.0f} | "
            f"{row['peak_4n_mib']:.0f} | {100 * row['growth']:+.1f} % |"
        )
    agree = result["agreement"]
    lines += ["", f"Same images ({result['agreement_data']}) and seed: array "
              f"{agree['array_test']:.4f}, streamed {agree['stream_test']:.4f} test accuracy "
              f"({100 * agree['difference']:+.2f} pt).",
              "", "| prefix_cache | per-epoch seconds, layers 1..4 |", "|---|---|"]  # fmt: skip
    for cache, seconds in result["cache"].items():
        lines.append(f"| {cache} | {', '.join(f'{s:.2f}' for s in seconds)} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar-dir", help="the extracted CIFAR-10 JPEG folder (train/, test/)")
    parser.add_argument("--n", type=int, default=2500, help="images of the small folders")
    parser.add_argument(
        "--large-size", type=int, default=96, help="side of the generated PNG images (default 96)"
    )
    parser.add_argument("--width", type=int, default=32, help="width of every layer (default 32)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per layer (default 1)")
    parser.add_argument(
        "--workers", type=int, default=0, help="DataLoader workers of the streamed fits (default 0)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny generated folders only")
    parser.add_argument(
        "--memmap-gib", type=float,
        help="measure a memmap fit's resident memory on a file of this many GiB instead",
    )  # fmt: skip
    parser.add_argument(
        "--long-stream", type=int,
        help="check that array, memmap and data set fits of this many images agree instead",
    )  # fmt: skip
    parser.add_argument("--out", help="write the JSON and markdown here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if args.smoke:
        args.n, args.large_size, args.width = 40, 16, 4
    import torch
    from _common import describe

    if args.memmap_gib:
        result = {
            "describe": describe(torch.device("cpu")),
            "command": "python benchmarks/streaming.py " + " ".join(argv or sys.argv[1:]),
            "memmap": memmap_part(args),
        }
        return _write(args, result, memmap_markdown(result), "streaming_memmap")
    if args.long_stream:
        result = {
            "describe": describe(torch.device("cpu")),
            "command": "python benchmarks/streaming.py " + " ".join(argv or sys.argv[1:]),
            "long_stream": long_stream_part(args.long_stream),
        }
        return _write(args, result, long_stream_markdown(result), "streaming_long")
    work = tempfile.mkdtemp(prefix="streaming_bench_")
    n = args.n
    folders = {}
    big = f"generated {args.large_size}x{args.large_size} PNG"
    folders[big] = (
        *(generated_folder(os.path.join(work, f"gen{m}"), m * n, args.large_size) for m in (1, 4)),
        args.large_size,
    )
    if args.cifar_dir:
        train = os.path.join(args.cifar_dir, "train")
        folders["CIFAR-10 JPEG"] = (
            *(linked_subset(train, os.path.join(work, f"cifar{m}"), m * n) for m in (1, 4)),
            32,
        )
        test = linked_subset(os.path.join(args.cifar_dir, "test"), os.path.join(work, "test"), n)
        train_dir, size = folders["CIFAR-10 JPEG"][0], 32
    else:
        train_dir, size = folders[big][0], args.large_size
        test = generated_folder(os.path.join(work, "gen_test"), n, args.large_size, seed=1)
    result = {
        "describe": describe(torch.device("cpu")),
        "command": "python benchmarks/streaming.py " + " ".join(argv or sys.argv[1:]),
        "memory": memory_part(args, folders),
        "agreement_data": "CIFAR-10 JPEG" if args.cifar_dir else big,
        "agreement": agreement_part(args, train_dir, test, size),
        "cache": cache_part(args, train_dir, size),
    }
    _write(args, result, markdown(result), "streaming")


def long_stream_part(n: int) -> dict:
    """``layer_scores_`` of the same fit from an array, a memmap and a data set of ``n``
    images, and whether they are identical."""
    import numpy as np
    import torch
    from torch.utils.data import TensorDataset

    from sklearn_greedy import GreedyLayerwiseCNNClassifier

    rng = np.random.RandomState(0)
    X = rng.rand(n, 3, 8, 8).astype(np.float32)
    y = np.arange(n) % 2
    X[y == 1, :, :4] += 0.04  # weak: the layers' scores stay well below 1
    X[: n // 20] += 20.0  # far off: a sample of the items would misweigh them
    params = dict(n_layers=2, width=4, max_epochs=2, batch_size=256, random_state=0)
    with tempfile.TemporaryDirectory(prefix="long_stream_") as folder:
        path = os.path.join(folder, "X.dat")
        stored = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
        stored[:] = X
        stored.flush()
        del stored
        sources = {
            "array": (X, y),
            "memmap": (np.memmap(path, dtype=np.float32, mode="r", shape=X.shape), y),
            "data set": (TensorDataset(torch.from_numpy(X), torch.from_numpy(y)), None),
        }
        scores = {
            name: GreedyLayerwiseCNNClassifier(**params).fit(*data).layer_scores_.tolist()
            for name, data in sources.items()
        }
    same = all(value == scores["array"] for value in scores.values())
    return {"n": n, "layer_scores": scores, "identical": same}


def long_stream_markdown(result: dict) -> str:
    part = result["long_stream"]
    lines = [result["describe"], "", "    " + result["command"], ""]
    lines += ["| fitted from | layer_scores_ |", "|---|---|"]
    lines += [f"| {name} | {scores} |" for name, scores in part["layer_scores"].items()]
    lines += ["", f"{part['n']} images; identical: {part['identical']}"]
    return "\n".join(lines)


def _write(args, result: dict, text: str, stem: str) -> None:
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, stem + ".json"), "w") as f:
            json.dump(result, f, indent=2)
        with open(os.path.join(args.out, stem + ".md"), "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
