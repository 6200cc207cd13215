"""What the implicit estimators share: targets, input scaling, validation data, inference.

Input scaling. Inputs are standardised (and regression targets too) before training; the
affine maps are folded into the exported matrices, so ``A_``, ``B_``, ``C_``, ``D_`` with the
intercepts ``state_intercept_`` and ``intercept_`` reproduce :meth:`predict` on raw inputs:

    x = phi(A_ x + B_ u + state_intercept_),    y = C_ x + D_ u + intercept_.

The intercepts are not in the paper's model; they are the paper's model on the input
augmented by a constant 1 (``[B_ | state_intercept_]`` and ``[D_ | intercept_]``).
``D_`` is zero (Assumption 2). The moments are computed without overflow at any
magnitude (a column around 1e200 is standardised like any other).
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import TransformerTags
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .._validation import (
    as_array_like,
    encode_classes,
    encode_validation_targets,
    split_validation,
)
from ..training._engine import TrainingConfig, accuracy_sum, negative_squared_error_sum
from ..training._runtime import default_threads, derive_seed, restore_on_failure
from ._model import ACTIVATIONS, standardise_columns, weighted_mean

#: No standardised training input lies further than this many scales from its mean: a
#: nearly constant feature (an image border pixel) would otherwise become values of
#: hundreds of standard deviations on the few samples where it is not constant.
INPUT_MAX_SCORE = 10.0


def _checked_weights(sample_weight, X):
    """``fit``'s ``sample_weight`` as float64, validated, or None when not given."""
    if sample_weight is None:
        return None
    weights = _check_sample_weight(
        as_array_like(sample_weight), X, dtype=np.float64, ensure_non_negative=True
    )
    return np.array(weights, dtype=np.float64)  # a copy: the caller's array is never changed


def _checked_training_weights(weights):
    """The weights of the training part of a fit: some must be positive."""
    if weights is not None and not weights.sum() > 0:
        raise ValueError(
            "sample_weight is zero on every training sample (after the early_stopping "
            "split): no sample would be trained on. Give some samples a positive weight."
        )
    return weights


# ---------------------------------------------------------------------------------------
# targets: what differs between regression and classification, written once
# ---------------------------------------------------------------------------------------


class _RegressionTarget:
    """Squared loss on standardised targets; y of shape (n,) or (n, q)."""

    _score_fn = staticmethod(negative_squared_error_sum)
    _squared_loss = True

    def _validate_fit_data(self, X, y, sample_weight=None):
        X, y = validate_data(
            self,
            as_array_like(X),
            as_array_like(y),
            reset=True,
            multi_output=True,
            y_numeric=True,
            dtype=[np.float64, np.float32],
        )
        weights = _checked_weights(sample_weight, X)
        Y = np.asarray(y, dtype=np.float64)
        info = {"y_ndim": Y.ndim}
        Y = Y.reshape(Y.shape[0], -1)
        info["y_mean"], info["y_scale"] = standardise_columns(Y, sample_weight=weights)
        return X, Y, weights, info

    def _targets(self, Y, info):
        """(float64 standardised targets, number of outputs)."""
        return (Y - info["y_mean"]) / info["y_scale"], Y.shape[1]

    @staticmethod
    def _torch_targets(T):
        return torch.as_tensor(np.asarray(T), dtype=torch.float32)

    @staticmethod
    def _loss_fn(out, target, reduction="mean"):
        if reduction == "none":  # one loss per sample, as the engine weights them
            return torch.nn.functional.mse_loss(out, target, reduction="none").mean(dim=1)
        return torch.nn.functional.mse_loss(out, target, reduction=reduction)

    @staticmethod
    def _numpy_loss(out, T, sample_weight=None):
        if sample_weight is None:
            return float(np.mean((out - T) ** 2))
        return float(np.average(np.mean((out - T) ** 2, axis=1), weights=sample_weight))

    @staticmethod
    def _numpy_score(out, T, sample_weight=None):
        return float(r2_score(T, out, sample_weight=sample_weight))

    @staticmethod
    def _output_scale(info):
        return info["y_scale"], info["y_mean"]

    def _decode(self, out):
        return out.ravel() if self._target_info["y_ndim"] == 1 else out

    def _split(self, U, T, weights, seed):
        n_val = int(np.ceil(self.validation_fraction * U.shape[0]))
        if n_val < 1 or U.shape[0] - n_val < 2:
            raise ValueError(
                f"early_stopping with validation_fraction={self.validation_fraction} leaves "
                f"{n_val} validation and {U.shape[0] - n_val} training samples out of "
                f"{U.shape[0]}; raise validation_fraction or set early_stopping=False."
            )
        arrays = (U, T) if weights is None else (U, T, weights)
        parts = train_test_split(*arrays, test_size=n_val, random_state=seed % (2**31))
        U_tr, U_val, T_tr, T_val = parts[:4]
        return U_tr, T_tr, (None if weights is None else parts[4]), U_val, T_val

    @staticmethod
    def _validation_targets(y_val, info, U_val):
        Y = np.asarray(y_val, dtype=np.float64).reshape(U_val.shape[0], -1)
        if Y.shape[1] != info["y_mean"].shape[0] or not np.isfinite(Y).all():
            raise ValueError(
                f"y_val must hold finite targets of {info['y_mean'].shape[0]} output(s) for "
                f"each of the {U_val.shape[0]} rows of X_val."
            )
        return (Y - info["y_mean"]) / info["y_scale"]

    @staticmethod
    def _initial_head(T, q, sample_weight=None):
        """The best constant output before any block: the (weighted) mean target."""
        return np.zeros((q, 0)), weighted_mean(T, sample_weight)


