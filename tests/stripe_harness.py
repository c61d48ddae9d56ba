"""A local Stripe for tests and the benchmark: localstripe in a subprocess, plus the client's side.

    with LocalStripe() as ls:                     # or the session fixture `localstripe_url`
        settings = Settings(stripe_api_key=TEST_API_KEY, stripe_api_base=ls.url)
        ...
        await confirm_payment_intent(ls.url, pi_id, client_secret)   # what the mobile app does

`LocalStripe()` runs localstripe (the `localstripe` dev dependency, a fake but stateful Stripe server)
from this project's interpreter, on a free port of 127.0.0.1, and stops it. By default it starts it
through this module (`python -m tests.stripe_harness --port N`), which serves localstripe's own aiohttp
app with three changes that make it closer to Stripe and fit for parallel runs:
  - it honours `Idempotency-Key` like Stripe: a POST repeated with the same key (and the same API key)
    replays the first response (`Idempotent-Replayed: true`) instead of acting twice, and the same key
    with other parameters is refused with an `idempotency_error` (400); stock localstripe ignores it;
  - it keeps its data in memory only (stock localstripe pickles its whole store to
    /tmp/localstripe.pickle after every write: shared between runs, and slower as data grows);
  - it listens on 127.0.0.1 only (stock: every interface).
`LocalStripe(stock=True)` runs exactly `python -m localstripe --port N --from-scratch` instead.

What localstripe does and does not do (1.15.10), as the adapter meets it:
  - PaymentIntent: create (amount, currency, capture_method, metadata, payment_method_types,
    payment_method, customer; NOT `description`, NOT `automatic_payment_methods`), retrieve, update,
    confirm (only without parameters: the payment method must be set by create or update first; no
    client_secret/publishable-key flow), capture (`amount_to_capture`, at most the amount), cancel (no
    parameters); no `amount_received` / `amount_capturable` fields (the adapter derives them).
  - a partial capture becomes a refund of the rest on the charge; refunds (`payment_intent`, `amount`,
    `metadata`; NOT `reason`) are not checked against what is left to refund.
  - balance transactions exist (expand `latest_charge.balance_transaction` works) with `fee: 0`.
  - API keys are not checked beyond the `sk_` prefix (anything else: 401).
  - events sent to registered webhooks: `payment_intent.succeeded` (after a capture) and
    `payment_intent.payment_failed`, about 1 s late, signed like Stripe (`t=created,v1=...`). Not sent:
    `payment_intent.amount_capturable_updated`, `payment_intent.canceled`, `charge.refunded`,
    `charge.captured`... (sign your own with app.payments.stripe_events.build_event + sign).
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import httpx
import pytest

TEST_API_KEY = "sk_test_coopgig_localstripe"
VISA = "4242424242424242"
VISA_CHARGE_DECLINED = "4000000000000341"  # attaches, then the charge is declined at confirmation
REPO_ROOT = Path(__file__).resolve().parents[1]
STOCK_STORE_FILE = "/tmp/localstripe.pickle"  # noqa: S108  (localstripe's own, hard-coded)


class LocalStripeError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LocalStripe:
    """localstripe in a subprocess. `start()` returns once it answers HTTP; `stop()` ends it."""

    def __init__(self, port: int | None = None, *, stock: bool = False, host: str = "127.0.0.1",
                 startup_timeout: float = 20.0) -> None:
        self.host = host
        self.port = port
        self.stock = stock
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise LocalStripeError("localstripe is not started")
        return f"http://{self.host}:{self.port}"

    def _command(self, port: int) -> list[str]:
        if self.stock:
            return [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"]
        return [sys.executable, "-m", "tests.stripe_harness", "--host", self.host, "--port", str(port)]

    def start(self) -> Self:
        if self.process is not None:
            return self
        attempts = 1 if self.port is not None else 3
        for attempt in range(attempts):
            port = self.port if self.port is not None else free_port(self.host)
            self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115  (open while the server runs)
                prefix="localstripe-", suffix=".log", delete=False)
            self.process = subprocess.Popen(self._command(port), cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                                            stdout=self._log, stderr=subprocess.STDOUT)
            self.port = port
            if self._wait_until_ready():
                return self
            self.stop()
            if attempt + 1 < attempts:
                self.port = None  # the port was taken between picking and binding: pick another
        raise LocalStripeError(f"localstripe did not start: {self.log_tail()}")

    def _wait_until_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                httpx.get(f"{self.url}/js.stripe.com/v3/", timeout=0.5)  # no auth needed there
                return True
            except httpx.HTTPError:
                time.sleep(0.05)
        return False

    def log_tail(self, chars: int = 2000) -> str:
        if self._log is None:
            return ""
        try:
            return Path(self._log.name).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self.stock and process is not None:
            # Stock localstripe pickles its store to this fixed path after every write: leave no trace.
            Path(STOCK_STORE_FILE).unlink(missing_ok=True)
        if self._log is not None:
            self._log.close()
            try:
                os.unlink(self._log.name)
            except OSError:
                pass
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def localstripe() -> Iterator[LocalStripe]:
    server = LocalStripe().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def localstripe_url(localstripe: LocalStripe) -> str:
    return localstripe.url


# --- the client's side (what the mobile app's Stripe SDK does) -----------------------------------

def _client(url: str, api_key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10.0)


def _ok(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 300:
        raise LocalStripeError(f"{response.request.method} {response.request.url.path}: "
                               f"{response.status_code} {response.text}")
    return response.json()


async def create_card_payment_method(url: str, card_number: str = VISA, *,
                                     api_key: str = TEST_API_KEY) -> str:
    async with _client(url, api_key) as http:
        pm = _ok(await http.post("/v1/payment_methods", data={
            "type": "card", "card[number]": card_number, "card[exp_month]": "12",
            "card[exp_year]": "2034", "card[cvc]": "123"}))
    return pm["id"]


async def confirm_payment_intent(url: str, payment_intent_id: str, client_secret: str | None, *,
                                 card_number: str = VISA, payment_method: str | None = None,
                                 api_key: str = TEST_API_KEY) -> dict[str, Any]:
    """Confirm the intent with a test card, as the client's app does with the client_secret; returns
    the intent after confirmation (`requires_capture` for a manual-capture intent and a good card,
    `requires_payment_method` when the card is declined).

    localstripe has no publishable-key confirmation: we check the client_secret ourselves, set a
    payment method (a card created from `card_number`, or `payment_method` such as "pm_card_visa"),
    then confirm without parameters."""
    async with _client(url, api_key) as http:
        intent = _ok(await http.get(f"/v1/payment_intents/{payment_intent_id}"))
        if client_secret != intent.get("client_secret"):
            raise LocalStripeError("client_secret does not match the PaymentIntent")
        if payment_method is None:
            payment_method = await create_card_payment_method(url, card_number, api_key=api_key)
        _ok(await http.post(f"/v1/payment_intents/{payment_intent_id}",
                            data={"payment_method": payment_method}))
        confirmed = await http.post(f"/v1/payment_intents/{payment_intent_id}/confirm")
        if confirmed.status_code == 402:  # declined: the intent waits for another payment method
            return _ok(await http.get(f"/v1/payment_intents/{payment_intent_id}"))
        return _ok(confirmed)


async def list_payment_intents(url: str, *, api_key: str = TEST_API_KEY,
                               limit: int = 100) -> list[dict[str, Any]]:
    async with _client(url, api_key) as http:
        return _ok(await http.get("/v1/payment_intents", params={"limit": limit}))["data"]


async def list_events(url: str, *, event_type: str | None = None,
                      api_key: str = TEST_API_KEY) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"limit": 100}
    if event_type:
        params["type"] = event_type
    async with _client(url, api_key) as http:
        return _ok(await http.get("/v1/events", params=params))["data"]


async def register_webhook(url: str, name: str, target_url: str, secret: str,
                           events: list[str] | None = None) -> None:
    """Have localstripe POST its events (signed with `secret`) to `target_url` (all types if None)."""
    body: dict[str, Any] = {"url": target_url, "secret": secret}
    if events is not None:
        body["events"] = events
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as http:
        response = await http.post(f"/_config/webhooks/{name}", json=body)
    if response.status_code >= 300:
        raise LocalStripeError(f"webhook registration failed: {response.status_code} {response.text}")


async def disable_webhook(url: str, name: str) -> None:
    """localstripe cannot delete a webhook: leave it subscribed to no event type."""
    await register_webhook(url, name, "http://127.0.0.1:9/disabled", "whsec_disabled", events=[])


async def flush(url: str) -> None:
    """Forget every object (customers, intents, events...)."""
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as http:
        (await http.delete("/_config/data")).raise_for_status()


class WebhookSink:
    """A tiny HTTP server that records the webhooks POSTed to it (headers, raw body)."""

    def __init__(self, *, status: int = 200) -> None:
        self.status = status
        self.received: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()
        self.url = ""
        self._runner: Any = None

    async def __aenter__(self) -> Self:
        from aiohttp import web

        async def receive(request: web.Request) -> web.Response:
            await self.received.put((dict(request.headers), await request.read()))
            return web.Response(status=self.status)

        app = web.Application()
        app.router.add_post("/{tail:.*}", receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/webhook"
        return self

    async def next(self, timeout: float = 10.0) -> tuple[dict[str, str], bytes]:
        return await asyncio.wait_for(self.received.get(), timeout)

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# --- the server side: localstripe with Stripe's idempotency, in memory, on one address ----------

_IDEMPOTENT_REPLAYS = 100_000  # keys remembered (Stripe: 24 h); the oldest are forgotten first


def _idempotency_middleware() -> Any:
    from aiohttp import web

    results: OrderedDict[tuple[str, str], tuple[str, int, bytes, str]] = OrderedDict()
    # One lock for all: localstripe's handlers do not wait on anything once the body is read, so this
    # costs nothing and makes two concurrent requests with one key act once.
    lock = asyncio.Lock()

    def error(status: int, message: str) -> web.Response:
        return web.json_response({"error": {"type": "idempotency_error", "message": message}}, status=status)

    @web.middleware
    async def idempotency(request: web.Request, handler: Any) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key or request.path.startswith("/_config/"):
            return await handler(request)
        scope = (request.headers.get("Authorization", ""), key)
        body = await request.read()  # aiohttp keeps it for the handler
        fingerprint = hashlib.sha256(b"%s %s?%s\n%s" % (request.method.encode(), request.path.encode(),
                                                         request.query_string.encode(), body)).hexdigest()
        async with lock:
            if scope in results:
                seen, status, content, content_type = results[scope]
                if seen != fingerprint:
                    return error(400, "Keys for idempotent requests can only be used with the same "
                                      "parameters they were first used with.")
                return web.Response(status=status, body=content,
                                    headers={"Content-Type": content_type, "Idempotent-Replayed": "true"})
            response = await handler(request)
            # Like Stripe: keep the results of requests that ran (not auth failures, conflicts, crashes).
            if isinstance(response, web.Response) and isinstance(response.body, bytes) \
                    and response.status < 500 and response.status not in (401, 409, 429):
                results[scope] = (fingerprint, response.status, response.body,
                                  response.headers.get("Content-Type", "application/json"))
                while len(results) > _IDEMPOTENT_REPLAYS:
                    results.popitem(last=False)
            return response

    return idempotency


def _refuse_capture_out_of_state(resources: Any) -> None:
    """Stock localstripe captures a cancelled intent (its charge stays capturable) and fails with a
    500 on an intent never confirmed; Stripe refuses both with `payment_intent_unexpected_state`."""
    from localstripe.errors import UserError

    original = resources.PaymentIntent._api_capture.__func__

    @classmethod  # type: ignore[misc]
    def _api_capture(cls: Any, id: str, amount_to_capture: Any = None, **kwargs: Any) -> Any:
        if isinstance(id, str) and id.startswith("pi_") and not kwargs:
            intent = cls._api_retrieve(id)
            if intent.status != "requires_capture":
                raise UserError(400, "This PaymentIntent could not be captured because it has a status of "
                                f"{intent.status}.", {"code": "payment_intent_unexpected_state"})
        return original(cls, id, amount_to_capture, **kwargs)

    resources.PaymentIntent._api_capture = _api_capture
    # localstripe.server builds its routes from this list when imported.
    routes = [i for i, (_, _, func) in enumerate(resources.extra_apis)
              if getattr(func, "__func__", None) is original]
    if len(routes) != 1:
        raise RuntimeError("localstripe changed: cannot find the PaymentIntent capture route to patch")
    method, url, _ = resources.extra_apis[routes[0]]
    resources.extra_apis[routes[0]] = (method, url, resources.PaymentIntent._api_capture)


def serve(host: str, port: int, *, access_log: bool = False) -> None:
    import logging

    from aiohttp import web
    from localstripe import resources

    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    _refuse_capture_out_of_state(resources)  # before the server module builds its routes
    from localstripe import server

    server.app.middlewares.insert(0, _idempotency_middleware())
    logger = None
    if access_log:
        logger = logging.getLogger("aiohttp.access")
        logger.setLevel(logging.INFO)
        logger.addHandler(logging.StreamHandler())
    web.run_app(server.app, host=host, port=port, access_log=logger, print=None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="localstripe with Stripe's idempotency keys, in memory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args(argv)
    serve(args.host, args.port, access_log=args.access_log)


if __name__ == "__main__":
    main()
