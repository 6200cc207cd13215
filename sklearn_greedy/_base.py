"""What every greedy estimator shares: the runtime of a fit, and per-stage diagnostics.

The CNN and the implicit estimators train a sequence of stages through the engine. This
module gives them one way to run a fit or a prediction under their own CPU threads,
precision and determinism (restored afterwards), and one set of per-stage diagnostics
named as scikit-learn's :class:`~sklearn.neural_network.MLPClassifier` names them.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ._engine import StageResult
from ._utils import default_threads, resolve_precision, torch_runtime


class GreedyTrainingMixin:
    """Runtime settings and diagnostics for estimators trained stage by stage.

    Estimators using it may define the parameters ``n_threads``, ``precision`` and
    ``deterministic``; absent ones take their defaults (automatic threads, float32,
    no determinism constraint).
    """

    def _runtime(self, device, n_values: int = 0):
        """A context running torch with this estimator's threads, precision and
        determinism on ``device``, restoring the process's settings on exit.

        ``n_values`` (numbers per batch in the widest layer) picks the automatic thread
        count.
        """
        n_threads = getattr(self, "n_threads", None)
        if n_threads is None:
            n_threads = default_threads(n_values)
        precision = resolve_precision(getattr(self, "precision", "float32"), device)
        return torch_runtime(
            device,
            n_threads=n_threads,
            precision=precision,
            deterministic=bool(getattr(self, "deterministic", False)),
        )

    def _stage_diagnostics(
        self,
        results: list[StageResult],
        *,
        watch_convergence: bool,
        first_new: int = 0,
        stage_name: str = "Stage",
    ) -> dict:
        """Fitted attributes describing each stage's training, and a ConvergenceWarning
        for every stage trained now (from index ``first_new`` on) that used its whole
        epoch budget while its validation score was still improving.

        Returns
        -------
        attributes : dict
            ``n_iter_`` (epochs run per stage), ``loss_curve_`` (mean training loss per
            epoch, per stage), ``best_epoch_`` (the epoch whose parameters were kept) and
            ``stopped_early_`` (whether the plateau rule ended the stage).
        """
        if watch_convergence:
            for j, result in enumerate(results[first_new:], start=first_new + 1):
                if result.history and not result.stopped_early:
                    warnings.warn(
                        f"{stage_name} {j} reached max_epochs={result.n_iter} while its validation "
                        "score was still improving; raise max_epochs or loosen tol.",
                        ConvergenceWarning,
                        stacklevel=4,
                    )
        return {
            "n_iter_": np.asarray([r.n_iter for r in results], dtype=np.int64),
            "loss_curve_": [r.loss_curve for r in results],
            "best_epoch_": np.asarray([r.best_epoch for r in results], dtype=np.int64),
            "stopped_early_": np.asarray([r.stopped_early for r in results], dtype=bool),
        }

    def _previous_stage_results(self, previous: dict) -> list[StageResult]:
        """The StageResults of a previous fit's stages, rebuilt from its attributes."""
        if "history_" not in previous:
            return []
        return [
            StageResult(list(h), int(b), bool(s))
            for h, b, s in zip(
                previous["history_"], previous["best_epoch_"], previous["stopped_early_"]
            )
        ]
