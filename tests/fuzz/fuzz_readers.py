"""Coverage-guided fuzzing of each file reader against the independent physical count (atheris).

    python tests/fuzz/fuzz_readers.py <reader> [libFuzzer options, e.g. -max_total_time=60]

``<reader>`` is one of delimited, fixed_width, hl7v2, xml, jsonl. Each input is written as a
file and read by the reader and by ``etl.extract.physical.count_physical``. A finding is an
input where the reader raises anything but ``BrokenFileError``, yields a row of the wrong shape
or an unreadable row that still carries values, or counts a different number of records than
the physical count. The shortest input of each kind is kept as ``var/fuzz/<reader>/finding-
<kind>`` (with ``.txt`` saying what happened) and the run goes on; hard crashes and hangs are
saved by libFuzzer as ``crash-*`` / ``timeout-*``; inputs that widened coverage stay in
``var/fuzz/<reader>/corpus/``. Turn a finding into a case in ``tests/corpus/<format>.py`` once
its right outcome is decided, then delete it. Run by ``make fuzz``, not in CI.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import traceback
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["etl.extract"]):
    from etl.catalog import FileDataset
    from etl.extract import physical, readers
    from etl.extract.records import BrokenFileError, ReadStats

ROOT = Path(__file__).resolve().parents[2]

MSH = "MSH|^~\\&|LIS|SU|CORE|VGR|202403011200||ORU^R01|M1|P|2.5"
DATASETS = {
    "delimited": (
        {"format": "delimited", "columns": ["ID", "NAMN", "TEXT"]},
        [b'ID;NAMN;TEXT\r\n1;Berg;"rad\r\nrad"\r\n2;Lind;""\r\n', b"ID;NAMN;TEXT\n1;a;b\n"],
    ),
    "fixed_width": (
        {
            "format": "fixed_width",
            "fields": [{"name": "ID", "width": 3}, {"name": "NAMN", "width": 5}],
        },
        [b"001Berg \r\n002Lind \r\n", b"001Berg \n"],
    ),
    "hl7v2": (
        {
            "format": "hl7v2",
            "message_types": ["ORU^R01"],
            "row_segment": "OBX",
            "fields": [
                {"name": "ID", "path": "MSH.10"},
                {"name": "PATIENT", "path": "PID.3.1"},
                {"name": "VALUE", "path": "OBX.5"},
            ],
        },
        [
            (MSH + "\rPID|1||P1\rOBX|1|NM|X||1\\F\\2\r").encode(),
            ("\x0b" + MSH + "\r\nPID|1||P1\r\nOBX|1|NM\r\x1c\r").encode(),
        ],
    ),
    "xml": (
        {
            "format": "xml",
            "record_path": "Export/Post",
            "fields": [{"name": "ID", "path": "@id"}, {"name": "NAMN", "path": "Namn"}],
        },
        [b'<Export><Post id="1"><Namn>B</Namn></Post><!-- c --><Post id="2"/></Export>'],
    ),
    "jsonl": (
        {"format": "jsonl", "fields": [{"name": "ID", "path": "id"}, {"name": "N", "path": "a.b"}]},
        [b'{"id": "1", "a": {"b": 1.50}}\n\n{"id": 2}\r\n'],
    ),
}


def _dataset(reader: str) -> FileDataset:
    spec, _ = DATASETS[reader]
    return FileDataset.model_validate({"file": "f", "encoding": "cp1252", "key": ["ID"], **spec})


def _seed(reader: str, corpus: Path) -> None:
    """The built-in seeds and the reader's corpus cases (when its module exists)."""
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = list(DATASETS[reader][1])
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # the corpus lives in tests/, not in the installed package
    try:
        module = importlib.import_module(f"tests.corpus.{reader}")
        seeds += [case.content for case in module.CASES]
    except ModuleNotFoundError:
        pass
    for number, seed in enumerate(seeds):
        (corpus / f"seed-{number}").write_bytes(seed)


def check(reader: str, dataset: FileDataset, path: Path, data: bytes) -> tuple[str, str] | None:
    """Read ``data`` as a file: ``None``, or a finding as (kind, what happened)."""
    path.write_bytes(data)
    stats = ReadStats(path)
    try:
        rows = list(readers.read_file(path, dataset, stats))
    except BrokenFileError:
        return None
    except Exception as error:  # any other exception is a traceback for bad data: a finding
        frame = traceback.extract_tb(error.__traceback__)[-1]
        where = f"{Path(frame.filename).stem}-{frame.lineno}"
        return f"exception-{type(error).__name__}-{where}", f"{type(error).__name__}: {error}"
    width = len(dataset.column_names)
    for row in rows:
        if len(row.values) != width:
            return "row-shape", f"a row of {len(row.values)} values, {width} declared"
        if row.read_error is not None and any(value is not None for value in row.values):
            return "unreadable-with-values", "an unreadable row still carries values"
    counted = physical.count_physical(path, dataset).records
    if stats.records != counted:
        kind = "reader-counts-more" if stats.records > counted else "reader-counts-fewer"
        return kind, f"the reader counts {stats.records} records, the physical count {counted}"
    return None


def save(findings: Path, kind: str, message: str, data: bytes) -> None:
    """Keep the shortest input of each kind of finding, with what happened beside it."""
    target = findings / f"finding-{kind}"
    if target.exists() and len(target.read_bytes()) <= len(data):
        return
    is_new = not target.exists()
    target.write_bytes(data)
    target.with_suffix(".txt").write_text(message + "\n", encoding="utf-8")
    if is_new:
        print(f"\nFINDING {kind}: {message} (saved as {target})", file=sys.stderr, flush=True)


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in DATASETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(DATASETS)}}} [libFuzzer options]")
    reader = sys.argv[1]
    findings = ROOT / "var" / "fuzz" / reader
    corpus = findings / "corpus"
    _seed(reader, corpus)
    dataset = _dataset(reader)
    path = Path(tempfile.mkdtemp(prefix=f"fuzz-{reader}-")) / "input"

    def one_input(data: bytes) -> None:
        # A finding is saved and the run goes on, so one run reports every kind it reaches;
        # a hard crash (or a hang) is saved by libFuzzer itself as crash-*/timeout-*.
        finding = check(reader, dataset, path, data)
        if finding is not None:
            save(findings, *finding, data)

    arguments = [sys.argv[0], *sys.argv[2:], f"-artifact_prefix={findings}/", str(corpus)]
    atheris.Setup(arguments, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
