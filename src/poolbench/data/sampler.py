"""The training order: replayable from (seed, epoch), length-grouped, and dealt out to DDP ranks."""

from __future__ import annotations

from collections.abc import Callable

from torch.utils.data import DataLoader, Sampler


class EpochSeededSampler(Sampler):
    """Training order drawn from ``(seed, epoch)`` alone (Lightning calls ``set_epoch`` every epoch).

    Length-grouped (``transformers``' ``get_length_grouped_indices``: shuffled megabatches, each sorted by
    length) or a plain shuffle. Not drawing from the global RNG makes the order replayable: a run resumed
    mid-epoch skips the batches its checkpoint had already trained and sees exactly the rest.

    Distributed (``num_replicas`` > 1): the epoch's batches are dealt out to the ranks in turn (rank r gets
    batches r, r + W, ...), the same number to each (a remainder of fewer than W batches is dropped), so that
    every rank takes the same number of steps and length grouping is kept.
    """

    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        seed: int,
        group_by_length: bool = True,
        batches_done: Callable[[], int] | None = None,
        rank: int = 0,
        num_replicas: int = 1,
    ) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside [0, {num_replicas})")
        self.rank, self.num_replicas = rank, num_replicas
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.group_by_length = group_by_length
        self.batches_done = batches_done  # batches of this epoch already trained (a resumed run) at iter time
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _my_batches(self) -> list[int]:
        """Positions (in the epoch's order) of this rank's batches."""
        n_batches = -(-len(self.lengths) // self.batch_size)
        per_rank = n_batches // self.num_replicas if self.num_replicas > 1 else n_batches
        return list(range(self.rank, n_batches, self.num_replicas))[:per_rank]

    def __len__(self) -> int:
        if self.num_replicas == 1:
            return len(self.lengths)
        n = len(self.lengths)
        return sum(min(self.batch_size, n - b * self.batch_size) for b in self._my_batches())

    def __iter__(self):
        import torch
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.group_by_length:
            order = get_length_grouped_indices(self.lengths, self.batch_size, generator=generator)
        else:
            order = torch.randperm(len(self.lengths), generator=generator).tolist()
        if self.num_replicas > 1:
            bs = self.batch_size
            order = [i for b in self._my_batches() for i in order[b * bs : (b + 1) * bs]]
        skip = self.batches_done() * self.batch_size if self.batches_done else 0
        return iter(order[skip:])


class ResumableLoader(DataLoader):
    """The training loader, resumable mid-epoch in Lightning's sense (it has ``state_dict``/``load_state_dict``).

    Its position needs no state of its own: the order comes from ``(seed, epoch)`` and the batches already
    trained from Lightning's restored progress (``EpochSeededSampler.batches_done``). The state names the seed,
    so that a checkpoint is never continued with another order. Without these methods Lightning warns, on every
    resume from a mid-epoch checkpoint, that the results may be unreliable, which is not so here.
    """

    def state_dict(self) -> dict:
        return {"order": type(self.sampler).__name__, "seed": getattr(self.sampler, "seed", None)}

    def load_state_dict(self, state: dict) -> None:
        seed = getattr(self.sampler, "seed", None)
        if state.get("seed") != seed:
            raise ValueError(
                f"this checkpoint was trained with seed={state.get('seed')}, this run has seed={seed}: "
                "resume it with its own seed, or start a new run folder"
            )
