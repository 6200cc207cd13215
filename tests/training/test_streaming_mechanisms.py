"""What a streamed fit trains on, pinned by spying on the training steps (issue 27): a
memmap serves the rows the in-memory array would, in the same order; streams serve every
sample once per epoch, shuffled; and no kept-features cache is used under augmentation
(augmented inputs differ every epoch, so a cache of layer outputs would be stale)."""

import os

import numpy as np
import pytest
import torch
from _images import quadrant_images
from torch.utils.data import Dataset

from sklearn_greedy import GreedyLayerwiseCNNClassifier
from sklearn_greedy.cnn import _grower as growth_module
from sklearn_greedy.training import _engine as engine_module
from sklearn_greedy.training._engine import StageInputs, StageTrainer
from sklearn_greedy.training._streaming import ArraySource, RowShard, cache_outputs

# 100 samples in batches of 32: three batches an epoch, the last of 36 (the trailing 4
# join it), so a stream that lost a trailing batch would lose samples
PARAMS = dict(n_layers=2, width=8, max_epochs=2, batch_size=32, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def images():
    X, y = quadrant_images(n=100, seed=0)
    return X.astype(np.float32), y


class _Items(Dataset):
    """(image, label) pairs read one by one."""

    def __init__(self, X, y):
        self.X, self.y, self.targets = X, y, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return torch.from_numpy(self.X[i]), int(self.y[i])


def _memmap(tmp_path, X):
    path = os.path.join(tmp_path, "X.npy")
    out = np.lib.format.open_memmap(path, mode="w+", dtype=X.dtype, shape=X.shape)
    out[:] = X
    out.flush()
    return np.load(path, mmap_mode="r")


def _training_steps(fit):
    """The model ``fit()`` returns and its training steps as ``(stage, epoch, indices, raw
    inputs)``, stages and epochs numbered from 0 in the order they train."""
    steps, trainers = [], []
    run_epoch, train_step = StageTrainer.run_epoch, StageTrainer.train_step

    def epoch_spy(self, epoch):
        if not any(t is self for t in trainers):
            trainers.append(self)
        self._spy_epoch = epoch
        return run_epoch(self, epoch)

    def step_spy(self, idx, xb):
        stage = next(i for i, t in enumerate(trainers) if t is self)
        steps.append((stage, self._spy_epoch, idx.clone(), xb.detach().clone()))
        return train_step(self, idx, xb)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(StageTrainer, "run_epoch", epoch_spy)
        patch.setattr(StageTrainer, "train_step", step_spy)
        return fit(), steps


# two epochs leave the validation score improving: a ConvergenceWarning, expected here
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("early_stopping", [False, True])
def test_memmap_trains_on_the_arrays_rows_in_the_same_order(images, tmp_path, early_stopping):
    """A memmap's batches hold, row for row, what the same array in memory gives for the
    same indices (the rows are read in file order and put back in the batch's order; with
    early stopping, through the training subset's row numbers). With no cache on either
    side both fits run the same operations: the models are identical."""
    X, y = images
    params = dict(PARAMS, augment=False, prefix_cache=None, early_stopping=early_stopping)
    array, from_array = _training_steps(lambda: GreedyLayerwiseCNNClassifier(**params).fit(X, y))
    memmap, steps = _training_steps(
        lambda: GreedyLayerwiseCNNClassifier(**params).fit(_memmap(tmp_path, X), y)
    )
    # three batches an epoch (of the 100 samples, or of the 90 left by the validation split)
    assert len(steps) == len(from_array) == PARAMS["n_layers"] * PARAMS["max_epochs"] * 3
    for (stage, epoch, idx, xb), (stage_a, epoch_a, idx_a, xb_a) in zip(steps, from_array):
        assert (stage, epoch) == (stage_a, epoch_a)
        torch.testing.assert_close(idx, idx_a, rtol=0, atol=0)
        torch.testing.assert_close(xb, xb_a, rtol=0, atol=0)
        if not early_stopping:  # the rows the indices name, counted directly
            np.testing.assert_array_equal(xb.numpy(), X[idx.numpy()])
    np.testing.assert_array_equal(memmap.predict_proba(X), array.predict_proba(X))


@pytest.mark.parametrize("stream", ["memmap", "dataset"])
def test_streams_serve_every_sample_once_per_epoch_shuffled(images, tmp_path, stream):
    """Each epoch of each layer reads every sample exactly once (the short trailing batch
    joins the one before it, it is not dropped), each row being the sample its index
    names, in a shuffled order that changes from epoch to epoch."""
    X, y = images
    data = _memmap(tmp_path, X) if stream == "memmap" else _Items(X, y)
    _, steps = _training_steps(
        lambda: GreedyLayerwiseCNNClassifier(**PARAMS, augment=False).fit(data, y)
    )
    orders = {}
    for stage, epoch, idx, xb in steps:
        np.testing.assert_array_equal(xb.numpy(), X[idx.numpy()])
        orders.setdefault((stage, epoch), []).extend(idx.tolist())
    assert len(orders) == PARAMS["n_layers"] * PARAMS["max_epochs"]
    for order in orders.values():
        assert sorted(order) == list(range(len(X)))  # every sample, once
        assert order != list(range(len(X)))  # shuffled
    assert len({tuple(order) for order in orders.values()}) == len(orders)  # a new order


def _count_caches(monkeypatch):
    """The number of feature caches built, by the engine or between layers."""
    calls = []
    for module in (engine_module, growth_module):
        real = module.cache_outputs

        def counting(*args, _real=real, **kwargs):
            calls.append(1)
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, "cache_outputs", counting)
    return calls


