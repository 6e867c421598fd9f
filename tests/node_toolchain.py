"""Node.js for the tests that run JavaScript: the npm package in js/ and the React example.

Without ``node`` and ``npm`` these tests skip with a clear reason on a developer's machine and fail
in CI (``CI=true``), where ``.ci/run`` installs Debian's ``nodejs`` and ``npm``. The builds go
through the Makefile's stamps, so ``make test`` builds once and a lone pytest run builds what is
missing or stale.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
JS = REPO / "js"
WEB = REPO / "example_apps" / "react_chat" / "web"
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_node() -> str:
    """The path of ``node``; skips (fails in CI) when Node.js or npm is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return node
    reason = "Node.js and npm are missing (apt-get install -y nodejs npm): the JavaScript tests need them"
    if IN_CI:
        pytest.fail(reason + ", and CI must run them")
    pytest.skip(reason)


def make(target: str) -> None:
    """``make <target>`` in the repository (a no-op when its stamp is fresh)."""
    require_node()
    done = subprocess.run(
        ["make", "--no-print-directory", "-s", target], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"make {target} failed:\n{done.stdout}\n{done.stderr}"


def run_node(*arguments: str, stdin: str = "", cwd: Path = JS, timeout: float = 120) -> str:
    """``node arguments…`` (TypeScript through tsx) in ``cwd``; returns what it printed."""
    node = require_node()
    make("js")
    done = subprocess.run(
        [node, "--import", "tsx", *arguments], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"node {' '.join(arguments)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout
