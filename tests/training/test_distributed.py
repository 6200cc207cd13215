"""Data-parallel stage training and fits on several devices, on the CPU (gloo, 2 ranks).

Spawning a process and importing torch costs seconds on two cores: the stage scenarios
share one spawn (a module fixture), and each fit_on_devices test is one more.
"""

import json
import multiprocessing
import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from _images import quadrant_images
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

from sklearn_greedy import GreedyLayerwiseCNNClassifier
from sklearn_greedy.training._distributed import _use_sync_batchnorm, stage_trainer_class
from sklearn_greedy.training._engine import StageData, StageTrainer, TrainingConfig, train_stage
from sklearn_greedy.training._spawn import (
    _worker_estimator,
    check_devices,
    fit_on_devices,
    record_errors,
    run_workers,
)

WORLD = 2
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    # the workers inherit the environment: one thread each on a 2-core machine
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


# --------------------------------------------------------------------- stage scenarios
# Each runs one stage the same way in a process group of 2 ranks and in one process.
def _images(n, seed, shape=(2, 6, 6)):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, *shape, generator=gen)
    y = (X[:, 0, :3].mean(dim=(1, 2)) > X[:, 1, 3:].mean(dim=(1, 2))).long()
    return X, y


def _conv_stage(batch_norm=False):
    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(2, 4, 3, padding=1)]
    layers += [torch.nn.BatchNorm2d(4)] if batch_norm else []
    layers += [torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 36, 2)]
    return torch.nn.Sequential(*layers)


def _config(**kwargs):
    settings = {"max_epochs": 4, "batch_size": 16, "lr": 0.05, "momentum": 0.9}
    return TrainingConfig(**{**settings, **kwargs})


def _run(model, data, config, **kwargs):
    result = train_stage(
        model, data, loss_fn=F.cross_entropy, config=config,
        generator=torch.Generator().manual_seed(1), trainer_cls=stage_trainer_class(),
        **kwargs,
    )  # fmt: skip
    history = [{k: v for k, v in r.items() if k != "seconds"} for r in result.history]
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "history": history,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
    }


def _conv_scenario(rank):
    # a global batch of 16 (8 per rank), 64 samples, keep-best on the training loss
    X, y = _images(64, seed=0)
    return _run(_conv_stage(), StageData(X, y), _config(weight_decay=1e-3))


def _weighted_odd_scenario(rank):
    # global batches of 15 (8 + 7 samples), a merged last batch and sample weights: the
    # ranks' shares differ, which the loss weighting must make up for
    X, y = _images(95, seed=1)
    weight = torch.rand(95, generator=torch.Generator().manual_seed(2)) + 0.5
    data = StageData(X, y, sample_weight=weight)
    return _run(_conv_stage(), data, _config(batch_size=15))


def _early_stopping_scenario(rank):
    X, y = _images(80, seed=3)
    X_val, y_val = _images(40, seed=4)
    data = StageData(X, y, X_val=X_val, y_val=y_val)
    config = _config(max_epochs=40, lr=0.2, n_iter_no_change=3, tol=1e-3)
    return _run(_conv_stage(), data, config)


def _batchnorm_augment_scenario(rank):
    # per-rank BatchNorm on the CPU and per-rank augmentation: not the one-process run,
    # but the ranks must still agree
    X, y = _images(64, seed=5)
    X_val, y_val = _images(32, seed=6)
    data = StageData(X, y, X_val=X_val, y_val=y_val)

    def augment(batch, generator):
        return batch + 0.1 * torch.randn(batch.shape, generator=generator)

    return _run(_conv_stage(batch_norm=True), data, _config(), augment=augment)


def _batchnorm_statistics_scenario(rank):
    # no learning (lr ~ 0): the running mean is an average of batch means, linear in
    # them, so the ranks' statistics averaged equal the one-process run's (summed, they
    # would be twice it)
    X, y = _images(64, seed=7)
    config = _config(lr=1e-12, momentum=0.0, keep_best=False, max_epochs=2)
    return _run(_conv_stage(batch_norm=True), StageData(X, y), config)


