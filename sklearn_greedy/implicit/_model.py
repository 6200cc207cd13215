"""The mathematics of implicit models, in numpy (inference, export) and torch (training).

An implicit model (El Ghaoui et al., 2021) predicts with

    x = phi(A x + B u + b),        y = C x + D u + c,

where ``b`` and ``c`` are intercepts that the paper's model does not have (they are the
last column of ``[B | b]`` and ``[D | c]`` acting on the input augmented by a constant 1).

Layout. The sequential model of Gautam et al. partitions the ``n`` states into ``L``
blocks, ``n_i = floor(n / L)`` for ``i < L`` and the remainder in the last block, and
block ``i`` depends only on the blocks ``j < i`` trained before it. The matrices follow
the paper's ordering ``x = [x_L; ...; x_1]`` (the last trained block first), in which
``A`` is *strictly upper* block triangular. ``block_sizes`` is always given in training
order ``(n_1, ..., n_L)``, so block 1 occupies the last ``n_1`` rows of ``A``.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch
from torch import nn

LEAKY_RELU_SLOPE = 0.01

#: Activations that are component-wise non-expansive (CONE, Definition 2 of the paper):
#: Theorem 1 then guarantees well-posedness whenever lambda_PF(|A|) < 1.
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")

#: The self-loop weight used to export a ``self_loops=True`` model (Theorem 2 holds for
#: any value in [0, 1); 0.5 keeps the fixed-point iteration's contraction rate at 1/2).
SELF_LOOP_WEIGHT = 0.5


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {ACTIVATIONS} (CONE maps), got {activation!r}."
        )


def activation_numpy(activation: str, z: np.ndarray) -> np.ndarray:
    """Apply a CONE activation element-wise to a numpy array."""
    _check_activation(activation)
    if activation == "relu":
        return np.maximum(z, 0.0)
    if activation == "leaky_relu":
        return np.where(z > 0, z, LEAKY_RELU_SLOPE * z)
    if activation == "tanh":
        return np.tanh(z)
    # scipy's expit is the overflow-safe logistic function
    from scipy.special import expit

    return expit(z)


def activation_torch(activation: str):
    """The torch function of a CONE activation."""
    _check_activation(activation)
    return {
        "relu": torch.relu,
        "leaky_relu": lambda z: torch.nn.functional.leaky_relu(z, LEAKY_RELU_SLOPE),
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
    }[activation]


def activation_derivative(activation: str, z: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``phi'(z)`` element-wise, given ``h = phi(z)`` (numpy); 0 at the ReLU kink."""
    _check_activation(activation)
    if activation == "relu":
        return (z > 0).astype(z.dtype)
    if activation == "leaky_relu":
        return np.where(z > 0, 1.0, LEAKY_RELU_SLOPE)
    if activation == "tanh":
        return 1.0 - h * h
    return h * (1.0 - h)


def standardise_columns(
    X: np.ndarray, *, max_score: float | None = None, sample_weight: np.ndarray | None = None
):
    """Mean and scale of each column, computed without overflow: ``(mean, scale)``.

    A column around 1e200 has a mean of 1e200 and a variance beyond float64 (1e400): each
    column is divided by its largest magnitude before the moments are taken, so the scale
    is exact at any magnitude. A constant column gets the scale 1. With ``max_score``,
    no scale is below ``max |x - mean| / max_score``: a feature that is almost constant
    on the training data (an image border pixel) does not become values of hundreds of
    standard deviations on the few samples where it is not constant. Each column's scale
    depends on that column only, so features in different units do not interact. With
    ``sample_weight`` the moments are weighted and rows of zero weight are ignored, so that
    a row of weight ``k`` counts as ``k`` repeated rows.
    """
    X = np.asarray(X)
    if X.shape[0] == 0:
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    if sample_weight is not None:
        return _weighted_moments(X, sample_weight, max_score)
    size = np.max(np.abs(X), axis=0).astype(np.float64)
    size = np.where(np.isfinite(size) & (size > 0), size, 1.0)
    if np.all(size < 1e150):  # no overflow possible: moments in float64 directly
        mean = np.mean(X, axis=0, dtype=np.float64)
        scale = np.std(X, axis=0, dtype=np.float64)
        deviation = np.max(np.abs(X - mean), axis=0) if max_score else None
    else:
        Xs = X / size
        mean_s = Xs.mean(axis=0)
        mean, scale = mean_s * size, np.sqrt(np.mean((Xs - mean_s) ** 2, axis=0)) * size
        deviation = np.max(np.abs(Xs - mean_s), axis=0) * size if max_score else None
    return _final_scale(mean, scale, deviation, max_score)


