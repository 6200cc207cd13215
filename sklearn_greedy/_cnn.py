"""The greedy layerwise CNN classifier (Belilovsky, Eickenberg and Oyallon, ICML 2019)."""

from __future__ import annotations

import copy
import numbers
import warnings
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, _fit_context
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from ._cnn_modules import (
    DOWNSAMPLE_KINDS,
    AuxiliaryClassifier,
    GreedyCNN,
    GreedyLayer,
    augment_crop_flip,
    layer_feature_names,
    layer_plan,
    make_stem,
    reset_parameters,
)
from ._engine import TrainingConfig, batched_apply, train_stage
from ._utils import (
    base_seed,
    derive_seed,
    inference_device,
    make_generator,
    resolve_device,
    restore_on_failure,
    torch_seeded,
)
from ._validation import (
    check_image_shape,
    check_layer,
    check_min_samples,
    check_pool,
    encode_classes,
    validate_images,
)


class _FittedNetwork(nn.Module):
    """Container of everything a fit learns: input stem, layers and per-layer heads."""

    def __init__(self, stem: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.layers = nn.ModuleList()
        self.heads = nn.ModuleList()

    def per_layer(self, x: torch.Tensor, stop: int | None = None):
        """Yield the representation after each of the first ``stop`` layers."""
        x = self.stem(x)
        for layer in self.layers[:stop]:
            x = layer(x)
            yield x

    def all_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every layer's auxiliary classifier, shape (n_layers, n, n_classes)."""
        return torch.stack([head(h) for head, h in zip(self.heads, self.per_layer(x))])


def _channel_stats(X: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation, in float64 slices (X may be uint8)."""
    total = torch.zeros(X.shape[1], dtype=torch.float64, device=X.device)
    squares = torch.zeros_like(total)
    for start in range(0, X.shape[0], batch_size):
        batch = X[start : start + batch_size].double()
        total += batch.sum(dim=(0, 2, 3))
        squares += (batch**2).sum(dim=(0, 2, 3))
    count = X.shape[0] * X.shape[2] * X.shape[3]
    mean = total / count
    std = (squares / count - mean**2).clamp_min(0).sqrt()
    # constant channels (std 0) are centred but not blown up
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return mean.float(), std.float()


def _layer_shapes(model: _FittedNetwork, image_shape, device) -> list[tuple[int, int, int]]:
    """Shape (C, h, w) of one sample after each layer, from a forward pass of one image."""
    with torch.no_grad():
        probe = torch.zeros((1, *image_shape), device=device)
        return [tuple(int(d) for d in h.shape[1:]) for h in model.per_layer(probe)]


class GreedyLayerwiseCNNClassifier(ClassifierMixin, TransformerMixin, BaseEstimator):
    """A CNN trained greedily, one layer at a time, with auxiliary classifiers.

    Layer ``j`` is trained together with a small auxiliary classifier of ``k`` hidden
    layers on top of the frozen layers before it (Alg. 1 of Belilovsky et al., 2019);
    then it is frozen and the next layer is trained on its output. The network predicts
    with the last layer's auxiliary classifier, or with a weighted ensemble of all of them.

    Parameters
    ----------
    n_layers : int, default=3
        Number of layers ``J`` to train.
    k : int, default=1
        Number of hidden layers of each auxiliary problem: the auxiliary classifier has
        ``k - 1`` convolutions before its averaging and linear layer (Eq. 2).
    width : int, default=64
        Width ``M`` of the first layer; it doubles at each downsampling.
    aux_width : int or None, default=None
        Width ``M~`` of the auxiliary classifiers' convolutions at the first layer; it
        doubles with the network's width. None uses ``width``. Unused when ``k=1``.
    final_aux_width : int or None, default=None
        Width ``M~_f`` of the last layer's auxiliary classifier, which becomes part of the
        final model. None follows ``aux_width``.
    downsample : {"invertible", "avg", "max", "strided"}, default="invertible"
        The downsampling operator ``P_j``: invertible 2x2 space-to-depth (Dinh et al.,
        2017), average pooling, max pooling, or a stride-2 convolution (App. C.1).
    downsample_at : tuple of int, default=(1,)
        Indices ``j`` (0-based, the paper's ``P_j``) of the layers that begin with a
        downsampling. Indices at or beyond ``n_layers`` are ignored, so that growing the
        network with ``warm_start`` keeps its plan.
    input_downsample : bool, default=False
        Apply an invertible downsampling to the input image first (Fig. 1).
    batch_norm : bool or "auto", default="auto"
        BatchNorm after each convolution and before the heads' linear layer. "auto"
        follows the paper: off for ``k=1``, on for ``k>1``.
    max_epochs : int, default=12
        Epochs per layer.
    batch_size : int, default=64
        Minibatch size.
    lr : float, default=0.1
        Initial SGD learning rate of each layer.
    momentum : float, default=0.9
        SGD momentum.
    weight_decay : float, default=5e-4
        L2 penalty.
    lr_decay : float, default=0.2
        Factor applied to the learning rate every ``lr_step`` epochs.
    lr_step : int or None, default=5
        Epochs between learning-rate decays; None keeps ``lr`` constant.
    augment : bool, "crop", "flip" or "auto", default="auto"
        Random crop (zero padding by an eighth of the image side: 4 pixels at 32x32, as in
        the paper) and horizontal flip of the training batches. "auto" crops images of at
        least 8x8 pixels and flips colour images of at least 16x16 (natural images; digits
        and characters are not mirror invariant).
    ensemble : bool, default=False
        Predict with the ensemble ``Z = sum_j 2^j z_j`` of all layers' auxiliary logits
        instead of the last layer's.
    keep_best : bool, default=True
        Keep each layer's best parameters along its training trajectory (the
        requirement of Prop. 3.1): the best validation accuracy with
        ``early_stopping``, the lowest training loss otherwise.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified) and stop a
        layer when its validation accuracy has not improved by ``tol`` for
        ``n_iter_no_change`` epochs.
    validation_fraction : float, default=0.1
        Fraction of the training data held out with ``early_stopping``.
    n_iter_no_change : int, default=10
        Epochs without improvement before a layer stops.
    tol : float, default=1e-4
        Improvement below which an epoch counts as no improvement.
    image_shape : tuple of int (C, H, W) or None, default=None
        Shape of one image when X is 2-D ``(n, C*H*W)``. A 2-D X without it is read as
        ``n_features`` channels of a 1x1 image (a greedily trained MLP).
    transform_layer : int or None, default=None
        Layer whose representation :meth:`transform` returns: 1-based like the paper's
        ``x_j``, negative counts from the end (``-1`` is the last), None for the last.
    device : str or torch.device, default="auto"
        Where to train: "auto" uses CUDA when present.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling, augmentation and the validation split.
        Training on the CPU is deterministic for a fixed seed.
    verbose : int, default=0
        Print progress (a tqdm bar per layer when tqdm is installed).
    warm_start : bool, default=False
        Reuse the layers of the previous fit: raising ``n_layers`` trains only the new
        layers.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Number of features ``C*H*W`` seen in fit.
    image_shape_ : tuple of int
        Shape (C, H, W) of the images seen in fit.
    n_layers_fitted_ : int
        Number of trained layers (fewer than ``n_layers`` after an interrupted fit).
    model_ : torch.nn.Module
        The trained input stem, layers and auxiliary heads.
    layer_widths_ : list of int
        Output width of each trained layer.
    history_ : list of list of dict
        For each layer, one record per epoch: ``epoch``, ``train_loss``, ``train_score``
        (accuracy on the augmented training batches), ``valid_score``, ``lr``,
        ``seconds``.
    layer_scores_ : ndarray of shape (n_layers_fitted_,)
        Training accuracy of each layer's auxiliary classifier, in eval mode on the
        training data without augmentation.
    device_ : torch.device
        Device the model was trained on.

    See Also
    --------
    cifar10_params : The paper's CIFAR-10 settings for ``k = 1, 2, 3``.
    sklearn.neural_network.MLPClassifier : End-to-end trained multi-layer perceptron.

    References
    ----------
    E. Belilovsky, M. Eickenberg and E. Oyallon. Greedy Layerwise Learning Can Scale to
    ImageNet. ICML 2019.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_greedy import GreedyLayerwiseCNNClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> clf = GreedyLayerwiseCNNClassifier(image_shape=(1, 8, 8), random_state=0)
    >>> clf.fit(X[:1200], y[:1200]).score(X[1200:], y[1200:]) > 0.9
    True
    >>> clf.n_layers_fitted_, clf.transform(X[:5]).shape
    (3, (5, 512))
    """

    _parameter_constraints: dict = {
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "k": [Interval(Integral, 1, None, closed="left")],
        "width": [Interval(Integral, 1, None, closed="left")],
        "aux_width": [Interval(Integral, 1, None, closed="left"), None],
        "final_aux_width": [Interval(Integral, 1, None, closed="left"), None],
        "downsample": [StrOptions(set(DOWNSAMPLE_KINDS))],
        "downsample_at": ["array-like"],
        "input_downsample": ["boolean"],
        "batch_norm": ["boolean", StrOptions({"auto"})],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "lr_decay": [Interval(Real, 0, 1, closed="right")],
        "lr_step": [Interval(Integral, 1, None, closed="left"), None],
        "augment": ["boolean", StrOptions({"auto", "crop", "flip"})],
        "ensemble": ["boolean"],
        "keep_best": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "image_shape": ["array-like", None],
        "transform_layer": [Integral, None],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
    }

    def __init__(
        self,
        n_layers=3,
        *,
        k=1,
        width=64,
        aux_width=None,
        final_aux_width=None,
        downsample="invertible",
        downsample_at=(1,),
        input_downsample=False,
        batch_norm="auto",
        max_epochs=12,
        batch_size=64,
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        lr_decay=0.2,
        lr_step=5,
        augment="auto",
        ensemble=False,
        keep_best=True,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        image_shape=None,
        transform_layer=None,
        device="auto",
        random_state=None,
        verbose=0,
        warm_start=False,
    ):
        self.n_layers = n_layers
        self.k = k
        self.width = width
        self.aux_width = aux_width
        self.final_aux_width = final_aux_width
        self.downsample = downsample
        self.downsample_at = downsample_at
        self.input_downsample = input_downsample
        self.batch_norm = batch_norm
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.lr_decay = lr_decay
        self.lr_step = lr_step
        self.augment = augment
        self.ensemble = ensemble
        self.keep_best = keep_best
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.image_shape = image_shape
        self.transform_layer = transform_layer
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    # ------------------------------------------------------------------ parameters
    def _use_batch_norm(self) -> bool:
        return self.k > 1 if self.batch_norm == "auto" else bool(self.batch_norm)

    def _downsample_set(self) -> set[int]:
        try:
            indices = [int(j) for j in self.downsample_at]
            valid = all(float(j) == int(j) >= 0 for j in self.downsample_at)
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise ValueError(
                "downsample_at must be a sequence of non-negative integer layer indices, "
                f"got {self.downsample_at!r}."
            )
        return set(indices)

    def _augment_fn(self, image_shape):
        """The batch augmentation for these images, or None.

        The crop pads by an eighth of the image side (4 pixels at 32x32, as in the paper).
        """
        c, h, w = image_shape
        crop, flip = {
            True: (True, True),
            False: (False, False),
            "crop": (True, False),
            "flip": (False, True),
            # translations suit any image; mirror images only natural colour ones
            "auto": (min(h, w) >= 8, c == 3 and min(h, w) >= 16),
        }[self.augment]
        if not (crop or flip):
            return None
        padding = max(1, min(h, w) // 8) if crop else 0

        def augment(batch, generator):
            return augment_crop_flip(batch, generator, padding=padding, flip=flip)

        return augment

    def _training_config(self) -> TrainingConfig:
        return TrainingConfig(
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer="sgd",
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            lr_decay=self.lr_decay,
            lr_step=self.lr_step,
            keep_best=self.keep_best,
            n_iter_no_change=self.n_iter_no_change,
            tol=self.tol,
            verbose=self.verbose,
        )

    def _eval_batch_size(self) -> int:
        return max(self.batch_size, 1024)

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Train the layers one after the other.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, C, H, W) or (n_samples, n_features)
            Training images; 2-D input is reshaped with ``image_shape``.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : GreedyLayerwiseCNNClassifier
            The fitted estimator.
        """
        with restore_on_failure(self):
            # fitted attributes are assigned together, once every layer is trained
            self.__dict__.update(self._fit(X, y, previous=dict(self.__dict__)))
        return self

    def _fit(self, X, y, previous) -> dict:
        check_image_shape(self.image_shape)
        check_layer(self.transform_layer, self.n_layers, name="transform_layer")
        downsample_at = self._downsample_set()
        continuing = self.warm_start and "model_" in previous
        X, y, image_shape = validate_images(self, X, y, reset=True, image_shape=self.image_shape)
        check_min_samples(X)
        classes, y_enc = encode_classes(y)
        if continuing:
            self._check_warm_start_compatible(previous, classes, image_shape)
            if self.n_layers < previous["n_layers_fitted_"]:
                raise ValueError(
                    f"n_layers={self.n_layers} must be at least the number of layers already "
                    f"fitted ({previous['n_layers_fitted_']}) when warm_start=True."
                )
            device = previous["device_"] = inference_device(previous["device_"])
            seed = previous["seed_"]
        else:
            device = resolve_device(self.device)
            seed = base_seed(self.random_state)

        X_val = y_val = None
        if self.early_stopping:
            X, X_val, y_enc, y_val = train_test_split(
                X,
                y_enc,
                test_size=self.validation_fraction,
                stratify=y_enc,
                random_state=derive_seed(seed, 0) % (2**31),
            )
        X_t = torch.from_numpy(np.ascontiguousarray(X)).to(device)
        y_t = torch.from_numpy(y_enc).to(device)
        if X_val is not None:
            X_val = torch.from_numpy(np.ascontiguousarray(X_val)).to(device)
            y_val = torch.from_numpy(y_val).to(device)

        if continuing:
            model = copy.deepcopy(previous["model_"]).to(device)
            history = list(previous["history_"])
            scores = list(previous["layer_scores_"])
            widths = list(previous["layer_widths_"])
        else:
            mean, std = _channel_stats(X_t, self._eval_batch_size())
            model = _FittedNetwork(make_stem(mean, std, self.input_downsample)).to(device)
            history, scores, widths = [], [], []
        model.eval().requires_grad_(False)

        n_classes = classes.shape[0]
        batch_norm = self._use_batch_norm()
        config = self._training_config()
        augment = self._augment_fn(image_shape)
        in_channels = image_shape[0] * (4 if self.input_downsample else 1)
        plan = layer_plan(
            in_channels, self.n_layers, self.width, self.downsample, downsample_at,
            self.aux_width, self.final_aux_width,
        )  # fmt: skip
        for j in range(len(widths), self.n_layers):
            spec = plan[j]
            with torch_seeded(derive_seed(seed, 1, j)):
                layer = GreedyLayer(
                    spec.in_channels, spec.out_channels, spec.downsample, batch_norm
                )
                head = AuxiliaryClassifier(
                    spec.out_channels, n_classes, self.k, spec.aux_width, batch_norm
                )
            stage = nn.Sequential(layer, head).to(device)
            frozen = model

            def prefix(batch, frozen=frozen):
                out = frozen.stem(batch)
                for frozen_layer in frozen.layers:
                    out = frozen_layer(out)
                return out

            try:
                result = train_stage(
                    stage,
                    X_t,
                    y_t,
                    loss_fn=F.cross_entropy,
                    config=config,
                    generator=make_generator(derive_seed(seed, 2, j), device),
                    prefix=prefix,
                    augment=augment,
                    X_val=X_val,
                    y_val=y_val,
                    eval_batch_size=self._eval_batch_size(),
                    desc=f"layer {j + 1}/{self.n_layers}",
                )
            except KeyboardInterrupt:
                if not widths:
                    raise
                warnings.warn(
                    f"Training interrupted during layer {j + 1}; keeping the {j} layers "
                    "finished so far. Fit again with warm_start=True to continue.",
                    stacklevel=3,
                )
                break
            stage.eval().requires_grad_(False)
            model.layers.append(layer)
            model.heads.append(head)
            widths.append(spec.out_channels)
            history.append(result.history)
            scores.append(self._layer_accuracy(model, X_t, y_t))
            if self.verbose:
                print(
                    f"layer {j + 1}/{self.n_layers}: train accuracy {scores[-1]:.4f}"
                    + (
                        f", best validation {max(r['valid_score'] for r in result.history):.4f}"
                        if X_val is not None
                        else ""
                    )
                )
        return {
            "classes_": classes,
            "image_shape_": tuple(image_shape),
            "device_": device,
            "model_": model,
            "history_": history,
            "layer_scores_": np.asarray(scores),
            "layer_widths_": widths,
            "n_layers_fitted_": len(widths),
            "layer_shapes_": _layer_shapes(model, image_shape, device),
            "seed_": seed,
        }

    def _check_warm_start_compatible(self, previous, classes, image_shape) -> None:
        if not np.array_equal(previous["classes_"], classes):
            raise ValueError(
                "warm_start=True needs the classes of the previous fit "
                f"({previous['classes_'].tolist()}), got {classes.tolist()}."
            )
        if tuple(previous["image_shape_"]) != tuple(image_shape):
            raise ValueError(
                f"warm_start=True needs images of shape {previous['image_shape_']} as in the "
                f"previous fit, got {tuple(image_shape)}."
            )

    def _layer_accuracy(self, model, X_t, y_t) -> float:
        """Accuracy of the last trained layer's head on the un-augmented data."""
        depth = len(model.layers)

        def logits(batch):
            *_, h = model.per_layer(batch, depth)
            return model.heads[depth - 1](h)

        out = batched_apply(logits, X_t, self._eval_batch_size())
        return float((out.argmax(1) == y_t).float().mean())

    # ------------------------------------------------------------------ inference
    def _prepare(self, X) -> tuple[torch.Tensor, torch.device]:
        """Validated X as a tensor on the device to predict on, and that device."""
        check_is_fitted(self)
        X, _ = validate_images(self, X, reset=False)
        device = inference_device(self.device_)
        return torch.from_numpy(np.ascontiguousarray(X)).to(device), device

    def _inference_model(self, device: torch.device) -> nn.Module:
        """The fitted network on ``device``; a moved copy when it lives elsewhere, so that
        predicting never changes the fitted state (or races with another thread)."""
        first = next(self.model_.parameters(), None)
        if first is None or first.device == device:
            return self.model_
        return copy.deepcopy(self.model_).to(device)

    def _all_logits(self, X) -> torch.Tensor:
        """Logits of every layer's head, shape (n_layers_fitted_, n, n_classes), on the CPU."""
        X_t, device = self._prepare(X)
        model = self._inference_model(device)
        out = batched_apply(
            lambda b: model.all_logits(b).transpose(0, 1),
            X_t,
            self._eval_batch_size(),
            out_device=torch.device("cpu"),
        )
        return out.transpose(0, 1).double()

    def _combined_logits(self, X) -> torch.Tensor:
        logits = self._all_logits(X)
        if not self.ensemble:
            return logits[-1]
        weights = 2.0 ** torch.arange(1, logits.shape[0] + 1, dtype=torch.float64)
        return torch.einsum("j,jnc->nc", weights / weights.sum(), logits)

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

        flat = batched_apply(features, X_t, self._eval_batch_size(), out_device=torch.device("cpu"))
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


def cifar10_params(k: int = 1) -> dict:
    """The paper's CIFAR-10 settings for ``k = 1, 2, 3`` (Sec. 4, 4.3 and reference code).

    SGD with momentum 0.9 and weight decay 5e-4, batch 128, lr 0.1 divided by 5 every 15
    of 50 epochs per layer, random crop and flip. ``k=1``: 5 layers of width 256 with
    downsampling at j=2, 3 and no BatchNorm; ``k=2, 3``: 4 layers of width 128, auxiliary
    width 128 doubling to 256 at the downsampling at j=2, BatchNorm.

    Parameters
    ----------
    k : {1, 2, 3}, default=1
        Hidden layers of the auxiliary problems.

    Returns
    -------
    params : dict
        Keyword arguments for :class:`GreedyLayerwiseCNNClassifier`.

    Examples
    --------
    >>> from sklearn_greedy import GreedyLayerwiseCNNClassifier, cifar10_params
    >>> clf = GreedyLayerwiseCNNClassifier(**cifar10_params(k=3))
    >>> clf.n_layers, clf.width, clf.k
    (4, 128, 3)
    """
    if k not in (1, 2, 3):
        raise ValueError(f"The paper gives CIFAR-10 settings for k in (1, 2, 3), got k={k!r}.")
    common = dict(
        k=k,
        downsample="invertible",
        input_downsample=False,
        max_epochs=50,
        batch_size=128,
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        lr_decay=0.2,
        lr_step=15,
        augment=True,
        image_shape=(3, 32, 32),
    )
    if k == 1:
        return dict(common, n_layers=5, width=256, downsample_at=(2, 3), batch_norm=False)
    return dict(common, n_layers=4, width=128, aux_width=128, downsample_at=(2,), batch_norm=True)
