"""Implicit models as scikit-learn estimators.

- :class:`SequentialImplicitRegressor` and :class:`SequentialImplicitClassifier`: strictly
  upper block triangular implicit models trained block by block (Gautam, Anderson,
  Sojoudi and El Ghaoui, Algorithms 1 and 2);
- :class:`EndToEndImplicitRegressor` and :class:`EndToEndImplicitClassifier`: the dense
  baseline trained jointly by projected gradient (El Ghaoui et al., 2021).

The estimators are thin: the math lives in ``_implicit_model``, the block solvers in
``_implicit_solvers`` and ``_implicit_torch_solvers``, the sequential training in
``_implicit_sequential``, the end-to-end baseline in ``_implicit_end_to_end`` and what all
of them share (targets, input scaling, validation data, inference) in ``_implicit_base``.
"""

from __future__ import annotations

from numbers import Integral

from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.utils._param_validation import Interval, StrOptions

from ._implicit_base import _ClassificationTarget, _RegressionTarget
from ._implicit_end_to_end import EndToEndImplicitClassifier, EndToEndImplicitRegressor
from ._implicit_sequential import LM_MAX_WEIGHTS, LM_MAX_WORK, SequentialBase

__all__ = [
    "EndToEndImplicitClassifier",
    "EndToEndImplicitRegressor",
    "SequentialImplicitClassifier",
    "SequentialImplicitRegressor",
]


