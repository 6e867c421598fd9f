"""wattfare_embed: let your app's users pay for their own AI.

```python
from wattfare_embed import Wattfare

wf = Wattfare(resolve_user=current_user_id, app_name="Acme Chat")
app.mount("/wattfare", wf)
```
"""

from .alerts import BudgetAlert, verify_alert
from .app import Session, Wattfare
from .client import WattfareUser, is_budget_exceeded, is_not_connected, to_wattfare_error, user_id_header
from .consent import ConsentAuthority, DevConsent, FundingGrant, HostedConsent, OpenRouterConsent
from .errors import (
    AuthError,
    BudgetExceededError,
    ConfigurationError,
    FundingInvalidError,
    GrantInvalidError,
    InvalidRequestError,
    NotConnectedError,
    PayloadTooLargeError,
    RateLimitedError,
    RequestTimeoutError,
    UnavailableError,
    UpstreamError,
    WattfareError,
)
from .grant_client import WattfareGrant, grant_header
from .grants import GrantStatus
from .keys import AppKeys, new_key_pair
from .middleware import WattfareMiddleware
from .status import ConnectionStatus
from .store import PoolSizes, SqlStore, Store, metadata, migrations
from .telemetry import Telemetry

__all__ = [
    "AppKeys",
    "AuthError",
    "BudgetAlert",
    "BudgetExceededError",
    "ConfigurationError",
    "ConnectionStatus",
    "ConsentAuthority",
    "DevConsent",
    "FundingGrant",
    "FundingInvalidError",
    "GrantInvalidError",
    "GrantStatus",
    "HostedConsent",
    "InvalidRequestError",
    "NotConnectedError",
    "OpenRouterConsent",
    "PayloadTooLargeError",
    "PoolSizes",
    "RateLimitedError",
    "RequestTimeoutError",
    "Session",
    "SqlStore",
    "Store",
    "Telemetry",
    "UnavailableError",
    "UpstreamError",
    "Wattfare",
    "WattfareError",
    "WattfareGrant",
    "WattfareMiddleware",
    "WattfareUser",
    "grant_header",
    "is_budget_exceeded",
    "is_not_connected",
    "metadata",
    "migrations",
    "new_key_pair",
    "to_wattfare_error",
    "user_id_header",
    "verify_alert",
]