def _second_layer_inputs(monkeypatch):
    """``(indices, features)`` of every training batch of the second layer: what its
    stage reads after the frozen first layer (and after augmentation)."""
    seen, trainers = [], []
    batch = StageInputs._batch

    def spy(self, idx, xb):
        if not any(t is self for t in trainers):
            trainers.append(self)
        features, yb = batch(self, idx, xb)
        if trainers[1:] and trainers[1] is self:
            seen.append((idx.clone(), features.detach().clone()))
        return features, yb

    monkeypatch.setattr(StageInputs, "_batch", spy)
    return seen


@pytest.mark.parametrize("augment", ["flip", False])
def test_no_kept_features_under_augmentation(images, monkeypatch, augment):
    """With augmentation, no layer output is cached (array inputs, where the cache is on by
    default): the second layer reads the first layer's output of each sample as augmented
    in that epoch, either of the image or of its mirror, and both occur. A cache would give
    it the unaugmented features, or their mirror image (not the layer's output of a
    mirrored image). Without augmentation the cache is used, and holds the features of the
    images as they are."""
    X, y = images
    caches = _count_caches(monkeypatch)
    seen = _second_layer_inputs(monkeypatch)
    est = GreedyLayerwiseCNNClassifier(**PARAMS, augment=augment).fit(X, y)
    with torch.no_grad():
        x = torch.from_numpy(X)
        plain = list(est.model_.per_layer(x, 1))[-1]
        mirrored = list(est.model_.per_layer(x.flip(3), 1))[-1]
    assert seen
    plain_rows = mirrored_rows = 0
    for idx, features in seen:
        is_plain = torch.isclose(features, plain[idx], atol=1e-5).flatten(1).all(1)
        is_mirrored = torch.isclose(features, mirrored[idx], atol=1e-5).flatten(1).all(1)
        assert bool((is_plain | is_mirrored).all())
        plain_rows += int(is_plain.sum())
        mirrored_rows += int((is_mirrored & ~is_plain).sum())
    if augment:
        assert not caches
        assert plain_rows > 0 and mirrored_rows > 0
    else:
        assert caches
        assert mirrored_rows == 0


def test_a_long_stream_is_standardised_by_all_its_items_as_its_array(tmp_path):
    """normalize="data" on a stream reads every item for the channel statistics (once
    sampled from 10,000 items, which trained another model than the array): the stem of
    a memmap fit equals the array fit's, and both predict alike."""
    rng = np.random.RandomState(0)
    n = 12_000
    X = rng.rand(n, 2, 4, 4).astype(np.float32)
    X[:600] += 50.0  # a few items far off: any sample would miss their share
    y = np.arange(n) % 2
    path = tmp_path / "long.dat"
    stream = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
    stream[:] = X
    stream.flush()
    params = dict(n_layers=1, width=2, max_epochs=1, batch_size=4000, random_state=0)
    fits = [
        GreedyLayerwiseCNNClassifier(**params).fit(data, y)
        for data in (np.memmap(path, dtype=np.float32, mode="r", shape=X.shape), X)
    ]
    mean = X.astype(np.float64).mean(axis=(0, 2, 3))
    std = X.astype(np.float64).std(axis=(0, 2, 3))
    for clf in fits:
        standardize = clf.model_.stem[-1]
        np.testing.assert_allclose(standardize.mean.numpy().ravel(), mean, rtol=1e-6)
        np.testing.assert_allclose(standardize.std.numpy().ravel(), std, rtol=1e-5)
    np.testing.assert_allclose(
        fits[0].decision_function(X[:50]), fits[1].decision_function(X[:50]), rtol=1e-5
    )
    np.testing.assert_array_equal(fits[0].layer_scores_, fits[1].layer_scores_)


