"""Stripe webhook events: verify the signature on the raw body, parse, and sign (tests, benchmark).

Pure helpers, no I/O. The webhook route reads the raw body, calls `verify_and_parse`, and acts on the
event after re-reading the PaymentIntent (`StripeGateway.retrieve_intent`): events can arrive late,
twice or out of order, and an event's `data.object` is only a snapshot.

The signature is Stripe's scheme: header `Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>" keyed with the endpoint's secret>` (several v1 entries may appear during a secret
rotation; one match is enough), and a timestamp older than `tolerance` seconds is refused (replays).
Verification itself is the SDK's (`stripe.WebhookSignature.verify_header`).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import stripe

from app.errors import AppError

DEFAULT_TOLERANCE_SECONDS = 300


class BadSignature(AppError):
    status, code = 400, "invalid_signature"


def verify_and_parse(payload: bytes, sig_header: str | None, secret: str,
                     tolerance: int = DEFAULT_TOLERANCE_SECONDS) -> dict[str, Any]:
    """The event as a plain dict, once its signature is verified; BadSignature (400) otherwise:
    missing or malformed header, wrong secret, tampered body, stale timestamp, body not a JSON event."""
    if not sig_header:
        raise BadSignature("Missing Stripe-Signature header")
    if not secret:
        raise BadSignature("No webhook secret is configured")
    try:
        stripe.WebhookSignature.verify_header(payload, sig_header, secret, tolerance)
    except stripe.SignatureVerificationError as exc:
        raise BadSignature(f"Invalid Stripe signature: {exc.user_message}") from exc
    except (UnicodeDecodeError, ValueError) as exc:  # a body that is not UTF-8 cannot be Stripe's
        raise BadSignature("Invalid Stripe signature: the body is not UTF-8") from exc
    try:
        event = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadSignature("The webhook body is not valid JSON") from exc
    if not (isinstance(event, dict) and isinstance(event.get("id"), str)
            and isinstance(event.get("type"), str) and isinstance(event.get("data"), dict)):
        raise BadSignature("The webhook body is not a Stripe event")
    return event


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header for `payload`, exactly as Stripe makes it."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    digest = hmac.new(secret.encode("utf-8"), b"%d." % ts + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def build_event(event_type: str, data_object: dict[str, Any], *, event_id: str | None = None,
                created: int | None = None, api_version: str | None = None) -> bytes:
    """The raw body of a Stripe event (for tests and the benchmark, to send the events localstripe
    does not send, e.g. `payment_intent.amount_capturable_updated`), to be signed with `sign`."""
    event = {
        "id": event_id or f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": api_version or stripe.api_version,
        "created": int(time.time()) if created is None else int(created),
        "type": event_type,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": data_object},
    }
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode("utf-8")


def payment_intent_id(event: dict[str, Any]) -> str | None:
    """The PaymentIntent an event is about: its object's id for `payment_intent.*` events, the
    object's `payment_intent` for charge, refund and dispute events; None otherwise."""
    obj = (event.get("data") or {}).get("object") or {}
    if not isinstance(obj, dict):
        return None
    if obj.get("object") == "payment_intent" or str(event.get("type", "")).startswith("payment_intent."):
        value = obj.get("id")
    else:
        value = obj.get("payment_intent")
    if isinstance(value, dict):  # expanded
        value = value.get("id")
    return value if isinstance(value, str) else None
