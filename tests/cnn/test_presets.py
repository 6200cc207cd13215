"""The papers' presets, value by value, each against the table or sentence it comes from.

Belilovsky, Eickenberg and Oyallon (ICML 2019): Sec. 4 (training protocol), Sec. 4.1 and
4.2 (k=1 networks), Sec. 4.3 (k=2, 3: "M = 128 and M~ = 256 for both CIFAR-10 and
ImageNet"; compression: "fine-tune the auxiliary network ... over 20 epochs"; VGG-11),
Tables 4 and 5 (ImageNet network structures); ``../shared/README.md`` (facts from the
reference code, where the paper is silent).
"""

import pytest

from sklearn_greedy import (
    GreedyLayerwiseCNNClassifier,
    cifar10_params,
    imagenet_params,
    vgg11_params,
)
from sklearn_greedy.cnn._presets import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
)

# (preset, key, value, source)
CASES = [
    # CIFAR-10 training protocol, Sec. 4: "momentum of 0.9 and a batch-size of 128 ... initial
    # learning rate is 0.1 ... decays of 0.2 every 15 epochs ... total of 50 epochs"
    *[(("cifar10", k), key, value, "Sec. 4")
      for k in (1, 2, 3)
      for key, value in [("momentum", 0.9), ("batch_size", 128), ("lr", 0.1),
                         ("lr_decay", 0.2), ("lr_step", 15), ("max_epochs", 50)]],
    # the reference code: weight decay 5e-4, crop + flip, its Normalize constants, the last
    # epoch's weights (no keep-best, no plateau stop)
    *[(("cifar10", k), key, value, "reference code")
      for k in (1, 2, 3)
      for key, value in [("weight_decay", 5e-4), ("augment", True), ("keep_best", False),
                         ("n_iter_no_change", 50), ("input_downsample", False),
                         ("normalize", (CIFAR10_MEAN, CIFAR10_STD))]],
    *[(("cifar10", k), "prune_epochs", 20, "Sec. 4.3, compression") for k in (1, 2, 3)],
    # Sec. 4.2: "J = 5 layers, downsampling at layers j = 2, 3 ... M = 256"; no BatchNorm
    # for k=1 (reference code)
    (("cifar10", 1), "n_layers", 5, "Sec. 4.2"),
    (("cifar10", 1), "width", 256, "Sec. 4.2"),
    (("cifar10", 1), "downsample_at", (2, 3), "Sec. 4.2"),
    (("cifar10", 1), "batch_norm", False, "reference code"),
    # Sec. 4.3: "J = 4 layers and a down-sampling at j = 2", M = 128, M~ = 256, batch-norm
    *[(("cifar10", k), key, value, "Sec. 4.3")
      for k in (2, 3)
      for key, value in [("n_layers", 4), ("width", 128), ("aux_width", 256),
                         ("downsample_at", (2,)), ("batch_norm", True), ("k", k)]],
    # ImageNet protocol, Sec. 4: "weight-decay of 10^-4 for a batch size of 256 ... initial
    # learning rate is 0.1 ... decays of 0.1 every 20 epochs for 45 epochs"; random crops
    *[(("imagenet", k), key, value, "Sec. 4")
      for k in (1, 2, 3)
      for key, value in [("weight_decay", 1e-4), ("batch_size", 256), ("lr", 0.1),
                         ("lr_decay", 0.1), ("lr_step", 20), ("max_epochs", 45),
                         ("momentum", 0.9), ("augment", "resized-crop"),
                         ("input_downsample", True), ("n_layers", 8),
                         ("normalize", (IMAGENET_MEAN, IMAGENET_STD))]],
    # Sec. 4.1 and Table 5: k=1, J=8, M=256, downsampling at j=2, 3, 4, 6, no BatchNorm
    (("imagenet", 1), "width", 256, "Sec. 4.1, Table 5"),
    (("imagenet", 1), "downsample_at", (2, 3, 4, 6), "Sec. 4.1, Table 5"),
    (("imagenet", 1), "batch_norm", False, "Sec. 4.3 ('unlike the k = 1 case')"),
    # Sec. 4.3 and Table 4: k=2, 3, M=128, M~=256, down-samplings at j=2, 4, 6, batch-norm,
    # and the final auxiliary of width M~_f = 2048 (Table 4's caption)
    *[(("imagenet", k), key, value, "Sec. 4.3, Table 4")
      for k in (2, 3)
      for key, value in [("width", 128), ("aux_width", 256), ("final_aux_width", 2048),
                         ("downsample_at", (2, 4, 6)), ("batch_norm", True), ("k", k)]],
    # VGG-11 (Sec. 4.3, the reference code's vgg11_bn and its ImageNet schedule)
    *[(("vgg11", None), key, value, "Sec. 4.3, reference code")
      for key, value in [("n_layers", 8), ("k", 3), ("width", 64), ("max_width", 512),
                         ("downsample", "max"), ("downsample_at", (1, 2, 4, 6)),
                         ("final_aux", "vgg"), ("batch_norm", True),
                         ("aux_downsample", "avg")]],
]  # fmt: skip


def _preset(which):
    name, k = which
    if name == "cifar10":
        return cifar10_params(k)
    if name == "imagenet":
        return imagenet_params(k)
    return vgg11_params()


@pytest.mark.parametrize(
    "which, key, value, source", CASES, ids=[f"{w[0]}{w[1] or ''}-{key}" for w, key, _, _ in CASES]
)
def test_each_preset_value_is_the_papers(which, key, value, source):
    params = _preset(which)
    assert params[key] == value, f"{which} {key}: {params[key]!r}, {source} says {value!r}"


@pytest.mark.parametrize(
    "which, widths, source",
    [
        (("cifar10", 1), [256, 256, 512, 1024, 1024], "Sec. 4.2: doubling at j=2, 3"),
        (("cifar10", 3), [128, 128, 256, 256], "Sec. 4.3"),
        (("imagenet", 1), [256, 256, 512, 1024, 2048, 2048, 4096, 4096], "Table 5"),
        (("imagenet", 3), [128, 128, 256, 256, 512, 512, 1024, 1024], "Table 4"),
        (("vgg11", None), [64, 128, 256, 256, 512, 512, 512, 512], "VGG-11"),
    ],
)
def test_layer_widths_are_the_tables(which, widths, source):
    params = _preset(which)
    est = GreedyLayerwiseCNNClassifier(**params)
    plan, _ = est._checked_plan(params.get("image_shape", (3, 224, 224)))
    assert [spec.out_channels for spec in plan] == widths, source
    if params.get("aux_width") and which[0] != "vgg11":
        # M~ doubles with the layer width, and the last one is M~_f where one is given
        ratio = params["aux_width"] / params["width"]
        expected = [int(w * ratio) for w in widths]
        if params.get("final_aux_width"):
            expected[-1] = params["final_aux_width"]
        assert [spec.aux_width for spec in plan] == expected, source
