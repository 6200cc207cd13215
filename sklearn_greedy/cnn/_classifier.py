"""The greedy layerwise CNN classifier (Belilovsky, Eickenberg and Oyallon, ICML 2019).

The estimator reads top to bottom: its parameters; :meth:`~GreedyLayerwiseCNNClassifier.fit`,
which validates the input (``_inputs``), plans the network (``_modules``, ``_vgg``,
``_compression``) and hands the plan, the data and a training configuration to a
:class:`~sklearn_greedy.cnn._grower.LayerGrower`, which trains one engine stage per layer
(``sklearn_greedy.training``); ``partial_fit`` and ``refit_final_head``, which drive the
same grower; then what a fitted network answers: predictions, per-layer features and
exports.
"""

from __future__ import annotations

import copy
import numbers
import os
import warnings
from dataclasses import replace
from numbers import Integral, Real

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._validation import (
    POSITIVE_INT,
    IntInterval,
    check_compile,
    check_downsample_at,
    check_layer,
    check_min_samples,
    check_pool,
    check_training_weights,
    encode_classes,
    partial_classes,
)
from ..training._augment import make_augment
from ..training._checkpoint import data_digest, resume_fit
from ..training._distributed import distributed_world_size, is_main_rank
from ..training._engine import (
    TrainingConfig,
    batched_apply,
    previous_stage_results,
    stage_diagnostics,
)
from ..training._runtime import (
    PRECISIONS,
    base_seed,
    estimator_runtime,
    inference_device,
    resolve_device,
    resolve_precision,
    restore_on_failure,
    torch_seeded,
)
from ..training._spawn import check_devices, fit_on_devices
from ..training._streaming import PREFIX_CACHES, is_dataset
from ._compression import network_size, prune_targets, pruned_plan
from ._grower import LayerGrower, StepBuilder
from ._inputs import (
    as_source,
    fit_input,
    input_stats,
    labelled_input,
    loader_options,
    predict_input,
    prefix_cache_for,
    stage_data,
)
from ._modules import (
    DOWNSAMPLE_KINDS,
    GreedyCNN,
    layer_feature_names,
    layer_plan,
    make_stem,
    reset_parameters,
)
from ._network import (
    GrowingNetwork,
    accuracy,
    check_plan,
    check_warm_start,
    ensemble_logits,
    layer_shapes,
    values_per_sample,
)
from ._vgg import cap_widths

# VGG's hidden fully connected width, the final auxiliary's when final_aux="vgg"
VGG_HIDDEN = 4096
# Largest layer output (numbers) of one evaluation batch: 256 MiB of float32
_EVAL_VALUES = 2**26

# Parameters that shape the network: a warm start must keep them, since the fitted
# layers were built with them.
_ARCHITECTURE = (
    "k", "width", "aux_width", "downsample", "input_downsample", "normalize", "max_width",
    "aux_downsample",
)  # fmt: skip

