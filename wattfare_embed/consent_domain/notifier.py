"""Telling a user they passed a share of their budget: a pluggable ``Notifier``, SMTP built in.

A notice is queued in the domain's outbox with the threshold it reports (once per user, month and
threshold) and delivered from there, retried like a webhook until it goes out.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Protocol

__all__ = ["BudgetNotice", "Notifier", "SmtpNotifier"]


@dataclass(frozen=True, slots=True)
class BudgetNotice:
    user_id: str
    email: str | None  # None when the deployment's own login has no address for the user
    percent: int
    period: str
    budget_usd: str
    used_usd: str
    domain: str

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> BudgetNotice:
        return cls(
            user_id=str(payload["user_id"]),
            email=payload.get("email"),
            percent=int(payload["percent"]),
            period=str(payload["period"]),
            budget_usd=str(payload["budget_usd"]),
            used_usd=str(payload["used_usd"]),
            domain=str(payload.get("domain", "Wattfare")),
        )


class Notifier(Protocol):
    async def notify(self, notice: BudgetNotice) -> None:
        """Deliver the notice, or raise (it is retried)."""


class SmtpNotifier:
    """E-mail through an SMTP server (``starttls`` and a login when given), within ``timeout``."""

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 15.0,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        self._username, self._password = username, password
        self.starttls, self.timeout = starttls, timeout

    def message(self, notice: BudgetNotice) -> EmailMessage:
        if not notice.email:
            raise ValueError(f"user {notice.user_id} has no e-mail address")
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = notice.email
        message["Subject"] = f"You have used {notice.percent}% of your AI budget"
        message.set_content(
            f"You have used ${notice.used_usd} of your ${notice.budget_usd} AI budget for {notice.period} "
            f"({notice.percent}% or more), across every app connected to your {notice.domain} budget.\n\n"
            "Your budget page shows what each app spent, and lets you lower a cap or revoke an app.\n"
        )
        return message

    async def notify(self, notice: BudgetNotice) -> None:
        message = self.message(notice)
        await asyncio.wait_for(asyncio.to_thread(self._send, message), self.timeout + 5)

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self._username and self._password:
                smtp.login(self._username, self._password)
            smtp.send_message(message)
