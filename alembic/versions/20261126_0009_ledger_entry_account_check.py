"""ledger entries: their account (and its cooperative) checked once per statement, accounts permanent

On PostgreSQL, ledger_entry's foreign keys to ledger_account and to cooperative are replaced by:
- a statement-level AFTER INSERT trigger (transition table) that refuses the statement if any new
  entry's account does not exist, or the entry, its transaction and its account are not all of one
  cooperative. This is stronger than the two foreign keys it replaces (they did not tie an entry's
  cooperative to its transaction's or its account's); the entry's cooperative exists because its
  account's does (ledger_account keeps its foreign key to cooperative, which also keeps a cooperative
  with accounts from being deleted or re-keyed). An entry whose transaction does not exist is refused
  by the foreign key to ledger_transaction, which stays;
- a row trigger that makes ledger accounts permanent: no DELETE, no UPDATE of `id` or
  `cooperative_id` (what an entry relies on). A foreign key's delete-side check is then never needed.

Why: a foreign key check takes a FOR KEY SHARE lock on the referenced row. Every capture posts to the
same few chart accounts of its cooperative, so concurrent captures share locks on those hot rows,
which PostgreSQL records as multixacts (measured: 1,030 µs of PostgreSQL CPU per webhook capture at 8
connections, against 640 alone). Since accounts can no longer disappear or move, a plain existence
check without a lock, once per statement, is enough: an account an entry saw cannot go away before or
after the entry commits. (TRUNCATE, which row triggers do not see, stays an administrator's tool, as
for the ledger's append-only triggers of 0002.) ledger_entry keeps its foreign key to
ledger_transaction (a row of the same statement, never contended) and ledger_transaction keeps its
foreign key to cooperative.

The models (app/models/ledger.py) still declare the two foreign keys: they are the schema on SQLite
(this revision changes nothing there: SQLite's foreign keys take no locks, and it has no transition
tables), and they document the relation. On PostgreSQL the migration is the schema: the drift check
(tests/integration/test_migrations.py) knows these two constraints are replaced by the trigger here.

Revision ID: 0009_ledger_entry_account_check
Revises: 0008_supply_version
Create Date: 2026-11-26
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0009_ledger_entry_account_check"
down_revision: str | None = "0008_supply_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The foreign keys this revision replaces on PostgreSQL (names as 0002 created them).
REPLACED_FOREIGN_KEYS = ("fk_ledger_entry_account_id_ledger_account", "fk_ledger_entry_cooperative_id_cooperative")

_PG = [
    """
    CREATE FUNCTION ledger_account_permanent() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'ledger accounts are permanent: they cannot be deleted, re-keyed or moved to another cooperative'
            USING ERRCODE = 'restrict_violation';
    END $$
    """,
    "CREATE TRIGGER ledger_account_permanent BEFORE DELETE OR UPDATE OF id, cooperative_id ON ledger_account "
    "FOR EACH ROW EXECUTE FUNCTION ledger_account_permanent()",
    """
    CREATE FUNCTION ledger_entry_check_accounts() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE bad record;
    BEGIN
        -- Scalar subqueries, not joins: each is a lookup by primary key whatever the tables' statistics
        -- when the plan is cached (a join planned while the ledger was small scanned it whole ever after).
        SELECT n.account_id, n.cooperative_id INTO bad FROM new_entries n
        WHERE n.cooperative_id IS DISTINCT FROM (SELECT a.cooperative_id FROM ledger_account a WHERE a.id = n.account_id)
           OR n.cooperative_id IS DISTINCT FROM (SELECT t.cooperative_id FROM ledger_transaction t
                                                 WHERE t.id = n.transaction_id)
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'ledger entry on account % which is not an account of cooperative % (or not of its transaction''s)',
                bad.account_id, bad.cooperative_id
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NULL;
    END $$
    """,
    "CREATE TRIGGER ledger_entry_check_accounts AFTER INSERT ON ledger_entry REFERENCING NEW TABLE AS new_entries "
    "FOR EACH STATEMENT EXECUTE FUNCTION ledger_entry_check_accounts()",
    *(f"ALTER TABLE ledger_entry DROP CONSTRAINT {name}" for name in REPLACED_FOREIGN_KEYS),
]
_PG_DROPS = [
    # NOT VALID then VALIDATE: existing rows are checked without blocking writes for long.
    "ALTER TABLE ledger_entry ADD CONSTRAINT fk_ledger_entry_account_id_ledger_account "
    "FOREIGN KEY (account_id) REFERENCES ledger_account (id) NOT VALID",
    "ALTER TABLE ledger_entry VALIDATE CONSTRAINT fk_ledger_entry_account_id_ledger_account",
    "ALTER TABLE ledger_entry ADD CONSTRAINT fk_ledger_entry_cooperative_id_cooperative "
    "FOREIGN KEY (cooperative_id) REFERENCES cooperative (id) NOT VALID",
    "ALTER TABLE ledger_entry VALIDATE CONSTRAINT fk_ledger_entry_cooperative_id_cooperative",
    "DROP TRIGGER IF EXISTS ledger_entry_check_accounts ON ledger_entry",
    "DROP FUNCTION IF EXISTS ledger_entry_check_accounts()",
    "DROP TRIGGER IF EXISTS ledger_account_permanent ON ledger_account",
    "DROP FUNCTION IF EXISTS ledger_account_permanent()",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _PG:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _PG_DROPS:
            op.execute(statement)
