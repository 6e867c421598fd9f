"""Monthly cost reports in the FOCUS column set (the FinOps Open Cost and Usage Specification).

One row per user and model and month, summed from the ledger in integer micro-dollars and
written as exact decimal strings (never a float): the report of a closed month adds up to the
ledger's charges for it to the micro-dollar. Costs are what was charged to users' budgets,
so BilledCost, EffectiveCost, ListCost and ContractedCost are all the same figure (no
discounts or commitments apply); ``x_EstimatedCost`` says how much of it is the embed's own
estimate, not yet confirmed by the upstream's figure.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from .money import Micros, usd_text
from .periods import period_bounds

__all__ = ["FOCUS_COLUMNS", "ReportLine", "focus_rows", "parse_month", "render"]

MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")

# FOCUS 1.x columns an AI-usage report can fill, then extensions (``x_``, as the spec names them).
FOCUS_COLUMNS = (
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "BillingCurrency",
    "BillingAccountId",
    "BillingAccountName",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ConsumedQuantity",
    "ConsumedUnit",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "InvoiceIssuerName",
    "ServiceCategory",
    "ServiceName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "SubAccountId",
    "SubAccountName",
    "x_AppId",
    "x_Requests",
    "x_TokensIn",
    "x_TokensOut",
    "x_EstimatedCost",
    "x_BilledCostMicros",
)


@dataclass(frozen=True, slots=True)
class ReportLine:
    """What one row of a report sums: one user's (``sub_account``) charges for one model in a month."""

    billing_account: str  # who pays: the app (embed) or the consent domain's operator
    billing_account_name: str
    sub_account: str  # whose budget: the app's user id, or the domain's user
    app_id: str
    model: str  # the resource charged for: a model (the embed), an app (the consent domain)
    requests: int | None  # None: not counted (the consent domain sees keys' spend, not requests)
    cost: Micros
    estimated_cost: Micros
    tokens_in: int
    tokens_out: int
    resource_type: str = "Model"
    resource_name: str | None = None


def parse_month(value: str) -> str:
    """``YYYY-MM`` as given, or ``ValueError``."""
    if not MONTH.fullmatch(value):
        raise ValueError(f"a month looks like 2026-11, not {value[:20]!r}")
    return value


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def focus_rows(lines: Iterable[ReportLine], month: str) -> list[dict[str, str]]:
    start, end = (_iso(moment) for moment in period_bounds(month))
    rows = []
    for line in lines:
        cost = usd_text(line.cost)
        tokens = line.tokens_in + line.tokens_out
        publisher = line.model.split("/", 1)[0] if "/" in line.model and line.resource_type == "Model" else ""
        counted = "" if line.requests is None else str(line.requests)
        described = f"{counted} metered requests to" if line.requests is not None else "metered spend of"
        rows.append(
            {
                "BilledCost": cost,
                "EffectiveCost": cost,
                "ListCost": cost,
                "ContractedCost": cost,
                "BillingCurrency": "USD",
                "BillingAccountId": line.billing_account,
                "BillingAccountName": line.billing_account_name,
                "BillingPeriodStart": start,
                "BillingPeriodEnd": end,
                "ChargePeriodStart": start,
                "ChargePeriodEnd": end,
                "ChargeCategory": "Usage",
                "ChargeClass": "",
                "ChargeDescription": f"{described} {line.resource_name or line.model}",
                "ChargeFrequency": "Usage-Based",
                "ConsumedQuantity": str(tokens),
                "ConsumedUnit": "Tokens",
                "PricingQuantity": str(tokens),
                "PricingUnit": "Tokens",
                "ProviderName": "OpenRouter",
                "PublisherName": publisher,
                "InvoiceIssuerName": "OpenRouter",
                "ServiceCategory": "AI and Machine Learning",
                "ServiceName": "AI model inference",
                "ResourceId": line.model,
                "ResourceName": line.resource_name or line.model,
                "ResourceType": line.resource_type,
                "SubAccountId": line.sub_account,
                "SubAccountName": line.sub_account,
                "x_AppId": line.app_id,
                "x_Requests": counted,
                "x_TokensIn": str(line.tokens_in),
                "x_TokensOut": str(line.tokens_out),
                "x_EstimatedCost": usd_text(line.estimated_cost),
                "x_BilledCostMicros": str(line.cost),
            }
        )
    return rows


def render(rows: Sequence[dict[str, str]], output_format: str) -> str:
    """The rows as CSV (a header line, then one line each) or as a JSON array of objects."""
    if output_format == "json":
        return json.dumps(list(rows), indent=2) + "\n"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FOCUS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({name: _spreadsheet_safe(value) for name, value in row.items()} for row in rows)
    return buffer.getvalue()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def _spreadsheet_safe(value: str) -> str:
    """A text cell a spreadsheet would run as a formula (a user id or model name starting with
    ``=``, ``+``, ``-``, ``@``) goes out behind a ``'``, as OWASP advises for CSV; numbers stay."""
    if value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value
