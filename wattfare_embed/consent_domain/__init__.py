"""The self-hostable reference consent domain (docs/self-hosting.md).

```python
from wattfare_embed.consent_domain import ConsentDomain, DomainSettings

domain = ConsentDomain(DomainSettings(database_url="sqlite+aiosqlite:///consent.db",
                                      public_url="https://consent.example.com",
                                      management_key="sk-or-v1-…"))
```

Needs the ``consent-domain`` extra (``pip install "wattfare-embed[consent-domain]"``); the
names are imported on first use, so the ``wattfare`` command runs without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import ConsentDomain
    from .config import DEFAULT_DOMAIN_DATABASE_URL, DomainSettings
    from .login import Authenticate
    from .revisions import migrations

__all__ = ["DEFAULT_DOMAIN_DATABASE_URL", "Authenticate", "ConsentDomain", "DomainSettings", "migrations"]

_HOMES = {
    "ConsentDomain": ".app",
    "DomainSettings": ".config",
    "DEFAULT_DOMAIN_DATABASE_URL": ".config",
    "Authenticate": ".login",
    "migrations": ".revisions",  # the wcd_ tables' revisions, for a host's own Alembic (README)
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home, __name__), name)
