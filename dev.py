"""Set up this checkout and run its main job or its tests: one command each, Python 3 only.

    python3 dev.py quickstart        # main job: examples/quickstart.py (digits, CPU or GPU)
    python3 dev.py test [ARGS...]    # the test suite; ARGS go to pytest
    python3 dev.py docs              # the documentation site, into docs/_build/html

Each command first makes sure the project's virtual environment ``.venv`` holds torch, the
package (editable) and its ``test`` and ``dask`` extras, creating or updating it when needed,
then runs inside it. A second run reuses what is installed: the set-up is redone only when
``setup.cfg``, ``pyproject.toml`` or the torch requirement change (a stamp in ``.venv``).

Torch comes first, pinned, so that the package's own ``torch`` requirement is already met:
``torch==2.13.0`` from the configured package index. On a machine without an NVIDIA GPU
that would download a CUDA build from the public index, so ``TORCH_INDEX_URL`` (for example
``https://download.pytorch.org/whl/cpu``) names another index for torch alone; ``TORCH``
overrides the requirement itself (``TORCH="torch==2.13.0+cpu"``).

The tests run on every core (pytest-xdist's ``-n auto --dist worksteal``, one torch thread
per worker) unless ARGS choose otherwise (``-n 0`` runs them in one process).

``docs`` also installs the ``docs`` extra (Sphinx and its extensions; its own stamp, so that
the other two commands never wait for it), builds the site with warnings as errors (the
gallery runs every script of ``examples/``: a few minutes on a CPU) and checks the result
with ``docs/check_build.py``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / "sklearn-greedy-setup.sha256"
TORCH = "torch==2.13.0"
EXTRAS = ".[test,dask]"
DOCS_STAMP = VENV / "sklearn-greedy-docs.sha256"
DOCS_EXTRAS = ".[test,dask,docs]"


def venv_python() -> Path:
    scripts = "Scripts" if os.name == "nt" else "bin"
    return VENV / scripts / ("python.exe" if os.name == "nt" else "python")


def wanted() -> str:
    """What the environment must hold: a digest of the requirements and the install."""
    digest = hashlib.sha256()
    for name in ("setup.cfg", "pyproject.toml"):
        path = ROOT / name
        if path.exists():
            digest.update(path.read_bytes())
    for part in (os.environ.get("TORCH", TORCH), os.environ.get("TORCH_INDEX_URL", ""), EXTRAS):
        digest.update(part.encode())
    return digest.hexdigest()


def run(*command, check=True) -> int:
    """Run ``command`` in the checkout, echoed first; its exit status."""
    print("+", " ".join(str(c) for c in command), flush=True)
    return subprocess.run([str(c) for c in command], check=check, cwd=ROOT).returncode


def set_up() -> Path:
    """``.venv`` with torch, the package and its extras; its Python."""
    python = venv_python()
    if python.exists() and STAMP.exists() and STAMP.read_text().strip() == wanted():
        return python
    if not python.exists():
        print(f"creating the virtual environment {VENV}", flush=True)
        try:
            venv.EnvBuilder(with_pip=True).create(VENV)
        except (OSError, subprocess.CalledProcessError) as error:
            shutil.rmtree(VENV, ignore_errors=True)
            raise SystemExit(
                f"could not create {VENV} ({error}). Python's venv module needs ensurepip: "
                "on Debian or Ubuntu install the python3-venv package, then run this again."
            ) from error
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    torch = os.environ.get("TORCH", TORCH)
    index = os.environ.get("TORCH_INDEX_URL")
    run(*pip, torch, *(["--index-url", index] if index else []))
    run(*pip, "-e", EXTRAS)
    STAMP.write_text(wanted() + "\n")
    return python


def set_up_docs() -> Path:
    """``.venv`` as :func:`set_up` makes it, with the ``docs`` extra too; its Python."""
    python = set_up()
    wanted_docs = wanted() + DOCS_EXTRAS
    if not (DOCS_STAMP.exists() and DOCS_STAMP.read_text().strip() == wanted_docs):
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        run(*pip, "-e", DOCS_EXTRAS)
        DOCS_STAMP.write_text(wanted_docs + "\n")
    return python


def build_docs(python: Path) -> int:
    """Build the site with warnings as errors, then check what was built; the exit status."""
    html = ROOT / "docs" / "_build" / "html"
    status = run(
        python, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", html, check=False
    )
    if status:
        return status
    return run(python, ROOT / "docs" / "check_build.py", html, check=False)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ("quickstart", "test", "docs"):
        print(__doc__)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv[0] == "docs":
        return build_docs(set_up_docs())
    python = set_up()
    if argv[0] == "quickstart":
        command = [python, ROOT / "examples" / "quickstart.py", *argv[1:]]
    else:
        args = argv[1:]
        if not any(a == "-n" or a.startswith(("-n=", "--numprocesses")) for a in args):
            args = ["-n", "auto", *args]
        if not any(a.startswith(("--dist", "-d")) for a in args):
            # a worker that runs out of tests takes half of another's queue; the default
            # ("load") hands out contiguous blocks, and the block of the heavy tests, which
            # run first, kept one worker busy 80 s after the other had finished
            args = ["--dist", "worksteal", *args]
        command = [python, "-m", "pytest", "-q", *args]
    return run(*command, check=False)


if __name__ == "__main__":
    sys.exit(main())