def _weighted_moments(X, sample_weight, max_score):
    """:func:`standardise_columns` with weights: always through the scaled columns (one
    path at any magnitude), over the rows of positive weight only."""
    kept = sample_weight > 0
    X, w = X[kept], sample_weight[kept] / sample_weight[kept].sum()
    size = np.max(np.abs(X), axis=0).astype(np.float64)
    size = np.where(np.isfinite(size) & (size > 0), size, 1.0)
    Xs = X / size
    mean_s = w @ Xs
    mean, scale = mean_s * size, np.sqrt(w @ (Xs - mean_s) ** 2) * size
    deviation = np.max(np.abs(Xs - mean_s), axis=0) * size if max_score else None
    return _final_scale(mean, scale, deviation, max_score)


def _final_scale(mean, scale, deviation, max_score):
    # a spread below float64's resolution of the column's magnitude is rounding noise
    scale = np.where(scale > 1e-12 * np.abs(mean), scale, 0.0)
    if max_score:
        scale = np.where(scale > 0, np.maximum(scale, deviation / max_score), 0.0)
    return mean, np.where(scale > 0, scale, 1.0)


def weighted_mean(a: np.ndarray, sample_weight: np.ndarray | None) -> np.ndarray:
    """Mean over the rows of ``a`` (axis 0), weighted by ``sample_weight`` when given."""
    if sample_weight is None:
        return a.mean(axis=0)
    return sample_weight @ a / sample_weight.sum()


def draw_range(sample_weight: np.ndarray | None, n_rows: int) -> int:
    """How many equally likely positions a random draw of a training row ranges over.

    The number of rows; with whole-number weights, their sum: a row of weight ``k`` then
    holds ``k`` positions, as ``k`` repeated rows would, so that integer weights draw
    the same rows as the repeated data set (and a zero weight as the data without it).
    """
    if sample_weight is None:
        return n_rows
    total = float(sample_weight.sum())
    whole = np.all(sample_weight == np.round(sample_weight)) and 1 <= total < 2**62
    return int(round(total)) if whole else n_rows


def rows_at(draws: np.ndarray, sample_weight: np.ndarray | None, m: int) -> np.ndarray:
    """The training rows that integer ``draws`` in ``[0, m)`` pick, with probability
    proportional to each row's weight (:func:`draw_range` gives ``m``): draw ``k`` picks
    the row whose stretch of the cumulative weights holds ``(k + 1/2) / m`` of the total.
    Without weights, draw ``k`` is row ``k``."""
    draws = np.asarray(draws)
    if sample_weight is None:
        return draws
    cumulative = np.cumsum(sample_weight)
    rows = np.searchsorted(cumulative, (draws + 0.5) * (cumulative[-1] / m), side="right")
    return np.minimum(rows, sample_weight.shape[0] - 1)


def block_sizes(n_states: int, n_blocks: int) -> list[int]:
    """Partition ``n_states`` into ``n_blocks`` blocks (Algorithm 1, step 1).

    ``n_i = floor(n / L)`` for the first ``L - 1`` blocks; the last block takes the rest.

    >>> block_sizes(10, 3)
    [3, 3, 4]
    """
    if not 1 <= n_blocks <= n_states:
        raise ValueError(
            f"n_blocks={n_blocks} must be between 1 and n_states={n_states}: every block "
            "needs at least one state."
        )
    size = n_states // n_blocks
    return [size] * (n_blocks - 1) + [n_states - size * (n_blocks - 1)]


