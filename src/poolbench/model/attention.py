"""Learned attention poolers: one query, a multi-head latent query, and Lin et al.'s self-attentive hops.

Each has token weights (``Pooler.has_token_weights``): ``weights(hidden_states, attention_mask)`` says how much
each token counts, zero on padding, summing to one over a row's tokens; (B, T) for one query, (B, heads or hops,
T) otherwise. ``poolbench explain`` prints it.
"""

from __future__ import annotations

import torch
from torch import nn

from poolbench.model.poolers import Pooler
from poolbench.settings import Settings, raise_problems


def masked_softmax(scores: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis (tokens) in fp32, padding masked out; an all-padding row gets zeros, not NaN.

    ``scores`` is (B, ..., T); ``attention_mask`` (B, T).
    """
    pad = ~attention_mask.bool()
    pad = pad.view(pad.size(0), *([1] * (scores.dim() - 2)), pad.size(1))  # broadcast over heads / hops
    return scores.float().masked_fill(pad, float("-inf")).softmax(dim=-1).nan_to_num(0.0)


class AttentionPooling(Pooler):
    """A learned query scores each token; softmax over the real tokens; weighted sum of their states.

    ``score_t = s * q . h_t`` with ``s = 1/sqrt(H)`` by default (scaled dot product). The query starts at zero, so
    the pooler starts as mean pooling and learns where to look from there.

    Args:
        hidden_size: the encoder's hidden size H (= ``out_features``).
        scale: ``s``; None: ``1/sqrt(H)``. Under Adam, which moves each coordinate of ``q`` by about the learning rate
            a step whatever the gradient's size, ``s`` sets how fast the scores can move: a larger ``s`` lets a
            zero-started query leave mean pooling sooner (experiments/head_lr_pilot).
    """

    has_token_weights = True
    start = "query: zero (uniform token weights)"
    uniform_equivalent = "mean pooling"

    @classmethod
    def check(cls, settings: dict, facts: dict | None = None) -> list[str]:
        found = Settings(settings, "pooling")
        found.number("scale", lambda v: v > 0, "a number > 0 (null: 1/sqrt(hidden size))", optional=True)
        return found.problems

    def __init__(self, hidden_size: int, scale: float | None = None) -> None:
        raise_problems(self.check({"scale": scale}))
        super().__init__()
        self.out_features = hidden_size
        self.query = nn.Parameter(torch.zeros(hidden_size))
        self.scale = hidden_size**-0.5 if scale is None else float(scale)

    def weights(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Attention weight of each token, (B, T); zero on padding, rows sum to one."""
        scores = (hidden_states @ self.query.to(hidden_states.dtype)) * self.scale  # (B, T)
        return masked_softmax(scores, attention_mask)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        w = self.weights(hidden_states, attention_mask).to(hidden_states.dtype)  # (B, T)
        return torch.einsum("bt,bth->bh", w, hidden_states)


class MultiHeadAttentionPooling(Pooler):
    """Multi-head attention from one learned latent query to the tokens, then an output projection
    (the attention part of timm's ``AttentionPoolLatent``; Set Transformer's pooling by attention).

    Each head ``n`` attends with ``q_n = (W_q z)_n`` to keys ``(W_k h_t)_n`` and averages values ``(W_v h_t)_n``;
    the heads' outputs are concatenated and projected: ``W_o [o_1; ...; o_heads]``.

    Args:
        hidden_size: the encoder's hidden size H (= ``out_features``).
        num_heads: attention heads; must divide H.
        init_std: standard deviation of the latent query's initialisation.
    """

    has_token_weights = True
    start = "latent query and projections: random"
    uniform_equivalent = "a linear map of mean pooling"

    @classmethod
    def check(cls, settings: dict, facts: dict | None = None) -> list[str]:
        found = Settings(settings, "pooling")
        heads, hidden = found.integer("num_heads", optional=False), (facts or {}).get("hidden")
        divides = not (heads and hidden and hidden % heads)
        found.require(divides, "num_heads", f"{heads} does not divide the encoder's hidden size {hidden}")
        return found.problems

    def __init__(self, hidden_size: int, num_heads: int = 4, init_std: float = 0.02) -> None:
        raise_problems(self.check({"num_heads": num_heads}, {"hidden": hidden_size}))
        super().__init__()
        self.out_features = hidden_size
        self.num_heads, self.head_dim = num_heads, hidden_size // num_heads
        self.latent = nn.Parameter(torch.randn(hidden_size) * init_std)
        self.q = nn.Linear(hidden_size, hidden_size)
        self.kv = nn.Linear(hidden_size, 2 * hidden_size)
        self.proj = nn.Linear(hidden_size, hidden_size)

    def _attend(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor):
        b, t, _ = hidden_states.shape
        k, v = self.kv(hidden_states).view(b, t, 2, self.num_heads, self.head_dim).unbind(2)  # (B, T, n, d) each
        q = self.q(self.latent.to(hidden_states.dtype)).view(self.num_heads, self.head_dim)  # (n, d)
        scores = torch.einsum("btnd,nd->bnt", k, q) * self.head_dim**-0.5  # (B, n, T)
        return masked_softmax(scores, attention_mask), v

    def weights(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Each head's weight on each token, (B, heads, T)."""
        return self._attend(hidden_states, attention_mask)[0]

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        w, v = self._attend(hidden_states, attention_mask)
        heads = torch.einsum("bnt,btnd->bnd", w.to(v.dtype), v)  # (B, n, d)
        return self.proj(heads.reshape(heads.size(0), -1))  # (B, H)


class SelfAttentivePooling(Pooler):
    """Lin et al. (2017), "A structured self-attentive sentence embedding": ``r`` hops of attention,
    ``A = softmax_t(W_s2 tanh(W_s1 h_t))`` (r, T) per sequence, embedding ``M = A H`` flattened to r*H.

    Its penalty ``P = ||A A^T - I||_F^2`` (mean over the batch) pushes the hops to look at different tokens:
    ``pool`` returns ``penalty_weight * P`` of the batch with the embedding, and the model adds it to the training
    loss and logs it as ``train/penalty``. Padding gets zero weight, so it changes
    neither the embedding nor the penalty.

    Args:
        hidden_size: the encoder's hidden size H.
        hops: r, the number of attention hops (``out_features = r * H``).
        attention_dim: d_a, the width of the scoring layer.
        penalty_weight: the penalty's coefficient in the loss (0 switches it off).
    """

    has_token_weights = True
    start = "scoring layers: random"
    uniform_equivalent = "mean pooling, once per hop"

    @classmethod
    def check(cls, settings: dict, facts: dict | None = None) -> list[str]:
        found = Settings(settings, "pooling")
        found.integer("hops", optional=False)
        found.integer("attention_dim", optional=False)
        found.number("penalty_weight", lambda v: v >= 0, "a number >= 0")
        return found.problems

    def __init__(self, hidden_size: int, hops: int = 4, attention_dim: int = 128, penalty_weight: float = 1.0) -> None:
        raise_problems(self.check({"hops": hops, "attention_dim": attention_dim, "penalty_weight": penalty_weight}))
        super().__init__()
        self.out_features = hops * hidden_size
        self.hops, self.penalty_weight = hops, penalty_weight
        self.ws1 = nn.Linear(hidden_size, attention_dim, bias=False)
        self.ws2 = nn.Linear(attention_dim, hops, bias=False)

    def weights(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Each hop's weight on each token, (B, hops, T)."""
        scores = self.ws2(torch.tanh(self.ws1(hidden_states))).transpose(1, 2)  # (B, r, T)
        return masked_softmax(scores, attention_mask)

    def pool(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a = self.weights(hidden_states, attention_mask)  # (B, r, T), fp32
        m = torch.einsum("brt,bth->brh", a.to(hidden_states.dtype), hidden_states)  # (B, r, H)
        penalty = self.penalty_weight * penalization(a) if self.penalty_weight else None
        return m.flatten(1), penalty  # (B, r*H)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.pool(hidden_states, attention_mask)[0]


def penalization(a: torch.Tensor) -> torch.Tensor:
    """``||A A^T - I||_F^2`` for each (r, T) matrix of a batch (B, r, T), averaged over the batch."""
    eye = torch.eye(a.size(1), device=a.device, dtype=a.dtype)
    return (a @ a.transpose(1, 2) - eye).pow(2).sum(dim=(1, 2)).mean()
