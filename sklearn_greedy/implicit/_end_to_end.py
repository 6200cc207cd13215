"""The end-to-end implicit baseline (El Ghaoui et al., 2021): a dense implicit model whose
``A``, ``B``, ``C`` are trained jointly by projected gradient, with implicit gradients."""

from __future__ import annotations

from numbers import Real

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from .._validation import check_min_samples
from ..training._engine import StageData, stage_diagnostics, train_stage
from ..training._runtime import (
    base_seed,
    derive_seed,
    estimator_runtime,
    make_generator,
    resolve_device,
    torch_seeded,
)
from ._base import (
    COMMON_CONSTRAINTS,
    ImplicitBase,
    _ClassificationTarget,
    _RegressionTarget,
)
from ._model import (
    DenseImplicitModule,
    activation_torch,
    fixed_point_iteration,
    pf_eigenvalue,
)

__all__ = ["EndToEndImplicitClassifier", "EndToEndImplicitRegressor"]


class EndToEndBase(ImplicitBase):
    """A dense implicit model trained jointly (projected gradient, implicit gradient)."""

    _parameter_constraints: dict = {
        **COMMON_CONSTRAINTS,
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
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        device="auto",
        n_threads=None,
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
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    def _fit(self, X, y, sample_weight, previous, given) -> dict:
        X_raw, Y_raw, weights, info = self._validate_fit_data(X, y, sample_weight)
        check_min_samples(X_raw, 2)
        device = resolve_device(self.device)
        u_mean, u_scale = self._scaled_inputs(X_raw, weights)
        T, q = self._targets(Y_raw, info)
        U = (np.asarray(X_raw, dtype=np.float64) - u_mean) / u_scale
        seed = base_seed(self.random_state)
        U_tr, T_tr, w_tr, U_val, T_val = self._validation_split(
            U, T, weights, seed, given, (u_mean, u_scale), info
        )
        n_values = min(self.batch_size, U_tr.shape[0]) * (U.shape[1] + self.n_states)
        with estimator_runtime(self, device, n_values=n_values):
            with torch_seeded(derive_seed(seed, 0)):
                module = DenseImplicitModule(
                    U.shape[1], self.n_states, q, activation_torch(self.activation), self.kappa
                )
            module.to(device)

            def tensor(a):
                return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)

            data = StageData(tensor(U_tr), self._torch_targets(T_tr).to(device))
            if w_tr is not None:  # the engine's loss: the weighted mean over each batch
                data.sample_weight = tensor(w_tr)
            if U_val is not None:
                data.X_val, data.y_val = tensor(U_val), self._torch_targets(T_val).to(device)
            result = train_stage(
                module,
                data,
                loss_fn=self._loss_fn,
                config=self._config(U_tr.shape[0], label="end-to-end"),
                generator=make_generator(derive_seed(seed, 0, 1), device),
                score_fn=self._score_fn,
            )
            module.project()
        if self.verbose:
            print(f"end-to-end: {result.n_iter} epochs, best epoch {result.best_epoch}")

        def numpy(t):
            return t.detach().cpu().double().numpy()

        A, B_std, b_std = numpy(module.A), numpy(module.inp.weight), numpy(module.inp.bias)
        C, c = numpy(module.out.weight), numpy(module.out.bias)
        out_scale, out_mean = self._output_scale(info)
        if out_scale is not None:
            C, c = out_scale[:, None] * C, out_scale * c + out_mean
        fitted = {
            "_target_info": info,
            "A_": A,
            "B_": B_std / u_scale,
            "state_intercept_": b_std - B_std @ (u_mean / u_scale),
            "C_": C,
            "D_": np.zeros((q, X_raw.shape[1])),
            "intercept_": c,
            "pf_eigenvalue_": pf_eigenvalue(A),
            "history_": [result.history],
            **stage_diagnostics([result], watch_convergence=U_val is not None, stage_name="Stage"),
            "device_": str(device),
        }
        if "classes" in info:
            fitted["classes_"] = info["classes"]
        else:
            fitted["n_outputs_"] = q
        return fitted

    def _states(self, X):
        return fixed_point_iteration(
            self.A_,
            self.B_,
            X,
            self.activation,
            state_intercept=self.state_intercept_,
            max_iter=10_000,
            tol=1e-10,
        )

    def transform(self, X):
        """The equilibrium state ``x`` of each sample.

        The fixed point is found by the iteration of Theorem 1 to a relative tolerance
        of 1e-10 per sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input samples.

        Returns
        -------
        states : ndarray of shape (n_samples, n_states)
            The state ``x`` solving ``x = phi(A_ x + B_ u + state_intercept_)``.
        """
        return self._states(self._checked_input(X))

    def get_feature_names_out(self, input_features=None):
        """Names of the states returned by :meth:`transform`: ``x0``, ``x1``, ...

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored; present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str objects
            One name per state.
        """
        check_is_fitted(self)
        return np.asarray([f"x{k}" for k in range(self.A_.shape[0])], dtype=object)


