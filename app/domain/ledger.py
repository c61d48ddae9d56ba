"""Double-entry posting rules: the chart of accounts and the postings each money event makes.

Entries are signed integer cents, positive = debit, negative = credit; storing them is the services' job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from app.domain.errors import InvalidAmount, RefundExceedsPayment, UnbalancedTransaction
from app.domain.fees import Breakdown
from app.domain.money import allocate, validate_currency

# The chart of accounts (DESIGN.md "Ledger"). Codes are stored in the database: never rename.
PROCESSOR_CLEARING = "processor:clearing"  # money held by the payment processor for us
BANK_OPERATING = "bank:operating"
VAT_COLLECTED = "vat:collected"  # owed to the state
FEES_PROCESSING = "fees:processing"  # processor fees; recharged to members who bear them
COOP_CONTRIBUTION = "coop:contribution"  # the cooperative's income from contributions
PAYROLL_NET_PAYABLE = "payroll:net_payable"  # net salaries owed to members
PAYROLL_SOCIAL_PAYABLE = "payroll:social_payable"  # contributions owed to social security
REFUNDS = "refunds"  # refunds the cooperative bears itself (goodwill, lost disputes)
GUARANTEE_FUND = "guarantee_fund"  # reserve voted by the members

_MEMBER_PREFIX = "member:"
_MEMBER_SUFFIX = ":activity"


class AccountKind(str, Enum):
    ASSET = "asset"
    LIABILITY = "liability"
    INCOME = "income"
    EXPENSE = "expense"
    EQUITY = "equity"

    @property
    def normal_side(self) -> Literal["debit", "credit"]:
        """The side on which a balance of this kind is positive."""
        return "debit" if self in (AccountKind.ASSET, AccountKind.EXPENSE) else "credit"


ACCOUNT_KINDS: dict[str, AccountKind] = {
    PROCESSOR_CLEARING: AccountKind.ASSET,
    BANK_OPERATING: AccountKind.ASSET,
    VAT_COLLECTED: AccountKind.LIABILITY,
    FEES_PROCESSING: AccountKind.EXPENSE,
    COOP_CONTRIBUTION: AccountKind.INCOME,
    PAYROLL_NET_PAYABLE: AccountKind.LIABILITY,
    PAYROLL_SOCIAL_PAYABLE: AccountKind.LIABILITY,
    REFUNDS: AccountKind.EXPENSE,
    GUARANTEE_FUND: AccountKind.EQUITY,
}


def member_activity(member_id: str) -> str:
    """The member's activity account (their treasury): what the cooperative owes them."""
    member_id = str(member_id)
    if not member_id or ":" in member_id:
        raise ValueError(f"invalid member id {member_id!r}")
    return f"{_MEMBER_PREFIX}{member_id}{_MEMBER_SUFFIX}"


def member_id_of(account: str) -> str | None:
    """The member id of an activity account, None for any other account."""
    if account.startswith(_MEMBER_PREFIX) and account.endswith(_MEMBER_SUFFIX):
        member_id = account[len(_MEMBER_PREFIX) : -len(_MEMBER_SUFFIX)]
        if member_id and ":" not in member_id:
            return member_id
    return None


def account_kind(account: str) -> AccountKind:
    """The kind of a chart account; raises ValueError for an account outside the chart."""
    kind = ACCOUNT_KINDS.get(account)
    if kind is not None:
        return kind
    if member_id_of(account) is not None:
        # Money held for the member: a debt of the cooperative towards them.
        return AccountKind.LIABILITY
    raise ValueError(f"unknown account {account!r}")


def normal_balance(account: str, signed_cents: int) -> int:
    """A signed (debit-positive) balance expressed on the account's normal side."""
    return signed_cents if account_kind(account).normal_side == "debit" else -signed_cents


@dataclass(frozen=True)
class Entry:
    """One line of a posting: positive amount = debit, negative = credit."""

    account: str
    amount_cents: int

    def __post_init__(self) -> None:
        if type(self.amount_cents) is not int:
            raise InvalidAmount(f"entry amounts are integer cents, got {self.amount_cents!r}")
        account_kind(self.account)


@dataclass(frozen=True)
class Posting:
    """A balanced transaction; `reference` identifies the business event (posted at most once)."""

    reference: str
    kind: str
    description: str
    entries: tuple[Entry, ...]
    currency: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", tuple(self.entries))
        if not self.reference or not self.reference.strip():
            raise ValueError("a posting needs a reference")
        validate_currency(self.currency)
        if len(self.entries) < 2:
            raise UnbalancedTransaction(f"{self.reference}: a posting needs at least two entries")
        if any(entry.amount_cents == 0 for entry in self.entries):
            raise UnbalancedTransaction(f"{self.reference}: zero-amount entry")
        total = sum(entry.amount_cents for entry in self.entries)
        if total != 0:
            raise UnbalancedTransaction(f"{self.reference}: debits and credits differ by {total}")

    @property
    def total_debits_cents(self) -> int:
        return sum(e.amount_cents for e in self.entries if e.amount_cents > 0)

    def amount_for(self, account: str) -> int:
        """The signed sum of this posting's entries on `account`."""
        return sum(e.amount_cents for e in self.entries if e.account == account)


