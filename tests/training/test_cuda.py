"""The estimators on a CUDA device (``pytest -m cuda``; every test skips without one).

The first part of ``benchmarks/gpu_suite.py``, the command a session lent a GPU runs.
Parameters that an estimator may not have yet (``precision``, ``deterministic``) skip
their tests where absent.
"""

import copy
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.datasets import load_digits

from sklearn_greedy import (
    EndToEndImplicitClassifier,
    EndToEndImplicitRegressor,
    GreedyLayerwiseCNNClassifier,
    SequentialImplicitClassifier,
    SequentialImplicitRegressor,
)
from sklearn_greedy.nn import augment_crop_flip
from sklearn_greedy.training._engine import StageData, TrainingConfig, train_stage

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

REPO = Path(__file__).resolve().parents[2]


def _images(n=96, shape=(3, 16, 16), seed=0):
    """Colour images whose class sets their brightness: a short fit learns them."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 3
    X = rng.rand(n, *shape).astype(np.float32) + y[:, None, None, None]
    return X, y


def _digits():
    X, y = load_digits(return_X_y=True)
    return X[:600].astype(np.float32), y[:600]


def _cnn(**params):
    defaults = dict(n_layers=2, width=8, max_epochs=3, batch_size=32, device="cuda", random_state=0)
    return GreedyLayerwiseCNNClassifier(**{**defaults, **params})


def _tabular(n=200, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-2, 2, (n, 3))
    return X, np.sin(X[:, 0]) + X[:, 1] ** 2, (X[:, 0] + X[:, 2] > 0).astype(int)


IMPLICIT = {
    "sequential regressor": lambda: SequentialImplicitRegressor(
        n_states=8, n_blocks=4, max_epochs=10, device="cuda", random_state=0
    ),
    "sequential classifier": lambda: SequentialImplicitClassifier(
        n_states=8, n_blocks=4, max_epochs=10, device="cuda", random_state=0
    ),
    "end-to-end regressor": lambda: EndToEndImplicitRegressor(
        n_states=8, max_epochs=10, device="cuda", random_state=0
    ),
    "end-to-end classifier": lambda: EndToEndImplicitClassifier(
        n_states=8, max_epochs=10, device="cuda", random_state=0
    ),
}


def _implicit_data(estimator):
    X, y_reg, y_clf = _tabular()
    return X, (y_clf if hasattr(estimator, "predict_proba") else y_reg)


def _first_device(clf) -> torch.device:
    return next(clf.model_.parameters()).device


# ---------------------------------------------------------------------------- fit/predict
def test_cnn_fits_and_predicts_on_cuda():
    X, y = _images()
    clf = _cnn().fit(X, y)
    assert clf.device_.type == "cuda" and _first_device(clf).type == "cuda"
    pred = clf.predict(X)
    assert pred.shape == (96,) and set(pred) <= {0, 1, 2}
    assert clf.score(X, y) > 0.6
    proba = clf.predict_proba(X)
    assert proba.shape == (96, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    features = clf.transform(X)
    assert features.shape == (96, 4 * 16) and features.dtype == np.float32
    assert np.isfinite(features).all()
    # images already on the GPU are accepted like any array
    np.testing.assert_array_equal(clf.predict(torch.from_numpy(X).cuda()), pred)


def test_cnn_warm_start_on_cuda_adds_a_layer_and_keeps_the_others():
    X, y = _images()
    clf = _cnn().fit(X, y)
    before = copy.deepcopy(clf.model_.layers[0].state_dict())
    clf.set_params(n_layers=3, warm_start=True).fit(X, y)
    assert clf.n_layers_fitted_ == 3 and _first_device(clf).type == "cuda"
    for name, tensor in clf.model_.layers[0].state_dict().items():
        assert torch.equal(tensor, before[name])


@pytest.mark.parametrize("make", IMPLICIT.values(), ids=IMPLICIT.keys())
def test_implicit_estimators_fit_and_predict_on_cuda(make):
    estimator = make()
    X, y = _implicit_data(estimator)
    estimator.fit(X, y)
    assert str(estimator.device_).startswith("cuda")
    pred = estimator.predict(X)
    assert pred.shape == (200,) and np.isfinite(pred.astype(float)).all()
    if hasattr(estimator, "predict_proba"):
        proba = estimator.predict_proba(X)
        assert proba.shape == (200, 2)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-8)
    states = estimator.transform(X)
    assert states.shape == (200, 8) and np.isfinite(states).all()


# ---------------------------------------------------------------------------- pickling
_PREDICT_WITHOUT_CUDA = """
import pickle, sys
import numpy as np, torch
assert not torch.cuda.is_available()
with open(sys.argv[1], "rb") as f:
    estimator = pickle.load(f)
