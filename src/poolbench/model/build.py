"""Building a ``PoolingClassifier`` from a job's config, and the encoder the jobs of a linear-probe sweep share."""

from __future__ import annotations

from omegaconf import OmegaConf
from torch import nn


def build_model(cfg, num_labels: int, label_names: list[str] | None = None, encoder_name: str = "encoder"):
    """The ``PoolingClassifier`` a job's config describes (encoder, layers, pooling, model groups)."""
    from hydra.utils import instantiate

    if cfg.encoder.freeze and cfg.encoder.pretrained:  # the jobs of a linear-probe sweep share one encoder
        encoder = shared_frozen_encoder(OmegaConf.to_container(cfg.encoder.model, resolve=True))
    else:
        encoder = instantiate(cfg.encoder.model)
    return instantiate(cfg.model)(
        encoder=encoder,
        pooling=instantiate(cfg.pooling),
        layers=instantiate(cfg.layers) if cfg.get("layers") else None,  # records from before layers=: the last
        num_labels=num_labels,
        label_names=label_names,
        encoder_name=encoder_name,
    )


_FROZEN: dict[str, tuple[nn.Module, nn.Module | None]] = {}  # encoder config -> (encoder, its own pooler)


def shared_frozen_encoder(node: dict) -> nn.Module:
    """The pretrained encoder ``node`` loads, loaded once per process: a frozen encoder never changes (no
    gradients, eval mode, and its checkpoints hold the head only), so every linear-probe job of a sweep can use
    the same one (and its fingerprint, ``poolbench.model.features``). Its own pooler, which each model detaches,
    is put back for the next job."""
    import json

    from hydra.utils import instantiate

    key = json.dumps(node, sort_keys=True)
    if key not in _FROZEN:
        _FROZEN.clear()  # one encoder at a time
        encoder = instantiate(node)
        _FROZEN[key] = (encoder, getattr(encoder, "pooler", None))
    encoder, pooler = _FROZEN[key]
    if pooler is not None:
        encoder.pooler = pooler
    return encoder
