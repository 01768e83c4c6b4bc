"""Evidence packs: what a project lead signs off, per wave, from the ledger and the results.

A pack is a folder (and a zip of it) with ``evidence.json`` (machine-readable), ``evidence.md``
(for people) and ``SHA256SUMS``. It holds the plan entry, the reviewed plan's fingerprint and its
recorded changes, mapping version, ledger transitions, approvals, batches, record accounting,
data-quality results, reconciliation and checksums: counts, codes, check names, file digests and
opaque row ids only, never patient data. The one free text is the approvers' notes, with identity
numbers withheld (``ledger.screened_note``) and escaped as Markdown.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from etl.batch import utc_now
from etl.core import files, residency, storage
from etl.core.database import core_engine
from etl.core.provenance import mapping_version
from etl.core.tables import (
    batch_accounting,
    cutover_approval,
    cutover_conflict,
    dq_result,
    promotion,
    wave_reconciliation,
)
from etl.cutover import ledger
from etl.cutover.plan import load_plan
from etl.settings import Settings


def _rows(connection: sa.Connection, query: sa.Executable) -> list[dict[str, Any]]:
    return [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row._mapping.items()}
        for row in connection.execute(query)
    ]


def _data_quality(connection: sa.Connection, batch_ids: list[str]) -> list[dict[str, Any]]:
    """The data-quality results of the batches that failed rows: check names and counts."""
    return _rows(
        connection,
        sa.select(
            dq_result.c.batch_id,
            dq_result.c.source_system,
            dq_result.c.entity,
            dq_result.c.check_name,
            dq_result.c.severity,
            dq_result.c.rows_evaluated,
            dq_result.c.rows_failed,
            dq_result.c.max_failure_rate,
            dq_result.c.is_breached,
        )
        .where(dq_result.c.batch_id.in_(batch_ids) & (dq_result.c.rows_failed > 0))
        .order_by(dq_result.c.source_system, dq_result.c.entity, dq_result.c.check_name),
    )


def _latest_reconciliation(connection: sa.Connection, name: str) -> list[dict[str, Any]]:
    """The wave's latest reconciliation of each system and entity."""
    reconciliation = _rows(
        connection,
        sa.select(wave_reconciliation)
        .where(wave_reconciliation.c.wave == name)
        .order_by(wave_reconciliation.c.checked_at),
    )
    latest = {}
    for row in reconciliation:
        latest[(row["source_system"], row["entity"])] = row
    return list(latest.values())


def _approvals(connection: sa.Connection, name: str) -> list[dict[str, Any]]:
    """The wave's approvals, oldest first, with the approvers' notes screened."""
    return [
        # Approvers' notes are free text: screened again on the way out (a note stored
        # before notes were screened on the way in), and escaped in evidence.md.
        {**a, "note": ledger.screened_note(a["note"])}
        for a in _rows(
            connection,
            sa.select(cutover_approval)
            .where(cutover_approval.c.wave == name)
            .order_by(cutover_approval.c.at, cutover_approval.c.approval_id),
        )
    ]


def _conflicts(connection: sa.Connection, name: str) -> dict[str, int]:
    """Legacy changes to the wave's rows after its go-live (etl/cutover/slices.py): counts."""
    return {
        str(state_name): int(count)
        for state_name, count in connection.execute(
            sa.select(cutover_conflict.c.state, sa.func.count())
            .where(cutover_conflict.c.wave == name)
            .group_by(cutover_conflict.c.state)
        )
    }


def collect(settings: Settings, name: str) -> dict[str, Any]:
    from etl.cutover.waves import reviewed_plan_status

    plan = load_plan(settings.mappings_dir, settings.wave_plan)
    wave = plan.wave(name)
    with core_engine(settings.resolved_core_url).connect() as connection:
        batches = _rows(
            connection,
            sa.select(promotion).where(promotion.c.wave == name).order_by(promotion.c.seq),
        )
        batch_ids = [b["batch_id"] for b in batches] or [""]
        accounting = _rows(
            connection,
            sa.select(batch_accounting)
            .where(batch_accounting.c.batch_id.in_(batch_ids))
            .order_by(batch_accounting.c.source_system, batch_accounting.c.entity),
        )
        results = _data_quality(connection, batch_ids)
        reconciliation = _latest_reconciliation(connection, name)
        transitions = [
            {**t, "at": t["at"].isoformat()} for t in ledger.transitions(connection, name)
        ]
        approvals = _approvals(connection, name)
        state = ledger.wave_state(connection, name)
        reviewed = reviewed_plan_status(connection, settings, name)
        conflicts = _conflicts(connection, name)
    return {
        "wave": wave.model_dump(mode="json"),
        "plan_digest": reviewed["working_copy"],
        "plan": reviewed,
        "mapping_version": mapping_version(settings.mappings_dir.resolve().parent),
        "state": state,
        "generated_at": utc_now().isoformat(),
        "batches": batches,
        "accounting": accounting,
        "data_quality": results,
        "reconciliation": reconciliation,
        "transitions": transitions,
        "approvals": approvals,
        "conflicts": conflicts,
        "slice_gate": slice_gate(transitions),
    }


