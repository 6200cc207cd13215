"""The seed's own setting of the sequential implicit estimators (Gautam et al.)."""

from __future__ import annotations

from numbers import Integral, Real

#: Epochs per block that the paper gives (Sec. V-B: "each optimization ... 200 epochs").
PAPER_EPOCHS = 200
#: Adam's step size of the paper's local search (Sec. V-A: the FFN's optimizer, step 0.01).
PAPER_LR = 0.01


def implicit_paper_params(
    algorithm: int = 1,
    *,
    task: str = "regression",
    max_epochs: int = PAPER_EPOCHS,
    lr: float = PAPER_LR,
) -> dict:
    """Parameters that run Gautam et al.'s Algorithm 1 or 2 as the paper states them.

    Algorithm 1 with Remark 2's local search: each block's subproblem (7), its weights
    and the whole head ``C_1..C_i`` together, trained by Adam at a constant step size for
    ``max_epochs`` epochs, the last epoch kept; the head is the one Adam left, no penalty
    enters the loss, every block is kept and the output reads all of them. Algorithm 2
    (squared loss only): per block, rounds of exact least squares (11) for the head, each
    followed by the single-hidden-layer problem (12) over ``A~_i = [A_{i,:}, B_i]`` alone,
    by the same Adam. The inputs are not projected and the new units start at torch's
    default initialisation.

    The estimators' defaults depart from this setting where measurement showed better
    models; each departure is a parameter of its own, listed under "Departures from the
    paper" in :class:`SequentialImplicitRegressor`'s notes.

    Parameters
    ----------
    algorithm : {1, 2}, default=1
        Algorithm 1 (local search by Adam) or Algorithm 2 (alternating minimisation).
    task : {"regression", "classification"}, default="regression"
        The estimator the parameters are for: :class:`SequentialImplicitRegressor` or
        :class:`SequentialImplicitClassifier` (Algorithm 1 only: Algorithm 2 needs the
        squared loss, Assumption 4).
    max_epochs : int, default=200
        Adam's epochs per block (per round of Algorithm 2). The paper gives 200 for
        MNIST and Fashion-MNIST (Sec. V-B) and trains "until convergence" in Sec. V-A.
    lr : float, default=0.01
        Adam's step size: 0.01 in Sec. V-A, where the blocks use the FFN's optimizer.
        Sec. V-B gives 0.001 for its FFN and no step for the implicit model.

    Returns
    -------
    params : dict
        Keyword arguments for the estimator of ``task``; ``n_states`` and ``n_blocks``
        are left to the caller.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_greedy import SequentialImplicitRegressor, implicit_paper_params
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-1, 1, (100, 1))
    >>> y = np.sin(3 * X[:, 0])
    >>> params = implicit_paper_params(1, max_epochs=20)
    >>> reg = SequentialImplicitRegressor(4, 2, random_state=0, **params).fit(X, y)
    >>> reg.n_blocks_used_, reg.solver_, [len(h) for h in reg.history_]
    (2, 'adam', [20, 20])
    """
    if algorithm not in (1, 2) or isinstance(algorithm, bool):
        raise ValueError(f"algorithm must be 1 or 2 (the paper's Algorithms), got {algorithm!r}.")
    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}.")
    if algorithm == 2 and task == "classification":
        raise ValueError(
            "Algorithm 2 needs the squared loss (the paper's Assumption 4): it is for "
            "task='regression' only; classification uses Algorithm 1."
        )
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, Integral) or max_epochs < 1:
        raise ValueError(f"max_epochs must be a positive integer, got {max_epochs!r}.")
    if isinstance(lr, bool) or not isinstance(lr, Real) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}.")
    params = {
        "lr": lr,
        "lr_schedule": "constant",
        "max_epochs": int(max_epochs),
        "n_iter_no_change": None,
        "alpha": 0.0,
        "keep_if_better": False,
        "select_blocks": False,
        "early_stopping": False,
        "n_components": None,
        "init": "default",
    }
    if task == "regression":
        params["solver"] = "adam" if algorithm == 1 else "alternating"
        params["refit_head"] = False
    return params
