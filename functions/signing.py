"""Standard Webhooks signatures (standardwebhooks.com), for the deployment's own
endpoints that receive messages from Sluice (the `callback` providers).

The receiver checks `webhook-signature` against the HMAC-SHA256 of
`{webhook-id}.{webhook-timestamp}.{body}` under the shared secret, and rejects a
timestamp far from its clock (replays); `webhook-id` stays the same on every
retry of one message, so the receiver can drop a duplicate delivery.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


def signed_headers(key: bytes, message_id: str, body: bytes) -> dict[str, str]:
    """The three headers that sign `body` as message `message_id` with `key` (the
    secret's decoded bytes, e.g. `SmsSettings.callback_key`), timestamped now."""
    timestamp = str(int(time.time()))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
