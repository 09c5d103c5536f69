"""Data: the hutto4 recipe, the user's own files, and clear errors for bad data."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from conftest import synthetic_rows, write_csv

from poolbench.data import DataError, FilesDataModule, Hutto4DataModule, hutto
from poolbench.errors import ConfigError


@pytest.fixture(scope="module")
def tokenizer():
    from poolbench.model.encoder import load_tokenizer, packaged_minilm_path

    return load_tokenizer(packaged_minilm_path())


def files_dm(tokenizer, tmp_path, **kwargs):
    return FilesDataModule(tokenizer, cache_dir=str(tmp_path / "cache"), **kwargs)


# --- hutto4 --------------------------------------------------------------------------------------------
def fake_rows():
    ratings = [-3.0, -1.5, -1.0, -0.5, -0.4, 0.0, 0.49, 0.5, 1.49, 1.5, 2.5, -2.0]
    rows = [{"source": "tweets", "id": str(i), "rating": r, "text": f"text number {i}"} for i, r in enumerate(ratings)]
    rows.append({"source": "movie", "id": "dup", "rating": 3.0, "text": "  TEXT number 0 "})  # duplicate of row 0
    return rows * 1 + [
        {"source": "nyt", "id": f"x{i}", "rating": (-3.0, -1.0, 1.0, 3.0)[i % 4], "text": f"extra {i}"}
        for i in range(40)
    ]


def test_hutto4_cuts_four_classes_drops_neutral_and_duplicates(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setattr(hutto, "fetch", lambda cache_dir, archive=None: tmp_path)
    monkeypatch.setattr(hutto, "read", lambda folder: fake_rows())
    dm = Hutto4DataModule(tokenizer, cache_dir=str(tmp_path / "cache"))
    assert [dm.label_of(s) for s in (-3.0, -1.5, -1.0, -0.5, -0.4, 0.0, 0.49, 0.5, 1.49, 1.5)] == [
        0,
        1,
        1,
        None,
        None,
        None,
        None,
        2,
        2,
        3,
    ]
    raw = dm.read_splits()
    texts = [t for split in raw.values() for t in split.texts]
    assert len(texts) == len(set(texts)) == 8 + 40  # 4 neutral dropped, 1 duplicate dropped
    assert "  TEXT number 0 " not in texts and "text number 0" in texts  # the first occurrence is kept
    assert [len(raw[s].texts) for s in ("train", "val", "test")] == [38, 5, 5]  # 80/10/10
    assert dm.read_splits()["test"].texts == raw["test"].texts  # deterministic


def test_hutto4_rejects_bad_thresholds(tokenizer):
    with pytest.raises(
        ConfigError, match=r"^data.thresholds: must be 4 increasing numbers, got \[0.5, -0.5, 1.0, 2.0\]$"
    ):
        Hutto4DataModule(tokenizer, thresholds=(0.5, -0.5, 1.0, 2.0))


def test_hutto_fetch_refuses_an_archive_with_the_wrong_checksum(tmp_path):
    fake = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("vaderSentiment-3.3.2/README.rst")
        tar.addfile(info, io.BytesIO(b""))
    fake.write_bytes(buf.getvalue())
    with pytest.raises(hutto.ChecksumError, match="does not match"):
        hutto.fetch(tmp_path / "cache", archive=fake)
    with pytest.raises(FileNotFoundError, match="data.archive='/nope.tar.gz' is not a file"):
        hutto.fetch(tmp_path / "cache", archive="/nope.tar.gz")


# --- own files -----------------------------------------------------------------------------------------
def test_csv_tsv_jsonl_with_string_labels(tokenizer, tmp_path):
    rows = synthetic_rows(40)
    train = write_csv(tmp_path / "train.tsv", rows, delimiter="\t")
    val = tmp_path / "val.jsonl"
    val.write_text("\n".join(json.dumps({"sentence": r["text"], "y": r["label"]}) for r in rows[:8]))
    test = write_csv(tmp_path / "test.csv", [{"sentence": r["text"], "y": r["label"]} for r in rows[:8]])
    write_csv(train, [{"sentence": r["text"], "y": r["label"]} for r in rows], delimiter="\t")
    dm = files_dm(
        tokenizer, tmp_path, train=str(train), val=str(val), test=str(test), text_column="sentence", label_column="y"
    )
    dm.setup()
    assert dm.num_labels == 4
    assert dm.label_names == sorted({r["label"] for r in rows})  # strings -> ids in sorted order
    first = dm.splits["train"][0]
    assert first["labels"] == dm.label_names.index(rows[0]["label"])
    assert first["input_ids"][0] == tokenizer.cls_token_id
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[1] == max(batch["attention_mask"].sum(1))  # padded to the batch's longest


def test_missing_val_and_test_are_held_out_of_train(tokenizer, tmp_path):
    train = write_csv(tmp_path / "train.csv", synthetic_rows(100))
    dm = files_dm(tokenizer, tmp_path, train=str(train))
    dm.setup()
    sizes = {s: len(dm.splits[s]) for s in ("train", "val", "test")}
    assert sizes == {"train": 80, "val": 10, "test": 10}


def test_tokenisation_is_cached_on_disk_and_invalidated_by_what_changes_the_ids(tokenizer, tmp_path, monkeypatch):
    from poolbench.model.encoder import toy_roberta_tokenizer

    train = write_csv(tmp_path / "train.csv", synthetic_rows(100))
    files_dm(tokenizer, tmp_path, train=str(train)).setup()
    calls = []
    original = type(tokenizer).__call__

    def counting(self, *args, **kwargs):
        calls.append((type(self).__name__, kwargs.get("max_length")))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", counting)
    dm = files_dm(tokenizer, tmp_path, train=str(train))
    dm.setup()  # same data, tokenizer and max_length: loaded, not tokenised
    assert calls == [] and len(dm.splits["train"]) == 80
    files_dm(tokenizer, tmp_path, train=str(train), max_length=7).setup()  # another max_length
    assert calls == [("BertTokenizer", 7)] * 3
    files_dm(tokenizer, tmp_path, train=str(train)).setup()  # back to 128: still cached, whatever ran before
    assert len(calls) == 3
    other = write_csv(tmp_path / "other.csv", synthetic_rows(100, seed=5))
    files_dm(tokenizer, tmp_path, train=str(other)).setup()  # other data
    assert len(calls) == 6
    roberta = toy_roberta_tokenizer()
    monkeypatch.setattr(type(roberta), "__call__", counting)
    files_dm(roberta, tmp_path, train=str(train)).setup()  # another tokenizer
    assert calls[-1] == (type(roberta).__name__, 128) and len(calls) == 9


# --- errors --------------------------------------------------------------------------------------------
def setup_error(tokenizer, tmp_path, rows=None, **kwargs) -> str:
    if rows is not None:
        kwargs["train"] = str(write_csv(tmp_path / "train.csv", rows))
    with pytest.raises(DataError) as err:
        files_dm(tokenizer, tmp_path, **kwargs).setup()
    return str(err.value)


def test_missing_file(tokenizer, tmp_path):
    """Found by the data module's own check when it is built, before anything is read."""
    with pytest.raises(ConfigError) as err:
        FilesDataModule(tokenizer, cache_dir=str(tmp_path / "cache"), train="/no/such.csv")
    assert str(err.value) == "data.train: file '/no/such.csv' does not exist"


