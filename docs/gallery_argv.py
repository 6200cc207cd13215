"""The command-line arguments the documentation's gallery runs each example script with.

sphinx-gallery runs every script of ``examples/`` as its ``__main__``; the ones listed here
would otherwise need a data directory, a cluster or several devices, and get the arguments
of a small embedded-data version of their run instead (their docstrings say so). The
others run with their defaults. Kept out of ``conf.py`` so that the gallery's settings name
it by its import path, which lets Sphinx cache them.
"""

from __future__ import annotations

from pathlib import Path

GALLERY_ARGS = {
    "transfer_study.py": ["--demo"],
    "grid_search_cluster.py": ["--backend", "dask", "--n-workers", "2"],
    "distributed_fit.py": ["--devices", "cpu,cpu"],
}


def reset_argv(gallery_conf, script_vars):
    """``sys.argv[1:]`` for the example ``script_vars["src_file"]``.

    Parameters
    ----------
    gallery_conf : dict
        sphinx-gallery's configuration.
    script_vars : dict
        What sphinx-gallery knows of the script; ``src_file`` is its path.

    Returns
    -------
    list of str
        The arguments.
    """
    return list(GALLERY_ARGS.get(Path(script_vars["src_file"]).name, []))
