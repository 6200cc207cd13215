"""Implicit models as scikit-learn estimators.

- :class:`SequentialImplicitRegressor` and :class:`SequentialImplicitClassifier`: strictly
  upper block triangular implicit models trained block by block (Gautam, Anderson,
  Sojoudi and El Ghaoui, Algorithms 1 and 2);
- :class:`EndToEndImplicitRegressor` and :class:`EndToEndImplicitClassifier`: the dense
  baseline trained jointly by projected gradient (El Ghaoui et al., 2021).

Input scaling. Inputs are standardised (and regression targets too) before training; the
affine maps are folded into the exported matrices, so ``A_``, ``B_``, ``C_``, ``D_`` with the
intercepts ``state_intercept_`` and ``intercept_`` reproduce :meth:`predict` on raw inputs:

    x = phi(A_ x + B_ u + state_intercept_),    y = C_ x + D_ u + intercept_.

The intercepts are not in the paper's model; they are the paper's model on the input
augmented by a constant 1 (``[B_ | state_intercept_]`` and ``[D_ | intercept_]``).
``D_`` is zero (Assumption 2).
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import TransformerTags
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ._engine import (
    StageData,
    TrainingConfig,
    accuracy_sum,
    negative_squared_error_sum,
    train_stage,
)
from ._implicit_model import (
    ACTIVATIONS,
    BlockModule,
    DenseImplicitModule,
    ProfiledBlockModule,
    activation_numpy,
    activation_torch,
    add_self_loops,
    block_sizes,
    fixed_point_iteration,
    forward_substitution,
    pf_eigenvalue,
    profiled_predictions,
    ridge_lstsq,
    training_permutation,
)
from ._utils import (
    base_seed,
    derive_seed,
    make_generator,
    resolve_device,
    restore_on_failure,
    torch_seeded,
)
from ._validation import as_array_like, check_min_samples, encode_classes

__all__ = [
    "EndToEndImplicitClassifier",
    "EndToEndImplicitRegressor",
    "SequentialImplicitClassifier",
    "SequentialImplicitRegressor",
]


# ---------------------------------------------------------------------------------------
# targets: what differs between regression and classification, written once
# ---------------------------------------------------------------------------------------


class _RegressionTarget:
    """Squared loss on standardised targets; y of shape (n,) or (n, q)."""

    _score_fn = staticmethod(negative_squared_error_sum)

    def _validate_fit_data(self, X, y):
        X, y = validate_data(
            self,
            as_array_like(X),
            as_array_like(y),
            reset=True,
            multi_output=True,
            y_numeric=True,
            dtype=[np.float64, np.float32],
        )
        Y = np.asarray(y, dtype=np.float64)
        info = {"y_ndim": Y.ndim}
        Y = Y.reshape(Y.shape[0], -1)
        info["y_mean"] = Y.mean(axis=0)
        scale = Y.std(axis=0)
        info["y_scale"] = np.where(scale > 0, scale, 1.0)
        return X, Y, info

    def _targets(self, Y, info):
        """(float64 standardised targets, number of outputs)."""
        return (Y - info["y_mean"]) / info["y_scale"], Y.shape[1]

    @staticmethod
    def _torch_targets(T):
        return torch.as_tensor(T, dtype=torch.float32)

    @staticmethod
    def _loss_fn(out, target):
        return torch.nn.functional.mse_loss(out, target)

    @staticmethod
    def _numpy_loss(out, T):
        return float(np.mean((out - T) ** 2))

    @staticmethod
    def _numpy_score(out, T):
        return float(r2_score(T, out))

    @staticmethod
    def _output_scale(info):
        return info["y_scale"], info["y_mean"]

    def _decode(self, out):
        return out.ravel() if self._target_info["y_ndim"] == 1 else out

    @staticmethod
    def _split_stratify(T):
        return None


class _ClassificationTarget:
    """Softmax cross-entropy on the logits ``C x + c``."""

    _score_fn = staticmethod(accuracy_sum)

    def _validate_fit_data(self, X, y):
        X, y = validate_data(
            self, as_array_like(X), as_array_like(y), reset=True, dtype=[np.float64, np.float32]
        )
        classes, y_enc = encode_classes(y)
        return X, y_enc, {"classes": classes}

    def _targets(self, y_enc, info):
        return y_enc, len(info["classes"])

    @staticmethod
    def _torch_targets(T):
        return torch.as_tensor(T, dtype=torch.int64)

    @staticmethod
    def _loss_fn(out, target):
        return torch.nn.functional.cross_entropy(out, target)

    @staticmethod
    def _numpy_loss(out, T):
        return float(-np.mean(log_softmax(out, axis=1)[np.arange(T.shape[0]), T]))

    @staticmethod
    def _numpy_score(out, T):
        return float(accuracy_score(T, out.argmax(axis=1)))

    @staticmethod
    def _output_scale(info):
        return None, None

    def _decode(self, out):
        return self.classes_[np.argmax(out, axis=1)]

    @staticmethod
    def _split_stratify(T):
        counts = np.bincount(T)
        return T if counts[counts > 0].min() >= 2 else None

    def predict_proba(self, X):
        """Class probabilities, the softmax of the logits ``C x + c``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        return softmax(self._logits(X), axis=1)


