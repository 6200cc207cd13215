"""Sequential blockwise training (Gautam et al., Algorithms 1 and 2), shared by the
regressor and the classifier: grow the blocks, choose how many the output reads, and
export the paper's matrices.

Choosing the blocks. Every block is trained against the training loss, so a model of
many blocks can fit noise (a small tabular data set). With ``select_blocks=True`` the
output reads the states of the best *prefix* of blocks ``1..k`` (later blocks get zero
output weights): the prefix with the best validation loss when ``early_stopping`` holds
data out, otherwise, for the squared loss, the one with the lowest generalised
cross-validation score ``mse / (1 - dof / n)^2``, where ``dof`` counts the head's
coefficients and each block's effective number of hidden parameters (the trace of its
linearised, penalised hat matrix), weighted by ``DOF_FACTOR``.
"""

from __future__ import annotations

import os
import time
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from ._checkpoint import data_digest, resume_fit
from ._engine import StageResult
from ._implicit_base import COMMON_CONSTRAINTS, ImplicitBase
from ._implicit_model import (
    activation_torch,
    add_self_loops,
    block_sizes,
    forward_substitution,
    pf_eigenvalue,
    training_permutation,
)
from ._implicit_solvers import (
    BlockData,
    BlockFit,
    block_dof,
    block_states,
    estimated_fit_seconds,
    gcv,
    lm_block,
)
from ._implicit_torch_solvers import TorchSetup, adam_block, alternating_block
from ._utils import base_seed, derive_seed, resolve_device
from ._validation import check_layer, check_min_samples

# Parameters that do not change what a block learns: a fit may resume from the blocks of
# ``checkpoint_dir`` with other values of these.
_NOT_FINGERPRINTED = ("verbose", "n_threads", "device", "warm_start", "transform_blocks")

#: solver="auto" uses Levenberg-Marquardt when a block's Gauss-Newton system is small:
#: at most this many weights per block ...
LM_MAX_WEIGHTS = 200
#: ... and at most this many multiply-adds to form it (n_samples * n_outputs * weights^2).
LM_MAX_WORK = 2e8
#: Above this many states, the exact ridge refit of the head after an Adam-trained block
#: is skipped (the head trained with the block is kept): its cost grows with the cube of
#: the number of states.
EXACT_HEAD_MAX_STATES = 256
#: Weight of a block's degrees of freedom in the generalised cross-validation score. The
#: trace of the linearised hat matrix counts every identifiable direction of the block's
#: weights in full, but the fit, stopped on a tolerance from its screened start, moves
#: along the weakly determined ones only in part: the trace overstates what the block
#: adapts to the data. 0.8 was chosen by measurement (Sec. V-A draws with seeds
#: 1000-1059 and 10000-10029, and the diabetes data, whose folds it leaves unchanged).
DOF_FACTOR = 0.8
#: Fits estimated to take longer than this (seconds, on one CPU core) warn first.
SLOW_FIT_SECONDS = 300.0
#: A fit's pace is judged after this many seconds of training (``_Pace``).
PACE_AFTER = 30.0
#: max_epochs="auto": Levenberg-Marquardt iterations per block ...
LM_ITERATIONS = 100
#: ... and, for Adam, 11 epochs (measured on MNIST: more epochs per block fit the
#: training data better and the test data worse), or more on small data sets, so that a
#: block makes at least 200 optimisation steps (at most 200 epochs).
ADAM_EPOCHS, ADAM_STEPS = 11, 200
#: Adam's learning rate drops tenfold after this fraction of a block's epochs.
LR_DECAY_AT = 0.7
#: n_components="auto": inputs of more than PROJECT_ABOVE features (images) are projected
#: onto their top PROJECTED_COMPONENTS principal directions.
PROJECT_ABOVE, PROJECTED_COMPONENTS = 256, 128


