"""CIFAR-10: the paper's greedy models (k = 1, 2, 3) beside end-to-end training.

The paper's protocol by default (Sec. 4, 4.3; reference code): SGD momentum 0.9, weight
decay 5e-4, batch 128, lr 0.1 decayed x0.2 every 15 of 50 epochs per layer, random crop
and flip; k=1: J=5, M=256, downsampling at j=2,3, no BN; k=2, 3: J=4, M=128, auxiliary
width M~=256 as the paper's text says (``--aux-width 128``: the authors' script), both
doubling at the downsampling, BN. For each configuration it prints per-layer test accuracy,
final and ensemble accuracy, whole-fit seconds and peak GPU memory, then the end-to-end
baselines: the same final network, freshly initialised, trained jointly through skorch
(as users would) and by a plain PyTorch loop. ``--table6`` adds the four downsampling
operators for k=1 (App. C.1, Table 6).

The rest of Sec. 4.3 and its follow-up, each behind a flag (``--configs ""`` runs them
alone): ``--table1`` refits the last step of k=3 with a final auxiliary of another width
(Table 1); ``--compression`` trains k=3, J=3, M=128 pruned to 64 after each layer, M~=128,
20 fine-tuning epochs, M~_f=64, beside the paper's end-to-end baseline of the same network
(5 convolutions of width 64, 120 epochs, lr decayed every 25); ``--vgg`` trains VGG-11
greedily beside VGG-11 end to end with the same per-layer schedule (45 epochs at full
scale); ``--decoupled`` trains k=3 sequentially and decoupled (all layers at once, and
with ``--decoupled-delays`` staggered starts).
Epoch counts scale with ``--epochs`` / 50 (VGG: / 45) and widths with ``--width-scale``;
every row names the numbers it ran with.

``--cpu-scale`` runs the whole data set at CPU scale instead, resumable per layer: see
``benchmarks/cifar10_cpu.py``, whose options it takes.

Usage::

    python benchmarks/cifar10.py --data-dir DIR                 # the paper's setting, GPU
    python benchmarks/cifar10.py --data-dir DIR --epochs 1 --max-per-class 100 \\
        --width-scale 0.0625 --configs 1,3                       # minutes on a CPU

DIR holds CIFAR-10 as python batches, an image folder, or the JPEG .tar.gz
(``sklearn_greedy.datasets.load_cifar10``).
"""

from __future__ import annotations

import argparse
import copy
import sys
from typing import TYPE_CHECKING

from _common import accuracy, describe, peak_memory, pick_device, train_plain_loop

if TYPE_CHECKING:
    from sklearn_greedy import GreedyLayerwiseCNNClassifier

# torch, scikit-learn and the package are imported where they are used, so that --help
# answers at once


def scaled_params(k: int, args) -> dict:
    from sklearn_greedy import cifar10_params

    params = cifar10_params(k, aux_width=args.aux_width)
    params["max_epochs"] = args.epochs
    params["lr_step"] = max(1, round(15 * args.epochs / 50))
    params["width"] = max(1, round(params["width"] * args.width_scale))
    if params.get("aux_width"):
        params["aux_width"] = max(1, round(params["aux_width"] * args.width_scale))
    params["device"] = args.device
    params["random_state"] = args.seed
    return params


def fit_greedy(params: dict, data, device) -> tuple[dict, GreedyLayerwiseCNNClassifier]:
    import numpy as np

    from sklearn_greedy import GreedyLayerwiseCNNClassifier

    X_train, y_train, X_test, y_test = data
    row: dict = {}
    clf = GreedyLayerwiseCNNClassifier(**params)
    with peak_memory(device, row):
        clf.fit(X_train, y_train)
    row["per_layer"] = [float(np.mean(p == y_test)) for p in clf.staged_predict(X_test)]
    row["final"] = clf.score(X_test, y_test)
    row["ensemble"] = clf.set_params(ensemble=True).score(X_test, y_test)
    clf.set_params(ensemble=False)
    return row, clf


