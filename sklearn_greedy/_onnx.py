"""Export a fitted greedy CNN or sequential implicit model to ONNX, for runtimes other
than PyTorch.

For the CNN, the exported graph is what :meth:`~GreedyLayerwiseCNNClassifier.decision_function` (or
:meth:`~GreedyLayerwiseCNNClassifier.transform`) computes from images of shape
``(n, *image_shape_)``: the fitted standardisation of the channels included, for any
number ``n`` of samples. Flat rows and channels-last images are reshaped as the estimator
does (``X.reshape(n, *image_shape_)``, ``X.transpose(0, 3, 1, 2)``) before they go in;
uint8 pixels go in as their float32 values, as the estimator reads them. For the
sequential implicit models, it is the exact block-by-block solution of the fixed point
from the exported matrices (``A_``, ``B_``, ``C_``), as ``predict``, ``predict_proba``
and ``transform`` compute it, on float32 rows of ``n_features_in_`` features. (The
end-to-end implicit baseline solves its dense fixed point by iteration to a tolerance and
is not exported.) It is written by torch's exporter
(``torch.onnx.export(..., dynamo=True)``), which needs the ``onnx`` and ``onnxscript``
packages: ``pip install "sklearn-greedy[onnx]"`` (with ``onnxruntime`` to run it).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ._validation import check_layer
from .cnn._network import LayerwiseNetwork, ensemble_logits
from .implicit._model import activation_torch, paper_slices

#: What each kind of estimator exports, its default first.
OUTPUTS = {
    "GreedyLayerwiseCNNClassifier": ("decision_function", "transform"),
    "SequentialImplicitRegressor": ("predict", "transform"),
    "SequentialImplicitClassifier": ("predict_proba", "transform"),
}


class _DecisionFunction(nn.Module):
    """The fitted network's logits as ``decision_function`` returns them: the last head's
    or the paper's ensemble of every head, and for two classes the logit difference."""

    def __init__(self, network: LayerwiseNetwork, ensemble: bool, binary: bool):
        super().__init__()
        self.network, self.ensemble, self.binary = network, ensemble, binary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ensemble:
            logits = ensemble_logits(self.network.all_logits(x))
        else:
            logits = self.network.head_logits(x, len(self.network.layers))
        return logits[:, 1] - logits[:, 0] if self.binary else logits


class _Transform(nn.Module):
    """Layer ``depth``'s representation averaged to 2x2 and flattened, as ``transform``."""

    def __init__(self, network: LayerwiseNetwork, depth: int):
        super().__init__()
        self.network, self.depth = network, depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *_, h = self.network.per_layer(x, self.depth)
        return F.adaptive_avg_pool2d(h, 2).flatten(1)


class _ImplicitModel(nn.Module):
    """The fixed point ``x = phi(A x + B u + b)`` solved block by block (block 1 reads the
    input only, block ``i`` the blocks before it; self-loops in closed form, Theorem 2),
    then what the estimator returns from it."""

    def __init__(self, estimator, output: str):
        super().__init__()

        def buffer(name, value):
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32))

        A = estimator.A_
        buffer("A", A)
        buffer("B", estimator.B_)
        buffer("b", estimator.state_intercept_)
        buffer("C", estimator.C_)
        buffer("c", estimator.intercept_)
        buffer("gain", 1.0 / (1.0 - A.diagonal()))
        self.slices = paper_slices(estimator.block_sizes_)
        self.activation = activation_torch(estimator.activation)
        self.output = output
        self.width = estimator._transform_width() if output == "transform" else None
        self.flat = output == "predict" and estimator._target_info["y_ndim"] == 1

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        drive = u @ self.B.T + self.b
        done = None  # the states solved so far, in the paper's order [x_i, ..., x_1]
        for rows in self.slices:
            z = drive[:, rows]
            if done is not None:
                z = z + done @ self.A[rows, rows.stop :].T
            x = self.activation(z * self.gain[rows])
            done = x if done is None else torch.cat([x, done], dim=1)
        if self.output == "transform":
            return done[:, done.shape[1] - self.width :]
        out = done @ self.C.T + self.c
        if self.output == "predict_proba":
            return torch.softmax(out, dim=1)
        return out[:, 0] if self.flat else out


