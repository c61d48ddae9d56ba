"""StripeGateway against localstripe (a real HTTP Stripe fake in a subprocess), and the webhook
signature helpers. No database: these exercise the adapter and the SDK calls it makes."""
from __future__ import annotations

import json
import time
import uuid
from urllib.parse import parse_qs

import httpx
import pytest
import stripe

from app.config import Settings
from app.errors import AppError
from app.payments.factory import make_gateway
from app.payments.port import AuthorizeRequest, Capture, IntentState, RefundResult
from app.payments.stripe_events import BadSignature, build_event, payment_intent_id, sign, verify_and_parse
from app.payments.stripe_gateway import (
    PaymentConflict,
    PaymentNotFound,
    PaymentProviderMisconfigured,
    PaymentProviderUnavailable,
    StripeGateway,
    map_stripe_error,
)
from tests.stripe_harness import (
    TEST_API_KEY,
    VISA_CHARGE_DECLINED,
    LocalStripe,
    WebhookSink,
    confirm_payment_intent,
    disable_webhook,
    free_port,
    list_payment_intents,
    register_webhook,
)

# The harness's session fixtures (`localstripe`, `localstripe_url`) come from tests/conftest.py.

WHSEC = "whsec_test_coopgig"


def stripe_settings(api_base: str, api_key: str = TEST_API_KEY) -> Settings:
    return Settings(environment="test", stripe_api_key=api_key, stripe_api_base=api_base,
                    stripe_webhook_secret=WHSEC)


@pytest.fixture
async def gateway(localstripe_url: str):
    gw = StripeGateway(stripe_settings(localstripe_url), max_network_retries=0)
    yield gw
    await gw.aclose()


def request(amount: int = 12_000, *, key: str | None = None,
            booking_id: str | None = None) -> AuthorizeRequest:
    booking_id = booking_id or str(uuid.uuid4())
    return AuthorizeRequest(booking_id=booking_id, cooperative_slug="velo-coop", amount_cents=amount,
                            currency="EUR", description=f"coopgig booking {booking_id}",
                            idempotency_key=key or f"booking:{booking_id}:authorize")


async def authorized(gw: StripeGateway, url: str, amount: int = 12_000) -> str:
    """An intent held for `amount`: created by the gateway, confirmed by 'the client's app'."""
    auth = await gw.authorize(request(amount))
    confirmed = await confirm_payment_intent(url, auth.payment_intent_id, auth.client_secret)
    assert confirmed["status"] == "requires_capture"
    return auth.payment_intent_id


def key() -> str:
    return f"test:{uuid.uuid4()}"


# --- the port: authorize, capture, release --------------------------------------------------------

async def test_authorize_confirm_then_capture_less_than_authorized(gateway, localstripe_url):
    req = request(12_000)
    auth = await gateway.authorize(req)
    assert auth.provider == "stripe" and auth.payment_intent_id.startswith("pi_")
    assert auth.status == "requires_confirmation" and auth.client_secret.startswith(auth.payment_intent_id)

    intent = await gateway.intent_details(auth.payment_intent_id)
    assert intent["status"] == "requires_payment_method"
    assert intent["amount"] == 12_000 and intent["currency"] == "eur" and intent["capture_method"] == "manual"
    assert intent["metadata"]["booking_id"] == req.booking_id
    assert intent["metadata"]["cooperative"] == "velo-coop"
    assert intent["metadata"]["description"] == req.description  # localstripe refuses `description`
    assert intent["amount_received"] == 0 and intent["latest_charge"] is None

    confirmed = await confirm_payment_intent(localstripe_url, auth.payment_intent_id, auth.client_secret)
    assert confirmed["status"] == "requires_capture"
    intent = await gateway.intent_details(auth.payment_intent_id)
    assert intent["status"] == "requires_capture"
    assert intent["amount_capturable"] == 12_000 and intent["amount_received"] == 0
    assert intent["latest_charge"].startswith("ch_")

    capture = await gateway.capture(payment_intent_id=auth.payment_intent_id, amount_cents=9_000,
                                    idempotency_key=key())
    # localstripe's balance transactions say fee 0, which no real card charge has: against a local
    # server the fee is reported unknown (None). settled stays False until the webhook.
    assert capture == Capture(amount_cents=9_000, processing_fee_cents=None, settled=False)

    intent = await gateway.intent_details(auth.payment_intent_id)
    assert intent["status"] == "succeeded"
    assert intent["amount_received"] == 9_000 and intent["amount_capturable"] == 0
    assert intent["amount_refunded"] == 0 and intent["processing_fee_cents"] is None