def _different_data_scenario(rank):
    X, y = _images(64, seed=10 + rank)
    try:
        _run(_conv_stage(), StageData(X, y), _config())
    except ValueError as exc:
        return str(exc)
    return None


def _tiny_batch_scenario(rank):
    X, y = _images(8, seed=0)
    try:
        _run(_conv_stage(), StageData(X, y), _config(batch_size=1))
    except ValueError as exc:
        return str(exc)
    return None


def _alone_scenario(rank):
    # the engine without the data-parallel trainer, on one rank's own data only: it must
    # train in this process alone (as probes or a rank-0-only evaluation would), never
    # waiting in a collective for a rank that does not call it
    if rank == 1:
        return None
    X, y = _images(32, seed=20)
    result = train_stage(
        _conv_stage(), StageData(X, y), loss_fn=F.cross_entropy, config=_config(max_epochs=1),
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    return result.n_iter


def _sharded_passes_scenario(rank):
    # the evaluation passes every rank runs alike: each reads its share of the rows and
    # the counts are summed, so the score is the whole set's on every rank
    from sklearn_greedy.cnn._network import accuracy

    X, y = _images(50, seed=30)
    seen = []

    def logits(batch):
        seen.append(batch.clone())
        return torch.stack([batch[:, 0].mean(dim=(1, 2)), batch[:, 1].mean(dim=(1, 2))], 1)

    score = accuracy(logits, X, y, batch_size=7, sharded=True)
    rows = torch.cat(seen)
    # the validation pass of a stage: its score function sees only this rank's rows
    X_val, y_val = _images(31, seed=31)
    counted = []

    def score_fn(out, target):
        # the training batches are scored too: count the slices of y_val alone
        if target.untyped_storage().data_ptr() == y_val.untyped_storage().data_ptr():
            counted.append(target.shape[0])
        return (out.argmax(1) == target).sum()

    data = StageData(X, y, X_val=X_val, y_val=y_val)
    result = train_stage(
        _conv_stage(), data, loss_fn=F.cross_entropy, config=_config(max_epochs=2),
        generator=torch.Generator().manual_seed(1), trainer_cls=stage_trainer_class(),
        score_fn=score_fn,
    )  # fmt: skip
    return {
        "score": score,
        "rows": rows,
        "valid_rows_per_epoch": sum(counted) / 2,
        "valid_scores": [r["valid_score"] for r in result.history],
    }


def _diverging_scenario(rank):
    # the divergence check runs on the first batch shared out: every rank, each on its
    # half, must reach the one-process verdict (and none wait for a peer that raised)
    X, y = _images(32, seed=40)
    try:
        _run(_conv_stage(), StageData(X * 100, y), _config(lr=1e6, max_epochs=3))
    except ValueError as exc:
        return str(exc)
    return None


def _frozen_prefix(seen):
    torch.manual_seed(3)
    conv = torch.nn.Conv2d(2, 2, 3, padding=1).eval().requires_grad_(False)

    def prefix(batch):
        seen.append(batch.shape[0])
        return torch.relu(conv(batch))

    return prefix


def _sharded_cache_scenario(rank, batch_size=6):
    # a frozen prefix and no augmentation: its features are kept, each rank computing
    # and holding its half of the rows (train and validation), and training on the rows
    # of each global batch it holds; the step stays the one-process step
    X, y = _images(50, seed=50)
    X_val, y_val = _images(21, seed=51)
    data = StageData(X, y, X_val=X_val, y_val=y_val)
    seen = []
    config = _config(batch_size=batch_size, prefix_cache="device", eval_batch_size=8)
    result = _run(_conv_stage(), data, config, prefix=_frozen_prefix(seen))
    return {**result, "prefix_rows": sum(seen)}


def _empty_shares_scenario(rank):
    # batches of one sample: at every step one rank holds no row of the batch, and it
    # must still take part in the step (DDP's backward is collective) without moving
    return _sharded_cache_scenario(rank, batch_size=1)


def _sharded_estimator_scenario(rank):
    # a whole fit inside the group (torchrun's way): kept features between the layers and
    # two pruned layers (Taylor scores and the heads' fine-tuning) on each rank's half
    from sklearn_greedy.cnn import _grower

    kept = []
    cache_outputs = _grower.cache_outputs

    def recording(fn, X, batch_size, where, rows=None):
        out = cache_outputs(fn, X, batch_size, where, rows)
        rows = getattr(out, "rows", None)  # as numbers: the results travel by torch.save
        rows = None if rows is None else (rows.start, rows.stop)
        kept.append((type(out).__name__, rows, out.shape[0]))
        return out

    _grower.cache_outputs = recording
    try:
        X, y = quadrant_images(n=64, shape=(1, 8, 8))
        clf = _estimator(n_layers=3, prune_to=[4, None, 4], early_stopping=True)
        clf.fit(X, y)
    finally:
        _grower.cache_outputs = cache_outputs
    return {
        "kept": kept,
        "proba": torch.from_numpy(clf.predict_proba(X)),
        "layer_scores": clf.layer_scores_.tolist(),
        "pruned": [p is not None for p in clf.pruning_],
    }


SCENARIOS = {
    "sharded_cache": _sharded_cache_scenario,
    "empty_shares": _empty_shares_scenario,
    "sharded_estimator": _sharded_estimator_scenario,
    "conv": _conv_scenario,
    "weighted_odd": _weighted_odd_scenario,
    "early_stopping": _early_stopping_scenario,
    "batchnorm_augment": _batchnorm_augment_scenario,
    "batchnorm_statistics": _batchnorm_statistics_scenario,
    "different_data": _different_data_scenario,
    "tiny_batch": _tiny_batch_scenario,
    "alone": _alone_scenario,
    "sharded_passes": _sharded_passes_scenario,
    "diverging": _diverging_scenario,
}


def _stage_worker(rank, workdir):
    with record_errors(workdir, rank):
        torch.set_num_threads(1)
        dist.init_process_group(
            "gloo", init_method="file://" + os.path.join(workdir, "rendezvous"),
            rank=rank, world_size=WORLD,
        )  # fmt: skip
        assert stage_trainer_class().__name__ == "DistributedStageTrainer"
        results = {name: scenario(rank) for name, scenario in SCENARIOS.items()}
        torch.save(results, os.path.join(workdir, f"rank{rank}.pt"))
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """The scenarios' results on each of the 2 ranks."""
    workdir = str(tmp_path_factory.mktemp("stages"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        run_workers(_stage_worker, (workdir,), ["cpu"] * WORLD, workdir, timeout=90)
    return [torch.load(os.path.join(workdir, f"rank{r}.pt")) for r in range(WORLD)]


def _single(name):
    """The scenario in this process, without a process group."""
    assert not dist.is_initialized()
    with torch.random.fork_rng():
        return SCENARIOS[name](0)


def _assert_ranks_agree(results):
    first, second = results
    assert first["history"] == second["history"]  # bitwise: the records are global
    assert (first["best_epoch"], first["stopped_early"]) == (
        second["best_epoch"],
        second["stopped_early"],
    )
    for key, value in first["state"].items():
        torch.testing.assert_close(second["state"][key], value, rtol=0, atol=0)


def _assert_matches_single(result, single):
    assert result["best_epoch"] == single["best_epoch"]
    assert result["stopped_early"] == single["stopped_early"]
    assert len(result["history"]) == len(single["history"])
    for mine, one in zip(result["history"], single["history"]):
        assert mine["train_loss"] == pytest.approx(one["train_loss"], rel=RTOL)
        assert mine["train_score"] == pytest.approx(one["train_score"], abs=1e-9)
        assert mine["valid_score"] == pytest.approx(one["valid_score"], abs=1e-9)
    for key, value in single["state"].items():
        torch.testing.assert_close(result["state"][key], value, rtol=RTOL, atol=ATOL)


# --------------------------------------------------------------------- tests
@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["conv", "weighted_odd"])
def test_two_ranks_train_like_one_process_on_the_global_batch(ranks, name):
    results = [r[name] for r in ranks]
    _assert_ranks_agree(results)
    _assert_matches_single(results[0], _single(name))


@pytest.mark.timeout(120)
def test_early_stopping_and_keep_best_agree_across_ranks(ranks):
    results = [r["early_stopping"] for r in ranks]
    _assert_ranks_agree(results)
    single = _single("early_stopping")
    assert single["stopped_early"] and single["best_epoch"] < len(single["history"])
    _assert_matches_single(results[0], single)


@pytest.mark.timeout(120)
def test_batchnorm_and_augmentation_agree_across_ranks(ranks):
    results = [r["batchnorm_augment"] for r in ranks]
    _assert_ranks_agree(results)  # running statistics included
    # the running statistics kept are those of the best epoch (4 batches an epoch)
    assert results[0]["state"]["1.num_batches_tracked"] == 4 * results[0]["best_epoch"]


@pytest.mark.timeout(120)
def test_batchnorm_running_means_are_averaged_across_ranks_not_summed(ranks):
    results = [r["batchnorm_statistics"] for r in ranks]
    _assert_ranks_agree(results)
    single = _single("batchnorm_statistics")["state"]["1.running_mean"]
    mine = results[0]["state"]["1.running_mean"]
    assert single.abs().max() > 1e-2  # statistics that a sum would visibly double
    torch.testing.assert_close(mine, single, rtol=1e-5, atol=1e-6)


@pytest.mark.timeout(120)
def test_ranks_with_different_data_or_tiny_batches_fail_together(ranks):
    for rank in ranks:
        assert "different data, settings or random states" in rank["different_data"]
        assert "cannot be shared by 2 processes" in rank["tiny_batch"]


@pytest.mark.timeout(120)
def test_other_engine_calls_train_alone_inside_a_group(ranks):
    assert [result["alone"] for result in ranks] == [1, None]


def test_one_process_uses_the_plain_trainer():
    assert stage_trainer_class() is StageTrainer


def test_sync_batchnorm_swap_shares_the_state_and_is_undone():
    # SyncBatchNorm trains on CUDA only; its swap is checked here without a forward
    model = _conv_stage(batch_norm=True)
    original = model[1]
    restore = _use_sync_batchnorm(model)
    assert isinstance(model[1], torch.nn.SyncBatchNorm)
    assert model[1].weight is original.weight
    assert model[1].running_mean is original.running_mean
    restore()
    assert model[1] is original and type(original) is torch.nn.BatchNorm2d


# --------------------------------------------------------------------- fit_on_devices
def _our_children():
    """Child processes left alive, but joblib's reusable workers (loky), which an earlier
    test of the session may have started on purpose."""
    return [p for p in multiprocessing.active_children() if "Loky" not in type(p).__name__]


def _estimator(**kwargs):
    params = {
        "n_layers": 2, "width": 8, "max_epochs": 2, "batch_size": 16, "batch_norm": False,
        "augment": False, "device": "cpu", "n_threads": 1, "random_state": 0,
    }  # fmt: skip
    return GreedyLayerwiseCNNClassifier(**{**params, **kwargs})


@pytest.mark.timeout(120)
def test_fit_on_devices_equals_a_one_process_fit():
    X, y = quadrant_images(n=96, shape=(1, 8, 8))
    # through the estimator's device list, which calls fit_on_devices
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    fitted = _estimator(device=["cpu", "cpu"]).fit(X, y)
    assert fitted.get_params() == _estimator(device=["cpu", "cpu"]).get_params()
    assert not dist.is_initialized() and not _our_children()
    # torch's launcher handles these signals while the workers run, and gives them back
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers

    single = _estimator().fit(X, y)
    np.testing.assert_array_equal(fitted.best_epoch_, single.best_epoch_)
    for mine, one in zip(fitted.loss_curve_, single.loss_curve_):
        np.testing.assert_allclose(mine, one, rtol=RTOL)
    one_state = single.model_.state_dict()
    for key, value in fitted.model_.state_dict().items():
        torch.testing.assert_close(value, one_state[key], rtol=RTOL, atol=ATOL)
    proba = fitted.predict_proba(X)
    np.testing.assert_allclose(proba, single.predict_proba(X), atol=1e-5)
    assert fitted.score(X, y) > 0.8

    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict_proba(X), proba)


class _FailsOnRank1(GreedyLayerwiseCNNClassifier):
    """Fails in one worker only: its peer must not be left waiting in a collective."""

    def fit(self, X, y, **fit_params):
        if dist.get_rank() == 1:
            raise ValueError("injected failure")
        return super().fit(X, y, **fit_params)


class _KilledOnRank1(GreedyLayerwiseCNNClassifier):
    """Rank 1 is SIGKILLed a second into training (the OOM killer, a user's kill -9)."""

    def fit(self, X, y, **fit_params):
        if dist.get_rank() == 1:
            threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGKILL)).start()
        return super().fit(X, y, **fit_params)


