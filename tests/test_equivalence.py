"""The question poolbench grew from, as tests: which token do the transformers heads classify from?"""

from __future__ import annotations

from functools import partial

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertModel,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaModel,
)

from poolbench.model.classifier import PoolingClassifier
from poolbench.model.poolers import ClsPooling, DenseTanhPooling, RobertaHeadPooling

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, num_labels=4)


def batch(vocab: int, pad_id: int, first_id: int):
    torch.manual_seed(0)
    ids = torch.randint(5, vocab, (3, 9))
    ids[:, 0] = first_id
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0  # right padding in two rows
    mask[1, 4:] = 0
    return ids.masked_fill(mask == 0, pad_id), mask


def test_bert_pooler_pooling_reproduces_bert_for_sequence_classification(tmp_path):
    """pooling=pooler on a BERT checkpoint == BertForSequenceClassification (same checkpoint, same classifier)."""
    torch.manual_seed(0)
    checkpoint = BertModel(BertConfig(**SMALL))
    with torch.no_grad():
        checkpoint.pooler.dense.bias.normal_()  # a pooler that looks trained (fresh init has zero bias)
    checkpoint.save_pretrained(tmp_path)
    reference = BertForSequenceClassification.from_pretrained(tmp_path).eval()
    ours = PoolingClassifier(BertModel.from_pretrained(tmp_path), DenseTanhPooling, num_labels=4).eval()
    with torch.no_grad():
        ours.classifier.load_state_dict(reference.classifier.state_dict())
    assert ours.pooling.source == "checkpoint"  # the checkpoint's own pooler weights were reused
    ids, mask = batch(reference.config.vocab_size, 0, 101)
    expected = reference(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(ours(ids, mask), expected, rtol=1e-5, atol=1e-5)


def test_roberta_head_reads_only_the_first_token():
    """RobertaForSequenceClassification classifies from <s> alone: changing any other position changes nothing."""
    torch.manual_seed(0)
    head = RobertaForSequenceClassification(RobertaConfig(**SMALL)).eval().classifier
    features = torch.randn(2, 6, 32)
    changed_rest = features.clone()
    changed_rest[:, 1:] = torch.randn(2, 5, 32)
    changed_first = features.clone()
    changed_first[:, 0] = torch.randn(2, 32)
    with torch.no_grad():
        assert torch.equal(head(features), head(changed_rest))
        assert not torch.allclose(head(features), head(changed_first))


def roberta_pair(tmp_path, pooling, **model_kwargs):
    """A random RobertaForSequenceClassification and our model on the same encoder and head weights (eval)."""
    torch.manual_seed(0)
    RobertaModel(RobertaConfig(**SMALL), add_pooling_layer=False).save_pretrained(tmp_path)
    reference = RobertaForSequenceClassification.from_pretrained(tmp_path).eval()
    encoder = RobertaModel.from_pretrained(tmp_path, add_pooling_layer=False)
    ours = PoolingClassifier(encoder, pooling, 4, **model_kwargs).eval()
    with torch.no_grad():
        ours.pooling.dense.load_state_dict(reference.classifier.dense.state_dict())
        ours.classifier.load_state_dict(reference.classifier.out_proj.state_dict())
    return reference, ours


def test_roberta_head_is_pooler_pooling_on_the_first_token(tmp_path):
    """In eval mode RobertaClassificationHead == pooling=pooler (dense+tanh on <s>) + linear classifier."""
    reference, ours = roberta_pair(tmp_path, DenseTanhPooling)
    assert ours.pooling.source == "fresh"  # RoBERTa checkpoints have no pooler weights
    ids, mask = batch(reference.config.vocab_size, 1, 0)
    expected = reference(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(ours(ids, mask), expected, rtol=1e-5, atol=1e-5)
    # and its input is exactly what pooling=cls returns
    hidden = ours.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(ClsPooling(32)(hidden, mask), hidden[:, 0])


def test_roberta_head_pooling_reproduces_roberta_for_sequence_classification(tmp_path):
    """pooling=roberta_head + the classifier IS RobertaClassificationHead (dropout-dense-tanh-dropout-out_proj)."""
    reference, ours = roberta_pair(tmp_path, partial(RobertaHeadPooling, dropout=0.1), classifier_dropout=0.1)
    ids, mask = batch(reference.config.vocab_size, 1, 0)
    expected = reference(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(ours(ids, mask), expected, rtol=1e-5, atol=1e-5)
    # the same two dropouts in training: same random draws -> same logits
    reference.train()
    ours.train()
    torch.manual_seed(1)
    features = reference.roberta(input_ids=ids, attention_mask=mask).last_hidden_state
    train_ref = reference.classifier(features)
    torch.manual_seed(1)
    hidden = ours.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(ours(hidden_states=hidden, attention_mask=mask), train_ref, rtol=1e-5, atol=1e-5)
