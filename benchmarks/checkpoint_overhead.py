"""Cost of ``checkpoint_dir``: the README's main job (digits) with and without per-layer
checkpoints, in one run.

Two figures, since a 2-core machine is noisy: the ratio of the best fit times with and
without checkpoints (interleaved runs), and the time spent inside the checkpoint code
itself (the data fingerprint, the directory check, and every layer's atomic write with its
fsyncs), timed around those calls, as a share of the fit without checkpoints. Then a kill
and resume: a fit stopped after layer 2 and rerun gives the uninterrupted model.

Usage::

    python benchmarks/checkpoint_overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description="Time the README's digits fit with and without per-layer checkpoints."
    )
    parser.add_argument("--repeats", type=int, default=5, help="fits of each kind (default 5).")
    args = parser.parse_args(argv)

    import shutil
    import tempfile
    import time

    import numpy as np
    import torch
    from _common import describe
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import sklearn_greedy.training._checkpoint as checkpoint
    from sklearn_greedy import GreedyLayerwiseCNNClassifier

    X, y = load_digits(return_X_y=True)
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    spent = [0.0]

    def timed(fn):
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[0] += time.perf_counter() - start

        return wrapper

    # every call the checkpointed fit makes into the checkpoint code
    checkpoint.CheckpointStore.save = timed(checkpoint.CheckpointStore.save)
    checkpoint.CheckpointStore.load = timed(checkpoint.CheckpointStore.load)
    checkpoint.CheckpointStore.check_writable = timed(checkpoint.CheckpointStore.check_writable)
    import sklearn_greedy.cnn._classifier as cnn

    cnn.data_digest = timed(cnn.data_digest)

    def fit(directory):
        clf = GreedyLayerwiseCNNClassifier(
            image_shape=(1, 8, 8), random_state=0, checkpoint_dir=directory
        )
        start = time.perf_counter()
        clf.fit(X_train, y_train)
        return time.perf_counter() - start, clf

    fit(None)  # warm-up
    plain, with_ckpt, inside = [], [], []
    for _ in range(args.repeats):
        plain.append(fit(None)[0])
        directory = tempfile.mkdtemp()
        spent[0] = 0.0
        seconds, clf = fit(directory)
        with_ckpt.append(seconds)
        inside.append(spent[0])
        shutil.rmtree(directory)
    reference = clf

    print(describe(torch.device("cpu")))
    print(f"fit without checkpoints: best {min(plain):.3f} s, median {np.median(plain):.3f} s")
    print(
        f"fit with checkpoints:    best {min(with_ckpt):.3f} s, median {np.median(with_ckpt):.3f} s"
    )
    print(f"ratio of best times: {min(with_ckpt) / min(plain):.4f}")
    print(
        f"time inside the checkpoint code: median {1000 * np.median(inside):.1f} ms = "
        f"{100 * np.median(inside) / np.median(plain):.2f} % of the fit"
    )

    # kill after layer 2 (simulated: the last layer's file removed), rerun, compare
    directory = tempfile.mkdtemp()
    fit(directory)
    import os

    os.remove(os.path.join(directory, checkpoint.piece_name(2)))
    seconds, resumed = fit(directory)
    shutil.rmtree(directory)
    same = np.abs(resumed.decision_function(X) - reference.decision_function(X)).max()
    print(f"resumed after layer 2 in {seconds:.2f} s; max |decision difference| {same:.2e}")


if __name__ == "__main__":
    main()
