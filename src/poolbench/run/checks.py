"""Checks of a job's config before any compute: every problem of a whole sweep in one message."""

from __future__ import annotations

import json
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
    if str(value("data._target_")).endswith("Hutto4DataModule"):
        from poolbench.data.hutto4 import domain_list

        for key in ("data.domains", "data.train_domains", "data.test_domains"):
            try:
                domain_list(value(key), key)
            except ValueError as err:  # its message names the key and the allowed domains
                found.append(str(err))

    # the poolers' and layer selectors' own parameters, against the encoder's sizes where they are known
    hidden, num_layers = encoder_sizes(cfg) or (None, None)

    def positive_int(key: str) -> int | None:
        v = value(key)
        ok = v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)
        check(ok, key, f"must be an integer >= 1, got {v!r}")
        return v if ok else None

    heads = positive_int("pooling.num_heads")
    check(not (heads and hidden and hidden % heads), "pooling.num_heads",
          f"{heads} does not divide the encoder's hidden size {hidden}")  # fmt: skip
    positive_int("pooling.hops")
    positive_int("pooling.attention_dim")
    penalty = value("pooling.penalty_weight")
    weight = number("pooling.penalty_weight")
    check(penalty is None or (weight is not None and weight >= 0), "pooling.penalty_weight",
          f"must be a number >= 0, got {penalty!r}")  # fmt: skip
    k = positive_int("layers.k")
    check(not (k and num_layers and k > num_layers), "layers.k",
          f"{k} is more than the encoder's {num_layers} layers (choose 1 <= k <= {num_layers})")  # fmt: skip
    return found


def encoder_sizes(cfg: DictConfig) -> tuple[int, int] | None:
    """(hidden size, number of layers) of the job's encoder when known without loading it: from the config of
    a tiny random encoder, or from a local checkpoint's ``config.json``."""
    model = OmegaConf.select(cfg, "encoder.model", default=None, throw_on_missing=False) or {}
    if "hidden_size" in model and "num_hidden_layers" in model:
        return int(model["hidden_size"]), int(model["num_hidden_layers"])
    try:
        path = OmegaConf.select(cfg, "encoder.name_or_path", default=None, throw_on_missing=False)
    except Exception:  # noqa: BLE001 - an unresolvable path is reported elsewhere; sizes stay unknown
        return None
    config = Path(str(path)).expanduser() / "config.json" if path else None
    if config is None or not config.is_file():
        return None
    sizes = json.loads(config.read_text())
    if "hidden_size" in sizes and "num_hidden_layers" in sizes:
        return int(sizes["hidden_size"]), int(sizes["num_hidden_layers"])
    return None


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` listing every problem of one job's config."""
    found = problems(cfg)
    if found:
        raise ConfigError("invalid config:\n  " + "\n  ".join(found))
