"""Tests of the implicit models: the math (implicit/_model.py), the block solvers
(implicit/_solvers.py, implicit/_torch_solvers.py) and the estimators' training
(implicit/_sequential.py, implicit/_end_to_end.py).
The scikit-learn API details (transformers, parameters, numerics) are in
tests/implicit/test_api.py."""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone, is_classifier
from sklearn.datasets import make_classification, make_regression
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_greedy import (
    EndToEndImplicitClassifier,
    EndToEndImplicitRegressor,
    SequentialImplicitClassifier,
    SequentialImplicitRegressor,
)
from sklearn_greedy.implicit import _sequential as sequential_module
from sklearn_greedy.implicit import _torch_solvers as solvers_module
from sklearn_greedy.implicit._model import (
    activation_numpy,
    add_self_loops,
    block_sizes,
    check_well_posed,
    fixed_point_iteration,
    forward_substitution,
    paper_slices,
    pf_eigenvalue,
    project_rows_l1,
    ridge_lstsq,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


FAST = dict(max_epochs=15, lr=0.05, random_state=0, device="cpu")


def _regression(n=120, p=3, q=None, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-2, 2, (n, p))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] ** 2
    if q:
        y = np.column_stack([y, np.cos(X[:, 2])])
    return X, y


def _random_strict(sizes, p, seed=0):
    rng = np.random.RandomState(seed)
    n = sum(sizes)
    A = np.zeros((n, n))
    for i, rows in enumerate(paper_slices(sizes)):
        if i:
            A[rows, rows.stop :] = rng.randn(rows.stop - rows.start, n - rows.stop)
    return A, rng.randn(n, p), rng.randn(n)


# --- the math ---------------------------------------------------------------------------


def test_block_sizes_remainder_in_last_block():
    assert block_sizes(30, 10) == [3] * 10
    assert block_sizes(11, 3) == [3, 3, 5]
    with pytest.raises(ValueError, match="n_blocks=5 must be between 1 and n_states=4"):
        block_sizes(4, 5)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sigmoid"])
def test_forward_substitution_equals_fixed_point_iteration(activation):
    sizes = block_sizes(11, 4)
    A, B, b = _random_strict(sizes, 3)
    U = np.random.RandomState(1).randn(50, 3)
    X_sub = forward_substitution(A, B, U, activation, sizes, state_intercept=b)
    X_fp = fixed_point_iteration(A, B, U, activation, state_intercept=b)
    np.testing.assert_allclose(X_sub, X_fp, rtol=1e-10, atol=1e-10)
    # and it solves the model's equation x = phi(A x + B u + b), row by row
    np.testing.assert_allclose(
        X_sub, activation_numpy(activation, X_sub @ A.T + U @ B.T + b), rtol=1e-10, atol=1e-12
    )


def test_a_non_triangular_A_is_refused():
    """Forward substitution is exact only for an upper block triangular A: a coupling
    from a later block back to an earlier one (below the diagonal) is refused."""
    sizes = block_sizes(6, 3)
    A, B, b = _random_strict(sizes, 1)
    U = np.random.RandomState(3).randn(4, 1)
    forward_substitution(A, B, U, "tanh", sizes, state_intercept=b)  # strict: fine
    A[5, 0] = 0.5
    with pytest.raises(ValueError, match="not upper block triangular"):
        forward_substitution(A, B, U, "tanh", sizes, state_intercept=b)


def test_pf_eigenvalue_and_well_posedness():
    sizes = block_sizes(30, 10)
    A, _, _ = _random_strict(sizes, 1)
    assert pf_eigenvalue(A) == 0.0
    dense = np.full((3, 3), 0.5)  # |A| has eigenvalue 1.5
    assert pf_eigenvalue(dense) == pytest.approx(1.5)
    with pytest.raises(ValueError, match=r"lambda_PF\(\|A\|\) = 1.5 >= 1"):
        check_well_posed(dense, "relu")
    with pytest.raises(ValueError, match="not certified well-posed"):
        fixed_point_iteration(dense, np.ones((3, 1)), np.ones((2, 1)), "tanh")
    with pytest.raises(ValueError, match="activation must be one of"):
        check_well_posed(np.zeros((2, 2)), "gelu")


