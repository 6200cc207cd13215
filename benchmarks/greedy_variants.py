"""Greedy variants on CPU, measured in one run (issue 10): decoupled vs sequential training,
layerwise compression and the final-head refit, on digits and a CIFAR-10 subset.

What it checks (PASS/MISS lines at the end):

- decoupled accuracy within 1 point of sequential (test accuracy, mean over seeds), at
  equal epochs per layer and, where decoupled is faster, with the epochs that fit in
  sequential's wall time (the schedule stretched alike);
- decoupled wall time no more than sequential's at equal epochs per layer, and at most
  0.75x of it for J >= 3 with augmentation (median fit time over the seeds; the two
  modes alternate, after a warm-up fit of each, so that they share the machine's load;
  torch runs one thread (``--threads``): on a shared 2-core machine, two OpenMP threads
  wait on each other whenever another process holds a core, which made fits 5x slower at
  random in trials; the time of the training epochs alone and the CPU time are printed
  beside the wall time, and so is the ratio of the arithmetic of the two fits, counted
  by torch's FlopCounterMode, below which no implementation of a compute-bound fit goes:
  decoupled saves the frozen prefix's forward passes, a large part of a k=1 fit, where
  the heads are a pooling and a linear layer, and a small part of a k=3 one, where each
  head costs two convolutions);
- the same for decoupled training with a ``decoupled_delay`` (``--delay``) on the J=5
  rows, where all layers starting at once loses accuracy on these small epoch budgets;
- the compressed model has the target widths and loses at most 1 point against the same
  network trained without compression at the same epochs per layer (the compressed one
  also fine-tunes each head after pruning, which is cheap: the head alone);
- the refit changes only the last layer and its head (every earlier tensor identical).

Usage::

    python benchmarks/greedy_variants.py                  # digits only, ~6 minutes
    # + a CIFAR-10 subset (1,500 / 1,000 images, 8 epochs, 3 seeds), ~20 minutes on 2 cores
    python benchmarks/greedy_variants.py --data-dir ../shared/data/cifar-10-jpeg
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

from _common import describe

# numpy, torch, scikit-learn and the package are imported where they are used, so that
# --help answers at once


class Report:
    """Rows of the table and the checks against the issue's targets."""

    def __init__(self):
        self.rows: list[tuple] = []
        self.checks: list[tuple[bool, str]] = []

    def row(self, data, variant, params, accuracy, seconds=float("nan"), train=float("nan")):
        augment = params.get("augment", "auto")
        self.rows.append((data, variant, params["n_layers"], augment, accuracy, seconds, train))
        print(f"  {data}: {variant}: accuracy {accuracy:.4f}", flush=True)

    def check(self, ok: bool, text: str):
        self.checks.append((bool(ok), text))

    def print(self):
        print(
            f"\n{'data':<22} {'variant':<48} {'J':>2} {'augment':>8} {'test acc':>9} "
            f"{'fit s':>7} {'train s':>7}"
        )
        for data, variant, J, augment, acc, secs, train in self.rows:
            secs, train = ("-" if math.isnan(v) else f"{v:.1f}" for v in (secs, train))
            print(
                f"{data:<22} {variant:<48} {J:>2} {augment!s:>8} {acc:>9.4f} {secs:>7} {train:>7}"
            )
        print()
        for ok, text in self.checks:
            print(f"{'PASS' if ok else 'MISS'}  {text}")


def fit_timed(params: dict, data):
    from sklearn_greedy import GreedyLayerwiseCNNClassifier

    X_train, y_train, X_test, y_test = data
    clf = GreedyLayerwiseCNNClassifier(**params)
    start, cpu = time.perf_counter(), time.process_time()
    clf.fit(X_train, y_train)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if params.get("training") == "decoupled":
        # one shared clock: epoch e of layer j is epoch j * delay + e of the run
        delay = params.get("decoupled_delay", 0)
        clock = {j * delay + r["epoch"]: r["seconds"] for j, h in enumerate(clf.history_)
                 for r in h}  # fmt: skip
        train = sum(clock.values())
    else:
        train = sum(record["seconds"] for history in clf.history_ for record in history)
    return clf, {"wall": seconds, "cpu": cpu, "train": train}, clf.score(X_test, y_test)