async def test_same_idempotency_key_gives_the_same_intent(gateway, localstripe_url):
    req = request(5_000)
    first = await gateway.authorize(req)
    again = await gateway.authorize(req)
    assert again == first
    mine = [pi for pi in await list_payment_intents(localstripe_url, limit=1000)
            if pi["metadata"].get("booking_id") == req.booking_id]
    assert [pi["id"] for pi in mine] == [first.payment_intent_id]

    other = await gateway.authorize(request(5_000, booking_id=req.booking_id, key=key()))
    assert other.payment_intent_id != first.payment_intent_id  # another key is another intent


async def test_same_idempotency_key_with_other_parameters_is_refused(gateway):
    req = request(5_000)
    await gateway.authorize(req)
    changed = AuthorizeRequest(**{**req.__dict__, "amount_cents": 6_000})
    with pytest.raises(PaymentConflict) as err:
        await gateway.authorize(changed)
    assert err.value.status == 409 and err.value.code == "idempotency_key_reused"


async def test_authorize_already_held_intent_is_authorized(gateway, localstripe_url):
    req = request(4_000)
    auth = await gateway.authorize(req)
    await confirm_payment_intent(localstripe_url, auth.payment_intent_id, auth.client_secret)
    # A retry with the same key replays the creation (requires_confirmation), as Stripe does.
    assert (await gateway.authorize(req)).status == "requires_confirmation"


async def test_capture_retried_is_a_success(gateway, localstripe_url):
    pi = await authorized(gateway, localstripe_url, 10_000)
    capture_key = key()
    first = await gateway.capture(payment_intent_id=pi, amount_cents=7_500, idempotency_key=capture_key)
    replayed = await gateway.capture(payment_intent_id=pi, amount_cents=7_500, idempotency_key=capture_key)
    other_key = await gateway.capture(payment_intent_id=pi, amount_cents=7_500, idempotency_key=key())
    expected = Capture(amount_cents=7_500, processing_fee_cents=None, settled=False)
    assert first == replayed == other_key == expected
    assert (await gateway.intent_details(pi))["amount_received"] == 7_500


async def test_capture_more_than_authorized_is_refused(gateway, localstripe_url):
    pi = await authorized(gateway, localstripe_url, 10_000)
    with pytest.raises(PaymentConflict) as err:
        await gateway.capture(payment_intent_id=pi, amount_cents=10_001, idempotency_key=key())
    assert err.value.status == 409 and err.value.code == "capture_exceeds_authorization"
    assert "10000" in err.value.message
    assert (await gateway.intent_details(pi))["status"] == "requires_capture"  # nothing moved
    capture = await gateway.capture(payment_intent_id=pi, amount_cents=10_000, idempotency_key=key())
    assert capture.amount_cents == 10_000


async def test_capture_before_the_client_confirmed_is_refused(gateway):
    auth = await gateway.authorize(request(3_000))
    with pytest.raises(PaymentConflict) as err:
        await gateway.capture(payment_intent_id=auth.payment_intent_id, amount_cents=3_000,
                              idempotency_key=key())
    assert err.value.code == "payment_not_authorized"


async def test_declined_card_never_holds_the_funds(gateway, localstripe_url):
    auth = await gateway.authorize(request(3_000))
    confirmed = await confirm_payment_intent(localstripe_url, auth.payment_intent_id, auth.client_secret,
                                             card_number=VISA_CHARGE_DECLINED)
    assert confirmed["status"] == "requires_payment_method"
    assert confirmed["last_payment_error"]["code"] == "card_declined"
    with pytest.raises(PaymentConflict) as err:
        await gateway.capture(payment_intent_id=auth.payment_intent_id, amount_cents=3_000,
                              idempotency_key=key())
    assert err.value.code == "payment_not_authorized"


