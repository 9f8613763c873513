"""Tiny random teachers of every supported family, saved as local HF directories with a tokenizer
of their kind (no downloads): BERT and ELECTRA with the real WordPiece vocabulary (token types),
DistilBERT with it and no token types, RoBERTa and XLM-RoBERTa with a byte-level BPE trained here
on the synthetic sentences (no token types, positions offset by ``padding_idx + 1``)."""
from __future__ import annotations

from pathlib import Path

import torch
from conftest_kd import _FILL, _GOOD, load_base_tokenizer

FAMILIES = ("bert", "roberta", "xlm-roberta", "electra", "distilbert")


def _bpe_tokenizer():
    """A byte-level BPE tokenizer of RoBERTa's kind (``<s> a </s></s> b </s>``, no token types),
    trained on the synthetic vocabulary."""
    import transformers
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    bpe = ByteLevelBPETokenizer(add_prefix_space=True)
    words = _FILL + _GOOD + ["bad"]
    bpe.train_from_iterator([" ".join(words)] * 50, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe._tokenizer.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    return transformers.RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                             sep_token="</s>", cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
                                             mask_token="<mask>")


def make_teacher(path: Path, kind: str, seed: int = 0) -> Path:
    """A random 2-layer, 32-wide teacher of family ``kind`` with its tokenizer, saved at ``path``."""
    import transformers as tf
    torch.manual_seed(seed)
    if kind in ("roberta", "xlm-roberta"):
        tok = _bpe_tokenizer()
    else:
        tok = load_base_tokenizer()
        if kind == "distilbert":
            tok = tf.DistilBertTokenizerFast(tokenizer_object=tok.backend_tokenizer, model_max_length=512)
    v = len(tok)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=128)
    model = {
        "bert": lambda: tf.BertModel(tf.BertConfig(vocab_size=v, **small)),
        "electra": lambda: tf.ElectraModel(tf.ElectraConfig(vocab_size=v, embedding_size=32, **small)),
        "roberta": lambda: tf.RobertaModel(tf.RobertaConfig(vocab_size=v, type_vocab_size=1, pad_token_id=1,
                                                            **{**small, "max_position_embeddings": 130})),
        "xlm-roberta": lambda: tf.XLMRobertaModel(tf.XLMRobertaConfig(vocab_size=v, type_vocab_size=1, pad_token_id=1,
                                                                      **{**small, "max_position_embeddings": 130})),
        "distilbert": lambda: tf.DistilBertModel(tf.DistilBertConfig(vocab_size=v, dim=32, n_layers=2, n_heads=2,
                                                                     hidden_dim=64, max_position_embeddings=128)),
    }[kind]()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