def paper_slices(sizes: list[int]) -> list[slice]:
    """Row slice of each block (training order) in the paper's layout ``[x_L; ...; x_1]``."""
    n = sum(sizes)
    slices, stop = [], n
    for size in sizes:
        slices.append(slice(stop - size, stop))
        stop -= size
    return slices


def training_permutation(sizes: list[int]) -> np.ndarray:
    """Indices that reorder paper-layout states into training order ``[x_1, ..., x_L]``."""
    return np.concatenate([np.arange(s.start, s.stop) for s in paper_slices(sizes)])


def _drive(U, B, state_intercept) -> np.ndarray:
    """The input term ``B u + b`` of every row ``u`` of ``U``, float64."""
    drive = np.asarray(U, dtype=np.float64) @ np.asarray(B, dtype=np.float64).T
    return drive if state_intercept is None else drive + state_intercept


def pf_eigenvalue(A: np.ndarray) -> float:
    """The Perron-Frobenius eigenvalue ``lambda_PF(|A|)`` (the spectral radius of ``|A|``).

    For a triangular ``|A|`` the eigenvalues are its diagonal; this is used directly
    because a general eigen-solver returns errors of order ``eps ** (1 / n)`` on nilpotent
    matrices (about 0.3 for n = 30), which would make a strictly triangular model look
    nearly ill-posed.
    """
    M = np.abs(np.asarray(A, dtype=np.float64))
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"A must be a square matrix, got shape {M.shape}.")
    if M.size == 0:
        return 0.0
    if not np.any(np.tril(M, -1)) or not np.any(np.triu(M, 1)):
        return float(np.max(np.diag(M)))
    return float(np.max(np.abs(np.linalg.eigvals(M))))


def check_well_posed(A: np.ndarray, activation: str) -> float:
    """Refuse an ``A`` that Theorem 1 does not certify; return ``lambda_PF(|A|)``.

    Raises
    ------
    ValueError
        If the activation is not a CONE map or ``lambda_PF(|A|) >= 1``.
    """
    _check_activation(activation)
    value = pf_eigenvalue(A)
    if not value < 1.0:
        raise ValueError(
            f"A is not certified well-posed: lambda_PF(|A|) = {value:.4g} >= 1, so the "
            "fixed-point equation x = phi(Ax + Bu) may have no or several solutions "
            "(Theorem 1 needs lambda_PF(|A|) < 1)."
        )
    return value


def fixed_point_iteration(
    A: np.ndarray,
    B: np.ndarray,
    U: np.ndarray,
    activation: str,
    *,
    state_intercept: np.ndarray | None = None,
    max_iter: int = 1000,
    tol: float = 1e-12,
) -> np.ndarray:
    """Solve ``x = phi(A x + B u + b)`` for every row ``u`` of ``U`` by the iteration of
    Theorem 1 (``x(0) = 0``); returns the states as rows, shape ``(n_samples, n)``.

    The tolerance is relative, per sample: a row has converged when its last step moved
    no entry by more than ``tol * max(1, max_k |x_k|)``. A sample with large inputs (and
    so large states) needs no more steps than any other, and converged rows stop
    iterating.

    Raises ValueError when ``A`` is not certified well-posed, and RuntimeError when some
    row has not converged after ``max_iter`` steps.
    """
    check_well_posed(A, activation)
    A = np.asarray(A, dtype=np.float64)
    drive = _drive(U, B, state_intercept)
    X = np.zeros((drive.shape[0], A.shape[0]))
    active = np.arange(drive.shape[0])
    for _ in range(max_iter):
        if active.size == 0:
            return X
        X_old = X[active]
        X_new = activation_numpy(activation, X_old @ A.T + drive[active])
        X[active] = X_new
        step = np.max(np.abs(X_new - X_old), axis=1, initial=0.0)
        size = np.maximum(np.max(np.abs(X_new), axis=1, initial=0.0), 1.0)
        active = active[~(step <= tol * size)]
    if active.size == 0:
        return X
    raise RuntimeError(
        f"the fixed-point iteration did not converge in {max_iter} steps for "
        f"{active.size} of {drive.shape[0]} samples."
    )