@pytest.mark.timeout(400)
def test_a_killed_worker_is_named_as_the_cause_and_leaves_no_file(tmp_path, monkeypatch):
    """Its peer fails too, on the broken connection, and records that: the fit names the
    killed rank first. Torch's per-worker error files and the fit's directory are gone."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    X, y = quadrant_images(n=256, shape=(1, 8, 8))
    clf = _KilledOnRank1(**_estimator(max_epochs=10**4, n_iter_no_change=10**6).get_params())
    with pytest.raises(RuntimeError, match=r"^The worker of rank 1 .*signal SIGKILL"):
        fit_on_devices(clf, ["cpu", "cpu"], X, y, timeout=300)
    assert not _our_children()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(400)
def test_a_failing_worker_fails_the_fit_and_stops_the_others():
    X, y = quadrant_images(n=64, shape=(1, 8, 8))
    clf = _FailsOnRank1(**_estimator().get_params())
    # rank 0, waiting for rank 1 in a collective, is stopped by rank 1's failure: the fit
    # fails with rank 1's message, not with the timeout's (generous: a guard on a hang,
    # ten times the quiet run, so that a loaded machine is not a failure)
    with pytest.raises(RuntimeError, match="rank 1 .*failed: ValueError: injected failure"):
        fit_on_devices(clf, ["cpu", "cpu"], X, y, timeout=300)
    assert not _our_children()
    assert not hasattr(clf, "model_")


@pytest.mark.parametrize(
    "exitcode, how", [(1, r"exit code 1"), (-signal.SIGKILL, r"signal SIGKILL")]
)
def test_a_worker_that_dies_silently_is_named(tmp_path, monkeypatch, exitcode, how):
    """A worker that dies outside Python's reach (os._exit, a signal, out of memory)
    leaves no record: the launcher's report of the first failure names it. (Here its
    report comes without starting workers; a worker's death stopping the others is the
    launcher's, tested through a raising worker above.)"""
    import sklearn_greedy.training._spawn as spawn

    monkeypatch.setattr(spawn, "elastic_launch", _launcher_reporting_death(exitcode))
    message = rf"rank 1 \(device 'cpu'\) died without an error message \({how};"
    with pytest.raises(RuntimeError, match=message):
        run_workers(print, (), ["cpu", "cpu"], str(tmp_path))


