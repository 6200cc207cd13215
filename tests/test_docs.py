"""The documentation's sources cover the package and the examples (no Sphinx build here:
``python3 dev.py docs`` builds the site and ``docs/check_build.py`` checks the result).

- every public name is listed in the API reference's source, ``docs/api.rst``;
- every script of ``examples/`` is run by the gallery (its configuration in ``docs/conf.py``
  selects it), with a title for its page and, where it needs any, arguments that exist;
- ``docs/conf.py`` imports, with the extensions the build needs.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

import sklearn_greedy
import sklearn_greedy.datasets
import sklearn_greedy.nn

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PUBLIC = {
    "sklearn_greedy": sklearn_greedy,
    "sklearn_greedy.nn": sklearn_greedy.nn,
    "sklearn_greedy.datasets": sklearn_greedy.datasets,
}
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def conf():
    """docs/conf.py, imported as Sphinx would (the Sphinx packages need not be installed:
    the configuration only names the extensions)."""
    return _load(DOCS / "conf.py", "sklearn_greedy_docs_conf")


def _api_reference() -> dict[str, set[str]]:
    """The names each ``currentmodule`` section of docs/api.rst lists under autosummary."""
    listed: dict[str, set[str]] = {}
    module = None
    in_autosummary = False
    for line in (DOCS / "api.rst").read_text().splitlines():
        if match := re.match(r"\.\. currentmodule:: (\S+)", line):
            module = match.group(1)
        elif line.startswith(".. autosummary::"):
            in_autosummary = True
        elif in_autosummary and re.match(r"   [A-Za-z_]\w*$", line):
            listed.setdefault(module, set()).add(line.strip())
        elif in_autosummary and line and not line.startswith(" "):
            in_autosummary = False
    return listed


def test_every_public_name_is_in_the_api_reference():
    listed = _api_reference()
    for module_name, module in PUBLIC.items():
        missing = set(module.__all__) - listed.get(module_name, set())
        assert not missing, f"docs/api.rst does not list {sorted(missing)} of {module_name}"
        # and nothing that is not public (a renamed or removed name)
        unknown = listed.get(module_name, set()) - set(module.__all__)
        assert not unknown, f"docs/api.rst lists {sorted(unknown)}, not in {module_name}.__all__"


def test_conf_imports_with_the_extensions_the_build_needs(conf):
    for extension in ("numpydoc", "sphinx_gallery.gen_gallery", "sphinx.ext.autosummary"):
        assert extension in conf.extensions
    assert conf.html_theme == "pydata_sphinx_theme"
    assert conf.release == sklearn_greedy.__version__


def test_every_public_constant_has_a_description(conf):
    """A tuple has no docstring: conf.py gives each constant its own, or its page would
    show the documentation of ``tuple``."""
    constants = {
        f"{module_name}.{name}"
        for module_name, module in PUBLIC.items()
        for name in module.__all__
        if not callable(getattr(module, name))
    }
    assert constants, "no public constant found"
    assert set(conf.CONSTANTS) == constants
    lines = ["Built-in immutable sequence."]
    conf.document_constant(None, "data", "sklearn_greedy.nn.DOWNSAMPLE_KINDS", (), {}, lines)
    assert lines == [conf.CONSTANTS["sklearn_greedy.nn.DOWNSAMPLE_KINDS"]]


def test_every_example_is_in_the_gallery(conf):
    gallery = conf.sphinx_gallery_conf
    (examples_dir,) = gallery["examples_dirs"]
    assert Path(examples_dir).resolve() == ROOT / "examples"
    assert (ROOT / "examples" / "GALLERY_HEADER.rst").is_file()
    assert EXAMPLES, "no example found"
    for script in EXAMPLES:
        path = str(script)
        # sphinx-gallery runs the scripts whose path matches filename_pattern (search)
        assert re.search(gallery["filename_pattern"], path), f"{script.name} would not run"
        assert not re.search(gallery["ignore_pattern"], path), f"{script.name} is ignored"
        # the page's title: the docstring's first line, underlined with "="
        title, underline = script.read_text().split('"""')[1].splitlines()[:2]
        assert title and underline == "=" * len(title), f"{script.name}: no title"


def test_the_gallery_arguments_name_examples_and_their_options(conf):
    argv = _load(DOCS / "gallery_argv.py", "sklearn_greedy_docs_gallery_argv")
    assert conf.sphinx_gallery_conf["reset_argv"] == "gallery_argv.reset_argv"
    names = {p.name for p in EXAMPLES}
    for script, args in argv.GALLERY_ARGS.items():
        assert script in names, f"gallery_argv.py names {script}, not an example"
        source = (ROOT / "examples" / script).read_text()
        for option in (a for a in args if a.startswith("--")):
            assert f'"{option}"' in source, f"{script} has no option {option}"
    assert argv.reset_argv({}, {"src_file": str(ROOT / "examples" / "transfer_study.py")}) == [
        "--demo"
    ]
    assert argv.reset_argv({}, {"src_file": str(ROOT / "examples" / "quickstart.py")}) == []
