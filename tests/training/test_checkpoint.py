"""Per-layer (per-block) checkpoints: ``checkpoint_dir`` on the CNN and the sequential
implicit estimators.

A fit killed at any point and rerun with the same directory ends equal to the
uninterrupted fit; files of another fit, truncated, altered or code-carrying files are
refused with an error naming the problem; a directory that cannot be written fails the fit
before any training.
"""

import hashlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression

from sklearn_greedy import (
    GreedyLayerwiseCNNClassifier,
    SequentialImplicitClassifier,
    SequentialImplicitRegressor,
)
from sklearn_greedy.training._checkpoint import MAGIC, data_digest, piece_name

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARAMS = dict(image_shape=(1, 8, 8), n_layers=3, width=8, max_epochs=2, random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300].astype(np.float32), y[:300]


@pytest.fixture(scope="module")
def uninterrupted(digits):
    return GreedyLayerwiseCNNClassifier(**PARAMS).fit(*digits)


def _without_seconds(history):
    return [[{k: v for k, v in r.items() if k != "seconds"} for r in layer] for layer in history]


def assert_same_fit(a, b, X):
    assert _without_seconds(a.history_) == _without_seconds(b.history_)
    np.testing.assert_allclose(a.decision_function(X), b.decision_function(X), atol=1e-6)
    np.testing.assert_array_equal(a.layer_scores_, b.layer_scores_)
    for p, q in zip(a.model_.state_dict().values(), b.model_.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_each_layer_is_written_and_a_rerun_resumes_after_the_last(digits, uninterrupted, tmp_path):
    X, y = digits
    clf = GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(X, y)
    assert sorted(os.listdir(tmp_path)) == [piece_name(j) for j in range(3)]
    assert_same_fit(clf, uninterrupted, X)
    os.remove(tmp_path / piece_name(2))
    os.remove(tmp_path / piece_name(1))
    resumed = GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path, verbose=1)
    resumed.fit(X, y)
    assert_same_fit(resumed, uninterrupted, X)
    assert sorted(os.listdir(tmp_path)) == [piece_name(j) for j in range(3)]


def test_a_finished_directory_gives_the_model_without_training(
    digits, uninterrupted, tmp_path, capsys
):
    X, y = digits
    GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(X, y)
    again = GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path, verbose=1).fit(X, y)
    assert capsys.readouterr().out.count("read from checkpoint_dir") == 3
    assert_same_fit(again, uninterrupted, X)


def test_random_state_none_reuses_the_first_runs_seed(digits, tmp_path):
    X, y = digits
    params = dict(PARAMS, random_state=None)
    first = GreedyLayerwiseCNNClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
    os.remove(tmp_path / piece_name(2))
    resumed = GreedyLayerwiseCNNClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert_same_fit(resumed, first, X)


def test_settings_that_do_not_change_a_layer_may_differ_on_resume(digits, uninterrupted, tmp_path):
    X, y = digits
    GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(X, y)
    os.remove(tmp_path / piece_name(2))
    other = dict(n_threads=2, ensemble=True, transform_layer=1, device="cpu")
    resumed = GreedyLayerwiseCNNClassifier(**PARAMS, **other, checkpoint_dir=tmp_path).fit(X, y)
    assert_same_fit(resumed.set_params(ensemble=False), uninterrupted, X)


@pytest.mark.parametrize("rounds", [1, 2])
def test_pruned_layers_resume(digits, tmp_path, rounds):
    X, y = digits
    params = dict(PARAMS, prune_to=4, prune_epochs=2, prune_rounds=rounds)
    full = GreedyLayerwiseCNNClassifier(**params).fit(X, y)
    GreedyLayerwiseCNNClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
    os.remove(tmp_path / piece_name(2))
    resumed = GreedyLayerwiseCNNClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert_same_fit(resumed, full, X)
    assert resumed.layer_widths_ == full.layer_widths_ == [4, 4, 4]
    for a, b in zip(resumed.pruning_, full.pruning_):
        np.testing.assert_array_equal(a["kept_channels"], b["kept_channels"])
        assert _without_seconds([a["history"]]) == _without_seconds([b["history"]])
        assert [r["width"] for r in a["rounds"]] == [r["width"] for r in b["rounds"]]
        for ra, rb in zip(a["rounds"], b["rounds"]):
            np.testing.assert_array_equal(ra["scores"], rb["scores"])
            assert ra["scores"].dtype == rb["scores"].dtype