def test_self_loop_export_is_exact_for_relu_and_refused_otherwise():
    sizes = block_sizes(12, 4)
    A, B, b = _random_strict(sizes, 2)
    U = np.random.RandomState(2).randn(80, 2)
    A_loop, B_loop, b_loop = add_self_loops(A, B, b, "relu", 0.7)
    assert np.all(np.diag(A_loop) == 0.7)
    assert pf_eigenvalue(A_loop) == pytest.approx(0.7)
    strict = forward_substitution(A, B, U, "relu", sizes, state_intercept=b)
    loop_sub = forward_substitution(A_loop, B_loop, U, "relu", sizes, state_intercept=b_loop)
    loop_fp = fixed_point_iteration(A_loop, B_loop, U, "relu", state_intercept=b_loop)
    np.testing.assert_allclose(loop_sub, strict, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(loop_fp, strict, rtol=1e-8, atol=1e-9)
    with pytest.raises(ValueError, match="only for activation='relu'"):
        add_self_loops(A, B, b, "tanh")
    with pytest.raises(ValueError, match="closed form only for activation='relu'"):
        forward_substitution(A_loop, B_loop, U, "sigmoid", sizes)


def test_ridge_lstsq_is_exact():
    rng = np.random.RandomState(0)
    F, Y = rng.randn(60, 5), rng.randn(60, 2)
    W, c = ridge_lstsq(F, Y, alpha=0.0)
    sol, *_ = np.linalg.lstsq(np.column_stack([F, np.ones(60)]), Y, rcond=None)
    np.testing.assert_allclose(W, sol[:5].T, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c, sol[5], rtol=1e-10, atol=1e-12)
    # with a ridge penalty: the normal equations of the centred problem hold
    W, c = ridge_lstsq(F, Y, alpha=3.0)
    Fc, Yc = F - F.mean(0), Y - Y.mean(0)
    np.testing.assert_allclose((Fc.T @ Fc + 3.0 * np.eye(5)) @ W.T, Fc.T @ Yc, atol=1e-10)


@pytest.mark.parametrize("solver", ["alternating", "lm"])
def test_least_squares_head_is_exact(solver):
    X, y = _regression()
    reg = SequentialImplicitRegressor(
        n_states=6,
        n_blocks=3,
        solver=solver,
        n_alternating_iter=2,
        alpha=0.0,
        select_blocks=False,
        **FAST,
    ).fit(X, y)
    states = reg.transform(X)
    sol, *_ = np.linalg.lstsq(np.column_stack([states, np.ones(len(X))]), y, rcond=None)
    # a block is kept only if it helps; if all were kept, C_ is the least-squares solution
    pred = reg.predict(X)
    best = np.column_stack([states, np.ones(len(X))]) @ sol
    assert np.mean((pred - y) ** 2) == pytest.approx(np.mean((best - y) ** 2), rel=1e-6)


def _independent_ridge(S, T, penalty):
    """Ridge least squares with an unpenalised intercept, by numpy's lstsq on the centred
    data stacked over ``sqrt(penalty) I`` (not the package's normal equations)."""
    s_mean, t_mean = S.mean(axis=0), T.mean(axis=0)
    d = S.shape[1]
    lhs = np.vstack([S - s_mean, np.sqrt(penalty) * np.eye(d)])
    rhs = np.vstack([T - t_mean, np.zeros((d, T.shape[1]))])
    C = np.linalg.lstsq(lhs, rhs, rcond=None)[0].T
    return C, t_mean - C @ s_mean


def _start_gradients(monkeypatch, init):
    """The norm of the cross-entropy's gradient in the new units' output weights at the
    start of each block of a small classifier fit (where they are zero)."""
    norms, train_stage = [], solvers_module.train_stage

    def recording_train_stage(module, stage, **kwargs):
        module.zero_grad()
        loss = torch.nn.functional.cross_entropy(module(stage.X), stage.y)
        loss.backward()
        norms.append(float(module.head_new.weight.grad.norm()))
        module.zero_grad()
        return train_stage(module, stage, **kwargs)

    monkeypatch.setattr(solvers_module, "train_stage", recording_train_stage)
    X, y = make_classification(
        n_samples=600, n_features=20, n_informative=10, n_classes=3, random_state=0
    )
    SequentialImplicitClassifier(n_states=6, n_blocks=3, init=init, **FAST).fit(X, y)
    return np.asarray(norms)


def test_classifier_blocks_start_at_units_along_the_loss_gradient(monkeypatch):
    """A classifier's block starts at the screened candidate units: the ones along which
    the loss falls fastest from the previous model, so the gradient in their (zero)
    output weights is larger than at the random units of an unscreened start."""
    screened = _start_gradients(monkeypatch, "auto")
    random = _start_gradients(monkeypatch, "sample")
    assert screened.shape == random.shape == (3,)
    assert screened.sum() > 1.5 * random.sum()


def test_alternating_rounds_start_from_the_exact_least_squares_head(monkeypatch):
    """Algorithm 2: every Adam round of a block starts from the ridge least-squares head
    (11) for the block's current hidden weights. The final head is refitted exactly
    whatever the rounds did, so only the head each round starts from shows whether the
    least-squares step ran and was used."""
    starts, train_stage = [], solvers_module.train_stage

    def recording_train_stage(module, stage, **kwargs):
        def numpy(t):
            return t.detach().double().numpy().copy()

        starts.append(
            dict(
                F=numpy(stage.X),
                T=numpy(stage.y),
                n_inputs=module.n_inputs,
                W=numpy(module.hidden.weight),
                b=numpy(module.hidden.bias),
                C=np.hstack([numpy(module.head_prev.weight), numpy(module.head_new.weight)]),
                c=numpy(module.head_prev.bias),
            )
        )
        return train_stage(module, stage, **kwargs)

    monkeypatch.setattr(solvers_module, "train_stage", recording_train_stage)
    X, y = _regression(n=80)
    alpha = 0.01
    SequentialImplicitRegressor(
        n_states=4,
        n_blocks=2,
        solver="alternating",
        n_alternating_iter=2,
        alpha=alpha,
        select_blocks=False,
        **FAST,
    ).fit(X, y)
    assert len(starts) == 4  # 2 blocks x 2 rounds, block 2 reading block 1's states
    for start in starts:
        F, T, p = start["F"], start["T"], start["n_inputs"]
        # the states the head reads: the earlier blocks' (after the inputs in F), then
        # the block's own, relu(W [u, x_prev] + b) at the round's starting weights
        S = np.hstack([F[:, p:], np.maximum(F @ start["W"].T + start["b"], 0.0)])
        C, c = _independent_ridge(S, T, alpha * len(F))
        assert np.abs(C).max() > 0.1  # a head a skipped step (zeros) could not match
        np.testing.assert_allclose(start["C"], C, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(start["c"], c, rtol=1e-4, atol=1e-5)


def test_project_rows_l1():
    A = torch.tensor([[3.0, -1.0, 0.0], [0.1, 0.2, 0.1], [-0.5, 0.5, 0.5]])
    P = project_rows_l1(A, 0.9)
    assert torch.all(P.abs().sum(dim=1) <= 0.9 + 1e-6)
    assert torch.allclose(P[1], A[1])  # inside the ball: unchanged
    assert torch.allclose(P[0], torch.tensor([0.9, 0.0, 0.0]))
    assert torch.allclose(P[2], torch.tensor([-0.3, 0.3, 0.3]), atol=1e-6)


# --- the estimators ---------------------------------------------------------------------


# The training samples that start the units (candidate units, initial biases) are drawn at
# random in the order of the rows; scikit-learn's check shuffles the weighted rows, so the
# weighted and the repeated fits start from different units. Without the shuffle, integer
# weights equal repeated rows (test_integer_weights_equal_repeated_rows).
EXPECTED_FAILED = {
    "check_sample_weight_equivalence_on_dense_data": "random starts follow the row order",
}


# the contract's ~65 checks fit each estimator many times; the few that score a fit
# (check_classifiers_train, check_regressors_train) pass after 5 epochs
CONTRACT = dict(FAST, max_epochs=5)


@parametrize_with_checks(
    [
        SequentialImplicitRegressor(n_states=6, n_blocks=2, **CONTRACT),
        SequentialImplicitRegressor(
            n_states=6, n_blocks=3, solver="alternating", n_alternating_iter=1, **CONTRACT
        ),
        SequentialImplicitRegressor(n_states=6, n_blocks=2, solver="adam", **CONTRACT),
        SequentialImplicitClassifier(n_states=6, n_blocks=2, **CONTRACT),
        EndToEndImplicitRegressor(n_states=6, **CONTRACT),
        EndToEndImplicitClassifier(n_states=6, **CONTRACT),
    ],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED,
)
def test_sklearn_contract(estimator, check):
    check(estimator)


def test_exported_matrices_structure_and_reproduce_predict():
    X, y = _regression(q=2)
    reg = SequentialImplicitRegressor(n_states=11, n_blocks=4, **FAST).fit(X, y)
    n = 11
    assert reg.block_sizes_ == [2, 2, 2, 5]
    assert reg.A_.shape == (n, n) and reg.B_.shape == (n, 3)
    assert reg.C_.shape == (2, n) and reg.D_.shape == (2, 3) and not reg.D_.any()
    # strictly upper block triangular in the paper's layout x = [x_L; ...; x_1]
    slices = paper_slices(reg.block_sizes_)
    for i, rows in enumerate(slices):
        assert not reg.A_[rows, : rows.stop].any()
        if i:
            assert reg.A_[rows, rows.stop :].any()
    assert reg.A_[slices[0], slices[0].stop :].shape == (2, 0)
    assert reg.pf_eigenvalue_ == 0.0
    x = fixed_point_iteration(reg.A_, reg.B_, X, "relu", state_intercept=reg.state_intercept_)
    np.testing.assert_allclose(
        x @ reg.C_.T + X @ reg.D_.T + reg.intercept_, reg.predict(X), rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(reg.transform(X), x, rtol=1e-9, atol=1e-12)
    assert reg.predict(X).shape == (len(X), 2)
    assert len(reg.history_) == 4 and all("train_loss" in r for r in reg.history_[0])
    # the blocks after n_blocks_used_ get zero output weights, the others do not
    used = sum(reg.block_sizes_[: reg.n_blocks_used_])
    assert reg.C_[:, -used:].any() and not reg.C_[:, : reg.C_.shape[1] - used].any()


@pytest.mark.parametrize("Est", [SequentialImplicitRegressor, SequentialImplicitClassifier])
def test_self_loops_model_predicts_as_strict_model(Est):
    X, y = _regression()
    if Est is SequentialImplicitClassifier:
        y = (y > np.median(y)).astype(int)
    strict = Est(n_states=8, n_blocks=4, **FAST).fit(X, y)
    loops = Est(n_states=8, n_blocks=4, self_loops=True, **FAST).fit(X, y)
    assert np.all(np.diag(loops.A_) == 0.5) and loops.pf_eigenvalue_ == pytest.approx(0.5)
    assert np.allclose(np.tril(loops.A_, -1), 0)
    np.testing.assert_allclose(loops.transform(X), strict.transform(X), rtol=1e-9, atol=1e-12)
    x = fixed_point_iteration(loops.A_, loops.B_, X, "relu", state_intercept=loops.state_intercept_)
    np.testing.assert_allclose(
        x @ loops.C_.T + loops.intercept_, strict._logits(X), rtol=1e-7, atol=1e-7
    )
    np.testing.assert_array_equal(loops.predict(X), strict.predict(X))


@pytest.mark.parametrize("solver", ["lm", "adam", "alternating"])
def test_training_loss_does_not_rise_from_block_to_block(solver):
    X, y = _regression(n=200)
    reg = SequentialImplicitRegressor(
        n_states=10, n_blocks=5, solver=solver, select_blocks=False, **FAST
    ).fit(X, y)
    losses = [np.mean((pred - y) ** 2) for pred in reg.staged_predict(X)]
    assert len(losses) == 5
    assert all(b <= a * (1 + 1e-9) for a, b in zip(losses, losses[1:]))
    assert losses[-1] < 0.5 * losses[0]  # and the blocks do help
    np.testing.assert_allclose(list(reg.staged_predict(X))[-1], reg.predict(X))
    assert np.all(np.diff(reg.block_scores_) >= -1e-9)


def test_transform_blocks_probes_first_blocks():
    X, y = _regression()
    reg = SequentialImplicitRegressor(n_states=9, n_blocks=3, **FAST).fit(X, y)
    full = reg.transform(X)
    reg.set_params(transform_blocks=2)
    np.testing.assert_allclose(reg.transform(X), full[:, 3:])
    reg.set_params(transform_blocks=-2)  # negative counts from the end: blocks 1 and 2
    np.testing.assert_allclose(reg.transform(X), full[:, 3:])
    reg.set_params(transform_blocks=4)
    with pytest.raises(ValueError, match="transform_blocks=4 is out of range"):
        reg.transform(X)


def test_classifier_proba_and_staged_predict():
    X, y = make_classification(n_samples=200, n_classes=3, n_informative=4, random_state=0)
    labels = np.array(["a", "b", "c"])[y]
    clf = SequentialImplicitClassifier(n_states=8, n_blocks=4, **FAST).fit(X, labels)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], clf.predict(X))
    assert clf.score(X, labels) > 0.8
    staged = list(clf.staged_predict(X))
    assert len(staged) == 4 and set(staged[0]) <= {"a", "b", "c"}
    with pytest.raises(TypeError, match="solver"):
        SequentialImplicitClassifier(solver="alternating")


def test_pickle_round_trip_and_determinism():
    X, y = _regression()
    reg = SequentialImplicitRegressor(n_states=6, n_blocks=3, **FAST).fit(X, y)
    again = SequentialImplicitRegressor(n_states=6, n_blocks=3, **FAST).fit(X, y)
    np.testing.assert_array_equal(reg.A_, again.A_)
    np.testing.assert_array_equal(reg.predict(X), again.predict(X))
    loaded = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    assert all(isinstance(getattr(loaded, k), np.ndarray) for k in ("A_", "B_", "C_", "D_"))
    other = SequentialImplicitRegressor(n_states=6, n_blocks=3, **{**FAST, "random_state": 1})
    assert not np.array_equal(other.fit(X, y).A_, reg.A_)
    e2e = EndToEndImplicitRegressor(n_states=5, **FAST).fit(X, y)
    loaded = pickle.loads(pickle.dumps(e2e))
    np.testing.assert_array_equal(loaded.predict(X), e2e.predict(X))


def test_grid_search_over_n_blocks_and_n_states():
    X, y = _regression(n=90)
    grid = GridSearchCV(
        SequentialImplicitRegressor(max_epochs=5, random_state=0, device="cpu"),
        {"n_states": [4, 6], "n_blocks": [2, 3]},
        cv=2,
    ).fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_estimator_.n_blocks_fitted_ == grid.best_params_["n_blocks"]
    assert clone(grid.best_estimator_).get_params() == grid.best_estimator_.get_params()


def test_end_to_end_keeps_well_posed_A():
    X, y = _regression()
    reg = EndToEndImplicitRegressor(n_states=6, kappa=0.8, **FAST).fit(X, y)
    assert np.abs(reg.A_).sum(axis=1).max() <= 0.8 + 1e-5
    assert reg.pf_eigenvalue_ < 1
    assert reg.score(X, y) > 0.3
    assert reg.transform(X).shape == (len(X), 6)


def test_early_stopping_uses_validation_scores():
    X, y = _regression(n=150)
    reg = SequentialImplicitRegressor(
        n_states=6, n_blocks=2, early_stopping=True, validation_fraction=0.2, **FAST
    ).fit(X, y)
    assert all(r["valid_score"] is not None for r in reg.history_[0])


def _interrupt_in_block(monkeypatch, block):
    real = sequential_module.lm_block

    def fake(*args, label, **kwargs):
        if label == f"block {block}":
            raise KeyboardInterrupt
        return real(*args, label=label, **kwargs)

    monkeypatch.setattr(sequential_module, "lm_block", fake)


def test_keyboard_interrupt_keeps_finished_blocks_and_warm_start_resumes(monkeypatch):
    X, y = _regression()
    params = dict(n_states=8, n_blocks=4, **FAST)
    full = SequentialImplicitRegressor(**params).fit(X, y)
    with monkeypatch.context() as m:
        _interrupt_in_block(m, 3)
        with pytest.warns(UserWarning, match="keeping the 2 finished blocks"):
            part = SequentialImplicitRegressor(warm_start=True, **params).fit(X, y)
    assert part.n_blocks_fitted_ == 2 and part.A_.shape == (4, 4)
    assert part.predict(X).shape == y.shape
    part.fit(X, y)  # warm start: trains blocks 3 and 4 only
    assert part.n_blocks_fitted_ == 4
    np.testing.assert_allclose(part.A_, full.A_, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(part.predict(X), full.predict(X), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="begin with the fitted blocks"):
        part.set_params(n_states=10).fit(X, y)
    with pytest.raises(ValueError, match="begin with the fitted blocks"):
        part.set_params(n_states=8, n_blocks=8).fit(X, y)


def test_warm_start_grows_the_model_by_new_blocks_only():
    X, y = _regression()
    reg = SequentialImplicitRegressor(n_states=8, n_blocks=4, warm_start=True, **FAST)
    reg.fit(X, y)
    states = reg.transform(X)
    loss = np.mean((reg.predict(X) - y) ** 2)
    reg.set_params(n_states=12, n_blocks=6).fit(X, y)
    assert reg.n_blocks_fitted_ == 6 and reg.A_.shape == (12, 12)
    assert len(reg.history_) == 6
    # the first four blocks are kept as they were
    np.testing.assert_allclose(reg.set_params(transform_blocks=4).transform(X), states)
    assert np.mean((reg.predict(X) - y) ** 2) <= loss + 1e-12


def test_interrupt_in_first_block_leaves_estimator_untouched(monkeypatch):
    X, y = _regression()
    reg = SequentialImplicitRegressor(n_states=4, n_blocks=2, **FAST).fit(X, y)
    A = reg.A_.copy()
    _interrupt_in_block(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        reg.fit(X[:, :2], y)
    np.testing.assert_array_equal(reg.A_, A)
    assert reg.block_sizes_ == [2, 2]


@pytest.mark.parametrize(
    "params, X, y, exc, match",
    [
        (
            {"n_blocks": 7, "n_states": 6},
            None,
            None,
            ValueError,
            "n_blocks=7 must not exceed n_states=6",
        ),
        ({"activation": "gelu"}, None, None, ValueError, "'activation' parameter"),
        ({"solver": "lbfgs"}, None, None, ValueError, "'solver' parameter"),
        ({"n_states": 0}, None, None, ValueError, "'n_states' parameter"),
        ({"lr": -1.0}, None, None, ValueError, "'lr' parameter"),
        (
            {"self_loops": True, "activation": "tanh"},
            None,
            None,
            ValueError,
            "only for activation='relu'",
        ),
        (
            {},
            np.array([[np.nan, 1.0], [1.0, 2.0]]),
            np.array([1.0, 2.0]),
            ValueError,
            "Input X contains NaN",
        ),
        (
            {},
            np.array([[np.inf, 1.0], [1.0, 2.0]]),
            np.array([1.0, 2.0]),
            ValueError,
            "Input X contains infinity",
        ),
        ({}, np.ones((3, 2)), np.array([1.0, np.nan, 2.0]), ValueError, "Input y contains NaN"),
        ({}, np.ones((3, 2)), np.ones(4), ValueError, "inconsistent numbers of samples"),
        ({}, np.ones(3), np.ones(3), ValueError, "Expected 2D array, got 1D array"),
        ({}, np.ones((3, 2, 2)), np.ones(3), ValueError, "Found array with dim 3"),
        ({"transform_blocks": 0}, None, None, ValueError, "transform_blocks=0 is out of range"),
        ({}, np.ones((3, 2)), np.ones((3, 2, 2)), ValueError, "Found array with dim 3"),
        ({}, np.ones((1, 2)), np.ones(1), ValueError, "n_samples=1"),
        ({}, [["a", "b"], ["c", "d"]], [1.0, 2.0], ValueError, "could not convert"),
    ],
)
def test_regressor_bad_input(params, X, y, exc, match):
    if X is None:
        X, y = _regression(n=20)
    with pytest.raises(exc, match=match):
        SequentialImplicitRegressor(**{**FAST, **params}).fit(X, y)


def test_classifier_bad_input_and_predict_checks():
    X, y = _regression(n=30)
    with pytest.raises(ValueError, match="only one class"):
        SequentialImplicitClassifier(**FAST).fit(X, np.zeros(30))
    with pytest.raises(ValueError, match="Unknown label type"):
        SequentialImplicitClassifier(**FAST).fit(X, y)
    clf = SequentialImplicitClassifier(n_states=4, n_blocks=2, **FAST).fit(X, y > 0)
    with pytest.raises(ValueError, match="X has 2 features, but"):
        clf.predict(X[:, :2])
    with pytest.raises(TypeError, match="dense data is required"):
        from scipy.sparse import csr_matrix

        clf.predict(csr_matrix(X))


def test_torch_tensor_input_and_float32():
    X, y = _regression()
    reg = SequentialImplicitRegressor(n_states=4, n_blocks=2, **FAST)
    reg.fit(torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y))
    assert reg.predict(X.astype(np.float32)).dtype == np.float64


def test_multioutput_regression_and_gpu_free_state():
    X, y = make_regression(n_samples=80, n_features=4, n_targets=3, random_state=0)
    reg = SequentialImplicitRegressor(n_states=6, n_blocks=2, **FAST).fit(X, y)
    assert reg.predict(X).shape == (80, 3) and reg.n_outputs_ == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = pickle.dumps(reg)
    assert b"torch" not in state


def test_dense_module_implicit_gradient_matches_unrolled():
    from sklearn_greedy.implicit._model import DenseImplicitModule

    torch.manual_seed(0)
    module = DenseImplicitModule(3, 5, 2, torch.tanh, kappa=0.9, max_iter=500, tol=1e-10)
    with torch.no_grad():
        module.A.copy_(torch.randn(5, 5) * 0.3)
    module.project()
    U = torch.randn(7, 3)
    module(U).square().sum().backward()
    implicit = module.A.grad.clone()
    module.zero_grad()
    # reference: differentiate through 300 unrolled iterations
    drive = module.inp(U)
    x = torch.zeros(7, 5)
    for _ in range(300):
        x = torch.tanh(x @ module.A.T + drive)
    module.out(x).square().sum().backward()
    torch.testing.assert_close(implicit, module.A.grad, rtol=1e-4, atol=1e-5)


def test_failed_refit_keeps_the_previous_model():
    X, y = _regression()
    reg = SequentialImplicitRegressor(n_states=4, n_blocks=2, **FAST).fit(X, y)
    before = reg.predict(X)
    with pytest.raises(ValueError, match="n_blocks=9 must not exceed"):
        reg.set_params(n_blocks=9).fit(np.hstack([X, X]), y)
    assert reg.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(reg.predict(X), before)


# --- sample weights ---------------------------------------------------------------------

# Levenberg-Marquardt's steps are exact (float64, units started near, not at, a sample),
# so a weighted fit and the same fit on repeated or dropped rows agree to rounding. The
# torch solvers start units exactly at a sample (a ReLU kink, where rounding picks the
# derivative) and Adam amplifies rounding where a gradient is zero in exact arithmetic:
# they are compared on the loss they start training on instead.
EXACT = {  # the parameters, and the relative tolerance of the comparison
    "lm": (dict(n_states=6, n_blocks=3, solver="lm"), 1e-8),
    # the principal directions come from a float32 product
    "lm projected": (dict(n_states=4, n_blocks=2, solver="lm", n_components=2), 1e-4),
}


def _weighted_regression(n=40):
    X, y = _regression(n=n, q=2)
    return X, y, np.random.RandomState(1).randint(0, 4, n)  # integers, zeros among them


@pytest.mark.parametrize("params, rtol", EXACT.values(), ids=EXACT.keys())
def test_integer_weights_equal_repeated_rows(params, rtol):
    """A sample of weight k trains as k repeated samples: the standardisation, the
    principal directions, the candidate units drawn from the samples, the least-squares
    heads, Levenberg-Marquardt and the choice of blocks by generalised cross-validation."""
    X, y, weights = _weighted_regression()
    weighted = SequentialImplicitRegressor(**params, **FAST).fit(X, y, sample_weight=weights)
    repeated = SequentialImplicitRegressor(**params, **FAST).fit(
        np.repeat(X, weights, axis=0), np.repeat(y, weights, axis=0)
    )
    assert weighted.n_blocks_used_ == repeated.n_blocks_used_
    np.testing.assert_allclose(weighted.predict(X), repeated.predict(X), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(weighted.A_, repeated.A_, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("params, rtol", EXACT.values(), ids=EXACT.keys())
def test_zero_weights_equal_dropped_rows(params, rtol):
    X, y, weights = _weighted_regression()
    kept = weights > 0
    weighted = SequentialImplicitRegressor(**params, **FAST).fit(X, y, sample_weight=kept * 1.0)
    dropped = SequentialImplicitRegressor(**params, **FAST).fit(X[kept], y[kept])
    np.testing.assert_allclose(weighted.predict(X), dropped.predict(X), rtol=rtol, atol=rtol)


TORCH_TRAINED = {
    "adam": lambda: SequentialImplicitRegressor(n_states=4, n_blocks=2, solver="adam", **FAST),
    "alternating": lambda: SequentialImplicitRegressor(
        n_states=4, n_blocks=2, solver="alternating", n_alternating_iter=1, **FAST
    ),
    "sequential classifier": lambda: SequentialImplicitClassifier(n_states=4, n_blocks=2, **FAST),
    "end-to-end regressor": lambda: EndToEndImplicitRegressor(
        n_states=4, early_stopping=False, **FAST
    ),
    "end-to-end classifier": lambda: EndToEndImplicitClassifier(
        n_states=4, early_stopping=False, **FAST
    ),
}


@pytest.mark.parametrize("make", TORCH_TRAINED.values(), ids=TORCH_TRAINED.keys())
def test_torch_solvers_train_on_the_weighted_loss(make):
    """The first full-batch epoch's loss is taken at the starting model, which weights
    and repetitions reach alike (standardisation, initial head, least-squares head, the
    samples the units start at): a weighted loss equals the loss on repeated or dropped
    rows there."""
    X, y, weights = _weighted_regression()
    y = y[:, 0]
    if is_classifier(make()):
        y = (y > np.quantile(y, 0.3)).astype(int)
    kept = weights > 0

    def first_loss(X, y, **kwargs):
        return make().fit(X, y, **kwargs).history_[0][0]["train_loss"]

    weighted = first_loss(X, y, sample_weight=weights)
    assert weighted == pytest.approx(
        first_loss(np.repeat(X, weights, axis=0), np.repeat(y, weights)), rel=1e-5
    )
    assert first_loss(X, y, sample_weight=kept * 1.0) == pytest.approx(
        first_loss(X[kept], y[kept]), rel=1e-5
    )
    if not isinstance(make(), SequentialImplicitRegressor) or make().solver != "adam":
        # the weights matter (Adam's first model is the mean target: a loss of 1 with the
        # targets standardised, with or without weights)
        assert weighted != pytest.approx(first_loss(X, y), rel=1e-3)


@pytest.mark.parametrize(
    "make",
    [lambda: SequentialImplicitRegressor(n_states=6, n_blocks=3, **FAST), *TORCH_TRAINED.values()],
    ids=["lm", *TORCH_TRAINED],
)
def test_unit_weights_equal_no_weights(make):
    """Weights of 1 take the weighted code paths and give the unweighted model (which
    sample_weight=None leaves as it was)."""
    X, y, _ = _weighted_regression()
    y = y[:, 0]
    if is_classifier(make()):
        y = (y > np.quantile(y, 0.3)).astype(int)
    ones = make().fit(X, y, sample_weight=np.ones(len(X)))
    np.testing.assert_allclose(ones.predict(X), make().fit(X, y).predict(X), atol=1e-6)


def test_well_posedness_bound_at_exactly_one_is_refused():
    from sklearn_greedy.implicit._model import check_well_posed, pf_eigenvalue

    # a 2-cycle of weight 1 has lambda_PF(|A|) = 1 exactly: Theorem 1 needs < 1
    A = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert pf_eigenvalue(A) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="not certified well-posed"):
        check_well_posed(A, "relu")
    assert check_well_posed(0.999 * A, "relu") < 1


def test_levenberg_marquardt_steps_are_accepted():
    rng = np.random.RandomState(0)
    X = rng.rand(200, 3)
    y = np.sin(3 * X[:, 0]) + X[:, 1] ** 2
    model = SequentialImplicitRegressor(
        n_states=6, n_blocks=2, solver="lm", random_state=0, select_blocks=False
    ).fit(X, y)
    for history in model.history_:
        losses = [r["train_loss"] for r in history]
        # accepted steps move each block: its loss falls well below where it started (a
        # solver whose steps were all rejected would record its first loss throughout)
        assert len(losses) > 2 and len(set(losses)) > 2
        assert min(losses) < 0.7 * losses[0]
