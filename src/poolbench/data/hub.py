"""data=hub: any Hugging Face ``datasets`` hub data set (needs the network)."""

from __future__ import annotations

import numpy as np

from poolbench.data.base import DataError, RawSplit, TextClassificationDataModule, base_settings, split_indices
from poolbench.settings import raise_problems


class HubDataModule(TextClassificationDataModule):
    """Any ``datasets`` hub dataset (online), e.g. ``SetFit/sst5``.

    Args:
        name: the hub name.
        subset: the configuration name, if the dataset has several.
        train_split, val_split, test_split: split names in that dataset; a missing val split is held out
            from train.
        text_column, label_column: column names.
        **kwargs: see ``TextClassificationDataModule``.
    """

    def __init__(
        self,
        tokenizer,
        name: str,
        subset: str | None = None,
        train_split: str = "train",
        val_split: str | None = "validation",
        test_split: str = "test",
        text_column: str = "text",
        label_column: str = "label",
        split_seed: int = 0,
        **kwargs,
    ) -> None:
        raise_problems(self.check(base_settings(kwargs)))
        super().__init__(tokenizer, **kwargs)
        self.name, self.subset = name, subset
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.text_column, self.label_column = text_column, label_column
        self.split_seed = split_seed

    def prepare_data(self) -> None:
        self._load()

    def _load(self):
        import datasets

        return datasets.load_dataset(self.name, self.subset)

    def read_splits(self) -> dict[str, RawSplit]:
        ds = self._load()
        raw = {}
        for split, hub_name in self.split_names.items():
            if hub_name is None:
                continue
            if hub_name not in ds:
                raise DataError(f"{self.name}: no split {hub_name!r}; splits are {list(ds)}")
            part = ds[hub_name]
            for column in (self.text_column, self.label_column):
                if column not in part.column_names:
                    raise DataError(f"{self.name}[{hub_name}]: no column {column!r}; columns: {part.column_names}")
            raw[split] = RawSplit(
                texts=part[self.text_column],
                labels=part[self.label_column],
                origin=f"{self.name}[{hub_name}]",
                text_column=self.text_column,
                label_column=self.label_column,
            )
        if "val" not in raw:
            whole = raw["train"]
            idx = split_indices(len(whole.texts), (0.9, 0.05, 0.05), self.split_seed)
            val_idx = np.concatenate([idx["val"], idx["test"]])
            raw["train"] = whole.subset(idx["train"], f"{whole.origin} (train part)")
            raw["val"] = whole.subset(val_idx, f"{whole.origin} (val part)")
        return raw
