"""Streaming input: data sets and memmaps are read batch by batch and train the same model
as the array they hold; the frozen prefix's outputs can be cached on the host or on disk."""

import os
import pickle

import numpy as np
import pytest
import torch
from _images import quadrant_images
from sklearn.base import clone
from torch.utils.data import Dataset, TensorDataset

from sklearn_greedy import GreedyLayerwiseCNNClassifier, imagenet_params
from sklearn_greedy.training._streaming import ArraySource, DatasetSource, LoaderOptions

PARAMS = dict(n_layers=2, width=8, max_epochs=2, batch_size=32, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def images():
    X, y = quadrant_images(n=96, seed=0)
    return X.astype(np.float32), y


class CountingDataset(Dataset):
    """(image, label) pairs that count how often each item is read."""

    def __init__(self, X, y, *, targets=True):
        self.X, self.y = X, y
        self.reads = np.zeros(len(X), dtype=int)
        if targets:
            self.targets = y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        self.reads[i] += 1
        return torch.from_numpy(self.X[i]), int(self.y[i])


def _memmap(tmp_path, X):
    path = os.path.join(tmp_path, "X.npy")
    out = np.lib.format.open_memmap(path, mode="w+", dtype=X.dtype, shape=X.shape)
    out[:] = X
    out.flush()
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize(
    "augment, training",
    [(False, {}), ("flip", {}), ("flip", dict(training="decoupled", decoupled_delay=1))],
)
def test_dataset_fit_equals_array_fit(images, augment, training):
    X, y = images
    params = dict(PARAMS, augment=augment, **training)
    array = GreedyLayerwiseCNNClassifier(**params).fit(X, y)
    stream = GreedyLayerwiseCNNClassifier(**params).fit(CountingDataset(X, y))
    assert [r["train_loss"] for r in stream.history_[-1]] == pytest.approx(
        [r["train_loss"] for r in array.history_[-1]], rel=1e-5
    )
    np.testing.assert_allclose(stream.predict_proba(X), array.predict_proba(X), atol=1e-5)
    np.testing.assert_allclose(
        stream.transform(TensorDataset(torch.from_numpy(X))), array.transform(X), atol=1e-5
    )


def test_dataset_items_are_read_per_epoch_not_loaded_up_front(images):
    X, y = images
    data = CountingDataset(X, y)
    GreedyLayerwiseCNNClassifier(**PARAMS, augment=False).fit(data)
    # every item is read once per epoch of each layer, plus one pass for the statistics
    # and two per layer (its score, its divergence check); with targets given, labels cost
    # no reads (item 0 is also read for the image shape)
    reads = data.reads[1:]
    assert reads.min() == reads.max() == PARAMS["n_layers"] * (PARAMS["max_epochs"] + 2) + 1


def test_labels_are_read_from_items_without_targets(images):
    X, y = images
    stream = GreedyLayerwiseCNNClassifier(**PARAMS).fit(CountingDataset(X, y, targets=False))
    np.testing.assert_array_equal(stream.classes_, np.unique(y))
    assert stream.score(CountingDataset(X, y)) == pytest.approx(stream.score(X, y))


def test_memmap_fit_equals_array_fit(images, tmp_path):
    X, y = images
    mm = _memmap(tmp_path, X)
    array = GreedyLayerwiseCNNClassifier(**PARAMS, augment=False).fit(X, y)
    stream = GreedyLayerwiseCNNClassifier(**PARAMS, augment=False).fit(mm, y)
    np.testing.assert_allclose(stream.predict_proba(mm), array.predict_proba(X), atol=1e-5)
    # 3-D memmaps are one-channel images, as 3-D arrays are
    mm3 = _memmap(tmp_path, X[:, 0].copy())
    assert GreedyLayerwiseCNNClassifier(**PARAMS).fit(mm3, y).image_shape_ == X.shape[1:]


def test_array_source_reads_only_the_batch_rows(images, tmp_path):
    X, _ = images
    source = ArraySource(_memmap(tmp_path, X), torch.device("cpu"))
    idx = torch.tensor([5, 1, 40])
    np.testing.assert_array_equal(source[idx].numpy(), X[[5, 1, 40]])
    batches = list(source.iter_batches([np.array([3, 2]), np.array([0])]))
    np.testing.assert_array_equal(batches[0].numpy(), X[[3, 2]])
    np.testing.assert_array_equal(source.subset(np.array([7, 9]))[1:].numpy(), X[[9]])


@pytest.mark.parametrize("cache", ["host", "disk"])
def test_prefix_cache_on_host_or_disk(images, cache, monkeypatch):
    X, y = images
    made = []
    real_mkdtemp = __import__("tempfile").mkdtemp
    monkeypatch.setattr(
        "tempfile.mkdtemp", lambda **kw: made.append(real_mkdtemp(**kw)) or made[-1]
    )
    data = CountingDataset(X, y)
    device = GreedyLayerwiseCNNClassifier(**PARAMS, augment=False).fit(X, y)
    cached = GreedyLayerwiseCNNClassifier(**PARAMS, augment=False, prefix_cache=cache).fit(data)
    # float16 features: the same model up to rounding
    assert np.mean(cached.predict(X) == device.predict(X)) > 0.9
    # layers 2 and 3 train on the kept features, each computed from the layer below's:
    # an item is read for the statistics, layer 1's epochs and divergence check, and the
    # one pass that keeps its features, never again however deep the network grows
    deep = CountingDataset(X, y)
    params = dict(PARAMS, n_layers=3, augment=False, prefix_cache=cache)
    GreedyLayerwiseCNNClassifier(**params).fit(deep)
    assert set(deep.reads[1:]) == {PARAMS["max_epochs"] + 3}
    if cache == "disk":
        assert made and not any(os.path.exists(d) for d in made)


def test_validation_split_and_validation_dataset(images):
    X, y = images
    params = dict(PARAMS, early_stopping=True, augment=False)
    array = GreedyLayerwiseCNNClassifier(**params).fit(X, y)
    stream = GreedyLayerwiseCNNClassifier(**params).fit(CountingDataset(X, y))
    assert [r["valid_score"] for r in stream.history_[0]] == pytest.approx(
        [r["valid_score"] for r in array.history_[0]]
    )
    given = GreedyLayerwiseCNNClassifier(**PARAMS).fit(
        CountingDataset(X[:64], y[:64]), X_val=CountingDataset(X[64:], y[64:])
    )
    assert given.history_[0][0]["valid_score"] is not None


def test_streamed_fit_warm_starts_refits_and_pickles(images):
    X, y = images
    est = GreedyLayerwiseCNNClassifier(**PARAMS).fit(CountingDataset(X, y))
    est.set_params(warm_start=True, n_layers=3).fit(CountingDataset(X, y))
    assert est.n_layers_fitted_ == 3
    est.refit_final_head(CountingDataset(X, y), final_aux_width=4)
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.predict(X), est.predict(X))
    assert clone(est).get_params()["num_workers"] == 0


