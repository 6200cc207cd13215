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
    # --long-stream: array, memmap and data set fits of the same images, scores compared
    long = streaming.long_stream_part(600)
    assert set(long["layer_scores"]) == {"array", "memmap", "data set"}
    assert long["identical"] and all(len(s) == 2 for s in long["layer_scores"].values())


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


def test_cifar10_cpu_scale_writes_its_rows_and_resumes_each_from_its_checkpoints(tmp_path):
    import json

    import cifar10
    import cifar10_cpu

    data, work, out = tmp_path / "data", tmp_path / "work", tmp_path / "out"
    data.mkdir()
    tiny_cifar_batches(data)
    argv = [
        "--data-dir",
        str(data),
        "--cpu-scale",
        "--width-divisor",
        "64",
        "--epochs",
        "1",
        "--work-dir",
        str(work),
        "--out",
        str(out),
        "--threads",
        "1",
        "--rows",
        "greedy-k1",
    ]
    cifar10.main(argv)  # the row in a child process, as a real run  # fmt: skip
    assert "layer 5/5 epoch 1/1" in (work / "cifar10_cpu.log").read_text()  # a line per epoch
    # the end-to-end row and a resumed greedy row, in this process (a child's code)
    args = cifar10_cpu.argparse.Namespace(
        data_dir=str(data), width_divisor=64, epochs=1, threads=1, seed=0, max_per_class=None,
        test_max_per_class=None, work_dir=str(work), row="e2e-k1", argv=argv,
    )  # fmt: skip
    cifar10_cpu.run_row(args)
    (results,) = out.glob("cifar10_cpu-*.json")
    greedy = json.loads(results.read_text())["rows"][0]
    cifar10_cpu.write_results(work, results, args)
    report = json.loads(results.read_text())
    assert (report["n_train"], report["n_test"], report["width_divisor"]) == (100, 20, 64)
    assert report["epochs_per_layer"] == 1 and report["commit"] and report["machine"]
    assert [r["name"] for r in report["rows"]] == ["greedy-k1", "e2e-k1"]
    e2e = report["rows"][1]
    assert (greedy["mode"], greedy["k"], greedy["J"], len(greedy["per_layer"])) == (
        "greedy",
        1,
        5,
        5,
    )
    assert greedy["test_acc"] == greedy["per_layer"][-1] and greedy["peak_rss_mb"] > 0
    assert greedy["ensemble_acc"] is not None
    assert (e2e["mode"], e2e["epochs"], e2e["ensemble_acc"]) == ("e2e", 5, None)
    # stopped during layer 5: the row resumes from its checkpoints, to the same model
    (work / "rows" / "greedy-k1.json").unlink()
    (work / "checkpoints" / "greedy-k1" / "piece-0004.ckpt").unlink()
    cifar10_cpu.run_row(cifar10_cpu.argparse.Namespace(**{**vars(args), "row": "greedy-k1"}))
    again = json.loads((work / "rows" / "greedy-k1.json").read_text())
    assert again["resumed_layers"] == 4 and again["per_layer"] == greedy["per_layer"]
