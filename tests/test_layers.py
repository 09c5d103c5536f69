"""Layer pooling: which hidden layers feed the pooler, and the learned scalar mix."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from conftest import pooler_configs, tiny_bert

from poolbench.errors import ConfigError
from poolbench.model.classifier import PoolingClassifier
from poolbench.model.layers import LastLayer, LastLayersConcat, LastLayersMean, ScalarMix
from poolbench.model.poolers import MeanPooling


@pytest.fixture
def states():
    torch.manual_seed(0)
    encoder = tiny_bert(num_hidden_layers=4).eval()
    ids, mask = torch.randint(5, 1000, (2, 6)), torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    out = encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    return encoder, ids, mask, out.hidden_states  # embeddings + 4 layers


def test_each_selector_computes_what_it_says(states):
    encoder, _, _, hs = states
    h, n = encoder.config.hidden_size, encoder.config.num_hidden_layers
    assert len(hs) == n + 1
    torch.testing.assert_close(LastLayer(h, n)(hs), hs[-1])
    torch.testing.assert_close(LastLayersMean(h, n, k=2)(hs), (hs[-1] + hs[-2]) / 2)
    concat = LastLayersConcat(h, n, k=3)
    assert concat.out_features == 3 * h
    torch.testing.assert_close(concat(hs), torch.cat([hs[-1], hs[-2], hs[-3]], dim=-1))
    with pytest.raises(ConfigError, match=r"layers.k: 5 is more than the encoder's 4 layers \(choose 1 <= k <= 4\)"):
        LastLayersMean(h, n, k=5)


def test_scalar_mix_is_a_learned_softmax_mix_of_every_layer(states):
    encoder, _, _, hs = states
    mix = ScalarMix(encoder.config.hidden_size, encoder.config.num_hidden_layers)
    assert mix.layer_weights().sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(mix(hs), torch.stack(hs).mean(0))  # starts as the plain average
    with torch.no_grad():
        mix.scores.copy_(torch.tensor([0.0, 1.0, -1.0, 2.0, 0.5]))
        mix.gamma.fill_(2.0)
    w = torch.tensor([0.0, 1.0, -1.0, 2.0, 0.5]).softmax(0)
    assert mix.layer_weights().sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(mix(hs), 2.0 * sum(w[i] * hs[i] for i in range(5)))
    mix(hs).sum().backward()
    assert mix.scores.grad.abs().sum() > 0 and mix.gamma.grad.abs().sum() > 0


@pytest.mark.parametrize("layers", [LastLayersMean, LastLayersConcat, ScalarMix])
def test_the_model_pools_the_selected_layers(states, layers):
    encoder, ids, mask, hs = states
    model = PoolingClassifier(encoder, MeanPooling, num_labels=3, layers=layers).eval()
    expected = model.classifier(MeanPooling(model.layers.out_features)(model.layers(hs), mask))
    torch.testing.assert_close(model(ids, mask), expected)
    assert model.classifier.in_features == model.layers.out_features
    with pytest.raises(ValueError, match="cannot feed a model that mixes several layers"):
        model(hidden_states=hs[-1], attention_mask=mask)


def test_the_default_is_the_last_layer(states):
    encoder, ids, mask, hs = states
    model = PoolingClassifier(encoder, MeanPooling, num_labels=3).eval()
    again = PoolingClassifier(encoder, MeanPooling, num_labels=3, layers=partial(LastLayer)).eval()
    assert isinstance(model.layers, LastLayer) and not model.layers.all_layers
    torch.testing.assert_close(model.token_states(ids, mask), hs[-1])
    torch.testing.assert_close(again.token_states(ids, mask), hs[-1])


@pytest.mark.parametrize("layers", [LastLayer, LastLayersMean, LastLayersConcat, ScalarMix])
def test_every_pooler_combines_with_every_layer_selector(states, layers):
    encoder, ids, mask, _ = states
    for name, pooling in pooler_configs().items():
        model = PoolingClassifier(encoder, pooling, num_labels=3, layers=layers)
        logits = model(ids, mask)
        assert logits.shape == (2, 3), name
        logits.sum().backward()
        assert all(p.grad is not None for p in model.pooling.parameters()), name
        if layers is ScalarMix:
            assert model.layers.scores.grad is not None, name
        model.zero_grad()
