"""A Hydra launcher for the tests: ``hydra/launcher=synthetic`` writes each job's record and test predictions from a
simulated study (``poolbench.analysis.simulate.World``) instead of training, so that the real sweeper
(``hydra/sweeper=adaptive_seeds``) is what a simulation tests. Found by Hydra when ``tests/plugins`` is on the path."""

import zlib
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher


@dataclass
class SyntheticLauncherConf:
    _target_: str = "hydra_plugins.poolbench_synthetic_launcher.synthetic_launcher.SyntheticLauncher"
    regime: str = "luck"  # poolbench.analysis.simulate.REGIMES
    study: int = 0  # the simulated study (its test set and models)
    better: str = ""  # the swept value of the row that is better, e.g. "mean"
    effect: float = 0.0  # by how many points of accuracy


ConfigStore.instance().store(
    group="hydra/launcher", name="synthetic", node=SyntheticLauncherConf, provider="poolbench-tests"
)


class SyntheticLauncher(Launcher):
    def __init__(self, regime: str = "luck", study: int = 0, better: str = "", effect: float = 0.0):
        self.regime, self.study, self.better, self.effect = regime, study, better, effect
        self.config = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config = config

    def launch(self, job_overrides, initial_job_idx: int):
        from poolbench.analysis import simulate

        sweep_dir = Path(self.config.hydra.sweep.dir)
        for number, overrides in enumerate(job_overrides, start=initial_job_idx):
            found = dict(o.split("=", 1) for o in overrides)
            value = found["pooling"]
            row = zlib.crc32(value.encode()) % 100_000  # the same row in every round
            shift = self.effect * simulate.POINT if value == self.better else 0.0
            world = simulate.World(simulate.REGIMES[self.regime], self.study, {row: shift})
            simulate.write_job(
                sweep_dir / str(number), world, row, int(found["seed"]), {"pooling": value}, ",".join(overrides)
            )
        return []
