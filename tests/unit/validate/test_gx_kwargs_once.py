"""GX builds an expectation's configuration once per kwargs lookup (etl/validate/suites.py).

The replacements must give exactly GX's own domain and success kwargs for every expectation of
every suite, build the configuration once per call (the fixed cost of validating a chunk of a
freeze window's final delta), and leave validation's results unchanged: a clean chunk passes, a
bad row still fails the same checks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from etl.validate import suites

pytestmark = pytest.mark.unit

EXPECTATIONS = Path(__file__).resolve().parents[3] / "expectations"


def _expectations():
    import great_expectations as gx

    suites._context()  # installs the replacements
    for path in sorted(EXPECTATIONS.glob("*.json")):
        entity = path.stem
        definition = json.loads(path.read_text("utf-8"))
        if "expectations" not in definition:
            continue
        suite = gx.ExpectationSuite(
            name=f"kwargs_{entity}",
            expectations=suites.resolved_expectations(EXPECTATIONS, entity),
        )
        yield from suite.expectations


def _gx_success_kwargs(expectation) -> dict:
    """GX 1.24.1's own code: the configuration rebuilt for every key."""
    domain = {
        key: expectation.configuration.kwargs.get(key, expectation._get_default_value(key))
        for key in expectation.domain_keys
    }
    success = {
        key: expectation.configuration.kwargs.get(key, expectation._get_default_value(key))
        for key in expectation.success_keys
    }
    success.update(domain)
    return success


def test_kwargs_are_gx_own_for_every_expectation_of_every_suite():
    expectations = list(_expectations())
    assert len(expectations) > 50  # every suite's expectations, not a handful
    for expectation in expectations:
        expected = _gx_success_kwargs(expectation)
        assert expectation._get_success_kwargs() == expected
        assert expectation._get_domain_kwargs() == {k: expected[k] for k in expectation.domain_keys}
        for key in (*expectation.success_keys, "mostly", "not_a_field"):
            gx_value = (
                expectation.configuration.kwargs[key]
                if key in expectation.configuration.kwargs
                else (
                    expectation.__fields__[key].default
                    if key in expectation.__fields__ and not expectation.__fields__[key].required
                    else None
                )
            )
            assert expectation._get_success_kwarg(key) == gx_value


def test_configuration_is_built_once_per_lookup(monkeypatch):
    from great_expectations.expectations.expectation import Expectation

    expectation = next(e for e in _expectations() if len(e.success_keys) > 1)
    built = []
    original = Expectation.configuration.fget
    monkeypatch.setattr(
        Expectation, "configuration", property(lambda self: built.append(1) or original(self))
    )
    expectation._get_success_kwargs()
    # GX's own code builds it once per domain key and once per success key.
    assert len(built) == 1
    built.clear()
    expectation._get_domain_kwargs()
    assert len(built) == 1


def test_validation_results_unchanged_for_a_clean_and_a_bad_row():
    rows = pd.DataFrame(
        {
            "patient_id": pd.Series(["p-1", "p-2"], dtype="string"),
            "birth_date": pd.to_datetime(["1980-01-01", "2999-01-01"]).date,
        }
    )
    definition = suites.read_suite_definition(EXPECTATIONS, "patient")
    needed = {
        e["kwargs"].get("column")
        for e in definition["expectations"]
        if e["kwargs"].get("column") not in (None, "patient_id", "birth_date")
    }
    for column in needed:
        rows[column] = pd.Series([None, None], dtype="object")
    failures = suites.validate_chunk(
        EXPECTATIONS, "patient", rows, "patient_id", {"as_of_date": "2026-07-01"}
    )
    failing = {f.check_name: set(f.row_ids) for f in failures}
    # The birth date in the future fails on p-2 only; whatever else the sparse rows fail, they
    # fail on both rows alike.
    future = [check for check, ids in failing.items() if ids == {"p-2"}]
    assert future, failing
