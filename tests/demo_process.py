"""``make demo``'s runner as a subprocess in a fresh directory, for the demo tests of both consent modes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

REPO = Path(__file__).resolve().parents[1]


@dataclass
class DemoProcess:
    process: subprocess.Popen[str]
    url: str
    output: list[str] = field(default_factory=list)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextmanager
def running_demo_process(cwd: Path, port: int, *arguments: str) -> Iterator[DemoProcess]:
    """``python -m example_apps.fastapi_chat.run_demo --port PORT …`` in ``cwd``, as ``make demo``
    starts it, with no OpenRouter key and no Wattfare settings from the environment; stopped with
    Ctrl-C afterwards, as a developer stops it."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("WATTFARE_", "OPENROUTER_", "PYTHONUNBUFFERED"))
    }
    env["PYTHONPATH"] = str(REPO)
    command = [sys.executable, "-m", "example_apps.fastapi_chat.run_demo", "--port", str(port), *arguments]
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stdout = process.stdout
    assert stdout is not None
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: any(url in line for line in output) or process.poll() is not None, "the printed URL")
        assert process.poll() is None, "".join(output)

        def answers() -> bool:
            try:
                return httpx2.get(url + "/me", timeout=1).status_code == 200
            except httpx2.TransportError:
                return False

        wait_for(answers, "the demo to answer")
        yield DemoProcess(process, url, output)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(timeout=5)
        stdout.close()
