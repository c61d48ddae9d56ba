"""Pure business rules of coopgig: money, fees, ledger postings and the like.

Nothing here does IO or imports from the rest of the app; everything is plain functions and
frozen dataclasses over ints and Decimal, unit-tested in milliseconds.
"""
