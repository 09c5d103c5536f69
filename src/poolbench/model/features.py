"""Frozen-encoder sweeps: compute the encoder's token states once per data split, reuse them in every job.

A frozen encoder in eval mode is a fixed function, so its final token states for a split can be computed
once and shared by every pooler and seed of a linear-probe sweep (and by later sweeps). They are stored
in ``cache_dir/features/<key>/`` as one fp32 array of all tokens' states plus per-example offsets
(memory-mapped when read); the key covers the encoder's weights, the tokenised split and the precision.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from poolbench import cache

log = logging.getLogger(__name__)


_FINGERPRINTS: dict[tuple, str] = {}  # (id, weights' version) -> fingerprint, for the jobs of one process


def encoder_fingerprint(encoder: nn.Module) -> str:
    """A hash of the encoder's class, config and weights: different weights never share a cache.

    The jobs of one sweep process hash each encoder object once (its weights do not change while it is frozen).
    """
    key = (id(encoder), *(t._version for t in encoder.state_dict().values()))
    if key not in _FINGERPRINTS:
        _FINGERPRINTS.clear()  # one encoder at a time: a new job's encoder replaces the last one's
        _FINGERPRINTS[key] = _hash_encoder(encoder)
    return _FINGERPRINTS[key]


def _hash_encoder(encoder: nn.Module) -> str:
    h = hashlib.sha256(type(encoder).__name__.encode())
    config = getattr(encoder, "config", None)
    if config is not None:
        h.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class TokenStates(Dataset):
    """Cached token states of one split; item ``i`` is ``{"hidden_states": (T_i, H), "labels", "idx"}``."""

    def __init__(self, folder: Path) -> None:
        self.states = np.load(folder / "states.npy", mmap_mode="r")  # (sum T_i, H)
        self.offsets = np.load(folder / "offsets.npy")  # (N + 1,)
        self.labels = np.load(folder / "labels.npy")
        self.lengths = np.diff(self.offsets).tolist()

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def collate(items: list[dict]) -> dict:
        return collate_states(items)

    def __getitem__(self, i: int) -> dict:
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return {
            "hidden_states": torch.from_numpy(np.array(self.states[lo:hi])),
            "labels": int(self.labels[i]),
            "idx": i,
        }


def collate_states(items: list[dict]) -> dict[str, torch.Tensor]:
    """Pad token states to the batch's longest (right padding) and build the attention mask."""
    states = [x["hidden_states"] for x in items]
    lengths = torch.tensor([len(x) for x in states])
    hidden = torch.nn.utils.rnn.pad_sequence(states, batch_first=True)  # (B, T, H)
    mask = (torch.arange(hidden.shape[1]) < lengths[:, None]).long()  # (B, T)
    return {
        "hidden_states": hidden,
        "attention_mask": mask,
        "labels": torch.tensor([x["labels"] for x in items]),
        "idx": torch.tensor([x["idx"] for x in items]),
    }


@torch.no_grad()
def compute_token_states(
    encoder: nn.Module, loader: DataLoader, folder: Path, num_examples: int, precision: str = "32-true"
) -> None:
    """Run the encoder (eval mode) over a split and write its real tokens' states, in ``idx`` order.

    ``precision`` is the run's Lightning precision: under ``bf16-mixed`` the encoder runs under bf16 autocast,
    exactly as it would inside the run, so that cached and uncached runs see the same states.
    """
    encoder.eval()
    device = next(encoder.parameters()).device.type
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=precision.startswith("bf16"))
    per_example: list[np.ndarray | None] = [None] * num_examples
    labels = np.zeros(num_examples, dtype=np.int64)
    for batch in loader:
        kwargs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        with autocast:
            hidden = encoder(**kwargs).last_hidden_state.float()  # (B, T, H)
        mask = batch["attention_mask"].bool()
        for row, (i, y) in enumerate(zip(batch["idx"].tolist(), batch["labels"].tolist(), strict=True)):
            per_example[i] = hidden[row][mask[row]].numpy()  # (T_i, H): real tokens only, in order
            labels[i] = y
    assert all(x is not None for x in per_example), "the loader did not cover the split"
    offsets = np.zeros(num_examples + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([x.shape[0] for x in per_example])
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "states.npy", np.concatenate(per_example).astype(np.float32))
    np.save(folder / "offsets.npy", offsets)
    np.save(folder / "labels.npy", labels)


_OPEN: dict[Path, TokenStates] = {}  # the token states a process has opened (read only: jobs can share them)


def _open(folder: Path, make, num_examples: int) -> TokenStates:
    """The token states in ``folder``, checked once per process (``poolbench.cache``), computed when missing."""
    if folder not in _OPEN:

        def load(found: Path) -> TokenStates:
            states = TokenStates(found)
            if len(states) != num_examples or int(states.offsets[-1]) != states.states.shape[0]:
                raise ValueError(f"{len(states)} examples and {states.states.shape[0]} token states do not fit")
            return states

        _OPEN[folder] = cache.open_entry(folder, make, load, "frozen-encoder token states")
    return _OPEN[folder]


def cached_token_states(
    encoder: nn.Module, datamodule, cache_dir: str | os.PathLike, precision: str = "32-true"
) -> dict[str, TokenStates]:
    """The token states of every split of ``datamodule`` under ``encoder`` at ``precision``, computed on first use."""
    root = Path(cache_dir).expanduser() / "features"
    fingerprint = encoder_fingerprint(encoder)
    states = {}
    for split in ("train", "val", "test"):
        key = hashlib.sha256(f"{fingerprint}:{datamodule.split_key(split)}:{precision}".encode()).hexdigest()[:24]
        folder = root / f"{split}-{key}"

        make = functools.partial(
            _compute_split, encoder=encoder, datamodule=datamodule, split=split, precision=precision
        )
        states[split] = _open(folder, make, len(datamodule.splits[split]))
    return states


def _compute_split(tmp: Path, encoder: nn.Module, datamodule, split: str, precision: str) -> None:
    log.info("computing frozen-encoder token states for the %s split (once; cached under %s)", split, tmp.parent)
    # iterating a DataLoader draws from torch's RNG: keep the run's random stream as if the cache had been there
    # already, so that cached and uncached runs train identically
    with torch.random.fork_rng(devices=[]):
        loader = datamodule.encoder_loader(split)
        compute_token_states(encoder, loader, tmp, len(datamodule.splits[split]), precision)
