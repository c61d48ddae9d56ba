"""The ledger service on the real database: postings land once, balance, never change, never race."""
from __future__ import annotations

import asyncio
import random
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.domain import ledger as rules
from app.domain.errors import UnbalancedTransaction
from app.db import utcnow
from app.domain.fees import FeeSchedule, SalaryRates, quote_breakdown
from app.models import LedgerEntry, LedgerTransaction
from app.services import ledger
from tests.factories import make_cooperative

RATES = SalaryRates(gross_per_cost=Decimal(300000) / Decimal(398058), net_per_gross=Decimal(237479) / Decimal(300000))
SCHEDULE = FeeSchedule(contribution_rate_bps=1000, processing_fee_payer="member", processing_fee_bps=150,
                       processing_fee_fixed_cents=25)


async def _coop_id(db) -> uuid.UUID:
    from app.services import tenancy

    slug = await make_cooperative(db)
    async with db.sessionmaker() as s:
        return (await tenancy.cooperative_by_slug(s, slug)).id


async def _member(db, coop_id) -> str:
    """A member row (ledger accounts reference it)."""
    from app.models import Member, User

    async with db.sessionmaker() as s:
        user = User(cooperative_id=coop_id, email=f"{uuid.uuid4().hex}@example.org", password_hash="x",
                    display_name="m", role="worker")
        s.add(user)
        await s.flush()
        member = Member(cooperative_id=coop_id, user_id=user.id)
        s.add(member)
        await s.commit()
        return str(member.id)


def _transfer(reference: str, debit: str, credit: str, cents: int) -> rules.Posting:
    return rules.Posting(reference, "test", "test transfer",
                         (rules.Entry(debit, cents), rules.Entry(credit, -cents)), "EUR")


async def _trial_total(db, coop_id) -> tuple[int, int]:
    async with db.sessionmaker() as s:
        rows = await ledger.balances(s, cooperative_id=coop_id)
    return sum(r.balance_cents for r in rows), len(rows)


async def test_capture_postings_land_with_the_quoted_split(db):
    coop_id = await _coop_id(db)
    member = await _member(db, coop_id)
    breakdown = quote_breakdown(price_excl_vat_cents=15000, vat_rate_bps=2000, schedule=SCHEDULE, rates=RATES)
    postings = rules.capture_postings(payment_intent_id="pi_1", member_id=member, breakdown=breakdown,
                                      processing_fee_cents=breakdown.amount("payment_processing"),
                                      payer="member", currency="EUR")
    async with db.sessionmaker() as s:
        for p in postings:
            assert (await ledger.post(s, cooperative_id=coop_id, posting=p)).created
        await s.commit()
    async with db.sessionmaker() as s:
        activity = await ledger.account_balance(s, cooperative_id=coop_id, code=rules.member_activity(member))
        vat = await ledger.account_balance(s, cooperative_id=coop_id, code=rules.VAT_COLLECTED)
        contribution = await ledger.account_balance(s, cooperative_id=coop_id, code=rules.COOP_CONTRIBUTION)
        clearing = await ledger.account_balance(s, cooperative_id=coop_id, code=rules.PROCESSOR_CLEARING)
    # Credit balances are negative (debit-positive convention): the coop owes the member 132.05 €.
    assert -activity == 13205 == breakdown.member_budget_cents
    assert -vat == 3000 and -contribution == 1500 and clearing == 18000 - 295
    assert await _trial_total(db, coop_id) == (0, 5)


async def test_a_reference_posts_once_and_returns_the_first_transaction(db):
    coop_id = await _coop_id(db)
    posting = _transfer("capture:pi_twice", rules.PROCESSOR_CLEARING, rules.VAT_COLLECTED, 1000)
    async with db.sessionmaker() as s:
        first = await ledger.post(s, cooperative_id=coop_id, posting=posting)
        await s.commit()
    async with db.sessionmaker() as s:
        second = await ledger.post(s, cooperative_id=coop_id, posting=posting)
        await s.commit()
    assert first.created and not second.created and first.transaction_id == second.transaction_id
    async with db.sessionmaker() as s:
        count = (await s.execute(select(func.count()).select_from(LedgerEntry))).scalar_one()
        bal = await ledger.account_balance(s, cooperative_id=coop_id, code=rules.VAT_COLLECTED)
    assert count == 2 and bal == -1000


