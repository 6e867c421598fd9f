"""Hand a request to the embed as if it were mounted at a given path.

Framework shells (FastAPI routes, Litestar handlers) receive requests at full
paths such as ``/wattfare/api/v1/connections``; the embed routes on the part
after its mount path and builds callback URLs from ``root_path``, exactly as
under Starlette's ``Mount``.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["forward_to_embed"]


async def forward_to_embed(
    embed: ASGIApp, mount_path: str, scope: Scope | Any, receive: Receive | Any, send: Send | Any
) -> None:
    mounted = dict(scope)
    mounted["root_path"] = mount_path
    await embed(mounted, receive, send)
