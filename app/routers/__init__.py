"""HTTP routers, one per area of API.md. Thin: parse, call one service function, return.

Routes are authenticated (they depend on CurrentUser, or, for a hot route that checks the account
behind the token in its own statement, call deps.bearer_claims: see app/deps.py) unless listed here
as public.
"""
PUBLIC_ROUTES = {
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/services"),
    ("GET", "/api/v1/cooperatives/{slug}"),
    ("GET", "/api/v1/cooperatives/{slug}/fee-schedule"),
    ("POST", "/api/v1/payments/stripe/webhook"),  # authenticated by its Stripe signature instead
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
}
