"""What driftline sends to receivers: Alertmanager's API v2 alerts and webhook bodies.

Pure functions, no I/O. An alert event (DESIGN.md) becomes

* for Alertmanager, one element of ``POST /api/v2/alerts``: ``labels`` ``alertname``
  (the kind), ``model``, ``version``, ``severity``, ``alert_id`` and, where set,
  ``feature`` and ``segment``; ``annotations.summary`` (the message); ``startsAt``;
  ``endsAt``; ``generatorURL`` (the dashboard). The ``alert_id`` label is the
  *episode's* id (the alert id without ``.firing`` / ``.resolved``): Alertmanager
  identifies an alert by its label set, so the resolve must carry the same labels as
  the firing it ends;
* for a webhook, the alert event itself plus a Slack-compatible ``text``, with the
  headers ``Idempotency-Key`` (the alert id, header-safe: :func:`idempotency_key`),
  ``X-Driftline-Timestamp`` (epoch seconds of the attempt) and, with a key,
  ``X-Driftline-Signature: v1=<hex>``: HMAC-SHA256 of
  ``"{timestamp}\n{idempotency key}\n"`` + the exact body bytes. Signing the time and
  the key too (issue 30) lets a receiver refuse a captured request replayed later
  (an old timestamp) or under another key; each webhook may have its own secret.

>>> alert = {"alert_id": "m.v1.data_drift.x.1.firing", "model": "m", "version": 1,
...          "kind": "data_drift", "status": "firing", "severity": "warning",
...          "detector": "psi", "feature": "x", "segment": None, "ts": 0.0,
...          "metrics": {}, "message": "x drifted."}
>>> am = alertmanager_alert(alert, "http://dash/", now=0.0, resend_interval=60)
>>> am["labels"]["alert_id"], am["labels"]["alertname"], am["startsAt"], am["endsAt"]
('m.v1.data_drift.x.1', 'data_drift', '1970-01-01T00:00:00Z', '1970-01-01T00:04:00Z')
>>> webhook_text(alert)
':warning: *data_drift* firing for m v1 (feature x): x drifted.'
>>> h = signed_headers(b'{"a":1}', "m.v1.kind.1.firing", "k", now=1700000000.7)
>>> h["Idempotency-Key"], h["X-Driftline-Timestamp"]
('m.v1.kind.1.firing', '1700000000')
>>> h["X-Driftline-Signature"]
'v1=8348a2bf1f1c3c5ca18c60ed0413aa7ae87b6868585153984b8838930fe11196'
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson

from driftline.agents.monitor.alerting import episode_of

SIGNATURE_HEADER = "X-Driftline-Signature"
TIMESTAMP_HEADER = "X-Driftline-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Prometheus sends endsAt = now + 4 x its resend delay, so an alert a sender stops
# re-sending (it crashed, or the alert was silenced meanwhile) ends by itself.
ENDS_AFTER_RESENDS = 4
# What an HTTP header value cannot hold (aiohttp refuses it as a header injection), and
# the escape character itself, so that the escaping can be undone.
_NOT_IN_HEADER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f%]")

# The episode of an alert id: one rule, the monitor's, for every reader (issue 30).
episode_id = episode_of


def iso(ts: float) -> str:
    """Epoch seconds as RFC 3339 UTC, Alertmanager's time format."""
    stamp = datetime.fromtimestamp(ts, tz=UTC)
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    if stamp.microsecond:
        text += f".{stamp.microsecond:06d}".rstrip("0")
    return text + "Z"


def generator_url(base: str, model: str) -> str:
    return f"{base}?model={quote(model, safe='')}"


