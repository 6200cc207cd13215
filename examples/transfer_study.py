"""Transfer of each layer to another image folder
==============================================

Transfer of each layer's features to another image folder (Belilovsky et al., App. C.3).

A greedy ``k = 1`` CNN is trained on the source image folder; then, for each layer, the
target folder's images go through the frozen network, are averaged to 2x2 per channel,
standardised, reduced by PCA (500 components in the paper, fewer when there are fewer samples or
features) and classified by a multinomial logistic regression with the SAGA solver.
The protocol of Zeiler and Fergus (2014) used for Caltech-101: ``--n-per-class`` (30)
training images per class, the rest for testing, ``--n-splits`` (10) random splits, mean
per-class accuracy (``balanced_accuracy_score``).

Both folders use the ``root/<class>/<image>`` layout (Caltech-101's; CIFAR-10 as JPEG
folders works as a source). ``--demo`` generates two tiny synthetic folders in a
temporary directory and runs end to end in a minute or two on a CPU.

The documentation's gallery runs it with ``--demo``: what it shows comes from the
generated folders, not from CIFAR-10 and Caltech-101.

Usage::

    python examples/transfer_study.py --source-dir cifar10/train --target-dir caltech101
    python examples/transfer_study.py --demo
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# numpy, scikit-learn and the package are imported where they are used, so that --help
# answers at once


def _pattern(kind: str, h: int, w: int, rng, noise: float = 0.15) -> np.ndarray:
    """A noisy grey pattern in [0, 1] that identifies a synthetic class."""
    import numpy as np

    r, c = np.mgrid[0:h, 0:w] / max(h, w)
    period = rng.uniform(0.15, 0.3)
    base = {
        "stripes": np.sin(2 * np.pi * r / period),
        "bars": np.sin(2 * np.pi * c / period),
        "checker": np.sin(2 * np.pi * r / period) * np.sin(2 * np.pi * c / period),
        "diagonal": np.sin(2 * np.pi * (r + c) / period),
        "disc": ((r - 0.5) ** 2 + (c - 0.5) ** 2 < rng.uniform(0.05, 0.15)) * 2.0 - 1,
        "cross": ((np.abs(r - 0.5) < 0.1) | (np.abs(c - 0.5) < 0.1)) * 2.0 - 1,
        "ramp": 2 * c - 1,
    }[kind]
    return np.clip(0.5 + 0.4 * base + noise * rng.randn(h, w), 0, 1)


def make_demo_folders(root: str, n_per_class: int = 40, seed: int = 0) -> tuple[str, str]:
    """Two small folders with Caltech-101's quirks: odd sizes, grey and colour mixed."""
    import numpy as np
    from PIL import Image

    rng = np.random.RandomState(seed)
    # the target's patterns are new to the network and drowned in noise, with few
    # training images per class: features that transfer show it, raw ones do not
    layout = {
        "source": (("stripes", "bars", "checker", "diagonal"), 0.15),
        "target": (("disc", "cross", "ramp", "checker", "diagonal"), 0.6),
    }
    for split, (classes, noise) in layout.items():
        for name in classes:
            folder = os.path.join(root, split, name)
            os.makedirs(folder)
            for i in range(n_per_class):
                h, w = rng.randint(20, 48, size=2)
                grey = _pattern(name, h, w, rng, noise)
                if i % 3 == 0:
                    image = Image.fromarray((255 * grey).astype(np.uint8), mode="L")
                else:
                    tint = rng.uniform(0.5, 1.0, size=3)
                    rgb = (255 * grey[..., None] * tint).astype(np.uint8)
                    image = Image.fromarray(rgb, mode="RGB")
                image.save(os.path.join(folder, f"{i:03d}.{'jpg' if i % 2 else 'png'}"))
    return os.path.join(root, "source"), os.path.join(root, "target")


