"""``without_batch_reports`` (tests/conftest.py) for module-scoped fixtures: ``run_system``
without its last step, each batch's validation report (summary and GX Data Docs), for modules
whose tests assert nothing about reports. ``run_system`` writes the report with
``raise_errors=False``, so it can never fail such a test, and it writes only its report folder
and an access-log entry, which they do not read. Reports have their own tests
(tests/integration/test_batch_reports.py and others).

    with pytest.MonkeyPatch.context() as patch:
        without_batch_reports(patch)
        ...
"""

from __future__ import annotations

import pytest


def without_batch_reports(patch: pytest.MonkeyPatch) -> None:
    from etl import pipeline

    def no_report(system, batch_id, settings=None, raise_errors=True, data_docs=True):
        return {"batch_id": batch_id, "summary": None, "data_docs": None}

    patch.setattr(pipeline, "report", no_report)