_COMMON_CONSTRAINTS = {
    "n_states": [Interval(Integral, 1, None, closed="left")],
    "activation": [StrOptions(set(ACTIVATIONS))],
    "max_epochs": [Interval(Integral, 1, None, closed="left")],
    "lr": [Interval(Real, 0, None, closed="neither")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
    "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
    "tol": [Interval(Real, 0, None, closed="left")],
    "device": [str, torch.device],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}


def _standardise_inputs(X):
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    return mean, np.where(scale > 0, scale, 1.0)


class _ImplicitBase(BaseEstimator):
    """What every implicit estimator shares: tags, validation split, transform."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags = TransformerTags(preserves_dtype=["float64"])
        tags.target_tags.multi_output = isinstance(self, _RegressionTarget)
        tags.non_deterministic = False
        return tags

    def _split(self, U, T, seed):
        """(train U, train T, val U, val T); no validation set without early stopping."""
        if not self.early_stopping:
            return U, T, None, None
        n_val = int(np.ceil(self.validation_fraction * U.shape[0]))
        if n_val < 1 or U.shape[0] - n_val < 1:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} leaves no training or no "
                f"validation samples out of {U.shape[0]}."
            )
        stratify = self._split_stratify(T)
        try:
            U_tr, U_val, T_tr, T_val = train_test_split(
                U, T, test_size=n_val, random_state=seed % (2**32), stratify=stratify
            )
        except ValueError:
            U_tr, U_val, T_tr, T_val = train_test_split(
                U, T, test_size=n_val, random_state=seed % (2**32)
            )
        return U_tr, T_tr, U_val, T_val

    def _config(self, n_samples: int, label: str) -> TrainingConfig:
        return TrainingConfig(
            label=label,
            max_epochs=self.max_epochs,
            batch_size=min(self.batch_size, n_samples),
            lr=self.lr,
            optimizer="adam",
            keep_best=True,
            n_iter_no_change=self.n_iter_no_change,
            tol=self.tol,
            verbose=max(int(self.verbose) - 1, 0),
        )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train the model: block by block (Algorithm 1, and 2 for ``solver="alternating"``)
        for the sequential estimators, all of ``A``, ``B``, ``C`` jointly for the end-to-end
        ones.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        # fitted state is assigned at the end of _fit; validate_data's n_features_in_ is
        # the one attribute set earlier, and a failure puts it back too
        with restore_on_failure(self):
            return self._fit(X, y)

    def fit_transform(self, X, y):
        """Fit, then return the state ``x`` of the training samples (see :meth:`transform`)."""
        return self.fit(X, y).transform(X)

    def _logits(self, X):
        """Outputs ``C x + c`` on raw inputs, in the fitted output units (float64)."""
        check_is_fitted(self)
        X = validate_data(self, as_array_like(X), reset=False, dtype=[np.float64, np.float32])
        return self._states(X) @ self.C_.T + self.intercept_

    def predict(self, X):
        """Predict with the exported matrices.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predicted targets (regression) or class labels (classification).
        """
        return self._decode(self._logits(X))


# ---------------------------------------------------------------------------------------
# sequential blockwise training (Gautam et al.)
# ---------------------------------------------------------------------------------------


class _SequentialBase(_ImplicitBase):
    """Algorithm 1 (and 2) of Gautam et al., shared by the regressor and the classifier."""

    _parameter_constraints: dict = {
        **_COMMON_CONSTRAINTS,
        "n_blocks": [Interval(Integral, 1, None, closed="left")],
        "solver": [StrOptions({"adam", "alternating"})],
        "self_loops": ["boolean"],
        "n_alternating_iter": [Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "warm_start": ["boolean"],
        "transform_blocks": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        n_states=30,
        n_blocks=10,
        *,
        activation="relu",
        solver="adam",
        self_loops=False,
        max_epochs=200,
        lr=0.01,
        batch_size=512,
        n_alternating_iter=3,
        alpha=3e-3,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=20,
        tol=1e-4,
        device="auto",
        random_state=None,
        verbose=0,
        warm_start=False,
        transform_blocks=None,
    ):
        self.n_states = n_states
        self.n_blocks = n_blocks
        self.activation = activation
        self.solver = solver
        self.self_loops = self_loops
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.n_alternating_iter = n_alternating_iter
        self.alpha = alpha
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.transform_blocks = transform_blocks

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

    def _warm_state(self, sizes, n_features, prev_n_features, info):
        """The blocks to keep from a previous fit, or None to start afresh."""
        if not (self.warm_start and hasattr(self, "_blocks")):
            return None
        fitted = list(self.block_sizes_)
        if sizes[: len(fitted)] != fitted:
            raise ValueError(
                f"warm_start=True needs the new partition {sizes} to begin with the fitted "
                f"blocks {fitted}. With n_i = floor(n_states / n_blocks), grow a model by "
                "raising n_states and n_blocks together at the same block size (e.g. "
                "n_states=30, n_blocks=10 -> n_states=45, n_blocks=15), or resume an "
                "interrupted fit with the same values. Set warm_start=False to refit."
            )
        if n_features != prev_n_features:
            raise ValueError("warm_start=True needs the same features as the previous fit.")
        if "classes" in info and not np.array_equal(info["classes"], self.classes_):
            raise ValueError("warm_start=True needs the same classes as the previous fit.")
        return self

    def _fit(self, X, y):
        prev_n_features = getattr(self, "n_features_in_", None)
        X_raw, Y_raw, info = self._validate_fit_data(X, y)
        check_min_samples(X_raw, 2)
        self._check_fit_params()
        sizes = block_sizes(self.n_states, self.n_blocks)
        previous = self._warm_state(sizes, X_raw.shape[1], prev_n_features, info)
        if previous is not None:
            # the scalers of the first fit stay: the kept blocks were trained in its units
            u_mean, u_scale = previous._u_mean, previous._u_scale
            info = previous._target_info
            blocks = [(W.copy(), b.copy()) for W, b in previous._blocks]
            heads = [(C.copy(), c.copy()) for C, c in previous._heads_std]
            history = list(previous.history_)
            scores = list(previous.block_scores_)
        else:
            u_mean, u_scale = _standardise_inputs(X_raw)
            blocks, heads, history, scores = [], [], [], []
        T, q = self._targets(Y_raw, info)
        U = (np.asarray(X_raw, dtype=np.float64) - u_mean) / u_scale

        device = resolve_device(self.device)
        seed = base_seed(self.random_state)
        U_tr, T_tr, U_val, T_val = self._split(U, T, seed)
        X_states = self._numpy_states(blocks, U_tr)
        X_val_states = None if U_val is None else self._numpy_states(blocks, U_val)

        cache = {}
        for i in range(len(blocks), len(sizes)):
            try:
                W, b, head, block_history = self._fit_block(
                    i,
                    sizes[i],
                    X_states,
                    U_tr,
                    T_tr,
                    X_val_states,
                    U_val,
                    T_val,
                    heads[-1] if heads else None,
                    q,
                    device,
                    seed,
                    cache,
                )
                new_states = np.hstack([X_states, self._block_states(W, b, X_states, U_tr)])
                new_val = None
                if U_val is not None:
                    new_val = self._block_states(W, b, X_val_states, U_val)
                    new_val = np.hstack([X_val_states, new_val])
                score = self._numpy_score(self._head_out(head, new_states), T_tr)
            except KeyboardInterrupt:
                if not blocks:
                    raise
                warnings.warn(
                    f"fit interrupted during block {i + 1}; keeping the {len(blocks)} "
                    "finished blocks.",
                    UserWarning,
                    stacklevel=2,
                )
                break
            blocks.append((W, b))
            heads.append(head)
            history.append(block_history)
            scores.append(score)
            X_states, X_val_states = new_states, new_val
            if self.verbose:
                print(f"block {i + 1}/{len(sizes)}: training score {score:.4f}")

        # fitted state is built above in locals and assigned here only, so that a failed
        # or interrupted fit never leaves a half-updated estimator
        self._u_mean, self._u_scale = u_mean, u_scale
        self._target_info = info
        self._blocks = blocks
        self._heads_std = heads
        self.history_ = history
        self.block_scores_ = scores
        self.block_sizes_ = sizes[: len(blocks)]
        self.n_blocks_fitted_ = len(blocks)
        self.device_ = str(device)
        if "classes" in info:
            self.classes_ = info["classes"]
        else:
            self.n_outputs_ = q
        self._export()
        return self

    def _block_states(self, W, b, X_states, U):
        # two products rather than one on [X_states, U]: no copy of the (large) inputs
        s = X_states.shape[1]
        return activation_numpy(self.activation, X_states @ W[:, :s].T + U @ W[:, s:].T + b)

    def _numpy_states(self, blocks, U):
        X_states = np.zeros((U.shape[0], 0))
        for W, b in blocks:
            X_states = np.hstack([X_states, self._block_states(W, b, X_states, U)])
        return X_states

    @staticmethod
    def _head_out(head, X_states):
        C, c = head
        return X_states @ C.T + c

    def _fit_block(
        self,
        i,
        n_new,
        X_states,
        U,
        T,
        X_val_states,
        U_val,
        T_val,
        prev_head,
        q,
        device,
        seed,
        cache,
    ):
        """Block i's subproblem (7): returns (W, b, head, history), float64 numpy."""
        n_prev = X_states.shape[1]
        act = activation_torch(self.activation)
        with torch_seeded(derive_seed(seed, i)):
            module = BlockModule(n_prev, U.shape[1], n_new, q, act)
        if prev_head is not None:
            with torch.no_grad():
                module.head_prev.weight.copy_(torch.as_tensor(prev_head[0]))
                module.head_prev.bias.copy_(torch.as_tensor(prev_head[1]))
        module.to(device)
        generator = make_generator(derive_seed(seed, i, 1), device)

        def tensor(a):
            return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)

        # the inputs are converted once per fit, the states once per block
        if cache.get("U") is None:
            cache["U"] = tensor(U)
            cache["U_val"] = None if U_val is None else tensor(U_val)
        F = torch.cat([tensor(X_states), cache["U"]], dim=1)
        Tt = self._torch_targets(T).to(device)
        F_val = T_val_t = None
        if U_val is not None:
            F_val = torch.cat([tensor(X_val_states), cache["U_val"]], dim=1)
            T_val_t = self._torch_targets(T_val).to(device)
        # data-dependent biases: each new unit's hyperplane passes through a random
        # training sample, so no unit starts dead or constant on the data
        with torch.no_grad():
            rows = torch.randint(0, F.shape[0], (n_new,), generator=generator, device=device)
            module.hidden.bias.copy_(-(module.hidden.weight * F[rows]).sum(dim=1))
        config = self._config(F.shape[0], label=f"block {i + 1}")
        data = StageData(F, Tt, F_val, T_val_t)
        kwargs = dict(
            loss_fn=self._loss_fn,
            config=config,
            generator=generator,
            score_fn=self._score_fn,
        )
        history = []
        if self.solver == "alternating":
            for t in range(self.n_alternating_iter):
                self._least_squares_head(module, F, T)
                # problem (12): the previous blocks' head stays fixed, so the hidden layer
                # and C_i are fitted to the residual Y - sum_{j<i} C_j X_j
                for p in module.head_prev.parameters():
                    p.requires_grad_(False)
                result = train_stage(module, data, **kwargs)
                for p in module.head_prev.parameters():
                    p.requires_grad_(True)
                history.extend({**rec, "round": t + 1} for rec in result.history)
        elif self._exact_head and F_val is None:
            # squared loss: the head is eliminated by exact least squares in every step
            # (variable projection), Adam searches over [A_{i,:}, B_i]
            alpha = max(self.alpha, 1e-5)  # keeps the batch Gram matrix invertible
            profiled = ProfiledBlockModule(module.hidden, n_prev, act)

            last = {}

            def loss_fn(S, target):
                pred = profiled_predictions(S, target, alpha)
                last.update(key=(S.data_ptr(), S.shape), pred=pred)
                return torch.nn.functional.mse_loss(pred, target)

            def score_fn(S, target):
                # the engine scores the batch it just trained on: reuse its solve
                if last.get("key") == (S.data_ptr(), S.shape):
                    pred = last["pred"].detach()
                else:
                    pred = profiled_predictions(S, target, alpha)
                return negative_squared_error_sum(pred, target)

            kwargs.update(loss_fn=loss_fn, score_fn=score_fn)
            history = train_stage(profiled, data, **kwargs).history
        else:
            history = train_stage(module, data, **kwargs).history

        W = module.hidden.weight.detach().cpu().double().numpy()
        b = module.hidden.bias.detach().cpu().double().numpy()
        new_states = self._block_states(W, b, X_states, U)
        X_all = np.hstack([X_states, new_states])
        if self._exact_head:
            C, c = ridge_lstsq(X_all, T, self.alpha * X_all.shape[0])
        else:
            C = np.hstack(
                [
                    module.head_prev.weight.detach().cpu().double().numpy(),
                    module.head_new.weight.detach().cpu().double().numpy(),
                ]
            )
            c = module.head_prev.bias.detach().cpu().double().numpy()
        # accept the block only if it lowers the training loss: otherwise C_i = 0 and the
        # model stays the previous one, so the loss never rises from block to block
        prev = prev_head if prev_head is not None else (np.zeros((q, 0)), self._zero_bias(T, q))
        prev_C = np.hstack([prev[0], np.zeros((q, n_new))])
        prev_loss = self._numpy_loss(X_all @ prev_C.T + prev[1], T)
        if not self._numpy_loss(X_all @ C.T + c, T) <= prev_loss:
            C, c = prev_C, prev[1]
        return W, b, (C, c), history

    def _least_squares_head(self, module, F, T):
        """Exact least squares (11) for C_1..C_i given the current states."""
        with torch.no_grad():
            states = module.states(F).double().cpu().numpy()
        X_all = np.hstack([F[:, : module.n_prev].double().cpu().numpy(), states])
        C, c = ridge_lstsq(X_all, T, self.alpha * X_all.shape[0])
        with torch.no_grad():
            dev = module.head_new.weight.device
            module.head_prev.weight.copy_(torch.as_tensor(C[:, : module.n_prev], device=dev))
            module.head_prev.bias.copy_(torch.as_tensor(c, device=dev))
            module.head_new.weight.copy_(torch.as_tensor(C[:, module.n_prev :], device=dev))

    @staticmethod
    def _zero_bias(T, q):
        """The best constant output before any block (the mean target, or zero logits)."""
        if T.ndim == 2:
            return T.mean(axis=0)
        return np.zeros(q)

    # -- export --------------------------------------------------------------------------

    def _export(self):
        """Build the paper-layout, raw-unit matrices from the training-order blocks."""
        sizes = self.block_sizes_
        n, p = sum(sizes), self.n_features_in_
        A = np.zeros((n, n))
        B = np.zeros((n, p))
        b = np.zeros(n)
        start = 0
        for W, bias in self._blocks:
            rows = slice(start, start + W.shape[0])
            A[rows, :start] = W[:, :start]
            B_std = W[:, start:]
            B[rows] = B_std / self._u_scale
            b[rows] = bias - B_std @ (self._u_mean / self._u_scale)
            start = rows.stop
        out_scale, out_mean = self._output_scale(self._target_info)
        stage_heads = []
        for C, c in self._heads_std:
            if out_scale is not None:
                C, c = out_scale[:, None] * C, out_scale * c + out_mean
            stage_heads.append((C, c))
        perm = training_permutation(sizes)
        A_p = np.zeros_like(A)
        A_p[np.ix_(perm, perm)] = A
        B_p = np.zeros_like(B)
        B_p[perm] = B
        b_p = np.zeros_like(b)
        b_p[perm] = b
        q = stage_heads[-1][0].shape[0] if stage_heads else 0
        C_p = np.zeros((q, n))
        if stage_heads:
            C_p[:, perm] = stage_heads[-1][0]
        if self.self_loops:
            A_p, B_p, b_p = add_self_loops(A_p, B_p, b_p, self.activation)
        self.A_, self.B_, self.C_ = A_p, B_p, C_p
        self.D_ = np.zeros((q, p))
        self.state_intercept_ = b_p
        self.intercept_ = stage_heads[-1][1] if stage_heads else np.zeros(q)
        self.pf_eigenvalue_ = pf_eigenvalue(A_p)
        self._stage_heads = stage_heads
        self._perm = perm

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

    def transform(self, X):
        """The state ``x`` solving ``x = phi(A_ x + B_ u + state_intercept_)``.

        Columns follow the paper's order ``[x_L, ..., x_1]`` (the columns of ``A_``). With
        ``transform_blocks=k``, only the states of the first ``k`` trained blocks are
        returned, ``[x_k, ..., x_1]`` (the last ``n_1 + ... + n_k`` columns), for probing.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_states) or (n_samples, n_1 + ... + n_k)
        """
        check_is_fitted(self)
        X = validate_data(self, as_array_like(X), reset=False, dtype=[np.float64, np.float32])
        states = self._states(X)
        k = self.transform_blocks
        if k is None:
            return states
        if k > self.n_blocks_fitted_:
            raise ValueError(
                f"transform_blocks={k} exceeds the {self.n_blocks_fitted_} fitted blocks."
            )
        return states[:, states.shape[1] - sum(self.block_sizes_[:k]) :]

    def staged_predict(self, X):
        """Predictions of the model after each block (its re-fit ``C_1..C_i``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Yields
        ------
        ndarray
            The predictions after blocks 1, 2, ..., ``n_blocks_fitted_``.
        """
        check_is_fitted(self)
        X = validate_data(self, as_array_like(X), reset=False, dtype=[np.float64, np.float32])
        states = self._states(X)[:, self._perm]
        for C, c in self._stage_heads:
            yield self._decode(states[:, : C.shape[1]] @ C.T + c)


