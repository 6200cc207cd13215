"""The newer mechanisms of the sequential implicit models, each pinned by behaviour: the
expected value is recomputed here by hand (numpy on the fitted model's outputs), never by
calling the code path under test (issue 27).

- the number of blocks the output reads: generalised cross-validation on the training
  data, or the validation loss with early stopping (``SequentialBase._n_blocks_used``);
- the screening of a block's candidate units with deflation (``screen_units``);
- the keep-if-better test of a block under sample weights (``_keep_if_better``).
"""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from sklearn_greedy import SequentialImplicitRegressor
from sklearn_greedy.implicit._sequential import DOF_FACTOR
from sklearn_greedy.implicit._solvers import BlockData, BlockFit, screen_units
from sklearn_greedy.training._engine import StageResult

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# Levenberg-Marquardt (float64, deterministic) on a few noisy samples: four blocks of two
# states, of which the later ones fit noise, so the best prefix is an inner one.
PARAMS = dict(n_states=8, n_blocks=4, solver="lm", max_epochs=15, random_state=0)


def _noisy_sine(n, seed=1):
    rng = np.random.RandomState(seed)
    X = rng.uniform(-2, 2, (n, 2))
    return X, np.sin(2 * X[:, 0]) + 0.3 * rng.randn(n)


def _gcv_by_hand(model, X, y, n, weights=None):
    """The generalised cross-validation score of every prefix of blocks, from the
    model's staged training predictions and its stored degrees of freedom:
    ``mse / (1 - dof / n)^2`` with ``dof = 1 + sum DOF_FACTOR (n_i + block_dof_i)``.
    (The targets' standardisation scales every mse alike: the argmin is unchanged.)"""
    scores, dof = [], 1.0
    for size, block_dof, pred in zip(model.block_sizes_, model._dofs, model.staged_predict(X)):
        dof += DOF_FACTOR * (size + block_dof)
        mse = np.average((pred - y) ** 2, weights=weights)
        scores.append(mse / (1.0 - dof / n) ** 2 if dof < n else np.inf)
    return np.asarray(scores)


def _clear_argmin(scores):
    """1-based position of the minimum, checked to win by more than rounding."""
    best = int(np.argmin(scores))
    assert np.all(np.delete(scores, best) > scores[best] * (1 + 1e-6))
    return best + 1


# --- how many blocks the output reads ---------------------------------------------------


def test_blocks_used_minimise_generalised_cross_validation():
    """Without validation data, n_blocks_used_ is the prefix with the lowest GCV score,
    which counts every block's states and effective hidden parameters."""
    X, y = _noisy_sine(40)
    model = SequentialImplicitRegressor(**PARAMS).fit(X, y)
    scores = _gcv_by_hand(model, X, y, n=len(X))
    assert len(scores) == model.n_blocks_fitted_ == 4
    assert model.n_blocks_used_ == _clear_argmin(scores)
    # an inner prefix: neither the lowest training loss (all blocks) nor the first block
    assert 1 < model.n_blocks_used_ < model.n_blocks_fitted_


def test_blocks_used_count_the_summed_weights_as_the_samples():
    """Under sample weights, n in the GCV score is the sum of the weights (a sample of
    weight k counts as k samples) and the mse the weighted one. Here counting the rows
    instead would choose fewer blocks."""
    X, y = _noisy_sine(40)
    weights = np.random.RandomState(0).randint(1, 5, len(X)).astype(float)
    model = SequentialImplicitRegressor(**PARAMS).fit(X, y, sample_weight=weights)
    by_weight = _clear_argmin(_gcv_by_hand(model, X, y, n=weights.sum(), weights=weights))
    by_rows = _clear_argmin(_gcv_by_hand(model, X, y, n=len(X), weights=weights))
    assert by_weight != by_rows  # the data tell the two counts apart
    assert model.n_blocks_used_ == by_weight


