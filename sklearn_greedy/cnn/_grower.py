"""How the greedy CNN grows: Alg. 1 of Belilovsky et al. (2019), one layer at a time.

:class:`LayerGrower` takes a fit's plan (the layers' specifications and the width each is
trained at), how a layer step is built (:class:`StepBuilder`), a training configuration
and the data, and grows a :class:`~sklearn_greedy.cnn._network.GrowingNetwork`: it trains
each missing layer with its auxiliary head on the frozen network below (one engine stage
each), compresses it when the plan says so, keeps the layer's output for the next one,
and writes each finished layer to the fit's checkpoint store. The same grower trains every
layer at once (``training="decoupled"``), puts back the layers of an interrupted fit, and
retrains the last step for :meth:`~sklearn_greedy.GreedyLayerwiseCNNClassifier.refit_final_head`.
It reads nothing from the estimator: the estimator builds it from its parameters, the way
scikit-learn's HistGradientBoosting builds a TreeGrower.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..training._decoupled import train_decoupled
from ..training._distributed import distributed_world_size, shard_rows, stage_trainer_class
from ..training._engine import StageData, StageResult, train_stage
from ..training._runtime import derive_seed, make_generator, torch_seeded
from ..training._streaming import cache_outputs
from ._compression import channels_to_keep, prune_stage, round_widths, taylor_scores
from ._modules import AuxiliaryClassifier, GreedyLayer, LayerSpec
from ._network import GrowingNetwork, LayerwiseNetwork, accuracy, last_head_accuracy
from ._vgg import PooledAuxiliaryClassifier, VGGClassifier


@dataclass(frozen=True)
class StepBuilder:
    """How one layer step (a layer and its auxiliary classifier) is built.

    Parameters
    ----------
    k : int
        Hidden convolutions of the auxiliary classifier (Eq. 2).
    layer_batch_norm, head_batch_norm : bool
        BatchNorm in the layers, and in the auxiliary classifiers.
    final_aux : {"conv", "vgg"}
        The last layer's auxiliary: the paper's, or VGG's classifier.
    aux_downsample : int or None
        Pooling of the auxiliary classifiers' input (VGG variant), or none.
    """

    k: int
    layer_batch_norm: bool
    head_batch_norm: bool
    final_aux: str = "conv"
    aux_downsample: int | None = None

    def build(self, spec: LayerSpec, n_classes: int, *, last: bool, seed: int):
        """A fresh layer of ``spec`` and its head, initialised under ``seed``."""
        with torch_seeded(seed):
            layer = GreedyLayer(
                spec.in_channels, spec.out_channels, spec.downsample, self.layer_batch_norm
            )
            if last and self.final_aux == "vgg":
                head = VGGClassifier(spec.out_channels, n_classes, width=spec.aux_width)
            elif self.aux_downsample is not None:
                head = PooledAuxiliaryClassifier(
                    spec.out_channels, n_classes, self.k, spec.aux_width, self.head_batch_norm,
                    pool=self.aux_downsample,
                )  # fmt: skip
            else:
                head = AuxiliaryClassifier(
                    spec.out_channels, n_classes, self.k, spec.aux_width, self.head_batch_norm
                )
        return layer, head


class LayerGrower:
    """Grows a greedy CNN layer by layer (or all layers at once) from a plan.

    Parameters
    ----------
    plan : list of LayerSpec
        Every layer of the network, at its final (compressed) width.
    trained : list of int
        The width each layer is trained at before compression (its planned width when it
        is not compressed).
    n_classes : int
        Number of classes.
    steps : StepBuilder
        How each layer and its head are built.
    config : TrainingConfig
        The engine's settings of every stage (its ``label`` is set per layer).
    seed : int
        The fit's seed: each layer's initialisation and batches derive from it.
    augment : callable or None
        Training-time augmentation of the raw images.
    device : torch.device
        Where the network trains.
    n_layers : int
        Layers of the finished network (``plan`` may hold fewer during a partial fit).
    stop : int or None, default=None
        Layers the network has after this fit (None: ``n_layers``).
    training : {"sequential", "decoupled"}, default="sequential"
        One layer after the other (Alg. 1), or every layer at once.
    decoupled_delay : int, default=0
        Epochs each decoupled layer waits per layer below it.
    prune_epochs : int, default=0
        Fine-tuning epochs of a compressed layer's head, shared by its rounds.
    prune_rounds : int, default=1
        Pruning rounds of a compressed layer.
    store : CheckpointStore or None, default=None
        Where each finished layer is written.
    verbose : int, default=0
        Print a line per layer.
    """

    def __init__(
        self, plan, *, trained, n_classes, steps, config, seed, augment, device, n_layers,
        stop=None, training="sequential", decoupled_delay=0, prune_epochs=0, prune_rounds=1,
        store=None, verbose=0,
    ):  # fmt: skip
        self.plan, self.trained, self.n_classes = plan, trained, n_classes
        self.steps, self.config, self.seed = steps, config, seed
        self.augment, self.device = augment, device
        self.n_layers, self.stop = n_layers, stop if stop is not None else n_layers
        self.training, self.decoupled_delay = training, decoupled_delay
        self.prune_epochs, self.prune_rounds = prune_epochs, prune_rounds
        self.store, self.verbose = store, verbose

    @property
    def eval_batch_size(self) -> int:
        return self.config.eval_batch_size

    # ------------------------------------------------------------------ the fit
    def grow(self, growth: GrowingNetwork, data: StageData) -> None:
        """Train the missing layers of ``growth`` on ``data``, in place."""
        if self.training == "decoupled":
            self._grow_decoupled(growth, data)
        else:
            self._grow_sequential(growth, data)

    def _grow_sequential(self, growth: GrowingNetwork, data: StageData) -> None:
        """Train the missing layers one by one; an interrupt keeps the finished ones."""
        for j in range(len(growth.widths), self.stop):
            # on the kept features of the layers below when there are some, else on the
            # raw data through the frozen network
            feed = (growth.features, None) if growth.features else (data, growth.model.features)
            try:
                layer, head, result, pruning = self.train_layer(growth.model, j, *feed)
            except KeyboardInterrupt:
                if not growth.widths:
                    raise
                warnings.warn(
                    f"Training interrupted during layer {j + 1}; keeping the {j} layers "
                    "finished so far. Fit again with warm_start=True to continue.",
                    stacklevel=5,
                )
                return
            growth.model.layers.append(layer)
            growth.model.heads.append(head)
            growth.widths.append(self.plan[j].out_channels)
            growth.results.append(result)
            growth.pruning.append(pruning)
            growth.features = self._next_features(growth, data, layer)
            if growth.features is not None:
                features = growth.features  # the head reads them as they are
                score = accuracy(
                    head, features.X, features.y, self.eval_batch_size, sharded=self.sharded
                )
            else:
                score = self.layer_accuracy(growth.model, data)
            growth.scores.append(score)
            self._save(growth, j)
            self._report(j, growth, result)

    def _grow_decoupled(self, growth: GrowingNetwork, data: StageData) -> None:
        """Train every missing layer at once, each on its own loss (Belilovsky et al.,
        2020), on top of the fitted layers (frozen) when warm-starting."""
        first, n = len(growth.widths), self.stop
        if first >= n:  # every layer read back from checkpoint_dir
            return
        built = [self._build_step(j) for j in range(first, n)]
        layers = [layer.to(self.device) for layer, _ in built]
        heads = [head.to(self.device) for _, head in built]
        results = train_decoupled(
            layers, heads, data, loss_fn=F.cross_entropy,
            config=replace(self.config, label=f"layers {first + 1}-{n}/{n}"),
            generator=make_generator(derive_seed(self.seed, 2, first), self.device),
            prefix=growth.model.features, augment=self.augment,
            labels=[f"layer {j + 1}/{n}" for j in range(first, n)],
            delay=self.decoupled_delay,
        )  # fmt: skip
        for layer, head in zip(layers, heads):
            layer.eval().requires_grad_(False)
            head.eval().requires_grad_(False)
            growth.model.layers.append(layer)
            growth.model.heads.append(head)
        scores = self._head_accuracies(growth.model, data, first)  # one pass for all
        for j, result, score in zip(range(first, n), results, scores):
            growth.widths.append(self.plan[j].out_channels)
            growth.results.append(result)
            growth.pruning.append(None)
            growth.scores.append(score)
            self._report(j, growth, result)
        for j in range(first, n):  # finished pieces only now, all together
            self._save(growth, j)

    def resume(self, growth: GrowingNetwork, data: StageData, pieces) -> None:
        """Put the finished layers read from a checkpoint store back on the fresh stem of
        ``growth``, as the uninterrupted fit had them (its kept features recomputed
        alike)."""
        for piece in pieces[: self.stop]:
            j, meta = piece.index, piece.meta
            layer, head = self._build_step(j)
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
                module.to(self.device).eval().requires_grad_(False)
            growth.model.layers.append(layer)
            growth.model.heads.append(head)
            growth.widths.append(meta["width"])
            growth.results.append(StageResult(meta["history"], meta["best_epoch"],
                                              meta["stopped_early"]))  # fmt: skip
            growth.pruning.append(pruning)
            growth.scores.append(meta["score"])
            if self.training == "sequential":
                growth.features = self._next_features(growth, data, layer)
            if self.verbose:
                print(f"layer {j + 1}/{self.n_layers}: read from checkpoint_dir")

    # ------------------------------------------------------------------ one layer step
    def train_layer(self, model: LayerwiseNetwork, j: int, data: StageData, prefix=None):
        """Layer ``j`` and its auxiliary head trained on the frozen ``model`` (Alg. 1),
        then compressed when the plan says so: on ``prefix(data)``, where ``prefix`` is the
        frozen network (``data`` raw) or None (``data`` is already its output).

        Returns
        -------
        layer, head : nn.Module
            Trained, in eval mode, frozen.
        result : StageResult
            What the engine's stage recorded.
        pruning : dict or None
            What compressing the layer did (None when it was not compressed).
        """
        layer, head = self._build_step(j)
        stage = nn.Sequential(layer, head).to(self.device)
        config = replace(self.config, label=f"layer {j + 1}/{self.n_layers}")
        if prefix is not None and len(model.layers) == 0 and config.prefix_cache != "device":
            # the stem's output is the images again (float): kept on the device with the
            # images, never copied to the host or disk, where a stream would not fit
            config = replace(config, prefix_cache=None)
        result = train_stage(
            stage,
            data,
            loss_fn=F.cross_entropy,
            config=config,
            generator=make_generator(derive_seed(self.seed, 2, j), self.device),
            prefix=prefix,
            augment=self.augment,
            # data-parallel inside a process group of several (torchrun, device=[...])
            trainer_cls=stage_trainer_class(),
        )
        stage.eval().requires_grad_(False)
        pruning = self._compress(j, data, prefix, layer, head)
        return layer, head, result, pruning

    def _build_step(self, j: int):
        """Layer ``j`` (at its trained width) and its auxiliary head, freshly initialised
        under the layer's seed."""
        spec = self.plan[j]
        if self.trained:
            spec = replace(spec, out_channels=self.trained[j])
        last = j == len(self.plan) - 1
        return self.steps.build(spec, self.n_classes, last=last, seed=derive_seed(self.seed, 1, j))

    def _compress(self, j: int, data, prefix, layer, head) -> dict | None:
        """Prune layer ``j`` to its planned width by the Taylor criterion, then fine-tune
        its head alone on the remaining features (Sec. 4.3); in ``prune_rounds`` rounds,
        each pruning to a width between the trained and the planned one (geometrically)
        and fine-tuning on its share of the ``prune_epochs`` before the next ranks the
        filters again (Molchanov et al., 2016). None for an unpruned layer.
        ``prefix(data.X)`` is the layer's input (``prefix`` None: ``data.X`` is)."""
        width, trained = self.plan[j].out_channels, self.trained[j] if self.trained else 0
        if width >= trained:
            return None
        prefix = torch.nn.Identity() if prefix is None else prefix
        size = self.eval_batch_size
        widths = round_widths(trained, width, self.prune_rounds)
        # the rounds share the fine-tuning epochs, the last rounds taking the remainder
        shares = [len(p) for p in np.array_split(np.arange(self.prune_epochs), len(widths))][::-1]
        kept = torch.arange(trained)
        before = _head_accuracy(layer, head, prefix, data, size, self.sharded)
        record = {"trained_width": trained, "score_before": before, "history": [], "rounds": []}
        for r, (target, share) in enumerate(zip(widths, shares)):
            scores = taylor_scores(
                layer, head, prefix, data.X, data.y, batch_size=size,
                sample_weight=data.sample_weight, sharded=self.sharded,
            )  # fmt: skip
            keep = channels_to_keep(scores, target)
            prune_stage(layer, head, keep)
            kept = kept[keep.cpu()]
            step = {"width": target, "scores": scores.cpu().numpy(),
                    "score_pruned": _head_accuracy(layer, head, prefix, data, size, self.sharded),
                    "history": []}  # fmt: skip
            if share:
                label = f"layer {j + 1}/{len(self.plan)} fine-tuning"
                config = replace(self.config, label=label, max_epochs=share)
                keys = (3, j) if r == 0 else (3, j, r)  # one round: the one-shot seed
                head.requires_grad_(True)
                result = train_stage(
                    head, data, loss_fn=F.cross_entropy, config=config,
                    generator=make_generator(derive_seed(self.seed, *keys), self.device),
                    prefix=lambda x: layer(prefix(x)), augment=self.augment,
                    # data-parallel in a process group, as the layer: its rows are sharded
                    trainer_cls=stage_trainer_class(),
                )  # fmt: skip
                head.eval().requires_grad_(False)
                step["history"] = result.history
            record["rounds"].append(step)
            record["history"] = record["history"] + step["history"]
        first = record["rounds"][0]
        record.update(kept_channels=kept.numpy(), scores=first["scores"],
                      score_pruned=first["score_pruned"])  # fmt: skip
        return record

    def _next_features(self, growth: GrowingNetwork, data: StageData, layer):
        """The data after the newest layer, kept where the configuration's
        ``prefix_cache`` says, when the next layer can train on it (no augmentation);
        computed from the kept features of the layer below (one layer's pass) or, the
        first time, from the raw data. In a process group each rank computes and keeps
        its share of the rows (:func:`shard_rows`), on which it trains and scores."""
        where = self.config.prefix_cache
        if self.augment is not None or where is None:
            return None
        source, fn = growth.features, layer
        if source is None:
            source, fn = data, growth.model.features
        size = self.eval_batch_size
        with self.config.autocast(self.device):
            X = cache_outputs(fn, source.X, size, where, shard_rows(data.X.shape[0]))
            X_val = source.X_val
            if data.has_validation:
                rows = shard_rows(data.X_val.shape[0])
                X_val = cache_outputs(fn, source.X_val, size, where, rows)
        return replace(data, X=X, X_val=X_val)

    # ------------------------------------------------------------------ scores and records
    def layer_accuracy(self, model: LayerwiseNetwork, data: StageData) -> float:
        """Training accuracy (eval mode, no augmentation) of the last head of ``model``."""
        return last_head_accuracy(model, data, self.eval_batch_size, sharded=self.sharded)

    @property
    def sharded(self) -> bool:
        """Whether the evaluation passes are shared out: in a process group of several,
        every rank runs this fit alike, so each scores its share of the rows."""
        return distributed_world_size() > 1

    def _head_accuracies(self, model, data, first: int) -> list[float]:
        """Training accuracy (eval mode, no augmentation) of the heads of layers ``first``
        on, from one pass through the network."""
        size = self.eval_batch_size
        hits = torch.zeros(len(model.layers) - first, device=data.X.device)
        with torch.no_grad():
            for start in range(0, data.X.shape[0], size):
                logits = model.all_logits(data.X[start : start + size])[first:]
                hits += (logits.argmax(2) == data.y[start : start + size]).sum(1)
        return (hits / data.X.shape[0]).tolist()

    def _report(self, j: int, growth: GrowingNetwork, result: StageResult) -> None:
        if not self.verbose:
            return
        valid = [r["valid_score"] for r in result.history if r["valid_score"] is not None]
        print(
            f"layer {j + 1}/{self.n_layers}: train accuracy {growth.scores[-1]:.4f}"
            + (f", best validation {max(valid):.4f}" if valid else "")
            + f" ({result.n_iter} epochs)"
        )

    def _save(self, growth: GrowingNetwork, j: int) -> None:
        """Write layer ``j`` of ``growth``, its head, and what its training left to the
        fit's checkpoint store (the stem with the first layer); a no-op without one."""
        if self.store is None:
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
        self.store.save(j, tensors, meta, seed=self.seed)


def _head_accuracy(layer, head, prefix, data, batch_size: int, sharded: bool) -> float:
    """Training accuracy (eval mode, no augmentation) of ``head`` on ``layer(prefix(X))``."""
    fn = lambda b: head(layer(prefix(b)))  # noqa: E731
    return accuracy(fn, data.X, data.y, batch_size, sharded=sharded)
