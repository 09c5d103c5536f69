"""What the learned parts outside the encoder did in a job: where each started, the learning rate of its parameter
group, how far it moved, and for token or layer weights how far they are from uniform. A part that stayed at its
start computed what its start computes (an attention pooler whose weights stayed uniform computed mean pooling):
the record, the W&B summary and the table say so (README "Trained to what it can do").

The measures:

- **moved**: ``||theta - theta_0|| / ||theta_0||`` over the part's parameters (``||theta||`` when they start at 0:
  ``from_zero``), by the checkpoint the test ran on;
- **token weights** on the test set, per example with ``L >= 2`` real tokens (averaged over heads or hops):
  ``kl_to_uniform = sum_t w_t log(L w_t)`` (nats; 0 for uniform) and ``top_x_tokens = L max_t w_t`` (1 for uniform;
  ``L`` when one token takes everything);
- **layer weights** (``layers=scalar_mix``): the same two of its softmax weights over the ``n`` layers.

A part **stayed at its start** when its weights' ``top_x_tokens`` is within ``STAYED`` (2%) of 1 (token or layer
weights), or, for parts without such weights, when it moved less than ``STAYED`` of its start.
"""

from __future__ import annotations

import math

import torch
from torch import nn

STAYED = 0.02  # within 2% of the start (or of uniform weights): the part stayed there


def parts(model) -> dict[str, nn.Module]:
    """The learned parts outside the encoder that have parameters: ``layers``, ``pooling``, ``classifier``."""
    found = {"layers": model.layers, "pooling": model.pooling, "classifier": model.classifier}
    return {name: m for name, m in found.items() if any(True for _ in m.parameters())}


def snapshot(model) -> dict[str, dict[str, torch.Tensor]]:
    """Each part's parameters now (the start), on the CPU."""
    return {
        name: {k: p.detach().float().cpu().clone() for k, p in part.named_parameters()}
        for name, part in parts(model).items()
    }


def movement(start: dict[str, torch.Tensor], part: nn.Module) -> tuple[float, bool]:
    """(how far ``part`` moved from ``start``, whether it started at zero): relative to the start's norm, or the
    absolute norm of the change when the start is zero."""
    now = dict(part.named_parameters())
    change = math.sqrt(sum(float((now[k].detach().float().cpu() - v).pow(2).sum()) for k, v in start.items()))
    base = math.sqrt(sum(float(v.pow(2).sum()) for v in start.values()))
    return (change / base, False) if base > 0 else (change, True)


def weight_spread(weights: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of ``weights`` (..., n) summing to one over its ``counts`` real entries: (KL to uniform in nats,
    ``count * max weight``)."""
    w = weights.float()
    entropy = -(w * w.clamp_min(1e-30).log()).sum(-1)
    log_n = counts.float().log()
    return log_n - entropy, counts.float() * w.amax(-1)


class TokenWeights:
    """Accumulates a pooler's token weights over the test set (``update`` per batch)."""

    def __init__(self) -> None:
        self.kl = self.top = 0.0
        self.examples = 0

    def update(self, weights: torch.Tensor, attention_mask: torch.Tensor) -> None:
        """``weights`` (B, T) or (B, heads, T), zero on padding; ``attention_mask`` (B, T)."""
        w = weights.detach() if weights.dim() == 3 else weights.detach().unsqueeze(1)  # (B, heads, T)
        counts = attention_mask.sum(-1)  # (B,)
        keep = counts >= 2  # one token: uniform by necessity
        kl, top = weight_spread(w, counts[:, None].expand(w.shape[:2]))  # (B, heads)
        self.kl += float(kl.mean(-1)[keep].sum())
        self.top += float(top.mean(-1)[keep].sum())
        self.examples += int(keep.sum())

    def gather(self) -> None:
        """Under DDP, the sums over every rank's share of the test set (collective: every rank calls it)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            sums = torch.tensor([self.kl, self.top, float(self.examples)], dtype=torch.float64)
            dist.all_reduce(sums)
            self.kl, self.top, self.examples = float(sums[0]), float(sums[1]), int(sums[2])

    def result(self) -> dict | None:
        if not self.examples:
            return None
        return {
            "kl_to_uniform": self.kl / self.examples,
            "top_x_tokens": self.top / self.examples,
            "examples": self.examples,
        }


def layer_spread(selector) -> dict | None:
    """How far ``layers=scalar_mix``'s weights are from uniform (``None`` for selectors without weights)."""
    if not selector.has_layer_weights:
        return None
    w = selector.layer_weights().detach().float()
    kl, top = weight_spread(w, torch.tensor(w.numel()))
    return {"kl_to_uniform": float(kl), "top_x_layers": float(top), "layers": w.numel()}


def report(model, start: dict, lrs: dict, tokens: TokenWeights | None) -> dict:
    """Per learned part: its start, its learning rate, how far it moved, its weights' spread, whether it stayed at
    its start and, when it did, what it computed in effect (``note``)."""
    found = {}
    for name, part in parts(model).items():
        entry: dict = {"start": getattr(part, "start", None) or "random", "lr": lrs.get(name)}
        if name in start:
            entry["moved"], entry["from_zero"] = movement(start[name], part)
        weights = None
        if name == "pooling" and tokens is not None:
            weights = entry["token_weights"] = tokens.result()
        if name == "layers":
            weights = entry["layer_weights"] = layer_spread(part)
        entry["stayed"], entry["note"] = _stayed(name, part, entry, weights)
        found[name] = entry
    return found


def _stayed(name: str, part: nn.Module, entry: dict, weights: dict | None) -> tuple[bool | None, str | None]:
    if weights is not None:
        top = weights.get("top_x_tokens", weights.get("top_x_layers"))
        if top > 1 + STAYED:
            return False, None
        what = "token weights" if "top_x_tokens" in weights else "layer weights"
        where = " on the test set" if "top_x_tokens" in weights else ""
        unit = "tokens" if "top_x_tokens" in weights else "layers"
        return True, (
            f"{what} within {STAYED:.0%} of uniform{where} (top weight x {unit} {top:.3f}; 1 = uniform): it computed "
            f"{part.uniform_equivalent}"
        )
    if "moved" not in entry or entry["from_zero"] or name == "classifier":
        return None, None
    if entry["moved"] >= STAYED:
        return False, None
    return True, f"moved {entry['moved']:.2%} from its start ({entry['start']}): it computed what its start computes"
