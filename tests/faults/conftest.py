"""The fault suite reuses the proxy suite's stack (the fake upstream and the embed under real uvicorn)."""

from tests.proxy.conftest import lite, proxy

__all__ = ["lite", "proxy"]
