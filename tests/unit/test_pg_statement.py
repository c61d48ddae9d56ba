"""PgStatement: a Core statement compiled once for asyncpg (the hot paths run it on the driver)."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import bindparam, literal, select

from app.db import PgStatement, literal_in
from app.models import User


def test_parameters_are_positional_in_order_and_literals_are_filled_in():
    stmt = PgStatement(select(User.id, literal("fixed")).where(
        User.id == bindparam("who"), User.role == "worker", User.cooperative_id == bindparam("coop"),
        literal_in(User.role, ("worker", "client"))))
    who, coop = uuid.uuid4(), uuid.uuid4()
    args = stmt.args({"who": who, "coop": coop})
    assert stmt.sql.count("$") == len(args) == 4
    assert args == ["fixed", who, "worker", coop]
    assert "IN ('worker', 'client')" in stmt.sql
    with pytest.raises(KeyError):
        stmt.args({"who": who})  # a missing value is an error, never NULL


def test_expanding_parameters_are_refused():
    with pytest.raises(ValueError, match="expanding"):
        PgStatement(select(User.id).where(User.role.in_(["worker", "client"])))
