"""The implicit models' benchmark scripts run end to end on tiny inputs (their figures are
in benchmarks/RESULTS.md)."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(autouse=True)
def _benchmarks_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def test_interpolation_reports_mean_worst_and_time_ratio(capsys):
    import implicit_interpolation as bench

    bench.main(["--draws", "2", "--seed-start", "7", "--models", "implicit (defaults),FFN"])
    out = capsys.readouterr().out
    assert "f1 RMSE mean | f1 worst" in out and "f2 time / FFN" in out
    row = next(line for line in out.splitlines() if line.startswith("| implicit (defaults)"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 9 and all(float(c) > 0 for c in cells[1:])
    # the draws are fresh default_rng seeds, one training set per seed
    u, y = bench.draw(bench.f1, 7)
    u2, y2 = bench.draw(bench.f1, 7)
    np.testing.assert_array_equal(y, y2)
    assert u.shape == (500, 1) and np.all(np.abs(y - bench.f1(u[:, 0])) <= 1)


def test_tabular_compares_with_ridge(capsys):
    import implicit_tabular as bench

    bench.main(["--models", "Ridge,implicit sequential (defaults)", "--n-friedman", "120"])
    out = capsys.readouterr().out
    assert "| diabetes | Ridge |" in out and "| friedman1 | implicit sequential (defaults) |" in out


def _write_idx(path, array):
    codes = {np.dtype(np.uint8): 0x08}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype], array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(str(path) + ".gz", "wb") as f:
        f.write(header + array.tobytes())


def test_mnist_benchmark_loads_flat_pixels_and_builds_its_models(tmp_path, monkeypatch):
    import implicit_mnist as bench

    rng = np.random.RandomState(0)
    directory = tmp_path / "mnist"
    directory.mkdir()
    for kind, n in (("train", 30), ("t10k", 10)):
        _write_idx(
            directory / f"{kind}-images-idx3-ubyte",
            rng.randint(0, 256, (n, 28, 28)).astype(np.uint8),
        )
        _write_idx(directory / f"{kind}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    X, y, X_test, y_test = bench.load(str(tmp_path), "mnist", max_train=20)
    assert X.shape == (20, 784) and X.dtype == np.float32 and 0 <= X.min() <= X.max() <= 1
    assert X_test.shape == (10, 784)
    # --validation: held-out training images, the test set unread
    monkeypatch.setattr(bench, "VALIDATION_SIZE", 8)
    X_fit, y_fit, X_held, y_held = bench.load(str(tmp_path), "mnist", validation=True)
    assert X_fit.shape == (22, 784) and X_held.shape == (8, 784)
    together = np.concatenate([X_fit, X_held]).reshape(30, -1)
    train = bench.load(str(tmp_path), "mnist")[0]
    assert sorted(map(bytes, together)) == sorted(map(bytes, train))  # a split of the train set
    variants = '{"alpha=0.1": {"alpha": 0.1}}'
    args = bench.argparse.Namespace(mlp_epochs=3, end_to_end=True, paper=True, variants=variants)
    table = bench.models(args)
    assert bench.FFN in table and len(table) == 5
    assert table[f"{bench.DEFAULTS}, alpha=0.1"]().alpha == 0.1
    ffn = table[bench.FFN]()
    assert ffn.max_iter == 3 and ffn.n_iter_no_change > 3  # every epoch runs
    paper = table[bench.PAPER]()
    assert (paper.max_epochs, paper.lr, paper.n_components, paper.select_blocks) == (
        200,
        0.001,
        None,
        False,
    )
    defaults = table["implicit blockwise (defaults)"]()
    assert (defaults.n_states, defaults.n_blocks) == (32, 16)
