"""Every pooler: shape, gradients, exact reference values, padding invariance, inputs untouched, bf16."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import pooler_configs

from poolbench.errors import ConfigError
from poolbench.model.attention import AttentionPooling, MultiHeadAttentionPooling, SelfAttentivePooling, penalization
from poolbench.model.poolers import DenseTanhPooling, RobertaHeadPooling

H = 8
POOLERS = pooler_configs()  # pooling= name -> class, from conf/pooling/
NAMES = sorted(POOLERS)
WIDER = {"cls_mean": 2, "self_attentive": 4}  # out_features / H (self_attentive: its default 4 hops)


def make(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    pooler = POOLERS[name](H)
    if isinstance(pooler, AttentionPooling):  # a non-zero query, so that attention is not uniform
        with torch.no_grad():
            pooler.query.normal_()
    return pooler.eval()


def pad(x: torch.Tensor, length: int, side: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad one sequence (T, H) with garbage to ``length``, on the given side; return (1, L, H), (1, L)."""
    t = x.size(0)
    garbage = torch.full((length - t, x.size(1)), 1e4)  # huge values: any leak shows
    mask = torch.ones(length, dtype=torch.long)
    if side == "right":
        mask[t:] = 0
        return torch.cat([x, garbage])[None], mask[None]
    mask[: length - t] = 0
    return torch.cat([garbage, x])[None], mask[None]


@pytest.mark.parametrize("name", NAMES)
def test_shape_and_out_features(name):
    pooler = make(name)
    out = pooler(torch.randn(3, 5, H), torch.ones(3, 5, dtype=torch.long))
    assert out.shape == (3, pooler.out_features) == (3, WIDER.get(name, 1) * H)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_inputs_and_parameters(name):
    pooler = make(name).train()
    hidden = torch.randn(2, 4, H, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    pooler(hidden, mask).pow(2).sum().backward()
    assert hidden.grad is not None and hidden.grad[mask.bool()].abs().sum() > 0
    assert hidden.grad[~mask.bool()].abs().sum() == 0  # padding gets no gradient
    for pname, p in pooler.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("side", ["right", "left"])
def test_padding_is_ignored(name, side):
    """A sequence alone gives the same vector as batched with a longer one, padded on either side."""
    pooler = make(name)
    torch.manual_seed(1)
    short, long = torch.randn(3, H), torch.randn(7, H)
    alone = pooler(short[None], torch.ones(1, 3, dtype=torch.long))
    h_short, m_short = pad(short, 7, side)
    batch = pooler(torch.cat([h_short, long[None]]), torch.cat([m_short, torch.ones(1, 7, dtype=torch.long)]))
    torch.testing.assert_close(batch[0], alone[0], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(batch[1], pooler(long[None], torch.ones(1, 7, dtype=torch.long))[0])


@pytest.mark.parametrize("name", NAMES)
def test_inputs_are_not_modified(name):
    pooler = make(name)
    hidden, mask = torch.randn(2, 5, H), torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]])
    h0, m0 = hidden.clone(), mask.clone()
    pooler(hidden, mask)
    assert torch.equal(hidden, h0) and torch.equal(mask, m0)


@pytest.mark.parametrize("name", NAMES)
def test_bf16_input(name):
    pooler = make(name).to(torch.bfloat16)
    hidden = torch.randn(2, 5, H)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = pooler(hidden.bfloat16(), mask)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    ref = make(name)(hidden, mask)  # same weights (same seed) in fp32
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)


