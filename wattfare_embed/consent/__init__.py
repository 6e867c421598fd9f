"""Consent authorities: where a user approves a monthly cap."""

from .base import AuthorityContext, AuthorizeRequest, ConsentAuthority, FundingGrant
from .dev import DevConsent
from .hosted import HostedConsent
from .openrouter import OpenRouterConsent

__all__ = [
    "AuthorityContext",
    "AuthorizeRequest",
    "ConsentAuthority",
    "DevConsent",
    "FundingGrant",
    "HostedConsent",
    "OpenRouterConsent",
]
