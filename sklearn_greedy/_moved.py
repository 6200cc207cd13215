"""Where the modules of release 0.1.0.dev0 went, so that its pickles still load.

Before the package was split into subpackages (``cnn/``, ``implicit/``, ``training/``,
``inspection/``), every module sat at the top level with a prefix (``_cnn_modules``,
``_implicit_model``...), and a pickle names the module of each class it holds. An import
of one of those names gets a small module that reads its attributes from where they live
now; nothing else imports them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

# old module -> the modules its names now live in, searched in order
MOVED = {
    "_cnn": ("cnn._classifier",),
    "_cnn_growth": ("cnn._grower",),
    "_cnn_inputs": ("cnn._inputs",),
    "_cnn_inference": ("cnn._classifier",),
    "_cnn_network": ("cnn._network",),
    "_cnn_modules": ("cnn._modules",),
    "_cnn_presets": ("cnn._presets",),
    "_cnn_variants": ("cnn._classifier", "cnn._compression", "cnn._grower"),
    "_compression": ("cnn._compression",),
    "_vgg": ("cnn._vgg",),
    "_implicit": ("implicit._sequential", "implicit._end_to_end"),
    "_implicit_sequential": ("implicit._sequential", "implicit._growth"),
    "_implicit_end_to_end": ("implicit._end_to_end",),
    "_implicit_base": ("implicit._base",),
    "_implicit_model": ("implicit._model",),
    "_implicit_solvers": ("implicit._solvers",),
    "_implicit_torch_solvers": ("implicit._torch_solvers",),
    "_implicit_presets": ("implicit._presets",),
    "_engine": ("training._engine",),
    "_decoupled": ("training._decoupled",),
    "_distributed": ("training._distributed",),
    "_spawn": ("training._spawn",),
    "_streaming": ("training._streaming",),
    "_augment": ("training._augment",),
    "_checkpoint": ("training._checkpoint",),
    "_utils": ("training._runtime",),
    "_base": ("training._engine", "training._runtime"),
    "_probing": ("inspection._probing",),
    "_plotting": ("inspection._plotting",),
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``sklearn_greedy.<old name>`` and makes it a view of the new modules."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package == __package__ and name in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return None  # the default module, filled by exec_module

    def exec_module(self, module: types.ModuleType) -> None:
        old = module.__name__.rpartition(".")[2]
        targets = [importlib.import_module(f"{__package__}.{new}") for new in MOVED[old]]

        def __getattr__(attr):
            for target in targets:
                if hasattr(target, attr):
                    return getattr(target, attr)
            raise AttributeError(
                f"{module.__name__} was a module of sklearn-greedy 0.1.0.dev0; its names "
                f"moved to {', '.join(t.__name__ for t in targets)}, which has no {attr!r}. "
                "Refit the estimator with this release, or load the pickle with "
                "sklearn-greedy 0.1.0.dev0."
            )

        module.__getattr__ = __getattr__


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
