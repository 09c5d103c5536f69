"""Every config in every group composes and instantiates; an unknown choice says what is available."""

from __future__ import annotations

import inspect

import pytest
import torch
from conftest import CONF, ROOT, pooler_configs
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import get_class, get_method, instantiate
from omegaconf import OmegaConf
from torch import nn

from poolbench.model import attention, poolers

GROUPS = {g.name: sorted(p.stem for p in g.glob("*.yaml")) for g in CONF.iterdir() if g.is_dir()}
ONLINE_ENCODERS = {"bert_base", "roberta_base"}  # hub checkpoints: composed and resolved, not downloaded


def test_every_pooler_class_has_its_config_and_every_config_its_class():
    defined = {
        cls
        for module in (poolers, attention)
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, nn.Module)
        and cls.__module__ == module.__name__
        and cls.__name__.endswith("Pooling")
        and cls is not poolers.FixedPooling
    }
    configured = pooler_configs()
    assert set(configured.values()) == defined and len(configured) == len(defined)  # one config per class
    assert {"cls", "pooler", "mean", "max", "attention"} <= set(configured)  # the README's core five


def test_the_groups_users_rely_on_exist():
    assert {"last", "last4_concat", "last4_mean", "scalar_mix"} <= set(GROUPS["layers"])
    assert {"minilm", "bert_base", "roberta_base", "tiny_bert", "tiny_roberta"} <= set(GROUPS["encoder"])
    assert {"hutto4", "csv", "hub"} <= set(GROUPS["data"])
    assert {"wandb", "csv", "none"} <= set(GROUPS["logger"])


@pytest.mark.parametrize("encoder", GROUPS["encoder"])
def test_encoder_configs(compose, encoder):
    cfg = compose([f"encoder={encoder}"])
    # what tables and warnings say about the weights: only the tiny test encoders are random
    assert cfg.encoder.pretrained is (not encoder.startswith("tiny_"))
    if encoder in ONLINE_ENCODERS:
        assert callable(get_method(cfg.encoder.model._target_))
        assert cfg.encoder.trust_remote_code is False
        return
    tokenizer = instantiate(cfg.encoder.tokenizer)
    model = instantiate(cfg.encoder.model)
    assert model.config.vocab_size >= len(tokenizer)
    assert cfg.encoder.pretrained == (encoder == "minilm")
    ids = tokenizer("a short test", return_tensors="pt")
    assert model(**ids).last_hidden_state.shape[-1] == model.config.hidden_size


@pytest.mark.parametrize("pooling", GROUPS["pooling"])
def test_pooling_configs(compose, pooling):
    pooler = instantiate(compose([f"pooling={pooling}"]).pooling)(hidden_size=16)
    assert type(pooler) is pooler_configs()[pooling]
    assert pooler.out_features == {"cls_mean": 2 * 16, "self_attentive": 4 * 16}.get(pooling, 16)  # 4 hops


@pytest.mark.parametrize("layers", GROUPS["layers"])
def test_layers_configs(compose, layers):
    selector = instantiate(compose([f"layers={layers}"]).layers)(hidden_size=16, num_layers=6)
    states = tuple(torch.full((2, 5, 16), float(i)) for i in range(7))  # embeddings + 6 layers, layer i filled with i
    out = selector(states)
    assert out.shape == (2, 5, selector.out_features)  # what the pooler is built for is what it gets
    assert selector.all_layers == (layers != "last")  # only `last` lets a frozen run cache its token states
    first = {"last": 6.0, "last4_mean": 4.5, "last4_concat": 6.0, "scalar_mix": 3.0}[layers]  # scalar_mix: the mean
    assert out[0, 0, 0].item() == pytest.approx(first)


@pytest.mark.parametrize("data", GROUPS["data"])
def test_data_configs(compose, data, csv_data):
    extra = {"csv": [f"data.train={csv_data['train']}"], "hub": ["data.name=SetFit/sst5"]}.get(data, [])
    cfg = compose([f"data={data}", *extra, "data.batch_size=8", "data.max_length=40"])
    dm = instantiate(cfg.data, tokenizer=None)
    assert (dm.batch_size, dm.max_length) == (8, 40)  # the shared data keys reach every data module


@pytest.mark.parametrize("group", ["model", "trainer", "callbacks", "logger", "paths"])
def test_other_groups(compose, group, tmp_path, monkeypatch):
    for choice in GROUPS[group]:
        cfg = compose([f"{group}={choice}"])
        node = cfg.get(group)
        if group == "model":
            assert callable(instantiate(node))  # a partial: encoder and pooling come at run time
        elif group == "trainer":
            assert instantiate(node, logger=False).max_epochs == 1
        elif group in ("callbacks", "logger"):
            for sub in (node or {}).values():
                assert isinstance(instantiate(sub), get_class(sub._target_))
        else:  # the cache every run shares: ~/.cache/poolbench, or where POOLBENCH_CACHE says
            paths = OmegaConf.load(CONF / "paths" / f"{choice}.yaml")
            monkeypatch.delenv("POOLBENCH_CACHE", raising=False)
            assert paths.cache_dir == "~/.cache/poolbench"
            monkeypatch.setenv("POOLBENCH_CACHE", str(tmp_path / "shared"))
            assert paths.cache_dir == str(tmp_path / "shared")


