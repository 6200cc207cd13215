"""Small synthetic image data shared by the CNN tests."""

import pickle

import numpy as np


def quadrant_images(n=120, shape=(1, 8, 8), n_classes=3, seed=0):
    """Images whose class is a bright quadrant, plus noise: ``(X float32, y int)``."""
    rng = np.random.RandomState(seed)
    y = rng.randint(n_classes, size=n)
    X = rng.normal(scale=0.3, size=(n, *shape)).astype(np.float32)
    h, w = shape[1] // 2, shape[2] // 2
    for c in range(n_classes):
        r, q = divmod(c, 2)
        X[y == c, :, r * h : (r + 1) * h, q * w : (q + 1) * w] += 1.0
    return X, y


def tiny_cifar_batches(directory, n_per_batch=20):
    """CIFAR-10 python batches of random images (``data_batch_1..5``, ``test_batch``) in
    ``directory``, the labels cycling through the 10 classes."""
    rng = np.random.RandomState(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.randint(0, 256, size=(n_per_batch, 3072)).astype(np.uint8),
            b"labels": (np.arange(n_per_batch) % 10).tolist(),
        }
        with open(directory / name, "wb") as f:
            pickle.dump(batch, f)