def _launcher_reporting_death(exitcode):
    """A stand-in for ``elastic_launch`` whose launch reports, as torch's does, that rank 1
    died with ``exitcode`` and no error file; no worker is started."""

    def launch(config, entrypoint):
        def died(*args):
            failure = ProcessFailure(local_rank=1, pid=123, exitcode=exitcode, error_file="")
            raise ChildFailedError(name="worker", failures={1: failure})

        return died

    return launch


def test_a_worker_past_the_timeout_stops_itself_and_records_why(tmp_path, monkeypatch):
    """The time limit is each worker's own alarm (the launcher has none): a worker past
    it raises TimeoutError, which, recorded by rank, fails the fit as any worker's error
    does (a failing worker stops the others: tested above). Here in this process, as the
    launcher's entry point runs in a worker."""
    import sklearn_greedy.training._spawn as spawn

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(spawn, "_deadline", None)
    # pytest-timeout's alarm is SIGALRM too: put its handler and time left back after
    saved, (left, _) = signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match="did not finish within timeout=0.3 s"):
            spawn._as_rank(_sleep_as_rank, (30.0,), str(tmp_path), time.time() + 0.3, 0.3)
        assert time.monotonic() - start < 20  # the alarm ended the 30 s sleep
        # a worker that starts after its deadline stops at once
        with pytest.raises(TimeoutError):
            spawn._as_rank(_sleep_as_rank, (30.0,), str(tmp_path), time.time() - 1, 1)
    finally:
        signal.signal(signal.SIGALRM, saved)
        signal.setitimer(
            signal.ITIMER_REAL, max(left - (time.monotonic() - start), 1e-3) if left else 0
        )
    record = json.loads((tmp_path / "error-1.json").read_text())
    assert record["rank"] == 1 and record["summary"].startswith("TimeoutError")


