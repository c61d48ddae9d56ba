"""The payments side of the benchmark: localstripe, captured PaymentIntents, signed webhook events,
and pgbench's TPC-B as the yardstick. bench/run.py uses these; nothing here starts on import.

- `LocalStripe`: localstripe 1.15.10 (the dev dependency) in a subprocess of our own interpreter,
  started as `python bench/bench_webhooks.py serve-localstripe --port N`, which is
  `python -m localstripe --port N --from-scratch` with two changes: it listens on 127.0.0.1 only
  (stock: every interface) and keeps its objects in memory (stock localstripe pickles its whole
  store to /tmp/localstripe.pickle after every write: a file shared with anyone else running it,
  and a cost that grows with every intent, so thousands of intents would take minutes).
- `captured_intents`: PaymentIntents created, confirmed and captured in localstripe, the way the
  app does it (StripeGateway.authorize, the client's confirmation, StripeGateway.capture).
- `webhook_request`: a signed `payment_intent.succeeded` event for one intent
  (app.payments.stripe_events.build_event + sign).
- `run_pgbench`: `pgbench -i -s 10` on its own database, then `pgbench -c 16 -j 2 -T <duration>`,
  read as a WrkResult (TPS, latency percentiles from pgbench's per-transaction log).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STRIPE_TEST_API_KEY = "sk_test_coopgig_bench"
PGBENCH_DATABASE = "coopgig_bench_pgbench"


# ---- localstripe -------------------------------------------------------------------------------


def _index_store_by_type(resources) -> None:
    """Same answers, without scanning the whole store: stock localstripe lists objects of a type
    (`StripeObject._api_list_all`) by scanning every object it holds, and it does that on every read
    of a PaymentIntent (its charge's `refunds` list). Retrieving one intent then costs O(all objects),
    so localstripe slows down as the benchmark creates intents (measured: about 790 retrieves/s with
    200 intents, 150/s with 2,300). Here the store keeps its keys per type as well, in the same
    insertion order, and listing a type reads only that type."""
    from collections import defaultdict

    from localstripe.errors import UserError

    store = resources.store
    by_type: dict[str, dict[str, object]] = defaultdict(dict)
    for key, value in store.items():
        by_type[key.split(":", 1)[0]][key] = value
    base_set, base_del, base_clear = dict.__setitem__, dict.__delitem__, dict.clear

    def setitem(self, key, value):
        base_set(self, key, value)
        by_type[key.split(":", 1)[0]][key] = value

    def delitem(self, key):
        base_del(self, key)
        by_type[key.split(":", 1)[0]].pop(key, None)

    def clear(self):
        base_clear(self)
        by_type.clear()

    resources.Store.__setitem__ = setitem
    resources.Store.__delitem__ = delitem
    resources.Store.clear = clear

    def _api_list_all(cls, url, limit=None, starting_after=None, **kwargs):
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
        li = resources.List(url, limit=limit, starting_after=starting_after)
        li._list = list(by_type.get(cls.object, {}).values())
        return li

    resources.StripeObject._api_list_all = classmethod(_api_list_all)


def serve_localstripe(host: str, port: int, *, stock_lists: bool = False) -> None:
    """localstripe's own aiohttp app, in memory, on one loopback address, without access log."""
    from aiohttp import web
    from localstripe import resources

    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    if not stock_lists:
        _index_store_by_type(resources)
    from localstripe import server

    web.run_app(server.app, host=host, port=port, access_log=None, print=None)


@dataclass
class LocalStripe:
    proc: subprocess.Popen
    url: str
    log: Path

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_localstripe(port: int, log: Path, timeout: float = 30.0) -> LocalStripe:
    import urllib.error
    import urllib.request

    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "serve-localstripe",
                                 "--port", str(port)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    ls = LocalStripe(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"localstripe exited ({proc.returncode}):\n{ls.tail()}")
        try:
            urllib.request.urlopen(ls.url + "/js.stripe.com/v3/", timeout=1).close()
            return ls
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.1)
    stop_localstripe(ls)
    raise RuntimeError(f"localstripe did not answer on {ls.url} after {timeout:.0f}s:\n{ls.tail()}")


