"""What a fitted greedy CNN answers: predictions, per-layer features, exports.

:class:`LayerwiseCNNInference` holds the methods of
:class:`~sklearn_greedy.GreedyLayerwiseCNNClassifier` that only read the fitted network,
so that the estimator's module is about training it.
"""

from __future__ import annotations

import copy
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import TransformerMixin
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._cnn_modules import GreedyCNN, layer_feature_names, reset_parameters
from ._cnn_network import ensemble_logits
from ._engine import batched_apply
from ._utils import base_seed, inference_device, torch_seeded
from ._validation import check_layer, check_pool


class LayerwiseCNNInference(TransformerMixin):
    """Prediction, transform and export methods of a fitted greedy CNN.

    A transformer itself, so that scikit-learn's ``set_output`` wraps the ``transform``
    defined here (it wraps only a class's own methods).
    """

    def _prepare(self, X) -> tuple[torch.Tensor, torch.device]:
        """Validated X on the device to predict on (a tensor, or a streaming source), and
        that device."""
        check_is_fitted(self)
        X, _ = self._predict_input(X)
        device = inference_device(self.device_)
        return self._source(X, device), device

    def _inference_model(self, device: torch.device) -> nn.Module:
        """The fitted network on ``device``; a moved copy when it lives elsewhere, so that
        predicting never changes the fitted state (or races with another thread)."""
        first = next(self.model_.parameters(), None)
        if first is None or first.device == device:
            return self.model_
        return copy.deepcopy(self.model_).to(device)

    def _inference_runtime(self, device: torch.device):
        """Threads and precision of a prediction, sized like the fitted network."""
        widest = max(int(np.prod(shape)) for shape in self.layer_shapes_)
        return self._runtime(device, n_values=self._eval_batch_size() * widest)

    def _all_logits(self, X) -> torch.Tensor:
        """Logits of every layer's head, shape (n_layers_fitted_, n, n_classes), on the CPU."""
        X_t, device = self._prepare(X)
        model = self._inference_model(device)
        with self._inference_runtime(device):
            out = batched_apply(
                lambda b: model.all_logits(b).transpose(0, 1),
                X_t,
                self._eval_batch_size(),
                out_device=torch.device("cpu"),
            )
        return out.transpose(0, 1).double()

    def _combined_logits(self, X) -> torch.Tensor:
        logits = self._all_logits(X)
        return ensemble_logits(logits) if self.ensemble else logits[-1]

    def decision_function(self, X) -> np.ndarray:
        """Logits of the last layer's classifier, or of the ensemble.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, C, H, W) or (n_samples, n_features)
            Images.

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes), or (n_samples,) for two classes
            For two classes, the score of ``classes_[1]`` against ``classes_[0]`` (the
            difference of their logits), as scikit-learn's binary classifiers return.
        """
        logits = self._combined_logits(X)
        if logits.shape[1] == 2:
            return (logits[:, 1] - logits[:, 0]).numpy()
        return logits.numpy()

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of the last layer's classifier, or of the ensemble.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, C, H, W) or (n_samples, n_features)
            Images.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        return torch.softmax(self._combined_logits(X), dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        """Predicted class labels.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, C, H, W) or (n_samples, n_features)
            Images.

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        codes = self._combined_logits(X).argmax(dim=1).numpy()
        return self.classes_[codes]

    def staged_predict_proba(self, X):
        """Class probabilities of each layer's auxiliary classifier, layer by layer.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, C, H, W) or (n_samples, n_features)
            Images.

        Yields
        ------
        proba : ndarray of shape (n_samples, n_classes)
            Probabilities after layer 1, 2, ..., ``n_layers_fitted_``.
        """
        for logits in self._all_logits(X):
            yield torch.softmax(logits, dim=1).numpy()

    def staged_predict(self, X):
        """Predicted labels of each layer's auxiliary classifier, layer by layer.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, C, H, W) or (n_samples, n_features)
            Images.

        Yields
        ------
        y : ndarray of shape (n_samples,)
        """
        for logits in self._all_logits(X):
            yield self.classes_[logits.argmax(dim=1).numpy()]

    def transform(self, X) -> np.ndarray:
        """Representation ``x_j`` after layer ``transform_layer``, averaged to 2x2.

        The spatial averaging to a 2x2 grid is the one the paper uses for its linear
        separability probes (Sec. 4.2).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, C, H, W) or (n_samples, n_features)
            Images.

        Returns
        -------
        features : ndarray of shape (n_samples, 4 * width_j), dtype float32
        """
        check_is_fitted(self)
        depth = check_layer(self.transform_layer, self.n_layers_fitted_, name="transform_layer")
        features = self.layer_outputs(X, depth, pool=2)[depth]
        return features.reshape(features.shape[0], -1)

    def layer_outputs(self, X, layers=None, *, pool: int | None = 2) -> dict[int, np.ndarray]:
        """The representation after each of ``layers``, from one forward pass.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, C, H, W) or (n_samples, n_features)
            Images.
        layers : int, sequence of int or None, default=None
            Layers to return (1-based; ``-1`` is the last); None for every fitted layer.
        pool : int or None, default=2
            Average each channel to a ``pool`` x ``pool`` grid (the paper's probes use 2);
            None keeps the full spatial resolution.

        Returns
        -------
        outputs : dict of int to ndarray of shape (n_samples, C_j, h, w), float32
            Keyed by the resolved 1-based layer number.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_greedy import GreedyLayerwiseCNNClassifier
        >>> X, y = np.random.RandomState(0).rand(20, 1, 8, 8), np.arange(20) % 2
        >>> cnn = GreedyLayerwiseCNNClassifier(n_layers=2, width=4, max_epochs=1).fit(X, y)
        >>> {j: h.shape for j, h in cnn.layer_outputs(X, [1, -1], pool=None).items()}
        {1: (20, 4, 8, 8), 2: (20, 8, 4, 4)}
        """
        check_is_fitted(self)
        wanted = self._resolve_layers(layers)
        pool = check_pool(pool)
        X_t, device = self._prepare(X)
        model = self._inference_model(device)

        def features(batch):
            outs = [
                (F.adaptive_avg_pool2d(h, pool) if pool else h).flatten(1)
                for j, h in enumerate(model.per_layer(batch, wanted[-1]), start=1)
                if j in wanted
            ]
            # one flat tensor per batch so that batches concatenate; split again below
            return torch.cat(outs, dim=1)

        with self._inference_runtime(device):
            flat = batched_apply(
                features, X_t, self._eval_batch_size(), out_device=torch.device("cpu")
            )
        shapes = {j: self.layer_output_shape(j, pool=pool) for j in wanted}
        parts = torch.split(flat, [int(np.prod(shapes[j])) for j in wanted], dim=1)
        return {j: part.reshape(-1, *shapes[j]).numpy() for j, part in zip(wanted, parts)}

    def layer_output_shape(self, layer=None, *, pool: int | None = 2) -> tuple[int, int, int]:
        """Shape (C, h, w) of one sample's representation after ``layer``.

        Parameters
        ----------
        layer : int or None, default=None
            The layer (1-based; ``-1`` is the last); None for the last.
        pool : int or None, default=2
            As in :meth:`layer_outputs`: ``(C, pool, pool)`` when pooled.

        Returns
        -------
        shape : tuple of int
        """
        check_is_fitted(self)
        layer = check_layer(layer, self.n_layers_fitted_)
        pool = check_pool(pool)
        c, height, width = self.layer_shapes_[layer - 1]
        return (c, pool, pool) if pool else (c, height, width)

    def _resolve_layers(self, layers) -> list[int]:
        if layers is None:
            return list(range(1, self.n_layers_fitted_ + 1))
        if isinstance(layers, (numbers.Integral, np.integer)) and not isinstance(layers, bool):
            layers = [layers]
        resolved = sorted({check_layer(j, self.n_layers_fitted_, name="layers") for j in layers})
        if not resolved:
            raise ValueError("layers is empty; give at least one layer or None for all.")
        return resolved

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the :meth:`transform` features: ``layer{j}_c{channel}_{row}{col}``.

        ``row`` and ``col`` index the 2x2 averaging grid.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored; present for API consistency.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        depth = check_layer(self.transform_layer, self.n_layers_fitted_, name="transform_layer")
        width = self.layer_widths_[depth - 1]
        return np.asarray(layer_feature_names(depth, width, 2, 2), dtype=object)

    # ------------------------------------------------------------------ export
    def to_torch(self, *, pretrained: bool = True, random_state=None) -> GreedyCNN:
        """The trained network as a standalone module, for end-to-end training.

        Returns a CPU copy mapping raw images (n, C, H, W) to the last layer's logits,
        in train mode with every parameter trainable. With ``pretrained=False`` the same
        architecture is freshly initialised: the end-to-end baseline of the paper.

        Parameters
        ----------
        pretrained : bool, default=True
            Keep the greedily trained weights (for fine-tuning) or re-initialise them.
        random_state : int, RandomState instance or None, default=None
            Seeds the re-initialisation when ``pretrained=False``.

        Returns
        -------
        network : GreedyCNN
        """
        check_is_fitted(self)
        model = copy.deepcopy(self.model_).cpu()
        network = GreedyCNN(model.stem, list(model.layers), model.heads[-1])
        if not pretrained:
            with torch_seeded(base_seed(random_state)):
                reset_parameters(network)
        return network.train().requires_grad_(True)

    def to_skorch(self, *, pretrained: bool = True, **kwargs):
        """A :class:`skorch.NeuralNetClassifier` around :meth:`to_torch`'s network.

        With the greedy weights, ``net.partial_fit(X, y)`` fine-tunes end to end; with
        ``pretrained=False`` ``net.fit(X, y)`` trains the same architecture from scratch.
        skorch wants ``y`` as integer codes: ``np.searchsorted(clf.classes_, y)``.

        Parameters
        ----------
        pretrained : bool, default=True
            Start from the greedy weights or from a fresh initialisation.
        **kwargs
            Passed to :class:`skorch.NeuralNetClassifier` (``max_epochs``, ``lr``,
            ``optimizer``, ``device``...).

        Returns
        -------
        net : skorch.NeuralNetClassifier
        """
        from skorch import NeuralNetClassifier

        kwargs.setdefault("criterion", nn.CrossEntropyLoss)
        kwargs.setdefault("classes", np.arange(len(self.classes_)))
        kwargs.setdefault("train_split", None)
        module = self.to_torch(pretrained=pretrained, random_state=self.random_state)
        return NeuralNetClassifier(module, **kwargs).initialize()

    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        state = super().__getstate__()
        if "model_" in state:
            # CPU tensors in the pickle, so a model fitted on a GPU loads anywhere
            state = dict(state)
            state["model_"] = copy.deepcopy(state["model_"]).cpu()
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        # transform returns float32 whatever the input: the network computes in float32
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