class _ClassificationTarget:
    """Softmax cross-entropy on the logits ``C x + c``."""

    _score_fn = staticmethod(accuracy_sum)
    _squared_loss = False

    def _validate_fit_data(self, X, y, sample_weight=None):
        X, y = validate_data(
            self, as_array_like(X), as_array_like(y), reset=True, dtype=[np.float64, np.float32]
        )
        weights = _checked_weights(sample_weight, X)
        classes, y_enc = encode_classes(y)
        if weights is not None:
            weighted = np.unique(y_enc[weights > 0])
            if weighted.shape[0] < 2:
                # as y of one class: nothing to separate (and a class of zero weight only
                # would get logits of minus infinity)
                raise ValueError(
                    f"sample_weight is zero on every sample but those of class "
                    f"{classes[weighted[0]]!r}; a classifier needs samples of at least 2 "
                    "classes with a positive weight."
                )
        return X, y_enc, weights, {"classes": classes}

    def _targets(self, y_enc, info):
        return y_enc, len(info["classes"])

    @staticmethod
    def _torch_targets(T):
        return torch.as_tensor(np.asarray(T), dtype=torch.int64)

    @staticmethod
    def _loss_fn(out, target, reduction="mean"):
        return torch.nn.functional.cross_entropy(out, target, reduction=reduction)

    @staticmethod
    def _numpy_loss(out, T, sample_weight=None):
        losses = -log_softmax(out, axis=1)[np.arange(T.shape[0]), T]
        if sample_weight is None:
            return float(np.mean(losses))
        return float(np.average(losses, weights=sample_weight))

    @staticmethod
    def _numpy_score(out, T, sample_weight=None):
        return float(accuracy_score(T, out.argmax(axis=1), sample_weight=sample_weight))

    @staticmethod
    def _output_scale(info):
        return None, None

    def _decode(self, out):
        return self.classes_[np.argmax(out, axis=1)]

    def _split(self, U, T, weights, seed):
        """Stratified when every class can be split (with a warning otherwise)."""
        fraction = self.validation_fraction
        U_tr, U_val, T_tr, T_val, w_tr = split_validation(U, T, weights, fraction, seed % (2**31))
        return U_tr, T_tr, w_tr, U_val, T_val

    @staticmethod
    def _validation_targets(y_val, info, U_val):
        return encode_validation_targets(y_val, info["classes"], n_samples=U_val.shape[0])

    @staticmethod
    def _initial_head(T, q, sample_weight=None):
        """The constant logits of the (weighted) class frequencies (zero for unseen
        classes)."""
        if sample_weight is None:
            freq = np.bincount(T, minlength=q) / T.shape[0]
        else:
            freq = np.bincount(T, weights=sample_weight, minlength=q) / sample_weight.sum()
        logits = np.log(np.maximum(freq, 1e-12))
        return np.zeros((q, 0)), logits - logits.mean()

    def predict_proba(self, X):
        """Class probabilities, the softmax of the logits ``C x + c``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input samples.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Probability of each class, in the order of ``classes_``.
        """
        return softmax(self._logits(X), axis=1)


