"""Payroll: salary engines (OpenFisca-France), rate cards, payroll runs, payslips and SEPA files."""