def layer_flops(clf, X, batch_size: int) -> tuple[list[int], list[int]]:
    """Per layer of the fitted ``clf``, counted by torch's FlopCounterMode on one training
    batch of ``X``: its forward pass alone (as a frozen prefix), and its stage (layer and
    head, forward and backward, as training computes them)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = copy.deepcopy(clf.model_).train().requires_grad_(True)
    x = model.stem(torch.as_tensor(X[:batch_size], dtype=torch.float32))
    forward, stage = [], []
    for layer, head in zip(model.layers, model.heads):
        with FlopCounterMode(display=False) as count:
            with torch.no_grad():
                layer(x)
        forward.append(count.get_total_flops())
        with FlopCounterMode(display=False) as count:
            h = layer(x)
            target = torch.zeros(len(x), dtype=torch.long)
            torch.nn.functional.cross_entropy(head(h), target).backward()
        stage.append(count.get_total_flops())
        x = h.detach()
    return forward, stage


def flop_floor(flops, epochs: int, augmented: bool, delay: int = 0) -> float:
    """The decoupled/sequential ratio of the arithmetic of a fit, from ``layer_flops``:
    sequential trains each stage under a frozen prefix, recomputed on every batch when the
    batches are augmented and computed once otherwise (kept features); decoupled trains
    the same stages without the prefixes, plus, with a delay, the frozen forward of each
    layer in the epochs after its own. A compute-bound fit cannot go below it, whatever
    the implementation."""
    forward, stage = flops
    J, E = len(stage), epochs
    prefix_passes = E if augmented else 1
    sequential = sum(prefix_passes * sum(forward[:j]) + E * stage[j] for j in range(J))
    decoupled = E * sum(stage) + delay * sum((J - 1 - j) * forward[j] for j in range(J))
    return decoupled / sequential


def decoupled_vs_sequential(report: Report, name: str, params: dict, data, seeds: int,
                            delays=(0,)):  # fmt: skip
    """Sequential and decoupled (with each of ``delays``) at equal epochs per layer,
    alternating, after a warm-up fit of each."""
    import numpy as np

    variants = {"sequential": dict(training="sequential")}
    for delay in delays:
        label = "decoupled" + (f", delay {delay}" if delay else "")
        variants[label] = dict(training="decoupled", decoupled_delay=delay)
    for extra in variants.values():
        warm, _, _ = fit_timed(dict(params, max_epochs=1, random_state=0, **extra), data)
    flops = layer_flops(warm, data[0], params.get("batch_size", 64))
    acc = {v: [] for v in variants}
    times = {v: [] for v in variants}
    for seed in range(seeds):
        for v, extra in variants.items():
            _, timing, score = fit_timed(dict(params, random_state=seed, **extra), data)
            acc[v].append(score)
            times[v].append(timing)
    median = {
        v: {key: statistics.median(t[key] for t in times[v]) for key in times[v][0]}
        for v in variants
    }
    for v in variants:
        m = median[v]
        report.row(name, v, params, np.mean(acc[v]), m["wall"], m["train"])
    J, augment = params["n_layers"], params.get("augment", "auto")
    # "auto" augments images of 16x16 or more (not digits)
    side = min(params.get("image_shape", (0, 32, 32))[1:])
    augmented = augment is not False and (augment != "auto" or side >= 16)
    limit = 0.75 if J >= 3 and augmented else 1.0
    for v, extra in list(variants.items())[1:]:
        gap = 100 * (np.mean(acc[v]) - np.mean(acc["sequential"]))
        ratio, cpu_ratio, train_ratio = (
            median[v][key] / median["sequential"][key] for key in ("wall", "cpu", "train")
        )
        floor = flop_floor(flops, params["max_epochs"], augmented, extra["decoupled_delay"])
        report.check(gap >= -1.0, f"{name}: {v} within 1 point of sequential: {gap:+.2f}")
        if ratio < 0.9 and not extra["decoupled_delay"]:
            equal_time(report, name, params, data, seeds, ratio, np.mean(acc["sequential"]))
        report.check(
            ratio <= limit,
            f"{name}: {v} time <= {limit}x sequential (J={J}, augment={augment}): "
            f"{ratio:.2f}x wall ({cpu_ratio:.2f}x CPU, {train_ratio:.2f}x training epochs "
            f"alone; arithmetic {floor:.2f}x)",
        )


def equal_time(report: Report, name, params: dict, data, seeds: int, ratio: float, seq_acc):
    """Decoupled again with the epochs that fit in sequential's wall time (its schedule
    stretched alike): decoupled pays for one layer-pass per batch where sequential pays
    for the frozen prefix too, and spends the difference on more epochs."""
    import numpy as np

    epochs = int(params["max_epochs"] / ratio)
    stretched = dict(params, training="decoupled", max_epochs=epochs)
    if params.get("lr_step"):
        stretched["lr_step"] = max(1, round(params["lr_step"] * epochs / params["max_epochs"]))
    scores = [fit_timed(dict(stretched, random_state=seed), data)[2] for seed in range(seeds)]
    report.row(name, f"decoupled, sequential's wall time ({epochs} epochs)", params,
               np.mean(scores))  # fmt: skip
    gap = 100 * (np.mean(scores) - seq_acc)
    report.check(
        gap >= -1.0,
        f"{name}: decoupled at sequential's wall time ({epochs} epochs) within 1 point: {gap:+.2f}",
    )


def compression(report: Report, name: str, params: dict, target: int, fine: int, data, seeds):
    """The compressed network beside the same one trained without compression."""
    import numpy as np

    from sklearn_greedy import parameter_count

    kinds = {"uncompressed": {}, "compressed": dict(prune_to=target, prune_epochs=fine)}
    acc = {kind: [] for kind in kinds}
    widths, size = {}, {}
    for seed in range(seeds):
        for kind, extra in kinds.items():
            clf, _, score = fit_timed(dict(params, random_state=seed, **extra), data)
            acc[kind].append(score)
            widths[kind], size[kind] = clf.layer_widths_, parameter_count(clf)
    for kind in kinds:
        variant = f"{kind}: widths {widths[kind]}, {size[kind]} params"
        report.row(name, variant, params, np.mean(acc[kind]))
    gap = 100 * (np.mean(acc["compressed"]) - np.mean(acc["uncompressed"]))
    expected = [target] * params["n_layers"]
    report.check(
        widths["compressed"] == expected,
        f"{name}: compressed widths are the targets: {widths['compressed']}",
    )
    report.check(gap >= -1.0, f"{name}: compressed within 1 point of uncompressed: {gap:+.2f}")


def refit(report: Report, name: str, params: dict, final_aux_width: int, data):
    import torch

    X_train, y_train, X_test, y_test = data
    clf, _, before = fit_timed(params, data)
    modules = list(clf.model_.layers) + list(clf.model_.heads)
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]
    clf.refit_final_head(X_train, y_train, final_aux_width=final_aux_width)
    after = clf.score(X_test, y_test)
    J = len(clf.model_.layers)
    modules = list(clf.model_.layers) + list(clf.model_.heads)
    earlier = [i for i in range(2 * J) if i not in (J - 1, 2 * J - 1)]
    same = all(
        torch.equal(value, saved[i][key])
        for i in earlier
        for key, value in modules[i].state_dict().items()
    )
    retrained = any(
        not torch.equal(value, saved[J - 1][key])
        for key, value in modules[J - 1].state_dict().items()
    )
    (w0, w1), (n0, n1) = clf.final_refit_["final_aux_width"], clf.final_refit_["n_params"]
    report.row(name, f"fit:   M~_f={w0}, {n0} params", params, before)
    report.row(name, f"refit: M~_f={w1}, {n1} params", params, after)
    report.check(
        same and retrained,
        f"{name}: refit changes only the last layer and head (earlier identical: {same}, "
        f"last layer retrained: {retrained})",
    )


def cifar_params(k: int, epochs: int, scale: float) -> dict:
    from sklearn_greedy import cifar10_params

    params = cifar10_params(k)
    params.update(max_epochs=epochs, lr_step=max(1, round(15 * epochs / 50)), device="cpu")
    params["width"] = max(1, round(params["width"] * scale))
    if params.get("aux_width"):
        params["aux_width"] = max(1, round(params["aux_width"] * scale))
    return params


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="CIFAR-10; without it digits only")
    parser.add_argument("--seeds", type=int, default=3, help="seeds on digits")
    parser.add_argument(
        "--digits-epochs", type=int, default=12, help="epochs per layer on digits (default 12)"
    )
    parser.add_argument(
        "--cifar-per-class", type=int, default=150,
        help="CIFAR-10 training images per class (default 150)",
    )  # fmt: skip
    parser.add_argument(
        "--cifar-test-per-class", type=int, default=100,
        help="CIFAR-10 test images per class (default 100)",
    )  # fmt: skip
    parser.add_argument("--cifar-epochs", type=int, default=8, help="per layer (paper: 50)")
    parser.add_argument("--cifar-seeds", type=int, default=3, help="seeds on CIFAR-10")
    parser.add_argument("--width-scale", type=float, default=0.125, help="CIFAR widths")
    parser.add_argument(
        "--compression-width-scale", type=float, default=0.25, help="CIFAR, compression rows"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every fit")
    parser.add_argument(
        "--delay", type=int, default=2, help="decoupled_delay of the J=5 rows' second variant"
    )
    args = parser.parse_args(argv)
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    print(describe(torch.device("cpu")))
    report = Report()

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0)
    digits = (X_train, y_train, X_test, y_test)
    epochs = args.digits_epochs
    base = dict(image_shape=(1, 8, 8), max_epochs=epochs, device="cpu", n_threads=args.threads)
    print(f"digits: {len(X_train)} train / {len(X_test)} test; {epochs} epochs per layer")
    for name, params in (
        ("digits k=1 M=64", dict(base, n_layers=3)),
        ("digits k=1 M=64 crop", dict(base, n_layers=3, augment="crop")),
    ):
        decoupled_vs_sequential(report, name, params, digits, args.seeds)
    deep = dict(base, n_layers=5, width=32, augment="crop")
    delays = (0, args.delay)
    decoupled_vs_sequential(report, "digits k=1 M=32 crop", deep, digits, args.seeds, delays)
    simcnn = dict(base, n_layers=3, k=3, width=32, aux_width=32, final_aux_width=16)
    simcnn["downsample_at"] = ()
    fine = max(1, round(0.4 * epochs))  # the paper's 20 fine-tuning epochs per 50
    compression(report, "digits k=3 M=32->16", simcnn, 16, fine, digits, args.seeds)
    refit_params = dict(base, n_layers=3, k=3, aux_width=64, random_state=0)
    refit(report, "digits k=3 M~=64", refit_params, 16, digits)

    if args.data_dir:
        from sklearn_greedy.datasets import load_cifar10

        per_class, test_per_class = args.cifar_per_class, args.cifar_test_per_class
        X_train, y_train = load_cifar10(args.data_dir, "train", max_per_class=per_class)
        X_test, y_test = load_cifar10(args.data_dir, "test", max_per_class=test_per_class)
        cifar = (X_train, y_train, X_test, y_test)
        scale, epochs = args.width_scale, args.cifar_epochs
        print(
            f"CIFAR-10 subset: {len(X_train)} train / {len(X_test)} test; {epochs} epochs per "
            f"layer (paper: 50), widths x{scale} of the paper's (compression: "
            f"x{args.compression_width_scale}), crop and flip"
        )
        k1, k3 = (dict(cifar_params(k, epochs, scale), n_threads=args.threads) for k in (1, 3))
        decoupled_vs_sequential(
            report, f"cifar k=1 J=5 M={k1['width']}", k1, cifar, args.cifar_seeds, delays
        )
        decoupled_vs_sequential(
            report, f"cifar k=3 J=4 M={k3['width']}", k3, cifar, args.cifar_seeds
        )
        width = max(2, round(128 * args.compression_width_scale))
        comp = dict(k3, n_layers=3, width=width, aux_width=width, final_aux_width=width // 2)
        comp["downsample_at"] = ()
        fine = max(1, round(20 * epochs / 50))
        name = f"cifar k=3 M={width}->{width // 2}"
        compression(report, name, comp, width // 2, fine, cifar, args.cifar_seeds)
    report.print()


if __name__ == "__main__":
    main()
