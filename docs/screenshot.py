"""Screenshots of the built site in headless Chromium, to look at the pages as a reader does.

    python docs/screenshot.py [--html docs/_build/html] [--out /tmp/sklearn-greedy-docs]

Takes the index and one gallery page (``--page`` adds others, paths inside the site) at
1280x1600 and prints where each PNG went. The PNGs are for looking at, not for the
repository. Skips, with a message and exit status 0, where there is no Chromium (Debian:
``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
PAGES = ("index.html", "auto_examples/linear_probe_study.html")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """The first Chromium-like browser on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(browser: str, page: Path, out: Path, size: str = "1280,1600") -> Path:
    """A PNG of ``page`` (a local HTML file) at ``size`` pixels, written to ``out``."""
    with tempfile.TemporaryDirectory() as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={size}",
            page.resolve().as_uri(),
        ]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
    if not out.is_file():
        raise RuntimeError(f"{browser} wrote no screenshot of {page}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--html", type=Path, default=DOCS / "_build" / "html", help="the built site"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "sklearn-greedy-docs",
        help="folder for the PNGs (default: sklearn-greedy-docs in the temporary folder)",
    )
    parser.add_argument(
        "--page", action="append", default=[], help="another page of the site to take"
    )
    args = parser.parse_args(argv)
    browser = find_browser()
    if browser is None:
        print(f"skipped: no Chromium on PATH (tried {', '.join(BROWSERS)})")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in (*PAGES, *args.page):
        page = args.html / name
        if not page.is_file():
            print(f"{page} is missing: build the site first (python3 dev.py docs)")
            return 1
        out = args.out / (name.replace("/", "_").removesuffix(".html") + ".png")
        print(screenshot(browser, page, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
