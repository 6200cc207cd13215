"""How the greedy CNN grows: Alg. 1 of Belilovsky et al. (2019), one layer at a time.

:class:`LayerGrowthMixin` holds the steps of a fit after its data and plan are ready:
start from a fresh stem (or the fitted layers of a warm start), train each missing layer
with its auxiliary head on the frozen network (one engine stage each), and gather the
fitted attributes. The estimator's module keeps the parameters, validation and planning.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch.nn.functional as F
from torch import nn

from ._cnn_modules import make_stem
from ._cnn_network import FitStages as _Stages
from ._cnn_network import GrowingNetwork as _Growth
from ._cnn_network import LayerwiseNetwork, last_head_accuracy, layer_shapes
from ._engine import StageData, StageResult, train_stage
from ._utils import derive_seed, make_generator, resolve_precision


class LayerGrowthMixin:
    """The layer-by-layer training steps of :class:`GreedyLayerwiseCNNClassifier`."""

    def _start(self, previous, data: StageData, device) -> _Growth:
        """The network to grow: the previous fit's (warm start) or a fresh stem."""
        if previous is not None:
            growth = _Growth(copy.deepcopy(previous["model_"]).to(device))
            growth.results = self._previous_stage_results(previous)
            growth.scores = list(previous["layer_scores_"])
            growth.widths = list(previous["layer_widths_"])
            growth.pruning = list(previous.get("pruning_", [None] * len(growth.widths)))
            growth.first_new = len(growth.widths)
        else:
            mean, std = self._input_stats(data.X)
            stem = make_stem(mean, std, self.input_downsample, data.X.shape[1:])
            growth = _Growth(LayerwiseNetwork(stem))
            growth.model.to(device)
        growth.model.eval().requires_grad_(False)
        return growth

    def _grow(self, growth: _Growth, stages: _Stages, data: StageData) -> None:
        """Train the missing layers one by one; an interrupt keeps the finished ones."""
        for j in range(len(growth.widths), stages.stop or self.n_layers):
            try:
                layer, head, result = self._train_layer(growth.model, stages, j, data)
            except KeyboardInterrupt:
                if not growth.widths:
                    raise
                warnings.warn(
                    f"Training interrupted during layer {j + 1}; keeping the {j} layers "
                    "finished so far. Fit again with warm_start=True to continue.",
                    stacklevel=4,
                )
                return
            growth.model.layers.append(layer)
            growth.model.heads.append(head)
            growth.widths.append(stages.plan[j].out_channels)
            growth.results.append(result)
            growth.pruning.append(stages.pruning.get(j))
            growth.scores.append(self._layer_accuracy(growth.model, data))
            self._report_layer(j, growth, result)

    def _train_layer(self, model: LayerwiseNetwork, stages: _Stages, j: int, data: StageData):
        """Layer ``j`` and its auxiliary head trained on the frozen ``model`` (Alg. 1)."""
        layer, head = self._build_step(stages, j)
        stage = nn.Sequential(layer, head).to(stages.device)
        result = train_stage(
            stage,
            data,
            loss_fn=F.cross_entropy,
            config=self._training_config(f"layer {j + 1}/{self.n_layers}", stages),
            generator=make_generator(derive_seed(stages.seed, 2, j), stages.device),
            prefix=model.features,
            augment=stages.augment,
        )
        stage.eval().requires_grad_(False)
        layer, head = self._compress_step(model, stages, j, data, layer, head)
        return layer, head, result

    def _report_layer(self, j: int, growth: _Growth, result: StageResult) -> None:
        if not self.verbose:
            return
        valid = [r["valid_score"] for r in result.history if r["valid_score"] is not None]
        print(
            f"layer {j + 1}/{self.n_layers}: train accuracy {growth.scores[-1]:.4f}"
            + (f", best validation {max(valid):.4f}" if valid else "")
            + f" ({result.n_iter} epochs)"
        )

    def _fitted_attributes(self, growth: _Growth, classes, image_shape, device, plan) -> dict:
        watch = self.early_stopping
        return {
            "classes_": classes,
            "image_shape_": tuple(image_shape),
            "device_": device,
            "precision_": resolve_precision(self.precision, device),
            "model_": growth.model,
            "history_": [r.history for r in growth.results],
            **self._stage_diagnostics(
                growth.results,
                watch_convergence=watch,
                first_new=growth.first_new,
                stage_name="Layer",
            ),
            "layer_scores_": np.asarray(growth.scores),
            "layer_widths_": growth.widths,
            "layer_shapes_": layer_shapes(growth.model, image_shape, device),
            "layer_specs_": plan[: len(growth.widths)],
            "pruning_": growth.pruning,
            "architecture_": self._architecture(),
            "n_layers_fitted_": len(growth.widths),
        }

    def _layer_accuracy(self, model: LayerwiseNetwork, data: StageData) -> float:
        return last_head_accuracy(model, data, self._eval_batch_size())
