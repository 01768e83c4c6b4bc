"""The dashboard's pages, one ``APIRouter`` per view; ``ROUTERS`` in the order their routes are
matched (``create_app`` includes them in this order)."""

from __future__ import annotations

from etl.dashboard.routes import auth, codes, evidence, reports, runs, steward, waves

ROUTERS = [
    auth.router,
    waves.router,
    evidence.router,
    runs.router,
    steward.router,
    reports.router,
    codes.router,
]
