"""Poolers: turn an encoder's token states into one vector per sequence.

Every pooler is an ``nn.Module`` with the same interface::

    pooled = pooler(hidden_states, attention_mask)   # (B, T, H), (B, T) -> (B, out_features)

They ignore padding exactly, whatever the padding side, and never modify their inputs.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)


def first_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the first real token of each row, so that left padding is handled too.

    ``argmax`` returns the first maximal index (documented), i.e. the first position whose mask is 1.
    """
    return attention_mask.to(torch.int32).argmax(dim=1)  # (B,)


def first_token(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(hidden_states.size(0), device=hidden_states.device)
    return hidden_states[rows, first_token_index(attention_mask)]  # (B, H)


class ClsPooling(nn.Module):
    """The first real token's final state ([CLS] for BERT, ``<s>`` for RoBERTa), with no parameters."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.out_features = hidden_size

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return first_token(hidden_states, attention_mask)


class DenseTanhPooling(nn.Module):
    """``tanh(W h_first + b)``: exactly ``transformers``' ``BertPooler``.

    Starts from a fresh dense layer; ``load_encoder_pooler`` copies a checkpoint's own pooler weights
    (BERT checkpoints have them) so that the pipeline reproduces ``BertForSequenceClassification``.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.out_features = hidden_size
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.activation = nn.Tanh()
        self.source = "fresh"  # where the dense weights came from; reported in the run log and results

    def load_encoder_pooler(self, encoder_pooler: nn.Module | None, encoder_name: str = "encoder") -> None:
        """Copy the checkpoint's pooler weights when there are any; log which start was taken."""
        dense = getattr(encoder_pooler, "dense", None)
        if not isinstance(dense, nn.Linear) or dense.weight.shape != self.dense.weight.shape:
            log.info("pooling=pooler: %s has no pooler weights; starting from a fresh dense layer", encoder_name)
            return
        self.dense.load_state_dict(dense.state_dict())
        self.source = "checkpoint"
        log.info("pooling=pooler: reusing the pooler weights of %s", encoder_name)
        if torch.count_nonzero(dense.bias) == 0:
            self.source = "checkpoint (untrained: bias all zero)"
            log.warning(
                "pooling=pooler: the pooler of %s looks untrained (its bias is all zero); "
                "it is trained from there like a fresh layer",
                encoder_name,
            )

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(first_token(hidden_states, attention_mask)))


class MeanPooling(nn.Module):
    """Mean of the real tokens' states."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.out_features = hidden_size

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)  # (B, T, 1)
        summed = (hidden_states * mask).sum(dim=1)  # (B, H)
        count = mask.sum(dim=1).clamp(min=1)  # (B, 1); clamped so an empty row gives 0, not NaN
        return summed / count


class MaxPooling(nn.Module):
    """Element-wise maximum over the real tokens' states."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.out_features = hidden_size

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pad = ~attention_mask.bool().unsqueeze(-1)  # (B, T, 1)
        # the dtype's lowest finite value rather than -inf: an all-padding row stays finite
        lowest = torch.finfo(hidden_states.dtype).min
        return hidden_states.masked_fill(pad, lowest).amax(dim=1)


class AttentionPooling(nn.Module):
    """A learned query scores each token; softmax over the real tokens; weighted sum of their states.

    ``score_t = q . h_t / sqrt(H)``. The query starts at zero, so the pooler starts as mean pooling and
    learns where to look from there.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.out_features = hidden_size
        self.query = nn.Parameter(torch.zeros(hidden_size))
        self.scale = hidden_size**-0.5

    def weights(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Attention weight of each token, (B, T); zero on padding, rows sum to one."""
        scores = (hidden_states @ self.query.to(hidden_states.dtype)) * self.scale  # (B, T)
        scores = scores.float().masked_fill(~attention_mask.bool(), float("-inf"))
        return scores.softmax(dim=-1).nan_to_num(0.0)  # an all-padding row gets zero weights, not NaN

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        w = self.weights(hidden_states, attention_mask).to(hidden_states.dtype)  # (B, T)
        return torch.einsum("bt,bth->bh", w, hidden_states)


POOLINGS: dict[str, type[nn.Module]] = {
    "cls": ClsPooling,
    "pooler": DenseTanhPooling,
    "mean": MeanPooling,
    "max": MaxPooling,
    "attention": AttentionPooling,
}


def build_pooling(name: str, hidden_size: int) -> nn.Module:
    """Build a pooler by its config name (``conf/pooling/<name>.yaml`` uses the class directly)."""
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}; available: {', '.join(sorted(POOLINGS))}")
    return POOLINGS[name](hidden_size)
