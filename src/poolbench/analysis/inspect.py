"""Which token does a Hugging Face model's own sequence-classification head use?

    poolbench inspect bert-base-uncased            # a hub name (from the local cache when offline) or a folder

Reads the model's config (and, when they are on disk, its head weights): reports what
``AutoModelForSequenceClassification`` would pool for this architecture, whether the checkpoint's pooler /
head weights look trained, and the poolbench pooling that reproduces it (exactly, or the closest one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Head:
    reads: str  # which token state(s)
    head: str  # what the head does with it
    pooling: str  # the poolbench pooling that reproduces it
    exact: bool  # whether pooling + poolbench's dropout/linear classifier is the same computation
    note: str = ""


FIRST = "the first token ([CLS] / <s>)"
BERT = Head(
    FIRST,
    "dense + tanh (BertPooler), dropout, linear",
    "pooler",
    True,
    "pooling=pooler starts from the checkpoint's own pooler weights",
)
ROBERTA = Head(FIRST, "dropout, dense, tanh, dropout, linear (RobertaClassificationHead)", "roberta_head", True)
ELECTRA = Head(
    FIRST,
    "dropout, dense, GELU, dropout, linear (ElectraClassificationHead)",
    "roberta_head",
    False,
    "poolbench's roberta_head uses tanh where ELECTRA uses GELU",
)
DISTILBERT = Head(
    FIRST,
    "dense (pre_classifier), ReLU, dropout, linear",
    "pooler",
    False,
    "poolbench's pooler uses tanh where DistilBERT uses ReLU",
)
DEBERTA = Head(
    FIRST,
    "dropout, dense, activation (ContextPooler), dropout, linear",
    "pooler",
    False,
    "poolbench's pooler uses tanh; DeBERTa's pooler_hidden_act is GELU by default",
)
XLNET = Head(
    "the last token",
    "dense + tanh (SequenceSummary), dropout, linear",
    "last_token",
    False,
    "XLNet pads on the left and reads position -1; poolbench has no dense + tanh after it",
)
BART = Head(
    "the decoder's state at the last <eos> token",
    "dense, tanh, dropout, linear",
    "last_token",
    False,
    "an encoder-decoder: poolbench pools encoder states only",
)
LAST = Head(
    "the last non-padding token",
    "linear (`score`)",
    "last_token",
    True,
    "the model finds the last token through config.pad_token_id (without one, one text at a time); its "
    "`score` layer has no bias, poolbench's classifier has one",
)

BERT_TYPES = ("bert", "albert", "megatron-bert", "nezha")
ROBERTA_TYPES = (
    "roberta",
    "xlm-roberta",
    "xlm-roberta-xl",
    "camembert",
    "mpnet",
    "data2vec-text",
    "roberta-prelayernorm",
    "xmod",
)
DECODER_TYPES = (
    "gpt2",
    "gpt_neo",
    "gptj",
    "gpt_neox",
    "gpt_bigcode",
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "qwen3_moe",
    "gemma",
    "gemma2",
    "gemma3",
    "phi",
    "phi3",
    "opt",
    "bloom",
    "falcon",
    "starcoder2",
    "olmo",
    "olmo2",
    "stablelm",
    "mpt",
    "ctrl",
)
HEADS: dict[str, Head] = {
    **dict.fromkeys(BERT_TYPES, BERT),
    **dict.fromkeys(ROBERTA_TYPES, ROBERTA),
    **dict.fromkeys(DECODER_TYPES, LAST),
    **dict.fromkeys(("deberta", "deberta-v2"), DEBERTA),
    **dict.fromkeys(("bart", "mbart", "plbart"), BART),
    "electra": ELECTRA,
    "distilbert": DISTILBERT,
    "xlnet": XLNET,
}


@dataclass
class Report:
    model: str
    model_type: str
    architectures: list[str]
    head: Head | None
    weights: dict = field(default_factory=dict)  # head/pooler tensor -> description
    verdict: str = ""  # whether the head / pooler weights look trained

    def to_dict(self) -> dict:
        return {**asdict(self), "head": asdict(self.head) if self.head else None}


def head_for(config) -> Head | None:
    if config.model_type == "modernbert":  # configurable: config.classifier_pooling is "cls" or "mean"
        how = getattr(config, "classifier_pooling", "cls")
        reads = "the mean of the real tokens" if how == "mean" else FIRST
        return Head(
            reads,
            "dense, activation, LayerNorm (ModernBertPredictionHead), dropout, linear",
            "mean" if how == "mean" else "cls",
            False,
            f"config.classifier_pooling={how!r}; poolbench has no dense+act+norm head on top",
        )
    return HEADS.get(config.model_type)


HEAD_KEYS = ("pooler.", "classifier", "pre_classifier", "score.", "sequence_summary", "classification_head")


def head_weights(folder: Path) -> dict:
    """The checkpoint's pooler / classification-head tensors (name -> tensor), without loading the whole model."""
    import torch

    found = {}
    for file in sorted(folder.glob("*.safetensors")):
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as f:
            found.update({k: f.get_tensor(k) for k in f.keys() if any(h in k for h in HEAD_KEYS)})
    if not found:
        for file in sorted(folder.glob("pytorch_model*.bin")):
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
            found.update({k: v for k, v in state.items() if any(h in k for h in HEAD_KEYS)})
    return found