async def test_the_same_reference_in_two_cooperatives_is_two_events(db):
    a, b = await _coop_id(db), await _coop_id(db)
    posting = _transfer("capture:pi_same", rules.PROCESSOR_CLEARING, rules.VAT_COLLECTED, 700)
    async with db.sessionmaker() as s:
        assert (await ledger.post(s, cooperative_id=a, posting=posting)).created
        assert (await ledger.post(s, cooperative_id=b, posting=posting)).created
        await s.commit()
        assert await ledger.account_balance(s, cooperative_id=a, code=rules.VAT_COLLECTED) == -700
        assert await ledger.account_balance(s, cooperative_id=b, code=rules.VAT_COLLECTED) == -700


async def test_an_unbalanced_posting_is_refused_before_anything_is_written(db):
    with pytest.raises(UnbalancedTransaction):
        rules.Posting("bad:1", "test", "off by one", (rules.Entry(rules.PROCESSOR_CLEARING, 1000),
                                                      rules.Entry(rules.VAT_COLLECTED, -999)), "EUR")
    async with db.sessionmaker() as s:
        assert (await s.execute(select(func.count()).select_from(LedgerTransaction))).scalar_one() == 0


@pytest.mark.postgres
async def test_postgres_refuses_an_unbalanced_transaction_written_around_the_domain(db):
    coop_id = await _coop_id(db)
    async with db.sessionmaker() as s:
        result = await ledger.post(s, cooperative_id=coop_id,
                                   posting=_transfer("ok:1", rules.PROCESSOR_CLEARING, rules.VAT_COLLECTED, 500))
        await s.commit()
    async with db.sessionmaker() as s:
        account_id = (await s.execute(text("SELECT account_id FROM ledger_entry LIMIT 1"))).scalar_one()
        await s.execute(text(
            "INSERT INTO ledger_entry (id, transaction_id, account_id, cooperative_id, amount_cents, occurred_at) "
            "VALUES (:id, :tx, :acc, :coop, 1, now())"),
            {"id": uuid.uuid4(), "tx": result.transaction_id, "acc": account_id, "coop": coop_id})
        with pytest.raises((IntegrityError, DBAPIError), match="does not balance"):
            await s.commit()


@pytest.mark.postgres
@pytest.mark.parametrize("statement", ["UPDATE ledger_entry SET amount_cents = amount_cents * 2",
                                       "DELETE FROM ledger_entry",
                                       "UPDATE ledger_transaction SET description = 'rewritten'"])
async def test_postgres_keeps_ledger_history_append_only(db, statement):
    coop_id = await _coop_id(db)
    async with db.sessionmaker() as s:
        await ledger.post(s, cooperative_id=coop_id,
                          posting=_transfer("ok:2", rules.PROCESSOR_CLEARING, rules.VAT_COLLECTED, 500))
        await s.commit()
    async with db.sessionmaker() as s:
        with pytest.raises(DBAPIError, match="append-only"):
            await s.execute(text(statement))


@pytest.mark.postgres
async def test_concurrent_postings_to_the_same_accounts_keep_balances_exact(db):
    coop_id = await _coop_id(db)
    member = await _member(db, coop_id)
    activity = rules.member_activity(member)
    amounts = [random.Random(i).randint(1, 100_000) for i in range(60)]

    async def one(i: int, cents: int) -> None:
        async with db.sessionmaker() as s:
            await ledger.post(s, cooperative_id=coop_id,
                              posting=_transfer(f"concurrent:{i}", rules.PROCESSOR_CLEARING, activity, cents))
            await s.commit()

    await asyncio.gather(*(one(i, c) for i, c in enumerate(amounts)))
    async with db.sessionmaker() as s:
        assert await ledger.account_balance(s, cooperative_id=coop_id, code=activity) == -sum(amounts)
        assert await ledger.account_balance(s, cooperative_id=coop_id, code=rules.PROCESSOR_CLEARING) == sum(amounts)
        accounts = (await s.execute(text("SELECT count(*) FROM ledger_account"))).scalar_one()
    assert accounts == 2  # both racing openers of the same account ended on one row
    assert await _trial_total(db, coop_id) == (0, 2)