def alertmanager_alert(alert: dict[str, Any], dashboard: str, *, now: float,
                       resend_interval: float, started: float | None = None) -> dict[str, Any]:
    """One element of Alertmanager's ``POST /api/v2/alerts`` body.

    ``started``: when the episode fired (a resolve carries only its own time); ``now``
    and ``resend_interval`` set a firing alert's ``endsAt`` to when Alertmanager should
    give up on it without a re-send."""
    labels = {"alertname": alert["kind"], "model": alert["model"],
              "version": "none" if alert.get("version") is None else str(alert["version"]),
              "severity": alert["severity"], "alert_id": episode_id(alert["alert_id"])}
    for name in ("feature", "segment"):
        if alert.get(name) is not None:
            labels[name] = str(alert[name])
    if alert["kind"] == "data_quality":  # its check: what a route or a silence matches
        labels["check"] = str(alert.get("detector", ""))
    resolved = alert["status"] == "resolved"
    starts = started if started is not None else float(alert["ts"])
    ends = float(alert["ts"]) if resolved else now + ENDS_AFTER_RESENDS * resend_interval
    return {"labels": labels,
            "annotations": {"summary": alert["message"], "detector": alert.get("detector", "")},
            # Alertmanager refuses an end before the start (a firing alert's event time
            # can be later than now + 4 re-sends: a producer's clock, a wrong timestamp).
            "startsAt": iso(min(starts, ends)),
            "endsAt": iso(ends),
            "generatorURL": generator_url(dashboard, alert["model"])}


def slack_escape(text: str) -> str:
    """``&``, ``<`` and ``>`` as Slack's mrkdwn wants them, so a name in an alert can
    neither mention (``<!channel>``) nor link (``<https://x|y>``).

    >>> slack_escape("<!channel> & <https://evil|click>")
    '&lt;!channel&gt; &amp; &lt;https://evil|click&gt;'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_text(alert: dict[str, Any]) -> str:
    """The one line a chat channel shows (Slack's ``text``, mrkdwn). Every part that
    came from a producer (model, feature, segment, message) is escaped (issue 30)."""
    icon = (":white_check_mark:" if alert["status"] == "resolved"
            else ":rotating_light:" if alert["severity"] == "critical" else ":warning:")
    version = "" if alert.get("version") is None else f" v{alert['version']}"
    where = "".join(f" ({name} {slack_escape(str(alert[name]))})"
                    for name in ("feature", "segment") if alert.get(name) is not None)
    return (f"{icon} *{slack_escape(alert['kind'])}* {alert['status']} for "
            f"{slack_escape(alert['model'])}{version}{where}: {slack_escape(alert['message'])}")


def webhook_body(alert: dict[str, Any]) -> bytes:
    """The alert event as JSON with ``text`` added (the exact bytes that are signed)."""
    return orjson.dumps({**alert, "text": webhook_text(alert)})


def idempotency_key(alert_id: str) -> str:
    """The ``Idempotency-Key`` of an alert: its id with control characters and ``%``
    percent-encoded (``urllib.parse.unquote`` gives the id back). An id can hold them:
    it quotes the feature and segment names producers choose.

    >>> idempotency_key("m.v1.data_drift.a\\nb.1.firing"), idempotency_key("m.v1.x.1.firing")
    ('m.v1.data_drift.a%0Ab.1.firing', 'm.v1.x.1.firing')
    """
    return _NOT_IN_HEADER.sub(lambda m: quote(m.group()), alert_id)


def signed_content(timestamp: int, key: str, body: bytes) -> bytes:
    """What the signature covers: ``"{timestamp}\n{key}\n"`` + the body. (A header
    value holds no newline, so the parts cannot be shifted into one another.)"""
    return f"{timestamp}\n{key}\n".encode() + body


def signature(timestamp: int, key: str, body: bytes, secret: str) -> str:
    """``X-Driftline-Signature``: ``v1=`` + hex HMAC-SHA256 of :func:`signed_content`."""
    digest = hmac.new(secret.encode(), signed_content(timestamp, key, body),
                      hashlib.sha256).hexdigest()
    return f"v1={digest}"


def signed_headers(body: bytes, alert_id: str, secret: str, *, now: float) -> dict[str, str]:
    """The headers of one webhook attempt (made again for each retry, so a receiver
    back after an outage gets a fresh timestamp); unsigned without ``secret``. The key
    signed is the header's value, :func:`idempotency_key` of the alert id."""
    key = idempotency_key(alert_id)
    timestamp = int(now)
    headers = {IDEMPOTENCY_HEADER: key, TIMESTAMP_HEADER: str(timestamp)}
    if secret:
        headers[SIGNATURE_HEADER] = signature(timestamp, key, body, secret)
    return headers
