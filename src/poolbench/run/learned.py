"""``LearnedParts``: the callback that measures, in every job, what the learned parts outside the encoder did
(``poolbench.model.learned``); the job writes its ``found`` into ``results.json`` as ``learned``."""

from __future__ import annotations

import lightning.pytorch as pl

from poolbench.model import learned


class LearnedParts(pl.Callback):
    """Takes the parts' start before training (kept in the resume point, so a resumed job measures from the real
    start), their learning rates when training starts, and, while the tested checkpoint runs on the test set, the
    pooler's token weights; at the end of the test, ``found`` (``learned.report``)."""

    def __init__(self) -> None:
        self.start: dict = {}
        self.lrs: dict = {}
        self.found: dict | None = None
        self._tokens: learned.TokenWeights | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and not self.start:  # before a resume point is restored (load_state_dict then replaces it)
            self.start = learned.snapshot(pl_module)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rates = {
            id(p): g.get("initial_lr", g["lr"]) for o in trainer.optimizers for g in o.param_groups for p in g["params"]
        }
        for name, part in learned.parts(pl_module).items():
            found = {rates[id(p)] for p in part.parameters() if id(p) in rates}
            if found:
                self.lrs[name] = max(found)

    def state_dict(self) -> dict:
        return {"start": self.start, "lrs": self.lrs}

    def load_state_dict(self, state_dict: dict) -> None:
        self.start = state_dict.get("start", self.start)
        self.lrs = state_dict.get("lrs", self.lrs)

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pooling, self._tokens = pl_module.pooling, None
        if pooling.has_token_weights:
            tokens = self._tokens = learned.TokenWeights()
            pl_module.observe_pooler_inputs = lambda states, mask: tokens.update(pooling.weights(states, mask), mask)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.observe_pooler_inputs = None
        if self._tokens is not None:
            self._tokens.gather()
        self.found = learned.report(pl_module, self.start, self.lrs, self._tokens)


def found_in(trainer: pl.Trainer) -> dict | None:
    """What the job's ``LearnedParts`` found (``None`` without one)."""
    return next((c.found for c in trainer.callbacks if isinstance(c, LearnedParts)), None)
