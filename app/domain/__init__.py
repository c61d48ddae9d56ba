"""Pure business rules of coopgig: money, fees, ledger postings, and the like.

No IO and no imports from the rest of the app: plain functions and frozen dataclasses over ints and Decimal.
"""
