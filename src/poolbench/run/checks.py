"""Checks of a job's config before any compute: every problem of a whole sweep in one message."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from poolbench.errors import ConfigError
from poolbench.model.encoder import locate_problem

__all__ = ["ConfigError", "problems", "validate"]


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

    # the encoder: can it be found, and do the data's limits fit it
    facts = encoder_facts(cfg)
    name = value("encoder.name_or_path")
    problem = locate_problem(str(name)) if name else None
    check(problem is None, "encoder.name_or_path", problem or "")
    positions = facts.get("positions")
    check(
        not (isinstance(length, int) and positions and length > positions),
        "data.max_length",
        f"{length} is more than the encoder's {positions} positions (choose at most {positions})",
    )
    if problem is None and facts.get("vocab") and value("encoder.tokenizer") is not None:
        size = tokenizer_size(OmegaConf.to_container(cfg.encoder.tokenizer, resolve=True))
        check(
            isinstance(size, int) and size <= facts["vocab"],
            "encoder.tokenizer",
            f"{size} tokens, but the encoder's embeddings have {facts['vocab']}: token ids past {facts['vocab'] - 1}"
            " would fail in the middle of training (use the encoder's own tokenizer)"
            if isinstance(size, int)
            else f"could not be loaded: {size}",
        )

    # the poolers' and layer selectors' own parameters, against the encoder's sizes where they are known
    hidden, num_layers = facts.get("hidden"), facts.get("layers")

    def positive_int(key: str) -> int | None:
        v = value(key)
        ok = v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)
        check(ok, key, f"must be an integer >= 1, got {v!r}")
        return v if ok else None

    heads = positive_int("pooling.num_heads")
    check(
        not (heads and hidden and hidden % heads),
        "pooling.num_heads",
        f"{heads} does not divide the encoder's hidden size {hidden}",
    )
    positive_int("pooling.hops")
    positive_int("pooling.attention_dim")
    penalty = value("pooling.penalty_weight")
    weight = number("pooling.penalty_weight")
    check(
        penalty is None or (weight is not None and weight >= 0),
        "pooling.penalty_weight",
        f"must be a number >= 0, got {penalty!r}",
    )
    k = positive_int("layers.k")
    check(
        not (k and num_layers and k > num_layers),
        "layers.k",
        f"{k} is more than the encoder's {num_layers} layers (choose 1 <= k <= {num_layers})",
    )
    return found


def encoder_facts(cfg: DictConfig) -> dict:
    """What is known of the job's encoder without loading it (``hidden``, ``layers``, ``positions``, ``vocab``):
    from the config of a tiny random encoder, or from a local checkpoint's ``config.json``."""
    model = OmegaConf.select(cfg, "encoder.model", default=None, throw_on_missing=False) or {}
    sizes = {k: model[k] for k in SIZE_KEYS if k in model}
    roberta = str(model.get("_target_", "")).endswith("random_roberta")
    if not sizes:
        try:
            path = OmegaConf.select(cfg, "encoder.name_or_path", default=None, throw_on_missing=False)
        except Exception:  # noqa: BLE001 - an unresolvable path is reported elsewhere; nothing is known
            return {}
        config = Path(str(path)).expanduser() / "config.json" if path else None
        if config is None or not config.is_file():
            return {}
        sizes = json.loads(config.read_text())
        roberta = sizes.get("model_type") in ("roberta", "xlm-roberta", "camembert")
    facts = {name: int(sizes[key]) for key, name in SIZE_KEYS.items() if isinstance(sizes.get(key), int)}
    if roberta and "positions" in facts:  # RoBERTa's positions start after the padding index: 514 -> 512 tokens
        facts["positions"] -= 2
    return facts


SIZE_KEYS = {
    "hidden_size": "hidden",
    "num_hidden_layers": "layers",
    "max_position_embeddings": "positions",
    "vocab_size": "vocab",
}


@functools.lru_cache(maxsize=16)
def _tokenizer_size(node: str) -> int | str:
    from hydra.utils import instantiate

    try:
        return len(instantiate(json.loads(node)))
    except Exception as err:  # noqa: BLE001 - reported as the problem it is
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def tokenizer_size(node: dict) -> int | str:
    """The number of tokens of the tokenizer ``node`` builds (loaded once per process), or why it cannot load."""
    return _tokenizer_size(json.dumps(node, sort_keys=True))


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` listing every problem of one job's config."""
    found = problems(cfg)
    if found:
        raise ConfigError("invalid config:\n  " + "\n  ".join(found))
