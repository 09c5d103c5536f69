"""Raw splits as the data sources read them, and their labels mapped to class ids, with every problem named."""

from __future__ import annotations

from dataclasses import dataclass

from poolbench.errors import DataError


@dataclass
class RawSplit:
    texts: list[str]
    labels: list
    origin: str  # file path or source name, for error messages
    text_column: str = "text"
    label_column: str = "label"
    # for error messages: ``rows[i]`` is example i's 0-based row in its file (None: i itself), and
    # ``row_offset`` the lines before the first row (a CSV header), so that "row 3 (line 4)" can be said
    rows: list[int] | None = None
    row_offset: int = 0

    def where(self, i: int) -> str:
        row = self.rows[i] if self.rows is not None else i
        return f"row {row + 1}" + (f" (line {row + 1 + self.row_offset})" if self.row_offset else "")

    def subset(self, indices, origin: str) -> RawSplit:
        """The examples at ``indices``, still reported by their rows in the original file."""
        return RawSplit(
            texts=[self.texts[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            origin=origin,
            text_column=self.text_column,
            label_column=self.label_column,
            rows=[self.rows[i] if self.rows is not None else int(i) for i in indices],
            row_offset=self.row_offset,
        )


def map_labels(raw: dict[str, RawSplit], label_names: list[str] | None, num_labels: int | None) -> tuple:
    """Raw labels -> ids: ``(split -> ids, label_names, num_labels)``, with every inconsistency reported by file,
    line (or row) and column.

    Names (strings) map through ``label_names`` (default: the sorted training names). Ids (ints) are checked
    against ``label_names`` / ``num_labels`` when given, else against the ids the training data has: a
    validation or test label that training never saw is an error, never a phantom class.
    """
    strings = _label_form(raw["train"]) == "name"
    for split in raw.values():
        form = _label_form(split)
        if form is not None and form != ("name" if strings else "id"):
            i = next(i for i, y in enumerate(split.labels) if isinstance(y, str) != strings)
            raise DataError(
                f"{split.origin}: {split.where(i)}: label {split.labels[i]!r} in column {split.label_column!r} "
                f"is {'an id' if strings else 'a name'}, but the training labels are "
                f"{'names' if strings else 'ids'}"
            )
    if strings and label_names is None:
        label_names = sorted({str(y) for y in raw["train"].labels})
    n_expected = num_labels
    if label_names is not None:
        if n_expected is not None and n_expected != len(label_names):
            raise DataError(f"num_labels={n_expected} disagrees with the {len(label_names)} label names {label_names}")
        n_expected = len(label_names)
    train_ids = None if strings or n_expected is not None else {_as_id(y) for y in raw["train"].labels} - {None}
    mapped = {
        name: _ids(split, label_names, strings, n_expected, train_ids, raw["train"].origin)
        for name, split in raw.items()
    }
    if n_expected is None:
        n_expected = max(mapped["train"]) + 1
    if len(set(mapped["train"])) < 2:
        raise DataError(f"{raw['train'].origin}: the train split has fewer than 2 classes")
    if label_names is None:
        label_names = [str(i) for i in range(n_expected)]
    return mapped, list(label_names), n_expected


def _ids(split: RawSplit, names, strings: bool, n_expected: int | None, train_ids: set | None, train: str) -> list:
    def where(i: int) -> str:
        return f"{split.origin}: {split.where(i)}: label {split.labels[i]!r} in column {split.label_column!r}"

    index = {n: i for i, n in enumerate(names or [])}
    ids = []
    for i, y in enumerate(split.labels):
        if strings:
            if str(y) not in index:
                raise DataError(f"{where(i)} is not in the label set {names}")
            ids.append(index[str(y)])
            continue
        value = _as_id(y)
        if value is None or value < 0 or (n_expected is not None and value >= n_expected):
            allowed = f"0..{n_expected - 1}" if n_expected is not None else "integers >= 0"
            raise DataError(f"{where(i)} is out of range (allowed: {allowed})")
        if train_ids is not None and value not in train_ids:
            raise DataError(
                f"{where(i)} never occurs in the training data ({train}: labels {sorted(train_ids)}); "
                "set data.num_labels or data.label_names if a class is missing from training on purpose"
            )
        ids.append(value)
    return ids


def _label_form(split: RawSplit) -> str | None:
    """``name`` (strings), ``id`` (numbers) or ``None`` (no labels); empty labels and a mix are errors."""
    for i, y in enumerate(split.labels):
        if y is None or (isinstance(y, str) and not y.strip()) or (isinstance(y, float) and y != y):
            raise DataError(
                f"{split.origin}: {split.where(i)}: empty label in column {split.label_column!r}"
                " (a row with fewer fields than the header?)"
            )
    kinds = {isinstance(y, str) for y in split.labels}
    if len(kinds) > 1:
        first = split.labels[0]
        i = next(i for i, y in enumerate(split.labels) if isinstance(y, str) != isinstance(first, str))
        raise DataError(
            f"{split.origin}: {split.where(i)}: label {split.labels[i]!r} in column {split.label_column!r} is "
            f"{'a name' if isinstance(split.labels[i], str) else 'an id'}, but the first label {first!r} is "
            f"{'a name' if isinstance(first, str) else 'an id'}: use one form for every label"
        )
    return None if not kinds else ("name" if kinds == {True} else "id")


def _as_id(y) -> int | None:
    try:
        value = int(y)
    except (TypeError, ValueError):
        return None
    return value if value == y and not isinstance(y, bool) else None