def test_decoupled_writes_its_layers_at_the_end_and_restarts_when_unfinished(digits, tmp_path):
    X, y = digits
    params = dict(PARAMS, training="decoupled")
    full = GreedyLayerwiseCNNClassifier(**params).fit(X, y)
    GreedyLayerwiseCNNClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert len(os.listdir(tmp_path)) == 3
    again = GreedyLayerwiseCNNClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert_same_fit(again, full, X)
    os.remove(tmp_path / piece_name(2))  # an unfinished run: trained again from the start
    again = GreedyLayerwiseCNNClassifier(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert_same_fit(again, full, X)


# ------------------------------------------------------------------ refused


def test_other_parameters_are_refused_naming_what_differs(digits, tmp_path):
    X, y = digits
    GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(X, y)
    with pytest.raises(ValueError, match=r"another fit.*param lr: 0\.1 there, 0\.05 here"):
        GreedyLayerwiseCNNClassifier(**PARAMS, lr=0.05, checkpoint_dir=tmp_path).fit(X, y)
    with pytest.raises(ValueError, match="param random_state: 0 there, 1 here"):
        GreedyLayerwiseCNNClassifier(**dict(PARAMS, random_state=1), checkpoint_dir=tmp_path).fit(
            X, y
        )


@pytest.mark.parametrize(
    "change",
    [
        lambda X, y: (X * 2, y),  # rescaled
        lambda X, y: (X[::-1].copy(), y[::-1].copy()),  # reordered
        lambda X, y: (X[:-1], y[:-1]),  # one sample fewer
        lambda X, y: (X, np.where(y == 1, 2, y)),  # other labels
    ],
    ids=["scaled", "reordered", "shorter", "labels"],
)
def test_other_data_is_refused(digits, tmp_path, change):
    X, y = digits
    GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(X, y)
    X2, y2 = change(X, y)
    with pytest.raises(ValueError, match="belongs to another fit.*data"):
        GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(X2, y2)


def test_another_version_is_refused(digits, tmp_path, monkeypatch):
    X, y = digits
    GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(X, y)
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    with pytest.raises(ValueError, match="version torch"):
        GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(X, y)


def _fitted_dir(digits, tmp_path):
    GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*digits)
    return tmp_path / piece_name(1)


def test_a_truncated_file_is_refused(digits, tmp_path):
    path = _fitted_dir(digits, tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="piece-0001.ckpt.*corrupt.*checksum"):
        GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*digits)
    path.write_bytes(MAGIC + b"abc")
    with pytest.raises(ValueError, match="truncated"):
        GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*digits)


def test_an_altered_file_is_refused(digits, tmp_path):
    path = _fitted_dir(digits, tmp_path)
    raw = bytearray(path.read_bytes())
    raw[-50] ^= 0xFF  # one bit pattern of a weight
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*digits)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a sklearn-greedy checkpoint"):
        GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*digits)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch ran-code",))


def test_a_file_that_would_run_code_is_refused_without_running_it(digits, tmp_path, monkeypatch):
    path = _fitted_dir(digits, tmp_path)
    monkeypatch.chdir(tmp_path)
    # the right header and a valid checksum, over a pickle that runs a command when loaded
    header = path.read_bytes()[len(MAGIC) :].split(b"\n", 2)[1]
    body = pickle.dumps({"layer": _RunsCode()}, protocol=2)
    digest = hashlib.sha256(header + b"\n" + body).hexdigest().encode()
    path.write_bytes(MAGIC + digest + b"\n" + header + b"\n" + body)
    with pytest.raises(ValueError, match="piece-0001.ckpt' is refused.*could run code"):
        GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*digits)
    assert not (tmp_path / "ran-code").exists()


def test_an_unwritable_directory_fails_before_training(digits, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    calls = []
    monkeypatch.setattr("sklearn_greedy.cnn._grower.train_stage", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError, match="checkpoint_dir=.*a-file/ckpt.*cannot be written"):
        GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=blocker / "ckpt").fit(*digits)
    assert calls == []
    with pytest.raises(ValueError, match="cannot be written"):
        SequentialImplicitRegressor(checkpoint_dir=blocker / "ckpt").fit(*digits)