def _check_structure(A: np.ndarray, sizes: list[int], activation: str) -> np.ndarray:
    """Return the self-loop diagonal of ``A`` after checking the block structure."""
    n = sum(sizes)
    if A.shape != (n, n):
        raise ValueError(f"A has shape {A.shape}, but the block sizes add up to {n}.")
    slices = paper_slices(sizes)
    diag = np.zeros(n)
    for rows in slices:
        # columns left of the block are blocks trained after it: they must be zero
        block = A[rows, : rows.stop]
        self_block = A[rows, rows]
        if np.any(block[:, : rows.start]) or np.any(self_block - np.diag(np.diag(self_block))):
            raise ValueError(
                "A is not upper block triangular with diagonal self-loops for block sizes "
                f"{sizes}; forward substitution does not apply (use fixed_point_iteration)."
            )
        diag[rows] = np.diag(self_block)
    if np.any(diag):
        if activation != "relu":
            raise ValueError(
                "A has self-loops (a non-zero diagonal), which forward substitution solves "
                f"in closed form only for activation='relu', got {activation!r}."
            )
        if np.any(np.abs(diag) >= 1):
            raise ValueError("self-loop weights must satisfy -1 < diag(A) < 1 (Theorem 2).")
    return diag


def forward_substitution(
    A: np.ndarray,
    B: np.ndarray,
    U: np.ndarray,
    activation: str,
    sizes: list[int],
    *,
    state_intercept: np.ndarray | None = None,
) -> np.ndarray:
    """Solve ``x = phi(A x + B u + b)`` block by block for an upper block triangular ``A``.

    Block 1 (the last rows) depends on the input only, block ``i`` on blocks ``j < i``:
    one pass from the bottom up gives the exact fixed point. Diagonal self-loops
    ``a_kk`` (Theorem 2) are solved in closed form, which is exact for ReLU only:
    ``x = relu(a x + z)`` with ``-1 < a < 1`` has the unique solution
    ``x = relu(z / (1 - a))``. Returns the states as rows, shape ``(n_samples, n)``.
    """
    A = np.asarray(A, dtype=np.float64)
    diag = _check_structure(A, sizes, activation)
    drive = _drive(U, B, state_intercept)
    X = np.zeros((drive.shape[0], A.shape[0]))
    for rows in paper_slices(sizes):
        z = X[:, rows.stop :] @ A[rows, rows.stop :].T + drive[:, rows]
        X[:, rows] = activation_numpy(activation, z / (1.0 - diag[rows]))
    return X


