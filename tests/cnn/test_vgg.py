"""The greedy VGG-11 variant (Sec. 4.3): max-pooling, full-size input, k=3 auxiliaries at
half resolution, VGG's classifier as the last auxiliary; the assembled network is VGG-11."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn

from sklearn_greedy import GreedyLayerwiseCNNClassifier
from sklearn_greedy.cnn._vgg import (
    VGG11_CONFIG,
    PooledAuxiliaryClassifier,
    VGGClassifier,
    vgg11_params,
    vgg11_state_dict,
)

SCALED_CONFIG = tuple(v if v == "M" else v // 16 for v in VGG11_CONFIG)  # 4, M, 8, M, ...


class _TorchvisionLayoutVGG(nn.Module):
    """torchvision.models.vgg.VGG as torchvision builds it (``make_layers``, ``avgpool``,
    ``classifier``), at any widths: the target layout when torchvision is absent."""

    def __init__(self, cfg, batch_norm, n_classes, hidden):
        super().__init__()
        layers, channels = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers.append(nn.Conv2d(channels, v, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            channels = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(),
            nn.Linear(hidden, n_classes),
        )  # fmt: skip

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _cifar_like(n=24, n_classes=3, seed=0):
    rng = np.random.RandomState(seed)
    y = np.arange(n) % n_classes
    X = rng.normal(size=(n, 3, 32, 32)).astype(np.float32)
    X[np.arange(n), y % 3] += 1.0
    return X, y


def _scaled(**params):
    """vgg11_params(batch_norm=False) (plain VGG-11) at 1/16 of the widths, one epoch."""
    vgg = vgg11_params(batch_norm=False)
    vgg.update(width=4, max_width=32, aux_width=8, final_aux_width=16, max_epochs=1,
               batch_size=12, lr=0.01, random_state=0)  # fmt: skip
    return GreedyLayerwiseCNNClassifier(**{**vgg, **params})


@pytest.fixture(scope="module")
def fitted():
    return _scaled().fit(*_cifar_like())


def _config_of(plan):
    cfg = []
    for spec in plan:
        if spec.downsample == "max":
            cfg.append("M")
        cfg.append(spec.out_channels)
    return tuple(cfg) + ("M",)  # the final auxiliary's max-pooling


def test_preset_plan_is_vgg11():
    assert vgg11_params()["batch_norm"] is True and vgg11_params(False)["batch_norm"] == "aux"
    clf = GreedyLayerwiseCNNClassifier(**vgg11_params())
    plan, trained = clf._checked_plan((3, 224, 224))
    assert _config_of(plan) == VGG11_CONFIG
    assert trained == [spec.out_channels for spec in plan]
    assert [spec.aux_width for spec in plan] == [128, 256, 512, 512, 1024, 1024, 1024, 4096]


def test_fitted_layer_shapes_follow_the_vgg11_configuration(fitted):
    assert _config_of(fitted.layer_specs_) == SCALED_CONFIG
    sides = [32, 16, 8, 8, 4, 4, 2, 2]  # full size input, halved by each max-pooling
    widths = [4, 8, 16, 16, 32, 32, 32, 32]
    assert fitted.layer_shapes_ == [(w, s, s) for w, s in zip(widths, sides)]
    for layer in fitted.model_.layers:
        assert isinstance(layer.downsample, (nn.Identity, nn.MaxPool2d))
        assert isinstance(layer.bn, nn.Identity)  # batch_norm="aux": VGG-11 has none


def test_auxiliaries_run_at_half_resolution_and_the_last_is_vggs_classifier(fitted):
    X, _ = _cifar_like(4)
    heads = fitted.model_.heads
    assert all(isinstance(h, PooledAuxiliaryClassifier) for h in heads[:-1])
    assert all(len(h.hidden) == 2 * 3 for h in heads[:-1])  # k=3: two conv + BN + ReLU
    assert heads[0].hidden[0].out_channels == 8  # twice the layer's width
    seen = {}
    hook = heads[0].hidden[0].register_forward_hook(lambda m, i, o: seen.update(shape=i[0].shape))
    fitted.predict(X[:2])
    hook.remove()
    assert tuple(seen["shape"][1:]) == (4, 16, 16)  # layer 1's 32x32 output, halved
    last = heads[-1]
    assert isinstance(last, VGGClassifier)
    assert [m.out_features for m in last.classifier if isinstance(m, nn.Linear)] == [16, 16, 3]


@pytest.mark.parametrize("batch_norm", [False, True])
def test_to_torch_loads_into_the_torchvision_layout(batch_norm):
    X, y = _cifar_like()
    clf = _scaled(batch_norm=True if batch_norm else "aux").fit(X, y)
    network = clf.to_torch().eval()
    target = _TorchvisionLayoutVGG(SCALED_CONFIG, batch_norm, n_classes=3, hidden=16).eval()
    target.load_state_dict(vgg11_state_dict(network), strict=True)
    x = torch.from_numpy(X[:5])
    with torch.no_grad():
        torch.testing.assert_close(target(network.stem(x)), network(x))


@pytest.mark.parametrize("batch_norm, name", [(False, "vgg11"), (True, "vgg11_bn")])
def test_loads_into_torchvision_vgg11(batch_norm, name):
    models = pytest.importorskip("torchvision.models")
    X, y = _cifar_like(n=8, n_classes=8)
    params = dict(vgg11_params(batch_norm), max_epochs=1, batch_size=8, lr=0.01, random_state=0)
    clf = GreedyLayerwiseCNNClassifier(**params).fit(X, y)
    network = clf.to_torch().eval()
    target = getattr(models, name)(num_classes=8).eval()
    target.load_state_dict(vgg11_state_dict(network), strict=True)
    x = torch.from_numpy(X[:2])
    with torch.no_grad():
        torch.testing.assert_close(target(network.stem(x)), network(x))


def test_state_dict_refuses_other_networks():
    clf = GreedyLayerwiseCNNClassifier(n_layers=1, width=2, max_epochs=1).fit(*_cifar_like())
    with pytest.raises(ValueError, match="VGGClassifier"):
        vgg11_state_dict(clf.to_torch())


def test_widths_are_capped_and_validated():
    X, y = _cifar_like()
    clf = GreedyLayerwiseCNNClassifier(n_layers=3, width=4, max_width=6, downsample_at=(1, 2),
                                       max_epochs=1, random_state=0).fit(X, y)  # fmt: skip
    assert clf.layer_widths_ == [4, 6, 6]
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="max_width"):
            clone(clf).set_params(max_width=bad).fit(X, y)
    with pytest.raises(ValueError, match="aux_downsample"):
        clone(clf).set_params(aux_downsample="bilinear").fit(X, y)
    with pytest.raises(ValueError, match="final_aux"):
        clone(clf).set_params(final_aux="resnet").fit(X, y)


def test_pickle_clone_refit_and_warm_start_refusal(fitted):
    X, y = _cifar_like()
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
    assert clone(fitted).get_params()["final_aux"] == "vgg"
    restored.refit_final_head(X, y, final_aux_width=8)  # VGG's hidden width, Table 1 style
    assert restored.model_.heads[-1].classifier[0].out_features == 8
    with pytest.raises(ValueError, match="cannot change max_width"):
        restored.set_params(warm_start=True, n_layers=9, max_width=64).fit(X, y)
