"""Checks of a job's config before any compute: every problem of a whole sweep in one message."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """One or more invalid settings; the message lists every one of them."""


def problems(cfg: DictConfig) -> list[str]:
    """What is wrong with one job's config (empty when nothing is)."""
    found = []

    def check(ok: bool, key: str, message: str) -> None:
        if not ok:
            found.append(f"{key}: {message}")

    def value(key: str):
        return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)  # a missing '???' is None

    def number(key: str):
        v = value(key)
        return v if isinstance(v, int | float) and not isinstance(v, bool) else None

    lr = number("model.lr")
    check(lr is not None and lr > 0, "model.lr", f"must be a positive number, got {value('model.lr')!r}")
    head_lr = value("model.head_lr")
    check(
        head_lr is None or (number("model.head_lr") is not None and head_lr > 0),
        "model.head_lr",
        f"must be null or a positive number, got {head_lr!r}",
    )
    wd = number("model.weight_decay")
    check(wd is not None and wd >= 0, "model.weight_decay", f"must be >= 0, got {value('model.weight_decay')!r}")
    warmup = number("model.warmup_ratio")
    check(warmup is not None and 0 <= warmup <= 1, "model.warmup_ratio", f"must be in [0, 1], got {warmup!r}")
    dropout = value("model.classifier_dropout")
    check(
        dropout is None or (number("model.classifier_dropout") is not None and 0 <= dropout < 1),
        "model.classifier_dropout",
        f"must be null or in [0, 1), got {dropout!r}",
    )
    num_labels = value("data.num_labels")
    check(
        num_labels is None or (isinstance(num_labels, int) and num_labels >= 2),
        "data.num_labels",
        f"must be null (from the data) or an integer >= 2, got {num_labels!r}",
    )
    for key in ("data.batch_size", "data.eval_batch_size"):
        v = value(key)
        check(isinstance(v, int) and v >= 1, key, f"must be an integer >= 1, got {v!r}")
    length = value("data.max_length")
    check(isinstance(length, int) and length >= 2, "data.max_length", f"must be an integer >= 2, got {length!r}")
    epochs = value("trainer.max_epochs")
    check(
        epochs is None or (isinstance(epochs, int) and (epochs >= 1 or epochs == -1)),
        "trainer.max_epochs",
        f"must be an integer >= 1 (or -1), got {epochs!r}",
    )
    strategy = value("trainer.strategy")
    if isinstance(strategy, str) and strategy.startswith("ddp"):
        check(
            value("trainer.use_distributed_sampler") is False,
            "trainer.use_distributed_sampler",
            "must be false with a DDP strategy: poolbench's data module shards the data itself",
        )
    seed = value("seed")
    check(isinstance(seed, int), "seed", f"must be an integer, got {seed!r}")
    for key in ("data.train", "data.val", "data.test", "data.archive"):
        path = value(key)
        if isinstance(path, str) and path:
            check(Path(path).expanduser().is_file(), key, f"file {path!r} does not exist")
    if str(value("data._target_")).endswith("FilesDataModule"):
        check(value("data.train") not in (None, ""), "data.train", "data=csv needs a training file")
    return found


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` listing every problem of one job's config."""
    found = problems(cfg)
    if found:
        raise ConfigError("invalid config:\n  " + "\n  ".join(found))