async def test_invalid_amounts_are_refused_before_stripe(gateway):
    for amount in (0, -5):
        with pytest.raises(AppError) as err:
            await gateway.authorize(request(amount))
        assert err.value.status == 422 and err.value.code == "invalid_amount"
    with pytest.raises(AppError) as err:
        await gateway.capture(payment_intent_id="pi_whatever", amount_cents=0, idempotency_key=key())
    assert err.value.code == "invalid_amount"


async def test_release_cancels_the_hold_and_is_idempotent(gateway, localstripe_url):
    pi = await authorized(gateway, localstripe_url)
    release_key = key()
    await gateway.release(payment_intent_id=pi, idempotency_key=release_key)
    intent = await gateway.intent_details(pi)
    assert intent["status"] == "canceled" and intent["amount_received"] == 0
    await gateway.release(payment_intent_id=pi, idempotency_key=release_key)  # replay
    await gateway.release(payment_intent_id=pi, idempotency_key=key())  # already canceled: success
    with pytest.raises(PaymentConflict) as err:
        await gateway.capture(payment_intent_id=pi, amount_cents=1_000, idempotency_key=key())
    assert err.value.code == "payment_canceled"


async def test_release_before_confirmation_cancels_too(gateway):
    auth = await gateway.authorize(request(2_000))
    await gateway.release(payment_intent_id=auth.payment_intent_id, idempotency_key=key())
    assert (await gateway.intent_details(auth.payment_intent_id))["status"] == "canceled"


async def test_release_after_capture_is_refused(gateway, localstripe_url):
    pi = await authorized(gateway, localstripe_url)
    await gateway.capture(payment_intent_id=pi, amount_cents=12_000, idempotency_key=key())
    with pytest.raises(PaymentConflict) as err:
        await gateway.release(payment_intent_id=pi, idempotency_key=key())
    assert err.value.code == "payment_already_captured"


async def test_retrieve_intent_gives_the_ports_intent_state(gateway, localstripe_url):
    pi = await authorized(gateway, localstripe_url, 7_000)
    held = await gateway.retrieve_intent(pi)
    assert held == IntentState(id=pi, status="requires_capture", amount_cents=7_000,
                               amount_capturable_cents=7_000, amount_received_cents=0,
                               processing_fee_cents=None,
                               latest_charge=held.latest_charge)
    assert held.latest_charge.startswith("ch_")
    await gateway.capture(payment_intent_id=pi, amount_cents=6_500, idempotency_key=key())
    captured = await gateway.retrieve_intent(pi)
    assert (captured.status, captured.amount_capturable_cents, captured.amount_received_cents,
            captured.processing_fee_cents) == ("succeeded", 0, 6_500, None)


async def test_unknown_intent_is_not_found(gateway):
    assert await gateway.retrieve_intent("pi_doesnotexist00") is None  # the port's "not known"
    with pytest.raises(PaymentNotFound) as err:
        await gateway.intent_details("pi_doesnotexist00")
    assert err.value.status == 404 and err.value.code == "payment_not_found"
    with pytest.raises(PaymentNotFound):
        await gateway.release(payment_intent_id="pi_doesnotexist00", idempotency_key=key())


# --- refunds ---------------------------------------------------------------------------------------

async def test_refund_part_then_the_rest(gateway, localstripe_url):
    pi = await authorized(gateway, localstripe_url, 12_000)
    await gateway.capture(payment_intent_id=pi, amount_cents=9_000, idempotency_key=key())

    refund_key = key()
    first = await gateway.refund(payment_intent_id=pi, amount_cents=3_000, idempotency_key=refund_key,
                                 reason="the worker left early")
    assert first == RefundResult(id=first.id, amount_cents=3_000, status="succeeded")
    assert first.id.startswith("re_")
    replay = await gateway.refund(payment_intent_id=pi, amount_cents=3_000, idempotency_key=refund_key,
                                  reason="the worker left early")
    assert replay == first
    intent = await gateway.intent_details(pi)
    assert intent["amount_refunded"] == 3_000 and intent["amount_received"] == 9_000

    rest = await gateway.refund(payment_intent_id=pi, amount_cents=6_000, idempotency_key=key(),
                                reason="requested_by_customer")
    assert rest.amount_cents == 6_000 and rest.id != first.id
    intent = await gateway.intent_details(pi)
    assert intent["amount_refunded"] == 9_000 and intent["amount_received"] == 9_000
    assert intent["status"] == "succeeded"


