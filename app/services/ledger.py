"""Posting balanced transactions to the ledger, once per business reference, and reading balances.

`post` adds to the caller's unit of work and never commits: the posting lands together with the
business change it records (a capture, a payslip...) or not at all.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.domain import ledger as rules
from app.models.ledger import LedgerAccount, LedgerEntry, LedgerTransaction


@dataclass(frozen=True)
class PostResult:
    transaction_id: uuid.UUID
    created: bool  # False: this reference was posted before; nothing new was written


@dataclass(frozen=True)
class AccountBalance:
    code: str
    kind: str
    currency: str
    balance_cents: int  # signed: debit positive, credit negative


def _insert_ignore(session: AsyncSession, table):
    dialect = session.get_bind().dialect.name
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    return stmt


async def _account_ids(session: AsyncSession, cooperative_id: uuid.UUID, currency: str,
                       codes: set[str]) -> dict[str, uuid.UUID]:
    query = select(LedgerAccount.code, LedgerAccount.id).where(
        LedgerAccount.cooperative_id == cooperative_id, LedgerAccount.currency == currency,
        LedgerAccount.code.in_(codes))
    found = dict((await session.execute(query)).all())
    missing = codes - found.keys()
    if missing:
        rows = []
        for code in sorted(missing):
            member = rules.member_id_of(code)
            rows.append({"id": uuid.uuid4(), "cooperative_id": cooperative_id, "currency": currency,
                         "code": code, "kind": rules.account_kind(code).value,
                         "member_id": uuid.UUID(member) if member else None, "created_at": utcnow()})
        # Two postings may open the same account at once: the loser's insert does nothing.
        await session.execute(_insert_ignore(session, LedgerAccount).on_conflict_do_nothing(
            index_elements=["cooperative_id", "currency", "code"]), rows)
        found = dict((await session.execute(query)).all())
    return found


async def post(session: AsyncSession, *, cooperative_id: uuid.UUID, posting: rules.Posting,
               occurred_at: datetime | None = None) -> PostResult:
    """Write a balanced posting once: a second call with the same reference returns the first."""
    return (await post_many(session, cooperative_id=cooperative_id, postings=[posting], occurred_at=occurred_at))[0]


async def post_many(session: AsyncSession, *, cooperative_id: uuid.UUID, postings: list[rules.Posting],
                    occurred_at: datetime | None = None) -> list[PostResult]:
    """Write several postings of one business event in three statements (transactions, accounts,
    entries); each reference posts once, so a retried event writes nothing new."""
    if not postings:
        return []
    occurred_at = occurred_at or utcnow()
    created_at = utcnow()
    rows = [{"id": uuid.uuid4(), "cooperative_id": cooperative_id, "currency": p.currency, "reference": p.reference,
             "kind": p.kind, "description": p.description[:500], "occurred_at": occurred_at, "created_at": created_at}
            for p in postings]
    stmt = _insert_ignore(session, LedgerTransaction).values(rows).on_conflict_do_nothing(
        index_elements=["cooperative_id", "reference"]).returning(LedgerTransaction.reference, LedgerTransaction.id)
    inserted = dict((await session.execute(stmt)).all())
    existing = {}
    if len(inserted) < len(postings):
        existing = dict((await session.execute(select(LedgerTransaction.reference, LedgerTransaction.id).where(
            LedgerTransaction.cooperative_id == cooperative_id,
            LedgerTransaction.reference.in_([p.reference for p in postings if p.reference not in inserted])))).all())
    new = [p for p in postings if p.reference in inserted]
    if new:
        accounts: dict[tuple[str, str], uuid.UUID] = {}
        for currency in {p.currency for p in new}:
            ids = await _account_ids(session, cooperative_id, currency,
                                     {e.account for p in new if p.currency == currency for e in p.entries})
            accounts.update({(currency, code): account_id for code, account_id in ids.items()})
        await session.execute(insert(LedgerEntry), [
            {"id": uuid.uuid4(), "transaction_id": inserted[p.reference], "account_id": accounts[(p.currency, e.account)],
             "cooperative_id": cooperative_id, "amount_cents": e.amount_cents, "occurred_at": occurred_at}
            for p in new for e in p.entries])
    return [PostResult(inserted[p.reference], True) if p.reference in inserted
            else PostResult(existing[p.reference], False) for p in postings]


# --- PostgreSQL: one business event's postings inside one statement --------------------------------
#
# The webhook hot path (app/services/payments.py) writes a capture in a single statement: these CTEs
# open the accounts not seen yet, insert the transactions and their entries from arrays, account ids
# resolved in SQL. `{gate}` is a condition (e.g. `EXISTS (SELECT 1 FROM ev)`) the caller's statement
# makes true only when the business change was applied; the CTEs' positional parameters are
# numbered from `first` ($n). Nothing here is lenient: a reference posted before (unique
# violation) or an account opened concurrently since the statement's snapshot (NULL account id) makes
# the whole statement fail, and the caller takes the general path (`post_many`) instead. The posting
# rules stay app/domain/ledger.py's: this only decides how their rows are written.

PG_POSTINGS_PARAMS = ("cooperative_id", "occurred_at", "created_at", "acc_currencies", "acc_codes", "acc_kinds",
                      "acc_members", "tx_currencies", "tx_references", "tx_kinds", "tx_descriptions",
                      "e_references", "e_codes", "e_amounts")


def pg_postings_ctes(*, first: int, gate: str) -> str:
    """The CTEs `ledger_in, ledger_acct_new, ledger_acct, ledger_tx, ledger_en` (see above); their
    parameters are `pg_postings_args(...)` in order, from `$first`.

    The arrays are read through `ledger_in`, a MATERIALIZED one-row CTE, never passed to `unnest`
    directly: then the planner cannot see their lengths in any plan (it guesses 10 elements, as it
    does for a generic plan), so a custom plan costs what the generic one does, and PostgreSQL's plan
    cache settles on the generic plan after its first five executions on a connection instead of
    re-planning the whole statement on every execution (0.5-1 ms of planning for the webhook's
    capture; tests/integration/test_ledger.py checks the generic plan is used). The plan is the same
    either way (index probes per element)."""
    n = {name: f"${first + i}" for i, name in enumerate(PG_POSTINGS_PARAMS)}
    return f"""
