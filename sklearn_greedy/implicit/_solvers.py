"""Block solvers: one block's subproblem (7) of Gautam et al., given the blocks before it.

Every solver receives the frozen states ``X = [x_1, ..., x_{i-1}]`` of the blocks trained
before, the standardised inputs ``U`` and the targets (:class:`BlockData`), and returns the
new block's weights ``[A_{i,1..i-1}, B_i]`` and state intercept, the re-fitted output head
``C_1..C_i`` and the training record of the block (:class:`BlockFit`):

- :func:`lm_block`: the squared loss by Levenberg-Marquardt on the variable-projection
  form of the subproblem. The head is eliminated by exact ridge least squares (it is
  linear in the states), so the search runs over the block's hidden weights only, with
  a Gauss-Newton model of the curvature; the block starts from the units, among random
  candidates, that explain most of the current residual (orthogonal matching pursuit).
- :func:`~sklearn_greedy.implicit._torch_solvers.adam_block` and
  :func:`~sklearn_greedy.implicit._torch_solvers.alternating_block` (Algorithm 2), the
  torch solvers, in their own module.

:func:`block_dof` and :func:`gcv` measure what a block costs in effective degrees of
freedom, which the estimators use to choose how many blocks the output reads.

Sample weights. With weights ``w`` (:attr:`BlockData.weights`) every solver minimises the
weighted loss, so that a sample of weight ``k`` counts as ``k`` repeated samples: the
least-squares problems are centred with weighted means and each centred row is scaled by
``sqrt(w)``; the random choices of training samples (candidate units, initial biases)
draw samples in proportion to their weights (``rows_at``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

from ..training._engine import StageResult
from ._model import (
    activation_derivative,
    activation_numpy,
    draw_range,
    rows_at,
    weighted_mean,
)

#: Random candidate units screened to start a block of the Levenberg-Marquardt solver:
#: as many as fit in about 2**20 unit outputs, between 128 and 2048. More candidates
#: find sharp features (jumps) more reliably; the screening costs one product each.
N_CANDIDATES = (128, 2048)
#: Steepness range of the candidate units, in standardised feature units (log-uniform):
#: from smooth trends to units sharp enough for a jump between neighbouring samples.
CANDIDATE_SCALES = (0.5, 20.0)
#: The Levenberg-Marquardt damping at which a block counts as converged (no step lowers
#: the objective any more).
_MAX_DAMPING = 1e10
#: Above this many multiply-adds, the effective degrees of freedom of a block are not
#: computed (the Gauss-Newton matrix would cost more than the block's training).
_DOF_BUDGET = 5e8


@dataclass
class BlockData:
    """What a block is trained on: frozen states, standardised inputs and targets.

    ``T`` holds standardised targets of shape (n, q) for the squared loss and class codes
    of shape (n,) for the cross-entropy; ``prev_head`` is the output head ``(C, c)`` of the
    model before the block, ``C`` of shape (q, s). The torch solvers read ``F_t`` (and
    ``F_val_t``): ``[u, x_1, ..., x_{i-1}]`` as float32 on the training device.
    ``weights`` holds the non-negative weights of the training samples (None: all 1).
    """

    X: np.ndarray
    U: np.ndarray
    T: np.ndarray
    prev_head: tuple[np.ndarray, np.ndarray]
    X_val: np.ndarray | None = None
    U_val: np.ndarray | None = None
    T_val: np.ndarray | None = None
    F_t: torch.Tensor | None = None
    F_val_t: torch.Tensor | None = None
    weights: np.ndarray | None = None

    @property
    def has_validation(self) -> bool:
        return self.U_val is not None and self.U_val.shape[0] > 0

    @property
    def total_weight(self) -> float:
        """The number of samples a weighted sum counts: the rows, or the weights' sum."""
        return self.T.shape[0] if self.weights is None else float(self.weights.sum())

    def root_weights(self) -> np.ndarray | None:
        """``sqrt(w)`` as a column, the row scaling of weighted least squares."""
        return None if self.weights is None else np.sqrt(self.weights)[:, None]

    def features(self) -> np.ndarray:
        return np.hstack([self.X, self.U])

    def val_features(self) -> np.ndarray:
        return np.hstack([self.X_val, self.U_val])


@dataclass
class BlockFit:
    """A trained block: ``x_i = phi(W [x_1..x_{i-1}, u] + b)`` and the head on
    ``[x_1..x_i]``; ``dof`` is its effective number of parameters (squared loss)."""

    W: np.ndarray
    b: np.ndarray
    head: tuple[np.ndarray, np.ndarray]
    result: StageResult
    dof: float | None = None


