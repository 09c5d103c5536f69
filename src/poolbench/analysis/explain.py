"""A look inside a trained pooler: how much each token counts, and which layers a scalar mix uses.

    poolbench explain outputs/2026-11-25/12-00-00-abc123 "the film was not bad at all"   # a run folder
    poolbench explain path/to/checkpoints/best-epoch1.ckpt "some text" --png weights.png  # or a checkpoint

Works for the attention-type poolers (``attention``, ``mha``, ``self_attentive``: their ``weights()``) and for
``layers=scalar_mix`` (its ``layer_weights()``). Every run records the same for a few test examples
(``record_examples``, called by ``poolbench.run.job``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf


@dataclass
class Explanation:
    text: str
    tokens: list[str]
    weights: list[float]  # one per token, summing to one (the mean over heads / hops)
    per_head: list[list[float]] | None  # (heads or hops, tokens) when the pooler has several
    prediction: str
    probabilities: dict[str, float]

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def has_token_weights(model) -> bool:
    return model.pooling.has_token_weights


def layer_weights(model) -> list[float] | None:
    """The learned softmax weight of each hidden layer (embeddings first) for ``layers=scalar_mix``."""
    return model.layers.layer_weights().detach().cpu().tolist() if model.layers.has_layer_weights else None


@torch.no_grad()
def explain(model, tokenizer, texts: list[str], max_length: int = 128) -> list[Explanation]:
    """Token weights and predictions for ``texts`` (the model is put in eval mode)."""
    if not has_token_weights(model):
        raise ValueError(f"{type(model.pooling).__name__} has no token weights to show: {NO_WEIGHTS}")
    model.eval()
    out = []
    for text in texts:  # one at a time: no padding to explain away
        enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt").to(model.device)
        kwargs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
        states = model.token_states(**kwargs)
        w = model.pooling.weights(states, enc["attention_mask"])[0].float()  # (T,) or (heads, T)
        per_head = w.tolist() if w.dim() == 2 else None
        mean = w.mean(dim=0) if w.dim() == 2 else w
        probs = model(**kwargs)[0].float().softmax(-1)
        names = model.label_names
        out.append(
            Explanation(
                text,
                tokenizer.convert_ids_to_tokens(enc["input_ids"][0]),
                mean.tolist(),
                per_head,
                names[int(probs.argmax())],
                {n: float(p) for n, p in zip(names, probs, strict=True)},
            )
        )
    return out


NO_WEIGHTS = "explain works for pooling=attention, mha and self_attentive, and for layers=scalar_mix"


def format_explanation(e: Explanation, width: int = 30) -> str:
    lines = [f"text: {e.text}", f"prediction: {e.prediction} ({e.probabilities[e.prediction]:.2f})"]
    heads = f"  per head/hop: {len(e.per_head)}" if e.per_head else ""
    lines.append(f"{'token':<16} {'weight':>7}{heads}")
    top = max(e.weights) or 1.0
    for i, (tok, w) in enumerate(zip(e.tokens, e.weights, strict=True)):
        extra = "  " + " ".join(f"{h[i]:.3f}" for h in e.per_head) if e.per_head else ""
        lines.append(f"{tok:<16} {w:7.4f} {'#' * round(width * w / top):<{width}}{extra}")
    lines.append(f"{'(sum)':<16} {sum(e.weights):7.4f}")
    return "\n".join(lines)


def format_layer_weights(weights: list[float]) -> str:
    names = ["embeddings"] + [f"layer {i}" for i in range(1, len(weights))]
    return "\n".join(
        ["layer weights (scalar_mix, softmax):"] + [f"  {n:<11} {w:.4f}" for n, w in zip(names, weights, strict=True)]
    )


def plot_token_weights(e: Explanation, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = e.per_head or [e.weights]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(e.tokens)), 1.2 + 0.4 * len(rows)))
    im = ax.imshow(rows, aspect="auto", cmap="viridis", vmin=0)
    ax.set_xticks(range(len(e.tokens)), e.tokens, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [f"head/hop {i}" for i in range(len(rows))] if e.per_head else ["weight"])
    ax.set_title(f"token weights -> {e.prediction}", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.02)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_layer_weights(weights: list[float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 2.6))
    ax.bar(["emb"] + [str(i) for i in range(1, len(weights))], weights)
    ax.axhline(1 / len(weights), color="grey", lw=0.8, ls="--", label="uniform (start)")
    ax.set_xlabel("hidden layer")
    ax.set_ylabel("softmax weight")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def record_examples(model, tokenizer, texts: list[str], max_length: int, folder: Path) -> tuple | None:
    """At the end of a run: token weights of a few test texts and the layer weights, into ``explanations.json``
    and ``explain/*.png`` in the run folder. Returns ``(explanations, pngs, layer_weights)`` for the run's
    tracker, or ``None`` when the model has nothing to show."""
    from poolbench import record

    layers = layer_weights(model)
    if not has_token_weights(model) and layers is None:
        return None
    explanations = explain(model, tokenizer, texts, max_length) if has_token_weights(model) else []
    pngs = [plot_token_weights(e, folder / "explain" / f"test-{i}.png") for i, e in enumerate(explanations)]
    if layers is not None:
        pngs.append(plot_layer_weights(layers, folder / "explain" / "layers.png"))
    found = {"explanations": [e.to_dict() for e in explanations], "layer_weights": layers}
    record.atomic_write_json(folder / "explanations.json", found)
    return explanations, pngs, layers


def load_trained(path: str | Path):
    """(model, tokenizer, results) from a run folder (its best checkpoint) or a checkpoint inside one."""
    from hydra.utils import instantiate

    from poolbench.model.build import build_model

    path = Path(path)
    if path.is_dir():
        run_dir = path
        results = _results(run_dir)
        ckpt = results.best_checkpoint or next(iter(sorted((run_dir / "checkpoints").glob("*.ckpt"))), None)
        if not ckpt:
            raise FileNotFoundError(f"{run_dir}: no checkpoint (checkpoints/*.ckpt) to explain")
        ckpt = Path(ckpt)
        if not ckpt.is_file():  # a run folder moved or copied elsewhere
            ckpt = run_dir / "checkpoints" / ckpt.name
    elif path.is_file():
        ckpt, run_dir = path, path.parent.parent  # <run>/checkpoints/<name>.ckpt
        results = _results(run_dir)
    else:
        raise FileNotFoundError(f"no such run folder or checkpoint: {path}")
    cfg = OmegaConf.create(results.config)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    hparams = state.get("hyper_parameters", {})
    tokenizer = instantiate(cfg.encoder.tokenizer)
    num_labels = hparams.get("num_labels") or len(results.label_names)
    model = build_model(cfg, num_labels, hparams.get("label_names"))
    missing, unexpected = model.load_state_dict(state["state_dict"], strict=False)
    # a frozen run's checkpoint holds the head only: the encoder is the pretrained one its config names
    missing = [k for k in missing if not (cfg.encoder.freeze and k.startswith("encoder."))]
    if missing or unexpected:
        raise ValueError(f"{ckpt} does not fit the run's config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.eval(), tokenizer, results


def _results(run_dir: Path):
    from poolbench.record import RunRecord

    if not (run_dir / "results.json").is_file():
        raise FileNotFoundError(f"{run_dir}: no results.json (is this a poolbench run folder?)")
    return RunRecord.load(run_dir)


def explain_to_files(path: str | Path, texts: list[str], png: Path) -> tuple:
    """``poolbench explain``: a trained run's token weights for ``texts`` and its layer weights, plotted next to
    ``png``. Returns ``(explanations, layer_weights, written PNGs)``; raises ``ValueError`` when the run's
    pooler and layers have no learned weights to show."""
    model, tokenizer, results = load_trained(path)
    layers = layer_weights(model)
    if not has_token_weights(model) and layers is None:
        raise ValueError(f"pooling={results.choices.get('pooling')} has no learned weights to show; {NO_WEIGHTS}")
    max_length = results.config["data"]["max_length"]
    explanations = explain(model, tokenizer, texts, max_length) if has_token_weights(model) else []
    written = []
    for i, e in enumerate(explanations):
        target = png if len(explanations) == 1 else png.with_stem(f"{png.stem}-{i}")
        written.append(plot_token_weights(e, target))
    if layers is not None:
        written.append(plot_layer_weights(layers, png.with_stem(f"{png.stem}-layers")))
    return explanations, layers, written