def test_default_is_the_offline_main_job(compose):
    cfg = compose(smoke=False)
    choices = cfg.hydra.runtime.choices
    assert (choices.data, choices.encoder, choices.logger, choices.layers) == ("hutto4", "minilm", "wandb", "last")


def test_unknown_pooling_lists_the_available_ones(compose):
    with pytest.raises((MissingConfigException, ConfigCompositionException)) as err:
        compose(["pooling=avg"])
    message = str(err.value)
    assert "avg" in message
    for name in GROUPS["pooling"]:
        assert name in message


def test_the_shared_data_keys_have_one_home_and_the_python_defaults_agree_with_it():
    """conf/data/shared/loading.yaml holds the keys every data module shares; a data module built in Python without
    Hydra gets the same values (the constructor's defaults are checked against it here, not written down twice)."""
    import yaml

    from poolbench.data.base import TextClassificationDataModule

    shared = yaml.safe_load((CONF / "data" / "shared" / "loading.yaml").read_text())
    for data in GROUPS["data"]:
        own = yaml.safe_load((CONF / "data" / f"{data}.yaml").read_text())
        assert "shared/loading@_here_" in own["defaults"] and not set(shared) & set(own), data
    signature = inspect.signature(TextClassificationDataModule).parameters
    python = {k: signature[k].default for k in shared if k != "cache_dir"}
    assert python == {k: v for k, v in shared.items() if k != "cache_dir"}


def test_the_training_recipe_has_one_home_and_the_python_defaults_agree_with_it():
    """conf/model/classifier.yaml is the recipe (lr, head_lr, warm-up, ...); PoolingClassifier built in Python without
    Hydra gets the same values, and every constructor setting is in the YAML."""
    from poolbench.model.classifier import PoolingClassifier

    recipe = OmegaConf.to_container(OmegaConf.load(CONF / "model" / "classifier.yaml"))  # reads 5e-5 as Hydra does
    recipe = {k: v for k, v in recipe.items() if not k.startswith("_") and k != "freeze"}  # freeze: ${encoder.freeze}
    signature = inspect.signature(PoolingClassifier).parameters
    runtime = {"encoder", "pooling", "num_labels", "layers", "label_names", "freeze", "encoder_name"}  # from the job
    assert set(recipe) == set(signature) - runtime
    assert recipe == {k: signature[k].default for k in recipe}


@pytest.mark.parametrize(
    ("overrides", "build", "message"),
    [
        (
            ["pooling=mha", "pooling.num_heads=5"],
            "pooling",
            "pooling.num_heads: 5 does not divide the encoder's hidden size 32",
        ),
        (["pooling=self_attentive", "pooling.hops=0"], "pooling", "pooling.hops: must be an integer >= 1, got 0"),
        (
            ["layers=last4_mean", "layers.k=9"],
            "layers",
            "layers.k: 9 is more than the encoder's 6 layers (choose 1 <= k <= 6)",
        ),
        (["data=hutto4", "data.batch_size=0"], "data", "data.batch_size: must be an integer >= 1, got 0"),
        (
            ["data.domains=movie"],
            "data",
            "data.domains: unknown domain(s) ['movie']; allowed: tweets, movies, nyt, amazon",
        ),
        (["model.lr=-1"], "model", "model.lr: must be a positive number, got -1"),
    ],
)
def test_a_component_given_a_bad_setting_directly_raises_the_one_line_config_error(compose, overrides, build, message):
    """Not only through train.py's checks: ``instantiate`` of the component's own config says the same, in one line
    (Hydra wraps what a constructor raises; poolbench's one-line report unwraps it, as ``user_error`` does)."""
    from poolbench.errors import ConfigError, user_error

    cfg = compose(overrides)
    component = {
        "pooling": lambda: instantiate(cfg.pooling)(hidden_size=32),
        "layers": lambda: instantiate(cfg.layers)(hidden_size=32, num_layers=6),
        "data": lambda: instantiate(cfg.data, tokenizer=None),
        "model": lambda: instantiate(cfg.model)(encoder=None, pooling=None, num_labels=4),
    }[build]
    with pytest.raises(Exception) as err:  # noqa: B017, PT011 - ConfigError, or Hydra's wrapper around it
        component()
    mistake = user_error(err.value)
    assert isinstance(mistake, ConfigError) and str(mistake) == message


def test_the_sweep_checks_ask_the_components_and_match_no_target_names():
    source = (ROOT / "src" / "poolbench" / "run" / "checks.py").read_text()
    assert "endswith(" not in source and "check(" in source
