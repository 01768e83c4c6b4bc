"""Identity runs against a real core database (SQLite and PostgreSQL): idempotent re-runs,
steward decisions that later runs respect, and undo that restores links exactly."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from etl.core.database import core_engine
from etl.core.identity_tables import identity_resolution_run, identity_review, person, person_link
from etl.core.tables import ENTITY_TABLES
from etl.identity import runs
from tests.cores import BOTH_CORES

pytestmark = pytest.mark.integration

PNR_A = "189001019802"
PNR_B = "189001029819"
PNR_C = "189001039800"
VGR_A = "19810829M071"
NUMBERS = (PNR_A, PNR_B, PNR_C, VGR_A)


@pytest.fixture(params=BOTH_CORES)
def settings(sqlite_core, request, tmp_path, settings_for):
    if request.param == "sqlite":
        return settings_for(core_url=sqlite_core(tmp_path))
    return settings_for(core_url=request.getfixturevalue("postgres_url"))


def add_patient(settings, patient_id, system, numbers, sex="female", protected="none") -> None:
    """A core patient and its identifiers (the first number is its primary identity)."""
    kinds = [("reservnummer_vgr" if "M" in n or "K" in n else "personnummer", n) for n in numbers]
    with core_engine(settings.resolved_core_url).begin() as connection:
        connection.execute(
            ENTITY_TABLES["patient"]
            .insert()
            .values(
                patient_id=patient_id,
                identity_number=kinds[0][1],
                identity_kind=kinds[0][0],
                sex=sex,
                protected_identity=protected,
                source_system=system,
                source_key=f"key-{patient_id}",
                batch_id="test",
                content_hash="test",
            )
        )
        connection.execute(
            ENTITY_TABLES["patient_identifier"].insert(),
            [
                {
                    "patient_identifier_id": f"{patient_id}#{position}",
                    "patient_id": patient_id,
                    "identity_number": number,
                    "identity_kind": kind,
                    "is_primary": position == 0,
                    "source_system": system,
                    "source_key": f"key-{patient_id}#{position}",
                    "batch_id": "test",
                    "content_hash": "test",
                }
                for position, (kind, number) in enumerate(kinds)
            ],
        )


def set_sex(settings, patient_id: str, sex: str) -> None:
    patient = ENTITY_TABLES["patient"]
    with core_engine(settings.resolved_core_url).begin() as connection:
        connection.execute(
            patient.update().where(patient.c.patient_id == patient_id).values(sex=sex)
        )


def snapshot(settings) -> dict[str, list[tuple]]:
    """Every row of the person, link and review tables, in key order."""
    rows = {}
    with core_engine(settings.resolved_core_url).connect() as connection:
        for table in (person, person_link, identity_review):
            key = list(table.primary_key.columns)
            rows[table.name] = [
                tuple(r) for r in connection.execute(sa.select(table).order_by(*key))
            ]
    return rows


def active_links(settings) -> dict[str, tuple[str, str]]:
    with core_engine(settings.resolved_core_url).connect() as connection:
        result = connection.execute(
            sa.select(person_link.c.patient_id, person_link.c.person_id, person_link.c.rule).where(
                person_link.c.is_active.is_(True)
            )
        )
        return {row.patient_id: (row.person_id, row.rule) for row in result}


def review_row(settings, review_id: str):
    with core_engine(settings.resolved_core_url).connect() as connection:
        return connection.execute(
            sa.select(identity_review).where(identity_review.c.review_id == review_id)
        ).one()


def a_conflict(settings) -> None:
    """e1/m1: one personnummer, two sexes. e2/m2: one person. e3: alone."""
    add_patient(settings, "e1", "elvis", [PNR_A], sex="female")
    add_patient(settings, "m1", "melior", [PNR_A], sex="male")
    add_patient(settings, "e2", "elvis", [PNR_B, VGR_A])
    add_patient(settings, "m2", "melior", [PNR_B])
    add_patient(settings, "e3", "elvis", [PNR_C])


def test_resolving_unchanged_input_again_changes_nothing(settings):
    a_conflict(settings)
    first = runs.resolve("run-1", settings)
    before = snapshot(settings)

    again = runs.resolve("run-2", settings)

    assert snapshot(settings) == before
    assert first.counts["links_created"] == 5 and first.counts["reviews_opened"] == 1
    assert {
        again.counts[name]
        for name in (
            "links_created",
            "links_ended",
            "persons_created",
            "persons_ended",
            "reviews_opened",
            "reviews_superseded",
        )
    } == {0}
    links = active_links(settings)
    assert links["e2"][0] == links["m2"][0] != links["e3"][0]
    assert links["e1"][0] != links["m1"][0]


def test_a_retried_run_id_changes_nothing_and_returns_its_counts(settings):
    a_conflict(settings)
    first = runs.resolve("run-1", settings)
    add_patient(settings, "x1", "lab", [PNR_C])

    retried = runs.resolve("run-1", settings)

    assert retried == first
    assert "x1" not in active_links(settings)


def test_undo_restores_the_previous_links_exactly(settings):
    a_conflict(settings)
    runs.resolve("run-1", settings)
    before = snapshot(settings)
    add_patient(settings, "x1", "lab", [PNR_C, VGR_A])  # joins e3 with e2/m2: a number conflict
    set_sex(settings, "m1", "female")  # the sex conflict is gone
    changed = runs.resolve("run-2", settings)
    assert changed.counts["links_ended"] > 0 and changed.counts["reviews_superseded"] == 1
    assert snapshot(settings) != before

    undone = runs.undo_run("run-2", settings)

    assert undone.status == "undone"
    assert snapshot(settings) == before
    runs.undo_run("run-1", settings)
    assert active_links(settings) == {}
    assert all(not rows for rows in snapshot(settings).values())


def test_runs_are_undone_newest_first_and_an_undone_id_is_not_reused(settings):
    a_conflict(settings)
    runs.resolve("run-1", settings)
    runs.resolve("run-2", settings)

    with pytest.raises(runs.IdentityError, match="undo run-2 before run-1"):
        runs.undo_run("run-1", settings)
    runs.undo_run("run-2", settings)
    with pytest.raises(runs.IdentityError, match="was undone"):
        runs.resolve("run-2", settings)
    with pytest.raises(runs.IdentityError, match="is undone"):
        runs.undo_run("run-2", settings)


def test_a_kept_apart_decision_is_recorded_and_survives_later_runs(settings):
    a_conflict(settings)
    runs.resolve("run-1", settings)
    [review] = runs.list_open_reviews(settings)
    assert review.reasons == ["sex_conflict"]
    assert review.patient_row_keys == ["elvis/key-e1", "melior/key-m1"]

    decision = runs.decide_review(
        review.review_id,
        "keep_apart",
        "Steward Sven",
        "checked the paper record",
        "decision-1",
        settings,
    )
    assert decision.kind == "decision"
    recorded = review_row(settings, review.review_id)
    assert recorded.status == "kept_apart" and recorded.decided_by == "Steward Sven"
    assert recorded.decided_at is not None and recorded.decision_run_id == "decision-1"
    links = active_links(settings)
    assert links["e1"][1] == links["m1"][1] == "steward_kept_apart"
    assert links["e1"][0] != links["m1"][0]

    set_sex(settings, "m1", "female")  # even without the conflict: kept apart stays apart
    later = runs.resolve("run-2", settings)

    assert later.counts["reviews_opened"] == 0
    assert active_links(settings) == links  # same persons, same rules (the evidence is updated)
    assert runs.list_open_reviews(settings) == []


def test_a_merge_decision_makes_one_person_and_undoing_it_reopens_the_review(settings):
    a_conflict(settings)
    runs.resolve("run-1", settings)
    before = snapshot(settings)
    [review] = runs.list_open_reviews(settings)

    runs.decide_review(review.review_id, "merge", "Steward Stina", None, "decision-1", settings)
    links = active_links(settings)
    assert links["e1"] == (links["m1"][0], "steward_merge")
    assert runs.identity_summary(settings).open_reviews == 0

    runs.undo_run("decision-1", settings)

    assert snapshot(settings) == before
    assert [r.review_id for r in runs.list_open_reviews(settings)] == [review.review_id]
    with core_engine(settings.resolved_core_url).connect() as connection:
        run = connection.execute(
            sa.select(identity_resolution_run).where(
                identity_resolution_run.c.run_id == "decision-1"
            )
        ).one()
    assert (run.status, run.decision, run.decided_by) == ("undone", "merged", "Steward Stina")


def test_decisions_need_an_open_review_and_a_name(settings):
    a_conflict(settings)
    runs.resolve("run-1", settings)
    [review] = runs.list_open_reviews(settings)

    with pytest.raises(runs.IdentityError, match="no review"):
        runs.decide_review("nonexistent", "merge", "Sven", None, "decision-1", settings)
    with pytest.raises(runs.IdentityError, match="name"):
        runs.decide_review(review.review_id, "merge", " ", None, "decision-1", settings)
    with pytest.raises(runs.IdentityError, match="decision must be"):
        runs.decide_review(review.review_id, "maybe", "Sven", None, "decision-1", settings)
    runs.decide_review(review.review_id, "merge", "Sven", None, "decision-1", settings)
    with pytest.raises(runs.IdentityError, match="is merged, not open"):
        runs.decide_review(review.review_id, "keep_apart", "Sven", None, "decision-2", settings)


def test_the_strictest_protection_is_carried_to_the_person(settings):
    add_patient(settings, "e1", "elvis", [PNR_A], protected="skyddad_folkbokforing")
    add_patient(settings, "m1", "melior", [PNR_A], protected="sekretessmarkering")
    runs.resolve("run-1", settings)
    with core_engine(settings.resolved_core_url).connect() as connection:
        levels = (
            connection.execute(
                sa.select(person.c.protected_identity).where(person.c.is_active.is_(True))
            )
            .scalars()
            .all()
        )
    assert levels == ["skyddad_folkbokforing"]


def test_the_command_line_shows_ids_reasons_and_counts_only(settings):
    from etl.cli import app

    a_conflict(settings)
    cli = CliRunner()
    outputs = []

    def invoke(*arguments: str) -> str:
        result = cli.invoke(app, ["identity", *arguments])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
        return result.output

    invoke("resolve", "--run-id", "cli-run-1")
    listed = invoke("review")
    [review] = runs.list_open_reviews(settings)
    assert review.review_id in listed and "sex_conflict" in listed and "key-m1" in listed
    typed = cli.invoke(app, ["identity", "decide", review.review_id, "--keep-apart", "--by", "x"])
    assert typed.exit_code == 2  # no typed name: the decision is the signed-in user's
    invoke("decide", review.review_id, "--keep-apart", "--note", "PRIVATE NOTE")
    from etl.core.audit import current_user

    assert review_row(settings, review.review_id).decided_by == current_user()
    summary = invoke("summary")
    assert "persons in 2 system(s)" in summary
    with core_engine(settings.resolved_core_url).connect() as connection:
        decision_run = connection.execute(
            sa.select(identity_resolution_run.c.run_id).where(
                identity_resolution_run.c.kind == "decision"
            )
        ).scalar_one()
    invoke("undo", decision_run)

    printed = "\n".join(outputs)
    assert not any(number in printed for number in NUMBERS)
    assert "PRIVATE NOTE" not in printed
    assert json.loads(review_row(settings, review.review_id).patient_ids) == ["e1", "m1"]
