"""CIFAR-10 on the whole data set at CPU scale: the paper's Table 2 pattern, resumable.

All 50,000 training and 10,000 test images, the paper's protocol (Sec. 4.2 and the
reference code: ``cifar10_params(k)``: k=1 with J=5, k=2, 3 with J=4, invertible
downsampling, random crop and flip, the reference normalisation, SGD with momentum 0.9 and
weight decay 5e-4, batch 128, lr 0.1 divided by 5 at 30, 60 and 90 % of each layer's
epochs with the optimizer restarted) with every width divided by ``--width-divisor`` F and
``--epochs`` E per layer. Rows, in this order (``--rows`` picks some):

- ``greedy-k1``, ``greedy-k3``: greedy fits; test accuracy of every layer, of the last
  layer and of the ensemble of all layers' classifiers;
- ``e2e-k1``: the k=1 final network (the same architecture, freshly initialised) trained
  end to end for J x E epochs with the same optimiser and the learning rate decayed at
  the same fractions of the run;
- ``greedy-k2``, ``e2e-k3``: the k=2 greedy fit and the k=3 network end to end (J x E
  epochs).

Each row runs in a process of its own (its peak RSS is the row's), niced, writing a line
per layer and epoch to ``<work-dir>/cifar10_cpu.log``. Greedy rows write every finished
layer to ``<work-dir>/checkpoints/<row>`` (the estimator's ``checkpoint_dir``), end-to-end
rows their state after every epoch: stop the command at any point and run it again, and
each row resumes from its last finished layer (epoch); finished rows are not rerun. After
each row the results so far are written to ``<out>/cifar10_cpu-<date>.json`` (the date the
run started): ``n_train``, ``n_test``, ``width_divisor``, ``epochs_per_layer``,
``machine``, ``commit`` and ``rows``, each ``{name, k, J, mode, test_acc, ensemble_acc,
per_layer, fit_s, peak_rss_mb, ...}``. ``fit_s`` is the wall time of the runs that trained
the row; for layers read back from a checkpoint, the seconds of their training epochs.

``--throughput`` instead times one epoch of the k=1 network's last stage (its frozen
prefix recomputed on each augmented batch) through the estimator's engine and through a
plain PyTorch loop over the same modules, on ``--throughput-n`` images.

Usage::

    python benchmarks/cifar10.py --data-dir DIR --cpu-scale [--width-divisor 4] \\
        [--epochs 10] [--out benchmarks/results] [--work-dir DIR] [--rows greedy-k1,...]
    python benchmarks/cifar10_cpu.py --data-dir DIR [same options]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROWS = ("greedy-k1", "greedy-k3", "e2e-k1", "greedy-k2", "e2e-k3")
DEFAULT_WORK_DIR = Path.home() / ".cache" / "sklearn-greedy" / "cifar10_cpu"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the CPU-scale run (shared with ``cifar10.py --cpu-scale``)."""
    parser.add_argument(
        "--width-divisor", type=int, default=4, help="divide every width by this (default 4)."
    )
    parser.add_argument(
        "--epochs", type=int, default=10,
        help="epochs per layer (default 10: the decays fall at 30, 60 and 90 %% of them).",
    )  # fmt: skip
    parser.add_argument(
        "--rows", default=",".join(ROWS), help=f"comma-separated rows, from {', '.join(ROWS)}."
    )
    parser.add_argument(
        "--out", default=str(HERE / "results"), help="folder of the results JSON file."
    )
    parser.add_argument(
        "--work-dir", default=str(DEFAULT_WORK_DIR),
        help="folder of the checkpoints and the log (default ~/.cache/sklearn-greedy/cifar10_cpu).",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=2, help="torch CPU threads of each fit (default 2)."
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every fit (default 0).")
    parser.add_argument(
        "--max-per-class", type=int, default=None,
        help="training images per class, for a quick check (default: all 5,000).",
    )  # fmt: skip
    parser.add_argument(
        "--test-max-per-class", type=int, default=None,
        help="test images per class, for a quick check (default: all 1,000).",
    )  # fmt: skip
    parser.add_argument(
        "--throughput", action="store_true",
        help="time one epoch of the k=1 last stage: the engine against a plain PyTorch loop.",
    )  # fmt: skip
    parser.add_argument(
        "--throughput-n", type=int, default=4000, help="images of the --throughput epoch."
    )
    parser.add_argument("--row", default=None, help=argparse.SUPPRESS)  # a child's one row


# ----------------------------------------------------------------------------- one row


def greedy_params(k: int, args) -> dict:
    """``cifar10_params(k)`` with widths divided by F and E epochs per layer, the decays
    at the same fractions of them."""
    from sklearn_greedy import cifar10_params

    params = cifar10_params(k)
    for key in ("width", "aux_width", "final_aux_width"):
        if params.get(key):
            params[key] = max(1, params[key] // args.width_divisor)
    params.update(
        max_epochs=args.epochs, lr_step=max(1, round(0.3 * args.epochs)),
        n_iter_no_change=args.epochs, n_threads=args.threads, channels_last=True,
        random_state=args.seed, device="cpu", verbose=2,
    )  # fmt: skip
    return params


def load(args):
    from sklearn_greedy.datasets import load_cifar10

    X, y = load_cifar10(args.data_dir, "train", max_per_class=args.max_per_class)
    X_test, y_test = load_cifar10(args.data_dir, "test", max_per_class=args.test_max_per_class)
    return X, y, X_test, y_test


def greedy_row(name: str, k: int, args, work: Path) -> dict:
    import numpy as np

    from sklearn_greedy import GreedyLayerwiseCNNClassifier

    X, y, X_test, y_test = load(args)
    params = greedy_params(k, args)
    directory = work / "checkpoints" / name
    resumed = len(list(directory.glob("piece-*.ckpt"))) if directory.exists() else 0
    clf = GreedyLayerwiseCNNClassifier(**params, checkpoint_dir=directory)
    start = time.perf_counter()
    clf.fit(X, y)
    wall = time.perf_counter() - start
    per_layer = [float(np.mean(p == y_test)) for p in clf.staged_predict(X_test)]
    ensemble = clf.set_params(ensemble=True).score(X_test, y_test)
    epochs_s = [sum(r["seconds"] for r in h) for h in clf.history_]
    return {
        "name": name, "k": k, "J": params["n_layers"], "mode": "greedy",
        "test_acc": per_layer[-1], "ensemble_acc": float(ensemble), "per_layer": per_layer,
        "train_acc_per_layer": [float(s) for s in clf.layer_scores_],
        "width": params["width"], "aux_width": params.get("aux_width"),
        "fit_s": wall + sum(epochs_s[:resumed]), "epoch_s_per_layer": epochs_s,
        "resumed_layers": resumed, "last_run_s": wall, "n_train": len(X), "n_test": len(X_test),
    }  # fmt: skip


def end_to_end_row(name: str, k: int, args, work: Path) -> dict:
    """The greedy k network's final architecture, freshly initialised, trained jointly for
    J x E epochs; its state saved after every epoch, resumed from the last one."""
    import io

    import numpy as np
    import torch
    import torch.nn.functional as F

    from sklearn_greedy import GreedyLayerwiseCNNClassifier
    from sklearn_greedy.nn import augment_crop_flip
    from sklearn_greedy.training._checkpoint import atomic_write

    X, y, X_test, y_test = load(args)
    torch.set_num_threads(args.threads)
    params = greedy_params(k, args)
    # the architecture of the greedy network: one epoch per layer on a few images
    shape_params = dict(params, max_epochs=1, verbose=0)
    few = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(10)])
    network = GreedyLayerwiseCNNClassifier(**shape_params).fit(X[few], y[few])
    network = network.to_torch(pretrained=False, random_state=args.seed)
    J, E = params["n_layers"], args.epochs
    epochs, lr_step = J * E, max(1, round(0.3 * J * E))
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    gen = torch.Generator().manual_seed(args.seed)

    def optimizer(lr):
        return torch.optim.SGD(
            network.parameters(), lr=lr, momentum=params["momentum"],
            weight_decay=params["weight_decay"],
        )  # fmt: skip

    state_path = work / "checkpoints" / name / "state.pt"
    state_path.parent.mkdir(parents=True, exist_ok=True)
    first, seconds = 0, 0.0
    opt = optimizer(params["lr"])
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        network.load_state_dict(state["network"])
        first, seconds = int(state["epoch"]), float(state["seconds"])
        lr = params["lr"] * params["lr_decay"] ** (first // lr_step)
        opt = optimizer(lr)
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        print(f"{name}: resumed after epoch {first}", flush=True)
    for epoch in range(first, epochs):
        start = time.perf_counter()
        if epoch and epoch % lr_step == 0:  # decay, optimizer restarted (as the greedy fit)
            opt = optimizer(params["lr"] * params["lr_decay"] ** (epoch // lr_step))
        network.train()
        total, hits = 0.0, 0
        perm = torch.randperm(len(X_t), generator=gen)
        for s in range(0, len(X_t), params["batch_size"]):
            idx = perm[s : s + params["batch_size"]]
            xb = augment_crop_flip(X_t[idx].float(), gen, padding=4, flip=True)
            xb = xb.contiguous(memory_format=torch.channels_last)
            out = network(xb)
            loss = F.cross_entropy(out, y_t[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            hits += int((out.argmax(1) == y_t[idx]).sum())
        seconds += time.perf_counter() - start
        buffer = io.BytesIO()
        torch.save(
            {"network": network.state_dict(), "optimizer": opt.state_dict(),
             "generator": gen.get_state(), "epoch": epoch + 1, "seconds": seconds},
            buffer,
        )  # fmt: skip
        atomic_write(state_path, buffer.getvalue())
        print(
            f"{name} epoch {epoch + 1}/{epochs}: loss={total / len(X_t):.4f} "
            f"train={hits / len(X_t):.4f} lr={opt.param_groups[0]['lr']:.4g} "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    network.eval()
    with torch.no_grad():
        pred = torch.cat(
            [network(torch.from_numpy(X_test[s : s + 1000]).float()).argmax(1)
             for s in range(0, len(X_test), 1000)]
        ).numpy()  # fmt: skip
    return {
        "name": name, "k": k, "J": J, "mode": "e2e", "test_acc": float(np.mean(pred == y_test)),
        "ensemble_acc": None, "epochs": epochs, "lr_step": lr_step,
        "width": params["width"], "fit_s": seconds, "n_train": len(X), "n_test": len(X_test),
    }  # fmt: skip


def run_row(args) -> None:
    """A child: one row, its JSON written beside its checkpoints."""
    import resource

    work = Path(args.work_dir)
    mode, k = args.row.split("-k")
    fn = greedy_row if mode == "greedy" else end_to_end_row
    row = fn(args.row, int(k), args, work)
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    path = work / "rows" / f"{args.row}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=1))
    print(f"{args.row}: test accuracy {row['test_acc']:.4f}", flush=True)


# ----------------------------------------------------------------------------- the run


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            check=True, cwd=HERE,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine() -> str:
    import platform

    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.machine()}"


def _child_env(threads: int) -> dict:
    """The environment of a row's child: its thread count, and this checkout importable
    even where the package is not installed (the child runs this file as a script)."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=path)


def run(args) -> Path:
    """Every asked-for row not done yet, each in a niced child process; the results file
    rewritten after each."""
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    config = {"width_divisor": args.width_divisor, "epochs_per_layer": args.epochs,
              "seed": args.seed, "max_per_class": args.max_per_class,
              "test_max_per_class": args.test_max_per_class}  # fmt: skip
    run_file = work / "run.json"
    if run_file.exists():
        started = json.loads(run_file.read_text())
        if started["config"] != config:
            raise SystemExit(
                f"{work} holds a run with {started['config']}, not {config}: give another "
                "--work-dir, or remove it to start over."
            )
    else:
        started = {"config": config, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
        run_file.write_text(json.dumps(started))
    out = Path(args.out) / f"cifar10_cpu-{started['date']}.json"
    log = work / "cifar10_cpu.log"
    for name in [r.strip() for r in args.rows.split(",") if r.strip()]:
        if name not in ROWS:
            raise SystemExit(f"--rows: {name!r} is not one of {', '.join(ROWS)}.")
        if not (work / "rows" / f"{name}.json").exists():
            command = [sys.executable, "-u", str(Path(__file__).resolve()), *args.argv]
            command += ["--row", name]
            with open(log, "a") as fh:
                fh.write(f"--- {name} started {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC\n")
                fh.flush()
                done = subprocess.run(
                    ["nice", "-n", "10", *command], stdout=fh, stderr=subprocess.STDOUT,
                    env=_child_env(args.threads),
                )  # fmt: skip
            if done.returncode != 0:
                raise SystemExit(f"row {name} failed (exit {done.returncode}); see {log}.")
        write_results(work, out, args)
    return out


def write_results(work: Path, out: Path, args) -> None:
    rows = [
        json.loads((work / "rows" / f"{name}.json").read_text())
        for name in ROWS
        if (work / "rows" / f"{name}.json").exists()
    ]
    results = {
        "n_train": rows[0]["n_train"] if rows else None,
        "n_test": rows[0]["n_test"] if rows else None,
        "width_divisor": args.width_divisor,
        "epochs_per_layer": args.epochs,
        "machine": _machine(),
        "commit": _commit(),
        "command": "python benchmarks/cifar10.py --cpu-scale " + " ".join(args.argv),
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results so far in {out}", flush=True)


# ----------------------------------------------------------------------------- throughput


def throughput(args) -> None:
    """One epoch of the k=1 network's last stage on ``--throughput-n`` images: the engine
    (what the estimator runs) against a plain loop over the same modules."""
    import copy

    import numpy as np
    import torch
    import torch.nn.functional as F

    from sklearn_greedy import GreedyLayerwiseCNNClassifier
    from sklearn_greedy.nn import augment_crop_flip
    from sklearn_greedy.training._engine import StageData, TrainingConfig, train_stage

    X, y, _, _ = load(args)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(X), size=min(args.throughput_n, len(X)), replace=False)
    X, y = X[pick], y[pick]
    torch.set_num_threads(args.threads)
    params = dict(greedy_params(1, args), max_epochs=1, verbose=0)
    few = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(10)])
    clf = GreedyLayerwiseCNNClassifier(**params).fit(X[few], y[few])
    model = clf.model_
    prefix = torch.nn.Sequential(*model.layers[:-1])
    stage = torch.nn.Sequential(model.layers[-1], model.heads[-1])

    def standardized(xb):
        return model.standardized(xb)

    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    rows = {}
    for attempt in range(2):  # the second of each is timed: the first warms the kernels
        for path in ("engine", "plain loop"):
            s = copy.deepcopy(stage).train().requires_grad_(True)
            gen = torch.Generator().manual_seed(attempt)
            start = time.perf_counter()
            if path == "engine":
                config = TrainingConfig(
                    max_epochs=1, batch_size=128, lr=0.1, optimizer="sgd", momentum=0.9,
                    weight_decay=5e-4, lr_decay=0.2, lr_step=None, keep_best=False,
                    n_iter_no_change=1, eval_batch_size=1024, prefix_cache=None,
                )  # fmt: skip
                result = train_stage(
                    s, StageData(X_t, y_t), loss_fn=F.cross_entropy, config=config,
                    generator=gen, prefix=lambda x: prefix(standardized(x)),
                    augment=lambda b, g: augment_crop_flip(b, g, padding=4, flip=True),
                )  # fmt: skip
                rows["engine epoch"] = result.history[0]["seconds"]
            else:
                opt = torch.optim.SGD(s.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
                perm = torch.randperm(len(X_t), generator=gen)
                for b in range(0, len(X_t), 128):
                    idx = perm[b : b + 128]
                    xb = augment_crop_flip(X_t[idx], gen, padding=4, flip=True)
                    with torch.no_grad():
                        xb = prefix(standardized(xb))
                    loss = F.cross_entropy(s(xb), y_t[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            rows[path if path != "engine" else "engine, whole call"] = time.perf_counter() - start
    print(f"{_machine()}; torch {torch.__version__}; {args.threads} threads; commit {_commit()}")
    print(f"k=1 last stage (width {params['width']}, widths / {args.width_divisor}), one epoch "
          f"of {len(X)} augmented images, the prefix recomputed on every batch:")  # fmt: skip
    for path, seconds in rows.items():
        print(f"  {path:<18} {seconds:7.2f} s  {len(X) / seconds:7.0f} images/s")
    print(
        f"  engine epoch / plain loop: {rows['engine epoch'] / rows['plain loop']:.3f} (the "
        "whole call adds the stage's divergence check, one evaluation batch)"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="CIFAR-10 on all 60,000 images at CPU scale, resumable per layer."
    )
    parser.add_argument(
        "--data-dir", required=True,
        help="CIFAR-10: python batches, an image folder, or the JPEG .tar.gz.",
    )  # fmt: skip
    add_arguments(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = [a for a in argv if a != "--cpu-scale"]  # what each row's child is given
    if args.throughput:
        throughput(args)
    elif args.row:
        sys.modules["tqdm"] = None  # plain lines per epoch in the log, not a progress bar
        run_row(args)
    else:
        print(f"results: {run(args)}")


if __name__ == "__main__":
    main()
