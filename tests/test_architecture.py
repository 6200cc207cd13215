"""The package's layout keeps the promises of docs/architecture.md: folders by family,
module names that do not repeat their folder, imports only downwards, and estimators
composed of objects rather than assembled from project mixins."""

import ast
import inspect
from pathlib import Path

import pytest
from sklearn.base import BaseEstimator

import sklearn_greedy

PACKAGE = Path(sklearn_greedy.__file__).parent
FAMILIES = ("cnn", "implicit", "training", "inspection", "datasets")
# a unit may import from the units of lower rank, and from itself
RANK = {
    "__init__": 5, "nn": 5, "_onnx": 4, "_moved": 4,
    "inspection": 3, "cnn": 2, "implicit": 2, "training": 1, "datasets": 1,
    "_validation": 0,
}  # fmt: skip


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, path.relative_to(PACKAGE).with_suffix("").parts


def _unit(parts) -> str:
    return parts[0] if parts[0] in FAMILIES else parts[-1]


def _imports(path, parts):
    """(line, imported module as a tuple of parts under the package, names) of every
    relative import of the module, at any depth (lazy imports too)."""
    package = list(parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            yield node.lineno, tuple(target), [alias.name for alias in node.names]


def test_every_family_is_a_folder_and_no_module_repeats_its_folder():
    for family in FAMILIES:
        assert (PACKAGE / family / "__init__.py").is_file()
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top == ["__init__", "_moved", "_onnx", "_validation", "nn"]
    for path, parts in _modules():
        if len(parts) > 1:
            folder, name = parts[-2], parts[-1]
            assert folder not in name, f"{path}: the module name repeats its folder"


def test_imports_only_go_down_the_layers():
    wrong = []
    for path, parts in _modules():
        me = _unit(parts)
        for line, target, names in _imports(path, parts):
            if not target:  # the package root: its modules, or its version (read lazily)
                if names == ["__version__"]:
                    continue
                targets = [(name,) for name in names]
            else:
                targets = [target]
            for target in targets:
                other = _unit(target)
                if other != me and RANK[other] >= RANK[me]:
                    wrong.append(f"{path}:{line} ({me}) imports {'.'.join(target)} ({other})")
    assert not wrong, "\n".join(wrong)


def _project_classes():
    import importlib

    for _, parts in _modules():
        name = ".".join(("sklearn_greedy",) + tuple(p for p in parts if p != "__init__"))
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__:
                yield cls


def _is_project(cls) -> bool:
    return cls.__module__.startswith("sklearn_greedy")


@pytest.mark.parametrize("cls", list(_project_classes()), ids=lambda c: c.__qualname__)
def test_no_class_is_assembled_from_several_project_mixins(cls):
    # a mixin: a project class a class derives from that is not itself an estimator
    # (scikit-learn's ClassifierMixin and TransformerMixin are roles, not counted)
    mixins = [
        base
        for base in cls.__bases__
        if _is_project(base) and not issubclass(base, (BaseEstimator, Exception))
    ]
    assert len(mixins) <= 1, f"{cls.__qualname__} is assembled from {mixins}"


def test_the_estimator_reads_its_fit_in_its_own_module():
    """The CNN's fit path lives in its module and the grower's, not in a base class:
    every method of the estimator is defined by the estimator class itself or by
    scikit-learn."""
    cls = sklearn_greedy.GreedyLayerwiseCNNClassifier
    for name, _ in inspect.getmembers(cls, inspect.isfunction):
        owner = next(k for k in cls.__mro__ if name in vars(k))
        assert owner is cls or not _is_project(owner), f"{name} comes from {owner}"
