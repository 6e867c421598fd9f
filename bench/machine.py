"""The machine a run happened on, printed with every result so figures are never read without it."""

from __future__ import annotations

import os
import platform
import sqlite3
from importlib import metadata
from pathlib import Path

__all__ = ["describe", "load_average"]

_VERSIONED = ("uvloop", "httptools", "uvicorn", "starlette", "aiohttp", "SQLAlchemy", "asyncpg")


def _cpu_model() -> str:
    model, virtual = "", False
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and " hypervisor" in line:
                virtual = True
    except OSError:
        pass
    return (model or platform.processor() or "unknown CPU") + (" (virtual machine)" if virtual else "")


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return "? GiB"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def describe(postgres_version: str | None = None) -> list[str]:
    """Lines naming the CPU, cores, memory, OS, Python and the libraries that set the speed."""
    libraries = ", ".join(f"{name} {_version(name)}" for name in _VERSIONED)
    databases = f"SQLite {sqlite3.sqlite_version}"
    if postgres_version:
        databases += f", PostgreSQL {postgres_version}"
    return [
        f"CPU: {_cpu_model()}, {os.cpu_count()} cores, {_memory()}; {platform.system()} {platform.release()}",
        f"Python: {platform.python_implementation()} {platform.python_version()}; {libraries}",
        f"databases: {databases}",
    ]
