"""Sphinx configuration of the sklearn-greedy documentation.

Built by ``python3 dev.py docs`` (warnings are errors). The gallery runs every script of
``examples/`` and keeps what it prints and the figures it draws; ``gallery_argv.py`` gives
the command-line arguments of the scripts that need some to run here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# the checkout's package, even where it is not installed (a plain ``sphinx-build``), and
# gallery_argv.py beside this file
sys.path[:0] = [str(ROOT), str(DOCS)]
# the gallery's figures are drawn off screen, also by the processes the examples start
os.environ.setdefault("MPLBACKEND", "Agg")

import sklearn_greedy  # noqa: E402

project = "sklearn-greedy"
author = "the sklearn-greedy developers"
copyright = "2026, the sklearn-greedy developers"  # noqa: A001 (Sphinx's setting)
release = sklearn_greedy.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = [
    "_build",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.json",
    "auto_examples/*.md5",
]

# the API reference: one page per public name, from the docstrings
autosummary_generate = True
autodoc_typehints = "none"  # the numpydoc sections give the types
# "fit()" rather than "GreedyLayerwiseCNNClassifier.fit()" in a page's table of contents
toc_object_entries_show_parents = "hide"
numpydoc_show_class_members = False  # the class template lists the members instead
numpydoc_class_members_toctree = False
# no network at build time: references to other projects stay plain text
intersphinx_mapping: dict = {}

myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

sphinx_gallery_conf = {
    "examples_dirs": [str(ROOT / "examples")],
    "gallery_dirs": ["auto_examples"],
    # every script runs, not only plot_*.py: each page shows what its script prints
    "filename_pattern": r"\.py$",
    "ignore_pattern": r"(__init__|/_[^/]*)\.py$",
    # the arguments of the scripts that need a data directory, a cluster or several devices
    "reset_argv": "gallery_argv.reset_argv",
    "image_scrapers": ("matplotlib",),
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "capture_repr": (),
    "min_reported_time": 1,
    # "Examples using X" on each API page
    "backreferences_dir": "generated/backreferences",
    "doc_module": ("sklearn_greedy",),
}

html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-greedy {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "secondary_sidebar_items": ["page-toc"],
}
html_sidebars = {"index": []}
html_show_sourcelink = False


def skip_foreign_member(app, what, name, obj, skip, options):
    """Leave out the members a class inherits from scikit-learn, torch or Python.

    ``get_params``, ``set_output``, the metadata-routing ``set_*_request`` methods or
    ``torch.nn.Module.forward``'s machinery are documented by their own projects (and their
    docstrings refer to those projects' pages); the package's own members, inherited ones
    included, are documented here.
    """
    # a property is known by its getter's module
    module = getattr(getattr(obj, "fget", None) or obj, "__module__", None) or ""
    if what == "class" and not module.startswith("sklearn_greedy"):
        return True
    return None


# the public constants: a tuple has no docstring of its own, and autodoc would show the
# documentation of ``tuple`` instead
CONSTANTS = {
    "sklearn_greedy.nn.DOWNSAMPLE_KINDS": (
        "The downsampling operators a layer can begin with (the estimator's ``downsample`` "
        "and :class:`GreedyLayer`'s): invertible 2x2 space-to-depth, average pooling, max "
        "pooling, or a stride-2 convolution (Belilovsky et al., App. C.1)."
    ),
    "sklearn_greedy.datasets.CIFAR10_CLASSES": (
        "CIFAR-10's class names, in the order of its labels 0 to 9 "
        "(``CIFAR10_CLASSES[y]`` names the labels :func:`load_cifar10` returns)."
    ),
}


def document_constant(app, what, name, obj, options, lines):
    """Give the public constants their description instead of their type's docstring."""
    if what == "data":
        lines[:] = [CONSTANTS.get(name, "")]


def setup(app):
    app.connect("autodoc-skip-member", skip_foreign_member)
    app.connect("autodoc-process-docstring", document_constant)