class EndToEndImplicitRegressor(RegressorMixin, _RegressionTarget, EndToEndBase):
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
        Order ``n`` of the model (number of states).
    activation : {"relu", "leaky_relu", "tanh", "sigmoid"}, default="relu"
        A CONE activation ``phi``.
    kappa : float, default=0.95
        Bound on ``||A||_inf``, in (0, 1).
    max_epochs : int, default=200
        Epochs of Adam.
    lr : float, default=0.01
        Adam step size.
    batch_size : int, default=64
        Mini-batch size.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the data, keep the epoch with the best
        validation score and stop after ``n_iter_no_change`` epochs without an
        improvement of ``tol``; without it the same rule follows the training loss,
        which lets the dense model fit the noise of a small data set.
    validation_fraction : float, default=0.1
        Fraction of the training data held out with ``early_stopping``.
    n_iter_no_change : int, default=10
        Epochs without improvement before training stops.
    tol : float, default=1e-4
        Improvement below which an epoch counts as no improvement.
    device : str or torch.device, default="auto"
        Where to train: ``"auto"`` is CUDA when available.
    n_threads : int or None, default=None
        CPU threads of torch during fit (restored afterwards); None picks one thread for
        small models.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling and the validation split.
    verbose : int, default=0
        1 prints one line at the end of training; 2 also each epoch.

    Attributes
    ----------
    A_ : ndarray of shape (n_states, n_states)
        Dense, with ``||A_||_inf <= kappa``.
    B_ : ndarray of shape (n_states, ``n_features_in_``)
        Input weights on raw inputs.
    C_ : ndarray of shape (``n_outputs_``, n_states)
        Output weights.
    D_ : ndarray of shape (``n_outputs_``, ``n_features_in_``)
        Zero.
    state_intercept_ : ndarray of shape (n_states,)
        Intercept of the fixed-point equation.
    intercept_ : ndarray of shape (``n_outputs_``,)
        Intercept of the prediction equation.
    pf_eigenvalue_ : float
        ``lambda_PF(|A_|)``, below 1.
    history_ : list of list of dict
        One entry (the single stage) of per-epoch records: ``epoch``, ``train_loss``,
        ``train_score``, ``valid_score``, ``lr``, ``seconds``.
    n_iter_ : ndarray of shape (1,)
        Epochs run.
    loss_curve_ : list of list of float
        Training loss of each epoch (one list).
    best_epoch_ : ndarray of shape (1,)
        The epoch whose weights were kept.
    stopped_early_ : ndarray of bool of shape (1,)
        Whether training ended on the plateau rule before ``max_epochs``.
    n_outputs_ : int
        Number of outputs.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of the features seen in fit, when X had string column names.
    device_ : str
        Device the model was trained on.

    See Also
    --------
    SequentialImplicitRegressor : The same model class trained block by block.

    References
    ----------
    L. El Ghaoui, F. Gu, B. Travacca, A. Askari and A. Tsai, "Implicit deep learning",
    SIAM Journal on Mathematics of Data Science, 2021.

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


class EndToEndImplicitClassifier(ClassifierMixin, _ClassificationTarget, EndToEndBase):
    """Dense implicit model trained end to end for classification (the baseline).

    As :class:`EndToEndImplicitRegressor`, with softmax cross-entropy on the logits
    ``C x + c``; the validation split of ``early_stopping`` is stratified when every
    class can be split.

    Parameters
    ----------
    n_states : int, default=30
        Order ``n`` of the model (number of states).
    activation : {"relu", "leaky_relu", "tanh", "sigmoid"}, default="relu"
        A CONE activation ``phi``.
    kappa : float, default=0.95
        Bound on ``||A||_inf``, in (0, 1).
    max_epochs : int, default=200
        Epochs of Adam.
    lr : float, default=0.01
        Adam step size.
    batch_size : int, default=64
        Mini-batch size.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the data, keep the epoch with the best
        validation accuracy and stop after ``n_iter_no_change`` epochs without an
        improvement of ``tol``; without it the same rule follows the training loss.
    validation_fraction : float, default=0.1
        Fraction of the training data held out with ``early_stopping``.
    n_iter_no_change : int, default=10
        Epochs without improvement before training stops.
    tol : float, default=1e-4
        Improvement below which an epoch counts as no improvement.
    device : str or torch.device, default="auto"
        Where to train: ``"auto"`` is CUDA when available.
    n_threads : int or None, default=None
        CPU threads of torch during fit (restored afterwards); None picks one thread for
        small models.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling and the validation split.
    verbose : int, default=0
        1 prints one line at the end of training; 2 also each epoch.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    A_ : ndarray of shape (n_states, n_states)
        Dense, with ``||A_||_inf <= kappa``.
    B_ : ndarray of shape (n_states, ``n_features_in_``)
        Input weights on raw inputs.
    C_ : ndarray of shape (n_classes, n_states)
        Output weights (logits).
    D_ : ndarray of shape (n_classes, ``n_features_in_``)
        Zero.
    state_intercept_ : ndarray of shape (n_states,)
        Intercept of the fixed-point equation.
    intercept_ : ndarray of shape (n_classes,)
        Intercept of the logits.
    pf_eigenvalue_ : float
        ``lambda_PF(|A_|)``, below 1.
    history_ : list of list of dict
        One entry (the single stage) of per-epoch records: ``epoch``, ``train_loss``,
        ``train_score``, ``valid_score``, ``lr``, ``seconds``.
    n_iter_ : ndarray of shape (1,)
        Epochs run.
    loss_curve_ : list of list of float
        Training loss of each epoch (one list).
    best_epoch_ : ndarray of shape (1,)
        The epoch whose weights were kept.
    stopped_early_ : ndarray of bool of shape (1,)
        Whether training ended on the plateau rule before ``max_epochs``.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of the features seen in fit, when X had string column names.
    device_ : str
        Device the model was trained on.

    See Also
    --------
    SequentialImplicitClassifier : The same model class trained block by block.

    References
    ----------
    L. El Ghaoui, F. Gu, B. Travacca, A. Askari and A. Tsai, "Implicit deep learning",
    SIAM Journal on Mathematics of Data Science, 2021.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_greedy import EndToEndImplicitClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = EndToEndImplicitClassifier(n_states=8, max_epochs=30, random_state=0)
    >>> bool(clf.fit(X, y).score(X, y) > 0.8)
    True
    """
