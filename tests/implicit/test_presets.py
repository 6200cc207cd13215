"""The paper's own setting of the sequential implicit estimators (``implicit_paper_params``)
pinned by behaviour: what the optimizer is given, what each block keeps, and which weights
Algorithm 2's step (12) moves."""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification

import sklearn_greedy.implicit._torch_solvers as solvers
from sklearn_greedy import (
    SequentialImplicitClassifier,
    SequentialImplicitRegressor,
    implicit_paper_params,
)
from sklearn_greedy.implicit._sequential import SequentialBase

EPOCHS = 6


def _regression(n=120, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-2, 2, (n, 2))
    return X, np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2


def _spy(monkeypatch):
    """Record, for every engine run of a torch solver, its config and the module's head
    and hidden weights before and after it."""
    calls, train_stage = [], solvers.train_stage

    def snapshot(module):
        return {
            "head_prev": module.head_prev.weight.detach().clone(),
            "head_new": module.head_new.weight.detach().clone(),
            "bias": module.head_prev.bias.detach().clone(),
            "hidden": module.hidden.weight.detach().clone(),
            "hidden_bias": module.hidden.bias.detach().clone(),
        }

    def recording(module, stage, **kwargs):
        before = snapshot(module)
        result = train_stage(module, stage, **kwargs)
        calls.append(
            {"config": kwargs["config"], "before": before, "after": snapshot(module),
             "head": module.head(), "F": stage.X.detach().clone()}
        )  # fmt: skip
        return result

    monkeypatch.setattr(solvers, "train_stage", recording)
    return calls


def test_paper_params_are_the_papers_settings():
    one = implicit_paper_params(1)
    assert one == {
        "solver": "adam", "lr": 0.01, "lr_schedule": "constant", "max_epochs": 200,
        "n_iter_no_change": None, "alpha": 0.0, "refit_head": False,
        "keep_if_better": False, "select_blocks": False, "early_stopping": False,
        "n_components": None, "init": "default",
    }  # fmt: skip
    assert implicit_paper_params(2)["solver"] == "alternating"
    classification = implicit_paper_params(1, task="classification")
    assert "solver" not in classification and "refit_head" not in classification
    assert implicit_paper_params(1, max_epochs=50, lr=0.001)["max_epochs"] == 50
    # every value is a valid parameter of its estimator
    SequentialImplicitRegressor(**implicit_paper_params(2))._validate_params()
    SequentialImplicitClassifier(**classification)._validate_params()


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"algorithm": 3}, "1 or 2"),
        ({"algorithm": True}, "1 or 2"),
        ({"algorithm": 2, "task": "classification"}, "squared loss"),
        ({"task": "ranking"}, "'regression' or 'classification'"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"lr": -1.0}, "lr"),
    ],
)
def test_paper_params_refuse_what_the_paper_does_not_define(kwargs, words):
    with pytest.raises(ValueError, match=words):
        implicit_paper_params(**kwargs)


def test_algorithm_1_keeps_the_head_adam_left_uses_every_block_and_no_penalty(monkeypatch):
    calls = _spy(monkeypatch)
    X, y = _regression()
    params = implicit_paper_params(1, max_epochs=EPOCHS)
    reg = SequentialImplicitRegressor(6, 3, random_state=0, **params).fit(X, y)
    assert len(calls) == 3
    for call, head in zip(calls, reg._heads_std):
        config = call["config"]
        # no penalty, a constant step, every epoch run and the last one kept
        assert config.weight_decay == 0 and config.lr_step is None
        assert config.n_iter_no_change > EPOCHS and config.keep_best is False
        # the fitted head is exactly the one Adam left
        np.testing.assert_array_equal(head[0], call["head"][0])
        np.testing.assert_array_equal(head[1], call["head"][1])
    assert reg.n_blocks_used_ == 3
    assert [len(h) for h in reg.history_] == [EPOCHS] * 3
    assert {r["lr"] for h in reg.history_ for r in h} == {0.01}
    # every block's states reach the output
    for rows in np.split(np.arange(6), 3):
        assert np.abs(reg.C_[:, rows]).sum() > 0


def test_the_default_refits_the_head_after_adam(monkeypatch):
    """The departure that refit_head=True makes: the head is no longer Adam's."""
    calls = _spy(monkeypatch)
    X, y = _regression()
    reg = SequentialImplicitRegressor(6, 3, solver="adam", max_epochs=EPOCHS, random_state=0)
    reg.fit(X, y)
    assert not np.allclose(reg._heads_std[-1][0], calls[-1]["head"][0])


