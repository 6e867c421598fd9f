"""``Telemetry``: what the embed reports about its metered requests, and where."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigurationError

__all__ = ["Telemetry", "UserIds"]

UserIds = Literal["pseudonymous", "raw", "none"]


@dataclass(frozen=True, slots=True)
class Telemetry:
    """Spans, metrics and one log record per metered request.

    ```python
    Wattfare(..., telemetry=Telemetry())                    # the defaults, as without the argument
    Wattfare(..., telemetry=Telemetry(prometheus=True))     # and GET {mount}/metrics
    ```

    - ``opentelemetry``: ``None`` (the default) reports spans and metrics when the
      ``opentelemetry-api`` package is installed and the app set a tracer or meter provider
      before the embed started; ``True`` insists (an error if the package is missing);
      ``False`` never. ``tracer_provider``/``meter_provider`` replace the global ones.
    - ``prometheus``: serve ``GET {mount}/metrics`` (the ``prometheus`` extra), for
      ``Authorization: Bearer <metrics_token>`` (or ``WATTFARE_METRICS_TOKEN``) or the secret key.
    - ``request_logs``: one record per metered request on the ``wattfare_embed.requests``
      logger, at INFO, its figures in the record's attributes (``extra``), for any formatter.
    - ``user_ids``: how spans and log records name the user: ``"pseudonymous"`` (a keyed hash,
      stable per user, meaningless without the secret key), ``"raw"`` (the app's own user id)
      or ``"none"``. Metrics never carry a user.
    """

    opentelemetry: bool | None = None
    tracer_provider: Any = None
    meter_provider: Any = None
    prometheus: bool = False
    metrics_token: str | None = None
    request_logs: bool = True
    user_ids: UserIds = "pseudonymous"

    def __post_init__(self) -> None:
        if self.user_ids not in ("pseudonymous", "raw", "none"):
            raise ConfigurationError(f"Telemetry(user_ids=…) is 'pseudonymous', 'raw' or 'none', not {self.user_ids!r}")
        if self.metrics_token is not None and len(self.metrics_token) < 16:
            raise ConfigurationError("Telemetry(metrics_token=…) must be at least 16 characters")

    @property
    def scrape_token(self) -> str | None:
        """The token ``/metrics`` accepts besides the secret key."""
        return self.metrics_token or os.environ.get("WATTFARE_METRICS_TOKEN") or None