class SequentialImplicitRegressor(RegressorMixin, _RegressionTarget, SequentialBase):
    """Implicit model with a strictly upper block triangular ``A``, trained block by block.

    The model is ``x = phi(A x + B u + b)``, ``y = C x + c`` (Gautam et al.). Its
    ``n_states`` states are split into ``n_blocks`` blocks; block ``i`` reads the input
    and the states of blocks ``j < i`` and is trained once, with the earlier blocks
    frozen, together with a re-fit of the output weights ``C_1..C_i`` (Algorithm 1). A
    block is kept only if it lowers the training loss, and the output finally reads the
    best prefix of blocks (``select_blocks``), so that extra blocks do not fit noise.

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
    solver : {"auto", "lm", "adam", "alternating"}, default="auto"
        How each block's subproblem (7) is solved. ``"lm"``: Levenberg-Marquardt on the
        variable-projection form: the head ``C_1..C_i`` is eliminated by exact ridge
        least squares and the block's weights ``[A_{i,:}, B_i]`` move with Gauss-Newton
        steps, starting from the candidate units that explain most of the residual.
        ``"adam"``: local search with Adam on the block and the head (Remark 2).
        ``"alternating"``: Algorithm 2, ``n_alternating_iter`` rounds of exact least
        squares (11) for ``C`` then the single-hidden-layer problem (12) for the block's
        weights alone.
        ``"auto"`` is ``"lm"`` when a block's Gauss-Newton system is small (at most 200
        weights per block) and ``"adam"`` otherwise.
    self_loops : bool, default=False
        Export a non-strictly upper triangular ``A`` with self-loops ``diag(A) = 0.5``
        that predicts exactly as the strict model (Theorem 2). ReLU only.
    alpha : float, default=1e-3
        L2 penalty, in standardised units: the training loss is
        ``mean ||y - C x - c||^2 + alpha (||C||^2 + ||W||^2)`` with ``W`` a block's
        weights on its standardised inputs (the ridge penalty of the least-squares head,
        and a weight penalty for ``"lm"``).
    max_epochs : int or "auto", default="auto"
        Epochs per block (per round for ``"alternating"``; Levenberg-Marquardt
        iterations for ``"lm"``). ``"auto"``: 100 iterations for ``"lm"``; for the other
        solvers 11 epochs, or on small data sets as many as make 200 optimisation steps
        (at most 200 epochs).
    lr : float, default=0.01
        Adam step size (``"adam"``, ``"alternating"``); see ``lr_schedule``.
    batch_size : int, default=512
        Mini-batch size of Adam; data sets smaller than this train full batch.
    n_alternating_iter : int, default=3
        Rounds ``T`` of Algorithm 2 (``"alternating"``).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (or use ``X_val, y_val`` given to
        :meth:`fit`): each block keeps its epoch with the best validation score and
        stops after ``n_iter_no_change`` epochs without an improvement of ``tol``, and
        the blocks the output reads are chosen on it. Without it the same rule follows
        the training loss, and the blocks are chosen by generalised cross-validation.
    validation_fraction : float, default=0.1
        Fraction of the training data held out with ``early_stopping``.
    n_iter_no_change : int or None, default=20
        Epochs (iterations) without improvement before a block stops. None: every block
        runs ``max_epochs`` and keeps its last epoch.
    tol : float, default=1e-4
        Improvement below which an epoch counts as no improvement.
    select_blocks : bool, default=True
        Let the output read only the best prefix of blocks ``1..k``, chosen on the
        validation data with ``early_stopping``, otherwise by generalised
        cross-validation (the training error inflated by each block's effective number
        of parameters); the later blocks get zero output weights. False uses all blocks,
        as in the paper.
    refit_head : bool, default=True
        After a block trained by ``"adam"`` or ``"alternating"``, re-fit the head
        ``C_1..C_i`` by exact ridge least squares (penalty ``alpha``) on the states. False
        keeps the head that Adam left (``"adam"``) or the last round's least squares (11)
        (``"alternating"``), as the paper does. Skipped above 256 states; ``"lm"``
        always eliminates the head exactly.
    keep_if_better : bool, default=True
        Keep a block only if it lowers the (weighted) training loss; otherwise its output
        weights are set to zero, so the loss never rises from block to block. False keeps
        every block as trained, as the paper does.
    lr_schedule : {"step", "constant"}, default="step"
        ``"step"``: Adam's step ``lr`` for the first 70% of each block's epochs, a tenth
        of it after (the last epochs settle instead of jittering). ``"constant"``: ``lr``
        throughout, as the paper does.
    init : {"auto", "screened", "sample", "default"}, default="auto"
        How the units of a block trained by ``"adam"`` or ``"alternating"`` start.
        ``"screened"``: at the random candidates that best follow the loss's negative
        gradient at the previous model; ``"sample"``: each unit's hyperplane through a
        random training sample, so that none starts dead; ``"default"``: torch's default
        initialisation of a linear layer (the paper does not say). ``"auto"`` is
        ``"sample"``. ``"lm"`` always starts from screened candidates.
    n_components : int, "auto" or None, default="auto"
        Train the blocks on the standardised inputs projected onto their top
        ``n_components`` principal directions: each block's input weights ``B_i`` then
        lie in that subspace (``B_`` still acts on raw inputs). Wide inputs train several
        times faster, and the discarded directions carry mostly noise. ``"auto"``: 128
        when there are more than 256 features (images), no projection otherwise; None:
        no projection.
    device : str or torch.device, default="auto"
        Where Adam trains: ``"auto"`` is CUDA when available. ``"lm"`` runs on the CPU.
        The fitted state is numpy, so a model fitted on a GPU predicts on a CPU-only
        machine.
    n_threads : int or None, default=None
        CPU threads of torch and of the BLAS during fit (the process's settings are
        restored afterwards). None picks one thread for small models, where it is
        fastest, and torch's default otherwise.
    random_state : int, RandomState instance or None, default=None
        Seeds the candidate units, initialisation, shuffling and the validation split.
    verbose : int, default=0
        1 prints one line per block; 2 also each epoch.
    warm_start : bool, default=False
        Keep the fitted blocks and train only the new ones. The new partition must begin
        with the fitted block sizes: grow a model by raising ``n_states`` and
        ``n_blocks`` together at the same block size (``n_states=30, n_blocks=10`` to
        ``45, 15`` trains blocks 11 to 15 only), or resume an interrupted fit. Training
        settings may change; the features, the activation and the partition of the
        fitted blocks may not (ValueError). With nothing left to train, fit warns and
        keeps the model.
    transform_blocks : int or None, default=None
        Blocks whose states :meth:`transform` returns: the first ``k`` (1-based;
        negative counts from the end, ``-1`` is the last); None for all.
    checkpoint_dir : str, path-like or None, default=None
        A directory where each finished block is written at once; ``fit`` with the same
        directory, data and parameters continues after the last finished block (rerun
        the same cell or command after a crash or a kill) and ends equal to the
        uninterrupted fit. Blocks of another fit (other parameters or data, another
        library or torch version) or altered files are refused with an error naming what
        differs; writes are atomic and loading reads tensors only. ``device``,
        ``n_threads``, ``verbose`` and ``transform_blocks`` may differ on resume; with
        ``random_state`` None the first run's seed is reused. The fitted estimator does
        not need the directory.

    Attributes
    ----------
    A_ : ndarray of shape (n_states, n_states)
        Strictly upper block triangular (paper layout ``x = [x_L; ...; x_1]``).
    B_ : ndarray of shape (n_states, n_features_in_)
        Input weights on raw inputs.
    C_ : ndarray of shape (n_outputs_, n_states)
        Output weights; zero on the blocks after ``n_blocks_used_``.
    D_ : ndarray of shape (n_outputs_, n_features_in_)
        Zero (Assumption 2).
    state_intercept_ : ndarray of shape (n_states,)
        Intercept ``b`` of the fixed-point equation.
    intercept_ : ndarray of shape (n_outputs_,)
        Intercept ``c`` of the prediction equation.
    pf_eigenvalue_ : float
        ``lambda_PF(|A_|)``; 0 for the strict model, 0.5 with self-loops.
    block_sizes_ : list of int
        Sizes ``n_1, ..., n_k`` of the fitted blocks, in training order.
    n_blocks_fitted_ : int
        Number of trained blocks (fewer than ``n_blocks`` after an interrupted fit).
    n_blocks_used_ : int
        Number of leading blocks whose states the output reads (``select_blocks``).
    solver_ : str
        The solver used (``"auto"`` resolved).
    history_ : list of list of dict
        For each block, one record per epoch (iteration): ``epoch``, ``train_loss``
        (mean squared error, standardised targets), ``train_score`` (minus the summed
        squared error per sample), ``valid_score`` (the same on validation data, or
        None), ``lr`` (None for ``"lm"``), ``seconds``.
    n_iter_ : ndarray of shape (n_blocks_fitted_,)
        Epochs (iterations) run by each block.
    loss_curve_ : list of list of float
        Training loss of each epoch, per block.
    best_epoch_ : ndarray of shape (n_blocks_fitted_,)
        The epoch whose weights each block kept.
    stopped_early_ : ndarray of bool of shape (n_blocks_fitted_,)
        Whether each block stopped before ``max_epochs`` (no improvement, or
        Levenberg-Marquardt converged).
    block_scores_ : ndarray of shape (n_blocks_fitted_,)
        Training R^2 after each block.
    n_outputs_ : int
        Number of outputs.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen in fit, when X had string column names.
    device_ : str
        Device the blocks were trained on.

    See Also
    --------
    implicit_paper_params : The parameters that run the paper's Algorithm 1 or 2.
    SequentialImplicitClassifier : The same model for classification.
    EndToEndImplicitRegressor : The dense implicit baseline, trained end to end.
    sklearn.neural_network.MLPRegressor : A feed-forward network trained end to end.

    Notes
    -----
    .. rubric:: Departures from the paper

    The defaults depart from the paper's Algorithms 1 and 2 where measurement showed
    better models (on the paper's Sec. V-A draws, MNIST and small tabular data); each
    departure is a parameter, and :func:`~sklearn_greedy.implicit_paper_params` sets
    them all back to the paper:

    - ``solver="auto"`` uses Levenberg-Marquardt on small blocks (the paper: Adam's local
      search, Remark 2, or Algorithm 2);
    - ``refit_head=True``: the exact least-squares head after each block (the paper: the
      head that the local search left);
    - ``alpha=1e-3``: a ridge penalty (the paper: none);
    - ``keep_if_better=True``: a block that does not lower the training loss gets zero
      output weights (the paper keeps every block);
    - ``select_blocks=True``: the output reads the best prefix of blocks (the paper: all);
    - ``lr_schedule="step"``: Adam's step drops tenfold after 70% of a block's epochs (the
      paper: a constant step);
    - ``init="auto"``: the units start through training samples, or at screened
      candidates for ``"lm"`` (the paper does not say; torch's default);
    - ``max_epochs="auto"`` and ``n_iter_no_change=20``: blocks stop on a plateau (the
      paper: 200 epochs per block in Sec. V-B, "until convergence" in Sec. V-A);
    - ``n_components="auto"``: inputs of more than 256 features are projected onto their
      top 128 principal directions (the paper trains on the raw inputs).

    Kept in every setting: the intercepts ``b`` and ``c`` (the paper's equations write
    none, but a model without them is positively homogeneous in ``u`` and could not fit
    the paper's Sec. V-A functions), and standardised inputs and targets during training
    (a change of units folded into the exported matrices: the same models and losses, a
    different path for Adam).

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

    _parameter_constraints: dict = {
        **SequentialBase._parameter_constraints,
        "solver": [StrOptions({"auto", "lm", "adam", "alternating"})],
        "n_alternating_iter": [Interval(Integral, 1, None, closed="left")],
        "refit_head": ["boolean"],
    }

    def __init__(
        self,
        n_states=30,
        n_blocks=10,
        *,
        activation="relu",
        solver="auto",
        self_loops=False,
        alpha=1e-3,
        max_epochs="auto",
        lr=0.01,
        batch_size=512,
        n_alternating_iter=3,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=20,
        tol=1e-4,
        select_blocks=True,
        refit_head=True,
        keep_if_better=True,
        lr_schedule="step",
        init="auto",
        n_components="auto",
        device="auto",
        n_threads=None,
        random_state=None,
        verbose=0,
        warm_start=False,
        transform_blocks=None,
        checkpoint_dir=None,
    ):
        self.n_states = n_states
        self.n_blocks = n_blocks
        self.activation = activation
        self.solver = solver
        self.self_loops = self_loops
        self.alpha = alpha
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.n_alternating_iter = n_alternating_iter
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.select_blocks = select_blocks
        self.refit_head = refit_head
        self.keep_if_better = keep_if_better
        self.lr_schedule = lr_schedule
        self.init = init
        self.n_components = n_components
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.transform_blocks = transform_blocks
        self.checkpoint_dir = checkpoint_dir

    def _refit_head(self):
        return self.refit_head

    def _solver(self, n_samples, n_features, q, sizes):
        if self.solver != "auto":
            return self.solver
        weights = max(sizes) * (sum(sizes) + n_features + 1)
        small = weights <= LM_MAX_WEIGHTS and n_samples * q * weights**2 <= LM_MAX_WORK
        return "lm" if small else "adam"


class SequentialImplicitClassifier(ClassifierMixin, _ClassificationTarget, SequentialBase):
    """Implicit classifier with a strictly upper block triangular ``A``, trained by blocks.

    The model is ``x = phi(A x + B u + b)`` with logits ``C x + c``, trained with softmax
    cross-entropy (Gautam et al.). Block ``i`` reads the input and the states of blocks
    ``j < i``; it is trained once by Adam (local search, Remark 2) together with the whole
    head ``C_1..C_i``, which starts at the previous model's, with the earlier blocks
    frozen (Algorithm 1). A block is kept only if it lowers the training loss. Its units
    start at the random candidates (screened on up to 4096 training samples) that best
    follow the cross-entropy's negative gradient at the previous model, as in gradient
    boosting, rather than at random.

    Inputs are standardised for training (a nearly constant feature is not blown up: no
    training value ends further than 10 scales from its mean) and the maps folded into
    ``B_`` and ``state_intercept_``.

    Parameters
    ----------
    n_states : int, default=30
        Order ``n`` of the model (number of states).
    n_blocks : int, default=10
        Number ``L`` of blocks; ``n_i = floor(n / L)``, the last block takes the rest.
    activation : {"relu", "leaky_relu", "tanh", "sigmoid"}, default="relu"
        A CONE activation ``phi``.
    self_loops : bool, default=False
        Export a non-strictly upper triangular ``A`` with self-loops ``diag(A) = 0.5``
        that predicts exactly as the strict model (Theorem 2). ReLU only.
    alpha : float, default=1e-4
        L2 penalty on all weights (Adam's weight decay: ``alpha ||w||^2 / 2`` added to
        the mean loss), as in :class:`~sklearn.neural_network.MLPClassifier`.
    max_epochs : int or "auto", default="auto"
        Epochs per block. ``"auto"``: 11, or on small data sets as many as make 200
        optimisation steps (at most 200 epochs: full-batch training below
        ``batch_size`` samples).
    lr : float, default=0.005
        Adam step size; see ``lr_schedule``.
    batch_size : int, default=512
        Mini-batch size; data sets smaller than this train full batch.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data, stratified when every class can be
        split (or use ``X_val, y_val`` given to :meth:`fit`): each block keeps its epoch
        with the best validation accuracy and stops after ``n_iter_no_change`` epochs
        without an improvement of ``tol``, and the blocks the output reads are chosen on
        it (``select_blocks``). Without it the
        same rule follows the training loss.
    validation_fraction : float, default=0.1
        Fraction of the training data held out with ``early_stopping``.
    n_iter_no_change : int or None, default=10
        Epochs without improvement before a block stops. None: every block runs
        ``max_epochs`` and keeps its last epoch.
    tol : float, default=1e-4
        Improvement below which an epoch counts as no improvement.
    select_blocks : bool, default=True
        With ``early_stopping``, let the output read only the prefix of blocks ``1..k``
        with the lowest validation loss (later blocks get zero output weights). Without
        validation data every block is used.
    keep_if_better : bool, default=True
        Keep a block only if it lowers the (weighted) training loss; otherwise its output
        weights are set to zero. False keeps every block as trained, as the paper does.
    lr_schedule : {"step", "constant"}, default="step"
        ``"step"``: Adam's step ``lr`` for the first 70% of each block's epochs, a tenth
        of it after. ``"constant"``: ``lr`` throughout, as the paper does.
    init : {"auto", "screened", "sample", "default"}, default="auto"
        How a block's units start: see :class:`SequentialImplicitRegressor`. ``"auto"``
        is ``"screened"``.
    n_components : int, "auto" or None, default="auto"
        Train the blocks on the standardised inputs projected onto their top
        ``n_components`` principal directions: each block's input weights ``B_i`` then
        lie in that subspace (``B_`` still acts on raw inputs). Wide inputs train several
        times faster, and the discarded directions carry mostly noise. ``"auto"``: 128
        when there are more than 256 features (images), no projection otherwise; None:
        no projection.
    device : str or torch.device, default="auto"
        Where to train: ``"auto"`` is CUDA when available. The fitted state is numpy,
        so a model fitted on a GPU predicts on a CPU-only machine.
    n_threads : int or None, default=None
        CPU threads of torch during fit (the process's setting is restored afterwards).
        None picks one thread for small models, where it is fastest, and torch's
        default otherwise.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling and the validation split.
    verbose : int, default=0
        1 prints one line per block; 2 also each epoch.
    warm_start : bool, default=False
        Keep the fitted blocks and train only the new ones; see
        :class:`SequentialImplicitRegressor`. The classes may not change either.
    transform_blocks : int or None, default=None
        Blocks whose states :meth:`transform` returns: the first ``k`` (1-based;
        negative counts from the end); None for all.
    checkpoint_dir : str, path-like or None, default=None
        Write each finished block there and resume after the last one; see
        :class:`SequentialImplicitRegressor`.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    A_ : ndarray of shape (n_states, n_states)
        Strictly upper block triangular (paper layout ``x = [x_L; ...; x_1]``).
    B_ : ndarray of shape (n_states, n_features_in_)
        Input weights on raw inputs.
    C_ : ndarray of shape (n_classes, n_states)
        Output weights (logits).
    D_ : ndarray of shape (n_classes, n_features_in_)
        Zero (Assumption 2).
    state_intercept_ : ndarray of shape (n_states,)
        Intercept ``b`` of the fixed-point equation.
    intercept_ : ndarray of shape (n_classes,)
        Intercept ``c`` of the logits.
    pf_eigenvalue_ : float
        ``lambda_PF(|A_|)``; 0 for the strict model, 0.5 with self-loops.
    block_sizes_ : list of int
        Sizes ``n_1, ..., n_k`` of the fitted blocks, in training order.
    n_blocks_fitted_ : int
        Number of trained blocks (fewer than ``n_blocks`` after an interrupted fit).
    n_blocks_used_ : int
        Number of leading blocks whose states the output reads (``select_blocks``).
    solver_ : str
        ``"adam"``.
    history_ : list of list of dict
        For each block, one record per epoch: ``epoch``, ``train_loss``
        (cross-entropy), ``train_score`` (accuracy on the training batches),
        ``valid_score`` (validation accuracy, or None), ``lr``, ``seconds``.
    n_iter_ : ndarray of shape (n_blocks_fitted_,)
        Epochs run by each block.
    loss_curve_ : list of list of float
        Training loss of each epoch, per block.
    best_epoch_ : ndarray of shape (n_blocks_fitted_,)
        The epoch whose weights each block kept.
    stopped_early_ : ndarray of bool of shape (n_blocks_fitted_,)
        Whether each block ended on the plateau rule before ``max_epochs``.
    block_scores_ : ndarray of shape (n_blocks_fitted_,)
        Training accuracy after each block.
    n_features_in_ : int
        Number of features seen in fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features seen in fit, when X had string column names.
    device_ : str
        Device the blocks were trained on.

    See Also
    --------
    implicit_paper_params : The parameters that run the paper's Algorithm 1.
    SequentialImplicitRegressor : The same model for regression, with more solvers.
    EndToEndImplicitClassifier : The dense implicit baseline, trained end to end.
    sklearn.neural_network.MLPClassifier : A feed-forward network trained end to end.

    Notes
    -----
    .. rubric:: Departures from the paper

    As for :class:`SequentialImplicitRegressor`, each departure of the defaults from the
    paper's Algorithm 1 is a parameter, and
    :func:`~sklearn_greedy.implicit_paper_params` with ``task="classification"`` sets
    them back: ``alpha=1e-4`` (a weight decay; the paper: none), ``keep_if_better=True``,
    ``select_blocks=True`` (it acts only with ``early_stopping``), ``lr_schedule="step"``,
    ``init="auto"`` (screened units; the paper does not say), ``max_epochs="auto"`` and
    ``n_iter_no_change=10`` (the paper: 200 epochs per block), ``n_components="auto"``
    (128 principal directions of MNIST's 784 pixels; the paper: the raw pixels). The
    intercepts and standardised inputs are kept in every setting.

    References
    ----------
    T. Gautam, B. G. Anderson, S. Sojoudi and L. El Ghaoui, "A sequential greedy approach
    for training implicit deep models", 2022.

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

    def __init__(
        self,
        n_states=30,
        n_blocks=10,
        *,
        activation="relu",
        self_loops=False,
        alpha=1e-4,
        max_epochs="auto",
        lr=0.005,
        batch_size=512,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        select_blocks=True,
        keep_if_better=True,
        lr_schedule="step",
        init="auto",
        n_components="auto",
        device="auto",
        n_threads=None,
        random_state=None,
        verbose=0,
        warm_start=False,
        transform_blocks=None,
        checkpoint_dir=None,
    ):
        self.n_states = n_states
        self.n_blocks = n_blocks
        self.activation = activation
        self.self_loops = self_loops
        self.alpha = alpha
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.select_blocks = select_blocks
        self.keep_if_better = keep_if_better
        self.lr_schedule = lr_schedule
        self.init = init
        self.n_components = n_components
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.transform_blocks = transform_blocks
        self.checkpoint_dir = checkpoint_dir

    #: measured on Fashion-MNIST (n_states=32, n_blocks=16, seeds 0-2): test accuracy
    #: 86.81 -> 87.00 % on average, the lowest seed 86.39 -> 86.85 %, at the same fit time
    _auto_init = "screened"

    def _schedule(self, epochs):
        return {**super()._schedule(epochs), "weight_decay": self.alpha}