async def test_refund_of_an_uncaptured_intent_is_refused(gateway):
    auth = await gateway.authorize(request(2_000))
    with pytest.raises(AppError) as err:
        await gateway.refund(payment_intent_id=auth.payment_intent_id, amount_cents=1_000,
                             idempotency_key=key())
    assert err.value.status in (409, 422) and err.value.code == "payment_rejected"


# --- the processor unreachable or refusing us -------------------------------------------------------

async def test_bad_api_key_is_mapped(localstripe_url):
    gw = StripeGateway(stripe_settings(localstripe_url, api_key="rk_live_not_a_secret_key"),
                       max_network_retries=0)
    try:
        with pytest.raises(PaymentProviderMisconfigured) as err:
            await gw.authorize(request())
        assert err.value.status == 503 and err.value.code == "payment_provider_misconfigured"
        assert "rk_live" not in err.value.message  # never echo the key
    finally:
        await gw.aclose()


@pytest.mark.parametrize("retries", [0, 1])
async def test_provider_down_is_unavailable(retries):
    gw = StripeGateway(stripe_settings(f"http://127.0.0.1:{free_port()}"), max_network_retries=retries)
    try:
        with pytest.raises(PaymentProviderUnavailable) as err:
            await gw.authorize(request())
        assert err.value.status == 503 and err.value.code == "payment_provider_unavailable"
        assert err.value.headers == {"Retry-After": "5"}
        for call in (gw.capture(payment_intent_id="pi_x", amount_cents=100, idempotency_key=key()),
                     gw.release(payment_intent_id="pi_x", idempotency_key=key()),
                     gw.intent_details("pi_x"), gw.retrieve_intent("pi_x"),
                     gw.refund(payment_intent_id="pi_x", amount_cents=100, idempotency_key=key())):
            with pytest.raises(PaymentProviderUnavailable):
                await call
    finally:
        await gw.aclose()


async def test_localstripe_stopped_mid_flight_is_unavailable():
    with LocalStripe() as server:
        gw = StripeGateway(stripe_settings(server.url), max_network_retries=0)
        auth = await gw.authorize(request())
        server.stop()
        with pytest.raises(PaymentProviderUnavailable):
            await gw.intent_details(auth.payment_intent_id)
        await gw.aclose()


def test_error_mapping():
    card = map_stripe_error(stripe.CardError("Your card was declined.", None, "card_declined",
                                             http_status=402))
    assert (card.status, card.code) == (402, "payment_failed") and "declined" in card.message
    assert map_stripe_error(stripe.RateLimitError("slow down", http_status=429)).status == 503
    assert isinstance(map_stripe_error(stripe.APIError("boom", http_status=500)), PaymentProviderUnavailable)
    invalid = map_stripe_error(stripe.InvalidRequestError("Invalid currency", "currency", http_status=400))
    assert (invalid.status, invalid.code) == (422, "payment_rejected")
    state = map_stripe_error(stripe.InvalidRequestError("bad state", None, "payment_intent_unexpected_state",
                                                        http_status=400))
    assert (state.status, state.code) == (409, "payment_rejected")
    forbidden = map_stripe_error(stripe.PermissionError("no", http_status=403))
    assert forbidden.code == "payment_provider_misconfigured"