# Parameters that do not change what a layer learns: a fit may resume from the layers
# of ``checkpoint_dir`` with other values of these (another device or thread count).
_NOT_FINGERPRINTED = (
    "verbose", "n_threads", "num_workers", "pin_memory", "prefetch_factor", "device",
    "transform_layer", "ensemble", "warm_start", "deterministic", "channels_last", "compile",
    "timeout",
)  # fmt: skip


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
        final model (with ``final_aux="vgg"``: its hidden width, None for 4096). None
        follows ``aux_width``. :meth:`refit_final_head` changes it after a fit.
    final_aux : {"conv", "vgg"}, default="conv"
        The last auxiliary: like the others, or VGG's classifier (max-pool, 7x7 average,
        two hidden fully connected layers); see :func:`vgg11_params`.
    max_width : int or None, default=None
        Cap on the layers' widths as they double (VGG: 512); the auxiliary widths keep
        their ratio to their layer's width.
    aux_downsample : {"avg", "max"} or None, default=None
        2x2 pooling before the auxiliary convolutions (VGG-11 variant, Sec. 4.3).
    downsample : {"invertible", "avg", "max", "strided"}, default="invertible"
        The downsampling operator ``P_j``: invertible 2x2 space-to-depth (Dinh et al.,
        2017), average pooling, max pooling, or a stride-2 convolution (App. C.1).
    downsample_at : tuple of int or "auto", default="auto"
        Indices ``j`` (0-based, the paper's ``P_j``) of the layers that begin with a
        downsampling, each below ``n_layers``; each halves the image side, so there can
        be at most ``ceil(log2(side))`` of them. "auto" downsamples at the second layer
        (``(1,)``) when there is one.
    input_downsample : bool, default=False
        Apply an invertible downsampling to the input image first (Fig. 1).
    batch_norm : bool or "auto", default="auto"
        BatchNorm after each convolution and before the heads' linear layer. "auto"
        follows the paper: off for ``k=1``, on for ``k>1``; "aux": in the heads only.
    prune_to : int, float, list or None, default=None
        Layerwise compression (Sec. 4.3): right after training, each layer keeps this many
        filters (a float: this fraction of its width; a list: an int or None per layer),
        ranked by the Taylor criterion of Molchanov et al. (2016); its auxiliary head is
        then fine-tuned and the next layer built on the reduced width. See ``pruning_``.
    prune_epochs : int or None, default=None
        Epochs of that fine-tuning (paper: 20, as :func:`cifar10_params` sets); None uses
        ``max_epochs``.
    prune_rounds : int, default=1
        Prune in this many rounds instead of at once, as Molchanov et al. (2016) do: each
        round ranks the remaining filters again, prunes to a width between the trained
        and the target one (geometrically spaced) and fine-tunes the head on its share of
        ``prune_epochs`` (the last rounds take the remainder). 1 is the one-shot pruning
        of the paper's Sec. 4.3; ``pruning_`` records each round.
    training : {"sequential", "decoupled"}, default="sequential"
        "decoupled" trains all layers at once on the same batches, each with its own loss
        and optimizer and its input detached (Belilovsky et al., 2020); keep-best and
        early stopping then follow the last layer and act on all together; an interrupt
        keeps the previous model. A warm start trains the new layers together.
    decoupled_delay : int, default=0
        With ``training="decoupled"``, the epochs between the starts of consecutive
        layers: layer ``j`` trains ``max_epochs`` epochs from epoch ``j * decoupled_delay``
        on its own schedule, then runs frozen under the layers above, in a run of
        ``max_epochs + (n_layers - 1) * decoupled_delay`` epochs. 0 trains all layers at
        once, as the paper does; ``max_epochs`` (or more) trains them one after the
        other, as sequential training does but without its cached prefix. A delay in
        between lets each layer start on settled inputs and end on frozen ones, while the
        data is still read and augmented once for all layers: deep stacks on small epoch
        budgets lose less against sequential training (``benchmarks/RESULTS.md``).
        Keep-best and early stopping follow the last layer from its first epoch. Ignored
        in sequential training.
    max_epochs : int, default=12
        Epochs per layer.
    batch_size : int, default=64
        Minibatch size (at least 2 with BatchNorm).
    lr : float, default=0.1
        Initial SGD learning rate of each layer.
    momentum : float, default=0.9
        SGD momentum.
    weight_decay : float, default=5e-4
        L2 penalty.
    lr_decay : float, default=0.2
        Factor applied to the learning rate every ``lr_step`` epochs; as in the paper's
        reference code, the optimizer (and its momentum) restarts at each decay.
    lr_step : int or None, default=5
        Epochs between learning-rate decays; None keeps ``lr`` constant.
    augment : bool, "crop", "flip", "resized-crop" or "auto", default="auto"
        Random crop (zero padding by an eighth of the image side: 4 pixels at 32x32, as in
        the paper's CIFAR-10 runs) and horizontal flip of the training batches. "auto"
        crops images of at least 16x16 pixels and flips colour ones (natural images;
        digits and characters are not mirror invariant). "resized-crop" is the ImageNet
        recipe: random boxes of 8-100 % of the area and aspect 3/4-4/3, resized back to
        the image size, and flips (:func:`~sklearn_greedy.nn.augment_resized_crop`).
        Without augmentation each layer's input is computed once and cached.
    normalize : "data" or (mean, std), default="data"
        Input standardisation: per-channel mean and std of the training images, or fixed
        per-channel values in the units of X (the paper's CIFAR constants in
        :func:`cifar10_params`). With "data", a streamed X (a data set, a memmap) is read
        once more before training to compute them exactly, as from the array it holds;
        give known values (ImageNet's, for example) to skip that pass.
    ensemble : bool, default=False
        Predict with the ensemble ``Z = sum_j 2^j z_j`` of all layers' auxiliary logits
        instead of the last layer's.
    keep_best : bool, default=True
        Keep each layer's best parameters along its training trajectory (the
        requirement of Prop. 3.1): the best validation accuracy when there is
        validation data, the lowest training loss otherwise.
    early_stopping : bool, default=False
        Stop a layer when its validation accuracy has not improved by ``tol`` for
        ``n_iter_no_change`` epochs. The validation data is ``X_val, y_val`` given to
        :meth:`fit`, or else ``validation_fraction`` of the training data (stratified
        when every class has two samples). Without it, a layer stops when its training
        loss has not improved for ``n_iter_no_change`` epochs.
    validation_fraction : float, default=0.1
        Fraction of the training data held out with ``early_stopping``.
    n_iter_no_change : int, default=10
        Epochs without improvement before a layer stops.
    tol : float, default=1e-4
        Improvement below which an epoch counts as no improvement.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the loss, as in scikit-learn's classifiers; multiplied
        with ``sample_weight``.
    image_shape : tuple of int (C, H, W) or None, default=None
        Shape of one image when X is 2-D ``(n, C*H*W)``. A 2-D X without it is read as
        ``n_features`` channels of a 1x1 image (a greedily trained MLP); a 3-D X
        ``(n, H, W)`` as one-channel images.
    channels : {"auto", "first", "last"}, default="auto"
        Layout of 4-D images: ``"first"`` reads ``(n, C, H, W)``, ``"last"`` reads
        ``(n, H, W, C)`` (PIL, OpenCV, TensorFlow data sets) and transposes it. ``"auto"``
        reads channels-first unless the last axis is 1, 3 or 4 after two axes larger
        than 4, which it reads as channels-last with a warning at fit (predict reads the
        layout fit saw). A data set's items must be channels-first: one whose first image
        looks channels-last is refused with the fix.
    transform_layer : int or None, default=None
        Layer whose representation :meth:`transform` returns: 1-based like the paper's
        ``x_j``, negative counts from the end (``-1`` is the last), None for the last.
    prefix_cache : {"auto", "device", "host", "disk"} or None, default="auto"
        Without augmentation, where each trained layer's output is kept for the next
        layer (computed once, from the kept output of the layer below): on the device,
        in host memory or a temporary memmap (float16), or nowhere (None: the frozen
        layers rerun on every batch). "auto" is "device" for arrays, None for streams.
        On several devices each rank computes and keeps the outputs of its share of the
        rows, and trains on the rows of each batch it holds.
    num_workers, pin_memory, prefetch_factor : int, bool, int
        DataLoader settings when X is a data set, defaults 0, True (on CUDA) and 2.
    device : str, torch.device or list of str, default="auto"
        Where to train: "auto" uses CUDA when present. A list (``["cuda:0", "cuda:1"]``)
        trains each layer data-parallel on those devices, one process each, started by
        torch's own launcher (``torch.distributed.elastic``, as ``torchrun``; ``batch_size``
        is the global batch); under ``torchrun``, pass each process's own device instead.
    precision : {"auto", "float32", "tf32", "bf16", "fp16"}, default="auto"
        Arithmetic of training: float32, TF32 matmuls on CUDA, bf16 autocast, or float16
        autocast with loss scaling (``torch.amp.GradScaler``: for GPUs without bf16, such
        as the V100 and T4). "auto" is TF32 on CUDA and float32 elsewhere. Set for this
        estimator's fit only.
    channels_last : bool, default=False
        Run the layers on channels-last tensors (NHWC in memory), the layout oneDNN's
        CPU convolutions and cuDNN's tensor cores are fastest in: on the 2-core CPU the
        frozen layers' forward passes ran 1.2-1.7x faster; on an H200, with
        ``precision="bf16"``, stages of ``cifar10_params(3)`` trained 1.4-1.8x faster
        than in TF32 without it (``benchmarks/RESULTS.md``). The model is the same up to
        rounding; the stored weights keep their layout, so
        a model fitted either way predicts and exports alike.
    compile : bool or dict, default=False
        Train each stage through ``torch.compile`` (its layer and auxiliary head, once per
        stage; the frozen layers and evaluation passes run as they are): True with
        torch's defaults, or a dict of ``torch.compile``'s keyword arguments, such as
        ``{"mode": "max-autotune"}`` or ``{"backend": "aot_eager"}``. Compiling costs
        seconds to minutes per stage; with the default mode it did not speed up the
        convolution-bound stages of ``cifar10_params(3)`` on an H200 (6-20 % slower,
        ``benchmarks/RESULTS.md``). The model is the same up to rounding.
    timeout : float or None, default=None
        Seconds a fit on several devices (a ``device`` list) may take, its processes'
        start included: past it they stop, a collective waiting on a stuck process gives
        up, and ``fit`` raises an error, the estimator left as it was (each process keeps
        the limit as a SIGALRM timer: Linux and macOS). None: no limit. A fit on one
        device runs in this process, which the caller can interrupt, and ignores it.
    deterministic : bool, default=False
        Ask torch for deterministic algorithms during fit (CUDA: no cuDNN autotuning).
        CPU training is deterministic for a fixed ``random_state`` either way.
    n_threads : int or None, default=None
        Torch CPU threads during fit and predict (the process's setting is restored
        afterwards). None picks one thread for small models, where it is fastest, and
        torch's default otherwise.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling, augmentation and the validation split.
    verbose : int, default=0
        1 prints one line per layer; 2 also shows each epoch (a tqdm bar when installed).
    checkpoint_dir : str, path-like or None, default=None
        A directory where each finished layer is written at once; ``fit`` with the same
        directory, data and parameters continues after the last finished layer (rerun
        the same cell or command after a crash, a kill or a time limit), and ends equal
        to the uninterrupted fit. A directory holding layers of another fit (other
        parameters or data, another library or torch version), or an altered file, is
        refused with an error naming what differs. Writes are atomic and loading reads
        tensors only (``torch.load(weights_only=True)``). Parameters that do not change
        what a layer learns (``device``, ``n_threads``, ``verbose``, loader settings,
        ``ensemble``, ``transform_layer``) may differ on resume; with ``random_state``
        None the seed of the first run is reused. A data-parallel fit writes from rank 0
        and resumes on any number of devices. Decoupled training has no finished layer
        before its end: it writes all layers when its run ends, and an interrupted
        decoupled run starts again. The fitted estimator does not need the directory.
    warm_start : bool, default=False
        Keep the layers of the previous fit and train only the new ones when
        ``n_layers`` grew. Training settings (epochs, learning rate, batch size,
        augmentation, early stopping, device, random_state for the new layers) may change;
        the architecture (``k``, ``width``, ``aux_width``, ``batch_norm``,
        ``downsample``, ``input_downsample``, ``normalize``, the fitted layers' part of
        ``downsample_at``), the image shape and the classes may not (ValueError).
        With nothing left to train, fit warns and keeps the model.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Number of features ``C*H*W`` seen in fit.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        Names of the features seen in fit, when X had string column names.
    image_shape_ : tuple of int
        Shape (C, H, W) of the images seen in fit.
    channels_last_input_ : bool
        Whether fit read X as channels-last and transposed it (see ``channels``).
    n_layers_fitted_ : int
        Number of trained layers (fewer than ``n_layers`` after an interrupted fit).
    model_ : torch.nn.Module
        The trained input stem, layers and auxiliary heads.
    layer_widths_ : list of int
        Output width of each trained layer.
    layer_shapes_ : list of tuple of int
        Shape (C, h, w) of one sample after each layer.
    history_ : list of list of dict
        For each layer, one record per epoch: ``epoch``, ``train_loss``, ``train_score``
        (accuracy on the augmented training batches), ``valid_score``, ``lr``,
        ``seconds``; with more than 5 classes also ``train_top5`` and ``valid_top5``.
    n_iter_ : ndarray of shape (``n_layers_fitted_``,)
        Epochs run by each layer.
    loss_curve_ : list of list of float
        Mean training loss of each epoch, per layer.
    best_epoch_ : ndarray of shape (``n_layers_fitted_``,)
        The epoch whose parameters each layer kept.
    stopped_early_ : ndarray of bool of shape (``n_layers_fitted_``,)
        Whether each layer ended on the plateau rule before ``max_epochs``.
    layer_scores_ : ndarray of shape (``n_layers_fitted_``,)
        Training accuracy of each layer's auxiliary classifier, in eval mode on the
        training data without augmentation.
    pruning_ : list of dict or None
        Per layer, None or its compression: ``trained_width``, ``kept_channels`` (among
        the trained filters), ``scores`` (Taylor, of the trained filters), ``score_before``
        and ``score_pruned`` (training accuracy of its head before and right after the
        first pruning), the fine-tuning ``history`` of all rounds, and ``rounds``: per
        round its ``width``, ``scores``, ``score_pruned`` and ``history``.
    final_refit_ : dict
        Set by :meth:`refit_final_head`: ``(before, after)`` pairs.
    device_ : torch.device
        Device the model was trained on.
    precision_ : str
        The arithmetic the layers were trained in ("float32", "tf32" or "bf16"; "auto"
        resolved for ``device_``).

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
    >>> clf = GreedyLayerwiseCNNClassifier(image_shape=(1, 8, 8), width=32, random_state=0)
    >>> clf.fit(X[:1200], y[:1200]).score(X[1200:], y[1200:]) > 0.9
    True
    >>> clf.n_layers_fitted_, clf.transform(X[:5]).shape
    (3, (5, 256))
    """

    _parameter_constraints: dict = {
        "n_layers": [Interval(Integral, 1, None, closed="left")],
        "k": [Interval(Integral, 1, None, closed="left")],
        "width": [Interval(Integral, 1, None, closed="left")],
        "aux_width": [Interval(Integral, 1, None, closed="left"), None],
        "final_aux_width": [Interval(Integral, 1, None, closed="left"), None],
        "downsample": [StrOptions(set(DOWNSAMPLE_KINDS))],
        "downsample_at": ["array-like", StrOptions({"auto"})],
        "input_downsample": ["boolean"],
        "batch_norm": ["boolean", StrOptions({"auto", "aux"})],
        "final_aux": [StrOptions({"conv", "vgg"})],
        "max_width": [POSITIVE_INT, None],
        "aux_downsample": [StrOptions({"avg", "max"}), None],
        "prune_to": [POSITIVE_INT, Interval(Real, 0, 1, closed="right"), "array-like", None],
        "prune_epochs": [IntInterval(0, None, closed="left"), None],
        "prune_rounds": [Interval(Integral, 1, None, closed="left")],
        "training": [StrOptions({"sequential", "decoupled"})],
        "decoupled_delay": [Interval(Integral, 0, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "lr_decay": [Interval(Real, 0, 1, closed="right")],
        "lr_step": [Interval(Integral, 1, None, closed="left"), None],
        "augment": ["boolean", StrOptions({"auto", "crop", "flip", "resized-crop"})],
        "normalize": [StrOptions({"data"}), tuple, list],
        "ensemble": ["boolean"],
        "keep_best": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "image_shape": ["array-like", None],
        "channels": [StrOptions({"auto", "first", "last"})],
        "transform_layer": [Integral, None],
        "prefix_cache": [StrOptions({"auto", *PREFIX_CACHES}), None],
        "num_workers": [Interval(Integral, 0, None, closed="left")],
        "pin_memory": ["boolean"],
        "prefetch_factor": [Interval(Integral, 1, None, closed="left")],
        "device": [str, torch.device, list, tuple],
        "precision": [StrOptions(set(PRECISIONS))],
        "channels_last": ["boolean"],
        "compile": ["boolean", dict],
        "timeout": [Interval(Real, 0, None, closed="neither"), None],
        "deterministic": ["boolean"],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "checkpoint_dir": [str, os.PathLike, None],
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
        final_aux="conv",
        max_width=None,
        aux_downsample=None,
        downsample="invertible",
        downsample_at="auto",
        input_downsample=False,
        batch_norm="auto",
        prune_to=None,
        prune_epochs=None,
        prune_rounds=1,
        training="sequential",
        decoupled_delay=0,
        max_epochs=12,
        batch_size=64,
        lr=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        lr_decay=0.2,
        lr_step=5,
        augment="auto",
        normalize="data",
        ensemble=False,
        keep_best=True,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-4,
        class_weight=None,
        image_shape=None,
        channels="auto",
        transform_layer=None,
        prefix_cache="auto",
        num_workers=0,
        pin_memory=True,
        prefetch_factor=2,
        device="auto",
        precision="auto",
        channels_last=False,
        compile=False,
        timeout=None,
        deterministic=False,
        n_threads=None,
        random_state=None,
        verbose=0,
        checkpoint_dir=None,
        warm_start=False,
    ):
        self.n_layers = n_layers
        self.k = k
        self.width = width
        self.aux_width = aux_width
        self.final_aux_width = final_aux_width
        self.final_aux = final_aux
        self.max_width = max_width
        self.aux_downsample = aux_downsample
        self.prune_to = prune_to
        self.prune_epochs = prune_epochs
        self.prune_rounds = prune_rounds
        self.training = training
        self.decoupled_delay = decoupled_delay
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
        self.normalize = normalize
        self.ensemble = ensemble
        self.keep_best = keep_best
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.class_weight = class_weight
        self.image_shape = image_shape
        self.channels = channels
        self.transform_layer = transform_layer
        self.prefix_cache = prefix_cache
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.prefetch_factor = prefetch_factor
        self.device = device
        self.precision = precision
        self.channels_last = channels_last
        self.compile = compile
        self.timeout = timeout
        self.deterministic = deterministic
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.checkpoint_dir = checkpoint_dir
        self.warm_start = warm_start

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None, *, X_val=None, y_val=None):
        """Train the layers one after the other.

        Parameters
        ----------
        X : array-like, torch.Tensor, np.memmap or Dataset
            Training images, ``(n_samples, C, H, W)`` or ``(n_samples, n_features)``
            (reshaped with ``image_shape``). A ``np.memmap`` or a map-style
            :class:`torch.utils.data.Dataset` of images or ``(image, label)`` pairs is
            streamed: read batch by batch, never whole.
        y : array-like of shape (n_samples,) or None
            Class labels; None only for a data set of pairs (its ``targets`` attribute,
            when it has one, is read instead of the items).
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sample in the training loss.
        X_val, y_val : array-like or Dataset, default=None
            Validation data for keep-best and early stopping, used instead of a split of
            the training data (as in scikit-learn's HistGradientBoosting).

        Returns
        -------
        self : GreedyLayerwiseCNNClassifier
            The fitted estimator.
        """
        if isinstance(self.device, (list, tuple)):
            return self._fit_on_devices(X, y, sample_weight=sample_weight, X_val=X_val, y_val=y_val)
        with restore_on_failure(self):
            previous = dict(self.__dict__)
            # fitted attributes are assigned together, once every layer is trained
            self.__dict__.update(self._fit(X, y, sample_weight, X_val, y_val, previous))
        return self

    def _fit_on_devices(self, X, y, **fit_params):
        """One process per device of the ``device`` list, each layer trained data-parallel;
        the fitted state of rank 0 comes back (no process group is kept)."""
        if self.training == "decoupled":
            raise ValueError(
                "training='decoupled' trains on one device; pass a single device, or use "
                "training='sequential' to train on several."
            )
        devices = check_devices(self.device)
        fitted = fit_on_devices(self, devices, X, y, timeout=self.timeout, **fit_params)
        self.__dict__.update(fitted.__dict__)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, classes=None, sample_weight=None):
        """Train one more layer on ``X, y``, the layers before it frozen.

        Each call adds the next of the ``n_layers`` layers (the first call builds the
        stem and layer 1), so that incremental drivers (dask-ml's ``Incremental``,
        Hyperband) can give each layer its own chunk of data; the architecture, image shape
        and classes are those of the first call. Once ``n_layers`` are fitted, a call warns
        and trains nothing.

        Parameters
        ----------
        X : array-like, torch.Tensor, np.memmap or Dataset
            Training images, as for :meth:`fit`.
        y : array-like of shape (n_samples,) or None
            Labels, as for :meth:`fit`.
        classes : array-like of shape (n_classes,), default=None
            Every class of the problem, at the first call (a chunk may lack some); later
            calls take the fitted ``classes_``. None uses the classes of ``y``.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sample in the training loss.

        Returns
        -------
        self : GreedyLayerwiseCNNClassifier
            The estimator, one layer deeper.

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn_greedy import GreedyLayerwiseCNNClassifier
        >>> X, y = np.random.RandomState(0).rand(40, 1, 8, 8), np.arange(40) % 2
        >>> clf = GreedyLayerwiseCNNClassifier(n_layers=2, width=4, max_epochs=1)
        >>> clf.partial_fit(X[:20], y[:20]).partial_fit(X[20:], y[20:]).n_layers_fitted_
        2
        """
        with restore_on_failure(self):
            previous = dict(self.__dict__)
            update = self._fit(
                X, y, sample_weight, None, None, previous, partial=True, classes=classes
            )
            self.__dict__.update(update)
        return self

    def _fit(
        self, X, y, sample_weight, X_val, y_val, previous, *, partial=False, classes=None
    ) -> dict:  # fmt: skip
        """The fitted attributes of a fit; with ``partial``, of one more layer (``classes``:
        those of a first ``partial_fit`` call)."""
        fitted = "model_" in previous
        continuing = fitted and (self.warm_start or partial)
        if continuing and partial:  # images like those the layers were fitted on
            X, y, image_shape = labelled_input(self, X, y)
        else:
            X, y, image_shape = fit_input(self, X, y)
        check_min_samples(X)
        if partial:
            classes, y_enc = partial_classes(previous if fitted else None, classes, y)
        else:
            classes, y_enc = encode_classes(y)
        plan, trained = self._checked_plan(image_shape)
        if not partial:
            stop = self.n_layers
        else:
            stop = previous["n_layers_fitted_"] + 1 if continuing else 1
        if continuing:
            check_warm_start(
                previous, classes=classes, image_shape=image_shape, plan=plan,
                architecture=self._architecture(), n_layers=self.n_layers,
            )  # fmt: skip
            if previous["n_layers_fitted_"] >= stop or stop > self.n_layers:
                warnings.warn(
                    f"n_layers={self.n_layers} layers already fitted: nothing to train. Raise "
                    "n_layers to add layers"
                    + ("." if partial else ", or set warm_start=False to refit."),
                    UserWarning,
                    stacklevel=3,
                )
                return {}
        weights = check_training_weights(sample_weight, self.class_weight, X, y_enc, classes)
        device = resolve_device(self.device)
        seed = base_seed(self.random_state)
        store, pieces = None, []
        if self.checkpoint_dir is not None:  # before any training: a bad directory fails now
            store, pieces, seed = self._checkpoints(
                continuing or partial, classes, image_shape, seed, X, y_enc, weights, X_val, y_val
            )  # fmt: skip
        widest = values_per_sample(plan, image_shape, self.input_downsample)
        # read by _eval_batch_size during the fit and after it (kept with the fitted model)
        self._values_per_sample = widest
        data = stage_data(self, X, y_enc, weights, X_val, y_val, classes, image_shape, device, seed)
        if continuing:
            growth = GrowingNetwork.resumed(previous, device, self.channels_last)
        else:
            # every rank of a data-parallel fit runs this: each reads its share of X
            sharded = distributed_world_size() > 1
            mean, std = input_stats(
                self.normalize, data.X, self._eval_batch_size(), sharded=sharded
            )
            stem = make_stem(mean, std, self.input_downsample, data.X.shape[1:])
            growth = GrowingNetwork.fresh(stem, device, self.channels_last)
        grower = self._grower(
            plan, trained, len(classes), seed, image_shape, device, prefix_cache_for(
                self.prefix_cache, X), stop=stop, store=store,
        )  # fmt: skip
        with estimator_runtime(self, device, n_values=self.batch_size * widest):
            if pieces:
                grower.resume(growth, data, pieces)
            grower.grow(growth, data)
        return {
            "classes_": classes,
            "image_shape_": tuple(image_shape),
            "device_": device,
            "precision_": resolve_precision(self.precision, device),
            "model_": growth.model,
            "history_": [r.history for r in growth.results],
            **stage_diagnostics(
                growth.results,
                watch_convergence=self.early_stopping,
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

    def _grower(
        self, plan, trained, n_classes, seed, image_shape, device, prefix_cache, *, stop=None,
        store=None,
    ) -> LayerGrower:  # fmt: skip
        """The grower of a fit: the plan, how each layer step is built, and the engine's
        settings, all from this estimator's parameters."""
        if self.batch_norm == "aux":
            layer_bn, head_bn = False, True
        else:
            layer_bn = head_bn = self._use_batch_norm()
        steps = StepBuilder(self.k, layer_bn, head_bn, self.final_aux, self.aux_downsample)
        verbose = int(self.verbose) if is_main_rank() else 0  # one voice per process group
        config = TrainingConfig(
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
            verbose=max(verbose - 1, 0),
            eval_batch_size=self._eval_batch_size(),
            precision=resolve_precision(self.precision, device),
            prefix_cache=prefix_cache,
            top_k=5 if n_classes > 5 else None,
            compile=check_compile(self.compile),
        )
        return LayerGrower(
            plan, trained=trained, n_classes=n_classes, steps=steps, config=config, seed=seed,
            augment=make_augment(self.augment, image_shape), device=device,
            n_layers=self.n_layers, stop=stop, training=self.training,
            decoupled_delay=self.decoupled_delay,
            prune_epochs=self.max_epochs if self.prune_epochs is None else self.prune_epochs,
            prune_rounds=self.prune_rounds, store=store, verbose=verbose,
        )  # fmt: skip

    def _checkpoints(self, continuing, classes, image_shape, seed, X, y, weights, X_val, y_val):
        """The checkpoint store of this fit, the finished layers it holds and the seed to
        train with (see :func:`~sklearn_greedy.training._checkpoint.resume_fit`)."""
        y_val = None if y_val is None else np.asarray(y_val)
        facts = {
            "classes": classes, "image_shape": image_shape, "n_samples": len(X),
            "digest": data_digest(X, y, weights, X_val, y_val),
        }  # fmt: skip
        store, pieces, seed = resume_fit(
            self, seed, continuing="warm_start and partial_fit continue" if continuing else None,
            kind="layer", ignore=_NOT_FINGERPRINTED, data=facts,
        )  # fmt: skip
        if self.training == "decoupled" and len(pieces) < self.n_layers:
            # the layers of an unfinished decoupled run are not finished pieces
            store.discard_from(0)
            pieces = []
        return store, pieces, seed

    def _checked_plan(self, image_shape):
        """The network's layer plan, refused before training when it cannot work."""
        check_layer(self.transform_layer, self.n_layers, name="transform_layer")
        downsample_at = check_downsample_at(self.downsample_at, self.n_layers)
        if self._use_batch_norm() and self.batch_size < 2:
            raise ValueError(
                f"batch_size={self.batch_size} cannot train with BatchNorm (batch_norm="
                f"{self.batch_norm!r}, k={self.k}): it needs at least 2 samples per batch."
            )
        in_channels = image_shape[0] * (4 if self.input_downsample else 1)
        plan = layer_plan(
            in_channels, self.n_layers, self.width, self.downsample, downsample_at,
            self.aux_width, self.final_aux_width,
        )  # fmt: skip
        fixed = self.final_aux_width is not None
        plan = cap_widths(plan, self.max_width, fixed_last_aux=fixed)
        if self.final_aux == "vgg" and not fixed:
            plan[-1] = replace(plan[-1], aux_width=VGG_HIDDEN)
        check_plan(plan, image_shape, input_downsample=self.input_downsample)
        trained = [spec.out_channels for spec in plan]
        targets = prune_targets(self.prune_to, trained)
        if self.training == "decoupled" and any(t is not None for t in targets):
            raise ValueError(
                "prune_to needs training='sequential': a layer is pruned before the next "
                "one is built on its reduced width, which decoupled training cannot wait for."
            )
        # the layers' shapes after compression, and the width each is trained at
        return pruned_plan(plan, targets), trained

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
        X, y, image_shape = labelled_input(self, X, y)
        y_enc = np.searchsorted(self.classes_, y).astype(np.int64)
        weights = check_training_weights(sample_weight, self.class_weight, X, y_enc, self.classes_)
        device, seed = resolve_device(self.device), base_seed(self.random_state)
        data = stage_data(
            self, X, y_enc, weights, X_val, y_val, self.classes_, image_shape, device, seed
        )
        j = self.n_layers_fitted_ - 1
        plan = list(self.layer_specs_)
        plan[j] = replace(plan[j], aux_width=final_aux_width)
        trained = [spec.out_channels for spec in plan]
        if self.pruning_[j] is not None:
            trained[j] = self.pruning_[j]["trained_width"]
        grower = self._grower(
            plan, trained, len(self.classes_), seed, image_shape, device,
            prefix_cache_for(self.prefix_cache, X),
        )  # fmt: skip
        old = copy.deepcopy(self.model_).to(device)
        model = copy.deepcopy(old)
        del model.layers[j]
        del model.heads[j]
        widest = max(int(np.prod(shape)) for shape in self.layer_shapes_)
        with estimator_runtime(self, device, n_values=self.batch_size * widest):
            before = self._final_scores(grower, old, data)
            layer, head, result, pruning = grower.train_layer(model, j, data, model.features)
            model.layers.append(layer)
            model.heads.append(head)
            after = self._final_scores(grower, model, data)
        results = previous_stage_results(self.__dict__)[:j] + [result]
        report = {
            "final_aux_width": (self.layer_specs_[j].aux_width, final_aux_width),
            "n_params": (network_size(old), network_size(model)),
            "train_score": (before[0], after[0]),
        }
        if data.has_validation:
            report["valid_score"] = (before[1], after[1])
        return {
            "model_": model,
            "device_": device,
            "precision_": resolve_precision(self.precision, device),
            "history_": [r.history for r in results],
            **stage_diagnostics(
                results, watch_convergence=self.early_stopping, first_new=j, stage_name="Layer"
            ),
            "layer_scores_": np.append(self.layer_scores_[:j], after[0]),
            "layer_specs_": plan,
            "layer_shapes_": layer_shapes(model, image_shape, device),
            "pruning_": list(self.pruning_[:j]) + [pruning],
            "final_refit_": report,
        }

    @staticmethod
    def _final_scores(grower, model, data) -> tuple[float, float | None]:
        """Accuracy of the last head on the training data, and on the validation data."""
        train = grower.layer_accuracy(model, data)
        if not data.has_validation:
            return train, None
        depth, size = len(model.layers), grower.eval_batch_size
        valid = accuracy(
            lambda b: model.head_logits(b, depth), data.X_val, data.y_val, size,
            sharded=grower.sharded,
        )  # fmt: skip
        return train, valid

    # ------------------------------------------------------------------ score
    def score(self, X, y=None, sample_weight=None):
        """Mean accuracy on ``X`` against ``y``.

        Parameters
        ----------
        X : array-like, torch.Tensor, np.memmap or Dataset
            Images, as for :meth:`fit`.
        y : array-like of shape (n_samples,) or None
            True labels; None only for a data set of ``(image, label)`` pairs, whose
            labels must all be among ``classes_``.
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        score : float
            Mean accuracy of ``self.predict(X)``.
        """
        if is_dataset(X) and y is None:
            X, y, _ = labelled_input(self, X, None)
        return super().score(X, y, sample_weight=sample_weight)

    # ------------------------------------------------------------------ predict
    def _prepare(self, X) -> tuple[torch.Tensor, torch.device]:
        """Validated X on the device to predict on (a tensor, or a streaming source), and
        that device."""
        check_is_fitted(self)
        X, _ = predict_input(self, X)
        device = inference_device(self.device_)
        return as_source(X, device, loader_options(self)), device

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
        return estimator_runtime(self, device, n_values=self._eval_batch_size() * widest)

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
            Probability of each class, in the order of ``classes_``.
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
            The class of highest probability, among ``classes_``.
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
            Each channel of layer ``transform_layer`` averaged over the four quarters of
            the image, channel by channel (named by :meth:`get_feature_names_out`).
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
            Channels, height and width.
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
            One name per column of :meth:`transform`'s output.
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
            The stem, the layers and the last auxiliary classifier, on the CPU.
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
            Initialised, ready to ``fit`` or ``partial_fit``.
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

    # ------------------------------------------------------------------ settings
    def _use_batch_norm(self) -> bool:
        return self.k > 1 if self.batch_norm == "auto" else bool(self.batch_norm)

    def _architecture(self) -> dict:
        params = {name: getattr(self, name) for name in _ARCHITECTURE}
        params["batch_norm"] = "aux" if self.batch_norm == "aux" else self._use_batch_norm()
        if params["aux_width"] is None:
            params["aux_width"] = self.width
        return params

    def _eval_batch_size(self) -> int:
        """Batch of the passes without gradients: large, but not so large that one layer's
        output for it holds more than ``_EVAL_VALUES`` numbers (256 MiB of float32)."""
        values = self.__dict__.get("_values_per_sample")
        cap = 1024 if values is None else max(1, _EVAL_VALUES // values)
        return max(self.batch_size, min(1024, cap))


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
    from ._classifier import GreedyLayerwiseCNNClassifier  # here: _cnn imports this module

    if not isinstance(estimator, GreedyLayerwiseCNNClassifier):
        raise TypeError(
            "parameter_count takes a GreedyLayerwiseCNNClassifier, got "
            f"{type(estimator).__name__}; count a torch module's parameters with "
            "sum(p.numel() for p in module.parameters())."
        )
    check_is_fitted(estimator)
    return network_size(estimator.model_)
