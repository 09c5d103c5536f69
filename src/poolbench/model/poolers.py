"""Poolers: turn an encoder's token states into one vector per sequence.

Every pooler is a ``Pooler`` (the contract below)::

    pooled = pooler(hidden_states, attention_mask)   # (B, T, H), (B, T) -> (B, out_features)

They ignore padding exactly, whatever the padding side, and never modify their inputs. This module has the
contract and the fixed-position and averaging poolers; the learned attention poolers are in
``poolbench.model.attention``.
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


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row (right or left padding)."""
    last_from_end = attention_mask.to(torch.int32).flip(1).argmax(dim=1)  # first 1 seen from the end
    return attention_mask.size(1) - 1 - last_from_end  # (B,)


def masked_mean(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)  # (B, T, 1)
    summed = (hidden_states * mask).sum(dim=1)  # (B, H)
    count = mask.sum(dim=1).clamp(min=1)  # (B, 1); clamped so an empty row gives 0, not NaN
    return summed / count


class Pooler(nn.Module):
    """What every pooling (``conf/pooling/*.yaml``) is, and what the classifier and ``poolbench explain`` rely on.

    - ``Pooler(hidden_size=H, ...)``; ``out_features``: the width of its output (the classifier's input);
    - ``forward(hidden_states (B, T, H), attention_mask (B, T)) -> (B, out_features)``;
    - ``pool(...) -> (pooled, auxiliary_loss or None)``: what training calls; a pooler with a loss of its own
      (``self_attentive``'s penalty) returns it here, computed from this very batch (no state kept between calls);
    - optional, declared by a class attribute and a method:
      ``has_token_weights`` / ``weights(hidden_states, attention_mask)``: each token's weight, (B, T) or
      (B, heads, T), shown by ``poolbench explain``;
      ``starts_from_encoder_pooler`` / ``load_encoder_pooler(module, encoder_name)``: starts from the
      checkpoint's own pooler module (``BertPooler``), when it has one;
    - a pooler with parameters says where they start (``start``) and, when it has token weights, what it computes
      while they are uniform (``uniform_equivalent``): ``poolbench.model.learned`` names what a pooler that stayed
      at its start computed in effect.
    """

    out_features: int
    has_token_weights = False
    starts_from_encoder_pooler = False
    start: str | None = None  # where the learned parameters start (None: no parameters)
    uniform_equivalent: str | None = None  # what it computes while its token weights are uniform

    @classmethod
    def check(cls, settings: dict, facts: dict | None = None) -> list[str]:
        """What is wrong with this pooler's settings (``pooling.<key>: ...``), given the encoder's ``facts``."""
        return []

    def pool(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self(hidden_states, attention_mask), None

    def weights(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no token weights")

    def load_encoder_pooler(self, encoder_pooler: nn.Module | None, encoder_name: str = "encoder") -> None:
        raise NotImplementedError(f"{type(self).__name__} does not start from the encoder's pooler")


class FixedPooling(Pooler):
    """Base of the poolers without parameters whose output has the encoder's width H."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.out_features = hidden_size


class ClsPooling(FixedPooling):
    """The first real token's final state ([CLS] for BERT, ``<s>`` for RoBERTa), with no parameters."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return first_token(hidden_states, attention_mask)


class DenseTanhPooling(Pooler):
    """``tanh(W h_first + b)``: exactly ``transformers``' ``BertPooler``.

    Starts from a fresh dense layer; ``load_encoder_pooler`` copies a checkpoint's own pooler weights
    (BERT checkpoints have them) so that the pipeline reproduces ``BertForSequenceClassification``.
    """

    starts_from_encoder_pooler = True

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.out_features = hidden_size
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.activation = nn.Tanh()
        self.source = "fresh"  # where the dense weights came from; reported in the run log and results

    @property
    def start(self) -> str:
        return f"dense layer: {self.source}"

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


class MeanPooling(FixedPooling):
    """Mean of the real tokens' states."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return masked_mean(hidden_states, attention_mask)


class MeanSqrtLenPooling(FixedPooling):
    """Sum of the real tokens' states divided by the square root of their number (sentence-transformers'
    ``mean_sqrt_len_tokens``): longer texts get larger vectors, less than linearly."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)  # (B, T, 1)
        return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1).sqrt()


class WeightedMeanPooling(FixedPooling):
    """Position-weighted mean: the i-th real token (i = 1, 2, ...) weighs i, so later tokens count more
    (sentence-transformers' ``weightedmean``, SGPT). Positions count real tokens only, so left padding
    gives the same result as right padding."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.to(hidden_states.dtype)  # (B, T)
        weights = (mask.cumsum(dim=1) * mask).unsqueeze(-1)  # (B, T, 1): 1, 2, ..., L on real tokens, 0 on pads
        return (hidden_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


class LastTokenPooling(FixedPooling):
    """The last real token's state: what decoder models' sequence-classification heads read (GPT-2, Llama)."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(hidden_states.size(0), device=hidden_states.device)
        return hidden_states[rows, last_token_index(attention_mask)]  # (B, H)


class ClsMeanPooling(Pooler):
    """``[h_first ; mean]``: the first token's state and the mean of the real tokens, concatenated (2H)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.out_features = 2 * hidden_size

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([first_token(hidden_states, attention_mask), masked_mean(hidden_states, attention_mask)], -1)


class RobertaHeadPooling(Pooler):
    """``tanh(W dropout(h_first) + b)``; with the classifier's own dropout and linear layer after it, the
    whole head is exactly ``transformers``' ``RobertaClassificationHead`` (dropout, dense, tanh, dropout,
    out_proj on ``<s>``). ``dropout`` should equal ``model.classifier_dropout`` (RoBERTa uses one value for both).
    """

    start = "dense layer: random"

    def __init__(self, hidden_size: int, dropout: float = 0.1, init_std: float = 0.02) -> None:
        super().__init__()
        self.out_features = hidden_size
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden_size, hidden_size)
        nn.init.normal_(self.dense.weight, std=init_std)  # as transformers initialises the head
        nn.init.zeros_(self.dense.bias)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(self.dropout(first_token(hidden_states, attention_mask))))


class MaxPooling(FixedPooling):
    """Element-wise maximum over the real tokens' states."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pad = ~attention_mask.bool().unsqueeze(-1)  # (B, T, 1)
        # the dtype's lowest finite value rather than -inf: an all-padding row stays finite
        lowest = torch.finfo(hidden_states.dtype).min
        return hidden_states.masked_fill(pad, lowest).amax(dim=1)