@pytest.mark.timeout(60)
def test_loader_workers_give_the_same_fit(images):
    X, y = images
    data = TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    serial = GreedyLayerwiseCNNClassifier(**PARAMS).fit(data)
    workers = GreedyLayerwiseCNNClassifier(**PARAMS, num_workers=2, prefetch_factor=1).fit(data)
    np.testing.assert_allclose(workers.predict_proba(X), serial.predict_proba(X), atol=1e-6)


class _Mixed(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.zeros(1, 8, 8 if i < 2 else 6), i % 2


class _Singles(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.zeros(1, 8, 8)


class _Dies(Dataset):
    """Kills the worker process that reads item 5."""

    def __len__(self):
        return 64

    def __getitem__(self, i):
        if i == 5 and torch.utils.data.get_worker_info() is not None:
            os._exit(1)
        return torch.full((1, 4, 4), float(i % 2)), i % 2


def test_bad_streams_get_clear_errors(images, tmp_path):
    X, y = images
    est = GreedyLayerwiseCNNClassifier(**PARAMS)
    with pytest.raises(ValueError, match="same shape"):
        est.fit(_Mixed())
    with pytest.raises(ValueError, match=r"\(image, label\) pairs"):
        est.fit(_Singles())
    with pytest.raises(ValueError, match="4 samples but y has 3"):
        est.fit(_Singles(), [0, 1, 0])
    with pytest.raises(ValueError, match="y is required"):
        est.fit(_memmap(tmp_path, X))
    assert not hasattr(est, "model_")
    fitted = clone(est).fit(CountingDataset(X, y))
    with pytest.raises(ValueError, match="absent from classes_"):
        fitted.score(CountingDataset(X, y + 10))
    with pytest.raises(ValueError, match="fitted on"):
        fitted.predict(TensorDataset(torch.zeros(4, 1, 6, 6)))


@pytest.mark.timeout(60)
def test_a_dying_worker_fails_the_fit_cleanly():
    est = GreedyLayerwiseCNNClassifier(**dict(PARAMS, n_layers=1), num_workers=1)
    with pytest.raises(RuntimeError, match="worker"):
        est.fit(_Dies(), np.arange(64) % 2)
    assert not hasattr(est, "model_")


def test_dataset_source_reads_its_subset():
    data = TensorDataset(torch.arange(6.0).reshape(6, 1, 1, 1), torch.zeros(6))
    source = DatasetSource(data, (1, 1, 1), torch.device("cpu"), LoaderOptions())
    sub = source.subset(np.array([4, 2]))
    assert sub.shape == (2, 1, 1, 1)
    assert sub[:].flatten().tolist() == [4.0, 2.0]


def test_top5_accuracy_in_history_with_more_than_5_classes():
    rng = np.random.RandomState(0)
    X, y = rng.rand(60, 1, 4, 4).astype(np.float32), np.arange(60) % 6
    est = GreedyLayerwiseCNNClassifier(**dict(PARAMS, n_layers=1), early_stopping=True).fit(X, y)
    record = est.history_[0][-1]
    assert record["train_top5"] >= record["train_score"]
    assert record["valid_top5"] >= record["valid_score"]
    two = GreedyLayerwiseCNNClassifier(**dict(PARAMS, n_layers=1)).fit(X, y % 2)
    assert "train_top5" not in two.history_[0][-1]


@pytest.mark.parametrize(
    "k, widths",
    [
        (1, [256, 256, 512, 1024, 2048, 2048, 4096, 4096]),
        (3, [128, 128, 256, 256, 512, 512, 1024, 1024]),
    ],
)
def test_imagenet_params_build_the_papers_tables(k, widths):
    est = GreedyLayerwiseCNNClassifier(**imagenet_params(k))
    plan, _ = est._checked_plan((3, 224, 224))
    assert [spec.out_channels for spec in plan] == widths  # Tables 5 and 4
    assert est.input_downsample and est.batch_size == 256 and est.lr_step == 20
    assert est._use_batch_norm() == (k > 1)
    with pytest.raises(ValueError, match="k in"):
        imagenet_params(4)


def test_partial_fit_adds_one_layer_per_call(images):
    X, y = images
    full = GreedyLayerwiseCNNClassifier(**PARAMS).fit(X, y)
    est = GreedyLayerwiseCNNClassifier(**PARAMS)
    est.partial_fit(X, y)
    assert est.n_layers_fitted_ == 1
    est.partial_fit(CountingDataset(X, y))
    assert est.n_layers_fitted_ == 2
    np.testing.assert_allclose(est.predict_proba(X), full.predict_proba(X), atol=1e-5)
    with pytest.warns(UserWarning, match="nothing to train"):
        est.partial_fit(X, y)
    assert est.n_layers_fitted_ == 2


def test_partial_fit_classes_come_from_the_first_call(images):
    X, y = images
    est = GreedyLayerwiseCNNClassifier(**PARAMS)
    first = y != 2
    est.partial_fit(X[first], y[first], classes=[0, 1, 2])
    np.testing.assert_array_equal(est.classes_, [0, 1, 2])
    with pytest.raises(ValueError, match="absent from classes"):
        est.partial_fit(X, y + 1)
    with pytest.raises(ValueError, match="differs from the classes"):
        est.partial_fit(X, y, classes=[0, 1])
    assert est.n_layers_fitted_ == 1
    est.partial_fit(X, y)
    assert est.n_layers_fitted_ == 2


def test_grid_search_on_a_dataset_through_slice_dataset(images):
    from sklearn.model_selection import GridSearchCV, KFold

    from sklearn_greedy.datasets import SliceDataset

    X, y = images
    data = CountingDataset(X, y)
    grid = {"k": [1, 2], "width": [4]}
    cv = KFold(3)
    on_data = GridSearchCV(GreedyLayerwiseCNNClassifier(**PARAMS), grid, cv=cv).fit(
        SliceDataset(data, idx=0), SliceDataset(data, idx=1)
    )
    on_arrays = GridSearchCV(GreedyLayerwiseCNNClassifier(**PARAMS), grid, cv=cv).fit(X, y)
    np.testing.assert_allclose(
        on_data.cv_results_["mean_test_score"], on_arrays.cv_results_["mean_test_score"]
    )
    assert on_data.best_estimator_.n_layers_fitted_ == PARAMS["n_layers"]


def test_evaluation_batches_shrink_for_large_images():
    rng = np.random.RandomState(0)
    X, y = rng.rand(8, 3, 64, 64).astype(np.float32), np.arange(8) % 2
    params = dict(PARAMS, n_layers=1, width=64, max_epochs=1, batch_size=4)
    est = GreedyLayerwiseCNNClassifier(**params).fit(X, y)
    # 64 channels of 64x64 per image: 256 images make 256 MiB of float32
    assert est._eval_batch_size() == 256
    small = GreedyLayerwiseCNNClassifier(**PARAMS).fit(*quadrant_images(n=20))
    assert small._eval_batch_size() == 1024


def test_a_mapping_is_not_taken_for_a_dataset():
    with pytest.raises(ValueError, match="X must be"):
        GreedyLayerwiseCNNClassifier(**PARAMS).fit({"a": 1}, [0])