# ---------------------------------------------------------------------------------------
# the shared estimator base
# ---------------------------------------------------------------------------------------


COMMON_CONSTRAINTS = {
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
    "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
}


class ImplicitBase(TransformerMixin, BaseEstimator):
    """Tags, fit, input scaling, validation split, predict and transform of every
    implicit estimator; subclasses define ``_fit`` and ``_states``."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags = TransformerTags(preserves_dtype=["float64"])
        tags.target_tags.multi_output = getattr(self, "_squared_loss", False)
        tags.target_tags.required = True
        tags.non_deterministic = False
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None):
        """Train the model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets: real values (regressors) or class labels (classifiers).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each sample: a sample of weight ``k`` counts as ``k``
            repeated samples in the training loss, the least-squares heads, the input
            and target standardisation and the choice of blocks, and a zero weight as
            its absence. Validation scores (``early_stopping``, ``X_val``) are not
            weighted; the held-out part of a split keeps no weights. None weights every
            sample 1.
        X_val, y_val : array-like, default=None
            Validation data, used instead of a split of the training data for what
            ``early_stopping`` does (keep-best, stopping, the choice of blocks), whatever
            ``early_stopping`` says.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        with restore_on_failure(self):
            previous = dict(self.__dict__)
            # fitted attributes are assigned together, once every block is trained, so
            # that a failed or interrupted fit never leaves a half-updated estimator
            self.__dict__.update(self._fit(X, y, sample_weight, previous, (X_val, y_val)))
        return self

    # -- pieces of a fit ----------------------------------------------------------------

    def _scaled_inputs(self, X_raw, sample_weight=None):
        """Standardisation of the inputs: ``(mean, scale)``, weighted when weights are
        given."""
        return standardise_columns(X_raw, max_score=INPUT_MAX_SCORE, sample_weight=sample_weight)

    def _validation_split(self, U, T, weights, seed, given, scaling, info):
        """(train U, train T, train weights, val U, val T): the given validation data,
        else a split of the training data (and of its weights) with early stopping, else
        no validation data."""
        X_val, y_val = given
        if X_val is not None or y_val is not None:
            if X_val is None or y_val is None:
                raise ValueError("X_val and y_val must be given together.")
            X_val = validate_data(
                self, as_array_like(X_val), reset=False, dtype=[np.float64, np.float32]
            )
            U_val = (np.asarray(X_val, dtype=np.float64) - scaling[0]) / scaling[1]
            T_val = self._validation_targets(as_array_like(y_val), info, U_val)
            return U, T, weights, U_val, T_val
        if not self.early_stopping:
            return U, T, weights, None, None
        U_tr, T_tr, w_tr, U_val, T_val = self._split(U, T, weights, derive_seed(seed, 0))
        return U_tr, T_tr, _checked_training_weights(w_tr), U_val, T_val

    def _config(self, n_samples: int, label: str, **changes) -> TrainingConfig:
        settings = dict(
            label=label,
            max_epochs=self.max_epochs,
            batch_size=min(self.batch_size, n_samples),
            lr=self.lr,
            optimizer="adam",
            keep_best=True,
            n_iter_no_change=self.n_iter_no_change,
            tol=self.tol,
            verbose=max(int(self.verbose) - 1, 0),
            eval_batch_size=max(self.batch_size, 4096),
        )
        settings.update(changes)
        return TrainingConfig(**settings)

    def _threads(self, n_values: int) -> int:
        """The CPU threads of this fit (torch's and BLAS's), as ``_runtime`` picks them."""
        return self.n_threads if self.n_threads is not None else default_threads(n_values)

    # -- inference ----------------------------------------------------------------------

    def _checked_input(self, X):
        check_is_fitted(self)
        return validate_data(self, as_array_like(X), reset=False, dtype=[np.float64, np.float32])

    def _logits(self, X):
        """Outputs ``C x + c`` on raw inputs, in the fitted output units (float64)."""
        return self._states(self._checked_input(X)) @ self.C_.T + self.intercept_

    def predict(self, X):
        """Predict with the exported matrices.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input samples.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Predicted targets (regression) or class labels (classification).
        """
        return self._decode(self._logits(X))
