import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import balanced_accuracy_score

from sklearn_greedy.datasets import load_image_folder, per_class_split


def _folder(root, classes):
    """Write ``{class: [(mode, (w, h), fmt), ...]}`` as images under ``root``."""
    rng = np.random.RandomState(0)
    for name, specs in classes.items():
        folder = root / name
        folder.mkdir()
        for i, (mode, (w, h), fmt) in enumerate(specs):
            shape = (h, w) if mode == "L" else (h, w, 3)
            pixels = rng.randint(0, 256, size=shape).astype(np.uint8)
            Image.fromarray(pixels, mode=mode).save(folder / f"img{i}.{fmt}")
    return root


@pytest.fixture
def caltech_like(tmp_path):
    return _folder(
        tmp_path,
        {
            "airplane": [("RGB", (31, 17), "jpg"), ("L", (12, 40), "png")],
            "bonsai": [("L", (9, 9), "jpg"), ("RGB", (64, 48), "png"), ("RGB", (5, 7), "png")],
        },
    )


def test_loads_mixed_sizes_and_modes(caltech_like):
    X, y = load_image_folder(caltech_like, size=(16, 24))
    assert X.shape == (5, 3, 16, 24) and X.dtype == np.uint8
    assert y.dtype == np.int64 and y.tolist() == [0, 0, 1, 1, 1]
    _, y_again, classes = load_image_folder(caltech_like, size=4, return_classes=True)
    assert classes[y_again].tolist() == ["airplane"] * 2 + ["bonsai"] * 3
    # a grey image becomes three equal channels
    np.testing.assert_array_equal(X[1, 0], X[1, 2])
    Xg, yg = load_image_folder(caltech_like, size=8, grayscale=True)
    assert Xg.shape == (5, 1, 8, 8)
    np.testing.assert_array_equal(yg, y)
    X1, y1 = load_image_folder(caltech_like, size=8, max_per_class=1)
    assert y1.tolist() == [0, 1]


def test_non_image_files_are_skipped_with_a_warning(caltech_like):
    (caltech_like / "bonsai" / "notes.txt").write_text("not an image")
    (caltech_like / "airplane" / "broken.jpg").write_bytes(b"\x00\x01garbage")
    (caltech_like / "README").write_text("ignored: not in a class folder")
    with pytest.warns(UserWarning, match="Skipped 2 files"):
        X, y = load_image_folder(caltech_like, size=8)
    assert X.shape[0] == 5


def test_empty_class_folder_is_named(caltech_like):
    (caltech_like / "empty_class").mkdir()
    with pytest.raises(ValueError, match="empty_class"):
        load_image_folder(caltech_like, size=8)
    (caltech_like / "empty_class" / "x.txt").write_text("still no image")
    with pytest.raises(ValueError, match="empty_class.*no readable image"):
        with pytest.warns(UserWarning, match=r"Skipped 1 files.*empty_class/x\.txt"):
            load_image_folder(caltech_like, size=8)


def test_bad_roots_and_sizes(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_image_folder(tmp_path)
    with pytest.raises(ValueError, match="size"):
        load_image_folder(tmp_path, size=(0, 4))
    with pytest.raises(ValueError, match="size"):
        load_image_folder(tmp_path, size="big")


def test_per_class_split():
    y = np.repeat(["a", "b", "c"], [5, 7, 40])
    splits = list(per_class_split(y, 3, n_splits=4, random_state=0))
    assert len(splits) == 4
    for train, test in splits:
        assert np.intersect1d(train, test).size == 0
        assert train.size + test.size == y.size
        assert sorted(np.unique(y[train], return_counts=True)[1]) == [3, 3, 3]
    assert not np.array_equal(splits[0][0], splits[1][0])
    again = list(per_class_split(y, 3, n_splits=4, random_state=0))
    np.testing.assert_array_equal(splits[2][0], again[2][0])
    with pytest.raises(ValueError, match="no test sample.*'a'"):
        next(per_class_split(y, 5))
    with pytest.raises(ValueError, match="n_per_class"):
        next(per_class_split(y, 0))


def test_mean_per_class_accuracy_is_balanced_accuracy():
    # the protocol's mean per-class accuracy is scikit-learn's balanced accuracy
    y_true = np.array([0, 0, 0, 0, 1, 1])
    y_pred = np.array([0, 0, 0, 0, 0, 1])
    assert balanced_accuracy_score(y_true, y_pred) == pytest.approx((1.0 + 0.5) / 2)


def test_image_files_without_pillow_say_how_to_get_it(tmp_path, monkeypatch):
    """Pillow is an extra: without it, reading image files fails naming the package to
    install, not with 'No module named PIL' from deep inside, and no file is skipped as
    unreadable because of it."""
    import sys

    from sklearn_greedy.datasets import load_image_folder

    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"requires Pillow.*pip install pillow"):
        load_image_folder(tmp_path)
