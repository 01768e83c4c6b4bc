"""The task execution API that ``airflow dags test`` and ``airflow tasks test`` run inside their
own process, serving only the API version its one client speaks.

Why: these two commands run each task through Airflow's execution API in process
(``InProcessExecutionAPI`` in airflow/api_fastapi/execution_api/app.py: a Cadwyn app over the
version bundle of airflow/api_fastapi/execution_api/versions, 9 dated versions). Its only client
is the task SDK of the same install, which sends one version in its ``Airflow-API-Version``
header (``API_VERSION`` in airflow/sdk/api/client.py: the newest). Cadwyn generates the routes
and models of every version at the app's first request: ~3.3 CPU seconds per command, of which
~2.8 go to the 8 older versions no in-process client asks for (0.5 left for the one version).

What: while ``InProcessExecutionAPI`` builds its app, Airflow's bundle is replaced by one holding
the client's version only, and Airflow's router by a copy without the routes that exist only in
older versions (``only_exists_in_older_versions``: ``GET /dag-runs/{dag_id}/previous``; Cadwyn
refuses a bundle in which no older version restores such a route). The routes are generated at
once, so that an error falls back before any request. A request of the newest version reaches the
same endpoints with the same models as before: Cadwyn migrates a request or a response only
across versions newer than the one asked for, and there is none. The routes and the OpenAPI
document of that version are the same as Airflow's (tests/unit/test_airflow_main.py compares
them). A request naming an older version is no longer served in process; none is sent.

Fail safe: if anything is not as expected (a name moved, the client speaks a version other than
the newest, the head version has changes of its own, generation fails), Airflow's own app is
built, with every version, and the reason is logged at debug. The api-server, which serves remote
workers of any version, is untouched: only these two commands install this, and only an app
built with a lifespan of its own (as ``InProcessExecutionAPI`` builds it) is trimmed.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

# The commands that run tasks through the in-process execution API (run_task_in_process).
IN_PROCESS_COMMANDS = (["dags", "test"], ["tasks", "test"])


def install(argv: Sequence[str]) -> bool:
    """For ``airflow dags test`` and ``airflow tasks test`` (``argv`` as ``sys.argv``): make the
    in-process execution API serve the task SDK client's version only. True if installed."""
    if list(argv[1:3]) not in IN_PROCESS_COMMANDS:
        return False  # other commands do not import the execution API (~1.1 CPU s)
    try:
        from airflow.api_fastapi.execution_api import app as app_module

        create = app_module.create_task_execution_api_app
        own_lifespan = app_module.lifespan
    except Exception:
        log.debug("in-process execution API left as Airflow builds it", exc_info=True)
        return False

    @functools.wraps(create)
    def create_task_execution_api_app(lifespan: Any = own_lifespan) -> Any:
        if lifespan is not own_lifespan:  # InProcessExecutionAPI's app
            try:
                return _client_version_only(create, lifespan)
            except Exception:
                log.debug("in-process execution API serves every version", exc_info=True)
        return create(lifespan=lifespan)

    app_module.create_task_execution_api_app = create_task_execution_api_app
    return True


def _client_version_only(create: Any, lifespan: Any) -> Any:
    """Airflow's ``create_task_execution_api_app`` with the client's version only, its routes
    generated; raises if anything is not as expected."""
    from airflow.api_fastapi.execution_api import routes, versions
    from airflow.sdk.api.client import API_VERSION
    from cadwyn import HeadVersion, Version, VersionBundle
    from cadwyn.route_generation import _DELETED_ROUTE_TAG

    bundle = versions.bundle
    if bundle.version_values[:1] != (API_VERSION,) or bundle.head_version.changes:
        raise LookupError(
            f"the client's version {API_VERSION} is not the newest of {bundle.version_values}"
            " or the head version has changes"
        )
    router = copy.copy(routes.execution_api_router)  # the same routes, less the older-only ones
    router.routes = [
        route
        for route in router.routes
        if _DELETED_ROUTE_TAG not in (getattr(route, "tags", None) or ())
    ]
    only = VersionBundle(HeadVersion(), Version(API_VERSION))
    with _replaced(versions, "bundle", only), _replaced(routes, "execution_api_router", router):
        app = create(lifespan=lifespan)
    if app.versions is not only or app._cadwyn_initialized:
        raise LookupError("the app was not built on the bundle given")
    app._cadwyn_initialize()  # what Cadwyn does at the first request: an error falls back now
    return app


@contextmanager
def _replaced(module: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)