def test_warm_start_and_partial_fit_are_refused_with_a_checkpoint_dir(digits, tmp_path):
    X, y = digits
    clf = GreedyLayerwiseCNNClassifier(**PARAMS, warm_start=True, checkpoint_dir=tmp_path)
    clf.fit(X, y)
    with pytest.raises(ValueError, match="warm_start and partial_fit continue"):
        clf.set_params(n_layers=4).fit(X, y)
    assert clf.n_layers_fitted_ == 3  # the failed fit left the model as it was
    with pytest.raises(ValueError, match="checkpoint_dir resumes a fit from disk"):
        GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).partial_fit(X, y)


def test_a_fitted_estimator_clones_pickles_and_predicts_without_its_directory(digits, tmp_path):
    X, y = digits
    directory = tmp_path / "ckpt"
    clf = GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=str(directory)).fit(X, y)
    assert clone(clf).get_params()["checkpoint_dir"] == str(directory)
    blob = pickle.dumps(clf)
    shutil.rmtree(directory)
    loaded = pickle.loads(blob)
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    assert not directory.exists()


def test_data_digest_sees_the_data_not_its_container():
    X = np.random.RandomState(0).rand(100, 3, 4, 4).astype(np.float32)
    assert data_digest(X) == data_digest(X.copy())
    assert data_digest(X) != data_digest(X + 1e-3)
    assert data_digest(X) == data_digest(torch.from_numpy(X))  # the values, not the type
    assert data_digest(np.arange(10)) != data_digest(np.arange(10)[::-1])


# ------------------------------------------------------------------ killed processes