def end_to_end(clf, params: dict, data, device, epochs: int, seed: int) -> dict:
    """The greedy model's final network, re-initialised, trained jointly two ways."""
    import numpy as np
    import torch
    from skorch import NeuralNetClassifier
    from skorch.callbacks import LRScheduler

    from sklearn_greedy.nn import TrainTimeAugment, augment_crop_flip

    X_train, y_train, X_test, y_test = data
    lr_step = max(1, round(15 * epochs / 50))
    rows = {}

    network = clf.to_torch(pretrained=False, random_state=seed).to(device)
    X_dev = torch.from_numpy(X_train).to(device)
    y_dev = torch.from_numpy(y_train.astype(np.int64)).to(device)
    X_test_dev = torch.from_numpy(X_test).to(device)
    row: dict = {}
    with peak_memory(device, row):
        train_plain_loop(
            network,
            X_dev,
            y_dev,
            epochs=epochs,
            batch_size=params["batch_size"],
            lr=params["lr"],
            momentum=params["momentum"],
            weight_decay=params["weight_decay"],
            lr_step=lr_step,
            lr_decay=params["lr_decay"],
            augment=lambda b, g: augment_crop_flip(b, g, padding=4, flip=True),
            seed=seed,
        )
    row["final"] = accuracy(network, X_test_dev, y_test)
    rows["end-to-end, plain PyTorch loop"] = row

    torch.manual_seed(seed)
    net = NeuralNetClassifier(
        torch.nn.Sequential(
            TrainTimeAugment(padding=4, flip=True),
            clf.to_torch(pretrained=False, random_state=seed),
        ),
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD,
        optimizer__momentum=params["momentum"],
        optimizer__weight_decay=params["weight_decay"],
        lr=params["lr"],
        batch_size=params["batch_size"],
        max_epochs=epochs,
        train_split=None,
        iterator_train__shuffle=True,
        callbacks=[
            LRScheduler(
                policy=torch.optim.lr_scheduler.StepLR, step_size=lr_step, gamma=params["lr_decay"]
            )
        ],
        device=str(device),
        verbose=0,
    )
    row = {}
    with peak_memory(device, row):
        net.fit(X_train, y_train.astype(np.int64))
    row["final"] = float(np.mean(net.predict(X_test) == y_test))
    rows["end-to-end, skorch"] = row
    return rows


def _scaled_width(value: int, args) -> int:
    return max(1, round(value * args.width_scale))


def _epochs(full: int, args, per: int = 50) -> int:
    """``full`` epochs of the paper's schedule, scaled like --epochs against ``per``."""
    return max(1, round(full * args.epochs / per))


def _plain_end_to_end(clf, params: dict, data, device, epochs: int, lr_step: int, seed: int):
    """The greedy model's final network, re-initialised, trained by a plain loop."""
    import numpy as np
    import torch

    from sklearn_greedy.nn import augment_crop_flip

    X_train, y_train, X_test, y_test = data
    network = clf.to_torch(pretrained=False, random_state=seed).to(device)
    row: dict = {"params": sum(p.numel() for p in network.parameters())}
    with peak_memory(device, row):
        train_plain_loop(
            network, torch.from_numpy(X_train).to(device),
            torch.from_numpy(y_train.astype(np.int64)).to(device), epochs=epochs,
            batch_size=params["batch_size"], lr=params["lr"], momentum=params["momentum"],
            weight_decay=params["weight_decay"], lr_step=lr_step, lr_decay=params["lr_decay"],
            augment=lambda b, g: augment_crop_flip(b, g, padding=4, flip=True), seed=seed,
        )  # fmt: skip
    row["final"] = accuracy(network, torch.from_numpy(X_test).to(device), y_test)
    return row