class SequentialBase(ImplicitBase):
    """Algorithm 1 (and 2) of Gautam et al., shared by the regressor and the classifier."""

    _parameter_constraints: dict = {
        **COMMON_CONSTRAINTS,
        "n_blocks": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "self_loops": ["boolean"],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "select_blocks": ["boolean"],
        "keep_if_better": ["boolean"],
        "lr_schedule": [StrOptions({"step", "constant"})],
        "init": [StrOptions({"auto", "screened", "sample", "default"})],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
        "n_components": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "warm_start": ["boolean"],
        "transform_blocks": [Integral, None],
        "checkpoint_dir": [str, os.PathLike, None],
    }

    #: How ``init="auto"`` starts an Adam-trained block's units (``TorchSetup.init``).
    _auto_init = "sample"

    def _solver(self, n_samples: int, n_features: int, q: int, sizes) -> str:
        return "adam"

    def _principal_directions(self, U, weights=None):
        """The top ``n_components`` principal directions of the standardised training
        inputs (weighted), shape (n_features, k), or None (no projection)."""
        k = self.n_components
        if k == "auto":
            k = PROJECTED_COMPONENTS if U.shape[1] > PROJECT_ABOVE else None
        if k is None or k >= U.shape[1]:
            return None
        U_t = torch.as_tensor(U, dtype=torch.float32)
        if weights is None:
            covariance = (U_t.T @ U_t).double() / U.shape[0]
        else:
            w_t = torch.as_tensor(weights / weights.sum(), dtype=torch.float32)
            covariance = (U_t.T @ (U_t * w_t[:, None])).double()
        _, vectors = torch.linalg.eigh(covariance)  # ascending eigenvalues
        return vectors[:, -k:].flip(1).numpy()

    def _epochs(self, n_samples: int, solver: str) -> int:
        """``max_epochs`` with ``"auto"`` resolved for this data and solver."""
        if self.max_epochs != "auto":
            return self.max_epochs
        if solver == "lm":
            return LM_ITERATIONS
        steps = int(np.ceil(n_samples / min(self.batch_size, n_samples)))
        return int(min(200, max(ADAM_EPOCHS, np.ceil(ADAM_STEPS / steps))))

    # -- fitting -------------------------------------------------------------------------

    def _check_fit_params(self):
        if self.n_blocks > self.n_states:
            raise ValueError(
                f"n_blocks={self.n_blocks} must not exceed n_states={self.n_states}: every "
                "block needs at least one state."
            )
        if self.self_loops and self.activation != "relu":
            raise ValueError(
                "self_loops=True is exact (Theorem 2) only for activation='relu', got "
                f"activation={self.activation!r}."
            )
        check_layer(self.transform_blocks, self.n_blocks, name="transform_blocks")

    def _check_memory(self, n_samples: int, n_features: int) -> None:
        """Refuse before training a model whose matrices cannot fit in this machine's
        memory: the exported ``A_`` (``n_states`` squared, float64) and the training
        states (samples x states, float64)."""
        needed = 8 * (self.n_states**2 + n_samples * (self.n_states + n_features))
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # not a POSIX system: unchecked
            return
        if needed > total:
            raise ValueError(
                f"n_states={self.n_states} on {n_samples} samples needs about "
                f"{needed / 2**30:.1f} GiB (A_ alone is {self.n_states}x{self.n_states} "
                f"float64), more than this machine's {total / 2**30:.1f} GiB of memory; "
                "lower n_states."
            )

    def _kept_blocks(self, previous, sizes, n_features, info):
        """The previous fit to continue (warm start), or None to start afresh."""
        if not (self.warm_start and "_blocks" in previous):
            return None
        fitted = list(previous["block_sizes_"])
        if sizes[: len(fitted)] != fitted:
            raise ValueError(
                f"warm_start=True needs the new partition {sizes} to begin with the fitted "
                f"blocks {fitted}. With n_i = floor(n_states / n_blocks), grow a model by "
                "raising n_states and n_blocks together at the same block size (e.g. "
                "n_states=30, n_blocks=10 -> n_states=45, n_blocks=15), or resume an "
                "interrupted fit with the same values. Set warm_start=False to refit."
            )
        if n_features != previous["n_features_in_"]:
            raise ValueError(
                f"warm_start=True needs the {previous['n_features_in_']} features of the "
                f"previous fit, got {n_features}."
            )
        if "classes" in info and not np.array_equal(info["classes"], previous["classes_"]):
            raise ValueError("warm_start=True needs the same classes as the previous fit.")
        fitted_activation = previous.get("_activation", self.activation)
        if self.activation != fitted_activation:
            raise ValueError(
                f"warm_start=True cannot change activation (the fitted blocks use "
                f"{fitted_activation!r}); set warm_start=False to refit."
            )
        return previous

    def _fit(self, X, y, sample_weight, previous, given) -> dict:
        X_raw, Y_raw, weights, info = self._validate_fit_data(X, y, sample_weight)
        check_min_samples(X_raw, 2)
        self._check_fit_params()
        self._check_memory(*X_raw.shape)
        sizes = block_sizes(self.n_states, self.n_blocks)
        device = resolve_device(self.device)
        kept = self._kept_blocks(previous, sizes, X_raw.shape[1], info)
        if kept is not None and len(kept["_blocks"]) == len(sizes):
            warnings.warn(
                f"warm_start=True with the {len(sizes)} blocks of n_blocks={self.n_blocks} "
                "already fitted: nothing to train, the model is kept. Raise n_states and "
                "n_blocks to add blocks, or set warm_start=False to refit.",
                UserWarning,
                stacklevel=4,
            )
            return {}
        if kept is not None:  # the kept blocks were trained in the first fit's units
            u_mean, u_scale, info = kept["_u_mean"], kept["_u_scale"], kept["_target_info"]
        else:
            u_mean, u_scale = self._scaled_inputs(X_raw, weights)
        T, q = self._targets(Y_raw, info)
        U = (np.asarray(X_raw, dtype=np.float64) - u_mean) / u_scale
        seed = base_seed(self.random_state)
        store, pieces = None, []
        if self.checkpoint_dir is not None:  # before any training: a bad directory fails now
            store, pieces, seed = self._checkpoints(
                kept is not None, seed, X_raw, Y_raw, weights, given
            )  # fmt: skip
        U_tr, T_tr, w_tr, U_val, T_val = self._validation_split(
            U, T, weights, seed, given, (u_mean, u_scale), info
        )
        if kept is not None:  # the kept blocks read the first fit's projection
            projection = kept.get("_projection")
        else:
            projection = self._principal_directions(U_tr, w_tr)
        if projection is not None:
            U_tr = U_tr @ projection
            U_val = None if U_val is None else U_val @ projection
        solver = self._solver(U_tr.shape[0], U_tr.shape[1], q, sizes)
        n_kept = len(kept["_blocks"]) if kept is not None else 0
        warned = self._warn_if_slow(U_tr.shape[0], U_tr.shape[1], sizes, n_kept, q, solver)

        growth = _Growth.start(kept, self._previous_stage_results(kept or {}))
        torch_device = None if solver == "lm" else device
        growth.prepare(self.activation, U_tr, U_val, torch_device, sum(sizes))
        n_values = min(self.batch_size, U_tr.shape[0]) * (U_tr.shape[1] + self.n_states)
        threads = self._threads(n_values)
        with self._runtime(device, n_values=n_values), threadpool_limits(threads, "blas"):
            for piece in pieces[: len(sizes)]:
                self._resume_block(growth, piece, U_tr, U_val)
            pace = None if warned else _Pace(sizes, U_tr.shape[1], stacklevel=6)
            self._grow(
                growth, sizes, (U_tr, T_tr, w_tr), U_val, T_val, q, solver, device, seed, store,
                pace,
            )  # fmt: skip
        n_used = self._n_blocks_used(growth, T_tr, w_tr, U_val, T_val)
        fitted = {
            "_u_mean": u_mean,
            "_u_scale": u_scale,
            "_target_info": info,
            "_activation": self.activation,
            "_projection": projection,
            "_blocks": growth.blocks,
            "_heads_std": growth.heads,
            "_dofs": growth.dofs,
            "history_": [r.history for r in growth.results],
            **self._stage_diagnostics(
                growth.results,
                watch_convergence=U_val is not None,
                first_new=growth.first_new,
                stage_name="Block",
            ),
            "block_scores_": np.asarray(growth.scores),
            "block_sizes_": sizes[: len(growth.blocks)],
            "n_blocks_fitted_": len(growth.blocks),
            "n_blocks_used_": n_used,
            "solver_": solver,
            "device_": str(device),
        }
        if "classes" in info:
            fitted["classes_"] = info["classes"]
        else:
            fitted["n_outputs_"] = q
        fitted.update(self._export(fitted))
        return fitted

    def _warn_if_slow(self, n_samples, n_features, sizes, n_kept, q, solver) -> bool:
        """Warn before a fit whose blocks could take very long if each ran all its epochs;
        whether it warned."""
        epochs = self._epochs(n_samples, solver)
        rounds = self.n_alternating_iter if solver == "alternating" else 1
        new_sizes = sizes[n_kept:]
        seconds = estimated_fit_seconds(
            n_samples, n_features, new_sizes, q, solver, epochs, self.batch_size, rounds,
            n_kept_states=sum(sizes[:n_kept]), dofs=self._counts_dofs(),
        )  # fmt: skip
        if seconds > SLOW_FIT_SECONDS:
            warnings.warn(
                f"this fit trains {len(new_sizes)} blocks (n_states={self.n_states}, "
                f"n_blocks={self.n_blocks}, solver={solver!r}) on {n_samples} samples: it may "
                f"take about {seconds / 60:.0f} minutes on one CPU core if every block runs "
                f"its {epochs} epochs (fewer when blocks stop early). Each block is a training "
                "of its own: fewer, larger blocks or a lower max_epochs train faster.",
                UserWarning,
                stacklevel=4,
            )
            return True
        return False

    def _checkpoints(self, continuing, seed, X, Y, weights, given):
        """The checkpoint store of this fit, the finished blocks it holds and the seed to
        train with (see :func:`~sklearn_greedy._checkpoint.resume_fit`)."""
        X_val, y_val = (None if a is None else np.asarray(a) for a in given)
        facts = {
            "n_samples": len(X), "n_features": X.shape[1],
            "digest": data_digest(np.asarray(X), np.asarray(Y), weights, X_val, y_val),
        }  # fmt: skip
        return resume_fit(
            self, seed, continuing="warm_start continues" if continuing else None,
            kind="block", ignore=_NOT_FINGERPRINTED, data=facts,
        )  # fmt: skip

    def _resume_block(self, growth, piece, U, U_val):
        """Append a finished block read from ``checkpoint_dir``; its states computed as
        the uninterrupted fit computed them."""
        t, meta = piece.tensors, piece.meta
        result = StageResult(meta["history"], meta["best_epoch"], meta["stopped_early"])
        fit = BlockFit(
            t["W"].numpy(), t["b"].numpy(), (t["C"].numpy(), t["c"].numpy()), result,
            meta["dof"],
        )  # fmt: skip
        data = growth.data(U, None, None, None, U_val, None)
        growth.add(fit, growth.new_states(fit, U, data.F_t, data.X), U, U_val)
        growth.scores.append(meta["score"])
        if self.verbose:
            print(f"block {piece.index + 1}: read from checkpoint_dir")

    def _grow(
        self, growth, sizes, train, U_val, T_val, q, solver, device, seed, store=None, pace=None
    ):
        """Train the missing blocks one by one on ``train = (U, T, weights)``; an
        interrupt keeps the finished ones, and each finished block is written to
        ``store`` (the fit's checkpoints) when there is one. ``pace`` watches the time the
        blocks take and warns once if the rest of the fit would be long."""
        U_tr, T_tr, w_tr = train
        for i in range(len(growth.blocks), len(sizes)):
            prev_head = growth.heads[-1] if growth.heads else self._initial_head(T_tr, q, w_tr)
            data = growth.data(U_tr, T_tr, w_tr, prev_head, U_val, T_val)
            try:
                fit = self._train_block(i, sizes[i], data, q, solver, device, seed)
                states = growth.new_states(fit, U_tr, data.F_t, data.X)
            except KeyboardInterrupt:
                if not growth.blocks:
                    raise
                warnings.warn(
                    f"fit interrupted during block {i + 1}; keeping the {len(growth.blocks)} "
                    "finished blocks. Fit again with warm_start=True to continue.",
                    UserWarning,
                    stacklevel=5,
                )
                return
            if self.keep_if_better:
                self._keep_if_better(fit, data, states, q)
            if fit.dof is None and self._counts_dofs():
                fit.dof = block_dof(data, fit, self.activation, self.alpha)
            growth.add(fit, states, U_tr, U_val)
            growth.scores.append(self._numpy_score(growth.output(-1), T_tr, w_tr))
            if store is not None:
                store.save(
                    i,
                    {"W": torch.from_numpy(fit.W), "b": torch.from_numpy(fit.b),
                     "C": torch.from_numpy(fit.head[0]), "c": torch.from_numpy(fit.head[1])},
                    {"history": fit.result.history, "best_epoch": int(fit.result.best_epoch),
                     "stopped_early": bool(fit.result.stopped_early), "dof": fit.dof,
                     "score": float(growth.scores[-1])},
                    seed=seed,
                )  # fmt: skip
            if pace is not None:
                pace.block_done(i)
            if self.verbose:
                unit = "iterations" if solver == "lm" else "epochs"
                print(
                    f"block {i + 1}/{len(sizes)}: training score {growth.scores[-1]:.4f} "
                    f"({fit.result.n_iter} {unit})"
                )

    def _counts_dofs(self) -> bool:
        """Whether each block's effective degrees of freedom are computed (for the
        generalised cross-validation of ``select_blocks``, squared loss only)."""
        return self._squared_loss and self.select_blocks

    def _train_block(self, i, n_new, data, q, solver, device, seed):
        """Block ``i``'s subproblem (7) by the chosen solver."""
        label = f"block {i + 1}"
        n = data.U.shape[0]
        epochs = self._epochs(n, solver)
        if solver == "lm":
            return lm_block(
                data,
                n_new,
                activation=self.activation,
                alpha=self.alpha,
                max_iter=epochs,
                tol=self.tol,
                n_iter_no_change=self._patience(epochs),
                rng=np.random.default_rng(derive_seed(seed, i)),
                label=label,
                verbose=max(int(self.verbose) - 1, 0),
            )
        stopping = {"n_iter_no_change": self._patience(epochs)}
        if self.n_iter_no_change is None:  # every epoch runs, and the last one is kept
            stopping["keep_best"] = False
        setup = TorchSetup(
            config=self._config(n, label, **self._schedule(epochs), **stopping),
            device=device,
            seed=derive_seed(seed, i),
            loss_fn=self._loss_fn,
            score_fn=self._score_fn,
            torch_targets=self._torch_targets,
            squared_loss=self._squared_loss and data.X.shape[1] < EXACT_HEAD_MAX_STATES,
            alpha=self.alpha,
            init=self._auto_init if self.init == "auto" else self.init,
            refit_head=self._refit_head(),
        )
        if solver == "alternating":
            return alternating_block(
                data,
                n_new,
                activation=self.activation,
                setup=setup,
                q=q,
                n_rounds=self.n_alternating_iter,
            )
        return adam_block(data, n_new, activation=self.activation, setup=setup, q=q)

    def _refit_head(self) -> bool:
        """Whether the squared-loss head is re-fitted exactly after each torch-trained
        block (the regressor's ``refit_head``)."""
        return False

    def _patience(self, epochs: int) -> int:
        """``n_iter_no_change`` for the solvers; None (never stop early) as a patience
        longer than the block's epochs."""
        return epochs + 1 if self.n_iter_no_change is None else self.n_iter_no_change

    def _schedule(self, epochs: int) -> dict:
        """The engine's schedule of an Adam-trained block: with ``lr_schedule="step"``,
        ``lr`` for the first 70% of the epochs, then a tenth of it (the last epochs settle
        instead of jittering); with ``"constant"``, ``lr`` throughout."""
        if self.lr_schedule == "constant":
            return {"max_epochs": epochs}
        return {
            "max_epochs": epochs,
            "lr_step": max(1, int(np.ceil(LR_DECAY_AT * epochs))),
            "lr_decay": 0.1,
        }

    def _keep_if_better(self, fit, data, new_states, q):
        """Accept the block only if it lowers the training loss: otherwise ``C_i = 0`` and
        the model stays the previous one, so the loss never rises from block to block."""
        n_new = fit.W.shape[0]
        prev_C, prev_c = data.prev_head
        prev_C = np.hstack([prev_C, np.zeros((q, n_new))])
        states = np.hstack([data.X, new_states])
        C, c = fit.head
        w = data.weights
        prev_loss = self._numpy_loss(states @ prev_C.T + prev_c, data.T, w)
        if not self._numpy_loss(states @ C.T + c, data.T, w) <= prev_loss:
            fit.head = (prev_C, prev_c)

    def _n_blocks_used(self, growth, T_tr, w_tr, U_val, T_val) -> int:
        """How many leading blocks the output reads (see the module's docstring). With
        weights, a sample of weight ``k`` counts as ``k`` samples in the generalised
        cross-validation."""
        k = len(growth.blocks)
        if not self.select_blocks or k == 0:
            return k
        if U_val is not None:
            losses = [self._numpy_loss(growth.output(i, val=True), T_val) for i in range(k)]
            return _fewest_at_minimum(losses)
        if not self._squared_loss or any(d is None for d in growth.dofs):
            return k
        n = T_tr.shape[0] if w_tr is None else float(w_tr.sum())
        dof, scores = 1.0, []
        for i, (W, _) in enumerate(growth.blocks):
            dof += DOF_FACTOR * (W.shape[0] + growth.dofs[i])
            scores.append(gcv(self._numpy_loss(growth.output(i), T_tr, w_tr), dof, n))
        return _fewest_at_minimum(scores)

    # -- export --------------------------------------------------------------------------

    def _export(self, fitted) -> dict:
        """The paper-layout, raw-unit matrices from the training-order blocks."""
        sizes = fitted["block_sizes_"]
        n, p = sum(sizes), self.n_features_in_
        A, B, b = np.zeros((n, n)), np.zeros((n, p)), np.zeros(n)
        u_mean, u_scale = fitted["_u_mean"], fitted["_u_scale"]
        start = 0
        for W, bias in fitted["_blocks"]:
            rows = slice(start, start + W.shape[0])
            A[rows, :start] = W[:, :start]
            B_std = W[:, start:]
            if fitted["_projection"] is not None:  # weights on the principal components
                B_std = B_std @ fitted["_projection"].T
            B[rows] = B_std / u_scale
            b[rows] = bias - B_std @ (u_mean / u_scale)
            start = rows.stop
        out_scale, out_mean = self._output_scale(fitted["_target_info"])
        stage_heads = []
        for C, c in fitted["_heads_std"]:
            if out_scale is not None:
                C, c = out_scale[:, None] * C, out_scale * c + out_mean
            stage_heads.append((C, c))
        perm = training_permutation(sizes)
        A_p = np.zeros_like(A)
        A_p[np.ix_(perm, perm)] = A
        B_p, b_p = np.zeros_like(B), np.zeros_like(b)
        B_p[perm], b_p[perm] = B, b
        C_used, c_used = stage_heads[fitted["n_blocks_used_"] - 1]
        q = C_used.shape[0]
        C_p = np.zeros((q, n))
        C_p[:, perm[: C_used.shape[1]]] = C_used
        if self.self_loops:
            A_p, B_p, b_p = add_self_loops(A_p, B_p, b_p, self.activation)
        return {
            "A_": A_p,
            "B_": B_p,
            "C_": C_p,
            "D_": np.zeros((q, p)),
            "state_intercept_": b_p,
            "intercept_": c_used,
            "pf_eigenvalue_": pf_eigenvalue(A_p),
            "_stage_heads": stage_heads,
            "_perm": perm,
        }

    # -- inference -----------------------------------------------------------------------

    def _states(self, X):
        return forward_substitution(
            self.A_,
            self.B_,
            X,
            self.activation,
            self.block_sizes_,
            state_intercept=self.state_intercept_,
        )

    def _transform_width(self) -> int:
        """Number of trailing state columns :meth:`transform` returns."""
        k = check_layer(self.transform_blocks, self.n_blocks_fitted_, name="transform_blocks")
        return sum(self.block_sizes_[:k])

    def transform(self, X):
        """The state ``x`` solving ``x = phi(A_ x + B_ u + state_intercept_)``.

        Columns follow the paper's order ``[x_L, ..., x_1]`` (the columns of ``A_``). With
        ``transform_blocks=k``, only the states of the first ``k`` trained blocks are
        returned, ``[x_k, ..., x_1]`` (the last ``n_1 + ... + n_k`` columns), for probing.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input samples.

        Returns
        -------
        states : ndarray of shape (n_samples, n_1 + ... + n_k)
            The states of blocks ``k, ..., 1`` (all blocks by default).
        """
        states = self._states(self._checked_input(X))
        return states[:, states.shape[1] - self._transform_width() :]

    def get_feature_names_out(self, input_features=None):
        """Names of the columns of :meth:`transform`, one per state.

        ``block{j}_x{i}`` is state ``i`` (0-based) of block ``j`` (1-based, in training
        order), so a name says which block a column belongs to.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored; present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str objects
            One name per column of :meth:`transform`, in its order ``[x_k, ..., x_1]``.
        """
        check_is_fitted(self)
        k = check_layer(self.transform_blocks, self.n_blocks_fitted_, name="transform_blocks")
        names = [f"block{j}_x{i}" for j in range(k, 0, -1) for i in range(self.block_sizes_[j - 1])]
        return np.asarray(names, dtype=object)

    def staged_predict(self, X):
        """Predictions of the model after each block (its re-fit ``C_1..C_i``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input samples.

        Yields
        ------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predictions after blocks 1, 2, ..., ``n_blocks_fitted_``.
        """
        states = self._states(self._checked_input(X))[:, self._perm]
        for C, c in self._stage_heads:
            yield self._decode(states[:, : C.shape[1]] @ C.T + c)


class _Pace:
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


def _fewest_at_minimum(scores) -> int:
    """The fewest leading blocks whose score is the lowest. A rejected block (zero output
    weights) leaves the outputs as they were, up to the rounding of a longer sum: such a
    tie goes to the shorter prefix, not to whichever rounding came out lower."""
    scores = np.asarray(scores, dtype=np.float64)
    best = scores.min()
    return int(np.flatnonzero(scores <= best + 1e-10 * max(abs(best), 1e-300))[0]) + 1


class _Growth:
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