_CHILD = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {root!r})
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn_greedy import GreedyLayerwiseCNNClassifier
    import sklearn_greedy.training._checkpoint as ck

    if {stall_write!r}:
        replace = os.replace
        def stalled(src, dst):
            if str(dst).endswith("piece-0001.ckpt"):
                with open(src, "r+b") as f:  # half of the file written, then a kill
                    f.truncate(os.path.getsize(src) // 2)
                print("mid-write", flush=True)
                import time; time.sleep(600)
            return replace(src, dst)
        ck.os.replace = stalled
    X, y = load_digits(return_X_y=True)
    GreedyLayerwiseCNNClassifier(**{params!r}, checkpoint_dir={directory!r}, verbose=1).fit(
        X[:300].astype(np.float32), y[:300]
    )
    print("finished", flush=True)
    """
)


def _kill_when(tmp_path, marker, *, stall_write=False):
    code = _CHILD.format(root=ROOT, params=PARAMS, directory=str(tmp_path), stall_write=stall_write)
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )  # fmt: skip
    try:
        for line in proc.stdout:
            if marker in line:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.stdout.close()
    return proc.returncode


@pytest.mark.timeout(120)
def test_a_fit_killed_after_layer_2_resumes_to_the_uninterrupted_fit(
    digits, uninterrupted, tmp_path
):
    assert _kill_when(tmp_path, "layer 2/3") == -signal.SIGKILL
    assert {piece_name(0), piece_name(1)} <= set(os.listdir(tmp_path))
    resumed = GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*digits)
    assert_same_fit(resumed, uninterrupted, digits[0])


@pytest.mark.timeout(120)
def test_a_fit_killed_while_writing_keeps_the_previous_checkpoint(digits, uninterrupted, tmp_path):
    assert _kill_when(tmp_path, "mid-write", stall_write=True) == -signal.SIGKILL
    names = os.listdir(tmp_path)
    assert piece_name(0) in names and piece_name(1) not in names
    resumed = GreedyLayerwiseCNNClassifier(**PARAMS, checkpoint_dir=tmp_path).fit(*digits)
    assert_same_fit(resumed, uninterrupted, digits[0])


# ------------------------------------------------------------------ implicit models


def _strip(model):
    return _without_seconds(model.history_)


@pytest.mark.parametrize(
    "make",
    [
        lambda d: SequentialImplicitRegressor(
            n_states=12, n_blocks=4, random_state=0, checkpoint_dir=d
        ),
        lambda d: SequentialImplicitRegressor(
            n_states=12, n_blocks=4, solver="adam", max_epochs=3, random_state=0, checkpoint_dir=d
        ),
        lambda d: SequentialImplicitClassifier(
            n_states=8, n_blocks=4, max_epochs=3, random_state=0, checkpoint_dir=d
        ),
    ],
    ids=["lm", "adam", "classifier"],
)
def test_implicit_blocks_resume_to_the_uninterrupted_fit(tmp_path, make):
    if isinstance(make(None), SequentialImplicitClassifier):
        X, y = load_digits(return_X_y=True)
        X, y = X[:400], y[:400]
    else:
        X, y = make_regression(200, 6, noise=1.0, random_state=0)
    full = make(None).fit(X, y)
    make(tmp_path).fit(X, y)
    assert len(os.listdir(tmp_path)) == 4
    os.remove(tmp_path / piece_name(3))
    os.remove(tmp_path / piece_name(2))
    resumed = make(tmp_path).fit(X, y)
    assert _strip(resumed) == _strip(full)
    np.testing.assert_allclose(resumed.A_, full.A_)
    np.testing.assert_allclose(resumed.C_, full.C_)
    assert resumed.n_blocks_used_ == full.n_blocks_used_
    with pytest.raises(ValueError, match=r"another fit.*param alpha: [0-9.e-]+ there, 0.5 here"):
        make(tmp_path).set_params(alpha=0.5).fit(X, y)


# ------------------------------------------------------------------ several devices


@pytest.mark.timeout(120)
def test_a_data_parallel_fit_resumes_a_one_process_checkpoint_and_writes_from_rank_0(
    tmp_path, monkeypatch
):
    from _images import quadrant_images

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the workers inherit it
    X, y = quadrant_images(n=96, shape=(1, 8, 8))
    params = dict(n_layers=2, width=8, max_epochs=2, batch_size=16, batch_norm=False,
                  augment=False, n_threads=1, random_state=0, checkpoint_dir=tmp_path)  # fmt: skip
    single = GreedyLayerwiseCNNClassifier(**params, device="cpu").fit(X, y)
    os.remove(tmp_path / piece_name(1))
    several = GreedyLayerwiseCNNClassifier(**params, device=["cpu", "cpu"]).fit(X, y)
    assert sorted(os.listdir(tmp_path)) == [piece_name(0), piece_name(1)]
    ours, theirs = several.model_.state_dict(), single.model_.state_dict()
    for key, value in ours.items():
        if key.startswith(("layers.0.", "heads.0.", "stem.")):  # read back, not trained
            torch.testing.assert_close(value, theirs[key], rtol=0, atol=0)
        else:  # layer 2 trained on two ranks: the one-process layer up to rounding
            torch.testing.assert_close(value, theirs[key], rtol=1e-5, atol=1e-6)
    # the file rank 0 wrote resumes a one-process fit to the two-rank model
    again = GreedyLayerwiseCNNClassifier(**params, device="cpu").fit(X, y)
    for key, value in again.model_.state_dict().items():
        torch.testing.assert_close(value, ours[key], rtol=0, atol=0)


def test_a_streamed_fit_resumes_and_its_items_are_fingerprinted(digits, tmp_path):
    from torch.utils.data import TensorDataset

    X, y = digits
    images = torch.from_numpy(X.reshape(-1, 1, 8, 8))
    data = TensorDataset(images, torch.from_numpy(y))
    params = dict(PARAMS, image_shape=None)
    full = GreedyLayerwiseCNNClassifier(**params).fit(data)
    GreedyLayerwiseCNNClassifier(**params, checkpoint_dir=tmp_path).fit(data)
    os.remove(tmp_path / piece_name(2))
    resumed = GreedyLayerwiseCNNClassifier(**params, checkpoint_dir=tmp_path).fit(data)
    assert _without_seconds(resumed.history_) == _without_seconds(full.history_)
    other = TensorDataset(images.flip(-1), torch.from_numpy(y))  # mirrored images
    with pytest.raises(ValueError, match="data digest"):
        GreedyLayerwiseCNNClassifier(**params, checkpoint_dir=tmp_path).fit(other)