def test_a_timeout_where_there_is_no_sigalrm_is_refused(monkeypatch):
    import sklearn_greedy.training._spawn as spawn

    monkeypatch.delattr(spawn.signal, "SIGALRM")
    clf = _estimator(device=["cpu", "cpu"], timeout=5.0)
    with pytest.raises(ValueError, match="timeout=5.0 needs SIGALRM"):
        clf.fit(*quadrant_images(n=32, shape=(1, 8, 8)))
    assert not _our_children()


def _sleep_as_rank(rank, seconds):
    time.sleep(seconds)


def test_the_estimators_timeout_reaches_the_launch(monkeypatch):
    import sklearn_greedy.training._spawn as spawn

    seen = {}

    def launch(fn, args, devices, workdir, timeout):  # instead of starting workers
        seen["timeout"] = timeout
        raise RuntimeError("stop here")

    monkeypatch.setattr(spawn, "run_workers", launch)
    X, y = quadrant_images(n=32, shape=(1, 8, 8))
    clf = _estimator(device=["cpu", "cpu"], timeout=12.5)
    with pytest.raises(RuntimeError, match="stop here"):
        clf.fit(X, y)
    assert seen == {"timeout": 12.5} and not hasattr(clf, "model_")


def test_each_rank_evaluates_its_share_and_the_scores_are_the_whole_sets(ranks):
    first, second = (r["sharded_passes"] for r in ranks)
    X, y = _images(50, seed=30)
    # disjoint halves, together every row once, in order
    assert len(first["rows"]) == len(second["rows"]) == 25
    torch.testing.assert_close(torch.cat([first["rows"], second["rows"]]), X)
    whole = float((torch.stack([X[:, 0].mean((1, 2)), X[:, 1].mean((1, 2))], 1).argmax(1) == y)
                  .float().mean())  # fmt: skip
    assert first["score"] == second["score"] == pytest.approx(whole)
    # the validation pass: 31 rows shared 15 + 16, one score recorded alike on both
    assert {first["valid_rows_per_epoch"], second["valid_rows_per_epoch"]} == {15, 16}
    assert first["valid_scores"] == second["valid_scores"]
    single = _single("sharded_passes")
    assert single["valid_rows_per_epoch"] == 31
    assert single["valid_scores"] == pytest.approx(first["valid_scores"])


