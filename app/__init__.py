"""coopgig: the backend of a platform cooperative (CAE) — bookings, payments, ledger, payroll."""