X = np.load(sys.argv[2])
np.save(sys.argv[3], estimator.predict(X))
if hasattr(estimator, "predict_proba"):
    np.save(sys.argv[4], estimator.predict_proba(X))
"""


def _predict_with_cuda_hidden(estimator, X, tmp_path):
    """Pickle ``estimator``, load it in a process that sees no GPU, predict there."""
    paths = [tmp_path / name for name in ("model.pkl", "X.npy", "pred.npy", "proba.npy")]
    paths[0].write_bytes(pickle.dumps(estimator))
    np.save(paths[1], X)
    python_path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=python_path)
    subprocess.run(
        [sys.executable, "-c", _PREDICT_WITHOUT_CUDA, *map(str, paths)],
        env=env,
        check=True,
        timeout=90,
    )
    proba = np.load(paths[3]) if paths[3].exists() else None
    return np.load(paths[2]), proba


def test_cuda_fitted_cnn_predicts_the_same_where_cuda_is_hidden(tmp_path):
    X, y = _digits()
    clf = _cnn(image_shape=(1, 8, 8), max_epochs=6).fit(X, y)
    pred, proba = _predict_with_cuda_hidden(clf, X, tmp_path)
    # the GPU may compute in TF32 or bf16, the CPU in float32: the same probabilities up
    # to that, the same labels wherever the two likeliest classes are not closer than it
    np.testing.assert_allclose(proba, clf.predict_proba(X), atol=2e-2)
    top2 = np.sort(proba, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 4e-2
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(pred[clear], clf.predict(X)[clear])


def test_cuda_fitted_implicit_model_predicts_the_same_where_cuda_is_hidden(tmp_path):
    X, y, _ = _tabular()
    reg = IMPLICIT["sequential regressor"]().fit(X, y)
    pred, _ = _predict_with_cuda_hidden(reg, X, tmp_path)
    np.testing.assert_array_equal(pred, reg.predict(X))


# ---------------------------------------------------------------------------- augmentation
def _crop_offsets(x: torch.Tensor, out: torch.Tensor, padding: int) -> list[tuple]:
    """For each output image, the (row, column, flipped) of the crop of the zero-padded
    input it equals; fails when one is no such crop."""
    padded = F.pad(x, (padding,) * 4)
    h, w = x.shape[2:]
    found = []
    for i in range(x.shape[0]):
        matches = [
            (dy, dx, flipped)
            for dy in range(2 * padding + 1)
            for dx in range(2 * padding + 1)
            for flipped in (False, True)
            if torch.equal(
                out[i],
                padded[i, :, dy : dy + h, dx : dx + w].flip(2)
                if flipped
                else padded[i, :, dy : dy + h, dx : dx + w],
            )
        ]
        assert matches, f"image {i} is not a (flipped) crop of its padded input"
        found.append(matches[0])
    return found


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_gpu_augmentation_has_the_cpu_semantics(dtype):
    # no zero pixels, so that the padding shows wherever a crop reaches it
    x = torch.randint(1, 256, (64, 3, 8, 8)).to(dtype)
    for device in ("cpu", "cuda"):
        generator = torch.Generator(device=device).manual_seed(0)
        out = augment_crop_flip(x.to(device), generator, padding=2, flip=True)
        assert out.shape == x.shape and out.dtype == dtype and out.device.type == device
        assert out.min() >= 0 and out.max() <= x.max()
        offsets = _crop_offsets(x, out.cpu(), padding=2)
        assert len({(dy, dx) for dy, dx, _ in offsets}) > 5
        assert 0.2 < np.mean([flipped for *_, flipped in offsets]) < 0.8


# ---------------------------------------------------------------------------- cached prefix
class _Recorder(torch.nn.Module):
    """A linear stage that keeps a copy of every training input it is given."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(width, 2)
        self.inputs = []

    def forward(self, x):
        if self.training:
            self.inputs.append(x.detach().float().clone())
        return self.linear(x[:, 1:].float())


def _frozen_prefix(n_features: int, width: int) -> torch.nn.Module:
    torch.manual_seed(0)
    prefix = torch.nn.Sequential(
        torch.nn.Linear(n_features, width), torch.nn.BatchNorm1d(width), torch.nn.ReLU()
    )
    # running statistics away from 0 and 1: a prefix run in train mode would show
    prefix[1].running_mean.uniform_(-1, 1)
    prefix[1].running_var.uniform_(0.5, 2)
    return prefix.eval().requires_grad_(False)