def export_onnx(estimator, path, *, output=None, layer=None, opset_version=None):
    """Write the fitted model of ``estimator`` to ``path`` as an ONNX model.

    Parameters
    ----------
    estimator : GreedyLayerwiseCNNClassifier, SequentialImplicitRegressor or \
SequentialImplicitClassifier
        A fitted estimator.
    path : str or path-like
        Where to write the ``.onnx`` file.
    output : str or None, default=None
        What the graph computes, as the estimator's method of that name: for the CNN
        ``"decision_function"`` (its ensemble when ``ensemble=True``) or ``"transform"``;
        for the implicit regressor ``"predict"`` or ``"transform"``; for the implicit
        classifier ``"predict_proba"`` or ``"transform"``. None: the first of these.
    layer : int or None, default=None
        For the CNN's ``output="transform"``: the layer (1-based; ``-1`` is the last);
        None for the estimator's ``transform_layer``. (The implicit models' transform
        follows their ``transform_blocks``.)
    opset_version : int or None, default=None
        The ONNX opset; None for the exporter's default.

    Returns
    -------
    path : str
        The file written. Its one input, ``"input"``, takes float32 images of shape
        ``(n, *image_shape_)`` (CNN) or rows of shape ``(n, n_features_in_)`` (implicit
        models), for any ``n``.

    Examples
    --------
    >>> import numpy as np
    >>> import onnxruntime  # doctest: +SKIP
    >>> from sklearn.datasets import load_digits
    >>> from sklearn_greedy import GreedyLayerwiseCNNClassifier, export_onnx
    >>> X, y = load_digits(return_X_y=True)
    >>> cnn = GreedyLayerwiseCNNClassifier(image_shape=(1, 8, 8), width=16, max_epochs=2)
    >>> path = export_onnx(cnn.fit(X, y), "cnn.onnx")  # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession(path)  # doctest: +SKIP
    >>> images = X.reshape(-1, 1, 8, 8).astype(np.float32)
    >>> logits = session.run(None, {"input": images})[0]  # doctest: +SKIP
    >>> np.allclose(logits, cnn.decision_function(X), atol=1e-4)  # doctest: +SKIP
    True
    """
    from sklearn.utils.validation import check_is_fitted

    kind = type(estimator).__name__
    if kind not in OUTPUTS:
        raise TypeError(
            f"export_onnx exports {', '.join(OUTPUTS)}; got {kind}. (The end-to-end "
            "implicit models solve their fixed point by iteration and are not exported.)"
        )
    outputs = OUTPUTS[kind]
    output = outputs[0] if output is None else output
    if output not in outputs:
        raise ValueError(f"output must be one of {outputs} for {kind}, got {output!r}.")
    if layer is not None and (output != "transform" or kind != "GreedyLayerwiseCNNClassifier"):
        raise ValueError("layer is for the CNN's output='transform'.")
    check_is_fitted(estimator)
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "ONNX export needs the onnx and onnxscript packages: "
            'pip install "sklearn-greedy[onnx]" (onnxruntime runs the exported file).'
        ) from exc
    if kind == "GreedyLayerwiseCNNClassifier":
        module = _cnn_module(estimator, output, layer)
        example = torch.zeros((2, *estimator.image_shape_), dtype=torch.float32)
    else:
        module = _ImplicitModel(estimator, output)
        example = torch.zeros((2, estimator.n_features_in_), dtype=torch.float32)
    module.eval()
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    try:
        # the exporter reports its steps on stdout, logs what it skips (torchvision's
        # operators) and warns about its own internals: none of it is the user's concern
        exporter_log.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", FutureWarning)
            program = _export(module, example, output, opset_version)
    finally:
        exporter_log.setLevel(level)
    path = os.fspath(path)
    program.save(path)
    return path


def _cnn_module(estimator, output, layer) -> nn.Module:
    network = copy.deepcopy(estimator.model_).cpu().float().eval()
    network.channels_last = False  # a memory format, not a computation: left to the runtime
    if output == "decision_function":
        return _DecisionFunction(network, bool(estimator.ensemble), len(estimator.classes_) == 2)
    depth = layer if layer is not None else estimator.transform_layer
    return _Transform(network, check_layer(depth, estimator.n_layers_fitted_, name="layer"))


def _export(module, example, output, opset_version):
    return torch.onnx.export(
        module,
        (example,),
        input_names=["input"],
        output_names=[output],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        opset_version=opset_version,
        dynamo=True,
        verbose=False,
    )