ledger_in AS MATERIALIZED (
    SELECT {n['acc_currencies']}::varchar[] AS acc_currencies, {n['acc_codes']}::varchar[] AS acc_codes,
           {n['acc_kinds']}::varchar[] AS acc_kinds, {n['acc_members']}::uuid[] AS acc_members,
           {n['tx_currencies']}::varchar[] AS tx_currencies, {n['tx_references']}::varchar[] AS tx_references,
           {n['tx_kinds']}::varchar[] AS tx_kinds, {n['tx_descriptions']}::varchar[] AS tx_descriptions,
           {n['e_references']}::varchar[] AS e_references, {n['e_codes']}::varchar[] AS e_codes,
           {n['e_amounts']}::bigint[] AS e_amounts),
ledger_acct_new AS (
    INSERT INTO ledger_account (id, cooperative_id, currency, code, kind, member_id, created_at)
    SELECT gen_random_uuid(), {n['cooperative_id']}, a.currency, a.code, a.kind, a.member_id, {n['created_at']}
    FROM ledger_in, unnest(ledger_in.acc_currencies, ledger_in.acc_codes, ledger_in.acc_kinds,
                           ledger_in.acc_members) AS a(currency, code, kind, member_id)
    WHERE {gate} AND NOT EXISTS (SELECT 1 FROM ledger_account x WHERE x.cooperative_id = {n['cooperative_id']}
                                 AND x.currency = a.currency AND x.code = a.code)
    ON CONFLICT (cooperative_id, currency, code) DO NOTHING
    RETURNING id, currency, code),
ledger_acct AS (
    SELECT id, currency, code FROM ledger_acct_new
    UNION ALL
    SELECT x.id, x.currency, x.code
    FROM ledger_in, unnest(ledger_in.acc_currencies, ledger_in.acc_codes) AS a(currency, code)
    JOIN ledger_account x ON x.currency = a.currency AND x.code = a.code
    WHERE x.cooperative_id = {n['cooperative_id']}),
ledger_tx AS (
    INSERT INTO ledger_transaction (id, cooperative_id, currency, reference, kind, description, occurred_at,
                                    created_at)
    SELECT gen_random_uuid(), {n['cooperative_id']}, t.currency, t.reference, t.kind, t.description,
           {n['occurred_at']}, {n['created_at']}
    FROM ledger_in, unnest(ledger_in.tx_currencies, ledger_in.tx_references, ledger_in.tx_kinds,
                           ledger_in.tx_descriptions) AS t(currency, reference, kind, description)
    WHERE {gate}
    RETURNING id, currency, reference),
