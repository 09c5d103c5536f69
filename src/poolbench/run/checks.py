"""Checks of a job's config before any compute: every problem of a whole sweep in one message."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from poolbench.errors import ConfigError
from poolbench.model.encoder import locate_problem

__all__ = ["ConfigError", "problems", "validate"]


# the config groups whose ``_target_`` is a component with a ``check(settings, facts)`` classmethod of its own
COMPONENTS = ("model", "data", "pooling", "layers")


def problems(cfg: DictConfig) -> list[str]:
    """What is wrong with one job's config (empty when nothing is): each component's own ``check`` of its settings
    (with what is known of the encoder), then what belongs to the job as a whole (trainer, seed, encoder)."""
    facts = encoder_facts(cfg)
    found = encoder_problems(cfg, facts)
    for group in COMPONENTS:
        node = OmegaConf.select(cfg, group, default=None, throw_on_missing=False)
        if node is None or "_target_" not in node:
            continue
        try:
            component = get_class(node._target_)
        except Exception as err:  # a target that cannot be imported is the user's to fix
            found.append(f"{group}._target_: cannot import {node._target_!r} ({type(err).__name__})")
            continue
        check = getattr(component, "check", None)  # a user's own component may have none
        if check is not None:
            found += check(OmegaConf.to_container(node, resolve=True, throw_on_missing=False), facts)
    return found + job_problems(cfg)


def job_problems(cfg: DictConfig) -> list[str]:
    """The settings of the job as a whole: Lightning's trainer and the seed."""

    def value(key: str):
        return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)

    found = []
    epochs = value("trainer.max_epochs")
    if not (epochs is None or (isinstance(epochs, int) and (epochs >= 1 or epochs == -1))):
        found.append(f"trainer.max_epochs: must be an integer >= 1 (or -1), got {epochs!r}")
    strategy = value("trainer.strategy")
    if (
        isinstance(strategy, str)
        and strategy.startswith("ddp")
        and value("trainer.use_distributed_sampler") is not False
    ):
        found.append(
            "trainer.use_distributed_sampler: must be false with a DDP strategy: poolbench's data module shards the "
            "data itself"
        )
    seed = value("seed")
    if not isinstance(seed, int):
        found.append(f"seed: must be an integer, got {seed!r}")
    return found


def encoder_problems(cfg: DictConfig, facts: dict) -> list[str]:
    """Can the encoder be found, and does its tokenizer fit its embeddings."""
    found = []
    name = OmegaConf.select(cfg, "encoder.name_or_path", default=None, throw_on_missing=False)
    problem = locate_problem(str(name)) if name else None
    if problem is not None:
        return [f"encoder.name_or_path: {problem}"]
    if facts.get("vocab") and OmegaConf.select(cfg, "encoder.tokenizer", default=None) is not None:
        size = tokenizer_size(OmegaConf.to_container(cfg.encoder.tokenizer, resolve=True))
        if not isinstance(size, int):
            found.append(f"encoder.tokenizer: could not be loaded: {size}")
        elif size > facts["vocab"]:
            found.append(
                f"encoder.tokenizer: {size} tokens, but the encoder's embeddings have {facts['vocab']}: token ids past "
                f"{facts['vocab'] - 1} would fail in the middle of training (use the encoder's own tokenizer)"
            )
    return found


def encoder_facts(cfg: DictConfig) -> dict:
    """What is known of the job's encoder without loading it (``hidden``, ``layers``, ``positions``, ``vocab``):
    from the config of a tiny random encoder, or from a local checkpoint's ``config.json``."""
    model = OmegaConf.select(cfg, "encoder.model", default=None, throw_on_missing=False) or {}
    sizes = {k: model[k] for k in SIZE_KEYS if k in model}
    roberta = "_target_" in model and _builds_roberta(model._target_)
    if not sizes:
        try:
            path = OmegaConf.select(cfg, "encoder.name_or_path", default=None, throw_on_missing=False)
        except Exception:  # an unresolvable path is reported elsewhere; nothing is known
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


def _builds_roberta(target: str) -> bool:
    from hydra.utils import get_method

    from poolbench.model.encoder import random_roberta

    try:
        return get_method(target) is random_roberta
    except Exception:  # an unknown target: nothing is known of it
        return False


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
    except Exception as err:  # reported as the problem it is
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


def tokenizer_size(node: dict) -> int | str:
    """The number of tokens of the tokenizer ``node`` builds (loaded once per process), or why it cannot load."""
    return _tokenizer_size(json.dumps(node, sort_keys=True))


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` listing every problem of one job's config."""
    found = problems(cfg)
    if found:
        raise ConfigError("invalid config:\n  " + "\n  ".join(found))
