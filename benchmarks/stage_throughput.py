"""Throughput of one greedy stage: our engine, a plain PyTorch loop, and skorch.

One stage of the paper's k=3 CIFAR-10 configuration by default (50k synthetic 3x32x32
images, a layer of width 128 and its k=3 auxiliary head of width 128 with BatchNorm,
batch 128, SGD with momentum, no augmentation), through three paths in one run; the
figure behind the design decision of docs/design.md (stage training runs through a lean engine,
not ``skorch.NeuralNet``):

- engine: ``GreedyLayerwiseCNNClassifier`` fitting that one layer (its per-epoch
  ``history_`` seconds: the engine's epoch, data on the device, index slices);
- plain loop: a hand-written loop over index slices of device tensors;
- skorch: ``skorch.NeuralNet`` with its default data path (Dataset + DataLoader that
  collates sample by sample).

Usage::

    python benchmarks/stage_throughput.py [--n 50000] [--side 32] [--width 128] [--k 3]
        [--batch-size 128] [--epochs 2] [--repeats 3] [--device auto]
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from _common import describe, pick_device, sync, train_plain_loop

if TYPE_CHECKING:
    import torch

# torch and the package are imported where they are used, so that --help answers at once


def make_stage(width: int, k: int, n_classes: int, device) -> torch.nn.Module:
    import torch

    from sklearn_greedy.nn import AuxiliaryClassifier, GreedyLayer

    torch.manual_seed(0)
    stage = torch.nn.Sequential(
        GreedyLayer(3, width, None, batch_norm=True),
        AuxiliaryClassifier(width, n_classes, k=k, width=width, batch_norm=True),
    )
    return stage.to(device)


def per_epoch(fns: dict, device, epochs: int, repeats: int) -> dict:
    """Best-of-``repeats`` seconds per epoch of each path, measured in turns."""
    for fn in fns.values():
        fn(1)  # warm-up epoch: allocator, kernels, thread pools
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            seconds = fn(epochs)  # a path may time its own epochs
            sync(device)
            seconds = time.perf_counter() - start if seconds is None else seconds
            best[name] = min(best[name], seconds / epochs)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--n", type=int, default=50000, help="synthetic images of the stage (default 50000)"
    )
    parser.add_argument("--side", type=int, default=32, help="image height and width (default 32)")
    parser.add_argument("--width", type=int, default=128, help="width of the layer (default 128)")
    parser.add_argument("--k", type=int, default=3, help="depth of the auxiliary head (default 3)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (default 128)")
    parser.add_argument(
        "--epochs", type=int, default=2, help="timed epochs of each path per turn (default 2)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="turns; the best one counts (default 3)"
    )
    parser.add_argument(
        "--device", default="auto", help="torch device; auto: CUDA when present (default)"
    )
    args = parser.parse_args(argv)
    import torch

    from sklearn_greedy import GreedyLayerwiseCNNClassifier

    device = pick_device(args.device)
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(args.n, 3, args.side, args.side, generator=gen).to(device)
    y = torch.randint(0, 10, (args.n,), generator=gen).to(device)
    estimator = GreedyLayerwiseCNNClassifier(
        n_layers=1, k=args.k, width=args.width, aux_width=args.width, batch_norm=True,
        batch_size=args.batch_size, lr=0.01, lr_step=None, weight_decay=0.0, augment=False,
        keep_best=False, n_iter_no_change=10**6, device=str(device), random_state=0,
        n_threads=torch.get_num_threads(),
    )  # fmt: skip

    def engine(epochs):
        # the engine's own epochs, without the fit's validation and set-up around them
        estimator.set_params(max_epochs=epochs).fit(X, y)
        return sum(record["seconds"] for record in estimator.history_[0])

    def plain(epochs):
        train_plain_loop(
            stage_plain, X, y, epochs=epochs, batch_size=args.batch_size, lr=0.01,
            momentum=0.9, weight_decay=0.0, lr_step=10**9, lr_decay=1.0,
        )  # fmt: skip

    from skorch import NeuralNet

    X_cpu, y_cpu = X.cpu(), y.cpu()

    def skorch_fit(epochs):
        net = NeuralNet(
            stage_skorch,
            criterion=torch.nn.CrossEntropyLoss,
            optimizer=torch.optim.SGD,
            optimizer__momentum=0.9,
            lr=0.01,
            batch_size=args.batch_size,
            max_epochs=epochs,
            train_split=None,
            iterator_train__shuffle=True,
            device=str(device),
            verbose=0,
            warm_start=True,
        )
        net.fit(X_cpu, y_cpu)

    stage_plain = make_stage(args.width, args.k, 10, device)
    stage_skorch = make_stage(args.width, args.k, 10, device)
    results = per_epoch(
        {
            "engine (estimator, one layer)": engine,
            "plain PyTorch loop": plain,
            "skorch NeuralNet (default data path)": skorch_fit,
        },
        device,
        args.epochs,
        args.repeats,
    )
    base = results["plain PyTorch loop"]
    print(describe(device))
    print(
        f"{args.n} images 3x{args.side}x{args.side}, width {args.width}, k={args.k}, "
        f"batch {args.batch_size}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'path':<40} {'s/epoch':>9} {'images/s':>10} {'vs plain':>9}")
    for name, seconds in results.items():
        print(f"{name:<40} {seconds:>9.3f} {args.n / seconds:>10.0f} {base / seconds:>8.2f}x")


if __name__ == "__main__":
    main()