# (the SDK's httpx client, used here only to record the requests, passes the form as `data=`)
@pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
async def test_requests_to_real_stripe_carry_description_reason_keys_and_expand():
    """Against api.stripe.com (no STRIPE_API_BASE) the gateway sends what localstripe refuses, and reads
    Stripe's own fields (amount_received, the expanded balance transaction's fee)."""
    seen: list[httpx.Request] = []
    charge = {"id": "ch_1", "object": "charge", "amount": 12_000, "amount_captured": 9_000,
              "amount_refunded": 0, "captured": True, "status": "succeeded",
              "balance_transaction": {"id": "txn_1", "object": "balance_transaction", "fee": 160}}
    intent = {"id": "pi_real", "object": "payment_intent", "status": "succeeded", "amount": 12_000,
              "amount_received": 9_000, "amount_capturable": 0, "currency": "eur", "capture_method": "manual",
              "client_secret": "pi_real_secret_x", "metadata": {}, "latest_charge": charge}

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if req.url.path == "/v1/refunds":
            return httpx.Response(200, json={"id": "re_1", "object": "refund", "amount": 500,
                                             "status": "pending", "currency": "eur"})
        return httpx.Response(200, json=intent)

    # What goes on the wire is recorded through the SDK's httpx client and a mock transport (the
    # gateway's own default client is the SDK's aiohttp one; both send the SDK's same request).
    recorder = stripe.HTTPXClient()
    recorder._client_async = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    gw = StripeGateway(Settings(environment="test", stripe_api_key="sk_test_real"), max_network_retries=0,
                       http_client=recorder)
    try:
        req = request(12_000)
        await gw.authorize(req)
        capture = await gw.capture(payment_intent_id="pi_real", amount_cents=9_000,
                                   idempotency_key="k-capture")
        refund = await gw.refund(payment_intent_id="pi_real", amount_cents=500, idempotency_key="k-refund",
                                 reason="requested_by_customer")
        await gw.refund(payment_intent_id="pi_real", amount_cents=500, idempotency_key="k-refund-2",
                        reason="the worker did not come")
    finally:
        await gw.aclose()

    assert capture == Capture(amount_cents=9_000, processing_fee_cents=160, settled=False)
    assert refund == RefundResult(id="re_1", amount_cents=500, status="pending")
    create, cap, ref, ref2 = seen
    form = {k: v[0] for k, v in parse_qs(create.content.decode()).items()}
    assert create.url.host == "api.stripe.com" and create.url.path == "/v1/payment_intents"
    assert create.headers["Idempotency-Key"] == req.idempotency_key
    assert create.headers["Authorization"] == "Bearer sk_test_real"
    assert create.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert form == {"amount": "12000", "currency": "eur", "capture_method": "manual",
                    "payment_method_types[0]": "card", "metadata[booking_id]": req.booking_id,
                    "metadata[cooperative]": "velo-coop", "description": req.description}
    cap_form = {k: v[0] for k, v in parse_qs(cap.content.decode()).items()}
    assert cap.url.path == "/v1/payment_intents/pi_real/capture"
    assert cap.headers["Idempotency-Key"] == "k-capture"
    assert cap_form == {"amount_to_capture": "9000", "expand[0]": "latest_charge.balance_transaction"}
    ref_form = {k: v[0] for k, v in parse_qs(ref.content.decode()).items()}
    assert ref_form == {"payment_intent": "pi_real", "amount": "500", "reason": "requested_by_customer",
                        "metadata[reason]": "requested_by_customer"}
    ref2_form = {k: v[0] for k, v in parse_qs(ref2.content.decode()).items()}
    assert "reason" not in ref2_form and ref2_form["metadata[reason]"] == "the worker did not come"


def test_factory_builds_the_stripe_gateway_when_configured():
    assert isinstance(make_gateway(stripe_settings("http://127.0.0.1:1")), StripeGateway)
    assert make_gateway(Settings(environment="test", stripe_api_key=None)).provider == "demo"


async def test_stock_localstripe_works_too():
    """Plain `python -m localstripe` (what a developer may run): the same flow, minus idempotency."""
    with LocalStripe(stock=True) as server:
        gw = StripeGateway(stripe_settings(server.url), max_network_retries=0)
        try:
            pi = await authorized(gw, server.url, 8_000)
            capture = await gw.capture(payment_intent_id=pi, amount_cents=6_000, idempotency_key=key())
            assert capture == Capture(amount_cents=6_000, processing_fee_cents=None, settled=False)
            await gw.refund(payment_intent_id=pi, amount_cents=1_000, idempotency_key=key())
            intent = await gw.intent_details(pi)
            assert intent["status"] == "succeeded"
            assert (intent["amount_received"], intent["amount_refunded"]) == (6_000, 1_000)
            other = await authorized(gw, server.url, 1_000)
            await gw.release(payment_intent_id=other, idempotency_key=key())
            assert (await gw.intent_details(other))["status"] == "canceled"
        finally:
            await gw.aclose()