def test_missing_column(tokenizer, tmp_path):
    msg = setup_error(tokenizer, tmp_path, synthetic_rows(20), label_column="sentiment")
    assert "train.csv: no column 'sentiment'; columns are ['text', 'label']" in msg


def test_empty_text_names_the_row(tokenizer, tmp_path):
    rows = synthetic_rows(20)
    rows[4]["text"] = "   "
    msg = setup_error(tokenizer, tmp_path, rows)
    assert "train.csv" in msg and "row 5 (line 6): empty text in column 'text'" in msg


def test_label_out_of_range(tokenizer, tmp_path):
    rows = [{"text": r["text"], "label": i % 3} for i, r in enumerate(synthetic_rows(30))]
    rows[7]["label"] = 5
    msg = setup_error(tokenizer, tmp_path, rows, num_labels=3)
    assert "row 8 (line 9): label 5 in column 'label' is out of range (allowed: 0..2)" in msg


def test_label_not_in_label_set(tokenizer, tmp_path, csv_data):
    msg = setup_error(
        tokenizer,
        tmp_path,
        train=str(csv_data["train"]),
        val=str(csv_data["val"]),
        test=str(csv_data["test"]),
        label_names=["very_negative", "negative", "positive"],
    )
    assert "label 'very_positive' in column 'label' is not in the label set" in msg and "row " in msg