def test_algorithm_1_keeps_a_block_that_raises_the_loss(monkeypatch):
    """keep_if_better=False: the paper keeps every block as trained; the default's check
    runs once per block."""
    checked = []
    original = SequentialBase._keep_if_better

    def spy(self, *args):
        checked.append(1)
        return original(self, *args)

    monkeypatch.setattr(SequentialBase, "_keep_if_better", spy)
    X, y = _regression()
    params = implicit_paper_params(1, max_epochs=EPOCHS)
    SequentialImplicitRegressor(6, 3, random_state=0, **params).fit(X, y)
    assert checked == []
    SequentialImplicitRegressor(6, 3, solver="adam", max_epochs=EPOCHS, random_state=0).fit(X, y)
    assert checked == [1, 1, 1]


@pytest.mark.parametrize("refit_head", [False, True])
def test_algorithm_2_step_12_moves_only_the_blocks_weights(monkeypatch, refit_head):
    """Step (12) trains A~_i = [A_{i,:}, B_i] alone: the head C_1..C_i from (11), C_i
    included, is the same before and after it, while the block's weights move."""
    calls = _spy(monkeypatch)
    X, y = _regression()
    params = {**implicit_paper_params(2, max_epochs=EPOCHS), "n_alternating_iter": 2}
    params["refit_head"] = refit_head
    reg = SequentialImplicitRegressor(6, 3, random_state=0, **params).fit(X, y)
    assert len(calls) == 3 * 2
    for call in calls:
        for name in ("head_prev", "head_new", "bias"):
            torch.testing.assert_close(call["after"][name], call["before"][name], rtol=0, atol=0)
        assert not torch.equal(call["after"]["hidden"], call["before"]["hidden"])
    last_round = calls[1::2]
    for head, call in zip(reg._heads_std, last_round):
        same = np.allclose(head[0], call["head"][0], atol=1e-6)
        # the paper returns the last round's (11); refit_head adds a final (11)
        assert same != refit_head


def test_algorithm_2_head_is_least_squares_on_the_states_before_step_12(monkeypatch):
    """Step (11) is the exact unpenalised least squares of the targets on the states."""
    calls = _spy(monkeypatch)
    X, y = _regression()
    params = {**implicit_paper_params(2, max_epochs=EPOCHS), "n_alternating_iter": 1}
    reg = SequentialImplicitRegressor(2, 1, random_state=0, **params).fit(X, y)
    (call,) = calls
    F = call["F"].double()
    W, b = call["before"]["hidden"].double(), call["before"]["hidden_bias"].double()
    states = torch.relu(F @ W.T + b).numpy()
    target = (y - y.mean()) / y.std()
    design = np.hstack([states, np.ones((len(states), 1))])
    solution = np.linalg.lstsq(design, target, rcond=None)[0]
    np.testing.assert_allclose(reg._heads_std[0][0].ravel(), solution[:-1], atol=1e-5)


@pytest.mark.parametrize("init", ["default", "sample"])
def test_init_default_is_torchs_and_sample_puts_hyperplanes_through_samples(monkeypatch, init):
    calls = _spy(monkeypatch)
    X, y = _regression()
    SequentialImplicitRegressor(
        6, 3, solver="adam", init=init, max_epochs=2, random_state=0
    ).fit(X, y)  # fmt: skip
    for call in calls:
        W, b = call["before"]["hidden"], call["before"]["hidden_bias"]
        bound = 1 / np.sqrt(W.shape[1])  # torch's default: U(-1/sqrt(fan_in), ...)
        through = (call["F"] @ W.T + b).abs().min(dim=0).values  # closest sample per unit
        if init == "default":
            assert float(b.abs().max()) <= bound
        else:
            assert float(through.max()) < 1e-5


def test_classifier_paper_setting_runs_every_epoch_at_a_constant_step(monkeypatch):
    calls = _spy(monkeypatch)
    X, y = make_classification(n_samples=150, n_features=6, n_classes=3, n_informative=4,
                               random_state=0)  # fmt: skip
    params = implicit_paper_params(1, task="classification", max_epochs=EPOCHS)
    clf = SequentialImplicitClassifier(6, 3, random_state=0, **params).fit(X, y)
    assert [c["config"].weight_decay for c in calls] == [0.0] * 3
    assert [len(h) for h in clf.history_] == [EPOCHS] * 3
    assert {r["lr"] for h in clf.history_ for r in h} == {0.01}
    assert clf.n_blocks_used_ == 3
    for call, head in zip(calls, clf._heads_std):
        np.testing.assert_array_equal(head[0], call["head"][0])


def test_n_iter_no_change_none_runs_every_epoch_and_keeps_the_last():
    X, y = _regression()
    reg = SequentialImplicitRegressor(
        4, 2, solver="lm", max_epochs=7, n_iter_no_change=None, tol=10.0, random_state=0
    ).fit(X, y)
    # a tol this large would stop a block after its patience; None never stops early
    assert not reg.stopped_early_.any()
