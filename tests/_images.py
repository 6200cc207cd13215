"""Small synthetic image data shared by the CNN tests."""

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