class SequentialImplicitRegressor(RegressorMixin, _RegressionTarget, _SequentialBase):
    """Implicit model with a strictly upper block triangular ``A``, trained block by block.

    The model is ``x = phi(A x + B u + b)``, ``y = C x + c`` (Gautam et al.). Its ``n_states``
    states are split into ``n_blocks`` blocks; block ``i`` reads the input and the states
    of blocks ``j < i`` and is trained once, with the earlier blocks frozen, together with
    a re-fit of the output weights ``C_1..C_i`` (Algorithm 1). A block is kept only if it
    lowers the training loss, so the loss never rises from one block to the next. After
    each block the output weights are re-fit by exact ridge least squares.

    Inputs and targets are standardised for training; the maps are folded into the
    exported ``A_``, ``B_``, ``C_``, ``state_intercept_`` and ``intercept_``.

    Parameters
    ----------
    n_states : int, default=30
        Order ``n`` of the model (number of states).
    n_blocks : int, default=10
        Number ``L`` of blocks; ``n_i = floor(n / L)``, the last block takes the rest.
    activation : {"relu", "leaky_relu", "tanh", "sigmoid"}, default="relu"
        A CONE activation ``phi``.
    solver : {"adam", "alternating"}, default="adam"
        ``"adam"``: local search on each block's subproblem (7); for the squared loss
        the head ``C_1..C_i`` is eliminated by exact ridge least squares on every
        mini-batch (variable projection) and Adam moves ``[A_{i,:}, B_i]`` only, which
        finds much better blocks than moving all of them with Adam (unless
        ``early_stopping``, whose validation score needs a fixed head). ``"alternating"``:
        Algorithm 2, ``n_alternating_iter`` rounds of exact least squares for ``C`` then the
        single-hidden-layer problem (12) for ``[A_{i,:}, B_i]`` (and ``C_i``) on the residual.
    self_loops : bool, default=False
        Export a non-strictly upper triangular ``A`` with self-loops ``diag(A) = 0.5``
        that predicts exactly as the strict model (Theorem 2). ReLU only.
    max_epochs : int, default=200
        Epochs per block (per round for the alternating solver).
    lr : float, default=0.01
        Adam step size.
    batch_size : int, default=512
        Mini-batch size (data sets smaller than this train full batch). For the squared
        loss with ``solver="adam"`` the exact least-squares head is solved on each batch.
    n_alternating_iter : int, default=3
        Rounds ``T`` of Algorithm 2.
    alpha : float, default=3e-3
        Ridge penalty of the least-squares fits of ``C``: they minimise
        ``mean ||y - C x - c||^2 + alpha ||C||_F^2`` in standardised units.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data; each block keeps its best epoch on
        it and stops after ``n_iter_no_change`` epochs without an improvement of ``tol``.
        Without it the same rule follows the training loss.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=20
    tol : float, default=1e-4
    device : str or torch.device, default="auto"
        ``"auto"`` is CUDA when available. The fitted state is numpy, so a model fitted on
        a GPU predicts on a CPU-only machine.
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
    warm_start : bool, default=False
        Keep the fitted blocks and train only the new ones. The new partition must begin
        with the fitted block sizes: grow a model by raising ``n_states`` and ``n_blocks``
        together at the same block size (``n_states=30, n_blocks=10`` to ``45, 15``
        trains blocks 11 to 15 only), or resume an interrupted fit; any other change
        raises ValueError.
    transform_blocks : int or None, default=None
        If set, :meth:`transform` returns only the states of the first blocks.

    Attributes
    ----------
    A_ : ndarray of shape (n, n)
        Strictly upper block triangular (paper layout ``x = [x_L; ...; x_1]``).
    B_ : ndarray of shape (n, n_features)
    C_ : ndarray of shape (n_outputs, n)
    D_ : ndarray of shape (n_outputs, n_features)
        Zero (Assumption 2).
    state_intercept_ : ndarray of shape (n,)
    intercept_ : ndarray of shape (n_outputs,)
    block_sizes_ : list of int
        Sizes ``n_1, ..., n_k`` of the fitted blocks, in training order.
    history_ : list of list of dict
        Per block, the engine's per-epoch records.
    block_scores_ : list of float
        Training R^2 after each block.
    pf_eigenvalue_ : float
        ``lambda_PF(|A_|)``; 0 for the strict model, 0.5 with self-loops.
    n_blocks_fitted_ : int
    n_outputs_ : int
    n_features_in_ : int

    See Also
    --------
    SequentialImplicitClassifier, EndToEndImplicitRegressor

    References
    ----------
    T. Gautam, B. G. Anderson, S. Sojoudi and L. El Ghaoui, "A sequential greedy approach
    for training implicit deep models", 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_greedy import SequentialImplicitRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-1, 1, (200, 1))
    >>> y = np.sin(3 * X[:, 0])
    >>> reg = SequentialImplicitRegressor(n_states=8, n_blocks=4, random_state=0).fit(X, y)
    >>> reg.A_.shape, reg.block_sizes_
    ((8, 8), [2, 2, 2, 2])
    >>> bool(reg.score(X, y) > 0.9)
    True
    """

    _exact_head = True


