"""Train one pooling on one encoder and data set; with -m, sweep. All options live in conf/."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import poolbench  # noqa: F401  (registers the config resolvers)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from poolbench.run.job import run

    return run(cfg)


if __name__ == "__main__":
    main()