def stop_localstripe(ls: LocalStripe) -> None:
    if ls.proc.poll() is None:
        try:
            os.killpg(ls.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            ls.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(ls.proc.pid, signal.SIGKILL)
            ls.proc.wait(timeout=5)


def localstripe_available() -> str | None:
    """None if localstripe can be imported by this interpreter, else why not."""
    try:
        import localstripe  # noqa: F401
    except ImportError as exc:
        return f"localstripe is not installed in {sys.prefix} ({exc}); `uv pip install localstripe==1.15.10`"
    return None


# ---- intents -----------------------------------------------------------------------------------


@dataclass
class CapturedIntent:
    id: str
    amount_cents: int
    obj: dict[str, Any]  # the intent as the processor returned it after the capture (event's data.object)


async def captured_intents(stripe_url: str, amounts: list[int], *, concurrency: int = 16,
                           booking_ids: list[str] | None = None) -> list[CapturedIntent]:
    """One PaymentIntent per amount: authorized by the app's StripeGateway, confirmed with a test card
    (what the client's app does), captured in full by the gateway. In the order of `amounts`."""
    import httpx

    from app.config import Settings
    from app.payments.port import AuthorizeRequest

    settings = Settings(stripe_api_key=STRIPE_TEST_API_KEY, stripe_api_base=stripe_url)
    try:
        from app.payments.stripe_gateway import StripeGateway
    except ImportError:
        StripeGateway = None  # noqa: N806
    gateway = StripeGateway(settings, max_network_retries=2) if StripeGateway else None
    http = httpx.AsyncClient(base_url=stripe_url, timeout=30.0,
                             headers={"Authorization": f"Bearer {STRIPE_TEST_API_KEY}"},
                             limits=httpx.Limits(max_connections=concurrency))
    sem = asyncio.Semaphore(concurrency)
    booking_ids = booking_ids or [str(uuid.uuid4()) for _ in amounts]

    async def ok(resp) -> dict[str, Any]:
        if resp.status_code >= 300:
            raise RuntimeError(f"localstripe {resp.request.method} {resp.request.url.path}: "
                               f"{resp.status_code} {resp.text[:300]}")
        return resp.json()

    async def one(amount: int, booking_id: str) -> CapturedIntent:
        async with sem:
            if gateway is not None:
                auth = await gateway.authorize(AuthorizeRequest(
                    booking_id=booking_id, cooperative_slug="bench", amount_cents=amount, currency="EUR",
                    description=f"coopgig booking {booking_id}", idempotency_key=f"booking:{booking_id}:authorize"))
                pi_id = auth.payment_intent_id
            else:  # before the gateway exists: the same call through the HTTP API
                pi_id = (await ok(await http.post("/v1/payment_intents", data={
                    "amount": amount, "currency": "eur", "capture_method": "manual",
                    "payment_method_types[]": "card", "metadata[booking_id]": booking_id})))["id"]
            await ok(await http.post(f"/v1/payment_intents/{pi_id}", data={"payment_method": "pm_card_visa"}))
            confirmed = await ok(await http.post(f"/v1/payment_intents/{pi_id}/confirm"))
            if confirmed.get("status") != "requires_capture":
                raise RuntimeError(f"intent {pi_id} is {confirmed.get('status')} after confirmation")
            if gateway is not None:
                await gateway.capture(payment_intent_id=pi_id, amount_cents=amount,
                                      idempotency_key=f"booking:{booking_id}:capture")
            else:
                await ok(await http.post(f"/v1/payment_intents/{pi_id}/capture", data={"amount_to_capture": amount}))
            obj = await ok(await http.get(f"/v1/payment_intents/{pi_id}"))
            if obj.get("status") != "succeeded":
                raise RuntimeError(f"intent {pi_id} is {obj.get('status')} after the capture")
            return CapturedIntent(pi_id, amount, obj)

    try:
        return list(await asyncio.gather(*(one(a, b) for a, b in zip(amounts, booking_ids))))
    finally:
        await http.aclose()
        if gateway is not None:
            await gateway.aclose()


def webhook_request(intent: CapturedIntent, secret: str) -> tuple[str, dict[str, str], bytes]:
    """(path, headers, body) of a signed `payment_intent.succeeded` event about `intent`."""
    from app.payments.stripe_events import build_event, sign

    body = build_event("payment_intent.succeeded", intent.obj)
    return ("/api/v1/payments/stripe/webhook",
            {"Stripe-Signature": sign(body, secret), "Content-Type": "application/json"}, body)


# ---- pgbench -----------------------------------------------------------------------------------


def find_pgbench() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True):
        return str(candidate)
    return None


