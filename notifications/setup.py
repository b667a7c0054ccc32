"""Wiring notices from settings: the outbox notifier, the channels and the dispatch policy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import InputError
from engine.settings import Settings
from engine.workflow import WorkflowRegistry, parse_duration
from notifications.outbox import Outbox
from notifications.rules import NoticeBook

if TYPE_CHECKING:  # delivery (smtplib, http, the dispatcher) loads only where a worker runs
    from notifications.channels import Channel
    from notifications.dispatcher import DispatchPolicy

__all__ = ["build_channels", "build_outbox", "dispatch_policy"]


def build_outbox(
    settings: Settings, registry: WorkflowRegistry, books: dict[str, NoticeBook]
) -> Outbox:
    channels = dict(settings.notice_channels)
    default = settings.notice_channel
    return Outbox(registry, books, channel_for=lambda org: channels.get(org, default))


def build_channels(settings: Settings) -> dict[str, Channel]:
    from notifications.channels import EmlChannel, SmtpChannel, WebhookChannel

    channels: dict[str, Channel] = {
        "eml": EmlChannel(Path(settings.eml_dir), sender=settings.smtp_sender),
        "smtp": SmtpChannel(
            host=settings.smtp_host,
            port=settings.smtp_port,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            sender=settings.smtp_sender,
            timeout=settings.smtp_timeout,
        ),
    }
    used = {settings.notice_channel, *settings.notice_channels.values()}
    if "webhook" in used and not (settings.webhook_url and settings.webhook_secret):
        raise InputError(
            "the webhook channel is configured but REGUL_WEBHOOK_URL or REGUL_WEBHOOK_SECRET "
            "is empty: set both"
        )
    if settings.webhook_url:
        channels["webhook"] = WebhookChannel(settings.webhook_url, settings.webhook_secret)
    return channels


def dispatch_policy(settings: Settings) -> DispatchPolicy:
    from notifications.dispatcher import DispatchPolicy

    try:
        backoff = parse_duration(settings.notice_backoff)
    except InputError as exc:
        raise InputError(f"bad REGUL_NOTICE_BACKOFF: {exc.message}") from None
    return DispatchPolicy(max_attempts=settings.notice_max_attempts, backoff=backoff)
