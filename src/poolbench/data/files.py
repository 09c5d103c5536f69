"""data=csv: the user's own CSV, TSV or JSON-lines files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poolbench.data.base import DataError, RawSplit, TextClassificationDataModule, split_indices


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
        **kwargs,
    ) -> None:
        super().__init__(tokenizer, **kwargs)
        self.files = {"train": train, "val": val, "test": test}
        self.text_column = text_column
        self.label_column = label_column
        self.holdout = holdout
        self.split_seed = split_seed

    def read_splits(self) -> dict[str, RawSplit]:
        if not self.files["train"]:
            raise DataError("data=csv needs a training file: data.train=/path/to/train.csv")
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
        import pandas as pd

        file = Path(path).expanduser()
        if not file.is_file():
            raise DataError(f"data file {str(path)!r} does not exist")
        suffix = file.suffix.lower()
        if suffix == ".csv":
            frame, offset = pd.read_csv(file, dtype=object, keep_default_na=False), 1
        elif suffix == ".tsv":
            frame, offset = pd.read_csv(file, sep="\t", dtype=object, keep_default_na=False), 1
        elif suffix in (".jsonl", ".json"):
            frame, offset = pd.read_json(file, lines=True, dtype=False), 0
        else:
            raise DataError(f"{file}: unknown file type {suffix!r}; use .csv, .tsv or .jsonl")
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


def _maybe_int(y):
    """CSV cells are read as strings: '3' is the id 3, 'positive' stays a name."""
    if isinstance(y, str):
        s = y.strip()
        if s.lstrip("-").isdigit():
            return int(s)
        return s
    return y
