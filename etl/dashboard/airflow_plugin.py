"""The dashboard inside Airflow: a FastAPI sub-application and a link in Airflow's navigation.

Registered through the ``airflow.plugins`` entry point (pyproject.toml), so every Airflow that
runs with this package installed finds it, ``make airflow`` included, with no plugins folder to
copy. Airflow imports plugins in many processes (scheduler, DAG processor, workers), so importing
this module builds nothing: the web application is created on the API server's first request.

Plugin routes are not protected by Airflow by default: the application checks Airflow's own JWT
and the auth manager on every route (``etl/dashboard/auth.py``, ``AirflowAuthenticator``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.plugins_manager import AirflowPlugin

if TYPE_CHECKING:
    from fastapi import FastAPI

URL_PREFIX = "/vardflytt"


class LazyDashboard:
    """An ASGI application that builds the real dashboard on its first request."""

    def __init__(self) -> None:
        self._app: FastAPI | None = None

    async def __call__(self, scope, receive, send) -> None:
        if self._app is None:
            from etl.dashboard.app import airflow_authenticator, create_app

            # Airflow's UI shows plugin views in an iframe of its own origin.
            self._app = create_app(authenticator=airflow_authenticator, is_framed_by_host=True)
        await self._app(scope, receive, send)


class VardflyttDashboardPlugin(AirflowPlugin):
    name = "vardflytt_dashboard"
    fastapi_apps = [  # noqa: RUF012 - the attribute AirflowPlugin defines
        {"app": LazyDashboard(), "url_prefix": URL_PREFIX, "name": "vardflytt cutover dashboard"}
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "Cutover dashboard",
            # Relative to Airflow's base URL (no leading slash), so it works behind a proxy.
            "href": URL_PREFIX.lstrip("/") + "/",
            "destination": "nav",
            "url_route": "vardflytt",
        }
    ]