def transfer_scores(
    cnn, X, y, *, n_per_class=30, n_splits=10, n_components=500, random_state=0
) -> dict[int, np.ndarray]:
    """Mean per-class accuracy of each layer over the splits: ``{layer: scores}``."""
    import numpy as np
    from sklearn.decomposition import PCA
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sklearn_greedy import layer_features
    from sklearn_greedy.datasets import per_class_split

    splits = list(per_class_split(y, n_per_class, n_splits=n_splits, random_state=random_state))
    results = {}
    for layer in range(1, cnn.n_layers_fitted_ + 1):
        # the frozen network's features are computed once per layer, not per split
        features = layer_features(cnn, X, layer, pool=2)
        scores = []
        for train, test in splits:
            n = min(n_components, len(train), features.shape[1])
            model = make_pipeline(
                # standardised inputs let SAGA converge in a few hundred epochs; scaling
                # after the PCA instead would blow its near-null components up to noise
                StandardScaler(),
                PCA(n, random_state=random_state),
                LogisticRegression(solver="saga", max_iter=300),
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(features[train], y[train])
            scores.append(balanced_accuracy_score(y[test], model.predict(features[test])))
        results[layer] = np.asarray(scores)
    return results


def main(argv=None):
    # the paragraph under the title (sphinx-gallery runs the script with an empty __doc__)
    parser = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    parser.add_argument(
        "--source-dir", help="image folder (root/<class>/<image>) the network is trained on"
    )
    parser.add_argument(
        "--target-dir", help="image folder (root/<class>/<image>) the features are scored on"
    )
    parser.add_argument("--demo", action="store_true", help="generate tiny folders and run")
    parser.add_argument("--size", type=int, default=32, help="images are resized to size x size")
    parser.add_argument(
        "--n-per-class", type=int, default=30,
        help="target training images per class; the rest test (default 30)",
    )  # fmt: skip
    parser.add_argument(
        "--n-splits", type=int, default=10, help="random splits of the target (default 10)"
    )
    parser.add_argument(
        "--n-components", type=int, default=500,
        help="PCA components at most, before the logistic regression (default 500)",
    )  # fmt: skip
    parser.add_argument("--n-layers", type=int, default=4, help="layers of the network (default 4)")
    parser.add_argument("--width", type=int, default=64, help="width of every layer (default 64)")
    parser.add_argument(
        "--max-epochs", type=int, default=12, help="training epochs per layer (default 12)"
    )
    parser.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")
    args = parser.parse_args(argv)
    if not args.demo and not (args.source_dir and args.target_dir):
        parser.error("give --source-dir and --target-dir, or --demo")
    import numpy as np

    from sklearn_greedy import GreedyLayerwiseCNNClassifier
    from sklearn_greedy.datasets import load_image_folder

    with tempfile.TemporaryDirectory() as tmp:
        if args.demo:
            args.source_dir, args.target_dir = make_demo_folders(tmp)
            args.size, args.width, args.n_layers, args.max_epochs = 16, 16, 3, 10
            args.n_per_class, args.n_splits = 4, 5
        X_source, y_source = load_image_folder(args.source_dir, size=args.size)
        X_target, y_target = load_image_folder(args.target_dir, size=args.size)
    print(
        f"source: {X_source.shape[0]} images of {len(np.unique(y_source))} classes; "
        f"target: {X_target.shape[0]} images of {len(np.unique(y_target))} classes"
    )
    cnn = GreedyLayerwiseCNNClassifier(
        n_layers=args.n_layers,
        k=1,
        width=args.width,
        max_epochs=args.max_epochs,
        lr=args.lr,
        random_state=0,
    ).fit(X_source, y_source)
    print(f"source training accuracy per layer: {np.round(cnn.layer_scores_, 4).tolist()}")
    results = transfer_scores(
        cnn,
        X_target,
        y_target,
        n_per_class=args.n_per_class,
        n_splits=args.n_splits,
        n_components=args.n_components,
    )
    print(f"\n{args.n_per_class} per class, {args.n_splits} splits, mean per-class accuracy")
    print("| layer | accuracy |\n|---|---|")
    for layer, scores in results.items():
        print(f"| {layer} | {scores.mean():.4f} ± {scores.std():.4f} |")
    return results


if __name__ == "__main__":
    main()
