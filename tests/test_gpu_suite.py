"""The GPU suite runs end to end on the CPU (``--smoke``), so the prepared device command
cannot rot between the rare sessions that are lent a GPU."""

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _images import tiny_cifar_batches

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "benchmarks" / "gpu_suite.py"
PARTS = ("cuda_tests", "stage_throughput", "memory", "cifar10")
SCALE_PARTS = ("streaming", "imagenet_stage")
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
    "streaming_throughput_ratio",
    "imagenet_stage_peak_gib",
    "wall_s",
)


@pytest.fixture
def gpu_suite(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import gpu_suite

    return gpu_suite


@pytest.mark.timeout(450)
def test_smoke_run_goes_through_every_part_and_writes_the_report(tmp_path, gpu_suite, capsys):
    # in this process, through the command line's own main(argv), as the budget tests
    # below: a subprocess would only add its imports (torch, the package: about 5 s)
    data = tmp_path / "cifar"
    data.mkdir()
    tiny_cifar_batches(data)
    out = tmp_path / "out"
    threads = torch.get_num_threads()
    try:
        gpu_suite.main(["--smoke", "--out", str(out), "--data-dir", str(data), "--scale"])
    finally:
        torch.set_num_threads(threads)  # a smoke run computes on one thread
    output = capsys.readouterr().out
    report = json.loads(next(out.glob("gpu_suite-*-smoke.json")).read_text())
    md = next(out.glob("gpu_suite-*-smoke.md")).read_text()
    assert set(HEADLINE) <= set(report) and report["smoke"] is True and report["scale"] is True
    for part in PARTS + SCALE_PARTS:
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
    # the A/B of the auxiliary width: the authors' script's half of the paper's M~
    ab = cifar["authors_aux_width"]
    assert ab["aux_width"] * 2 == cifar["aux_width"]
    assert ab["status"] in ("done", "partial") or ab["status"].startswith("not run")
    if ab["status"] == "done":
        assert len(ab["per_layer_test_accuracy"]) == ab["n_layers"] == 4
        assert "A/B of the auxiliary width: M~ =" in md
    assert 0 <= report["cifar10_k3_ensemble"] <= 1 and report["cifar10_k3_fit_s"] > 0
    assert report["wall_s"] > 0  # seconds are not asserted: the machine may be loaded
    for text in (report["device"], report["torch"], report["commit"], report["date"]):
        assert text in md
    assert report["command"] in md and "| part | status |" in md
    assert "| 3 | plain PyTorch loop |" in md and "| 4 |" in md
    _check_scale_parts(report, md)


def _check_scale_parts(report, md):
    """Parts e and f of a smoke run: python batches have no image folder, so the array's
    rows are written as PNG files and streamed; peak memory is not measured off CUDA."""
    streaming = report["streaming"]
    assert streaming["source"].startswith("PNG files written from")
    assert streaming["images_match"] is True and streaming["n_images"] == 96
    assert streaming["num_workers"] >= 1 and streaming["pin_memory"] is True
    ratio = report["streaming_throughput_ratio"]
    assert isinstance(ratio, float) and ratio > 0
    assert ratio == pytest.approx(
        streaming["stream"]["images_per_s"] / streaming["array"]["images_per_s"]
    )
    imagenet = report["imagenet_stage"]
    assert imagenet["completed"] is True and imagenet["n_images"] == 16
    assert imagenet["images_per_s"] > 0 and imagenet["batch_size"] == 8
    if torch.cuda.is_available() and report["device_memory_gib"] is not None:
        assert 0 < report["imagenet_stage_peak_gib"] <= imagenet["device_memory_gib"]
    else:
        assert report["imagenet_stage_peak_gib"] is None
        assert imagenet["note"] == "not measured off CUDA"
    assert "| ImageFolderDataset |" in md and "ImageNet-shaped stage: layer 1" in md
    assert "streamed / array images/s, 1st k=3 stage >= 0.80x" in md


@pytest.mark.parametrize("scale", [False, True])
@pytest.mark.timeout(450)
def test_a_budget_too_small_skips_every_part_and_still_reports(tmp_path, scale, gpu_suite):
    # in this process: nothing runs, so a subprocess would only add the imports
    threads = torch.get_num_threads()
    try:
        gpu_suite.main(
            ["--smoke", "--out", str(tmp_path), "--budget-s", "0.5", *(["--scale"] * scale)]
        )
    finally:
        torch.set_num_threads(threads)  # a smoke run computes on one thread
    report = json.loads(next(tmp_path.glob("gpu_suite-*-smoke.json")).read_text())
    md = next(tmp_path.glob("gpu_suite-*-smoke.md")).read_text()
    parts = PARTS + SCALE_PARTS if scale else PARTS
    for part in parts:
        assert report[part]["status"] == "skipped"
    assert all(part not in report for part in set(PARTS + SCALE_PARTS) - set(parts))
    for key in HEADLINE[6:-1]:
        assert report[key] is None
    assert md.count("| skipped |") == len(parts)
    assert ("Streaming throughput: skipped" in md) is scale


def test_scale_leaves_the_shares_of_the_other_parts_in_proportion(gpu_suite):
    assert gpu_suite.shares(False) == gpu_suite.SHARES
    shares = gpu_suite.shares(True)
    assert list(shares) == [*PARTS, *SCALE_PARTS]
    assert sum(shares.values()) == pytest.approx(1)
    # at the documented --budget-s 480, parts a-d keep the 420 s they have without --scale
    assert sum(shares[name] for name in PARTS) * 480 == pytest.approx(420)
    for name in PARTS:
        assert shares[name] / shares["cifar10"] == pytest.approx(
            gpu_suite.SHARES[name] / gpu_suite.SHARES["cifar10"]
        )


def test_streamed_rows_are_matched_to_the_folder_by_class_and_order(gpu_suite):
    # the folder lists class 0's three files, then class 1's two; the array holds the
    # first two of class 0 and two of class 1, interleaved (python batches' order)
    targets = np.array([0, 0, 0, 1, 1])
    labels = np.array([1, 0, 1, 0, 1])
    assert gpu_suite.matching_items(targets, labels).tolist() == [3, 0, 4, 1, -1]


def test_streamed_images_are_capped_by_the_time_left_or_skipped(gpu_suite):
    params = {"max_epochs": 3, "batch_size": 10}  # 4 passes of each fit

    def images(seconds_left):
        deadline = gpu_suite.Deadline(time.perf_counter() + seconds_left)
        return gpu_suite.streaming_images(deadline, 1000, params, 100.0, 100.0)

    fixed = 2 * gpu_suite.FIT_OVERHEAD_S + 4 * gpu_suite.LOADER_START_S  # 8 s
    n, estimate = images(fixed + 20.0)  # 0.08 s per image: 250 images
    assert 240 <= n <= 250 and estimate == pytest.approx(fixed + 0.08 * n)
    assert images(1000.0)[0] == 1000
    with pytest.raises(gpu_suite.Skipped, match="streaming 20 images"):
        images(fixed + 1.0)


def test_a_cuda_out_of_memory_error_is_recorded_not_raised(gpu_suite, monkeypatch):
    def out_of_memory(self, X, y=None):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9 GiB\nmore")

    monkeypatch.setattr(gpu_suite.GreedyLayerwiseCNNClassifier, "fit", out_of_memory)
    result = gpu_suite.imagenet_fit({"n_layers": 1}, [], torch.device("cpu"))
    assert result["completed"] is False and result["peak_gib"] is None
    assert result["note"] == "CUDA out of memory: CUDA out of memory. Tried to allocate 9 GiB"


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


def test_parts_variants_and_the_cifar_variant_are_chosen_by_name(gpu_suite):
    # --parts: the named parts' shares, in proportion, summing to 1
    asked = gpu_suite.asked_shares(gpu_suite.SHARES, "memory, cifar10")
    assert list(asked) == ["memory", "cifar10"] and sum(asked.values()) == pytest.approx(1)
    assert asked["cifar10"] / asked["memory"] == pytest.approx(0.6 / 0.05)
    with pytest.raises(SystemExit, match="unknown or no part names"):
        gpu_suite.asked_shares(gpu_suite.SHARES, "cifar")
    # --variants: part b's settings by label, compile=True replaced by the sizes' choice
    sizes = gpu_suite.dataclasses.replace(
        gpu_suite.SMOKE, variants=("tf32", "bf16+channels_last+compile")
    )
    variants = gpu_suite.engine_variants(sizes)
    assert variants == {
        "tf32": {"precision": "tf32"},
        "bf16+channels_last+compile": {
            "precision": "bf16", "channels_last": True, "compile": {"backend": "eager"},
        },
    }  # fmt: skip
    # --cifar-variant: part d's settings, and the label its time estimate reads back
    sizes = gpu_suite.dataclasses.replace(gpu_suite.FULL, cifar_variant="bf16+channels_last")
    settings = gpu_suite.cifar_settings(sizes)
    assert settings == {"precision": "bf16", "channels_last": True}
    assert gpu_suite.variant_label({"precision": "bf16", **settings}) == "bf16+channels_last"
    assert gpu_suite.variant_label({"precision": "bf16"}) == "bf16"
    assert gpu_suite.variant_label({"precision": "auto"}) is None
    assert gpu_suite.cifar_settings(gpu_suite.FULL) == {}


@pytest.mark.timeout(300)
def test_cifar_fit_resumes_from_its_state_file_in_a_second_command(
    tmp_path, gpu_suite, monkeypatch
):
    data = tmp_path / "cifar"
    data.mkdir()
    tiny_cifar_batches(data)
    state = tmp_path / "state.pkl"
    argv = ["--smoke", "--parts", "cifar10", "--data-dir", str(data), "--cifar-state", str(state)]
    fit_layers = gpu_suite.fit_layers
    trained = []

    def first_command(clf, X, y):  # the command's time runs out during layer 3
        if clf.n_layers == 3:
            raise gpu_suite.DeadlineExceeded("layer 3")
        trained.append(clf.n_layers)
        return fit_layers(clf, X, y)

    threads = torch.get_num_threads()
    try:
        monkeypatch.setattr(gpu_suite, "fit_layers", first_command)
        first = gpu_suite.main([*argv, "--out", str(tmp_path / "first")])["cifar10"]
        assert first["stopped"] == "layer 3 stopped at the time limit"
        assert len(first["layer_fit_s"]) == 2 and "final" not in first and state.exists()
        # the time left goes to the next command's layers, not to the A/B
        assert first["authors_aux_width"]["status"].startswith("not run: part d's fit")

        trained.clear()
        monkeypatch.setattr(gpu_suite, "fit_layers", lambda clf, X, y: (
            trained.append(clf.n_layers), fit_layers(clf, X, y))[1])  # fmt: skip
        second = gpu_suite.main([*argv, "--out", str(tmp_path / "second")])["cifar10"]
        resumed_fits = list(trained)
    finally:
        torch.set_num_threads(threads)
    assert second["resumed_layers"] == 2 and "stopped" not in second
    assert second["layer_fit_s"][:2] == first["layer_fit_s"] and len(second["layer_fit_s"]) == 4
    assert second["fit_s"] == pytest.approx(sum(second["layer_fit_s"]))
    assert len(second["per_layer_test_accuracy"]) == 4 and "final" in second
    # the second command went on at layer 3 without a warm-up fit (its A/B of the
    # auxiliary width follows)
    assert resumed_fits[:2] == [3, 4]
    # a file of other settings, or one cut short, starts afresh rather than mixing fits
    params = {"n_layers": 4, "precision": "auto"}
    saved = gpu_suite.CifarState(str(state), params)
    saved.save("a model", [1.0, 2.0])
    assert saved.load() == ("a model", [1.0, 2.0])
    assert gpu_suite.CifarState(str(state), {**params, "precision": "bf16"}).load() == (None, [])
    state.write_bytes(state.read_bytes()[:100])
    assert saved.load() == (None, [])