def test_divergence_is_judged_alike_on_every_rank(ranks):
    first, second = (r["diverging"] for r in ranks)
    assert first is not None and "diverged" in first and "Lower lr" in first
    assert first == second
    assert "diverged" in _single("diverging")


def test_random_state_is_drawn_once_for_all_ranks():
    clf = _estimator(random_state=None)
    work = _worker_estimator(clf, clf.get_params(deep=False))
    assert isinstance(work.random_state, int) and clf.random_state is None


# --------------------------------------------------------------------- check_devices
def test_check_devices_accepts_repeated_cpus():
    assert check_devices(("cpu", torch.device("cpu"))) == ["cpu", "cpu"]


@pytest.mark.parametrize(
    "devices, message",
    [
        ("cpu", "list or tuple"),
        (["cpu"], "at least two devices"),
        (["cpu", "not-a-device"], "not a torch device name"),
        (["cpu", "cuda:0"], "all be of one type"),
        (["meta", "meta"], "CUDA devices .* or on the CPU"),
        (["cuda", "cuda"], "with its index"),
        (["cuda:0", "cuda:0"], "may appear once"),
        (["cuda:0", "cuda:1000"], "not found"),
    ],
)
def test_check_devices_rejects(devices, message):
    with pytest.raises(ValueError, match=message):
        check_devices(devices)


