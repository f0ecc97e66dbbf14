"""Verifying a CRMExtender webhook (the README's snippet; tests/triggers runs this very file).

Each call carries ``X-CRM-Signature: t=<unix seconds>,v1=<hex>``, where the hex is
HMAC-SHA256 of ``<t> + "." + <raw request body>`` under the trigger's secret. Check it against
the raw bytes (before any JSON parsing), in constant time, and refuse old timestamps (replays).
"""
import hashlib
import hmac
import time


def verify_webhook(secret: str, body: bytes, signature_header: str, tolerance: int = 300,
                   now: float | None = None) -> bool:
    """True if ``signature_header`` signs ``body`` with ``secret`` within ``tolerance`` seconds."""
    parts = dict(item.split("=", 1) for item in signature_header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))
