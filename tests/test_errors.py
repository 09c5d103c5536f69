"""Bad input gets one clear line before compute: it names the file and line, or the config key, and what is
allowed; the process exits with status 2 and prints no traceback (it goes to train.log and results.json)."""

from __future__ import annotations

import pytest
from conftest import clean_env, read_record, synthetic_rows, train_cli, write_csv

from poolbench.data.files import FilesDataModule
from poolbench.errors import DataError, EncoderError
from poolbench.model.encoder import from_pretrained, load_tokenizer

GOOD = "text,label\na fine film,1\na dull film,0\na good plot,1\n"
BAD_FILES = {  # file name -> (bytes, what the one-line message must say)
    "phantom.csv": (
        b"text,label\nok,1\nfine,7\n",
        "row 2 (line 3): label 7 in column 'label' never occurs in the training data",
    ),
    "latin1.csv": (b"text,label\nok,1\ncaf\xe9 bad,0\n", "line 3, column 4: byte 0xe9 is not utf-8 text"),
    "image.csv": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "line 1, column 1: byte 0x89 is not utf-8 text"),
    "broken.jsonl": (b'{"text": "a", "label": 1}\n{"text": "b" "label": 0}\n', "line 2, column 14: not valid JSON"),
    "quote.csv": (
        b'text,label\nok,1\n"never closed,0\nmore,1\n',
        "line 3: a double quote opens a text that never closes",
    ),
    "duplicated.csv": (b"text,text\nok,1\n", "line 1: column 'text' appears twice in the header"),
    "unnamed.csv": (b"text,\nok,1\n", "line 1: column 2 of the header has no name"),
    "too_many.csv": (b"text,label\nok,1\nfine,0,extra\n", "line 3: 3 fields where the header has 2"),
    "too_few.csv": (b"text,label\nok,1\nshort\n", "row 2 (line 3): empty label in column 'label'"),
    "mixed.csv": (
        b"text,label\nok,1\nfine,pos\n",
        "label 'pos' in column 'label' is a name, but the first label 1 is an id",
    ),
}


@pytest.fixture
def good(tmp_path):
    (tmp_path / "good.csv").write_text(GOOD)
    return tmp_path / "good.csv"


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_file_gets_one_line_naming_file_and_line(tmp_path, good, name):
    data, expected = BAD_FILES[name]
    (tmp_path / name).write_bytes(data)
    files = {"train": good, "val": good, "test": good}
    files["test" if name == "phantom.csv" else "train"] = tmp_path / name  # a label the training data lacks
    with pytest.raises(DataError) as err:
        FilesDataModule(None, **{split: str(path) for split, path in files.items()}).setup()
    message = str(err.value)
    assert message.startswith(str(tmp_path / name)) and expected in message and "\n" not in message


def test_a_latin1_file_reads_with_data_encoding(tmp_path, good):
    (tmp_path / "latin1.csv").write_bytes(b"text,label\nun caf\xe9 froid,1\nbon,0\n")
    module = FilesDataModule(
        None, train=str(tmp_path / "latin1.csv"), val=str(good), test=str(good), encoding="latin-1"
    )
    assert module.read_splits()["train"].texts == ["un café froid", "bon"]


def test_labels_the_training_data_never_saw_are_errors_in_every_split_and_form(tmp_path, good):
    (tmp_path / "names.csv").write_text("text,label\na,pos\nb,neg\n")
    (tmp_path / "other.csv").write_text("text,label\nc,pos\nd,neutral\n")
    names, other = str(tmp_path / "names.csv"), str(tmp_path / "other.csv")
    with pytest.raises(DataError, match=r"other.csv: row 2 \(line 3\): label 'neutral' .* not in the label set"):
        FilesDataModule(None, train=names, val=other, test=names).setup()
    (tmp_path / "seven.csv").write_text("text,label\nc,7\nd,1\n")
    with pytest.raises(DataError, match=r"seven.csv: row 1 \(line 2\): label 7 .* never occurs in the training data"):
        FilesDataModule(None, train=str(good), val=str(tmp_path / "seven.csv"), test=str(good)).setup()
    with pytest.raises(DataError, match=r"label 'pos' in column 'label' is a name, but the training labels are ids"):
        FilesDataModule(None, train=str(good), val=str(good), test=names).setup()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("/no/such/folder", "encoder.name_or_path: folder '/no/such/folder' does not exist"),
        ("{tmp}", "has no config.json: not a Hugging Face model folder"),
        ("some-org/some-model", "'some-org/some-model' is a hub name that is not in the local Hugging Face cache"),
    ],
)
def test_an_encoder_that_cannot_be_loaded_says_which_and_what_to_do(tmp_path, name, expected):
    name = name.format(tmp=tmp_path)  # an existing folder without a model
    for load in (from_pretrained, load_tokenizer):
        with pytest.raises(EncoderError, match="encoder.name_or_path: ") as err:
            load(name)
        assert expected in str(err.value)