def _rss_file_kib() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("RssFile:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc/self/status")
def test_a_memmap_read_batch_by_batch_keeps_few_of_its_pages_resident(tmp_path):
    """A memmap's rows are read from its file, not through the mapping, whose touched pages
    stayed resident (issue 25: a 2 GiB memmap fit peaked at 4.2 GiB); the rows are the
    file's all the same, for views too. A copy-on-write memmap is read through its mapping:
    its changes live there only."""
    from sklearn_greedy.training._streaming import ArraySource

    path = tmp_path / "x.dat"
    rows = np.arange(4096, dtype=np.float32)[:, None] * np.ones(2048, np.float32)  # 32 MiB
    rows.tofile(path)

    def resident_growth_kib(X, expected):
        before, seen = _rss_file_kib(), []
        for batch in ArraySource(X, "cpu").sequential(256):
            seen.append(batch.numpy())
        np.testing.assert_array_equal(np.concatenate(seen), expected)
        return _rss_file_kib() - before

    X = np.memmap(path, dtype=np.float32, mode="r", shape=rows.shape)
    assert resident_growth_kib(X, rows) < 8 * 1024
    view = X.reshape(4096, 2, 32, 32)[1::3, :, 4:20].transpose(0, 2, 3, 1)
    assert (
        resident_growth_kib(
            view, rows.reshape(4096, 2, 32, 32)[1::3, :, 4:20].transpose(0, 2, 3, 1)
        )
        < 8 * 1024
    )

    import pickle

    from sklearn_greedy.training._streaming import FileRows

    reader = FileRows.of(X)
    reader.read(np.arange(3))  # opens its file
    copy = pickle.loads(pickle.dumps(reader))
    assert copy._fd is None  # another process opens its own descriptor
    np.testing.assert_array_equal(copy.read([5, 9]), rows[[5, 9]])
    assert FileRows.of(X[:0]) is None  # nothing to read

    changed = np.memmap(path, dtype=np.float32, mode="c", shape=rows.shape)
    changed[0] = -1.0
    expected = rows.copy()
    expected[0] = -1.0
    assert resident_growth_kib(changed, expected) > 24 * 1024  # what the reads used to keep


@pytest.mark.parametrize("where", ["device", "host", "disk"])
@pytest.mark.parametrize("kind", ["tensor", "memmap"])
def test_a_shard_of_kept_features_holds_and_serves_its_rows_alone(tmp_path, where, kind):
    # what one rank keeps when the ranks share a cache out: rows 4..9 of 12, read by
    # their indices in the whole set, computed from them alone
    X = torch.arange(12 * 3, dtype=torch.float32).reshape(12, 3)
    if kind == "memmap":
        array = np.lib.format.open_memmap(tmp_path / "X.npy", "w+", np.float32, (12, 3))
        array[:] = X.numpy()
        X = ArraySource(array, "cpu")
    seen = []

    def fn(batch):
        seen.append(batch.shape[0])
        return batch * 2

    shard = cache_outputs(fn, X, batch_size=4, where=where, rows=range(4, 10))
    assert isinstance(shard, RowShard) and shard.shape == (12, 3) and sum(seen) == 6
    expected = torch.arange(12 * 3, dtype=torch.float32).reshape(12, 3) * 2
    idx = torch.tensor([9, 4, 6])
    torch.testing.assert_close(shard[idx].float(), expected[idx])
    torch.testing.assert_close(torch.cat(list(shard.sequential(4))).float(), expected[4:10])
    batches = list(shard.iter_batches([torch.tensor([5, 8]), torch.tensor([], dtype=torch.long)]))
    torch.testing.assert_close(batches[0].float(), expected[[5, 8]])
    assert batches[1].shape == (0, 3)
    for outside in ([3, 5], [10], slice(0, 12)):
        with pytest.raises(IndexError, match="holds the rows 4..9 of 12"):
            shard[torch.tensor(outside) if isinstance(outside, list) else outside]
    # the next layer's features: from the shard, the same rows
    again = cache_outputs(fn, shard, batch_size=4, where=where)
    assert isinstance(again, RowShard) and again.rows == range(4, 10)
    torch.testing.assert_close(again[torch.tensor([7])].float(), 2 * expected[[7]])
    with pytest.raises(ValueError, match="rows held"):
        RowShard(torch.zeros(3, 2), range(4, 10), 12)