def table1_rows(args, data, device) -> dict:
    """Table 1: k=3, then the last step refitted with final auxiliaries of other widths."""
    import numpy as np

    from sklearn_greedy import parameter_count

    X_train, y_train, X_test, y_test = data
    params = scaled_params(3, args)
    row, clf = fit_greedy(params, data, device)
    row["params"] = parameter_count(clf)
    fitted = clf.layer_specs_[-1].aux_width
    rows = {f"Table 1: greedy k=3, M~_f={fitted} (fit)": row}
    for width in args.final_aux_widths or [max(1, fitted // 4)]:
        refit = copy.deepcopy(clf)
        r: dict = {}
        with peak_memory(device, r):
            refit.refit_final_head(X_train, y_train, final_aux_width=width)
        r["per_layer"] = [float(np.mean(p == y_test)) for p in refit.staged_predict(X_test)]
        r["final"] = refit.score(X_test, y_test)
        r["ensemble"] = refit.set_params(ensemble=True).score(X_test, y_test)
        r["params"] = parameter_count(refit)
        rows[f"Table 1: k=3, last step refitted, M~_f={width}"] = r
    return rows


def compression_rows(args, data, device) -> dict:
    """Sec. 4.3 compression beside the paper's end-to-end baseline of the same network."""
    from sklearn_greedy import parameter_count

    M, kept = _scaled_width(128, args), _scaled_width(64, args)
    fine = _epochs(20, args)
    params = dict(
        scaled_params(3, args), n_layers=3, width=M, aux_width=M, final_aux_width=kept,
        downsample_at=(), prune_to=kept, prune_epochs=fine,
    )  # fmt: skip
    row, clf = fit_greedy(params, data, device)
    row["params"] = parameter_count(clf)
    name = f"compression: k=3 J=3 M={M}->{kept}, M~={M}, M~_f={kept}, {fine} fine-tune ep."
    rows = {name: row}
    epochs, lr_step = _epochs(120, args), _epochs(25, args)
    e2e = _plain_end_to_end(clf, params, data, device, epochs, lr_step, args.seed)
    rows[f"  end-to-end 5 conv x {kept}, {epochs} ep., lr step {lr_step}"] = e2e
    return rows


def vgg_rows(args, data, device) -> dict:
    """VGG-11 (vgg11_bn, as the reference code) greedy, and end to end, same schedule."""
    from sklearn_greedy import cifar10_params, parameter_count, vgg11_params

    params = vgg11_params(batch_norm=True)
    params.update(
        width=_scaled_width(64, args), max_width=_scaled_width(512, args),
        aux_width=_scaled_width(128, args), final_aux_width=_scaled_width(4096, args),
        max_epochs=args.epochs, lr_step=_epochs(20, args, per=45), batch_size=128,
        normalize=cifar10_params()["normalize"], image_shape=(3, 32, 32), device=args.device,
        random_state=args.seed,
    )  # fmt: skip
    row, clf = fit_greedy(params, data, device)
    row["params"] = parameter_count(clf)
    widths = f"{params['width']}..{params['max_width']}, FC {params['final_aux_width']}"
    rows = {f"VGG-11 greedy k=3 ({widths})": row}
    e2e = _plain_end_to_end(clf, params, data, device, args.epochs, params["lr_step"], args.seed)
    rows[f"  VGG-11 end to end, {args.epochs} epochs (the same schedule)"] = e2e
    return rows


def decoupled_rows(args, data, device) -> dict:
    """k=3 trained sequentially (the paper), decoupled (all layers at once), and decoupled
    with each of ``--decoupled-delays`` epochs between the layers' starts."""
    from sklearn_greedy import parameter_count

    rows = {}
    variants = [("sequential", 0)] + [("decoupled", d) for d in [0, *args.decoupled_delays]]
    for mode, delay in variants:
        params = dict(scaled_params(3, args), training=mode, decoupled_delay=delay)
        row, clf = fit_greedy(params, data, device)
        row["params"] = parameter_count(clf)
        label = f"{mode}, delay {delay}" if delay else mode
        rows[f"k=3 {label} (J={params['n_layers']}, M={params['width']})"] = row
    return rows


def print_table(rows: dict) -> None:
    print(
        f"\n{'model':<64} {'per-layer test accuracy':<36} {'final':>7} {'ens.':>7} "
        f"{'seconds':>8} {'peak MiB':>9} {'params':>10}"
    )
    for name, r in rows.items():
        per_layer = " ".join(f"{a:.3f}" for a in r.get("per_layer", []))
        ens = f"{r['ensemble']:.4f}" if "ensemble" in r else "-"
        params = r.get("params", "-")
        print(
            f"{name:<64} {per_layer:<36} {r['final']:>7.4f} {ens:>7} "
            f"{r['seconds']:>8.1f} {r['peak_mib']:>9.0f} {params:>10}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", required=True,
        help="CIFAR-10 as python batches, an image folder or the JPEG .tar.gz",
    )  # fmt: skip
    parser.add_argument("--configs", default="1,2,3", help="comma-separated k values")
    parser.add_argument("--epochs", type=int, default=50, help="epochs per layer (default 50)")
    parser.add_argument(
        "--e2e-epochs",
        type=int,
        default=None,
        help="epochs of the end-to-end baselines (default: J x --epochs, the budget of "
        "all greedy stages together, with the same schedule over it)",
    )
    parser.add_argument(
        "--max-per-class", type=int, default=None,
        help="training images per class (default: all 5,000)",
    )  # fmt: skip
    parser.add_argument(
        "--test-max-per-class", type=int, default=None,
        help="test images per class (default: all 1,000)",
    )  # fmt: skip
    parser.add_argument(
        "--width-scale", type=float, default=1.0,
        help="multiply every width by this (default 1: the paper's widths)",
    )  # fmt: skip
    parser.add_argument("--no-baselines", action="store_true", help="skip the end-to-end baselines")
    parser.add_argument("--table6", action="store_true", help="downsampling operators, k=1")
    parser.add_argument("--table1", action="store_true", help="k=3, final auxiliary refit")
    parser.add_argument(
        "--final-aux-widths", type=int, nargs="*", default=None,
        help="M~_f of the --table1 refits (default: a quarter of the fitted one)",
    )  # fmt: skip
    parser.add_argument("--compression", action="store_true", help="Sec. 4.3 compression")
    parser.add_argument("--vgg", action="store_true", help="VGG-11 greedy vs end to end")
    parser.add_argument("--decoupled", action="store_true", help="k=3 decoupled vs sequential")
    parser.add_argument(
        "--decoupled-delays", type=int, nargs="*", default=[],
        help="with --decoupled, also decoupled with these decoupled_delay values (epochs)",
    )  # fmt: skip
    parser.add_argument(
        "--aux-width", type=int, default=256,
        help="M~ of k=2, 3 (default 256, the paper's text; 128 is the authors' script).",
    )  # fmt: skip
    parser.add_argument(
        "--device", default="auto", help="torch device; auto: CUDA when present (default)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random_state of every fit (default 0)")
    parser.add_argument(
        "--cpu-scale", action="store_true",
        help="all 60,000 images at CPU scale, resumable (options of benchmarks/cifar10_cpu.py).",
    )  # fmt: skip
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--cpu-scale" in argv:
        import cifar10_cpu

        return cifar10_cpu.main([a for a in argv if a != "--cpu-scale"])
    args = parser.parse_args(argv)
    from sklearn_greedy.datasets import load_cifar10

    device = pick_device(args.device)

    X_train, y_train = load_cifar10(args.data_dir, "train", max_per_class=args.max_per_class)
    X_test, y_test = load_cifar10(args.data_dir, "test", max_per_class=args.test_max_per_class)
    data = (X_train, y_train, X_test, y_test)
    print(
        f"CIFAR-10 from {args.data_dir}: {len(X_train)} train / {len(X_test)} test; "
        f"{args.epochs} epochs per layer, width x{args.width_scale}"
    )
    print(describe(device))

    rows = {}
    for k in (int(v) for v in args.configs.split(",") if v.strip()):
        params = scaled_params(k, args)
        row, clf = fit_greedy(params, data, device)
        rows[f"greedy k={k} (J={params['n_layers']}, M={params['width']})"] = row
        if not args.no_baselines:
            # a fair budget: as many epochs as all the greedy stages together, the
            # learning rate decayed at the same fractions of it
            e2e_epochs = args.e2e_epochs or args.epochs * params["n_layers"]
            for name, r in end_to_end(clf, params, data, device, e2e_epochs, args.seed).items():
                rows[f"  {name}, {e2e_epochs} epochs (k={k} final network)"] = r
        print_table(rows)
    if args.table6:
        for kind in ("strided", "invertible", "avg", "max"):
            params = dict(scaled_params(1, args), downsample=kind)
            rows[f"Table 6: k=1, downsample={kind}"] = fit_greedy(params, data, device)[0]
        print_table(rows)
    sections = (
        (args.table1, table1_rows), (args.compression, compression_rows),
        (args.vgg, vgg_rows), (args.decoupled, decoupled_rows),
    )  # fmt: skip
    for wanted, make_rows in sections:
        if wanted:
            rows.update(make_rows(args, data, device))
            print_table(rows)


if __name__ == "__main__":
    main()
