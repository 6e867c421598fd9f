"""The telemetry benchmark still runs (tiny counts) and reports every mode against telemetry off,
and the spans against their floor.

Speed is not asserted here: figures come from `make bench-telemetry`, where they are read as ratios.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.telemetry import MODES

ROOT = Path(__file__).resolve().parents[2]


def test_quick_telemetry_bench_reports_every_mode_against_telemetry_off() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "bench.telemetry", "--quick", "--pin"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-4000:]
    lines = finished.stdout.splitlines()
    for label in MODES.values():
        line = next(line for line in lines if line.startswith(label))
        assert re.search(r"\d+ µs +[+-]\d+ µs +\d\.\d\dx", line), line
    assert "the telemetry calls of one request alone" in finished.stdout
    # --pin keeps the load generator off the proxies' CPU (on a machine with one CPU it says so).
    assert re.search(r"CPUs: (pinned: every proxy on CPU \d+|not pinned \(one CPU\))", finished.stdout), lines[:8]
    assert re.search(r"\d+ µs, \d+ objects \(the embed at \d\.\d\dx the floor\)", finished.stdout), lines[-1]
