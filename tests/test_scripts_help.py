"""Every script in benchmarks/ and examples/ answers ``--help`` at once and explains itself.

Importing torch, scikit-learn and the package before argparse runs made ``--help`` take 7-8 s
(issue 23). Wall-clock times are not asserted (the machine is shared and noisy): a script
whose ``--help`` leaves those three unimported is a fast one.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(
    path
    for folder in ("benchmarks", "examples")
    for path in (ROOT / folder).glob("*.py")
    if not path.name.startswith("_")
)
HEAVY = ("torch", "sklearn", "sklearn_greedy")
MARK = "help-probe:"

# ``python SCRIPT --help`` in a fresh interpreter (the script's folder first on sys.path, as
# Python puts it), recording each parser whose help is printed: its description, its epilog
# and the options that have no help text
PROBE = f"""
import argparse, json, os, runpy, sys

path = sys.argv[1]
sys.path.insert(0, os.path.dirname(path))
parsers = []
print_help = argparse.ArgumentParser.print_help


def recording(self, file=None):
    unexplained = [a.option_strings or [a.dest] for a in self._actions if not a.help]
    parsers.append(dict(description=self.description, epilog=self.epilog, unexplained=unexplained))
    print_help(self, file)


argparse.ArgumentParser.print_help = recording
sys.argv = [path, "--help"]
try:
    runpy.run_path(path, run_name="__main__")
except SystemExit as exc:
    code = exc.code
else:
    code = "ran to the end without exiting"
imported = [name for name in {HEAVY!r} if name in sys.modules]
print({MARK!r} + json.dumps(dict(code=code, parsers=parsers, imported=imported)))
"""


def _ends_a_sentence(text: str | None) -> bool:
    return bool(text) and text.rstrip()[-1] in ".?!"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_help_prints_usage_without_the_heavy_imports_and_explains_every_option(script):
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,  # a guard against a hang, not a speed test
    )
    assert done.returncode == 0, done.stderr
    usage, _, probe = done.stdout.rpartition(MARK)
    result = json.loads(probe)
    assert result["code"] in (0, None), done.stdout + done.stderr
    assert "usage:" in usage
    assert result["imported"] == [], f"--help imported {result['imported']}"
    (parser,) = result["parsers"]
    assert parser["unexplained"] == [], f"options without a help text: {parser['unexplained']}"
    # the description (and epilog) are whole sentences, not a docstring's first line cut
    # in the middle of one
    assert _ends_a_sentence(parser["description"]), parser["description"]
    assert parser["epilog"] is None or _ends_a_sentence(parser["epilog"]), parser["epilog"]