def test_reference_values():
    """Hand-computed results on a 2x3x2 example (row 0 has one pad token at the end)."""
    hidden = torch.tensor([[[1.0, -2.0], [3.0, 4.0], [100.0, 100.0]], [[0.0, 1.0], [2.0, -1.0], [-4.0, 6.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    expected = {
        "cls": [[1.0, -2.0], [0.0, 1.0]],
        "mean": [[2.0, 1.0], [-2 / 3, 2.0]],
        "max": [[3.0, 4.0], [2.0, 6.0]],
    }
    for name, value in expected.items():
        torch.testing.assert_close(POOLERS[name](2)(hidden, mask), torch.tensor(value))

    pooler = DenseTanhPooling(2)
    with torch.no_grad():
        pooler.dense.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        pooler.dense.bias.copy_(torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(
        pooler(hidden, mask),
        torch.tensor([[math.tanh(1.5), math.tanh(-1.0)], [math.tanh(0.5), math.tanh(1.0)]]),
    )

    attn = AttentionPooling(2)
    with torch.no_grad():
        attn.query.copy_(torch.tensor([math.sqrt(2.0), 0.0]))  # score = first feature (scale 1/sqrt(2))
    w0 = torch.tensor([1.0, 3.0]).softmax(0)  # row 0: the padded token gets no weight
    w1 = torch.tensor([0.0, 2.0, -4.0]).softmax(0)
    expected_attn = torch.stack([w0 @ hidden[0, :2], w1 @ hidden[1]])
    torch.testing.assert_close(attn(hidden, mask), expected_attn)
    weights = attn.weights(hidden, mask)
    assert weights[0, 2] == 0 and torch.allclose(weights.sum(-1), torch.ones(2))


def test_attention_scale_multiplies_the_scores():
    """``pooling.scale`` replaces 1/sqrt(H): scale 1 with query q scores like the default with query sqrt(H) q."""
    hidden, mask = torch.randn(2, 4, H), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    q = torch.randn(H)
    unscaled, default = AttentionPooling(H, scale=1.0), AttentionPooling(H)
    with torch.no_grad():
        unscaled.query.copy_(q)
        default.query.copy_(q * math.sqrt(H))
    torch.testing.assert_close(unscaled.weights(hidden, mask), default.weights(hidden, mask))
    with pytest.raises(ConfigError, match=r"pooling\.scale: must be null or a number > 0"):
        AttentionPooling(H, scale=0)


def test_attention_starts_as_mean_pooling():
    hidden, mask = torch.randn(2, 4, H), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    torch.testing.assert_close(AttentionPooling(H)(hidden, mask), POOLERS["mean"](H)(hidden, mask))


def test_pooler_copies_checkpoint_weights_and_flags_untrained_ones(caplog):
    from transformers import BertConfig, BertModel

    bert = BertModel(BertConfig(hidden_size=H, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16))
    pooler = DenseTanhPooling(H)
    pooler.load_encoder_pooler(bert.pooler, "tiny")
    assert torch.equal(pooler.dense.weight, bert.pooler.dense.weight)
    assert pooler.source.startswith("checkpoint")
    with torch.no_grad():
        bert.pooler.dense.bias.zero_()
    with caplog.at_level("WARNING"):
        DenseTanhPooling(H).load_encoder_pooler(bert.pooler, "tiny")
    assert "looks untrained" in caplog.text
    fresh = DenseTanhPooling(H)
    fresh.load_encoder_pooler(None, "no-pooler-model")
    assert fresh.source == "fresh"


def test_reference_values_of_the_averaging_and_position_poolers():
    hidden = torch.tensor([[[1.0, -2.0], [3.0, 4.0], [100.0, 100.0]], [[0.0, 1.0], [2.0, -1.0], [-4.0, 6.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    expected = {
        "mean_sqrt_len": [[4 / math.sqrt(2), 2 / math.sqrt(2)], [-2 / math.sqrt(3), 6 / math.sqrt(3)]],
        "weighted_mean": [[7 / 3, 2.0], [-8 / 6, 17 / 6]],  # weights 1, 2 and 1, 2, 3
        "last_token": [[3.0, 4.0], [-4.0, 6.0]],
        "cls_mean": [[1.0, -2.0, 2.0, 1.0], [0.0, 1.0, -2 / 3, 2.0]],
    }
    for name, value in expected.items():
        torch.testing.assert_close(POOLERS[name](2)(hidden, mask), torch.tensor(value), msg=name)
    left = torch.tensor([[0, 1, 1], [1, 1, 1]])  # row 0 left-padded: its last token is position 2
    torch.testing.assert_close(POOLERS["last_token"](2)(hidden, left)[0], torch.tensor([100.0, 100.0]))


def test_roberta_head_is_dropout_dense_tanh_on_the_first_token():
    pooler = RobertaHeadPooling(H, dropout=0.5)
    hidden, mask = torch.randn(2, 4, H), torch.tensor([[0, 1, 1, 1], [1, 1, 1, 0]])
    first = torch.stack([hidden[0, 1], hidden[1, 0]])
    torch.testing.assert_close(pooler.eval()(hidden, mask), torch.tanh(pooler.dense(first)))
    pooler.train()
    torch.manual_seed(0)
    dropped = pooler(hidden, mask)
    torch.manual_seed(0)
    torch.testing.assert_close(dropped, torch.tanh(pooler.dense(torch.nn.functional.dropout(first, 0.5))))


def test_mha_equals_torch_multihead_attention_with_the_latent_as_query():
    torch.manual_seed(0)
    pooler = MultiHeadAttentionPooling(H, num_heads=2).eval()
    ref = torch.nn.MultiheadAttention(H, 2, batch_first=True)
    with torch.no_grad():
        wk, wv = pooler.kv.weight.chunk(2)
        bk, bv = pooler.kv.bias.chunk(2)
        ref.in_proj_weight.copy_(torch.cat([pooler.q.weight, wk, wv]))
        ref.in_proj_bias.copy_(torch.cat([pooler.q.bias, bk, bv]))
        ref.out_proj.load_state_dict(pooler.proj.state_dict())
    hidden, mask = torch.randn(3, 5, H), torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    query = pooler.latent.expand(3, 1, H)
    out, weights = ref(query, hidden, hidden, key_padding_mask=~mask.bool(), average_attn_weights=False)
    torch.testing.assert_close(pooler(hidden, mask), out[:, 0])
    torch.testing.assert_close(pooler.weights(hidden, mask), weights[:, :, 0])  # (B, heads, T)
    with pytest.raises(ConfigError, match="pooling.num_heads: 3 does not divide the encoder's hidden size 8"):
        MultiHeadAttentionPooling(H, num_heads=3)


def test_self_attentive_hops_and_penalty_match_the_formulas():
    torch.manual_seed(0)
    pooler = SelfAttentivePooling(H, hops=2, attention_dim=3, penalty_weight=0.5)
    hidden, mask = torch.randn(2, 4, H), torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    out, penalty = pooler.pool(hidden, mask)  # the penalty of this batch, returned with it (no state kept)
    torch.testing.assert_close(pooler(hidden, mask), out)
    for b in range(2):
        h = hidden[b, : int(mask[b].sum())]  # (T_b, H): the real tokens only
        a = (pooler.ws2.weight @ torch.tanh(pooler.ws1.weight @ h.T)).softmax(dim=-1)  # (r, T_b)
        torch.testing.assert_close(out[b], (a @ h).flatten())
    a = pooler.weights(hidden, mask)
    eye = torch.eye(2)
    expected = sum(torch.linalg.matrix_norm(a[b] @ a[b].T - eye) ** 2 for b in range(2)) / 2
    torch.testing.assert_close(penalty, 0.5 * expected)
    assert SelfAttentivePooling(H, hops=2, penalty_weight=0).pool(hidden, mask)[1] is None  # switched off
    # two hops on two different tokens are orthogonal: no penalty; two identical uniform hops: ||[[-.5,.5],[.5,-.5]]||^2
    assert penalization(torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])) == 0
    assert penalization(torch.tensor([[[0.5, 0.5], [0.5, 0.5]]])) == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["attention", "mha", "self_attentive"])
def test_attention_weights_are_a_distribution_over_real_tokens(name):
    pooler = make(name)
    hidden, mask = torch.randn(2, 5, H), torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]])
    w = pooler.weights(hidden, mask)
    assert w.shape[0] == 2 and w.shape[-1] == 5
    pad = ~mask.bool().view(2, *([1] * (w.dim() - 2)), 5).expand_as(w)
    assert (w[pad] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))


def test_every_pooler_keeps_the_contract_the_classifier_and_explain_rely_on():
    """``Pooler``: out_features, forward, pool (with its auxiliary loss), and the optional capabilities declared."""
    from poolbench.model.poolers import Pooler

    hidden, mask = torch.randn(2, 5, H), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    for name, cls in pooler_configs().items():
        pooler = cls(hidden_size=H).eval()  # no dropout: forward and pool see the same
        assert isinstance(pooler, Pooler), name
        pooled, extra = pooler.pool(hidden, mask)
        assert pooled.shape == (2, pooler.out_features) and (extra is None or extra.dim() == 0), name
        torch.testing.assert_close(pooler(hidden, mask), pooled)
        if pooler.has_token_weights:
            assert pooler.weights(hidden, mask).shape[-1] == 5, name
        else:
            with pytest.raises(NotImplementedError):
                pooler.weights(hidden, mask)
        assert pooler.starts_from_encoder_pooler == (name == "pooler"), name