# --- webhooks ----------------------------------------------------------------------------------------

async def test_localstripe_webhook_verifies_with_our_helper(gateway, localstripe_url):
    name = f"test-{uuid.uuid4().hex[:8]}"
    async with WebhookSink() as sink:
        await register_webhook(localstripe_url, name, sink.url, WHSEC, events=["payment_intent.succeeded"])
        try:
            pi = await authorized(gateway, localstripe_url, 6_000)
            await gateway.capture(payment_intent_id=pi, amount_cents=5_000, idempotency_key=key())
            while True:  # other tests' captures may be delivered too
                headers, body = await sink.next(timeout=15)
                event = verify_and_parse(body, headers.get("Stripe-Signature"), WHSEC)
                if payment_intent_id(event) == pi:
                    break
        finally:
            await disable_webhook(localstripe_url, name)
    assert event["type"] == "payment_intent.succeeded" and event["id"].startswith("evt_")
    with pytest.raises(BadSignature):
        verify_and_parse(body, headers.get("Stripe-Signature"), "whsec_other")
    # The event is a snapshot: the handler re-reads the intent before acting.
    assert (await gateway.intent_details(pi))["amount_received"] == 5_000


# --- signature helpers (pure) ---------------------------------------------------------------------

def _event_body(**extra) -> bytes:
    return build_event("payment_intent.amount_capturable_updated",
                       {"id": "pi_123", "object": "payment_intent", "status": "requires_capture", **extra})


def test_signed_event_is_accepted():
    body = _event_body()
    event = verify_and_parse(body, sign(body, WHSEC), WHSEC)
    assert event["type"] == "payment_intent.amount_capturable_updated" and event["object"] == "event"
    assert payment_intent_id(event) == "pi_123"


def test_sign_is_stripes_scheme():
    body = _event_body()
    ts = 1_700_000_000
    sdk = stripe.WebhookSignature.generate_signature_header(body.decode(), WHSEC, ts)
    assert sign(body, WHSEC, ts) == sdk
    assert sign(body, WHSEC, ts).startswith(f"t={ts},v1=")


def test_tampered_body_is_refused():
    body = _event_body()
    header = sign(body, WHSEC)
    with pytest.raises(BadSignature) as err:
        verify_and_parse(body.replace(b"requires_capture", b"succeeded"), header, WHSEC)
    assert err.value.status == 400 and err.value.code == "invalid_signature"


def test_wrong_secret_is_refused():
    body = _event_body()
    with pytest.raises(BadSignature):
        verify_and_parse(body, sign(body, "whsec_someone_else"), WHSEC)


def test_old_timestamp_is_refused():
    body = _event_body()
    old = int(time.time()) - 301
    with pytest.raises(BadSignature, match="tolerance"):
        verify_and_parse(body, sign(body, WHSEC, old), WHSEC)
    assert verify_and_parse(body, sign(body, WHSEC, old), WHSEC, tolerance=600)["id"]


@pytest.mark.parametrize("header", [None, "", "garbage", "t=notanumber,v1=abc", "t=123", "v1=abc"])
def test_missing_or_malformed_header_is_refused(header):
    with pytest.raises(BadSignature):
        verify_and_parse(_event_body(), header, WHSEC)


def test_rotated_secrets_any_matching_signature_is_enough():
    body = _event_body()
    ts = int(time.time())
    old = sign(body, "whsec_old", ts).split(",")[1]
    assert verify_and_parse(body, f"t={ts},{old},{sign(body, WHSEC, ts).split(',')[1]}", WHSEC)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", json.dumps({"id": "evt_1"}).encode(), b"\xff\xfe"])
def test_signed_but_not_an_event_is_refused(body):
    with pytest.raises(BadSignature):
        verify_and_parse(body, sign(body, WHSEC), WHSEC)


def test_payment_intent_id_of_charge_and_refund_events():
    charge = json.loads(build_event("charge.refunded",
                                    {"id": "ch_1", "object": "charge", "payment_intent": "pi_9"}))
    assert payment_intent_id(charge) == "pi_9"
    other = json.loads(build_event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert payment_intent_id(other) is None
