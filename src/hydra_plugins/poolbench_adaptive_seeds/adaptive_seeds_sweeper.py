"""Hydra's side of the adaptive-seeds sweeper: the plugin interface. The search itself is
``poolbench.run.adaptive``; the settings are in ``conf/hydra/sweeper/adaptive_seeds.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import DictConfig, OmegaConf


class AdaptiveSeedsSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        from poolbench.run.adaptive import AdaptiveSeeds

        self.search = AdaptiveSeeds(**settings)  # the settings of conf/hydra/sweeper/adaptive_seeds.yaml
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from poolbench.run.sweep import expand_sweep

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")  # as Hydra's sweepers do: resume finds it
        parsed = OverridesParser.create().parse_overrides(arguments)
        row_keys = [o.key_or_group.lstrip("+~") for o in parsed if o.is_sweep_override()]

        def launch(batch: list[list[str]], first: int):
            return self.launcher.launch(batch, initial_job_idx=first)

        from poolbench.tracking import uses_wandb

        log_wandb = uses_wandb(self.config.get("logger"))
        return self.search.run(expand_sweep(arguments), row_keys, launch, sweep_dir, log_wandb)