@pytest.mark.postgres
async def test_a_retried_event_racing_itself_posts_once(db):
    coop_id = await _coop_id(db)
    posting = _transfer("capture:pi_race", rules.PROCESSOR_CLEARING, rules.VAT_COLLECTED, 4242)

    async def attempt():
        async with db.sessionmaker() as s:
            result = await ledger.post(s, cooperative_id=coop_id, posting=posting)
            await s.commit()
            return result

    results = await asyncio.gather(*(attempt() for _ in range(12)))
    assert sum(r.created for r in results) == 1
    assert len({r.transaction_id for r in results}) == 1
    async with db.sessionmaker() as s:
        assert await ledger.account_balance(s, cooperative_id=coop_id, code=rules.VAT_COLLECTED) == -4242


async def test_trial_balance_is_zero_after_any_sequence_of_postings_and_reversals(db):
    coop_id = await _coop_id(db)
    members = [await _member(db, coop_id) for _ in range(3)]
    rnd = random.Random(20261126)
    posted: list[rules.Posting] = []
    async with db.sessionmaker() as s:
        for i in range(80):
            choice = rnd.random()
            if choice < 0.6:
                price = rnd.randint(2000, 200_000)
                breakdown = quote_breakdown(price_excl_vat_cents=price, vat_rate_bps=rnd.choice([0, 550, 2000]),
                                            schedule=SCHEDULE, rates=RATES)
                new = rules.capture_postings(payment_intent_id=f"pi_{i}", member_id=rnd.choice(members),
                                             breakdown=breakdown, payer=rnd.choice(["member", "cooperative"]),
                                             processing_fee_cents=breakdown.amount("payment_processing"),
                                             currency="EUR")
            elif posted:
                new = [rules.reversal_of(rnd.choice(posted), f"reversal:{i}")]
            else:
                continue
            for p in new:
                await ledger.post(s, cooperative_id=coop_id, posting=p)
            posted.extend(new)
            if i % 10 == 0:
                await s.commit()
        await s.commit()
        rows = await ledger.balances(s, cooperative_id=coop_id)
    assert sum(r.balance_cents for r in rows) == 0
    expected = rules.trial_balance(posted)
    assert {r.code: r.balance_cents for r in rows if r.balance_cents} == {k: v for k, v in expected.items() if v}


async def test_post_many_writes_only_the_references_not_posted_yet(db):
    coop_id = await _coop_id(db)
    a = _transfer("event:a", rules.PROCESSOR_CLEARING, rules.VAT_COLLECTED, 100)
    b = _transfer("event:b", rules.PROCESSOR_CLEARING, rules.COOP_CONTRIBUTION, 250)
    async with db.sessionmaker() as s:
        first = await ledger.post(s, cooperative_id=coop_id, posting=a)
        await s.commit()
    async with db.sessionmaker() as s:
        results = await ledger.post_many(s, cooperative_id=coop_id, postings=[a, b])
        await s.commit()
    assert [r.created for r in results] == [False, True] and results[0].transaction_id == first.transaction_id
    async with db.sessionmaker() as s:
        assert await ledger.account_balance(s, cooperative_id=coop_id, code=rules.PROCESSOR_CLEARING) == 350
        assert await ledger.account_balance(s, cooperative_id=coop_id, code=rules.VAT_COLLECTED) == -100
    assert await _trial_total(db, coop_id) == (0, 3)


# ---- PostgreSQL: an entry's account is checked by a trigger, accounts are permanent (0009) ------


async def _posted_account(db, coop_id, reference: str) -> tuple[uuid.UUID, uuid.UUID]:
    """(transaction id, account id) of a fresh posting in this cooperative."""
    async with db.sessionmaker() as s:
        result = await ledger.post(s, cooperative_id=coop_id,
                                   posting=_transfer(reference, rules.PROCESSOR_CLEARING, rules.VAT_COLLECTED, 500))
        await s.commit()
        account_id = (await s.execute(text(
            "SELECT account_id FROM ledger_entry WHERE transaction_id = :tx AND amount_cents > 0"),
            {"tx": result.transaction_id})).scalar_one()
    return result.transaction_id, account_id