def slice_gate(transitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The slice-aware gate's figures the wave's loads recorded in its ledger (the latest load
    of each system): per system, entity and check, the wave's rows failed of evaluated, the
    whole batch's, and the basis judged on. Counts only."""
    latest: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for t in transitions:
        for system, batch in (t["evidence"].get("batches") or {}).items():
            if isinstance(batch, dict) and batch.get("gate"):
                latest[system] = (t["to_state"], str(batch["batch_id"]), batch["gate"])
    rows = []
    for system, (phase, batch_id, gate) in sorted(latest.items()):
        for check in gate["checks"]:
            wave, batch = check.get("wave") or {}, check.get("batch") or {}
            rows.append(
                {
                    "source_system": system,
                    "phase": phase,
                    "batch_id": batch_id,
                    "entity": check["entity"],
                    "check": check["check"],
                    "basis": check["basis"],
                    "wave_failed": wave.get("rows_failed"),
                    "wave_evaluated": wave.get("rows_evaluated"),
                    "batch_failed": batch.get("rows_failed"),
                    "batch_evaluated": batch.get("rows_evaluated"),
                    "wave_is_breached": check.get("wave_is_breached"),
                }
            )
    return rows


# Line breaks of any kind (a value must never start a new Markdown block) and other controls.
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")
# Markdown's inline punctuation (emphasis, links, images, code, tables, headings, escapes).
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]()#|~!])")
_URL_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*):")  # http:, mailto:, javascript: ...


def _md_cells(row: dict[str, Any], fields: tuple[str, ...]) -> str:
    """The start of a Markdown table row: the fields' values, escaped, without the closing bar."""
    return "| " + " | ".join(md(row[field]) for field in fields)


def md(value: object) -> str:
    """A value as inert Markdown text: one line, no HTML, no links, emphasis or table cells.

    Wave titles, notes and names come from people; in ``evidence.md`` they must read as written
    and never turn into markup (a raw ``<script>``, a link, a fake table row or heading).
    """
    text = _CONTROLS.sub("", _LINE_BREAKS.sub(" ", "" if value is None else str(value)))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)
    # No autolinks: GitHub-flavoured Markdown links bare URLs and www. addresses too.
    text = _URL_SCHEME.sub(r"\1\\:", text)
    return re.sub(r"(?i)\bwww\.", r"www\\.", text)


def md_code(value: object) -> str:
    """A value as an inline code span (backticks and line breaks taken out)."""
    text = _CONTROLS.sub("", _LINE_BREAKS.sub(" ", "" if value is None else str(value)))
    return "`" + text.replace("`", "'") + "`"


def _criteria_lines(criteria: list[dict[str, Any]]) -> list[str]:
    """The go/no-go criteria, one line each: PASS or FAIL and the detail."""
    lines = []
    for criterion in criteria:
        mark = "PASS" if criterion["passed"] else "FAIL"
        lines.append(f"- {mark} {md(criterion['criterion'])}: {md(criterion['detail'])}")
    return lines


def _accounting_lines(accounting: list[dict[str, Any]]) -> list[str]:
    """The record accounting section: a table row per system and entity."""
    lines = [
        "",
        "## Record accounting",
        "",
        "| system | entity | extracted | loaded | quarantined | excluded | merged | residue |",
        "|---|---|---|---|---|---|---|---|",
    ]
    accounting_fields = (
        "source_system",
        "entity",
        "extracted",
        "loaded",
        "quarantined",
        "excluded",
        "merged",
        "residue",
    )
    lines += [_md_cells(row, accounting_fields) + " |" for row in accounting]
    return lines


