"""Deployment notifications: a webhook receives JSON on start, success, failure and rollback.

The body carries a Slack-compatible ``text`` beside the structured fields. A
notification that cannot be delivered warns; it never fails a deployment.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from surefoot.config.settings import NotificationSettings
from surefoot.store import now_iso

EVENT_WORDS = {
    "started": "started",
    "completed": "succeeded",
    "failed": "failed",
    "rolled-back": "failed and was rolled back",
    "interrupted": "was interrupted",
}


@dataclass
class Notifier:
    settings: NotificationSettings
    project: str
    warn: Callable[[str], None]

    def payload(self, event: str, deployment_id: int, message: str, phase: str | None,
                words: str | None = None, extra: dict[str, object] | None = None) -> dict[str, object]:
        word = words or EVENT_WORDS.get(event, event)
        text = f"[{self.project}/{self.settings.environment}] deployment #{deployment_id} {word}"
        if message:
            text += f": {message}"
        return {
            "event": event,
            "status": event,
            "project": self.project,
            "environment": self.settings.environment,
            "deployment": deployment_id,
            "version": deployment_id,
            "phase": phase,
            "message": message,
            "host": socket.gethostname(),
            "at": now_iso(),
            "text": text,
            **(extra or {}),
        }

    def send(self, event: str, deployment_id: int, message: str = "", phase: str | None = None, *,
             words: str | None = None, extra: dict[str, object] | None = None) -> None:
        """Post one event. ``words`` replaces the event's wording in ``text``; ``extra`` adds keys."""
        url = self.settings.webhook
        if not url:
            return
        body = json.dumps(self.payload(event, deployment_id, message, phase, words, extra)).encode()
        request = urllib.request.Request(
            url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "surefoot"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout) as response:
                response.read(1024)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            self.warn(f"the {event} notification could not be delivered to the webhook: {reason}")
