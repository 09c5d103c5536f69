"""Which hidden layers feed the pooler: the last (default), a mean or concatenation of the last k, or a
learned scalar mix of all of them (ELMo).

A layer selector maps the encoder's ``layer_states`` (the embeddings and every layer: a tuple of L+1 tensors
(B, T, H), what transformers calls ``hidden_states``) to one tensor (B, T, out_features) of token states for the
pooler (its ``hidden_states``). ``all_layers`` says whether it needs more
than the last layer (then the encoder is asked for all of them, and frozen runs do not cache token states).
"""

from __future__ import annotations

import torch
from torch import nn

from poolbench.settings import Settings, raise_problems


class LayerSelector(nn.Module):
    """What every ``layers=`` choice is: ``Selector(hidden_size, num_layers, ...)``, ``out_features``,
    ``all_layers``, ``forward(layer_states tuple) -> (B, T, out_features)``, and ``check`` of its settings. A
    selector that learns weights over the layers has ``layer_weights()`` (summing to one), says where they start
    (``start``) and what it computes while they are uniform (``uniform_equivalent``)."""

    all_layers = False
    has_layer_weights = False
    start: str | None = None
    uniform_equivalent: str | None = None
    out_features: int

    @classmethod
    def check(cls, settings: dict, facts: dict | None = None) -> list[str]:
        """What is wrong with these settings (``layers.<key>: ...``), given the encoder's ``facts``."""
        return []


class LastLayer(LayerSelector):
    """The final layer's token states, as every classification head uses."""

    all_layers = False

    def __init__(self, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.out_features = hidden_size

    def forward(self, layer_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return layer_states[-1]


class _LastK(LayerSelector):
    all_layers = True

    @classmethod
    def check(cls, settings: dict, facts: dict | None = None) -> list[str]:
        found = Settings(settings, "layers")
        k, num_layers = found.integer("k", optional=False), (facts or {}).get("layers")
        within = not (k and num_layers and k > num_layers)
        found.require(
            within, "k", f"{k} is more than the encoder's {num_layers} layers (choose 1 <= k <= {num_layers})"
        )
        return found.problems

    def __init__(self, hidden_size: int, num_layers: int, k: int = 4) -> None:
        raise_problems(self.check({"k": k}, {"layers": num_layers}))
        super().__init__()
        self.k = k


class LastLayersMean(_LastK):
    """Mean of the last ``k`` layers' token states."""

    def __init__(self, hidden_size: int, num_layers: int, k: int = 4) -> None:
        super().__init__(hidden_size, num_layers, k)
        self.out_features = hidden_size

    def forward(self, layer_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.stack(layer_states[-self.k :]).mean(dim=0)


class LastLayersConcat(_LastK):
    """The last ``k`` layers' token states concatenated, last layer first (k*H features; Devlin et al. 2019's
    best feature-based choice for NER)."""

    def __init__(self, hidden_size: int, num_layers: int, k: int = 4) -> None:
        super().__init__(hidden_size, num_layers, k)
        self.out_features = k * hidden_size

    def forward(self, layer_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.cat(layer_states[::-1][: self.k], dim=-1)


class ScalarMix(LayerSelector):
    """``gamma * sum_l softmax(s)_l h^(l)`` over the embeddings and every layer (Peters et al. 2018, ELMo).

    The scores ``s`` start equal (a plain average of all layers) and ``gamma`` at 1; both are learned.
    ``layer_weights()`` gives the softmax weights, which sum to one.
    """

    all_layers = True
    has_layer_weights = True
    start = "scores: equal (uniform layer weights), gamma 1"
    uniform_equivalent = "the average of all layers (times gamma)"

    def __init__(self, hidden_size: int, num_layers: int) -> None:
        super().__init__()
        self.out_features = hidden_size
        self.scores = nn.Parameter(torch.zeros(num_layers + 1))  # embeddings + each layer
        self.gamma = nn.Parameter(torch.ones(1))

    def layer_weights(self) -> torch.Tensor:
        return self.scores.float().softmax(dim=0)

    def forward(self, layer_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if len(layer_states) != self.scores.numel():
            raise ValueError(
                f"layers=scalar_mix was built for {self.scores.numel()} layers' states, got {len(layer_states)}"
            )
        w = self.layer_weights().to(layer_states[0].dtype)
        return self.gamma.to(w.dtype) * torch.einsum("l,lbth->bth", w, torch.stack(layer_states))
