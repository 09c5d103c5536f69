"""The shared machinery of every data source: label checks, cached tokenisation, length-aware batches.

Each subclass only says how to read its raw splits (``read_splits``): a mapping ``split -> RawSplit`` with
texts and raw labels (strings or ints) and where they came from, so that errors can name file and row.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
from torch.utils.data import DataLoader

from poolbench.data.raw import RawSplit, map_labels
from poolbench.data.sampler import EpochSeededSampler, ResumableLoader
from poolbench.data.tokenized import tokenize_cached
from poolbench.errors import DataError
from poolbench.settings import Settings

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class TextClassificationDataModule(pl.LightningDataModule):
    """Shared machinery: label mapping and checks, cached tokenisation, dynamically padded batches.

    Args:
        tokenizer: the encoder's Hugging Face tokenizer.
        batch_size: training batch size.
        eval_batch_size: batch size for validation and test.
        max_length: sequences are truncated to this many tokens.
        num_labels: the number of classes; ``None`` infers it from the data, a value is checked against it.
        label_names: class names in id order; string labels are mapped through it. ``None``: sorted
            distinct training labels (strings) or ``0..num_labels-1`` (ints).
        cache_dir: where downloads and tokenised splits are cached (outside the repository).
        num_workers: ``DataLoader`` workers.
        group_by_length: draw training batches of similar lengths (shuffled megabatches sorted by length,
            ``transformers``' ``group_by_length``) so that dynamic padding pads little; evaluation batches
            are always taken in length order.
        seed: the run's seed; with the epoch it alone decides the training order (see ``EpochSeededSampler``).
    """

    @classmethod
    def check(cls, settings: dict, facts: dict | None = None) -> list[str]:
        """What is wrong with these settings (``data.<key>: ...``), given the encoder's ``facts`` (``positions``)."""
        found = Settings(settings, "data")
        for key in ("batch_size", "eval_batch_size"):
            found.integer(key, optional=False)
        length, positions = found.integer("max_length", low=2, optional=False), (facts or {}).get("positions")
        fits = not (length and positions and length > positions)
        message = f"{length} is more than the encoder's {positions} positions (choose at most {positions})"
        found.require(fits, "max_length", message)
        labels = found.get("num_labels")
        found.require(
            labels is None or (isinstance(labels, int) and not isinstance(labels, bool) and labels >= 2),
            "num_labels",
            f"must be null (from the data) or an integer >= 2, got {labels!r}",
        )
        return found.problems

    def __init__(
        self,
        tokenizer,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        max_length: int = 128,
        num_labels: int | None = None,
        label_names: list[str] | None = None,
        cache_dir: str = "~/.cache/poolbench",
        num_workers: int = 0,
        group_by_length: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.max_length = max_length
        self.num_labels = num_labels
        self.label_names = list(label_names) if label_names is not None else None
        self.cache_dir = Path(cache_dir).expanduser()
        self.num_workers = num_workers
        self.group_by_length = group_by_length
        self.seed = seed
        self.splits: dict | None = None  # split -> tokenised datasets.Dataset
        self._keys: dict[str, str] = {}  # split -> key of its tokenisation (see split_key)
        self.data_checksums: dict[str, str] = {}  # split -> sha256 of its texts and label ids
        self.token_states: dict | None = None  # split -> cached token states, when used (see use_token_states)
        self.raw: dict[str, RawSplit] | None = None

    # --- what a source provides -------------------------------------------------------------------
    def read_splits(self) -> dict[str, RawSplit]:
        raise NotImplementedError

    # --- shared ----------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:  # the Trainer calls setup again; everything is done once
            return
        raw = self.read_splits()
        for name in SPLITS:
            if name not in raw or len(raw[name].texts) == 0:
                origin = raw[name].origin if name in raw else "the data"
                raise DataError(f"{origin}: the {name} split has no examples")
        self._check_texts(raw)
        labels = self._map_labels(raw)
        self.raw = raw
        self.splits = {name: self._tokenize(name, raw[name], labels[name]) for name in SPLITS}
        log.info("class counts per split:\n%s", self.class_count_table(labels))

    def _check_texts(self, raw: dict[str, RawSplit]) -> None:
        for split in raw.values():
            for i, text in enumerate(split.texts):
                if not isinstance(text, str) or not text.strip():
                    raise DataError(f"{split.origin}: {split.where(i)}: empty text in column {split.text_column!r}")

    def _map_labels(self, raw: dict[str, RawSplit]) -> dict[str, list[int]]:
        mapped, self.label_names, self.num_labels = map_labels(raw, self.label_names, self.num_labels)
        return mapped

    def class_count_table(self, labels: dict[str, list[int]]) -> str:
        width = max(len(n) for n in self.label_names)
        lines = [f"{'class':<{width}}  " + "  ".join(f"{s:>6}" for s in SPLITS)]
        counts = {s: Counter(labels[s]) for s in SPLITS}
        for i, n in enumerate(self.label_names):
            lines.append(f"{n:<{width}}  " + "  ".join(f"{counts[s][i]:>6}" for s in SPLITS))
        lines.append(f"{'total':<{width}}  " + "  ".join(f"{len(labels[s]):>6}" for s in SPLITS))
        return "\n".join(lines)

    def _tokenize(self, name: str, split: RawSplit, labels: list[int]):
        """Tokenise a split once per (data, tokenizer, max_length); later runs load it from disk."""
        dataset, self._keys[name], self.data_checksums[name] = tokenize_cached(
            self.tokenizer, split.texts, labels, self.max_length, self.cache_dir / "tokenized", name
        )
        return dataset

    def split_key(self, split: str) -> str:
        """Identifies the tokenised split (data, tokenizer, max_length): the key of every cache built on it."""
        return self._keys[split]

    def use_token_states(self, states: dict) -> None:
        """Feed cached frozen-encoder token states instead of token ids: ``split ->`` a dataset with ``lengths``
        and a ``collate`` function (``poolbench.model.features.TokenStates``)."""
        self.token_states = states

    def _dataset(self, split: str):
        if self.token_states is not None:
            return self.token_states[split]
        return self.splits[split].remove_columns("length")

    def _lengths(self, split: str) -> list[int]:
        if self.token_states is not None:
            return self.token_states[split].lengths
        return list(self.splits[split]["length"])

    def _loader(self, split: str, batch_size: int, loader: type[DataLoader] = DataLoader, **kwargs) -> DataLoader:
        if self.token_states is not None:
            collate = self.token_states[split].collate  # pads token states and builds the mask
        else:
            from transformers import DataCollatorWithPadding

            collate = DataCollatorWithPadding(self.tokenizer)  # pads each batch to its own longest
        return loader(
            self._dataset(split), batch_size=batch_size, collate_fn=collate, num_workers=self.num_workers, **kwargs
        )

    def _shard(self) -> tuple[int, int]:
        """(rank, world size) of a distributed run (this data module shards the data itself), else (0, 1)."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._shard()
        sampler = EpochSeededSampler(
            self._lengths("train"),
            self.batch_size,
            self.seed,
            self.group_by_length,
            self._batches_done_in_epoch,
            rank=rank,
            num_replicas=world,
        )
        return self._loader("train", self.batch_size, loader=ResumableLoader, sampler=sampler)

    def _batches_done_in_epoch(self) -> int:
        """Training batches already done in the current epoch: non-zero only in a run resumed mid-epoch."""
        trainer = self.trainer
        if trainer is None:
            return 0
        return trainer.fit_loop.epoch_loop.batch_progress.current.completed

    def _eval_loader(self, split: str, shard: bool = True) -> DataLoader:
        lengths = self._lengths(split)
        by_length = sorted(range(len(lengths)), key=lengths.__getitem__)  # predictions are keyed by idx
        rank, world = self._shard() if shard else (0, 1)
        # distributed: every rank evaluates its own examples, each example exactly once (no padding duplicates)
        return self._loader(split, self.eval_batch_size, sampler=by_length[rank::world])

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def encoder_loader(self, split: str) -> DataLoader:
        """Token ids of a split in length order, whatever ``use_token_states`` says: to compute them."""
        states, self.token_states = self.token_states, None
        try:
            return self._eval_loader(split, shard=False)
        finally:
            self.token_states = states


def base_settings(kwargs: dict) -> dict:
    """The shared settings a data module passes on to ``TextClassificationDataModule``, its defaults filled in:
    what the module's ``check`` reads."""
    import inspect

    signature = inspect.signature(TextClassificationDataModule.__init__).parameters
    defaults = {k: p.default for k, p in signature.items() if p.default is not inspect.Parameter.empty}
    return {**defaults, **kwargs}


def split_indices(n: int, fractions: tuple[float, float, float], seed: int) -> dict[str, np.ndarray]:
    """A deterministic random split of ``range(n)`` by ``fractions`` (train, val, test)."""
    if abs(sum(fractions) - 1) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"split fractions must be positive and sum to 1, got {list(fractions)}")
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    return {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }


def normalise_text(text: str) -> str:
    return " ".join(text.lower().split())
