"""data=hutto4: four-class sentiment from the Hutto & Gilbert ICWSM-2014 ground truth (the offline default)."""

from __future__ import annotations

from pathlib import Path

from poolbench.data import hutto
from poolbench.data.base import RawSplit, TextClassificationDataModule, base_settings, normalise_text, split_indices
from poolbench.settings import Settings, raise_problems


class Hutto4DataModule(TextClassificationDataModule):
    """Four-class sentiment from the Hutto & Gilbert ICWSM-2014 ground truth (the offline default data).

    The mean rating ``s`` in -4..+4 is cut by ``thresholds`` ``[t0, t1, t2, t3]`` into very negative
    (s < t0), negative (t0 <= s < t1), positive (t2 <= s < t3) and very positive (s >= t3); the neutral band
    t1 <= s < t2 is dropped. Texts are de-duplicated on normalised text (first occurrence kept), then split
    80/10/10 with ``split_seed``.

    The four sources are domains (``DOMAINS``): ``domains`` keeps some of them, each split keeping its own
    examples of those domains, so a domain's test split is the same alone or with others. ``train_domains`` and
    ``test_domains`` train (and validate) on some domains and test on others: cross-domain transfer.

    Args:
        archive: a local ``vaderSentiment-3.3.2.tar.gz``; by default it is fetched with pip, once.
        thresholds: the four cut points.
        split_seed: seed of the train/val/test split (not the training seed: the split stays fixed).
        fractions: train/val/test fractions.
        domains: the domains to use (a name or a list; ``None``: all four).
        train_domains: the domains of the train and val splits (``None``: ``domains``).
        test_domains: the domains of the test split (``None``: ``domains``).
        **kwargs: see ``TextClassificationDataModule``.
    """

    def __init__(
        self,
        tokenizer,
        archive: str | None = None,
        thresholds: tuple[float, float, float, float] = (-1.5, -0.5, 0.5, 1.5),
        split_seed: int = 0,
        fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        domains: str | list[str] | None = None,
        train_domains: str | list[str] | None = None,
        test_domains: str | list[str] | None = None,
        **kwargs,
    ) -> None:
        kwargs.setdefault("label_names", ["very_negative", "negative", "positive", "very_positive"])
        own = {"archive": archive, "thresholds": thresholds, "domains": domains}
        own |= {"train_domains": train_domains, "test_domains": test_domains}
        raise_problems(self.check({**own, **base_settings(kwargs)}))
        super().__init__(tokenizer, **kwargs)
        self.archive = archive
        self.thresholds = tuple(thresholds)
        self.split_seed = split_seed
        self.fractions = tuple(fractions)
        chosen = domain_list(domains, "data.domains")
        self.split_domains = {
            "train": domain_list(train_domains, "data.train_domains") or chosen,
            "test": domain_list(test_domains, "data.test_domains") or chosen,
        }
        self.split_domains["val"] = self.split_domains["train"]

    @classmethod
    def check(cls, settings: dict, facts: dict | None = None) -> list[str]:
        problems = super().check(settings, facts)
        found = Settings(settings, "data")
        thresholds = found.get("thresholds")
        thresholds = list(thresholds) if thresholds is not None else [-1.5, -0.5, 0.5, 1.5]
        ordered = len(thresholds) == 4 and thresholds == sorted(thresholds)
        found.require(ordered, "thresholds", f"must be 4 increasing numbers, got {thresholds}")
        names = found.get("label_names")
        found.require(names is None or len(names) == 4, "label_names", f"hutto4 has 4 classes, got {names!r}")
        archive = found.get("archive")
        if isinstance(archive, str) and archive:
            found.require(Path(archive).expanduser().is_file(), "archive", f"file {archive!r} does not exist")
        for key in ("domains", "train_domains", "test_domains"):
            try:
                domain_list(found.get(key), f"data.{key}")
            except ValueError as err:  # its message names the key and the allowed domains
                found.problems.append(str(err))
        return problems + found.problems

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
        domain = [SOURCES[row["source"]] for row, _ in kept]
        parts = split_indices(len(kept), self.fractions, self.split_seed)
        raw = {}
        for name, idx in parts.items():
            keep = self.split_domains[name] or DOMAINS
            idx = [i for i in idx if domain[i] in keep]
            raw[name] = whole.subset(idx, f"hutto4 ({name}{'' if keep == DOMAINS else ', ' + '+'.join(keep)})")
        return raw


DOMAINS = ("tweets", "movies", "nyt", "amazon")  # Hutto & Gilbert's four sources, as data.domains names them
SOURCES = {"tweets": "tweets", "movie": "movies", "nyt": "nyt", "amazon": "amazon"}  # hutto.FILES -> domain


def domain_list(value, key: str) -> tuple[str, ...] | None:
    """``None``, one domain name or a list of them, checked, as a tuple in ``DOMAINS`` order."""
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value)
    unknown = [n for n in names if n not in DOMAINS]
    if unknown or not names:
        raise ValueError(f"{key}: unknown domain(s) {unknown or names}; allowed: {', '.join(DOMAINS)}")
    return tuple(d for d in DOMAINS if d in names)