def _reconciliation_lines(reconciliation: list[dict[str, Any]]) -> list[str]:
    """The reconciliation section: a table row per system and entity, whether it reconciled."""
    lines = [
        "",
        "## Reconciliation (source through mapping against core)",
        "",
        "| system | entity | expected | core | missing | unexpected | differing | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    reconciliation_fields = (
        "source_system",
        "entity",
        "expected_rows",
        "core_rows",
        "missing_in_core",
        "unexpected_in_core",
        "content_mismatches",
    )
    lines += [
        _md_cells(row, reconciliation_fields) + f" | {'yes' if row['is_reconciled'] else 'NO'} |"
        for row in reconciliation
    ]
    return lines


def _slice_gate_lines(gate: list[dict[str, Any]]) -> list[str]:
    """The slice-aware gate's section: per check, the wave's and the whole batch's failed rows."""
    lines = [
        "",
        "## Data-quality gate of the wave's slice (failed of evaluated rows)",
        "",
        "| system | entity | check | basis | wave | whole batch | breached |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        _md_cells(row, ("source_system", "entity", "check", "basis"))
        + f" | {md(row['wave_failed'])} of {md(row['wave_evaluated'])}"
        + f" | {md(row['batch_failed'])} of {md(row['batch_evaluated'])}"
        + f" | {'YES' if row['wave_is_breached'] else 'no'} |"
        for row in gate
    ]
    return lines


def _ledger_lines(transitions: list[dict[str, Any]]) -> list[str]:
    """The ledger section: a line per transition, with who made it, the run and mappings."""
    lines = ["", "## Ledger", ""]
    for t in transitions:
        lines.append(
            f"- {md(t['at'][:19])} {md(t['from_state'])} -> {md(t['to_state'])} by "
            f"{md(t['actor'])} (run {md(t['run_id'] or '-')}, "
            f"mappings {md(t['mapping_version'] or '-')})"
        )
    return lines


def _approval_lines(approvals: list[dict[str, Any]]) -> list[str]:
    """The approvals section: a line per decision, marked when superseded, with its note."""
    lines = ["", "## Approvals", ""]
    for a in approvals:
        lines.append(
            f"- {md(a['at'][:19])} {md(a['role'])}: {md(a['decision'])} by {md(a['approver'])} "
            f"via {md(a['channel'])}"
            + ("" if a["is_current"] else " (superseded)")
            + (f"; note: {md(a['note'])}" if a.get("note") else "")
        )
    return lines


def _markdown(content: dict[str, Any]) -> str:
    wave = content["wave"]
    lines = [
        f"# Evidence pack: {md(wave['wave'])} - {md(wave['title'])}",
        "",
        f"- State: **{md(content['state'])}**",
        f"- Planned window: {md(wave['window']['start'])} to {md(wave['window']['end'])}",
        f"- Mapping version: {md_code(content['mapping_version'])}",
        f"- Generated: {md(content['generated_at'])}",
        "",
        *(_plan_lines(content["plan"]) if content.get("plan") else []),
        "## Go/no-go criteria",
        "",
    ]
    lines += _criteria_lines(content.get("criteria", []))
    lines += _accounting_lines(content["accounting"])
    lines += _reconciliation_lines(content["reconciliation"])
    if content.get("slice_gate"):
        lines += _slice_gate_lines(content["slice_gate"])
    lines += _ledger_lines(content["transitions"])
    lines += _approval_lines(content["approvals"])
    return "\n".join(lines) + "\n"


