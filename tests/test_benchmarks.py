"""The benchmark scripts run end to end on tiny inputs (their figures live in RESULTS.md)."""

import sys
from pathlib import Path

import numpy as np
import pytest
from _images import tiny_cifar_batches

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(autouse=True)
def _benchmarks_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))


def test_cifar10_benchmark_runs_on_cpu(tmp_path, capsys):
    import cifar10

    tiny_cifar_batches(tmp_path)
    cifar10.main(
        ["--data-dir", str(tmp_path), "--epochs", "1", "--width-scale", "0.02",
         "--configs", "1,3", "--device", "cpu"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "greedy k=1 (J=5, M=5)" in out and "greedy k=3 (J=4, M=3)" in out
    # the end-to-end baselines get the budget of all greedy stages: J x 1 epochs
    assert "end-to-end, skorch, 4 epochs (k=3 final network)" in out
    assert "end-to-end, plain PyTorch loop, 5 epochs (k=1 final network)" in out


def test_stage_throughput_runs_on_cpu(capsys):
    import stage_throughput

    stage_throughput.main(
        ["--n", "64", "--side", "8", "--width", "4", "--batch-size", "32", "--epochs", "1",
         "--repeats", "1", "--device", "cpu"]
    )  # fmt: skip
    out = capsys.readouterr().out
    for path in ("engine (estimator, one layer)", "plain PyTorch loop", "skorch NeuralNet"):
        assert path in out


def test_memory_count_greedy_below_end_to_end():
    import memory
    import torch

    greedy, end_to_end = memory.peaks(32, 8, torch.device("cpu"))
    assert 0 < greedy < end_to_end
    # a wider first layer costs more under both schemes
    wider = memory.peaks(64, 8, torch.device("cpu"))
    assert wider[0] > greedy and wider[1] > end_to_end


def test_digits_benchmark_helpers_build_the_end_to_end_baseline():
    import digits
    from sklearn.datasets import load_digits

    from sklearn_greedy import GreedyLayerwiseCNNClassifier

    X, y = load_digits(return_X_y=True)
    greedy = GreedyLayerwiseCNNClassifier(
        image_shape=(1, 8, 8), n_layers=2, width=4, max_epochs=1, random_state=0
    ).fit(X[:200], y[:200])
    net = digits.skorch_end_to_end(greedy, seed=0)
    net.set_params(max_epochs=1).fit(X[:200].reshape(-1, 1, 8, 8).astype(np.float32), y[:200])
    assert net.predict(X[:10].reshape(-1, 1, 8, 8).astype(np.float32)).shape == (10,)
    assert "benchmarks" in sys.modules["digits"].__file__


def test_streaming_benchmark_parts_run_on_tiny_folders(tmp_path):
    import argparse

    import streaming

    args = argparse.Namespace(width=4, epochs=1, workers=0)
    train = streaming.generated_folder(str(tmp_path / "train"), 24, 8)
    test = streaming.generated_folder(str(tmp_path / "test"), 12, 8, seed=1)
    agreement = streaming.agreement_part(args, train, test, 8)
    # the streamed fit is the array fit: same images, same seed
    assert agreement["difference"] == 0
    cache = streaming.cache_part(args, train, 8)
    assert set(cache) == {"None", "host"} and all(len(s) == 4 for s in cache.values())
    linked = streaming.linked_subset(train, str(tmp_path / "linked"), 8)
    assert sum(len(files) for _, _, files in __import__("os").walk(linked)) == 8


def test_greedy_variants_arithmetic_floor_of_decoupled():
    """The floor printed beside each time ratio: below 1 where sequential recomputes its
    prefix (augmented batches), about 1 where it keeps its layers' outputs, and raised by
    a delay (frozen forwards after each layer's epochs)."""
    import greedy_variants
    from sklearn.datasets import load_digits

    from sklearn_greedy import GreedyLayerwiseCNNClassifier

    X, y = load_digits(return_X_y=True)
    params = dict(image_shape=(1, 8, 8), n_layers=3, width=8, max_epochs=1, device="cpu")
    clf = GreedyLayerwiseCNNClassifier(**params).fit(X[:200], y[:200])
    flops = greedy_variants.layer_flops(clf, X, batch_size=64)
    augmented = greedy_variants.flop_floor(flops, 4, augmented=True)
    kept = greedy_variants.flop_floor(flops, 4, augmented=False)
    delayed = greedy_variants.flop_floor(flops, 4, True, delay=2)
    assert 0.5 < augmented < kept <= 1.0 + 1e-9
    assert augmented < delayed < 1.0