def test_split_with_no_examples(tokenizer, tmp_path, csv_data):
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    msg = setup_error(tokenizer, tmp_path, train=str(csv_data["train"]), val=str(empty), test=str(csv_data["test"]))
    assert "empty.csv: the val split has no examples" in msg


def test_num_labels_disagreeing_with_the_data(tokenizer, tmp_path, csv_data):
    msg = setup_error(tokenizer, tmp_path, train=str(csv_data["train"]), num_labels=3)
    assert "num_labels=3 disagrees with the 4 label names" in msg


def padding_fraction(loader) -> float:
    real = total = 0
    for batch in loader:
        real += int(batch["attention_mask"].sum())
        total += batch["attention_mask"].numel()
    return 1 - real / total


def test_length_grouped_batches_cover_every_example_once_with_less_padding(tokenizer, tmp_path):
    import torch

    train = write_csv(tmp_path / "train.csv", synthetic_rows(400))
    grouped = files_dm(tokenizer, tmp_path, train=str(train), batch_size=16)
    plain = files_dm(tokenizer, tmp_path, train=str(train), batch_size=16, group_by_length=False)
    grouped.setup(), plain.setup()
    torch.manual_seed(0)
    batches = list(grouped.train_dataloader())
    seen = [i for b in batches for i in b["idx"].tolist()]
    assert sorted(seen) == list(range(len(grouped.splits["train"])))  # each example exactly once
    assert all(len(b["idx"]) == 16 for b in batches[:-1]) and len(batches[-1]["idx"]) <= 16
    assert padding_fraction(batches) < 0.5 * padding_fraction(plain.train_dataloader())
    evaluated = [i for b in grouped.test_dataloader() for i in b["idx"].tolist()]
    assert sorted(evaluated) == list(range(len(grouped.splits["test"])))


def test_hutto4_domains_select_each_splits_own_examples(tokenizer, tmp_path, monkeypatch):
    monkeypatch.setattr(hutto, "fetch", lambda cache_dir, archive=None: tmp_path)
    monkeypatch.setattr(hutto, "read", lambda folder: fake_rows())  # 8 tweets (1 duplicate of them in movie), 40 nyt

    def splits(**domains) -> dict:
        return Hutto4DataModule(tokenizer, cache_dir=str(tmp_path / "cache"), **domains).read_splits()

    every = splits()
    tweets, nyt = splits(domains="tweets"), splits(domains=["nyt"])
    for split in ("train", "val", "test"):  # each domain keeps its share of every split, nothing else
        assert sorted(tweets[split].texts + nyt[split].texts) == sorted(every[split].texts)
        assert all(t.startswith("text number") for t in tweets[split].texts)
        assert not set(tweets[split].texts) & set(nyt[split].texts)
    assert sum(len(s.texts) for s in tweets.values()) == 8 and sum(len(s.texts) for s in nyt.values()) == 40
    assert splits(domains=["tweets", "nyt"])["test"].texts == every["test"].texts  # both: as without a choice
    # cross-domain: train and validate on nyt, test on tweets
    transfer = splits(train_domains="nyt", test_domains="tweets")
    assert transfer["train"].texts == nyt["train"].texts and transfer["val"].texts == nyt["val"].texts
    assert transfer["test"].texts == tweets["test"].texts and "tweets" in transfer["test"].origin
    with pytest.raises(ValueError, match="data.domains: unknown domain.*'news'.*allowed: tweets, movies, nyt, amazon"):
        splits(domains=["news"])


def test_domain_names_are_checked_before_anything_runs(compose):
    from poolbench.run.checks import problems

    assert problems(compose(["data=hutto4", "data.domains=[movies,nyt]", "data.test_domains=amazon"])) == []
    assert problems(compose(["data=hutto4", "data.domains=[movie]"])) == [
        "data.domains: unknown domain(s) ['movie']; allowed: tweets, movies, nyt, amazon"
    ]