def _pg_env(parsed) -> dict[str, str]:
    env = {**os.environ, "PGHOST": parsed.host or "127.0.0.1", "PGPORT": str(parsed.port or 5432),
           "PGUSER": parsed.username or "postgres"}
    if parsed.password:
        env["PGPASSWORD"] = parsed.password
    return env


def pgbench_init(pgbench: str, parsed, *, scale: int = 10, timeout: float = 600) -> float:
    """(Re)create PGBENCH_DATABASE and `pgbench -i -s scale` it; returns the seconds it took."""
    env = _pg_env(parsed)
    t = time.perf_counter()
    for cmd in (["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres",
                 "-c", f'DROP DATABASE IF EXISTS "{PGBENCH_DATABASE}" WITH (FORCE)',
                 "-c", f'CREATE DATABASE "{PGBENCH_DATABASE}"'],
                [pgbench, "-i", "-q", "-s", str(scale), PGBENCH_DATABASE]):
        proc = subprocess.run(cmd, env=env, timeout=timeout, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return time.perf_counter() - t


def pgbench_drop(parsed) -> None:
    subprocess.run(["psql", "-X", "-q", "-d", "postgres", "-c", f'DROP DATABASE IF EXISTS "{PGBENCH_DATABASE}" WITH (FORCE)'],
                   env=_pg_env(parsed), timeout=60, capture_output=True)


def run_pgbench(pgbench: str, parsed, *, duration: float, clients: int = 16, threads: int = 2,
                logdir: Path | None = None):
    """One TPC-B run; a loadgen.WrkResult (requests = transactions, latency from the per-transaction log)."""
    from bench.loadgen import WrkResult

    seconds = max(1, round(duration))
    cmd = [pgbench, "-c", str(clients), "-j", str(threads), "-T", str(seconds), "-n"]
    if logdir is not None:
        for old in logdir.glob("pgbench_log*"):
            old.unlink()
        logdir.mkdir(parents=True, exist_ok=True)
        cmd += ["-l", f"--log-prefix={logdir / 'pgbench_log'}"]
    cmd.append(PGBENCH_DATABASE)
    proc = subprocess.run(cmd, env=_pg_env(parsed), capture_output=True, text=True, timeout=seconds + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    out = proc.stdout
    tps = None
    count = None
    failed = 0
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("tps =") and tps is None:  # "tps = 1234.5 (without initial connection time)"
            tps = float(line.split("=")[1].split()[0])
        elif line.startswith("number of transactions actually processed:"):
            count = int(line.split(":")[1].split("/")[0].strip())
        elif line.startswith("number of failed transactions:"):
            failed = int(line.split(":")[1].split()[0])
    if tps is None or count is None:
        raise RuntimeError(f"unexpected pgbench output:\n{out}")
    latencies: list[float] = []
    if logdir is not None:
        for f in logdir.glob("pgbench_log*"):
            for row in f.read_text().splitlines():
                parts = row.split()
                if len(parts) >= 3 and parts[2].isdigit():
                    latencies.append(int(parts[2]) / 1000.0)  # µs -> ms
    latencies.sort()
    pct = {}
    if latencies:
        for p in (50, 75, 90, 99):
            pct[p] = latencies[min(len(latencies) - 1, int(len(latencies) * p / 100))]
    else:
        avg = next((float(line.split("=")[1].split()[0]) for line in out.splitlines()
                    if line.strip().startswith("latency average")), float("nan"))
        pct = {50: avg, 90: float("nan"), 99: float("nan")}
    return WrkResult(requests_per_sec=tps, latency_ms=pct, requests=count, duration_s=float(seconds),
                     non_2xx_3xx=failed, raw=" ".join(cmd) + "\n" + out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve-localstripe", help="run localstripe in memory on 127.0.0.1 (used by bench/run.py)")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "::1", "localhost"])
    args = p.parse_args(argv)
    if args.command == "serve-localstripe":
        serve_localstripe(args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