def block_states(activation: str, W, b, X, U) -> np.ndarray:
    """The states ``phi(W [X, U] + b)`` of one block (two products: no copy of ``U``)."""
    s = X.shape[1]
    return activation_numpy(activation, X @ W[:, :s].T + U @ W[:, s:].T + b)


def squared_error(out, T) -> float:
    """Mean squared error over all entries (``torch.nn.functional.mse_loss``)."""
    return float(np.mean((out - T) ** 2))


def _record(epoch, loss, score, valid, lr, start) -> dict:
    return {
        "epoch": epoch,
        "train_loss": loss,
        "train_score": score,
        "valid_score": valid,
        "lr": lr,
        "seconds": time.perf_counter() - start,
    }


# ---------------------------------------------------------------------------------------
# Levenberg-Marquardt on the variable-projection problem (squared loss)
# ---------------------------------------------------------------------------------------


class _Scaled:
    """The block's features ``[x_1..x_{i-1}, u]`` standardised (with the weighted moments
    when there are weights), with a column of ones."""

    def __init__(self, F: np.ndarray, weights: np.ndarray | None = None):
        if weights is None:
            self.mean, scale = F.mean(axis=0), F.std(axis=0)
        else:
            self.mean = weighted_mean(F, weights)
            scale = np.sqrt(weighted_mean((F - self.mean) ** 2, weights))
        self.scale = np.where(scale > 1e-12, scale, 1.0)
        self.F1 = self(F)

    def __call__(self, F: np.ndarray) -> np.ndarray:
        return np.hstack([(F - self.mean) / self.scale, np.ones((F.shape[0], 1))])

    def unscale(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(W, b)`` on the raw features from the weights ``theta`` on the scaled ones."""
        W = theta[:, :-1] / self.scale
        return W, theta[:, -1] - W @ self.mean


class _RidgeHead:
    """Exact ridge least squares for ``C_1..C_i`` with the previous states' part of the
    normal equations computed once per block. With weights, the centred rows (``Xc``,
    ``Tc``, the residual ``R``, the states ``Sc``) are scaled by ``sqrt(w)`` (``root``)."""

    def __init__(self, X: np.ndarray, T: np.ndarray, penalty: float, n_new: int, weights=None):
        self.weights = weights
        self.root = None if weights is None else np.sqrt(weights)[:, None]
        self.x_mean, self.t_mean = weighted_mean(X, weights), weighted_mean(T, weights)
        self.Xc, self.Tc = X - self.x_mean, T - self.t_mean
        if self.root is not None:
            self.Xc, self.Tc = self.Xc * self.root, self.Tc * self.root
        s = X.shape[1]
        self.s, self.penalty = s, penalty
        self.gram = np.empty((s + n_new, s + n_new))
        self.gram[:s, :s] = self.Xc.T @ self.Xc
        self.rhs = np.empty((s + n_new, T.shape[1]))
        self.rhs[:s] = self.Xc.T @ self.Tc
        # [Xc | Tc], so that one product gives both of H's cross terms
        self.XT = np.hstack([self.Xc, self.Tc])

    def fit(self, H: np.ndarray) -> dict:
        """Head on ``[X, H]``: ``C (q, s + k)``, ``c (q,)``, the residual ``R (n, q)`` and
        the centred states ``Sc``."""
        s, h_mean = self.s, weighted_mean(H, self.weights)
        Hc = H - h_mean
        if self.root is not None:
            Hc *= self.root
        cross = Hc.T @ self.XT
        gram, rhs = self.gram, self.rhs
        gram[s:, :s] = cross[:, :s]
        gram[:s, s:] = cross[:, :s].T
        gram[s:, s:] = Hc.T @ Hc
        rhs[s:] = cross[:, s:]
        regular = gram + self.penalty * np.eye(gram.shape[0])
        try:
            factor = scipy.linalg.cho_factor(regular, check_finite=False)
            coef = scipy.linalg.cho_solve(factor, rhs, check_finite=False)
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError, ValueError):
            coef = scipy.linalg.lstsq(regular, rhs)[0]
        Sc = np.hstack([self.Xc, Hc])
        residual = self.Tc - Sc @ coef
        c = self.t_mean - self.x_mean @ coef[:s] - h_mean @ coef[s:]
        return dict(C=coef.T, c=c, R=residual, Sc=Sc)


def screen_units(
    F,
    R,
    basis,
    n_new: int,
    rng,
    n_candidates: int,
    activation: str = "relu",
    alpha: float = 0.0,
    weights: np.ndarray | None = None,
):
    """Start a block from the random units that explain most of the residual ``R``.

    Each candidate is a unit with a random direction and steepness whose hyperplane
    passes near a training sample; they are chosen one by one (orthogonal matching
    pursuit): the one whose centred output, orthogonal to the current states (``basis``,
    orthonormal), explains most of what is still unexplained, net of its weight penalty
    ``alpha ||w||^2`` (a steep unit must explain more). Returns the chosen ``[w | b]`` rows
    on the scaled features ``F``. With ``weights``, ``R`` and ``basis`` are the weighted
    ones (rows scaled by ``sqrt(w)``) and samples are drawn in proportion to their weight.
    """
    n, d = F.shape
    W = rng.standard_normal((n_candidates, d))
    W /= np.maximum(np.linalg.norm(W, axis=1, keepdims=True), 1e-12)
    lo, hi = np.log(CANDIDATE_SCALES[0]), np.log(CANDIDATE_SCALES[1])
    steepness = np.exp(rng.uniform(lo, hi, n_candidates))
    W *= steepness[:, None]
    if weights is None:
        cost = alpha * steepness**2 * R.size
        first, second = rng.integers(0, n, n_candidates), rng.integers(0, n, n_candidates)
        n_total = n
    else:
        n_total = float(weights.sum())
        cost = alpha * steepness**2 * (n_total * R.shape[1])
        m = draw_range(weights, n)
        first = rows_at(rng.integers(0, m, n_candidates), weights, m)
        second = rows_at(rng.integers(0, m, n_candidates), weights, m)
    # near, not at, a sample: a kink exactly on a sample is a point of non-differentiability
    points = F[first] + 0.05 * (F[second] - F[first])
    b = -np.sum(W * points, axis=1)
    H = activation_numpy(activation, F @ W.T + b)
    H -= weighted_mean(H, weights)
    if weights is not None:
        H *= np.sqrt(weights)[:, None]
    # inner products with the residual and norms of each candidate's part orthogonal to
    # the current states, updated as units are chosen (no deflated copy of H is formed)
    corr, norms = H.T @ R, np.einsum("ij,ij->j", H, H)
    if basis is not None:
        QH = basis.T @ H
        corr -= QH.T @ (basis.T @ R)
        norms -= np.einsum("ij,ij->j", QH, QH)
    chosen, picked = [], []
    for _ in range(min(n_new, n_candidates)):
        gain = np.sum(corr**2, axis=1) / np.maximum(norms, 1e-300) - cost
        gain[norms <= 1e-10 * n_total] = -np.inf
        gain[chosen] = -np.inf
        k = int(np.argmax(gain))
        if not np.isfinite(gain[k]):
            break
        chosen.append(k)
        # the chosen unit's direction, orthogonal to the states and the units before it
        h = H[:, k].copy()
        if basis is not None:
            h -= basis @ (basis.T @ h)
        for g in picked:
            h -= g * (g @ h)
        h /= np.sqrt(max(float(h @ h), 1e-300))
        picked.append(h)
        proj = h @ H
        if basis is not None:
            proj -= (basis.T @ h) @ QH
        corr -= np.outer(proj, h @ R)
        norms -= proj**2
    theta = np.column_stack([W[chosen], b[chosen]])
    if len(chosen) < n_new:  # fewer useful candidates than units: random extra ones
        extra = rng.standard_normal((n_new - len(chosen), d + 1))
        theta = np.vstack([theta, extra])
    return theta


class _VarPro:
    """The variable-projection objective of one block and its Gauss-Newton model."""

    def __init__(self, data: BlockData, n_new: int, activation: str, alpha: float):
        self.data, self.n_new, self.activation = data, n_new, activation
        self.scaled = _Scaled(data.features(), data.weights)
        total = data.total_weight  # the rows, or the samples the weights count
        self.nq = total * data.T.shape[1]
        self.alpha = alpha
        self.head = _RidgeHead(data.X, data.T, alpha * total, n_new, data.weights)
        d1 = self.scaled.F1.shape[1]
        mask = np.ones((n_new, d1))
        mask[:, -1] = 0.0  # intercepts are not penalised
        self.mask = mask.ravel()

    def evaluate(self, theta: np.ndarray) -> dict:
        Z = self.scaled.F1 @ theta.T
        H = activation_numpy(self.activation, Z)
        point = self.head.fit(H)
        C, R = point["C"], point["R"]
        # R is the weighted residual: its mean square is the weighted mean squared error
        mse = float(np.mean(R**2)) if self.data.weights is None else float(np.sum(R**2)) / self.nq
        # the ridge head minimises mse + alpha ||C_j||^2 for each output j
        penalty = float(np.sum(C * C)) / C.shape[0] + float(np.sum(theta[:, :-1] ** 2))
        point.update(theta=theta, Z=Z, H=H, mse=mse, objective=mse + self.alpha * penalty)
        return point

    def jacobian(self, point: dict) -> tuple[np.ndarray, np.ndarray]:
        """``(J^T J, J^T r)`` of the residual's Kaufman-projected Jacobian at ``point``,
        in units of the sum of squares (the penalties included)."""
        F1, Z, H, C, R = self.scaled.F1, point["Z"], point["H"], point["C"], point["R"]
        s = self.data.X.shape[1]
        slope = activation_derivative(self.activation, Z, H)  # (n, k)
        # an orthonormal basis of the centred states: Kaufman's projection (the exact one,
        # not the ridge-penalised hat matrix, gives markedly better steps)
        basis = np.linalg.qr(point["Sc"])[0]
        n, d1 = F1.shape
        jtj = np.zeros((self.n_new * d1, self.n_new * d1))
        jtr = np.zeros(self.n_new * d1)
        for j in range(R.shape[1]):
            M = ((slope * C[j, s:])[:, :, None] * F1[:, None, :]).reshape(n, -1)
            M -= weighted_mean(M, self.data.weights)
            if self.head.root is not None:
                M *= self.head.root
            jtr += M.T @ R[:, j]
            QM = basis.T @ M
            jtj += M.T @ M - QM.T @ QM
        penalty = self.nq * self.alpha * self.mask
        jtj[np.diag_indices_from(jtj)] += penalty
        jtr -= penalty * point["theta"].ravel()
        return jtj, jtr

    def dof(self, point: dict) -> float:
        """Effective degrees of freedom of the hidden weights, ``tr((G + P)^-1 G)`` with
        ``G = J^T J`` of the unpenalised residual and ``P`` the weight penalty."""
        jtj, _ = self.jacobian(point)
        penalty = self.nq * self.alpha * self.mask
        gram = jtj - np.diag(penalty)
        regular = jtj + 1e-9 * np.eye(jtj.shape[0]) * max(np.trace(jtj), 1.0)
        try:
            inverse_gram = scipy.linalg.cho_solve(scipy.linalg.cho_factor(regular), gram)
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
            inverse_gram = scipy.linalg.lstsq(regular, gram)[0]
        return float(np.trace(inverse_gram))

    def validation_score(self, point: dict) -> float:
        """Minus the mean over samples of the summed squared error on validation data."""
        d = self.data
        H = activation_numpy(self.activation, self.scaled(d.val_features()) @ point["theta"].T)
        out = np.hstack([d.X_val, H]) @ point["C"].T + point["c"]
        return -float(np.mean(np.sum((out - d.T_val) ** 2, axis=1)))


def lm_block(
    data: BlockData,
    n_new: int,
    *,
    activation: str,
    alpha: float,
    max_iter: int,
    tol: float,
    n_iter_no_change: int,
    rng: np.random.Generator,
    label: str = "block",
    verbose: int = 0,
) -> BlockFit:
    """Block ``i`` for the squared loss by Levenberg-Marquardt with the head projected out.

    Minimises ``mean ||y - C [x_1..x_i] - c||^2 + alpha (||C||^2 + ||W||^2)`` (``W`` the
    block's weights on the standardised features) over the block's weights, with ``C``
    at its exact ridge solution for every ``W`` (variable projection, Golub and Pereyra;
    Kaufman's Jacobian). One iteration is one "epoch" of the history. The best iterate
    is kept: the best validation score when there is validation data, the lowest
    objective otherwise (each accepted step lowers it); training stops after
    ``n_iter_no_change`` iterations without an improvement of ``tol``, or when no
    damped step lowers the objective any more.
    """
    problem = _VarPro(data, n_new, activation, alpha)
    n = data.T.shape[0]
    prev_C, prev_c = data.prev_head
    residual = data.T - (data.X @ prev_C.T + prev_c)
    centred = data.X - weighted_mean(data.X, data.weights)
    root = data.root_weights()
    if root is not None:
        residual, centred = residual * root, centred * root
    basis = np.linalg.qr(centred)[0] if data.X.shape[1] else None
    n_candidates = int(np.clip(2**20 // n, *N_CANDIDATES))
    F = problem.scaled.F1[:, :-1]
    theta = screen_units(
        F, residual, basis, n_new, rng, n_candidates, activation, alpha, data.weights
    )
    point = problem.evaluate(theta)
    result = StageResult()

    def value(p):
        return problem.validation_score(p) if data.has_validation else -p["objective"]

    best, best_value, no_improve, damping = point, value(point), 0, 1e-2
    for epoch in range(1, max_iter + 1):
        start = time.perf_counter()
        jtj, jtr = problem.jacobian(point)
        diag = np.diag(jtj).copy()
        # Marquardt's scaling, floored: a unit with a zero output weight has zero columns
        diag = np.maximum(diag, 1e-6 * max(float(np.mean(diag)), 1e-12))
        moved = False
        while damping < _MAX_DAMPING:
            try:
                factor = scipy.linalg.cho_factor(jtj + np.diag(damping * diag))
            except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
                damping *= 10.0
                continue
            step = scipy.linalg.cho_solve(factor, jtr)
            trial = problem.evaluate(point["theta"] + step.reshape(point["theta"].shape))
            if np.isfinite(trial["objective"]) and trial["objective"] < point["objective"]:
                point, moved = trial, True
                damping = max(damping / 3.0, 1e-9)
                break
            damping *= 4.0
        if not moved:
            result.stopped_early = True
            break
        current = value(point)
        valid = current if data.has_validation else None
        if data.weights is None:
            score = -float(np.mean(np.sum(point["R"] ** 2, axis=1)))
        else:  # minus the weighted mean over samples of the summed squared error
            score = -float(np.sum(point["R"] ** 2)) / data.total_weight
        record = _record(epoch, point["mse"], score, valid, None, start)
        result.history.append(record)
        if verbose:
            print(
                f"{label} iteration {epoch}/{max_iter}: loss={record['train_loss']:.4f}"
                + ("" if valid is None else f" valid={valid:.4f}")
            )
        no_improve = 0 if current > best_value + tol else no_improve + 1
        if current > best_value:
            best, best_value, result.best_epoch = point, current, epoch
        if no_improve >= n_iter_no_change:
            result.stopped_early = True
            break
    W, b = problem.scaled.unscale(best["theta"])
    head = (best["C"], best["c"])
    dof = None
    if n * data.T.shape[1] * best["theta"].size ** 2 <= _DOF_BUDGET:
        dof = problem.dof(best)
    return BlockFit(W, b, head, result, dof)


def block_dof(data: BlockData, fit: BlockFit, activation: str, alpha: float) -> float | None:
    """Effective degrees of freedom of a trained block's hidden weights (squared loss),
    at the weights any solver found; None when that would cost too much."""
    n, q = data.T.shape
    if n * q * fit.W.size**2 > _DOF_BUDGET:
        return None
    problem = _VarPro(data, fit.W.shape[0], activation, alpha)
    W_scaled = fit.W * problem.scaled.scale
    theta = np.column_stack([W_scaled, fit.b + fit.W @ problem.scaled.mean])
    return problem.dof(problem.evaluate(theta))


def gcv(mse: float, dof: float, n: int) -> float:
    """Generalised cross-validation ``mse / (1 - dof / n)^2`` (Golub, Heath and Wahba):
    the training error inflated by the model's effective number of parameters; infinite
    when they reach the number of samples."""
    if not dof < n:
        return float("inf")
    return mse / (1.0 - dof / n) ** 2


def estimated_fit_seconds(
    n_samples,
    n_features,
    sizes,
    n_outputs,
    solver,
    max_epochs,
    batch_size,
    n_rounds=1,
    *,
    n_kept_states=0,
    dofs=False,
) -> float:
    """A rough, machine-independent estimate of a sequential fit's duration on one CPU
    core: about 1e9 multiply-adds per second, plus the training engine's overhead of
    about a millisecond per optimisation step, and for each block a few passes over the
    states it reads (its head, its score, the states kept) and, with ``dofs``, the
    Jacobian of :func:`block_dof` and its QR factorisation (where their budget allows)."""
    seconds, s = 0.0, n_kept_states
    for n_new in sizes:
        # bookkeeping: about five float64 passes over the n x s states, at ~2 GB/s
        seconds += 5e-3 + 5 * 8 * n_samples * (s + n_new) / 2e9
        d = s + n_features + 1
        weights = n_new * d
        if dofs and n_samples * n_outputs * (n_new * (s + n_features)) ** 2 <= _DOF_BUDGET:
            seconds += n_samples * n_outputs * weights**2 / 1e9
        if solver == "lm":
            work = n_samples * n_outputs * weights**2 + n_samples * (s + n_new) ** 2
            seconds += max_epochs * (work / 1e9 + 2e-4)
        else:
            steps = int(np.ceil(n_samples / min(batch_size, n_samples)))
            work = 6 * n_samples * (d * n_new + (s + n_new) * n_outputs)
            seconds += n_rounds * max_epochs * (work / 1e9 + 1e-3 * steps)
        s += n_new
    return seconds
