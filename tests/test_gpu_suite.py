"""The GPU suite runs end to end on the CPU (``--smoke``), so the prepared device command
cannot rot between the rare sessions that are lent a GPU."""

import json
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "benchmarks" / "gpu_suite.py"
PARTS = ("cuda_tests", "stage_throughput", "memory", "cifar10")
HEADLINE = (
    "device",
    "torch",
    "cuda",
    "commit",
    "date",
    "command",
    "stage_throughput_ratio",
    "memory_ratio",
    "cifar10_k3_final",
    "cifar10_k3_ensemble",
    "cifar10_k3_fit_s",
    "wall_s",
)


@pytest.fixture
def gpu_suite(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import gpu_suite

    return gpu_suite


def _tiny_cifar(directory, n_per_batch=20):
    """CIFAR-10 python batches of random images, two of each class per batch."""
    rng = np.random.RandomState(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.randint(0, 256, size=(n_per_batch, 3072)).astype(np.uint8),
            b"labels": (np.arange(n_per_batch) % 10).tolist(),
        }
        with open(directory / name, "wb") as f:
            pickle.dump(batch, f)


def _run_suite(out, *args):
    """Run the suite's command line; return its JSON report, markdown and output."""
    done = subprocess.run(
        [sys.executable, str(SUITE), "--smoke", "--out", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (json_path,) = out.glob("gpu_suite-*-smoke.json")
    (md_path,) = out.glob("gpu_suite-*-smoke.md")
    return json.loads(json_path.read_text()), md_path.read_text(), done.stdout


def test_smoke_run_goes_through_every_part_and_writes_the_report(tmp_path):
    data = tmp_path / "cifar"
    data.mkdir()
    _tiny_cifar(data)
    start = time.perf_counter()
    report, md, output = _run_suite(tmp_path / "out", "--data-dir", str(data))
    assert time.perf_counter() - start < 100
    assert set(HEADLINE) <= set(report) and report["smoke"] is True
    for part in PARTS:
        assert report[part]["status"] == "done", (part, report[part], output)
    if not torch.cuda.is_available():
        assert "skipped" in report["cuda_tests"]["summary"]
    throughput = report["stage_throughput"]
    assert {"stage1", "stage3"} <= set(throughput)
    assert report["stage_throughput_ratio"] == throughput["stage3"]["ratio"] > 0
    # no CUDA in a smoke run: the memory steps run, nothing is measured
    assert report["memory"]["measured"] is False and report["memory_ratio"] is None
    cifar = report["cifar10"]
    assert cifar["source"] == str(data) and cifar["n_train"] == 100 and cifar["n_test"] == 20
    assert len(cifar["per_layer_test_accuracy"]) == cifar["n_layers"] == 4
    assert report["cifar10_k3_final"] == cifar["per_layer_test_accuracy"][-1]
    assert 0 <= report["cifar10_k3_ensemble"] <= 1 and report["cifar10_k3_fit_s"] > 0
    assert 0 < report["wall_s"] < 100
    for text in (report["device"], report["torch"], report["commit"], report["date"]):
        assert text in md
    assert report["command"] in md and "| part | status |" in md
    assert "| 3 | plain PyTorch loop |" in md and "| 4 |" in md


def test_a_budget_too_small_skips_every_part_and_still_reports(tmp_path):
    report, md, _ = _run_suite(tmp_path, "--budget-s", "0.5")
    for part in PARTS:
        assert report[part]["status"] == "skipped"
    for key in HEADLINE[6:-1]:
        assert report[key] is None
    assert md.count("| skipped |") == len(PARTS)


def test_budget_keeps_the_later_parts_shares(gpu_suite):
    budget = gpu_suite.Budget(100.0, {"a": 0.2, "b": 0.3, "c": 0.5})
    assert budget.allowance("a") == pytest.approx(20, abs=0.5)
    assert budget.allowance("b") == pytest.approx(50, abs=0.5)
    assert budget.allowance("c") == pytest.approx(100, abs=0.5)


def test_time_limit_interrupts_the_block_and_rearms_an_outer_limit(gpu_suite):
    with gpu_suite.time_limit(30):
        with pytest.raises(gpu_suite.DeadlineExceeded):
            with gpu_suite.time_limit(0.05):
                time.sleep(5)
        assert 20 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30


def test_plain_loop_augmentation_is_a_crop_of_the_padded_batch(gpu_suite):
    batch = torch.randint(1, 256, (32, 3, 8, 8), dtype=torch.uint8)
    out = gpu_suite.crop_flip(batch, torch.Generator().manual_seed(0), padding=2)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    padded = torch.nn.functional.pad(batch, (2, 2, 2, 2))
    for image, source in zip(out, padded):
        crops = [source[:, i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
        assert any(torch.equal(image, c) or torch.equal(image, c.flip(2)) for c in crops)
