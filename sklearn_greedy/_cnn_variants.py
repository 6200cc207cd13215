"""The greedy CNN's variants of one layer step and of the whole fit (issue 10).

:class:`CNNVariantsMixin` holds the parts of
:class:`~sklearn_greedy.GreedyLayerwiseCNNClassifier` that go beyond the paper's SimCNN
step: building a step with capped widths and VGG heads (``_vgg``), compressing a layer
right after it is trained (``_compression``), training every layer at once
(``_decoupled``), and retraining the last step with another final auxiliary width
(:meth:`~CNNVariantsMixin.refit_final_head`, the paper's Table 1).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from numbers import Integral

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.validation import check_is_fitted

from ._augment import make_augment
from ._cnn_growth import save_layer
from ._cnn_modules import AuxiliaryClassifier, GreedyLayer
from ._cnn_network import FitStages, accuracy, layer_shapes
from ._compression import (
    channels_to_keep,
    count_parameters,
    prune_stage,
    prune_targets,
    pruned_plan,
    taylor_scores,
)
from ._decoupled import train_decoupled
from ._engine import train_stage
from ._utils import (
    base_seed,
    derive_seed,
    make_generator,
    resolve_device,
    resolve_precision,
    restore_on_failure,
    torch_seeded,
)
from ._validation import check_training_weights
from ._vgg import PooledAuxiliaryClassifier, VGGClassifier, cap_widths

# VGG's hidden fully connected width, the final auxiliary's when final_aux="vgg"
VGG_HIDDEN = 4096


def round_widths(trained: int, target: int, rounds: int) -> list[int]:
    """The widths of ``rounds`` pruning rounds from ``trained`` filters down to ``target``,
    geometrically spaced, each round removing at least one filter (fewer rounds when
    there are fewer filters to remove).

    Examples
    --------
    >>> from sklearn_greedy._cnn_variants import round_widths
    >>> round_widths(128, 64, 1), round_widths(128, 64, 3), round_widths(4, 3, 3)
    ([64], [102, 81, 64], [3])
    """
    widths = []
    for r in range(1, rounds + 1):
        w = int(round(trained * (target / trained) ** (r / rounds)))
        w = max(target, min(w, (widths[-1] if widths else trained) - 1))
        if not widths or w < widths[-1]:
            widths.append(w)
    return widths


class CNNVariantsMixin:
    """Layer steps beyond SimCNN's: VGG heads, compression, decoupled fit, final refit."""

    # ------------------------------------------------------------------ plan
    def _variant_plan(self, plan: list) -> list:
        """The plan with the widths capped at ``max_width`` and the VGG head's width."""
        fixed = self.final_aux_width is not None
        plan = cap_widths(plan, self.max_width, fixed_last_aux=fixed)
        if self.final_aux == "vgg" and not fixed:
            plan[-1] = replace(plan[-1], aux_width=VGG_HIDDEN)
        return plan

    def _prune_plan(self, plan: list) -> tuple[list, list[int]]:
        """The layers' shapes after compression, and the width each is trained at."""
        trained = [spec.out_channels for spec in plan]
        targets = prune_targets(self.prune_to, trained)
        if self.training == "decoupled" and any(t is not None for t in targets):
            raise ValueError(
                "prune_to needs training='sequential': a layer is pruned before the next "
                "one is built on its reduced width, which decoupled training cannot wait for."
            )
        return pruned_plan(plan, targets), trained

    def _bn_flags(self) -> tuple[bool, bool]:
        """BatchNorm in the layers, and in the auxiliary classifiers."""
        if self.batch_norm == "aux":
            return False, True
        on = self._use_batch_norm()
        return on, on

    # ------------------------------------------------------------------ one step
    def _build_step(self, stages, j: int):
        """Layer ``j`` (at its trained width) and its auxiliary head, freshly initialised
        under the layer's seed."""
        spec = stages.plan[j]
        if stages.trained:
            spec = replace(spec, out_channels=stages.trained[j])
        layer_bn, head_bn = self._bn_flags()
        last = j == len(stages.plan) - 1
        with torch_seeded(derive_seed(stages.seed, 1, j)):
            layer = GreedyLayer(spec.in_channels, spec.out_channels, spec.downsample, layer_bn)
            if last and self.final_aux == "vgg":
                head = VGGClassifier(spec.out_channels, stages.n_classes, width=spec.aux_width)
            elif self.aux_downsample is not None:
                head = PooledAuxiliaryClassifier(
                    spec.out_channels, stages.n_classes, self.k, spec.aux_width, head_bn,
                    pool=self.aux_downsample,
                )  # fmt: skip
            else:
                head = AuxiliaryClassifier(
                    spec.out_channels, stages.n_classes, self.k, spec.aux_width, head_bn
                )
        return layer, head

    def _compress_step(self, stages, j: int, data, prefix, layer, head):
        """Prune layer ``j`` to its planned width by the Taylor criterion, then fine-tune
        its head alone on the remaining features (Sec. 4.3); in ``prune_rounds`` rounds,
        each pruning to a width between the trained and the planned one (geometrically)
        and fine-tuning on its share of the ``prune_epochs`` before the next ranks the
        filters again (Molchanov et al., 2016). A no-op for unpruned layers.
        ``prefix(data.X)`` is the layer's input (``prefix`` None: ``data.X`` is)."""
        width, trained = stages.plan[j].out_channels, stages.trained[j] if stages.trained else 0
        if width >= trained:
            return layer, head
        prefix = torch.nn.Identity() if prefix is None else prefix
        size = self._eval_batch_size()
        epochs = self.max_epochs if self.prune_epochs is None else self.prune_epochs
        widths = round_widths(trained, width, self.prune_rounds)
        # the rounds share the fine-tuning epochs, the last rounds taking the remainder
        shares = [len(part) for part in np.array_split(np.arange(epochs), len(widths))][::-1]
        kept = torch.arange(trained)
        record = {"trained_width": trained, "score_before": _head_accuracy(
            layer, head, prefix, data, size), "history": [], "rounds": []}  # fmt: skip
        for r, (target, share) in enumerate(zip(widths, shares)):
            scores = taylor_scores(
                layer, head, prefix, data.X, data.y, batch_size=size,
                sample_weight=data.sample_weight,
            )  # fmt: skip
            keep = channels_to_keep(scores, target)
            prune_stage(layer, head, keep)
            kept = kept[keep.cpu()]
            step = {"width": target, "scores": scores.cpu().numpy(),
                    "score_pruned": _head_accuracy(layer, head, prefix, data, size),
                    "history": []}  # fmt: skip
            if share:
                label = f"layer {j + 1}/{len(stages.plan)} fine-tuning"
                config = replace(self._training_config(label, stages), max_epochs=share)
                keys = (3, j) if r == 0 else (3, j, r)  # one round: the one-shot seed
                head.requires_grad_(True)
                result = train_stage(
                    head, data, loss_fn=F.cross_entropy, config=config,
                    generator=make_generator(derive_seed(stages.seed, *keys), stages.device),
                    prefix=lambda x: layer(prefix(x)), augment=stages.augment,
                )  # fmt: skip
                head.eval().requires_grad_(False)
                step["history"] = result.history
            record["rounds"].append(step)
            record["history"] = record["history"] + step["history"]
        first = record["rounds"][0]
        record.update(kept_channels=kept.numpy(), scores=first["scores"],
                      score_pruned=first["score_pruned"])  # fmt: skip
        stages.pruning[j] = record
        return layer, head

    # ------------------------------------------------------------------ decoupled
    def _grow_decoupled(self, growth, stages, data) -> None:
        """Train every missing layer at once, each on its own loss (Belilovsky et al.,
        2020), on top of the fitted layers (frozen) when warm-starting."""
        first, n = len(growth.widths), stages.stop or self.n_layers
        if first >= n:  # every layer read back from checkpoint_dir
            return
        built = [self._build_step(stages, j) for j in range(first, n)]
        layers = [layer.to(stages.device) for layer, _ in built]
        heads = [head.to(stages.device) for _, head in built]
        results = train_decoupled(
            layers, heads, data, loss_fn=F.cross_entropy,
            config=self._training_config(f"layers {first + 1}-{n}/{n}", stages),
            generator=make_generator(derive_seed(stages.seed, 2, first), stages.device),
            prefix=growth.model.features, augment=stages.augment,
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
            growth.widths.append(stages.plan[j].out_channels)
            growth.results.append(result)
            growth.pruning.append(None)
            growth.scores.append(score)
            self._report_layer(j, growth, result)
        for j in range(first, n):  # finished pieces only now, all together
            save_layer(stages, growth, j)

    def _head_accuracies(self, model, data, first: int) -> list[float]:
        """Training accuracy (eval mode, no augmentation) of the heads of layers ``first``
        on, from one pass through the network."""
        size = self._eval_batch_size()
        hits = torch.zeros(len(model.layers) - first, device=data.X.device)
        with torch.no_grad():
            for start in range(0, data.X.shape[0], size):
                logits = model.all_logits(data.X[start : start + size])[first:]
                hits += (logits.argmax(2) == data.y[start : start + size]).sum(1)
        return (hits / data.X.shape[0]).tolist()

    # ------------------------------------------------------------------ refit
    def refit_final_head(self, X, y=None, *, final_aux_width, sample_weight=None, X_val=None,
                         y_val=None):  # fmt: skip
        """Retrain the last layer step with a final auxiliary of width ``final_aux_width``.

        The paper's Table 1 (Sec. 4.3): the last layer and its auxiliary classifier, which
        becomes part of the final model, are trained again from their initialisation with
        auxiliary width ``M~_f`` (for ``final_aux="vgg"``, the hidden width of VGG's
        classifier), on top of the earlier layers, which stay frozen and are not refitted;
        the earlier heads, hence their staged predictions, do not change. A compressed
        last layer is compressed again. The training settings are the current parameters
        (``max_epochs``, ``lr``...; the architecture ones must be those of the fit); the
        parameters are left as they are, so ``clone`` gives the original architecture.
        The fitted attributes of the last layer (``history_``, ``layer_scores_``,
        ``layer_specs_``...) describe the new step.

        Parameters
        ----------
        X : array-like, torch.Tensor, np.memmap or Dataset
            Training images, as for :meth:`fit`.
        y : array-like of shape (n_samples,) or None
            Labels, among ``classes_`` (None for a data set of pairs, as for :meth:`fit`).
        final_aux_width : int
            The new width ``M~_f`` (at least 1).
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sample in the loss.
        X_val, y_val : array-like, default=None
            Validation data, as for :meth:`fit`; its accuracy before and after is reported.

        Returns
        -------
        self : GreedyLayerwiseCNNClassifier
            The estimator, with ``final_refit_``: ``final_aux_width``, ``n_params`` (of
            the assembled network, :meth:`to_torch`), ``train_score`` (accuracy on X) and,
            with validation data, ``valid_score``, each a ``(before, after)`` pair.
        """
        check_is_fitted(self)
        if isinstance(final_aux_width, bool) or not (
            isinstance(final_aux_width, Integral) and final_aux_width >= 1
        ):
            raise ValueError(f"final_aux_width must be an int >= 1, got {final_aux_width!r}.")
        with restore_on_failure(self):
            update = self._refit_final(X, y, int(final_aux_width), sample_weight, X_val, y_val)
            self.__dict__.update(update)
        return self

    def _refit_final(self, X, y, final_aux_width, sample_weight, X_val, y_val) -> dict:

        for name, value in self._architecture().items():
            if value != self.architecture_[name]:
                raise ValueError(
                    f"refit_final_head cannot change {name} (the model was fitted with "
                    f"{name}={self.architecture_[name]!r}, now {value!r}); refit with fit."
                )
        X, y, image_shape = self._labelled_input(X, y)
        y_enc = np.searchsorted(self.classes_, y).astype(np.int64)
        weights = check_training_weights(sample_weight, self.class_weight, X, y_enc, self.classes_)
        device, seed = resolve_device(self.device), base_seed(self.random_state)
        data = self._stage_data(
            X, y_enc, weights, X_val, y_val, self.classes_, image_shape, device, seed
        )
        j = self.n_layers_fitted_ - 1
        plan = list(self.layer_specs_)
        plan[j] = replace(plan[j], aux_width=final_aux_width)
        trained = [spec.out_channels for spec in plan]
        if self.pruning_[j] is not None:
            trained[j] = self.pruning_[j]["trained_width"]
        augment = make_augment(self.augment, image_shape)
        stages = FitStages(plan, len(self.classes_), seed, augment, device,
                           self._prefix_cache(X), trained=trained)  # fmt: skip
        old = copy.deepcopy(self.model_).to(device)
        model = copy.deepcopy(old)
        del model.layers[j]
        del model.heads[j]
        widest = max(int(np.prod(shape)) for shape in self.layer_shapes_)
        with self._runtime(device, n_values=self.batch_size * widest):
            before = self._final_scores(old, data)
            layer, head, result = self._train_layer(model, stages, j, data, model.features)
            model.layers.append(layer)
            model.heads.append(head)
            after = self._final_scores(model, data)
        results = self._previous_stage_results(self.__dict__)[:j] + [result]
        report = {
            "final_aux_width": (self.layer_specs_[j].aux_width, final_aux_width),
            "n_params": (_network_size(old), _network_size(model)),
            "train_score": (before[0], after[0]),
        }
        if data.has_validation:
            report["valid_score"] = (before[1], after[1])
        return {
            "model_": model,
            "device_": device,
            "precision_": resolve_precision(self.precision, device),
            "history_": [r.history for r in results],
            **self._stage_diagnostics(
                results, watch_convergence=self.early_stopping, first_new=j, stage_name="Layer"
            ),
            "layer_scores_": np.append(self.layer_scores_[:j], after[0]),
            "layer_specs_": plan,
            "layer_shapes_": layer_shapes(model, image_shape, device),
            "pruning_": list(self.pruning_[:j]) + [stages.pruning.get(j)],
            "final_refit_": report,
        }

    def _final_scores(self, model, data) -> tuple[float, float | None]:
        """Accuracy of the last head on the training data, and on the validation data."""
        train = self._layer_accuracy(model, data)
        if not data.has_validation:
            return train, None
        depth, size = len(model.layers), self._eval_batch_size()
        valid = accuracy(lambda b: model.head_logits(b, depth), data.X_val, data.y_val, size)
        return train, valid


def _head_accuracy(layer, head, prefix, data, batch_size: int) -> float:
    """Training accuracy (eval mode, no augmentation) of ``head`` on ``layer(prefix(X))``."""
    return accuracy(lambda b: head(layer(prefix(b))), data.X, data.y, batch_size)


def _network_size(model) -> int:
    """Parameters of the assembled network: the layers and the last head."""
    return sum(count_parameters(m) for m in model.layers) + count_parameters(model.heads[-1])


def parameter_count(estimator) -> int:
    """Number of parameters of a fitted estimator's assembled network.

    The layers and the last auxiliary classifier: what :meth:`to_torch` returns, and what
    compression and :meth:`refit_final_head` make smaller (the earlier auxiliary heads,
    used only for staged predictions and the ensemble, are not counted).

    Parameters
    ----------
    estimator : GreedyLayerwiseCNNClassifier
        A fitted estimator.

    Returns
    -------
    n_params : int
        The parameter count.

    Raises
    ------
    TypeError
        If ``estimator`` is not a :class:`GreedyLayerwiseCNNClassifier`.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_greedy import GreedyLayerwiseCNNClassifier
    >>> X, y = np.random.RandomState(0).rand(20, 1, 8, 8), np.arange(20) % 2
    >>> clf = GreedyLayerwiseCNNClassifier(n_layers=1, width=4, max_epochs=1).fit(X, y)
    >>> parameter_count(clf) == sum(p.numel() for p in clf.to_torch().parameters())
    True
    """
    from ._cnn import GreedyLayerwiseCNNClassifier  # here: _cnn imports this module

    if not isinstance(estimator, GreedyLayerwiseCNNClassifier):
        raise TypeError(
            "parameter_count takes a GreedyLayerwiseCNNClassifier, got "
            f"{type(estimator).__name__}; count a torch module's parameters with "
            "sum(p.numel() for p in module.parameters())."
        )
    check_is_fitted(estimator)
    return _network_size(estimator.model_)