async def _insert_pair(db, *, tx, coop_id, debit_account, credit_account, credit_coop=None):
    """A balanced pair of entries written around the service, in one statement."""
    async with db.sessionmaker() as s:
        await s.execute(text(
            "INSERT INTO ledger_entry (id, transaction_id, account_id, cooperative_id, amount_cents, occurred_at) "
            "VALUES (:id1, :tx, :debit, :coop, 7, now()), (:id2, :tx, :credit, :credit_coop, -7, now())"),
            {"id1": uuid.uuid4(), "id2": uuid.uuid4(), "tx": tx, "debit": debit_account, "credit": credit_account,
             "coop": coop_id, "credit_coop": credit_coop or coop_id})
        await s.commit()


@pytest.mark.postgres
async def test_postgres_refuses_an_entry_on_an_unknown_account(db):
    coop_id = await _coop_id(db)
    tx, account_id = await _posted_account(db, coop_id, "known:1")
    with pytest.raises((IntegrityError, DBAPIError), match="not an account of cooperative"):
        await _insert_pair(db, tx=tx, coop_id=coop_id, debit_account=account_id, credit_account=uuid.uuid4())
    await _insert_pair(db, tx=tx, coop_id=coop_id, debit_account=account_id, credit_account=account_id)  # control


@pytest.mark.postgres
async def test_postgres_refuses_an_entry_on_another_cooperatives_account(db):
    coop_id, other_id = await _coop_id(db), await _coop_id(db)
    tx, account_id = await _posted_account(db, coop_id, "mine:1")
    _, foreign_account = await _posted_account(db, other_id, "theirs:1")
    # Another cooperative's account, under this cooperative's id or under its own: both refused.
    for credit_coop in (coop_id, other_id):
        with pytest.raises((IntegrityError, DBAPIError), match="not an account of cooperative"):
            await _insert_pair(db, tx=tx, coop_id=coop_id, debit_account=account_id, credit_account=foreign_account,
                               credit_coop=credit_coop)
    async with db.sessionmaker() as s:
        assert (await s.execute(select(func.count()).select_from(LedgerEntry))).scalar_one() == 4


@pytest.mark.postgres
@pytest.mark.parametrize("statement", ["DELETE FROM ledger_account WHERE id = :account",
                                       "UPDATE ledger_account SET cooperative_id = :other WHERE id = :account",
                                       "UPDATE ledger_account SET id = gen_random_uuid() WHERE id = :account"])
async def test_postgres_keeps_ledger_accounts_permanent(db, statement):
    coop_id, other_id = await _coop_id(db), await _coop_id(db)
    _, account_id = await _posted_account(db, coop_id, "permanent:1")
    async with db.sessionmaker() as s:
        with pytest.raises(DBAPIError, match="ledger accounts are permanent"):
            await s.execute(text(statement), {"account": account_id, "other": other_id})


@pytest.mark.postgres
async def test_postgres_the_one_statement_postings_get_a_generic_plan(db):
    """pg_postings_ctes hides its arrays' lengths from the planner: the plan cache settles on one
    generic plan instead of planning the statement again on every execution."""
    coop_id = await _coop_id(db)
    member = await _member(db, coop_id)
    sql = ("WITH ev AS (SELECT 1)," + ledger.pg_postings_ctes(first=1, gate="EXISTS (SELECT 1 FROM ev)")
           + " SELECT count(*) FROM ledger_en")
    breakdown = quote_breakdown(price_excl_vat_cents=15000, vat_rate_bps=2000, schedule=SCHEDULE, rates=RATES)
    async with db.driver() as conn:
        for i in range(8):
            # Postings of different shapes (2 or 3 transactions, 3 to 8 entries) on one connection.
            postings = (rules.capture_postings(payment_intent_id=f"pi_plan_{i}", member_id=member, breakdown=breakdown,
                                               processing_fee_cents=breakdown.amount("payment_processing"),
                                               payer="member" if i % 2 else "cooperative", currency="EUR")
                        if i % 3 else [_transfer(f"plan:{i}", rules.PROCESSOR_CLEARING, rules.VAT_COLLECTED, 10 + i)])
            args = ledger.pg_postings_args(cooperative_id=coop_id, postings=postings, occurred_at=utcnow())
            assert await conn.fetchval(sql, *args) == sum(len(p.entries) for p in postings)
        generic, custom = await conn.fetchrow(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1", sql)
    assert generic >= 3 and custom <= 5
    assert (await _trial_total(db, coop_id))[0] == 0
