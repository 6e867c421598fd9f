"""A peer in the same table: LiteLLM's proxy, one worker, no database, pointed at the same fake upstream.

``make bench-peers`` installs the pinned version into ``bench/.venv-litellm``. The proxy is started
with every remote lookup it has switched off (model cost map, Anthropic beta headers, blog posts,
policy templates, router presets), and the run checks that it really answered from the fake and
that it held no connection to anything but loopback.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
from pathlib import Path

from wattfare_embed.testing.live_server import free_port

from .load import MODEL, Endpoint
from .servers import UPSTREAM_KEY, Fleet, Server

__all__ = ["SLOW_MODEL", "LiteLLM", "non_loopback_peers"]

SLOW_MODEL = "bench-slow"  # the alias LiteLLM routes to the slow fake upstream

_OFFLINE = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOG": "ERROR",
    "LITELLM_TELEMETRY": "False",
    "DO_NOT_TRACK": "1",
}
# Set, these would make it open a database, a cache or a callback target.
_UNSET = ("DATABASE_URL", "REDIS_URL", "REDIS_HOST", "LITELLM_MASTER_KEY", "STORE_MODEL_IN_DB")


class LiteLLM:
    """Configuration and launch of LiteLLM's proxy for one run."""

    def __init__(self, executable: Path) -> None:
        self.executable = executable
        self.master_key = "sk-" + secrets.token_hex(32)
        self.server: Server | None = None

    def version(self) -> str:
        python = self.executable.parent / "python"
        script = "from importlib.metadata import version; print(version('litellm'))"
        return subprocess.run([str(python), "-c", script], capture_output=True, text=True, check=True).stdout.strip()

    def start(self, fleet: Fleet, workdir: Path, fast: Server, slow: Server) -> Server:
        def deployment(alias: str, upstream: Server) -> dict[str, object]:
            # The "openai/" provider prefix makes it an OpenAI-compatible endpoint at api_base;
            # the rest is the model name the fake serves.
            params = {"model": f"openai/{MODEL}", "api_base": upstream.base + "/api/v1", "api_key": UPSTREAM_KEY}
            return {"model_name": alias, "litellm_params": params}

        config = {
            "model_list": [deployment(MODEL, fast), deployment(SLOW_MODEL, slow)],
            "litellm_settings": {"telemetry": False, "drop_params": True},
            "general_settings": {"master_key": self.master_key},
        }
        path = workdir / "litellm.yaml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        env = {name: value for name, value in os.environ.items() if name not in _UNSET} | _OFFLINE
        port = free_port()
        argv = [str(self.executable), "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
        argv += ["--num_workers", "1"]
        self.server = fleet.spawn("LiteLLM", argv, port=port, env=env)
        return self.server

    def endpoint(self, model: str = MODEL) -> Endpoint:
        assert self.server is not None
        headers = {"authorization": f"Bearer {self.master_key}"}
        return Endpoint(self.server.base + "/v1/chat/completions", headers, model)


def _children(pid: int) -> list[int]:
    found = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.extend(_children(int(entry.name)))
    return found


def _remote(hex_address: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    # /proc prints addresses as little-endian 32-bit words.
    ordered = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.IPv4Address(ordered) if len(raw) == 4 else ipaddress.IPv6Address(ordered)
    return address, int(port, 16)


def _on_this_machine(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def non_loopback_peers(pid: int) -> list[str]:
    """Remote addresses of the process's (and its children's) sockets that are not on this machine."""
    found: list[str] = []
    for process in _children(pid):
        inodes: set[str] = set()
        try:
            for fd in (Path("/proc") / str(process) / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
        for table in ("tcp", "tcp6", "udp", "udp6"):
            try:
                lines = (Path("/proc") / str(process) / "net" / table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                address, port = _remote(fields[2])
                if fields[9] in inodes and not _on_this_machine(address):
                    found.append(f"{table} {address}:{port}")
    return found
