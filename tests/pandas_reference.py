"""The pandas readers the project used before issue 10, kept as an independent oracle: on a
valid delimited or fixed-width file the new reader (etl.extract.text_records) must give exactly
what pandas gives. Never used by the pipeline (pandas pads short rows and splits at bare CRs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from etl.catalog import FileDataset, FileFormat


def read_text_table(path: Path, dataset: FileDataset, chunk_rows: int) -> Iterator[pd.DataFrame]:
    common = {
        "dtype": "string",
        "encoding": dataset.encoding,
        "encoding_errors": "replace",
        "keep_default_na": False,
        "chunksize": chunk_rows,
    }
    if dataset.format is FileFormat.FIXED_WIDTH:
        reader = pd.read_fwf(
            path,
            widths=[field.width for field in dataset.fields],
            names=dataset.column_names,
            header=None,
            # Only the line ending is padding; inner spaces stay for the transform to judge.
            delimiter="\r\n",
            **common,
        )
    else:
        reader = pd.read_csv(
            path, sep=dataset.delimiter, header=0, quotechar='"', engine="c", **common
        )
    with reader:
        yield from reader