def judge(weights: dict, init_std: float) -> tuple[dict, str]:
    """Describe each tensor; an all-zero bias (how transformers initialises them) means never trained."""
    described, untrained = {}, []
    for name, t in weights.items():
        t = t.float()
        if name.endswith("bias"):
            zero = bool((t == 0).all())
            described[name] = f"{tuple(t.shape)}, " + ("all zero" if zero else f"mean |b| {t.abs().mean():.4f}")
            if zero:
                untrained.append(name)
        else:
            described[name] = f"{tuple(t.shape)}, std {t.std():.4f} (initialiser std {init_std})"
    if not weights:
        return described, "no pooler or head weights in this checkpoint: a new head is initialised when fine-tuning"
    if untrained:
        return described, f"looks UNTRAINED: {', '.join(untrained)} all zero (as freshly initialised)"
    return described, "looks trained (non-zero biases)"


def inspect_model(name_or_path: str) -> Report:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name_or_path)
    report = Report(
        name_or_path, config.model_type, list(getattr(config, "architectures", None) or []), head_for(config)
    )
    folder = Path(name_or_path)
    if not folder.is_dir():  # a hub name: the cached snapshot, if any
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(name_or_path, local_files_only=True))
        except Exception:  # weights are optional: the config alone answers the main question
            folder = None
    weights = head_weights(folder) if folder else {}
    if folder is None or not (list(folder.glob("*.safetensors")) or list(folder.glob("pytorch_model*.bin"))):
        report.verdict = "no weights on disk: the architecture alone was inspected"
    else:
        report.weights, report.verdict = judge(weights, getattr(config, "initializer_range", 0.02))
    return report


def format_report(r: Report) -> str:
    lines = [f"model: {r.model}", f"architecture: {r.model_type} {r.architectures or ''}".rstrip()]
    if r.head is None:
        lines.append("head: unknown to poolbench for this model type (see transformers' *ForSequenceClassification)")
    else:
        how = "exact" if r.head.exact else "closest, not exact"
        lines += [
            f"classifies from: {r.head.reads}",
            f"head: {r.head.head}",
            f"poolbench: pooling={r.head.pooling} ({how})",
        ]
        if r.head.note:
            lines.append(f"note: {r.head.note}")
    lines += [f"pooler/head weights: {r.verdict}"] + [f"  {k}: {v}" for k, v in r.weights.items()]
    return "\n".join(lines)