class SequentialImplicitClassifier(ClassifierMixin, _ClassificationTarget, _SequentialBase):
    """Implicit model with a strictly upper block triangular ``A``, trained block by block
    for classification (softmax cross-entropy on the logits ``C x + c``).

    Parameters and attributes are those of :class:`SequentialImplicitRegressor`, except
    that ``solver`` is ``"adam"`` only (Algorithm 2 needs the squared loss),
    ``n_alternating_iter`` and ``alpha`` are unused, ``block_scores_`` holds training
    accuracies, and ``classes_`` holds the class labels. Inputs are standardised and the
    maps folded into ``B_`` and ``state_intercept_``.

    See Also
    --------
    SequentialImplicitRegressor, EndToEndImplicitClassifier

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_greedy import SequentialImplicitClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = SequentialImplicitClassifier(n_states=8, n_blocks=4, random_state=0).fit(X, y)
    >>> clf.predict_proba(X).shape
    (150, 3)
    >>> bool(clf.score(X, y) > 0.9)
    True
    """

    _exact_head = False
    _parameter_constraints: dict = {
        **_SequentialBase._parameter_constraints,
        "solver": [StrOptions({"adam"})],
    }


# ---------------------------------------------------------------------------------------
# end-to-end baseline (El Ghaoui et al.)
# ---------------------------------------------------------------------------------------


