"""Tokenised splits, cached on disk per (texts and labels, tokenizer, max_length) and reused by every run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from poolbench import cache

TOKENIZED_FORMAT = "2"  # part of the cache key: bump when the cached columns change


def tokenize_cached(tokenizer, texts: list[str], labels: list[int], max_length: int, folder: Path, name: str):
    """(dataset, key, checksum) of one split: a ``datasets.Dataset`` with the token ids, ``labels``, ``idx`` and
    ``length`` columns; the key of its tokenisation (every cache built on it uses it); the sha256 of its texts
    and label ids (recorded in results.json)."""
    import datasets

    data = hashlib.sha256()
    for text, y in zip(texts, labels, strict=True):
        data.update(text.encode())
        data.update(b"\x00%d\x00" % y)
    key = hashlib.sha256(TOKENIZED_FORMAT.encode())
    key.update(tokenizer_fingerprint(tokenizer).encode())
    key.update(str(max_length).encode())
    key.update(data.digest())
    path = folder / f"{name}-{key.hexdigest()[:20]}"

    def make(tmp: Path) -> None:
        enc = tokenizer(texts, truncation=True, max_length=max_length)
        columns = {k: enc[k] for k in enc.keys()}
        columns.update(labels=labels, idx=list(range(len(labels))), length=[len(x) for x in enc["input_ids"]])
        datasets.Dataset.from_dict(columns).save_to_disk(str(tmp))

    def load(found: Path):
        dataset = datasets.load_from_disk(str(found))
        if len(dataset) != len(labels):
            raise ValueError(f"{len(dataset)} rows, {len(labels)} expected")
        return dataset

    dataset = cache.open_entry(path, make, load, f"tokenised {name} split")
    return dataset, key.hexdigest(), data.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """What decides the token ids: vocabulary, normaliser, pre-tokeniser, model, post-processor."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        # the backend records the last call's truncation/padding settings: not part of what it computes
        state.pop("truncation", None)
        state.pop("padding", None)
        body = json.dumps(state, sort_keys=True)
    else:
        body = repr(sorted(tokenizer.get_vocab().items()))
    extra = (type(tokenizer).__name__, tokenizer.padding_side, tokenizer.truncation_side)
    return hashlib.sha256((body + repr(extra)).encode()).hexdigest()