def test_a_device_list_is_a_parameter_for_fit_only():
    """``device=[...]`` clones as given and reaches fit_on_devices (tested above, through
    the same call); steps that train on one device refuse it before spawning anything."""
    from sklearn.base import clone

    X, y = quadrant_images(n=32, shape=(1, 8, 8))
    clf = _estimator().set_params(device=["cpu", "cpu"])
    assert clone(clf).device == ["cpu", "cpu"]
    with pytest.raises(ValueError, match="single device"):
        clone(clf).partial_fit(X, y)
    with pytest.raises(ValueError, match="decoupled"):
        clone(clf).set_params(training="decoupled").fit(X, y)
    assert not _our_children()


@pytest.mark.parametrize(
    "view", [lambda X: X, lambda X: X[5:25, None], lambda X: X[::-2].transpose(0, 2, 1)]
)
def test_a_memmap_travels_to_the_workers_as_its_file_not_its_bytes(tmp_path, monkeypatch, view):
    """The payload of a several-device fit names a memmap's file (a few hundred bytes
    whatever its size); each worker maps the same rows again, a memmap still (so it is
    still read batch by batch)."""
    import sklearn_greedy.training._spawn as spawn

    path = tmp_path / "X.dat"
    X = np.memmap(path, dtype=np.float32, mode="w+", shape=(40, 8, 8), offset=64)
    X[:] = np.random.RandomState(0).rand(*X.shape)
    X = view(X)
    seen = {}

    def read_payload(fn, args, devices, workdir, timeout):  # instead of spawning
        with open(os.path.join(workdir, "payload.pkl"), "rb") as fh:
            seen["bytes"] = os.path.getsize(fh.name)
            pickle.load(fh)
            _, seen["X"] = pickle.load(fh), spawn._opened(pickle.load(fh))
        raise RuntimeError("stop here")

    monkeypatch.setattr(spawn, "run_workers", read_payload)
    clf = GreedyLayerwiseCNNClassifier(n_layers=1, width=2, max_epochs=1)
    with pytest.raises(RuntimeError, match="stop here"):
        fit_on_devices(clf, ["cpu", "cpu"], X, np.arange(len(X)) % 2)
    assert seen["bytes"] < 4096 < X.nbytes
    assert isinstance(seen["X"], np.memmap)
    assert seen["X"].shape == X.shape and seen["X"].strides == X.strides
    np.testing.assert_array_equal(seen["X"], X)


def test_only_rank_0_prints_the_verbose_lines(capsys, monkeypatch):
    import sklearn_greedy.cnn._classifier as classifier

    X, y = quadrant_images(n=40)
    params = dict(n_layers=1, width=2, max_epochs=2, verbose=2)
    for main, printed in ((True, True), (False, False)):
        monkeypatch.setattr(classifier, "is_main_rank", lambda main=main: main)
        GreedyLayerwiseCNNClassifier(**params).fit(X, y)
        out = capsys.readouterr().out
        assert ("layer 1/1" in out) is printed, out


def test_a_script_without_main_guard_is_named(tmp_path, monkeypatch):
    """A spawned worker imports its parent's script; without the guard, the script's fit
    starts again inside the worker: the worker says so, and the parent names the cause
    instead of "died without an error message"."""
    import multiprocessing

    import sklearn_greedy.training._spawn as spawn

    # the worker's side: a fit started while this process is being spawned
    monkeypatch.setenv(spawn._WORKDIR_ENV, str(tmp_path))
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    clf = GreedyLayerwiseCNNClassifier(n_layers=1, device=["cpu", "cpu"])
    with pytest.raises(RuntimeError, match='no `if __name__ == "__main__":` guard'):
        clf.fit(*quadrant_images(n=20))
    assert (tmp_path / spawn._UNGUARDED).exists()
    monkeypatch.delattr(multiprocessing.current_process(), "_inheriting")

    # the parent's side: the launcher reports a worker that died leaving that mark
    monkeypatch.setattr(spawn, "elastic_launch", _launcher_reporting_death(1))
    with pytest.raises(RuntimeError, match="guard: each worker ran the script's top level"):
        run_workers(print, (), ["cpu", "cpu"], str(tmp_path))