class _EndToEndBase(_ImplicitBase):
    """A dense implicit model trained jointly (projected gradient, implicit gradient)."""

    _parameter_constraints: dict = {
        **_COMMON_CONSTRAINTS,
        "kappa": [Interval(Real, 0, 1, closed="neither")],
    }

    def __init__(
        self,
        n_states=30,
        *,
        activation="relu",
        kappa=0.95,
        max_epochs=200,
        lr=0.01,
        batch_size=64,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.n_states = n_states
        self.activation = activation
        self.kappa = kappa
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _fit(self, X, y):
        X_raw, Y_raw, info = self._validate_fit_data(X, y)
        check_min_samples(X_raw, 2)
        u_mean, u_scale = _standardise_inputs(X_raw)
        T, q = self._targets(Y_raw, info)
        U = (np.asarray(X_raw, dtype=np.float64) - u_mean) / u_scale
        device = resolve_device(self.device)
        seed = base_seed(self.random_state)
        U_tr, T_tr, U_val, T_val = self._split(U, T, seed)
        with torch_seeded(derive_seed(seed, 0)):
            module = DenseImplicitModule(
                U.shape[1], self.n_states, q, activation_torch(self.activation), self.kappa
            )
        module.to(device)

        def tensor(a):
            return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)

        data = StageData(
            tensor(U_tr),
            self._torch_targets(T_tr).to(device),
            None if U_val is None else tensor(U_val),
            None if U_val is None else self._torch_targets(T_val).to(device),
        )
        result = train_stage(
            module,
            data,
            loss_fn=self._loss_fn,
            config=self._config(U_tr.shape[0], label="end-to-end"),
            generator=make_generator(derive_seed(seed, 0, 1), device),
            score_fn=self._score_fn,
        )
        module.project()
        A = module.A.detach().cpu().double().numpy()
        B_std = module.inp.weight.detach().cpu().double().numpy()
        b_std = module.inp.bias.detach().cpu().double().numpy()
        C = module.out.weight.detach().cpu().double().numpy()
        c = module.out.bias.detach().cpu().double().numpy()
        out_scale, out_mean = self._output_scale(info)
        if out_scale is not None:
            C, c = out_scale[:, None] * C, out_scale * c + out_mean

        self._target_info = info
        self.A_ = A
        self.B_ = B_std / u_scale
        self.state_intercept_ = b_std - B_std @ (u_mean / u_scale)
        self.C_ = C
        self.D_ = np.zeros((q, X_raw.shape[1]))
        self.intercept_ = c
        self.pf_eigenvalue_ = pf_eigenvalue(A)
        self.history_ = result.history
        self.device_ = str(device)
        if "classes" in info:
            self.classes_ = info["classes"]
        else:
            self.n_outputs_ = q
        return self

    def _states(self, X):
        return fixed_point_iteration(
            self.A_,
            self.B_,
            X,
            self.activation,
            state_intercept=self.state_intercept_,
            max_iter=5000,
            tol=1e-10,
        )

    def transform(self, X):
        """The equilibrium state ``x`` of each sample, shape (n_samples, n_states).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_states)
        """
        check_is_fitted(self)
        X = validate_data(self, as_array_like(X), reset=False, dtype=[np.float64, np.float32])
        return self._states(X)


