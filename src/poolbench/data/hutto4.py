"""data=hutto4: four-class sentiment from the Hutto & Gilbert ICWSM-2014 ground truth (the offline default)."""

from __future__ import annotations

from poolbench.data import hutto
from poolbench.data.base import RawSplit, TextClassificationDataModule, normalise_text, split_indices


class Hutto4DataModule(TextClassificationDataModule):
    """Four-class sentiment from the Hutto & Gilbert ICWSM-2014 ground truth (the offline default data).

    The mean rating ``s`` in -4..+4 is cut by ``thresholds`` ``[t0, t1, t2, t3]`` into very negative
    (s < t0), negative (t0 <= s < t1), positive (t2 <= s < t3) and very positive (s >= t3); the neutral band
    t1 <= s < t2 is dropped. Texts are de-duplicated on normalised text (first occurrence kept), then split
    80/10/10 with ``split_seed``.

    Args:
        archive: a local ``vaderSentiment-3.3.2.tar.gz``; by default it is fetched with pip, once.
        thresholds: the four cut points.
        split_seed: seed of the train/val/test split (not the training seed: the split stays fixed).
        fractions: train/val/test fractions.
        **kwargs: see ``TextClassificationDataModule``.
    """

    def __init__(
        self,
        tokenizer,
        archive: str | None = None,
        thresholds: tuple[float, float, float, float] = (-1.5, -0.5, 0.5, 1.5),
        split_seed: int = 0,
        fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        **kwargs,
    ) -> None:
        kwargs.setdefault("label_names", ["very_negative", "negative", "positive", "very_positive"])
        super().__init__(tokenizer, **kwargs)
        if list(thresholds) != sorted(thresholds) or len(thresholds) != 4:
            raise ValueError(f"data.thresholds must be 4 increasing numbers, got {list(thresholds)}")
        if len(self.label_names) != 4:
            raise ValueError(f"hutto4 has 4 classes; data.label_names has {len(self.label_names)}")
        self.archive = archive
        self.thresholds = tuple(thresholds)
        self.split_seed = split_seed
        self.fractions = tuple(fractions)

    def prepare_data(self) -> None:
        hutto.fetch(self.cache_dir, self.archive)

    def label_of(self, s: float) -> int | None:
        t0, t1, t2, t3 = self.thresholds
        if s < t0:
            return 0
        if s < t1:
            return 1
        if s < t2:
            return None  # neutral band: dropped
        return 2 if s < t3 else 3

    def read_splits(self) -> dict[str, RawSplit]:
        rows = hutto.read(hutto.fetch(self.cache_dir, self.archive))
        seen, kept = set(), []
        for row in rows:
            y = self.label_of(row["rating"])
            key = normalise_text(row["text"])
            if y is None or key in seen:
                continue
            seen.add(key)
            kept.append((row, self.label_names[y]))
        whole = RawSplit(
            texts=[row["text"] for row, _ in kept],
            labels=[label for _, label in kept],
            origin="hutto4",
        )
        parts = split_indices(len(kept), self.fractions, self.split_seed)
        return {name: whole.subset(idx, f"hutto4 ({name})") for name, idx in parts.items()}
