"""Check a built documentation site: what ``sphinx-build`` cannot see is missing.

    python docs/check_build.py [docs/_build/html]

- every public name (``__all__`` of ``sklearn_greedy``, ``sklearn_greedy.nn`` and
  ``sklearn_greedy.datasets``) has its API page, and the page names it;
- every script of ``examples/`` has its gallery page, with what the script printed;
- the gallery pages of the scripts that draw (they use matplotlib) hold the rendered
  figure: an ``<img>`` whose file exists beside the page and is a PNG.

Prints one line per problem and exits with 1 when there is any, 0 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from html.parser import HTMLParser
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
PUBLIC_MODULES = ("sklearn_greedy", "sklearn_greedy.nn", "sklearn_greedy.datasets")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def public_names() -> list[str]:
    """The fully qualified name of every public object."""
    sys.path.insert(0, str(ROOT))
    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names += [f"{module_name}.{name}" for name in module.__all__]
    return names


def example_scripts() -> list[Path]:
    """The scripts of ``examples/`` that the gallery shows (private helpers excepted)."""
    return sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))


def draws(script: Path) -> bool:
    """Whether ``script`` draws a figure (and its gallery page must show one)."""
    return "matplotlib" in script.read_text()


class _Page(HTMLParser):
    """The ``<img>`` sources of a page, and the text of its output blocks."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.output: list[str] = []
        self._depth = 0  # nesting inside an output block (sphinx-gallery's sphx-glr-script-out)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if self._depth:
            self._depth += 1
        elif "sphx-glr-script-out" in (attrs.get("class") or "").split():
            self._depth = 1

    def handle_endtag(self, tag):
        if self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._depth:
            self.output.append(data)


def read_page(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def check(html: Path) -> list[str]:
    """The problems of the site built in ``html``: one sentence each."""
    problems = []
    if not (html / "index.html").is_file():
        return [f"{html / 'index.html'} is missing: was the site built there?"]
    for name in public_names():
        page = html / "generated" / f"{name}.html"
        if not page.is_file():
            problems.append(f"{name}: no API page ({page.relative_to(html)})")
        elif name.rpartition(".")[2] not in page.read_text(encoding="utf-8"):
            problems.append(f"{name}: its API page does not name it")
    for script in example_scripts():
        page_path = html / "auto_examples" / f"{script.stem}.html"
        if not page_path.is_file():
            problems.append(f"examples/{script.name}: no gallery page")
            continue
        page = read_page(page_path)
        if not "".join(page.output).strip():
            problems.append(f"examples/{script.name}: its gallery page shows no output")
        if draws(script):
            figures = [src for src in page.images if "sphx_glr_" in src and "thumb" not in src]
            if not figures:
                problems.append(f"examples/{script.name}: its gallery page shows no figure")
            for src in figures:
                image = (page_path.parent / src).resolve()
                if not image.is_file():
                    problems.append(f"examples/{script.name}: figure {src} is missing")
                elif not image.read_bytes().startswith(PNG_SIGNATURE):
                    problems.append(f"examples/{script.name}: figure {src} is not a PNG")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "html",
        nargs="?",
        type=Path,
        default=DOCS / "_build" / "html",
        help="the built site (default docs/_build/html)",
    )
    args = parser.parse_args(argv)
    problems = check(args.html)
    for problem in problems:
        print(problem)
    n_examples = len(example_scripts())
    if problems:
        print(f"{len(problems)} problems in {args.html}")
        return 1
    print(
        f"{args.html}: {len(public_names())} API pages, {n_examples} gallery pages with their "
        f"output, {sum(draws(s) for s in example_scripts())} with their figures"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