# max_epochs=15 leaves the blocks' validation scores improving: expected here
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_blocks_used_minimise_the_validation_loss_with_early_stopping():
    """With validation data, n_blocks_used_ is the prefix with the lowest validation mse,
    not the lowest training loss (which the last blocks always reach)."""
    X, y = _noisy_sine(80)
    model = SequentialImplicitRegressor(**PARAMS, early_stopping=True)
    model.fit(X[:40], y[:40], X_val=X[40:], y_val=y[40:])
    valid = [np.mean((pred - y[40:]) ** 2) for pred in model.staged_predict(X[40:])]
    train = [np.mean((pred - y[:40]) ** 2) for pred in model.staged_predict(X[:40])]
    assert model.n_blocks_used_ == _clear_argmin(valid)
    assert model.n_blocks_used_ < int(np.argmin(train)) + 1


# --- screening candidate units with deflation -------------------------------------------


def _centred_units(F, theta):
    """The centred ReLU outputs of the units ``[w | b]`` (rows of ``theta``) on ``F``."""
    H = np.maximum(F @ theta[:, :-1].T + theta[:, -1], 0.0)
    return H - H.mean(axis=0)


def _explained_share(h, r, given=()):
    """The share of ``r`` that ``h`` explains beyond a constant and ``given``: the squared
    correlation of the two after projecting both off those."""
    Q = np.linalg.qr(np.column_stack([np.ones(len(r)), *given]))[0]
    h, r = h - Q @ (Q.T @ h), r - Q @ (Q.T @ r)
    return (h @ r) ** 2 / (h @ h) / (r @ r)


def _two_kinks(seed):
    """Features and a residual made of a large kink along feature 0 and a smaller one
    along feature 1. Hundreds of random candidates include many near copies of the best
    unit for the first kink."""
    F = np.random.default_rng(seed).uniform(-1.7, 1.7, (200, 2))
    first, second = np.maximum(F[:, 0] - 0.3, 0.0), np.maximum(-F[:, 1] - 0.2, 0.0)
    R = (2.0 * first + second)[:, None]
    return F, first, second, R - R.mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_screening_deflates_the_residual_after_each_pick(seed):
    """After the first unit is chosen, the second is measured on what the first does not
    explain: it picks up the second kink instead of duplicating the first unit (without
    the deflation the next-best candidate is a near copy of the first)."""
    F, _, second, R = _two_kinks(seed)
    theta = screen_units(F, R, None, 2, np.random.default_rng(seed), 512)
    H = _centred_units(F, theta)
    assert abs(np.corrcoef(H.T)[0, 1]) < 0.5  # two different units, not a copy
    assert _explained_share(H[:, 0], R[:, 0]) > 0.7  # the first explains most of R
    # the second explains most of the residual the first leaves, and follows the second kink
    assert _explained_share(H[:, 1], R[:, 0], [H[:, 0]]) > 0.5
    assert np.corrcoef(H[:, 1], second)[0, 1] > 0.6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_screening_deflates_against_the_existing_states(seed):
    """The part of the residual that the current states (``basis``) already span counts
    as explained: the first pick does not duplicate an existing state but explains the
    rest."""
    F, first, second, R = _two_kinks(seed)
    state = first - first.mean()
    basis = (state / np.linalg.norm(state))[:, None]
    theta = screen_units(F, R, basis, 1, np.random.default_rng(seed), 512)
    h = _centred_units(F, theta)[:, 0]
    assert abs(np.corrcoef(h, first)[0, 1]) < 0.5
    assert _explained_share(h, R[:, 0], [state]) > 0.9


# --- keep-if-better under sample weights ------------------------------------------------


def _block_to_judge(previous_errors, candidate_errors, weights):
    """A block with one new state whose candidate head leaves the given errors, after a
    model whose head leaves ``previous_errors``: the previous state is the target plus
    the previous errors (head ``C = [1]``, ``c = 0``), the new one the target plus the
    candidate's errors (candidate head ``[0, 1]``)."""
    T = np.array([[1.0], [2.0], [3.0], [4.0]])
    X = T + np.asarray(previous_errors, dtype=float)[:, None]
    new_states = T + np.asarray(candidate_errors, dtype=float)[:, None]
    data = BlockData(X, np.zeros((4, 1)), T, (np.ones((1, 1)), np.zeros(1)), weights=weights)
    fit = BlockFit(
        np.zeros((1, 2)), np.zeros(1), (np.array([[0.0, 1.0]]), np.zeros(1)), StageResult()
    )
    return fit, data, new_states