class EndToEndImplicitRegressor(RegressorMixin, _RegressionTarget, _EndToEndBase):
    """Dense implicit model trained end to end (El Ghaoui et al., 2021): the baseline.

    All of ``A``, ``B``, ``C`` are trained jointly with Adam on the squared loss. The
    forward pass solves the fixed point by iteration; gradients are implicit (the adjoint
    fixed point is solved in a backward hook, see ``DenseImplicitModule``). After each step
    the rows of ``A`` are projected onto the l1 ball of radius ``kappa`` so that
    ``||A||_inf <= kappa < 1``, which implies well-posedness (Theorem 1). Inputs and
    targets are standardised and the maps folded into the exported matrices.

    Parameters
    ----------
    n_states : int, default=30
    activation : {"relu", "leaky_relu", "tanh", "sigmoid"}, default="relu"
    kappa : float, default=0.95
        Bound on ``||A||_inf``.
    max_epochs, lr, batch_size, early_stopping, validation_fraction, n_iter_no_change, \
tol, device, random_state, verbose
        As in :class:`SequentialImplicitRegressor`.

    Attributes
    ----------
    A_, B_, C_, D_, state_intercept_, intercept_ : ndarray
        The exported dense model on raw inputs.
    pf_eigenvalue_ : float
    history_ : list of dict
    n_outputs_, n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_greedy import EndToEndImplicitRegressor
    >>> X = np.linspace(-1, 1, 100)[:, None]
    >>> reg = EndToEndImplicitRegressor(n_states=8, max_epochs=50, random_state=0)
    >>> reg = reg.fit(X, X[:, 0] ** 2)
    >>> bool(np.abs(reg.A_).sum(axis=1).max() <= 0.95 + 1e-6)
    True
    """


class EndToEndImplicitClassifier(ClassifierMixin, _ClassificationTarget, _EndToEndBase):
    """Dense implicit model trained end to end for classification (the baseline).

    As :class:`EndToEndImplicitRegressor`, with softmax cross-entropy on ``C x + c``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_greedy import EndToEndImplicitClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = EndToEndImplicitClassifier(n_states=8, max_epochs=30, random_state=0)
    >>> bool(clf.fit(X, y).score(X, y) > 0.8)
    True
    """
