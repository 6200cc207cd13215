"""The papers' settings for :class:`~sklearn_greedy.GreedyLayerwiseCNNClassifier`, one call each."""

from __future__ import annotations

# CIFAR-10 per-channel mean and std of the reference code's Normalize, in pixel units
# (0-255) since the estimator standardises the raw images it is given
CIFAR10_MEAN = tuple(255 * m for m in (0.4914, 0.4822, 0.4465))
CIFAR10_STD = tuple(255 * s for s in (0.2023, 0.1994, 0.2010))


def fixed_schedule(
    *, epochs: int, batch_size: int, weight_decay: float, lr_decay: float, lr_step: int,
    lr: float = 0.1,
) -> dict:  # fmt: skip
    """The papers' training recipe: SGD with momentum 0.9 and a step schedule for a fixed
    number of epochs per layer (no plateau stop, the last epoch's weights kept), with
    random crops and flips."""
    return dict(
        max_epochs=epochs, batch_size=batch_size, lr=lr, momentum=0.9,
        weight_decay=weight_decay, lr_decay=lr_decay, lr_step=lr_step, augment=True,
        keep_best=False, n_iter_no_change=epochs,
    )  # fmt: skip


# Sec. 4.3: "We employ widths of M = 128 and M~ = 256 for both CIFAR-10 and ImageNet"
PAPER_AUX_WIDTH = 256
# The authors' public CIFAR-10 script (eugenium/layerCNN) defaults to half of it
REFERENCE_SCRIPT_AUX_WIDTH = 128


def cifar10_params(k: int = 1, *, aux_width: int = PAPER_AUX_WIDTH) -> dict:
    """The paper's CIFAR-10 settings for ``k = 1, 2, 3`` (Sec. 4, 4.3 and reference code).

    SGD with momentum 0.9 and weight decay 5e-4, batch 128, a fixed 50 epochs per layer
    (no plateau stop, the last epoch's weights kept), lr 0.1 divided by 5 at epochs 15,
    30 and 45 with the optimizer re-created at each decay, random crop and flip, and the
    reference code's fixed normalisation constants. ``k=1``: 5 layers of width 256 with
    downsampling at j=2, 3 and no BatchNorm (Sec. 4.2); ``k=2, 3``: 4 layers of width
    M=128, auxiliary width M~=256 (Sec. 4.3), both doubling at the downsampling at j=2,
    BatchNorm. Layerwise compression (``prune_to``, off here) fine-tunes each pruned
    layer's auxiliary network for the paper's 20 epochs (Sec. 4.3).

    Parameters
    ----------
    k : {1, 2, 3}, default=1
        Hidden layers of the auxiliary problems.
    aux_width : int, default=256
        ``M~`` for ``k = 2, 3``: the paper's text gives 256; the authors' public script
        defaults to 128 (``REFERENCE_SCRIPT_AUX_WIDTH``), which halves the cost of each
        auxiliary convolution. Unused for ``k=1``.

    Returns
    -------
    params : dict
        Keyword arguments for :class:`GreedyLayerwiseCNNClassifier`.

    Examples
    --------
    >>> from sklearn_greedy import GreedyLayerwiseCNNClassifier, cifar10_params
    >>> clf = GreedyLayerwiseCNNClassifier(**cifar10_params(k=3))
    >>> clf.n_layers, clf.width, clf.aux_width, clf.k, clf.max_epochs
    (4, 128, 256, 3, 50)
    >>> cifar10_params(k=3, aux_width=128)["aux_width"]  # the authors' script
    128
    """
    if k not in (1, 2, 3):
        raise ValueError(f"The paper gives CIFAR-10 settings for k in (1, 2, 3), got k={k!r}.")
    common = dict(
        fixed_schedule(epochs=50, batch_size=128, weight_decay=5e-4, lr_decay=0.2, lr_step=15),
        k=k,
        downsample="invertible",
        input_downsample=False,
        normalize=(CIFAR10_MEAN, CIFAR10_STD),
        image_shape=(3, 32, 32),
        prune_epochs=20,
    )
    if k == 1:
        return dict(common, n_layers=5, width=256, downsample_at=(2, 3), batch_norm=False)
    return dict(
        common, n_layers=4, width=128, aux_width=aux_width, downsample_at=(2,), batch_norm=True
    )


# ImageNet per-channel mean and std (torchvision's), in pixel units (0-255)
IMAGENET_MEAN = tuple(255 * m for m in (0.485, 0.456, 0.406))
IMAGENET_STD = tuple(255 * s for s in (0.229, 0.224, 0.225))


def imagenet_params(k: int = 1) -> dict:
    """The paper's ImageNet settings for ``k = 1, 2, 3`` (Sec. 4, 4.1, 4.3, Tables 4-5).

    Images of 3x224x224 (resize them first, e.g. ``ImageFolderDataset(size=(224, 224))``)
    go through an invertible downsampling to 12x112x112. SGD with momentum 0.9, weight
    decay 1e-4, batch 256, lr 0.1 divided by 10 every 20 epochs, 45 epochs per layer
    (no plateau stop, the last epoch's weights kept), random crops and flips.
    ``k=1``: J=8 layers of width M=256 doubling at the downsamplings at j=2, 3, 4, 6
    (to 4096), no BatchNorm (Table 5). ``k=2, 3``: J=8 layers of width 128 doubling at
    j=2, 4, 6 (to 1024), auxiliary width M~=256, final auxiliary width M~_f=2048,
    BatchNorm (Table 4). History records top-5 accuracy, the paper's ImageNet metric.

    Training batches get the reference ImageNet augmentation, random resized crops
    (8-100 % of the area, aspect 3/4-4/3) and flips (``augment="resized-crop"``); test
    images are resized to 256 and centre-cropped to 224, as the paper's Sec. 4.1 says:
    ``ImageFolderDataset(root, split="val", size=256, center_crop=224)``.

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
    >>> from sklearn_greedy import GreedyLayerwiseCNNClassifier, imagenet_params
    >>> clf = GreedyLayerwiseCNNClassifier(**imagenet_params(k=1))
    >>> clf.n_layers, clf.width, clf.downsample_at, clf.batch_size, clf.max_epochs
    (8, 256, (2, 3, 4, 6), 256, 45)
    """
    if k not in (1, 2, 3):
        raise ValueError(f"The paper gives ImageNet settings for k in (1, 2, 3), got k={k!r}.")
    common = dict(
        fixed_schedule(epochs=45, batch_size=256, weight_decay=1e-4, lr_decay=0.1, lr_step=20),
        k=k,
        n_layers=8,
        downsample="invertible",
        input_downsample=True,
        normalize=(IMAGENET_MEAN, IMAGENET_STD),
        image_shape=(3, 224, 224),
        augment="resized-crop",
    )
    if k == 1:
        return dict(common, width=256, downsample_at=(2, 3, 4, 6), batch_norm=False)
    return dict(
        common, width=128, aux_width=256, final_aux_width=2048, downsample_at=(2, 4, 6),
        batch_norm=True,
    )  # fmt: skip
