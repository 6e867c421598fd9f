"""The benchmarks still run (tiny counts), and their arithmetic and parsing say what they mean.

Speed is not asserted here: figures come from `make bench`, where they are read as ratios.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.peers import _on_this_machine, _remote
from bench.profile import EVENT_LOOP, OTHER, classify, parse_raw
from bench.report import Table, percentile, ratio, spread
from tests.conftest import POSTGRES_URL, postgres_reachable, require_postgres

ROOT = Path(__file__).resolve().parents[2]


def _run_module(*arguments: str, timeout: float = 90) -> str:
    environment = {**os.environ, "WATTFARE_BENCH_POSTGRES_URL": POSTGRES_URL}
    finished = subprocess.run(
        [sys.executable, "-m", *arguments], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout
    )
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-4000:]
    return finished.stdout


@pytest.mark.postgres
def test_quick_bench_prints_every_measure_against_direct_on_both_databases() -> None:
    require_postgres()
    output = _run_module("bench.run", "--quick", "--markdown")
    assert "CPU: " in output and "Python: CPython" in output and "load average" in output
    for measure in (
        "whole reply: added p50",
        "first byte: added p50",
        "requests/s",
        "server CPU per request",
        "server CPU per streamed event",
        "median / largest gap",
    ):
        line = next(line for line in output.splitlines() if measure in line)
        # Each embed column carries its multiple of (or share of) the direct figure.
        assert len(re.findall(r"\d\.\dx|\d+% of direct", line)) >= 2, line
    assert "embed, SQLite" in output and "embed, PostgreSQL" in output
    # The forwarding-only proxy is measured in the same run, and each embed's figure beyond it.
    assert "floor: forwarding only" in output and "what metering adds" in output
    beyond = next(line for line in output.splitlines() if "added p50 beyond the floor's, whole reply" in line)
    assert len(re.findall(r"[+-]\d+\.\d\d ms", beyond)) == 2, beyond
    assert "| whole reply: p50 [round range] |" in output  # the Markdown table for the README


def test_quick_scale_bench_reports_growth_and_query_plans() -> None:
    arguments = ["bench.scale", "--quick"] + ([] if postgres_reachable() else ["--no-postgres"])
    output = _run_module(*arguments)
    assert "one user's requests" in output and "each request another user" in output
    assert "open streams" in output and "KiB a stream" in output
    assert "MiB prompt" in output and "proxy CPU per streamed event" in output
    assert "Statements whose plan reads a whole big table or sorts" in output


def test_percentiles_spreads_and_ratios() -> None:
    samples = [float(value) for value in range(1, 101)]
    assert percentile(samples, 0.5) == 50.0
    assert percentile(samples, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    assert spread([2.0, 1.0, 3.0]).text() == "2.00 [1.00…3.00]"
    assert spread([1.0, 1.0]).text(sign=True) == "+1.00"
    assert ratio(3.0, 1.5) == "2.0x"
    assert ratio(1.0, 0.0) == "n/a"


def test_table_renders_the_same_rows_as_text_and_markdown() -> None:
    table = Table(columns=["direct", "embed"])
    table.section("concurrency 1")
    table.add("p50", {"direct": "0.40 ms", "embed": "1.20 ms (3.0x)"})
    text, markdown = table.text(), table.markdown()
    assert "concurrency 1" in text and "1.20 ms (3.0x)" in text
    assert "| p50 | 0.40 ms | 1.20 ms (3.0x) |" in markdown and "| **concurrency 1** |" in markdown


def test_profile_samples_go_to_their_innermost_layer() -> None:
    stacks = parse_raw(
        "run (asyncio/runners.py);_metered (wattfare_embed/proxy.py);run (wattfare_embed/store/_runner.py);"
        "execute (sqlalchemy/engine/base.py) 7\n"
        "run (asyncio/runners.py);_metered (wattfare_embed/proxy.py) 2\n"
        "Runner.run (asyncio/runners.py) 1\n"
        "Thread.run (threading.py:982);_run (wattfare_embed/store/_checkpoint.py:57);"
        "Event.wait (threading.py:622);Condition.wait (threading.py:331) 40\n"
    )
    assert sum(stacks.values()) == 10  # a thread waiting on a lock is not CPU: not counted
    layers = {classify(stack): count for stack, count in stacks.items()}
    assert layers == {
        "SQLAlchemy (executing the store's statements)": 7,
        "proxy and embed glue": 2,
        EVENT_LOOP: 1,
    }
    assert classify(("run (asyncio/runners.py)", "shield (asyncio/tasks.py)")) == "asyncio: tasks, futures, shield"
    assert classify(("<module> (uvloop/__init__.py)",)) == OTHER


def test_socket_addresses_from_proc_are_read_as_the_kernel_writes_them() -> None:
    loopback, port = _remote("0100007F:1F90")
    assert str(loopback) == "127.0.0.1" and port == 8080 and _on_this_machine(loopback)
    public, _ = _remote("08080808:0035")
    assert str(public) == "8.8.8.8" and not _on_this_machine(public)
    mapped, _ = _remote("0000000000000000FFFF00000100007F:0050")
    assert _on_this_machine(mapped)


def test_compare_runs_two_trees_side_by_side_against_direct_and_the_floor() -> None:
    output = _run_module(
        "bench.compare", "--rounds", "2", "--requests", "5", "--seconds", "0.2", f"one={ROOT}", f"two={ROOT}"
    )
    assert output.startswith("direct: whole reply p50 ")
    rows = {line.split()[0]: line.split()[1:] for line in output.splitlines()[3:] if line.strip()}
    assert set(rows) == {"floor", "one", "two"}
    assert len(rows["floor"]) == 5 and len(rows["one"]) == len(rows["two"]) == 7  # beyond-floor columns for trees
    assert all(re.fullmatch(r"[+-]\d+\.\d\d", figure) for figure in rows["one"][:3] + rows["one"][5:])