def test_cached_prefix_gives_the_features_recomputed_per_batch():
    n, width = 250, 16
    frozen = _frozen_prefix(6, width).cuda()
    X = torch.randn(n, 7, device="cuda")
    X[:, 0] = torch.arange(n, device="cuda")  # each sample's id, carried through the prefix
    y = torch.randint(0, 2, (n,), device="cuda")

    def prefix(batch):
        return torch.cat([batch[:, :1], frozen(batch[:, 1:])], dim=1)

    def seen(augment):
        """The features the stage trained on in one epoch, in sample order."""
        recorder = _Recorder(width).cuda()
        train_stage(
            recorder,
            StageData(X, y),
            loss_fn=F.cross_entropy,
            # the cache is computed in slices of 100, the batches are 32
            config=TrainingConfig(max_epochs=1, batch_size=32, lr=0.01, eval_batch_size=100),
            generator=torch.Generator(device="cuda").manual_seed(0),
            prefix=prefix,
            augment=augment,
        )
        features = torch.cat(recorder.inputs)
        return features[features[:, 0].argsort()].cpu()

    cached = seen(None)
    # an augmentation, even the identity, makes the engine run the prefix per batch
    recomputed = seen(lambda batch, generator: batch)
    with torch.no_grad():
        on_cpu = torch.cat([X[:, :1].cpu(), copy.deepcopy(frozen).cpu()(X[:, 1:].cpu())], 1)
    for features in (cached, recomputed):
        np.testing.assert_array_equal(features[:, 0].numpy(), np.arange(n))
        # TF32 or bf16 on the GPU against float32 on the CPU
        torch.testing.assert_close(features, on_cpu, atol=3e-2, rtol=2e-2)
    torch.testing.assert_close(cached, recomputed, atol=3e-2, rtol=2e-2)


# ---------------------------------------------------------------------------- settings
DETERMINISTIC = {
    "cnn": lambda: _cnn(k=2, augment=True),
    "sequential regressor": IMPLICIT["sequential regressor"],
}


@pytest.mark.parametrize("make", DETERMINISTIC.values(), ids=DETERMINISTIC.keys())
def test_deterministic_fits_are_identical_on_cuda(make):
    estimator = make()
    if "deterministic" not in estimator.get_params():
        pytest.skip(f"{type(estimator).__name__} has no deterministic parameter")
    if isinstance(estimator, GreedyLayerwiseCNNClassifier):
        X, y = _images()
    else:
        X, y = _implicit_data(estimator)
    flag = torch.are_deterministic_algorithms_enabled()
    first = clone(estimator).set_params(deterministic=True).fit(X, y)
    second = clone(estimator).set_params(deterministic=True).fit(X, y)
    assert torch.are_deterministic_algorithms_enabled() == flag
    if hasattr(first, "model_"):
        second_state = second.model_.state_dict()
        for name, tensor in first.model_.state_dict().items():
            assert torch.equal(tensor, second_state[name]), name
        np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))
    else:
        np.testing.assert_array_equal(first.A_, second.A_)
        np.testing.assert_array_equal(first.predict(X), second.predict(X))


def _process_settings():
    return (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
        torch.is_autocast_enabled("cuda"),
    )


@pytest.mark.parametrize("allowed", [False, True])
@pytest.mark.parametrize("precision", ["tf32", "bf16", "fp16"])
def test_precision_leaves_process_wide_settings_alone(precision, allowed):
    clf = _cnn()
    if "precision" not in clf.get_params():
        pytest.skip("GreedyLayerwiseCNNClassifier has no precision parameter")
    X, y = _images()
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
        before = _process_settings()
        clf.set_params(precision=precision).fit(X, y)
        assert _process_settings() == before
        proba = clf.predict_proba(X)
        assert _process_settings() == before
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    assert np.isfinite(proba).all() and clf.score(X, y) > 0.6


def test_predict_does_not_move_the_fitted_model():
    X, y = _images()
    clf = _cnn().fit(X, y)
    expected = clf.predict_proba(X)

    def predict_every_way():
        clf.predict(X)
        clf.transform(X)
        list(clf.staged_predict(X))
        return clf.predict_proba(X)

    predict_every_way()
    assert _first_device(clf).type == "cuda"
    clf.model_.cpu()
    proba = predict_every_way()
    assert _first_device(clf).type == "cpu"
    # wherever it predicts now, it predicts the same (up to TF32/bf16 against float32)
    np.testing.assert_allclose(proba, expected, atol=2e-2)
