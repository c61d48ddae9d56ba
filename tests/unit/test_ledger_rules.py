"""Ledger posting rules: balanced postings, reversals, capture/refund/payroll postings."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.errors import InvalidAmount, PriceTooLow, RefundExceedsPayment, UnbalancedTransaction
from app.domain.fees import FeeSchedule, SalaryRates, quote_breakdown
from app.domain.ledger import (
    BANK_OPERATING,
    COOP_CONTRIBUTION,
    FEES_PROCESSING,
    GUARANTEE_FUND,
    PAYROLL_NET_PAYABLE,
    PAYROLL_SOCIAL_PAYABLE,
    PROCESSOR_CLEARING,
    REFUNDS,
    VAT_COLLECTED,
    AccountKind,
    Entry,
    Posting,
    account_kind,
    capture_postings,
    check_trial_balance,
    member_activity,
    member_balance_cents,
    member_id_of,
    normal_balance,
    payroll_postings,
    refund_postings,
    reversal_of,
    salary_payment_posting,
    social_payment_posting,
    trial_balance,
)

MEMBER = "5f0c7a0e-0000-4000-8000-000000000001"
RATES = SalaryRates(
    gross_per_cost=Decimal(300000) / Decimal(398058), net_per_gross=Decimal(237479) / Decimal(300000)
)


def schedule(payer="member", contribution=1000):
    return FeeSchedule(
        contribution_rate_bps=contribution,
        processing_fee_payer=payer,
        processing_fee_bps=150,
        processing_fee_fixed_cents=25,
    )


def example(payer="member"):
    return quote(15000, 2000, schedule(payer))


def quote(price_excl, vat, fee_schedule):
    return quote_breakdown(
        price_excl_vat_cents=price_excl, vat_rate_bps=vat, schedule=fee_schedule, rates=RATES
    )


def test_chart_of_accounts():
    assert member_activity(MEMBER) == f"member:{MEMBER}:activity"
    assert member_id_of(member_activity(MEMBER)) == MEMBER
    assert member_id_of(VAT_COLLECTED) is None
    assert account_kind(member_activity(MEMBER)) is AccountKind.LIABILITY
    assert account_kind(PROCESSOR_CLEARING) is AccountKind.ASSET
    assert account_kind(BANK_OPERATING) is AccountKind.ASSET
    assert account_kind(VAT_COLLECTED) is AccountKind.LIABILITY
    assert account_kind(FEES_PROCESSING) is AccountKind.EXPENSE
    assert account_kind(COOP_CONTRIBUTION) is AccountKind.INCOME
    assert account_kind(PAYROLL_NET_PAYABLE) is AccountKind.LIABILITY
    assert account_kind(PAYROLL_SOCIAL_PAYABLE) is AccountKind.LIABILITY
    assert account_kind(REFUNDS) is AccountKind.EXPENSE
    assert account_kind(GUARANTEE_FUND) is AccountKind.EQUITY
    assert AccountKind.ASSET.normal_side == AccountKind.EXPENSE.normal_side == "debit"
    assert AccountKind.LIABILITY.normal_side == AccountKind.INCOME.normal_side == "credit"
    assert normal_balance(VAT_COLLECTED, -3000) == 3000
    assert normal_balance(PROCESSOR_CLEARING, 17705) == 17705
    with pytest.raises(ValueError):
        account_kind("cash:drawer")
    with pytest.raises(ValueError):
        member_activity("a:b")


def test_a_posting_must_balance():
    with pytest.raises(UnbalancedTransaction) as info:
        Posting("x:1", "test", "", (Entry(BANK_OPERATING, 100), Entry(VAT_COLLECTED, -99)), "EUR")
    assert info.value.code == "unbalanced_transaction"
    with pytest.raises(UnbalancedTransaction):
        Posting("x:1", "test", "", (Entry(BANK_OPERATING, 0), Entry(VAT_COLLECTED, 0)), "EUR")
    with pytest.raises(UnbalancedTransaction):
        Posting("x:1", "test", "", (Entry(BANK_OPERATING, 0),), "EUR")
    with pytest.raises(UnbalancedTransaction):
        entries = (Entry(BANK_OPERATING, 5), Entry(VAT_COLLECTED, -5), Entry(REFUNDS, 0))
        Posting("x:1", "test", "", entries, "EUR")
    with pytest.raises(ValueError):
        Posting(" ", "test", "", (Entry(BANK_OPERATING, 5), Entry(VAT_COLLECTED, -5)), "EUR")
    with pytest.raises(InvalidAmount):
        Entry(BANK_OPERATING, 1.5)
    with pytest.raises(ValueError):
        Entry("nowhere", 1)
    posting = Posting("x:1", "test", "ok", [Entry(BANK_OPERATING, 5), Entry(VAT_COLLECTED, -5)], "EUR")
    assert isinstance(posting.entries, tuple)
    assert posting.total_debits_cents == 5


@given(st.lists(st.integers(-(10**9), 10**9).filter(bool), min_size=1, max_size=6))
def test_reversal_balances_and_cancels(amounts):
    accounts = [
        PROCESSOR_CLEARING, BANK_OPERATING, VAT_COLLECTED, FEES_PROCESSING, COOP_CONTRIBUTION, REFUNDS
    ]
    entries = [Entry(accounts[i], a) for i, a in enumerate(amounts)]
    if sum(amounts):
        entries.append(Entry(GUARANTEE_FUND, -sum(amounts)))
    if len(entries) < 2:
        return
    posting = Posting("test:1", "test", "", tuple(entries), "EUR")
    reversal = reversal_of(posting, "reversal:test:1")
    assert reversal.reference == "reversal:test:1"
    assert sum(e.amount_cents for e in reversal.entries) == 0
    balances = trial_balance([posting, reversal])
    assert all(v == 0 for v in balances.values())


@pytest.mark.parametrize("payer", ["member", "cooperative"])
def test_capture_postings_credit_the_member_budget(payer):
    breakdown = example(payer)
    postings = capture_postings(
        payment_intent_id="pi_1",
        member_id=MEMBER,
        breakdown=breakdown,
        processing_fee_cents=breakdown.processing_fee_cents,
        payer=payer,
        currency="EUR",
    )
    references = [p.reference for p in postings]
    expected = ["capture:pi_1", "contribution:pi_1"]
    if payer == "member":
        expected.append("processing_recharge:pi_1")
    assert references == expected
    capture = postings[0]
    assert capture.amount_for(PROCESSOR_CLEARING) == 18000 - 295
    assert capture.amount_for(FEES_PROCESSING) == 295
    assert capture.amount_for(VAT_COLLECTED) == -3000
    assert capture.amount_for(member_activity(MEMBER)) == -15000
    assert postings[1].amount_for(COOP_CONTRIBUTION) == -1500
    assert member_balance_cents(postings, MEMBER) == breakdown.member_budget_cents
    balances = trial_balance(postings)
    check_trial_balance(balances)
    if payer == "member":
        assert member_balance_cents(postings, MEMBER) == 13205
        assert balances[FEES_PROCESSING] == 0
    else:
        assert member_balance_cents(postings, MEMBER) == 13500
        assert balances[FEES_PROCESSING] == 295  # the cooperative's expense
    assert normal_balance(COOP_CONTRIBUTION, balances[COOP_CONTRIBUTION]) == 1500


def test_capture_with_a_different_actual_fee_charges_the_actual_fee():
    breakdown = example("member")
    postings = capture_postings(
        payment_intent_id="pi_2", member_id=MEMBER, breakdown=breakdown,
        processing_fee_cents=300, payer="member", currency="EUR",
    )
    assert member_balance_cents(postings, MEMBER) == breakdown.member_budget_cents - 5
    check_trial_balance(trial_balance(postings))


def test_capture_rejects_bad_arguments():
    breakdown = example()
    kwargs = dict(
        payment_intent_id="pi", member_id=MEMBER, breakdown=breakdown, payer="member", currency="EUR"
    )
    with pytest.raises(InvalidAmount):
        capture_postings(processing_fee_cents=-1, **kwargs)
    with pytest.raises(InvalidAmount):
        capture_postings(processing_fee_cents=2.95, **kwargs)
    with pytest.raises(ValueError):
        capture_postings(processing_fee_cents=295, **{**kwargs, "currency": "CHF"})
    with pytest.raises(ValueError):
        capture_postings(processing_fee_cents=295, **{**kwargs, "payer": "client"})


@settings(max_examples=300)
@given(
    st.integers(1, 10**7),
    st.sampled_from([0, 550, 1000, 2000]),
    st.integers(0, 3000),
    st.sampled_from(["member", "cooperative"]),
    st.integers(0, 3),
)
def test_capture_property(price_excl, vat, contribution, payer, fee_delta):
    try:
        breakdown = quote(price_excl, vat, schedule(payer, contribution))
    except PriceTooLow:
        return
    fee = min(breakdown.processing_fee_cents + fee_delta, breakdown.price_cents)
    postings = capture_postings(
        payment_intent_id="pi", member_id=MEMBER, breakdown=breakdown,
        processing_fee_cents=fee, payer=payer, currency="EUR",
    )
    check_trial_balance(trial_balance(postings))
    extra = (fee - breakdown.processing_fee_cents) if payer == "member" else 0
    assert member_balance_cents(postings, MEMBER) == breakdown.member_budget_cents - extra


@pytest.mark.parametrize("payer", ["member", "cooperative"])
def test_whole_refund_reverses_all_but_the_kept_processing_fee(payer):
    breakdown = example(payer)
    captured = capture_postings(
        payment_intent_id="pi", member_id=MEMBER, breakdown=breakdown,
        processing_fee_cents=295, payer=payer, currency="EUR",
    )
    [refund] = refund_postings(
        refund_id="re_1", member_id=MEMBER, breakdown=breakdown, amount_cents=18000, currency="EUR"
    )
    assert refund.reference == "refund:re_1"
    assert refund.amount_for(PROCESSOR_CLEARING) == -18000
    balances = trial_balance([*captured, refund])
    check_trial_balance(balances)
    assert balances[VAT_COLLECTED] == 0
    assert balances[COOP_CONTRIBUTION] == 0
    assert balances[PROCESSOR_CLEARING] == -295  # the processor kept its fee
    if payer == "member":
        assert member_balance_cents([*captured, refund], MEMBER) == -295
    else:
        assert member_balance_cents([*captured, refund], MEMBER) == 0
        assert balances[FEES_PROCESSING] == 295


@settings(max_examples=300)
@given(
    st.integers(1, 10**6),
    st.sampled_from([0, 550, 1000, 2000]),
    st.integers(0, 3000),
    st.lists(st.integers(1, 10**6), min_size=1, max_size=5),
)
def test_partial_refunds_add_up_to_an_exact_reversal(price_excl, vat, contribution, parts):
    try:
        breakdown = quote(price_excl, vat, schedule("cooperative", contribution))
    except PriceTooLow:
        return
    captured = capture_postings(
        payment_intent_id="pi", member_id=MEMBER, breakdown=breakdown,
        processing_fee_cents=breakdown.processing_fee_cents, payer="cooperative", currency="EUR",
    )
    price, refunded, postings = breakdown.price_cents, 0, list(captured)
    for i, part in enumerate(parts):
        amount = min(part, price - refunded)
        if amount == 0:
            break
        postings += refund_postings(
            refund_id=f"re_{i}", member_id=MEMBER, breakdown=breakdown, amount_cents=amount,
            already_refunded_cents=refunded, currency="EUR",
        )
        refunded += amount
        check_trial_balance(trial_balance(postings))
    postings += refund_postings(
        refund_id="re_last", member_id=MEMBER, breakdown=breakdown, amount_cents=price - refunded,
        already_refunded_cents=refunded, currency="EUR",
    ) if refunded < price else []
    balances = trial_balance(postings)
    assert balances.get(VAT_COLLECTED, 0) == 0
    assert balances.get(COOP_CONTRIBUTION, 0) == 0
    assert balances.get(member_activity(MEMBER), 0) == 0


def test_refund_limits():
    breakdown = example()
    kwargs = dict(refund_id="re", member_id=MEMBER, breakdown=breakdown, currency="EUR")
    with pytest.raises(RefundExceedsPayment) as info:
        refund_postings(amount_cents=18001, **kwargs)
    assert info.value.code == "refund_exceeds_payment"
    with pytest.raises(RefundExceedsPayment):
        refund_postings(amount_cents=2, already_refunded_cents=17999, **kwargs)
    with pytest.raises(InvalidAmount):
        refund_postings(amount_cents=0, **kwargs)
    [half] = refund_postings(amount_cents=9000, **kwargs)
    assert half.amount_for(VAT_COLLECTED) == 1500
    assert half.amount_for(COOP_CONTRIBUTION) == 750
    assert half.amount_for(member_activity(MEMBER)) == 7500 - 750


def test_payroll_and_salary_payment():
    [payroll] = payroll_postings(
        payslip_id="ps_1", member_id=MEMBER, employer_cost_cents=398058, net_cents=237479, social_cents=160579
    )
    assert payroll.reference == "payroll:ps_1"
    assert payroll.amount_for(member_activity(MEMBER)) == 398058
    assert payroll.amount_for(PAYROLL_NET_PAYABLE) == -237479
    assert payroll.amount_for(PAYROLL_SOCIAL_PAYABLE) == -160579
    payment = salary_payment_posting(payment_id="sepa_2026_01", net_cents=237479)
    social = social_payment_posting(payment_id="urssaf_2026_01", amount_cents=160579)
    balances = trial_balance([payroll, payment, social])
    check_trial_balance(balances)
    assert balances[PAYROLL_NET_PAYABLE] == 0
    assert balances[PAYROLL_SOCIAL_PAYABLE] == 0
    assert balances[BANK_OPERATING] == -398058
    with pytest.raises(UnbalancedTransaction):
        payroll_postings(
            payslip_id="ps_2", member_id=MEMBER, employer_cost_cents=100, net_cents=60, social_cents=39
        )
    with pytest.raises(InvalidAmount):
        payroll_postings(
            payslip_id="ps_3", member_id=MEMBER, employer_cost_cents=-1, net_cents=0, social_cents=-1
        )
    with pytest.raises(InvalidAmount):
        salary_payment_posting(payment_id="p", net_cents=0)


def test_trial_balance():
    assert trial_balance([Entry(BANK_OPERATING, 5), Entry(VAT_COLLECTED, -5), Entry(BANK_OPERATING, 1)]) == {
        BANK_OPERATING: 6,
        VAT_COLLECTED: -5,
    }
    with pytest.raises(UnbalancedTransaction):
        check_trial_balance({BANK_OPERATING: 6, VAT_COLLECTED: -5})
    eur = salary_payment_posting(payment_id="a", net_cents=1)
    chf = salary_payment_posting(payment_id="b", net_cents=1, currency="CHF")
    with pytest.raises(ValueError):
        trial_balance([eur, chf])
