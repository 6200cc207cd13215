"""The blocks of a sequential implicit fit as they grow, and the watch on its pace.

:class:`BlockGrowth` keeps the trained blocks, their heads and records, and the training
states they give (numpy, and one preallocated torch array for the torch solvers), so that
each block of :class:`~sklearn_greedy.SequentialImplicitRegressor`'s fit trains on the
states of the blocks before it without recomputing or copying them. :class:`FitPace`
warns once when the rest of a fit would run long.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from ._model import activation_torch
from ._solvers import BlockData, block_states

#: Fits estimated to take longer than this (seconds, on one CPU core) warn first.
SLOW_FIT_SECONDS = 300.0
#: A fit's pace is judged after this many seconds of training (``FitPace``).
PACE_AFTER = 30.0


class FitPace:
    """Watches how long the blocks of a fit take and warns, once, when the rest of the fit
    would run past ``SLOW_FIT_SECONDS``: the estimate before training is rough, and a
    block's cost grows with the states it reads, so thousands of blocks slow down as the
    fit goes on. A block's time is modelled as ``a + b * width`` (its inputs and the states
    before it), fitted to the blocks done so far; nothing is said before ``PACE_AFTER``
    seconds, so a short fit never warns."""

    def __init__(self, sizes, n_inputs, stacklevel):
        self.widths = n_inputs + np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.stacklevel = stacklevel
        self.started = self.last = time.perf_counter()
        self.times, self.warned = [], False

    def block_done(self, i: int) -> None:
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now
        elapsed = now - self.started
        # the first block carries one-off costs (lazy imports, warm-up): left out of the fit
        if self.warned or elapsed < PACE_AFTER or len(self.times) < 3:
            return
        done, times = self.widths[i - len(self.times) + 2 : i + 1], self.times[1:]
        if np.ptp(done):
            slope, intercept = np.polyfit(done, times, 1)
        else:  # blocks of one width so far: their mean time
            slope, intercept = 0.0, float(np.mean(times))
        rest = self.widths[i + 1 :]
        remaining = float(np.sum(max(intercept, 0.0) + max(slope, 0.0) * rest))
        if elapsed + remaining > SLOW_FIT_SECONDS and remaining > 60:
            self.warned = True
            warnings.warn(
                f"{i + 1} of {len(self.widths)} blocks trained in {elapsed:.0f} s; at this "
                f"pace the other {len(rest)} take about {remaining / 60:.0f} more minutes "
                "(each block reads the states of every block before it, so later blocks "
                "are slower). An interrupt (Ctrl-C) keeps the finished blocks; fewer, "
                "larger blocks train faster.",
                UserWarning,
                stacklevel=self.stacklevel,
            )


def fewest_at_minimum(scores) -> int:
    """The fewest leading blocks whose score is the lowest. A rejected block (zero output
    weights) leaves the outputs as they were, up to the rounding of a longer sum: such a
    tie goes to the shorter prefix, not to whichever rounding came out lower."""
    scores = np.asarray(scores, dtype=np.float64)
    best = scores.min()
    return int(np.flatnonzero(scores <= best + 1e-10 * max(abs(best), 1e-300))[0]) + 1


class BlockGrowth:
    """The blocks of a fit being grown, the training states they give, and their records.

    The states are kept in float64 numpy (heads, scores, the choice of blocks) and, for
    the torch solvers, in one float32 array ``[u, x_1, ..., x_L]`` on the device that is
    allocated once: each block trains on a view of its first columns, and its states are
    written after them, so the inputs are never copied again.
    """

    def __init__(self, blocks, heads, results, dofs, scores):
        self.blocks, self.heads, self.results = blocks, heads, results
        self.dofs, self.scores = dofs, scores
        self.first_new = len(blocks)
        self.F_t = self.F_val_t = None

    @classmethod
    def start(cls, kept, results):
        if kept is None:
            return cls([], [], [], [], [])
        return cls(
            [(W.copy(), b.copy()) for W, b in kept["_blocks"]],
            [(C.copy(), c.copy()) for C, c in kept["_heads_std"]],
            results,
            list(kept["_dofs"]),
            list(kept["block_scores_"]),
        )

    def prepare(self, activation, U, U_val, device=None, n_states=0):
        """States of the kept blocks; the torch arrays when ``device`` is given."""
        self.activation = activation
        self.X = _numpy_states(activation, self.blocks, U)
        self.X_val = None if U_val is None else _numpy_states(activation, self.blocks, U_val)
        if device is not None:
            self.F_t = _torch_features(U, self.X, n_states, device)
            if U_val is not None:
                self.F_val_t = _torch_features(U_val, self.X_val, n_states, device)

    def data(self, U, T, weights, prev_head, U_val, T_val) -> BlockData:
        width = U.shape[1] + self.X.shape[1]
        return BlockData(
            self.X,
            U,
            T,
            prev_head,
            self.X_val,
            U_val,
            T_val,
            None if self.F_t is None else self.F_t[:, :width],
            None if self.F_val_t is None else self.F_val_t[:, :width],
            weights,
        )

    def new_states(self, fit, U, F_t, X):
        """The states of a trained block on the data whose features are ``[X, U]``."""
        if F_t is None:
            return block_states(self.activation, fit.W, fit.b, X, U)
        s = X.shape[1]
        weight = np.hstack([fit.W[:, s:], fit.W[:, :s]])
        with torch.no_grad():
            z = (
                F_t[:, : U.shape[1] + s]
                @ torch.as_tensor(weight, dtype=F_t.dtype, device=F_t.device).T
            )
            z += torch.as_tensor(fit.b, dtype=F_t.dtype, device=F_t.device)
            return activation_torch(self.activation)(z).double().cpu().numpy()

    def add(self, fit, states, U, U_val):
        """Append a trained block and its training states."""
        width = U.shape[1] + self.X.shape[1]
        if self.F_t is not None:
            self.F_t[:, width : width + states.shape[1]] = torch.as_tensor(states)
        if U_val is not None:
            new = self.new_states(fit, U_val, self.F_val_t, self.X_val)
            if self.F_val_t is not None:
                self.F_val_t[:, width : width + new.shape[1]] = torch.as_tensor(new)
            self.X_val = np.hstack([self.X_val, new])
        self.X = np.hstack([self.X, states])
        self.blocks.append((fit.W, fit.b))
        self.heads.append(fit.head)
        self.results.append(fit.result)
        self.dofs.append(fit.dof)

    def output(self, i, val=False):
        """Outputs of the model after block ``i`` (its head) on the training data."""
        C, c = self.heads[i]
        X = self.X_val if val else self.X
        return X[:, : C.shape[1]] @ C.T + c


def _numpy_states(activation, blocks, U):
    X = np.zeros((U.shape[0], 0))
    for W, b in blocks:
        X = np.hstack([X, block_states(activation, W, b, X, U)])
    return X


def _torch_features(U, X, n_states, device):
    """``[U, X, room for the states still to train]`` as float32 on ``device``."""
    p, s = U.shape[1], X.shape[1]
    F = torch.zeros((U.shape[0], p + n_states), dtype=torch.float32, device=device)
    chunk = max(1, 2**24 // max(p, 1))  # convert in slices: no float32 copy of all of U
    for start in range(0, U.shape[0], chunk):
        F[start : start + chunk, :p] = torch.as_tensor(
            U[start : start + chunk], dtype=torch.float32
        )
    F[:, p : p + s] = torch.as_tensor(X, dtype=torch.float32)
    return F
