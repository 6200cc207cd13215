"""ONNX export of a fitted greedy CNN: onnxruntime's outputs equal the estimator's own, for
k = 1 and k = 3, with and without the ensemble, and for transform of a chosen layer."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from sklearn_greedy import GreedyLayerwiseCNNClassifier, export_onnx

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:400], y[:400]


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    return {
        k: GreedyLayerwiseCNNClassifier(
            image_shape=(1, 8, 8), n_layers=3, width=8, k=k, max_epochs=2, random_state=0
        ).fit(X, y)
        for k in (1, 3)
    }


def _run(path, X):
    session = ort.InferenceSession(str(path))
    (name,) = [i.name for i in session.get_inputs()]
    return session.run(None, {name: X.reshape(-1, 1, 8, 8).astype(np.float32)})[0]


@pytest.mark.parametrize("ensemble", [False, True])
@pytest.mark.parametrize("k", [1, 3])
def test_onnx_decision_function_equals_the_estimators(fitted, digits, tmp_path, k, ensemble):
    X, _ = digits
    cnn = fitted[k].set_params(ensemble=ensemble)
    out = _run(export_onnx(cnn, tmp_path / "cnn.onnx"), X[:150])  # any batch size
    np.testing.assert_allclose(out, cnn.decision_function(X[:150]), rtol=1e-4, atol=1e-4)
    # the ensemble and the last head differ here: the export follows the setting
    other = cnn.set_params(ensemble=not ensemble).decision_function(X[:150])
    assert not np.allclose(out, other, atol=1e-3)
    cnn.set_params(ensemble=False)


def test_onnx_transform_of_a_chosen_layer(fitted, digits, tmp_path):
    X, _ = digits
    cnn = fitted[3]
    out = _run(export_onnx(cnn, tmp_path / "t.onnx", output="transform", layer=1), X[:50])
    expected = cnn.set_params(transform_layer=1).transform(X[:50])
    assert out.shape == expected.shape == (50, 4 * 8)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    cnn.set_params(transform_layer=-1)


def test_onnx_binary_decision_is_the_logit_difference(digits, tmp_path):
    X, y = digits
    keep = y < 2
    cnn = GreedyLayerwiseCNNClassifier(
        image_shape=(1, 8, 8), n_layers=1, width=4, max_epochs=1, random_state=0
    ).fit(X[keep], y[keep])
    out = _run(export_onnx(cnn, tmp_path / "b.onnx"), X[keep])
    assert out.shape == (keep.sum(),)
    np.testing.assert_allclose(out, cnn.decision_function(X[keep]), rtol=1e-4, atol=1e-4)


def test_onnx_export_refuses_what_it_cannot_write(fitted, tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(ValueError, match="output must be one of"):
        export_onnx(fitted[1], tmp_path / "x.onnx", output="predict")
    with pytest.raises(ValueError, match="layer is for the CNN"):
        export_onnx(fitted[1], tmp_path / "x.onnx", layer=1)
    with pytest.raises(ValueError, match="layer"):
        export_onnx(fitted[1], tmp_path / "x.onnx", output="transform", layer=7)
    with pytest.raises(NotFittedError):
        export_onnx(GreedyLayerwiseCNNClassifier(), tmp_path / "x.onnx")


@pytest.mark.parametrize("self_loops", [False, True])
def test_onnx_implicit_models_equal_the_estimators(tmp_path, self_loops):
    from sklearn_greedy import SequentialImplicitClassifier, SequentialImplicitRegressor

    rng = np.random.RandomState(0)
    X = rng.uniform(-2, 2, (120, 3))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2
    reg = SequentialImplicitRegressor(6, 3, self_loops=self_loops, random_state=0).fit(X, y)
    session = ort.InferenceSession(export_onnx(reg, tmp_path / "r.onnx"))
    out = session.run(None, {"input": X.astype(np.float32)})[0]
    assert out.shape == (120,)
    np.testing.assert_allclose(out, reg.predict(X), rtol=1e-4, atol=1e-4)
    reg.set_params(transform_blocks=2)
    session = ort.InferenceSession(export_onnx(reg, tmp_path / "t.onnx", output="transform"))
    states = session.run(None, {"input": X.astype(np.float32)})[0]
    np.testing.assert_allclose(states, reg.transform(X), rtol=1e-4, atol=1e-4)
    if self_loops:  # the classifier's head is the same code with or without them
        return
    clf = SequentialImplicitClassifier(6, 3, max_epochs=5, random_state=0).fit(X, y > 1)
    session = ort.InferenceSession(export_onnx(clf, tmp_path / "c.onnx"))
    proba = session.run(None, {"input": X.astype(np.float32)})[0]
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=1e-4, atol=1e-5)


def test_onnx_refuses_the_end_to_end_models(tmp_path):
    from sklearn_greedy import EndToEndImplicitRegressor

    with pytest.raises(TypeError, match="not exported"):
        export_onnx(EndToEndImplicitRegressor(), tmp_path / "e.onnx")
