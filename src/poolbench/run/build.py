"""Build a job's parts from its config: data module, model and trainer (the loggers come from tracking)."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from poolbench.model.build import build_model
from poolbench.run.preemption import cluster_plugins
from poolbench.run.resume import AtomicCheckpointIO

log = logging.getLogger(__name__)


def build(cfg: DictConfig, choices: dict, loggers: list) -> tuple:
    """(datamodule, model, trainer) of one job. With a frozen encoder, its token states are computed once per
    split and cached (``poolbench.model.features``); the data module then serves them instead of token ids."""
    tokenizer = instantiate(cfg.encoder.tokenizer)
    datamodule = instantiate(cfg.data, tokenizer=tokenizer, seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    if not cfg.encoder.pretrained:
        log.warning("encoder=%s is randomly initialised, NOT pretrained: for smoke tests only", choices["encoder"])
    model = build_model(cfg, datamodule.num_labels, datamodule.label_names, encoder_name=str(choices["encoder"]))
    if cfg.encoder.freeze and cfg.encoder.cache_features:
        if model.layers.all_layers:
            log.info(
                "layers=%s reads several layers: token states are not cached; the encoder runs in every step",
                choices["layers"],
            )
        else:
            from poolbench.model.features import cached_token_states

            precision = str(cfg.trainer.precision)
            datamodule.use_token_states(cached_token_states(model.encoder, datamodule, cfg.paths.cache_dir, precision))
    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values()]
    trainer: pl.Trainer = instantiate(
        cfg.trainer, logger=loggers or False, callbacks=callbacks, plugins=[*cluster_plugins(), AtomicCheckpointIO()]
    )
    return datamodule, model, trainer