def test_limits_of_the_encoder_are_known_before_compute(compose):
    from poolbench.run.checks import problems

    assert problems(compose(["data.max_length=600"])) == [
        "data.max_length: 600 is more than the encoder's 512 positions (choose at most 512)"
    ]
    assert problems(compose(["encoder=tiny_roberta", "data.max_length=513"])) == [
        "data.max_length: 513 is more than the encoder's 512 positions (choose at most 512)"
    ]  # 514 - padding offset
    (vocab,) = problems(compose(["encoder.model.vocab_size=1000"]))
    assert vocab.startswith("encoder.tokenizer: 30522 tokens, but the encoder's embeddings have 1000")
    assert problems(compose(["encoder=minilm", "encoder.name_or_path=/no/such"])) == [
        "encoder.name_or_path: folder '/no/such' does not exist"
    ]


# --- as a user runs it -----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bad_inputs_end_with_status_2_one_line_each_and_nothing_trained(tmp_path, cache_dir, good):
    for name, (data, _) in BAD_FILES.items():
        (tmp_path / name).write_bytes(data)
    env = clean_env(tmp_path, cache_dir)
    # one run: the message, exit status 2, the traceback only in train.log and results.json
    run = tmp_path / "run"
    done = train_cli(
        [
            "data=csv",
            f"data.train={good}",
            f"data.val={good}",
            f"data.test={tmp_path / 'phantom.csv'}",
            "logger=none",
            f"hydra.run.dir={run}",
        ],
        env,
    )
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert "phantom.csv: row 2 (line 3): label 7 in column 'label' never occurs" in done.stderr.splitlines()[-1]
    record = read_record(run)
    assert record["status"] == "failed" and record["user_error"] is True and "Traceback" in record["traceback"]
    assert "Traceback" in (run / "train.log").read_text() and not (run / "checkpoints").exists()
    # a sweep over every bad file: each job fails with its line, the summary lists them, exit status 2
    sweep = tmp_path / "sweep"
    names = sorted(n for n in BAD_FILES if n != "phantom.csv")
    done = train_cli(
        [
            "-m",
            "data=csv",
            f"data.train={','.join(str(tmp_path / n) for n in names)}",
            f"data.val={good}",
            f"data.test={good}",
            "logger=none",
            f"hydra.sweep.dir={sweep}",
        ],
        env,
    )
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert f"0 finished, {len(names)} failed" in done.stdout
    for i, name in enumerate(names):
        record = read_record(sweep / str(i))
        assert record["status"] == "failed" and BAD_FILES[name][1] in record["error"], name
        assert BAD_FILES[name][1] in done.stdout and not (sweep / str(i) / "checkpoints").exists()


@pytest.mark.slow
def test_a_bad_setting_in_a_sweep_and_a_check_only_run(tmp_path, cache_dir, good):
    env = clean_env(tmp_path, cache_dir)
    done = train_cli(
        [
            "-m",
            "pooling=mha",
            "pooling.num_heads=3,4",
            "encoder.name_or_path=/no/such",
            "encoder=minilm",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        env,
    )
    assert done.returncode == 2 and "Traceback" not in done.stdout + done.stderr
    assert "encoder.name_or_path: folder '/no/such' does not exist" in done.stderr and "nothing was run" in done.stderr
    assert not (tmp_path / "sweep" / "0").exists()
    data = write_csv(tmp_path / "train.csv", synthetic_rows(80))
    done = train_cli(["data=csv", f"data.train={data}", "check_only=true", f"hydra.run.dir={tmp_path / 'check'}"], env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "OK" in done.stdout and "class           train     val    test" in done.stdout and "total" in done.stdout
    assert "randomly initialised, NOT pretrained" in done.stdout and not (tmp_path / "check" / "checkpoints").exists()
    done = train_cli(["data=csv", f"data.train={data}", "data.max_length=2000", "check_only=true"], env, cwd=tmp_path)
    assert done.returncode == 2 and "data.max_length: 2000 is more than the encoder's 512 positions" in done.stdout
