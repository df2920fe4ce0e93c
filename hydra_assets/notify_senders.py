"""How a notification leaves: a JSON POST to a webhook or an e-mail through the configured SMTP server.

Every way a delivery can fail (refused, unreachable, HTTP error, no answer within the timeout, SMTP
refusal) becomes one `DeliveryError` whose text is recorded on the notification and shown by
`hydra notify list`; nothing else escapes to the caller.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from hydra_assets.db.models import NotificationTarget
from hydra_assets.notify_rules import Event, check_address, email_message, webhook_payload
from hydra_assets.settings import HydraSettings


class DeliveryError(RuntimeError):
    """A message could not be delivered; the text is what `hydra notify list` shows."""


def post_webhook(url: str, payload: dict[str, Any], *, timeout: float) -> None:
    """POST the JSON body; any answer but 2xx, a refused connection or no answer within `timeout` raises."""
    check_address("webhook", url)
    request = urllib.request.Request(
        url, data=json.dumps(payload, default=str).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "hydra-dqm-notify"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(4096)
    except urllib.error.HTTPError as error:
        body = error.read(300).decode(errors="replace").strip()
        raise DeliveryError(f"webhook answered HTTP {error.code} {error.reason}" + (f": {body}" if body else "")) \
            from error
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise DeliveryError(f"webhook gave no answer within {timeout:g} s") from error
        raise DeliveryError(f"webhook unreachable: {error.reason}") from error
    except TimeoutError as error:
        raise DeliveryError(f"webhook gave no answer within {timeout:g} s") from error
    except OSError as error:
        raise DeliveryError(f"webhook unreachable: {error}") from error


def send_email(settings: HydraSettings, events: Sequence[Event], recipient: str, where: str) -> None:
    """Send one e-mail through the configured SMTP server (STARTTLS and login when configured)."""
    if not settings.smtp_host:
        raise DeliveryError("HYDRA_SMTP_HOST is not set: e-mail targets cannot be served")
    message = email_message(events, sender=settings.smtp_from, recipient=recipient, where=where)
    timeout = settings.notify_timeout_seconds
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout) as smtp:
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password or "")
            smtp.send_message(message)
    except TimeoutError as error:
        raise DeliveryError(f"SMTP server {settings.smtp_host}:{settings.smtp_port} gave no answer within "
                            f"{timeout:g} s") from error
    except (smtplib.SMTPException, OSError) as error:
        if isinstance(error.__context__, TimeoutError):  # smtplib reports a timeout as "connection closed"
            raise DeliveryError(f"SMTP server {settings.smtp_host}:{settings.smtp_port} gave no answer within "
                                f"{timeout:g} s") from error
        raise DeliveryError(f"SMTP {settings.smtp_host}:{settings.smtp_port}: {error}") from error


def deliver(settings: HydraSettings, target: NotificationTarget, events: Sequence[Event]) -> None:
    """One message with every event to one target; raises DeliveryError with the reason."""
    where = target.group_name or ""
    if target.kind == "webhook":
        post_webhook(target.address, webhook_payload(events, where), timeout=settings.notify_timeout_seconds)
    elif target.kind == "email":
        send_email(settings, events, target.address, where)
    else:
        raise DeliveryError(f"unknown target kind {target.kind!r}")