def _build(
    reference: str, kind: str, description: str, currency: str, amounts: dict[str, int]
) -> Posting | None:
    """A posting from account -> signed amount, zero lines dropped; None if nothing moves."""
    entries = tuple(Entry(account, amount) for account, amount in amounts.items() if amount)
    if not entries:
        return None
    return Posting(reference, kind, description, entries, currency)


def _add(amounts: dict[str, int], account: str, cents: int) -> None:
    amounts[account] = amounts.get(account, 0) + cents


def reversal_of(posting: Posting, reference: str, description: str | None = None) -> Posting:
    """The posting that cancels `posting` (every entry negated): history is never edited."""
    return Posting(
        reference=reference,
        kind="reversal",
        description=description or f"Reversal of {posting.reference}",
        entries=tuple(Entry(e.account, -e.amount_cents) for e in posting.entries),
        currency=posting.currency,
    )


def capture_postings(
    *,
    payment_intent_id: str,
    member_id: str,
    breakdown: Breakdown,
    processing_fee_cents: int,
    payer: Literal["member", "cooperative"],
    currency: str,
) -> list[Posting]:
    """The postings of a captured booking payment, in order:

    a. `capture:{pi}`: Dr processor:clearing (price − fee) + Dr fees:processing (fee)
       = Cr vat:collected (VAT) + Cr member activity (price excl. VAT);
    b. `contribution:{pi}`: member activity -> coop:contribution (the quoted contribution, at
       the schedule frozen on the booking);
    c. `processing_recharge:{pi}` (member bears processing): member activity -> fees:processing.

    `processing_fee_cents` is the processor's actual fee, which may differ from the quote; the
    member then bears the actual one. With the quoted fee, the member's activity account grows
    by exactly `breakdown.member_budget_cents`. A fee above the price (a tiny payment with a fixed
    fee, cooperative bearing it) leaves processor:clearing in credit: we owe the processor.
    """
    if payer not in ("member", "cooperative"):
        raise ValueError(f"payer must be 'member' or 'cooperative', got {payer!r}")
    if currency != breakdown.currency:
        raise ValueError(f"currency {currency} differs from the breakdown's {breakdown.currency}")
    price = breakdown.price_cents
    fee = processing_fee_cents
    if type(fee) is not int or fee < 0:
        raise InvalidAmount(f"processing fee must be a non-negative integer, got {fee!r}")
    member = member_activity(member_id)
    postings = [
        _build(
            f"capture:{payment_intent_id}",
            "capture",
            f"Booking payment {payment_intent_id} captured",
            currency,
            {
                PROCESSOR_CLEARING: price - fee,
                FEES_PROCESSING: fee,
                VAT_COLLECTED: -breakdown.vat_cents,
                member: -breakdown.price_excl_vat_cents,
            },
        ),
        _build(
            f"contribution:{payment_intent_id}",
            "contribution",
            f"Cooperative contribution on {payment_intent_id}",
            currency,
            {member: breakdown.contribution_cents, COOP_CONTRIBUTION: -breakdown.contribution_cents},
        ),
    ]
    if payer == "member":
        postings.append(
            _build(
                f"processing_recharge:{payment_intent_id}",
                "processing_recharge",
                f"Payment processing fee on {payment_intent_id}, borne by the member",
                currency,
                {member: fee, FEES_PROCESSING: -fee},
            )
        )
    return [p for p in postings if p is not None]


def _refund_shares(breakdown: Breakdown, refunded_cents: int) -> tuple[int, int, int]:
    """(VAT, price excl. VAT, contribution) attributable to a cumulative refund of that size."""
    price = breakdown.price_cents
    vat, excl = allocate(refunded_cents, [breakdown.vat_cents, breakdown.price_excl_vat_cents])
    contribution = allocate(breakdown.contribution_cents, [refunded_cents, price - refunded_cents])[0]
    return vat, excl, contribution