def _weighted_mse(errors, weights=None):
    return np.average(np.square(errors), weights=weights)


# the first sample weighs ten times the others
WEIGHTS = np.array([10.0, 1.0, 1.0, 1.0])
ONE_HEAVY_ERROR, TWO_LIGHT_ERRORS = [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]


def test_keep_if_better_keeps_a_block_that_lowers_the_weighted_loss():
    """A block that removes the heavy sample's error at the cost of two light ones lowers
    the weighted loss (and raises the unweighted one): it is kept."""
    assert _weighted_mse(TWO_LIGHT_ERRORS, WEIGHTS) < _weighted_mse(ONE_HEAVY_ERROR, WEIGHTS)
    assert _weighted_mse(TWO_LIGHT_ERRORS) > _weighted_mse(ONE_HEAVY_ERROR)
    fit, data, new_states = _block_to_judge(ONE_HEAVY_ERROR, TWO_LIGHT_ERRORS, WEIGHTS)
    SequentialImplicitRegressor()._keep_if_better(fit, data, new_states, q=1)
    np.testing.assert_array_equal(fit.head[0], [[0.0, 1.0]])
    np.testing.assert_array_equal(fit.head[1], [0.0])


def test_keep_if_better_rejects_a_block_that_lowers_only_the_unweighted_loss():
    """The reverse trade lowers only the unweighted loss: the block is rejected, its head
    reset to the previous one with a zero column for the new state."""
    assert _weighted_mse(ONE_HEAVY_ERROR, WEIGHTS) > _weighted_mse(TWO_LIGHT_ERRORS, WEIGHTS)
    assert _weighted_mse(ONE_HEAVY_ERROR) < _weighted_mse(TWO_LIGHT_ERRORS)
    fit, data, new_states = _block_to_judge(TWO_LIGHT_ERRORS, ONE_HEAVY_ERROR, WEIGHTS)
    SequentialImplicitRegressor()._keep_if_better(fit, data, new_states, q=1)
    np.testing.assert_array_equal(fit.head[0], [[1.0, 0.0]])
    np.testing.assert_array_equal(fit.head[1], [0.0])


def test_a_rejected_last_block_is_not_counted_in_the_blocks_used(monkeypatch):
    """A block whose output weights are zero leaves the validation loss as it was, up to
    the rounding of a longer sum: the tie goes to the shorter prefix."""
    from sklearn_greedy.implicit._sequential import SequentialBase

    def reject_the_last(self, fit, data, new_states, q):
        if data.X.shape[1] == 6:  # block 4 of 4 reads the 6 states of blocks 1-3
            n_new = fit.W.shape[0]
            prev_C, prev_c = data.prev_head
            fit.head = (np.hstack([prev_C, np.zeros((q, n_new))]), prev_c)

    monkeypatch.setattr(SequentialBase, "_keep_if_better", reject_the_last)
    rng = np.random.RandomState(0)
    X, X_val = rng.uniform(-2, 2, (80, 2)), rng.uniform(-2, 2, (40, 2))
    y, y_val = (np.sin(2 * A[:, 0]) + 0.05 * rng.randn(len(A)) for A in (X, X_val))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = SequentialImplicitRegressor(**PARAMS).fit(X, y, X_val=X_val, y_val=y_val)
    losses = [np.mean((p - y_val) ** 2) for p in model.staged_predict(X_val)]
    assert losses[0] > losses[1] > losses[2]  # blocks 1-3 each help on these data
    assert np.all(model.C_[:, :2] == 0)  # block 4 (first in the paper's order) is silent
    assert model.n_blocks_used_ == 3


@pytest.mark.parametrize(
    "scores, expected",
    [([1.0, 0.5, 0.5 * (1 + 1e-15)], 2), ([1.0, 0.5 * (1 + 1e-15), 0.5], 2), ([3.0, 2.0, 1.0], 3)],
)
def test_ties_within_rounding_go_to_the_fewest_blocks(scores, expected):
    from sklearn_greedy.implicit._growth import fewest_at_minimum

    assert fewest_at_minimum(scores) == expected
