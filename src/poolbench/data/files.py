"""data=csv: the user's own CSV, TSV or JSON-lines files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from poolbench.data.base import RawSplit, TextClassificationDataModule, base_settings, split_indices
from poolbench.errors import DataError
from poolbench.settings import Settings, raise_problems


class FilesDataModule(TextClassificationDataModule):
    """The user's own files: CSV, TSV or JSON lines (by extension), one file per split.

    Args:
        train: training file (required).
        val: validation file; ``None`` holds out ``holdout`` of the training file.
        test: test file; ``None`` holds out ``holdout`` of the training file.
        text_column: the column holding the text.
        label_column: the column holding the label (strings are mapped to ids, ints used as ids).
        holdout: fraction of the training file per missing split.
        split_seed: seed of those hold-outs.
        encoding: the files' text encoding (``utf-8``; e.g. ``latin-1`` for older exports).
        **kwargs: see ``TextClassificationDataModule``.
    """

    def __init__(
        self,
        tokenizer,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        text_column: str = "text",
        label_column: str = "label",
        holdout: float = 0.1,
        split_seed: int = 0,
        encoding: str = "utf-8",
        **kwargs,
    ) -> None:
        raise_problems(self.check({"train": train, "val": val, "test": test, **base_settings(kwargs)}))
        super().__init__(tokenizer, **kwargs)
        self.files = {"train": train, "val": val, "test": test}
        self.text_column = text_column
        self.label_column = label_column
        self.holdout = holdout
        self.split_seed = split_seed
        self.encoding = encoding

    @classmethod
    def check(cls, settings: dict, facts: dict | None = None) -> list[str]:
        problems = super().check(settings, facts)
        found = Settings(settings, "data")
        found.require(
            found.get("train") not in (None, ""),
            "train",
            "data=csv needs a training file: data.train=/path/to/train.csv",
        )
        for split in ("train", "val", "test"):
            path = found.get(split)
            if isinstance(path, str) and path:
                found.require(Path(path).expanduser().is_file(), split, f"file {path!r} does not exist")
        return problems + found.problems

    def read_splits(self) -> dict[str, RawSplit]:
        raw = {name: self._read(path) for name, path in self.files.items() if path}
        missing = [s for s in ("val", "test") if s not in raw]
        if missing:
            whole = raw["train"]
            fractions = (1 - self.holdout * len(missing), *(self.holdout,) * len(missing))
            if len(missing) == 1:
                fractions = (fractions[0], fractions[1] / 2, fractions[1] / 2)  # split_indices wants three
            parts = split_indices(len(whole.texts), fractions, self.split_seed)
            keep = {"train": parts["train"]}
            if len(missing) == 2:
                keep.update(val=parts["val"], test=parts["test"])
            else:
                keep[missing[0]] = np.concatenate([parts["val"], parts["test"]])
            for name, idx in keep.items():
                raw[name] = whole.subset(idx, f"{whole.origin} ({name} part)")
        return raw

    def _read(self, path: str) -> RawSplit:
        """Read one file with pandas; its errors are translated into one line naming the file and line."""
        file = Path(path).expanduser()
        if not file.is_file():
            raise DataError(f"data file {str(path)!r} does not exist")
        suffix = file.suffix.lower()
        if suffix not in READERS:
            raise DataError(f"{file}: unknown file type {suffix!r}; use .csv, .tsv or .jsonl")
        _check_encoding(file, self.encoding)
        frame, offset = READERS[suffix](file, self.encoding)
        for column in (self.text_column, self.label_column):
            if column not in frame.columns:
                raise DataError(
                    f"{file}: no column {column!r}; columns are {list(frame.columns)} "
                    f"(set data.text_column / data.label_column)"
                )
        labels = [_maybe_int(y) for y in frame[self.label_column].tolist()]
        return RawSplit(
            texts=frame[self.text_column].tolist(),
            labels=labels,
            origin=str(file),
            text_column=self.text_column,
            label_column=self.label_column,
            row_offset=offset,
        )


def _check_encoding(file: Path, encoding: str) -> None:
    """A file that is not text in ``encoding`` (a Latin-1 CSV read as UTF-8, or not text at all): name the line."""
    data = file.read_bytes()
    try:
        data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataError(
            f"{file}: line {line}, column {column}: byte 0x{data[err.start]:02x} is not {encoding} text: the file is "
            "in another encoding (set data.encoding, e.g. data.encoding=latin-1) or is not a text file"
        ) from err
    except LookupError as err:
        raise DataError(f"data.encoding: unknown encoding {encoding!r} (e.g. utf-8, latin-1, cp1252)") from err


def _read_table(file: Path, encoding: str, sep: str) -> tuple:
    import csv

    import pandas as pd

    with file.open(encoding=encoding, newline="") as f:
        header = next(csv.reader(f, delimiter=sep), [])
    names = [h.strip() for h in header]
    if not any(names):
        raise DataError(f"{file}: line 1: no header; the first line must name the columns (e.g. text{sep}label)")
    for i, name in enumerate(names):
        if not name:
            raise DataError(f"{file}: line 1: column {i + 1} of the header has no name")
        if names.index(name) != i:
            raise DataError(f"{file}: line 1: column {name!r} appears twice in the header")
    try:
        return pd.read_csv(file, sep=sep, dtype=object, keep_default_na=False, encoding=encoding), 1
    except pd.errors.ParserError as err:
        raise DataError(f"{file}: {_parser_message(str(err))}") from err


def _parser_message(message: str) -> str:
    """pandas' C-parser messages, said with file lines (its 'row' of an open quote counts the header as 0)."""
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if fields:
        expected, line, saw = fields.groups()
        return (
            f"line {line}: {saw} fields where the header has {expected} (a separator inside a text needs the "
            "text in double quotes)"
        )
    quote = re.search(r"EOF inside string starting at row (\d+)", message)
    if quote:
        return (
            f"line {int(quote.group(1)) + 1}: a double quote opens a text that never closes: it swallows the "
            "rest of the file (close it, or double the quotes inside a text)"
        )
    return f"not a readable table: {message.strip()}"


def _read_jsonl(file: Path, encoding: str) -> tuple:
    import json

    import pandas as pd

    try:
        return pd.read_json(file, lines=True, dtype=False, encoding=encoding), 0
    except ValueError as err:  # pandas does not say where: find the first line json itself rejects
        for number, line in enumerate(file.read_text(encoding=encoding).splitlines(), start=1):
            try:
                if line.strip():
                    json.loads(line)
            except json.JSONDecodeError as bad:
                raise DataError(f"{file}: line {number}, column {bad.colno}: not valid JSON ({bad.msg})") from err
        raise DataError(f"{file}: not JSON lines (one object per line): {err}") from err


READERS = {
    ".csv": lambda file, encoding: _read_table(file, encoding, ","),
    ".tsv": lambda file, encoding: _read_table(file, encoding, "\t"),
    ".jsonl": _read_jsonl,
    ".json": _read_jsonl,
}


def _maybe_int(y):
    """CSV cells are read as strings: '3' is the id 3, 'positive' stays a name."""
    if isinstance(y, str):
        s = y.strip()
        if s.lstrip("-").isdigit():
            return int(s)
        return s
    return y