def test_workers_stop_and_clean_up_when_their_parent_is_killed(tmp_path):
    """A SIGKILLed parent leaves no worker training on and no copy of X behind: each
    worker watches its parent and, orphaned, removes the fit's directory and exits."""
    import subprocess
    import sys

    script = (
        "import numpy as np\n"
        "from sklearn_greedy import GreedyLayerwiseCNNClassifier\n"
        "if __name__ == '__main__':\n"
        "    X = np.random.RandomState(0).rand(2000, 1, 8, 8).astype(np.float32)\n"
        "    GreedyLayerwiseCNNClassifier(n_layers=3, width=8, max_epochs=10**4,\n"
        "        n_iter_no_change=10**6, device=['cpu', 'cpu']).fit(X, np.arange(2000) % 2)\n"
    )
    (tmp_path / "fit.py").write_text(script)
    parent = subprocess.Popen(
        [sys.executable, "fit.py"], cwd=tmp_path, env=dict(os.environ, TMPDIR=str(tmp_path)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def workers():
        found = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == parent.pid:  # the parent's children
                found.append(int(entry))
        return found

    def workdirs():
        prefixes = ("sklearn-greedy-ddp-", "pytorch-errorfile", "torchelastic_")
        return [p for p in tmp_path.iterdir() if p.name.startswith(prefixes)]

    def training():  # both workers joined the process group: they run the fit
        return any((d / "joined-1").exists() for d in workdirs() if d.is_dir())

    try:
        deadline = time.monotonic() + 120
        while not training() and time.monotonic() < deadline:
            assert parent.poll() is None, "the fit ended before it could be killed"
            time.sleep(0.5)
        time.sleep(1.0)
        children = workers()
        assert training() and len(children) >= 2
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        workdirs() or any(os.path.exists(f"/proc/{pid}") and _running(pid) for pid in children)
    ):
        time.sleep(0.5)
    assert not workdirs()
    assert not [pid for pid in children if os.path.exists(f"/proc/{pid}") and _running(pid)]


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting for its (killed) parent's reaper."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["sharded_cache", "empty_shares"])
def test_kept_features_are_sharded_and_train_like_one_process(ranks, name):
    results = [r[name] for r in ranks]
    _assert_ranks_agree(results)
    single = _single(name)
    _assert_matches_single(results[0], single)
    # one process runs the prefix over the 50 + 21 rows once (the divergence check reads
    # the kept features too); each rank over its half of them only
    assert single["prefix_rows"] == 71
    assert [r["prefix_rows"] for r in results] == [25 + 10, 25 + 11]


@pytest.mark.timeout(120)
def test_a_fit_in_a_group_keeps_and_prunes_on_each_ranks_shard(ranks):
    results = [r["sharded_estimator"] for r in ranks]
    single = _single("sharded_estimator")
    # each rank computed and kept its half of the rows, train and validation, after
    # each layer
    for rank, result in enumerate(results):
        train, valid = ((rank * n // 2, (rank + 1) * n // 2) for n in (57, 7))
        assert result["kept"] == [("RowShard", train, 57), ("RowShard", valid, 7)] * 3
    assert {kind for kind, _, _ in single["kept"]} == {"Tensor"}
    assert results[0]["pruned"] == single["pruned"] == [True, False, True]
    np.testing.assert_array_equal(results[0]["proba"], results[1]["proba"])
    np.testing.assert_allclose(results[0]["proba"], single["proba"], atol=1e-4)
    np.testing.assert_allclose(results[0]["layer_scores"], single["layer_scores"], atol=1e-9)