def add_self_loops(
    A: np.ndarray,
    B: np.ndarray,
    state_intercept: np.ndarray,
    activation: str,
    weight: float = SELF_LOOP_WEIGHT,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Re-parametrise a strict ReLU model into one with self-loops (Theorem 2, converse).

    Each state ``k`` gets the self-loop ``a_kk = weight`` and its incoming weights (row
    ``k`` of ``A``, ``B`` and the intercept) are multiplied by ``1 - weight``. For ReLU the
    states are unchanged: if ``z > 0`` then ``x = z`` solves
    ``x = relu(w x + (1 - w) z)``, and if ``z <= 0`` then ``x = 0`` does; the solution is
    unique because ``|w| < 1``. The argument is per state, so it holds for any block sizes
    and any upper triangular pattern of the other weights.

    It is *not* exact for leaky ReLU, tanh or sigmoid (``phi(w phi(z) + (1 - w) z)``
    differs from ``phi(z)``), so those raise ValueError.
    """
    if activation != "relu":
        raise ValueError(
            f"self_loops=True is exact (Theorem 2) only for activation='relu', got {activation!r}."
        )
    if not 0 <= weight < 1:
        raise ValueError(f"the self-loop weight must lie in [0, 1), got {weight}.")
    A_loop = (1.0 - weight) * A + weight * np.eye(A.shape[0])
    return A_loop, (1.0 - weight) * B, (1.0 - weight) * state_intercept


def ridge_lstsq(
    F: np.ndarray, Y: np.ndarray, alpha: float = 0.0, sample_weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Least squares for output weights with an unpenalised intercept (problem (11)).

    Minimises ``sum_k w_k ||Y_k - W F_k - c||^2 + alpha ||W||_F^2`` over ``W (q, d)`` and
    ``c (q,)``, with ``w = sample_weight`` (all 1 when None). The data are centred (with
    the weights) to take out the intercept, and each centred row scaled by ``sqrt(w_k)``.
    With ``alpha > 0`` the normal equations are positive definite and solved by Cholesky
    (``d`` is the number of states, small); ``alpha = 0`` uses an SVD-based solver, which
    also handles rank-deficient ``F`` (the minimum-norm solution).
    """
    F = np.asarray(F, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    f_mean, y_mean = weighted_mean(F, sample_weight), weighted_mean(Y, sample_weight)
    Fc, Yc = F - f_mean, Y - y_mean
    if sample_weight is not None:
        root = np.sqrt(sample_weight)[:, None]
        Fc, Yc = Fc * root, Yc * root
    d = F.shape[1]
    if d == 0:
        return np.zeros((Y.shape[1], 0)), y_mean
    if alpha > 0:
        gram = Fc.T @ Fc
        gram[np.diag_indices(d)] += alpha
        try:
            W = scipy.linalg.solve(gram, Fc.T @ Yc, assume_a="pos").T
            return W, y_mean - W @ f_mean
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
            pass
    # singular values below float32's precision are cut (the minimum-norm solution in the
    # rest): the heads feed float32 training, where such directions are noise, and exactly
    # collinear states (ReLU units active on every sample) would otherwise get huge
    # opposite weights from float64 rounding
    W, *_ = scipy.linalg.lstsq(Fc, Yc, cond=np.finfo(np.float32).eps, lapack_driver="gelsd")
    W = W.T
    return W, y_mean - W @ f_mean


class BlockModule(nn.Module):
    """Block ``i``'s trainable subproblem (7): new states and the re-fit output head.

    Its input is the fixed ``[u, x_1, ..., x_{i-1}]`` (the inputs, then ``n_prev``
    previous states: the states of later blocks are appended to the same array without
    copying the inputs); it returns the outputs ``sum_j C_j x_j + c``. ``hidden`` holds
    ``[B_i, A_{i,1..i-1}]`` and the state intercept; ``head_prev`` (the re-fit
    ``C_1..C_{i-1}``) starts at its previous value and ``head_new`` (``C_i``) at zero, so
    the block starts exactly at the previous block's loss.
    """

    def __init__(self, n_prev: int, n_inputs: int, n_new: int, n_outputs: int, activation):
        super().__init__()
        self.n_prev, self.n_inputs = n_prev, n_inputs
        self.hidden = nn.Linear(n_inputs + n_prev, n_new)
        with warnings.catch_warnings():
            # block 1 has no previous states: an empty head, which torch warns about
            warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
            self.head_prev = nn.Linear(n_prev, n_outputs, bias=True)
        self.head_new = nn.Linear(n_new, n_outputs, bias=False)
        nn.init.zeros_(self.head_prev.weight)
        nn.init.zeros_(self.head_prev.bias)
        nn.init.zeros_(self.head_new.weight)
        self.activation = activation

    def states(self, F: torch.Tensor) -> torch.Tensor:
        return self.activation(self.hidden(F))

    def forward(self, F: torch.Tensor) -> torch.Tensor:
        return self.head_prev(F[:, self.n_inputs :]) + self.head_new(self.states(F))

    def block_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W, b)`` in float64 with ``W``'s columns in the order ``[x_1..x_{i-1}, u]``."""
        weight = self.hidden.weight.detach().cpu().double().numpy()
        W = np.hstack([weight[:, self.n_inputs :], weight[:, : self.n_inputs]])
        return W, self.hidden.bias.detach().cpu().double().numpy()

    def head(self) -> tuple[np.ndarray, np.ndarray]:
        """``(C_1..C_i, c)`` in float64."""
        C = torch.cat([self.head_prev.weight, self.head_new.weight], dim=1)
        return C.detach().cpu().double().numpy(), (
            self.head_prev.bias.detach().cpu().double().numpy()
        )


class DenseImplicitModule(nn.Module):
    """A dense implicit model for end-to-end training (El Ghaoui et al., 2021).

    The forward pass solves ``x = phi(A x + B u + b)`` by fixed-point iteration without
    gradients, then takes one step with gradients and attaches the *implicit* gradient:
    a backward hook solves the adjoint equation ``g = J^T g + dL/dx`` with
    ``J = d phi(A x + ...)/dx`` at the fixed point (as in deep equilibrium models).
    Well-posedness is kept by projecting every row of ``A`` onto the l1 ball of radius
    ``kappa`` (so ``||A||_inf <= kappa < 1``) before each forward pass, i.e. after each
    gradient step: this is projected gradient with the projection applied lazily.
    """

    def __init__(
        self,
        n_inputs: int,
        n_states: int,
        n_outputs: int,
        activation,
        kappa: float = 0.95,
        max_iter: int = 50,
        tol: float = 1e-4,
    ):
        super().__init__()
        self.A = nn.Parameter(torch.empty(n_states, n_states))
        nn.init.uniform_(self.A, -1.0 / n_states, 1.0 / n_states)
        self.inp = nn.Linear(n_inputs, n_states)
        self.out = nn.Linear(n_states, n_outputs)
        self.activation = activation
        self.kappa = kappa
        self.max_iter = max_iter
        self.tol = tol

    @torch.no_grad()
    def project(self) -> None:
        self.A.copy_(project_rows_l1(self.A, self.kappa))

    def states(self, U: torch.Tensor) -> torch.Tensor:
        self.project()
        drive = self.inp(U)
        A = self.A
        with torch.no_grad():
            x = torch.zeros_like(drive)
            for _ in range(self.max_iter):
                x_new = self.activation(x @ A.T + drive)
                if (x_new - x).abs().max() <= self.tol:
                    x = x_new
                    break
                x = x_new
        if not torch.is_grad_enabled():
            return x
        x = self.activation(x @ A.T + drive)
        x0 = x.detach().requires_grad_()
        f0 = self.activation(x0 @ A.detach().T + drive.detach())
        max_iter, tol = self.max_iter, self.tol

        def adjoint(grad):
            g = grad
            for _ in range(max_iter):
                (jg,) = torch.autograd.grad(f0, x0, g, retain_graph=True)
                g_new = jg + grad
                if (g_new - g).abs().max() <= tol:
                    return g_new
                g = g_new
            return g

        if x.requires_grad:
            x.register_hook(adjoint)
        return x

    def forward(self, U: torch.Tensor) -> torch.Tensor:
        return self.out(self.states(U))


def project_rows_l1(A: torch.Tensor, radius: float) -> torch.Tensor:
    """Euclidean projection of each row of ``A`` onto the l1 ball of ``radius``
    (Duchi et al., 2008), which is the projection onto ``{||A||_inf <= radius}``."""
    absA = A.abs()
    norms = absA.sum(dim=1)
    if bool((norms <= radius).all()):
        return A
    sorted_abs, _ = torch.sort(absA, dim=1, descending=True)
    cumsum = sorted_abs.cumsum(dim=1) - radius
    ks = torch.arange(1, A.shape[1] + 1, device=A.device, dtype=A.dtype)
    cond = sorted_abs - cumsum / ks > 0
    rho = cond.to(A.dtype).cumsum(dim=1).argmax(dim=1)  # last index where cond holds
    theta = cumsum.gather(1, rho[:, None]) / (rho[:, None] + 1).to(A.dtype)
    projected = torch.sign(A) * torch.clamp(absA - theta, min=0)
    return torch.where((norms > radius)[:, None], projected, A)
