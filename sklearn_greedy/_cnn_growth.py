"""How the greedy CNN grows: Alg. 1 of Belilovsky et al. (2019), one layer at a time.

:class:`LayerGrowthMixin` holds the steps of a fit after its data and plan are ready
(with the settings of each stage: its engine configuration and evaluation batch):
start from a fresh stem (or the fitted layers of a warm start), train each missing layer
with its auxiliary head on the frozen network (one engine stage each), and gather the
fitted attributes. The estimator's module keeps the parameters, validation and planning.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._cnn_modules import make_stem
from ._cnn_network import FitStages as _Stages
from ._cnn_network import GrowingNetwork as _Growth
from ._cnn_network import LayerwiseNetwork, accuracy, last_head_accuracy, layer_shapes
from ._compression import prune_stage
from ._distributed import stage_trainer_class
from ._engine import StageData, StageResult, TrainingConfig, train_stage
from ._streaming import cache_outputs
from ._utils import derive_seed, make_generator, resolve_precision

# Largest layer output (numbers) of one evaluation batch: 256 MiB of float32
_EVAL_VALUES = 2**26


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
        growth.model.channels_last = self.channels_last  # a runtime choice of each fit
        growth.model.eval().requires_grad_(False)
        return growth

    def _grow(self, growth: _Growth, stages: _Stages, data: StageData) -> None:
        """Train the missing layers one by one; an interrupt keeps the finished ones."""
        for j in range(len(growth.widths), stages.stop or self.n_layers):
            # on the kept features of the layers below when there are some, else on the
            # raw data through the frozen network
            feed = (growth.features, None) if growth.features else (data, growth.model.features)
            try:
                layer, head, result = self._train_layer(growth.model, stages, j, *feed)
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
            growth.features = self._next_features(growth, stages, data, layer)
            if growth.features is not None:
                features = growth.features  # the head reads them as they are
                score = accuracy(head, features.X, features.y, self._eval_batch_size())
            else:
                score = self._layer_accuracy(growth.model, data)
            growth.scores.append(score)
            save_layer(stages, growth, j)
            self._report_layer(j, growth, result)

    def _resume(self, growth: _Growth, stages: _Stages, data: StageData, pieces) -> None:
        """Put the finished layers read from ``checkpoint_dir`` back on the fresh stem,
        as the uninterrupted fit had them (its kept features recomputed alike)."""
        for piece in pieces[: stages.stop or self.n_layers]:
            j, meta = piece.index, piece.meta
            layer, head = self._build_step(stages, j)
            pruning = meta["pruning"]
            if pruning is not None:  # the layer was pruned before it was saved
                keep = piece.tensors["kept_channels"]
                prune_stage(layer, head, keep)
                pruning = dict(
                    pruning, kept_channels=keep.numpy(), scores=piece.tensors["scores"].numpy()
                )
                for step in pruning.get("rounds", []):  # numbers in the JSON metadata
                    step["scores"] = np.asarray(step["scores"], dtype=pruning["scores"].dtype)
            if j == 0:
                growth.model.stem.load_state_dict(piece.tensors["stem"])
            layer.load_state_dict(piece.tensors["layer"])
            head.load_state_dict(piece.tensors["head"])
            for module in (layer, head):
                module.to(stages.device).eval().requires_grad_(False)
            growth.model.layers.append(layer)
            growth.model.heads.append(head)
            growth.widths.append(meta["width"])
            growth.results.append(StageResult(meta["history"], meta["best_epoch"],
                                              meta["stopped_early"]))  # fmt: skip
            growth.pruning.append(pruning)
            growth.scores.append(meta["score"])
            if self.training == "sequential":
                growth.features = self._next_features(growth, stages, data, layer)
            if self.verbose:
                print(f"layer {j + 1}/{self.n_layers}: read from checkpoint_dir")

    def _next_features(self, growth: _Growth, stages: _Stages, data: StageData, layer):
        """The data after the newest layer, kept where ``prefix_cache`` says, when the next
        layer can train on it (no augmentation); computed from the kept features of the
        layer below (one layer's pass) or, the first time, from the raw data."""
        if stages.augment is not None or stages.prefix_cache is None:
            return None
        source, fn = growth.features, layer
        if source is None:
            source, fn = data, growth.model.features
        size = self._eval_batch_size()
        config = self._training_config("", stages)
        with config.autocast(stages.device):
            X = cache_outputs(fn, source.X, size, stages.prefix_cache)
            X_val = source.X_val
            if data.has_validation:
                X_val = cache_outputs(fn, source.X_val, size, stages.prefix_cache)
        return replace(data, X=X, X_val=X_val)

    def _train_layer(self, model: LayerwiseNetwork, stages: _Stages, j: int, data: StageData,
                     prefix=None):  # fmt: skip
        """Layer ``j`` and its auxiliary head trained on the frozen ``model`` (Alg. 1): on
        ``prefix(data)``, where ``prefix`` is the frozen network (``data`` raw) or None
        (``data`` is already its output)."""
        layer, head = self._build_step(stages, j)
        stage = nn.Sequential(layer, head).to(stages.device)
        config = self._training_config(f"layer {j + 1}/{self.n_layers}", stages)
        if prefix is not None and len(model.layers) == 0 and config.prefix_cache != "device":
            # the stem's output is the images again (float): kept on the device with the
            # images, never copied to the host or disk, where a stream would not fit
            config = replace(config, prefix_cache=None)
        result = train_stage(
            stage,
            data,
            loss_fn=F.cross_entropy,
            config=config,
            generator=make_generator(derive_seed(stages.seed, 2, j), stages.device),
            prefix=prefix,
            augment=stages.augment,
            # data-parallel inside a process group of several (torchrun, device=[...])
            trainer_cls=stage_trainer_class(),
        )
        stage.eval().requires_grad_(False)
        layer, head = self._compress_step(stages, j, data, prefix, layer, head)
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

    def _training_config(self, label: str, stages: _Stages) -> TrainingConfig:
        return TrainingConfig(
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer="sgd",
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            lr_decay=self.lr_decay,
            lr_step=self.lr_step,
            restart_on_decay=True,
            keep_best=self.keep_best,
            n_iter_no_change=self.n_iter_no_change,
            tol=self.tol,
            verbose=max(int(self.verbose) - 1, 0),
            eval_batch_size=self._eval_batch_size(),
            label=label,
            precision=resolve_precision(self.precision, stages.device),
            prefix_cache=stages.prefix_cache,
            top_k=5 if stages.n_classes > 5 else None,
        )

    def _eval_batch_size(self) -> int:
        """Batch of the passes without gradients: large, but not so large that one layer's
        output for it holds more than ``_EVAL_VALUES`` numbers (256 MiB of float32)."""
        values = self.__dict__.get("_values_per_sample")
        cap = 1024 if values is None else max(1, _EVAL_VALUES // values)
        return max(self.batch_size, min(1024, cap))


def save_layer(stages: _Stages, growth: _Growth, j: int) -> None:
    """Write layer ``j`` of ``growth``, its head, and what its training left to the fit's
    checkpoint store (the stem with the first layer); a no-op without ``checkpoint_dir``."""
    if stages.store is None:
        return
    model, result, pruning = growth.model, growth.results[j], growth.pruning[j]
    tensors = {"layer": model.layers[j].state_dict(), "head": model.heads[j].state_dict()}
    if j == 0:
        tensors["stem"] = model.stem.state_dict()
    meta = {
        "width": int(growth.widths[j]),
        "score": float(growth.scores[j]),
        "history": result.history,
        "best_epoch": int(result.best_epoch),
        "stopped_early": bool(result.stopped_early),
        "pruning": None,
    }
    if pruning is not None:
        tensors["kept_channels"] = torch.as_tensor(pruning["kept_channels"])
        tensors["scores"] = torch.as_tensor(pruning["scores"])
        meta["pruning"] = {k: v for k, v in pruning.items() if k not in tensors}
    stages.store.save(j, tensors, meta, seed=stages.seed)
