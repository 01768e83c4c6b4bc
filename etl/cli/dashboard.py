"""``vardflytt dashboard``: serve the cutover dashboard."""

from __future__ import annotations

from typing import Annotated

import typer

from etl.cli.common import console
from etl.core.redact import redact
from etl.settings import get_settings


def dashboard(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
) -> None:
    """Serve the cutover dashboard (waves, runs, trends, steward queue) from the core database."""
    import uvicorn

    from etl.dashboard.app import create_app
    from etl.dashboard.auth import DashboardSettings, demo_tokens

    settings = get_settings()
    if not DashboardSettings().users:
        tokens = demo_tokens(settings, create=True)
        console.print(
            "No VARDFLYTT_DASHBOARD_USERS set: local demo users (tokens in "
            f"{settings.home / 'secrets' / 'dashboard-users.json'}):"
        )
        for name, token in tokens.items():
            console.print(f"  {name}: {token}")
    console.print(f"core database: {redact(settings.resolved_core_url)}")
    console.print(f"dashboard: http://{host}:{port}/  (sign in with a token)")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