def refund_postings(
    *,
    refund_id: str,
    member_id: str,
    breakdown: Breakdown,
    amount_cents: int,
    already_refunded_cents: int = 0,
    currency: str,
) -> list[Posting]:
    """A (partial or whole) refund as one reversing posting `refund:{id}`.

    The client gets `amount_cents` back from processor:clearing; VAT, the member's credit and the
    contribution are reversed in proportion (largest-remainder allocation, so it is exact). The
    shares are computed on the cumulative refunded amount, so several partial refunds adding up
    to the price reverse the capture exactly. The processor keeps its fee on a refund, so the
    processing entries are not reversed: whoever bore the fee still bears it.
    """
    if currency != breakdown.currency:
        raise ValueError(f"currency {currency} differs from the breakdown's {breakdown.currency}")
    price = breakdown.price_cents
    if type(already_refunded_cents) is not int or not 0 <= already_refunded_cents <= price:
        raise InvalidAmount("already_refunded_cents must be within the captured price")
    if type(amount_cents) is not int or amount_cents <= 0:
        raise InvalidAmount(f"a refund must be a positive number of cents, got {amount_cents!r}")
    left = price - already_refunded_cents
    if amount_cents > left:
        raise RefundExceedsPayment(f"at most {left} cents of this payment can still be refunded")
    before = _refund_shares(breakdown, already_refunded_cents)
    after = _refund_shares(breakdown, already_refunded_cents + amount_cents)
    vat, excl, contribution = (a - b for a, b in zip(after, before))
    amounts: dict[str, int] = {}
    _add(amounts, PROCESSOR_CLEARING, -amount_cents)
    _add(amounts, VAT_COLLECTED, vat)
    _add(amounts, member_activity(member_id), excl - contribution)
    _add(amounts, COOP_CONTRIBUTION, contribution)
    posting = _build(f"refund:{refund_id}", "refund", f"Refund {refund_id}", currency, amounts)
    return [posting] if posting is not None else []


def payroll_postings(
    *,
    payslip_id: str,
    member_id: str,
    employer_cost_cents: int,
    net_cents: int,
    social_cents: int,
    currency: str = "EUR",
) -> list[Posting]:
    """`payroll:{payslip}`: member activity (employer cost) -> net payable + social payable.

    social_cents is every contribution, employer's and employee's; an employer cost different
    from net + social raises UnbalancedTransaction.
    """
    for name, value in (
        ("employer_cost_cents", employer_cost_cents),
        ("net_cents", net_cents),
        ("social_cents", social_cents),
    ):
        if type(value) is not int or value < 0:
            raise InvalidAmount(f"{name} must be a non-negative integer, got {value!r}")
    amounts: dict[str, int] = {}
    _add(amounts, member_activity(member_id), employer_cost_cents)
    _add(amounts, PAYROLL_NET_PAYABLE, -net_cents)
    _add(amounts, PAYROLL_SOCIAL_PAYABLE, -social_cents)
    posting = _build(
        f"payroll:{payslip_id}", "payroll", f"Payslip {payslip_id}", currency, amounts
    )
    return [posting] if posting is not None else []


def salary_payment_posting(*, payment_id: str, net_cents: int, currency: str = "EUR") -> Posting:
    """`salary_payment:{id}`: net salaries paid (SEPA file executed): net payable -> bank."""
    if type(net_cents) is not int or net_cents <= 0:
        raise InvalidAmount(f"a salary payment must be positive, got {net_cents!r}")
    return Posting(
        f"salary_payment:{payment_id}",
        "salary_payment",
        f"Net salaries paid ({payment_id})",
        (Entry(PAYROLL_NET_PAYABLE, net_cents), Entry(BANK_OPERATING, -net_cents)),
        currency,
    )


def social_payment_posting(*, payment_id: str, amount_cents: int, currency: str = "EUR") -> Posting:
    """`social_payment:{id}`: contributions paid to social security: social payable -> bank."""
    if type(amount_cents) is not int or amount_cents <= 0:
        raise InvalidAmount(f"a social payment must be positive, got {amount_cents!r}")
    return Posting(
        f"social_payment:{payment_id}",
        "social_payment",
        f"Social contributions paid ({payment_id})",
        (Entry(PAYROLL_SOCIAL_PAYABLE, amount_cents), Entry(BANK_OPERATING, -amount_cents)),
        currency,
    )


def trial_balance(entries: Iterable[Entry | Posting]) -> dict[str, int]:
    """Signed (debit-positive) balance per account, accounts sorted; accepts entries or postings.

    Postings of different currencies cannot share a trial balance: ValueError.
    """
    balances: dict[str, int] = {}
    currencies: set[str] = set()
    for item in entries:
        if isinstance(item, Posting):
            currencies.add(item.currency)
            for entry in item.entries:
                balances[entry.account] = balances.get(entry.account, 0) + entry.amount_cents
        else:
            balances[item.account] = balances.get(item.account, 0) + item.amount_cents
    if len(currencies) > 1:
        raise ValueError(f"one trial balance per currency, got {sorted(currencies)}")
    return dict(sorted(balances.items()))


def check_trial_balance(balances: dict[str, int]) -> None:
    """Raise UnbalancedTransaction unless total debits equal total credits."""
    total = sum(balances.values())
    if total != 0:
        raise UnbalancedTransaction(f"the trial balance is off by {total} cents")


def member_balance_cents(entries: Iterable[Entry | Posting], member_id: str) -> int:
    """A member's treasury balance (credit side positive: what the cooperative owes them)."""
    account = member_activity(member_id)
    return normal_balance(account, trial_balance(entries).get(account, 0))