ledger_en AS (
    INSERT INTO ledger_entry (id, transaction_id, account_id, cooperative_id, amount_cents, occurred_at)
    SELECT gen_random_uuid(), ledger_tx.id,
           (SELECT ledger_acct.id FROM ledger_acct
            WHERE ledger_acct.currency = ledger_tx.currency AND ledger_acct.code = e.code),
           {n['cooperative_id']}, e.amount, {n['occurred_at']}
    FROM ledger_in, unnest(ledger_in.e_references, ledger_in.e_codes, ledger_in.e_amounts) AS e(reference, code, amount)
    JOIN ledger_tx ON ledger_tx.reference = e.reference
    RETURNING 1)"""


def pg_postings_args(*, cooperative_id: uuid.UUID, postings: list[rules.Posting], occurred_at: datetime,
                     created_at: datetime | None = None) -> list:
    """The parameters of `pg_postings_ctes`, in `PG_POSTINGS_PARAMS` order (row ids: gen_random_uuid())."""
    accounts = sorted({(p.currency, e.account) for p in postings for e in p.entries})  # sorted: lock order
    codes = [code for _, code in accounts]
    members = [rules.member_id_of(code) for code in codes]
    return [
        cooperative_id, occurred_at, created_at or utcnow(),
        [c for c, _ in accounts], codes, [rules.account_kind(code).value for code in codes],
        [uuid.UUID(m) if m else None for m in members],
        [p.currency for p in postings], [p.reference for p in postings], [p.kind for p in postings],
        [p.description[:500] for p in postings],
        [p.reference for p in postings for _ in p.entries], [e.account for p in postings for e in p.entries],
        [e.amount_cents for p in postings for e in p.entries],
    ]


async def balances(session: AsyncSession, *, cooperative_id: uuid.UUID, at: datetime | None = None,
                   currency: str | None = None) -> list[AccountBalance]:
    """Every account's balance, summed from its entries (as of `at` when given)."""
    total = func.coalesce(func.sum(LedgerEntry.amount_cents), 0)
    join_on = LedgerEntry.account_id == LedgerAccount.id
    if at is not None:
        join_on = join_on & (LedgerEntry.occurred_at <= at)
    query = (select(LedgerAccount.code, LedgerAccount.kind, LedgerAccount.currency, total)
             .outerjoin(LedgerEntry, join_on)
             .where(LedgerAccount.cooperative_id == cooperative_id)
             .group_by(LedgerAccount.id, LedgerAccount.code, LedgerAccount.kind, LedgerAccount.currency)
             .order_by(LedgerAccount.currency, LedgerAccount.code))
    if currency is not None:
        query = query.where(LedgerAccount.currency == currency)
    return [AccountBalance(code, kind, cur, int(bal)) for code, kind, cur, bal in await session.execute(query)]


async def account_balance(session: AsyncSession, *, cooperative_id: uuid.UUID, code: str,
                          currency: str = "EUR", at: datetime | None = None) -> int:
    """One account's signed balance from its entries (0 for an account never used)."""
    query = (select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0))
             .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
             .where(LedgerAccount.cooperative_id == cooperative_id, LedgerAccount.currency == currency,
                    LedgerAccount.code == code))
    if at is not None:
        query = query.where(LedgerEntry.occurred_at <= at)
    return int((await session.execute(query)).scalar_one())


async def transaction_entries(session: AsyncSession, *, cooperative_id: uuid.UUID,
                              reference: str) -> list[tuple[str, int]]:
    """The (account code, signed amount) lines of the transaction with this reference."""
    rows = await session.execute(
        select(LedgerAccount.code, LedgerEntry.amount_cents)
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerTransaction.cooperative_id == cooperative_id, LedgerTransaction.reference == reference)
        .order_by(LedgerAccount.code))
    return [(code, int(amount)) for code, amount in rows]


@dataclass(frozen=True)
class EntryView:
    transaction_id: uuid.UUID
    reference: str
    kind: str
    description: str
    account: str
    currency: str
    amount_cents: int  # signed: debit positive, credit negative
    occurred_at: datetime


def _entries_query(cooperative_id: uuid.UUID):
    return (select(LedgerEntry.transaction_id, LedgerTransaction.reference, LedgerTransaction.kind,
                   LedgerTransaction.description, LedgerAccount.code, LedgerAccount.currency,
                   LedgerEntry.amount_cents, LedgerEntry.occurred_at)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
            .where(LedgerEntry.cooperative_id == cooperative_id))


async def entries(session: AsyncSession, *, cooperative_id: uuid.UUID, start: datetime | None = None,
                  end: datetime | None = None, account: str | None = None, limit: int | None = None,
                  newest_first: bool = False) -> list[EntryView]:
    """Ledger entries of a cooperative, optionally of one account and within [start, end)."""
    query = _entries_query(cooperative_id)
    if start is not None:
        query = query.where(LedgerEntry.occurred_at >= start)
    if end is not None:
        query = query.where(LedgerEntry.occurred_at < end)
    if account is not None:
        query = query.where(LedgerAccount.code == account)
    order = (LedgerEntry.occurred_at.desc(), LedgerTransaction.reference.desc()) if newest_first else (
        LedgerEntry.occurred_at, LedgerTransaction.reference)
    query = query.order_by(*order, LedgerAccount.code)
    if limit is not None:
        query = query.limit(limit)
    return [EntryView(*row) for row in await session.execute(query)]
