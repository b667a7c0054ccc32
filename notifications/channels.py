"""Delivery channels: a folder of ``.eml`` files, SMTP, and a signed JSON webhook.

Every channel takes a queued notice (a row of the outbox) and either returns or raises
``DeliveryError``. Each message carries the notice's stable Message-ID, so a receiver can drop a
duplicate sent again after a crash between sending and marking sent. Building the message is
pure (``build_email``); sending is the channel's only I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "Channel",
    "DeliveryError",
    "EmlChannel",
    "SmtpChannel",
    "WebhookChannel",
    "build_email",
    "sign",
]


class DeliveryError(Exception):
    """A delivery attempt failed; the dispatcher retries it later."""


class Channel(Protocol):
    name: str

    def send(self, notice: Any) -> None: ...


def build_email(notice: Any, sender: str) -> EmailMessage:
    message = EmailMessage()
    recipients = notice.recipients or {}
    message["Message-ID"] = notice.message_id
    message["Date"] = format_datetime(notice.created_at)
    message["From"] = sender
    message["To"] = ", ".join(r["email"] for r in recipients.get("action", []) if r.get("email"))
    info = [r["email"] for r in recipients.get("info", []) if r.get("email")]
    if info:
        message["Cc"] = ", ".join(info)
    message["Subject"] = notice.subject
    message["X-Regul-Reference"] = notice.reference
    message.set_content(notice.body_text)
    message.add_alternative(notice.body_html, subtype="html")
    return message


@dataclass
class EmlChannel:
    """Writes each notice as ``<reference>.eml`` in a folder (the embedded default)."""

    folder: Path
    sender: str = "regul@localhost"
    name: str = "eml"

    def send(self, notice: Any) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            stem = notice.reference.replace(" ", "_").replace("°", "o").replace("/", "-")
            final = self.folder / f"{stem}.eml"
            partial = self.folder / f".{stem}.eml.part"
            partial.write_bytes(bytes(build_email(notice, self.sender)))
            os.replace(partial, final)  # a reader never sees half a message
        except OSError as exc:
            raise DeliveryError(f"cannot write to {self.folder}: {exc}") from exc


@dataclass
class SmtpChannel:
    host: str
    port: int = 25
    starttls: bool = False
    username: str = ""
    password: str = ""
    sender: str = "regul@localhost"
    timeout: float = 10.0
    name: str = "smtp"

    def send(self, notice: Any) -> None:
        message = build_email(notice, self.sender)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password)
                refused = smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port}: {exc}") from exc
        if refused:
            raise DeliveryError(f"SMTP {self.host}:{self.port} refused {sorted(refused)}")


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class WebhookChannel:
    """POSTs the notice as JSON with an HMAC-SHA256 signature of the body."""

    url: str
    secret: str
    timeout: float = 10.0
    name: str = "webhook"

    def send(self, notice: Any) -> None:
        body = json.dumps(
            {
                "message_id": notice.message_id,
                "reference": notice.reference,
                "kind": notice.kind,
                "case_id": notice.case_id,
                "subject": notice.subject,
                "text": notice.body_text,
                "html": notice.body_html,
                "recipients": notice.recipients,
            },
            ensure_ascii=False,
        ).encode()
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Regul-Message-Id": notice.message_id,
                "X-Regul-Signature": sign(self.secret, body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"webhook {self.url} answered {exc.code}") from exc
        except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
            raise DeliveryError(f"webhook {self.url}: {exc!r}") from exc
        if not 200 <= status < 300:
            raise DeliveryError(f"webhook {self.url} answered {status}")