def _plan_lines(plan: dict[str, Any]) -> list[str]:
    """The reviewed plan: its fingerprint, whether the working copy is it, and its changes."""

    def files_of(difference: dict[str, Any] | None) -> str:
        return "; ".join(
            f"{kind} {', '.join(md_code(path) for path in paths)}"
            for kind, paths in (difference or {}).items()
            if paths
        )

    lines = ["## Reviewed plan", ""]
    if plan.get("fingerprint"):
        lines.append(
            f"- Fingerprint {md_code(plan['fingerprint'])}, recorded at "
            f"{md(plan.get('recorded_event'))} on {md(str(plan.get('recorded_at'))[:19])} by "
            f"{md(plan.get('recorded_by'))} "
            f"(mappings {md_code(plan.get('mapping_version') or '-')})"
        )
    else:
        lines.append("- No reviewed plan recorded: verify and commit refuse this wave")
    if plan.get("matches"):
        lines.append("- Working copy: the reviewed plan")
    elif plan.get("difference"):
        lines.append(
            f"- Working copy DIFFERS from the reviewed plan: {files_of(plan['difference'])}"
        )
    if plan.get("uncommitted"):
        uncommitted = ", ".join(md_code(path) for path in plan["uncommitted"])
        lines.append(f"- Uncommitted in mappings/expectations: {uncommitted}")
    lines += ["", "### Plan changes", ""]
    for change in plan.get("changes", []):
        changed = files_of(change.get("files"))
        lines.append(
            f"- {md(change['at'][:19])} {md(change['event'])} by {md(change['by'])}: fingerprint "
            f"{md_code(change['fingerprint'][:12])}"
            + (f", reason: {md(change['reason'])}" if change.get("reason") else "")
            + (f" ({changed})" if changed else "")
        )
    files = plan.get("files") or {}
    lines += ["", f"### Files of the plan ({len(files)})", ""]
    lines += [f"- {md_code(digest[:16])} {md_code(path)}" for path, digest in files.items()]
    return [*lines, ""]


def write_pack(
    settings: Settings,
    name: str,
    label: str,
    out_root: Path | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the wave's evidence pack under ``<out_root>/<wave>/<label>/`` and zip it.

    By default under ``evidence/`` of the storage root (etl/core/storage.py): a pack written on
    one worker is read on another (the dashboard, the next rehearsal's comparison); with an URL
    root it is written in ``VARDFLYTT_HOME/evidence`` and uploaded to ``evidence/`` too."""
    root = (out_root or storage.shared_dir(settings) / "evidence") / name / label
    residency.check_storage(root, "the evidence pack folder", settings)
    if root.exists():
        shutil.rmtree(root)
    files.private_dir(root)
    content = collect(settings, name) | (extra or {})
    (root / "evidence.json").write_text(
        json.dumps(content, indent=2, sort_keys=True, default=str), encoding="utf-8"
    )
    (root / "evidence.md").write_text(_markdown(content), encoding="utf-8")
    sums = [
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}"
        for path in sorted(root.iterdir())
    ]
    (root / "SHA256SUMS").write_text("\n".join(sums) + "\n", encoding="utf-8")
    shutil.make_archive(str(root), "zip", root_dir=root)
    files.private_tree(root)
    files.private_file(root.with_name(f"{root.name}.zip"))
    if out_root is None:
        storage.publish(settings, root, pack_key(name, label))
    return root


def pack_key(name: str, label: str) -> str:
    """The pack's key under the storage root: what XCom carries instead of a worker's path."""
    return f"evidence/{name}/{label}"


def compare_packs(previous: Path, current: Path) -> dict[str, Any] | None:
    """What changed between two packs of a wave: accounting, reconciliation, criteria."""
    if not (previous / "evidence.json").exists():
        return None
    before = json.loads((previous / "evidence.json").read_text("utf-8"))
    after = json.loads((current / "evidence.json").read_text("utf-8"))

    def by_key(
        rows: list[dict[str, Any]], fields: tuple[str, ...]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        return {(r["source_system"], r["entity"]): {f: r[f] for f in fields} for r in rows}

    changes = []
    for section, fields in (
        ("accounting", ("extracted", "loaded", "quarantined", "excluded", "merged")),
        ("reconciliation", ("expected_rows", "core_rows", "is_reconciled")),
    ):
        old, new = by_key(before[section], fields), by_key(after[section], fields)
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                changes.append(
                    {
                        "section": section,
                        "system": key[0],
                        "entity": key[1],
                        "before": old.get(key),
                        "after": new.get(key),
                    }
                )
    old_criteria = {c["criterion"]: c["passed"] for c in before.get("criteria", [])}
    new_criteria = {c["criterion"]: c["passed"] for c in after.get("criteria", [])}
    criteria = {
        name: {"before": old_criteria.get(name), "after": passed}
        for name, passed in new_criteria.items()
        if old_criteria.get(name) != passed
    }
    comparison = {
        "previous": previous.name,
        "current": current.name,
        "mapping_version": [before.get("mapping_version"), after.get("mapping_version")],
        "changes": changes,
        "criteria_changed": criteria,
    }
    (current / "comparison.json").write_text(
        json.dumps(comparison, indent=2, default=str), encoding="utf-8"
    )
    return {
        "changes": len(changes),
        "criteria_changed": criteria,
        "file": str(current / "comparison.json"),
    }
