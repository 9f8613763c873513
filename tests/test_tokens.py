"""exprsearch.rows.tokens: tokenisation layout, the on-disk token cache, length-bucketed batches, 4-D masks."""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from conftest_kd import base_tokenizer, load_base_tokenizer  # noqa: F401  (fixture)

from exprsearch.rows.glue import read_split
from exprsearch.rows.tokens import Batch, Batcher, Encoded, encode, tokenizer_digest

PAIRS = [("The cat sat on the mat.", "A cat is sitting."),
         ("Stocks fell sharply on Monday after the announcement of new tariffs.", "Markets dropped."),
         ("Hi.", "Hello there, how are you doing today?")]
LONG = " ".join(["incomprehensibilities"] * 30)


def _rte(root: Path, rows) -> Path:
    d = root / "RTE"
    d.mkdir(parents=True, exist_ok=True)
    (d / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n" + "".join(
        f"{i}\t{a}\t{b}\t{'entailment' if i % 2 == 0 else 'not_entailment'}\n" for i, (a, b) in enumerate(rows)),
        encoding="utf-8")
    return root


def _sst(root: Path, sentences) -> Path:
    d = root / "SST-2"
    d.mkdir(parents=True, exist_ok=True)
    (d / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{s}\t{i % 2}\n" for i, s in enumerate(sentences)),
                                 encoding="utf-8")
    return root


def _pieces(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


# -- encode ------------------------------------------------------------------------------------

def test_pairs_are_cls_a_sep_b_sep(tmp_path, base_tokenizer):
    tok = base_tokenizer
    ex = read_split(_rte(tmp_path, PAIRS), "RTE", "train")
    enc = encode(ex, tok, 64)
    assert len(enc) == 3 and enc.input_ids.shape == enc.token_type_ids.shape
    for i, (a, b) in enumerate(PAIRS):
        pa, pb = _pieces(tok, a), _pieces(tok, b)
        want = [tok.cls_token_id] + pa + [tok.sep_token_id] + pb + [tok.sep_token_id]
        n = len(want)
        assert int(enc.lengths[i]) == n
        assert enc.input_ids[i, :n].tolist() == want
        assert enc.input_ids[i, n:].eq(0).all()  # right-padded with 0
        assert enc.token_type_ids[i, :n].tolist() == [0] * (len(pa) + 2) + [1] * (len(pb) + 1)
        assert enc.token_type_ids[i, n:].eq(0).all()
    assert enc.input_ids.shape[1] == int(enc.lengths.max())
    assert enc.labels.tolist() == [0.0, 1.0, 0.0]


def test_single_sentences_have_one_segment(tmp_path, base_tokenizer):
    tok = base_tokenizer
    sentences = ["a lovely film", "bad", "it was neither good nor bad , just long"]
    enc = encode(read_split(_sst(tmp_path, sentences), "SST-2", "train"), tok, 64)
    for i, s in enumerate(sentences):
        want = [tok.cls_token_id] + _pieces(tok, s) + [tok.sep_token_id]
        assert enc.input_ids[i, :len(want)].tolist() == want and int(enc.lengths[i]) == len(want)
    assert enc.token_type_ids.eq(0).all()


@pytest.mark.parametrize("max_len", [8, 16, 33])
def test_truncation_to_max_len(tmp_path, base_tokenizer, max_len):
    tok = base_tokenizer
    rows = PAIRS + [(LONG, "short one"), ("short", LONG), (LONG, LONG)]
    enc = encode(read_split(_rte(tmp_path, rows), "RTE", "train"), tok, max_len)
    assert enc.input_ids.shape[1] == max_len == int(enc.lengths.max())
    for i in range(len(rows)):
        n = int(enc.lengths[i])
        ids = enc.input_ids[i].tolist()
        assert n <= max_len and all(ids[:n]) and not any(ids[n:])
        assert ids[0] == tok.cls_token_id and ids[n - 1] == tok.sep_token_id
        assert ids[:n].count(tok.sep_token_id) == 2  # both segments survive truncation
    for i in (3, 4, 5):
        assert int(enc.lengths[i]) == max_len


# -- the cache ---------------------------------------------------------------------------------

def _sample_split(tmp_path):
    return read_split(_rte(tmp_path / "glue", PAIRS + [(LONG, "x")]), "RTE", "train")


def _equal(a: Encoded, b: Encoded) -> bool:
    return all(torch.equal(x, y) and x.dtype == y.dtype for x, y in
               zip((a.input_ids, a.token_type_ids, a.lengths, a.labels), (b.input_ids, b.token_type_ids,
                                                                             b.lengths, b.labels)))


def _boom(*a, **k):
    raise AssertionError("tokenizer called although the split is cached")


def test_second_call_loads_from_disk(tmp_path, monkeypatch):
    ex, cache = _sample_split(tmp_path), tmp_path / "cache"
    first = encode(ex, load_base_tokenizer(), 24, cache)
    files = list((cache / "tokens").glob("*.pt"))
    assert len(files) == 1 and files[0].name.startswith("RTE-train-")
    tok = load_base_tokenizer()  # a new process's tokenizer
    monkeypatch.setattr(type(tok), "__call__", _boom)
    again = encode(ex, tok, 24, cache)
    assert _equal(first, again)
    assert list((cache / "tokens").glob("*.pt")) == files
    assert not list((cache / "tokens").glob("*.tmp*"))  # written atomically


def test_same_tokenizer_object_hits_the_cache_bug(tmp_path, monkeypatch):
    ex, cache = _sample_split(tmp_path), tmp_path / "cache"
    tok = load_base_tokenizer()
    first = encode(ex, tok, 24, cache)
    monkeypatch.setattr(type(tok), "__call__", _boom)
    assert _equal(first, encode(ex, tok, 24, cache))


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    ex, cache = _sample_split(tmp_path), tmp_path / "cache"
    first = encode(ex, load_base_tokenizer(), 24, cache)
    (path,) = (cache / "tokens").glob("*.pt")
    path.write_bytes(b"not a torch file" + path.read_bytes()[:50])
    rebuilt = encode(ex, load_base_tokenizer(), 24, cache)
    assert _equal(first, rebuilt)
    assert _equal(first, Encoded(**torch.load(path, weights_only=True)))  # the file is whole again


def test_cache_key_changes_with_max_len_and_file(tmp_path):
    ex, cache = _sample_split(tmp_path), tmp_path / "cache"
    a = encode(ex, load_base_tokenizer(), 16, cache)
    b = encode(ex, load_base_tokenizer(), 32, cache)
    assert len(list((cache / "tokens").glob("*.pt"))) == 2
    assert a.input_ids.shape[1] == 16 and b.input_ids.shape[1] == 32
    # same name, different content -> a new key (the file's SHA-256 is in it)
    ex2 = read_split(_rte(tmp_path / "glue", PAIRS[::-1] + [(LONG, "x")]), "RTE", "train")
    c = encode(ex2, load_base_tokenizer(), 16, cache)
    assert len(list((cache / "tokens").glob("*.pt"))) == 3
    assert c.input_ids[0].tolist() == a.input_ids[2].tolist()[:c.input_ids.shape[1]]


def test_tokenizer_digest_is_stable_for_fresh_tokenizers():
    assert tokenizer_digest(load_base_tokenizer()) == tokenizer_digest(load_base_tokenizer())


# -- Batcher -----------------------------------------------------------------------------------

def _synthetic(n: int = 203, lmax: int = 40, seed: int = 0) -> Encoded:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, lmax + 1, (n,), generator=g)
    lengths[0] = lmax
    ids = torch.zeros(n, lmax, dtype=torch.int32)
    for i, n_i in enumerate(lengths.tolist()):
        ids[i, :n_i] = torch.randint(1, 1000, (n_i,), generator=g, dtype=torch.int32)
    types = (torch.arange(lmax)[None, :] > lengths[:, None] // 2).to(torch.int8) * (ids != 0)
    return Encoded(ids, types, lengths.to(torch.int32), torch.arange(n, dtype=torch.float32))


def _ceil8(v: int) -> int:
    return -(-v // 8) * 8


@pytest.mark.parametrize("bs,bucket", [(8, 4), (16, 50), (7, 1)])
def test_every_row_once_per_epoch_and_widths(bs, bucket):
    enc = _synthetic()
    b = Batcher(enc, bs, seed=3, bucket=bucket)
    for epoch in range(3):
        batches = list(b.epoch(epoch))
        assert len(batches) == len(b) == -(-len(enc) // bs)
        seen = torch.cat([x.index for x in batches]).tolist()
        assert sorted(seen) == list(range(len(enc)))
        for x in batches:
            rows = x.index.tolist()
            assert 1 <= len(rows) <= bs
            longest = max(int(enc.lengths[i]) for i in rows)
            assert x.input_ids.shape[1] == min(enc.input_ids.shape[1], _ceil8(longest))
            assert x.input_ids.dtype == x.token_type_ids.dtype == torch.long
            assert x.input_ids.tolist() == enc.input_ids[rows, :x.input_ids.shape[1]].long().tolist()
            assert x.token_type_ids.tolist() == enc.token_type_ids[rows, :x.input_ids.shape[1]].long().tolist()
            assert x.attention_mask.sum(1).tolist() == [int(enc.lengths[i]) for i in rows]
            assert x.labels.tolist() == [float(i) for i in rows]  # labels follow their rows


def test_batches_are_length_bucketed():
    enc = _synthetic()
    one_chunk = list(Batcher(enc, 8, seed=1, bucket=1000).epoch(0))  # a single sorted chunk
    spans = sorted((min(enc.lengths[x.index].tolist()), max(enc.lengths[x.index].tolist())) for x in one_chunk)
    assert all(hi <= lo2 for (_, hi), (lo2, _) in zip(spans, spans[1:]))  # batches don't overlap in length

    def padding(batches):
        return sum(x.input_ids.numel() - int(x.attention_mask.sum()) for x in batches)

    rng = random.Random(0)
    idx = list(range(len(enc)))
    rng.shuffle(idx)
    b = Batcher(enc, 8, seed=1, bucket=4)
    unbucketed = [b.make(idx[i:i + 8]) for i in range(0, len(idx), 8)]
    assert padding(b.epoch(0)) < 0.5 * padding(unbucketed)


def test_order_is_seeded_and_changes_per_epoch():
    enc = _synthetic()

    def order(seed, epoch):
        return [x.index.tolist() for x in Batcher(enc, 8, seed=seed, bucket=4).epoch(epoch)]

    assert order(5, 0) == order(5, 0)
    assert order(5, 1) == order(5, 1)
    assert order(5, 0) != order(5, 1)
    assert order(5, 0) != order(6, 0)
    stream = Batcher(enc, 8, seed=5, bucket=4).forever()
    first_two = [next(stream).index.tolist() for _ in range(2 * len(order(5, 0)))]
    assert first_two == order(5, 0) + order(5, 1)


def test_eval_order_covers_all_rows_sorted_by_length():
    enc = _synthetic(n=50)
    b = Batcher(enc, 16, shuffle=False)
    batches = list(b.epoch(0))
    assert [len(x.index) for x in batches] == [16, 16, 16, 2]
    flat = torch.cat([x.index for x in batches]).tolist()
    assert sorted(flat) == list(range(50))
    lens = [int(enc.lengths[i]) for i in flat]
    assert lens == sorted(lens)
    assert [x.index.tolist() for x in b.epoch(0)] == [x.index.tolist() for x in b.epoch(7)]  # no shuffling


def test_make_without_index_matches_epoch():
    b = Batcher(_synthetic(), 8, seed=2)
    for x in b.epoch(0):
        y = b.make(x.index.tolist())
        assert all(torch.equal(u, v) for u, v in zip(
            (x.input_ids, x.token_type_ids, x.attention_mask, x.labels, x.index),
            (y.input_ids, y.token_type_ids, y.attention_mask, y.labels, y.index)))


# -- model inputs ------------------------------------------------------------------------------

def test_model_inputs_masks():
    ids = torch.tensor([[101, 7, 102, 0], [101, 102, 0, 0]])
    b = Batch(ids, torch.zeros_like(ids), (ids != 0).long(), torch.zeros(2), torch.arange(2))
    sdpa, eager = b.model_inputs(), b.model_inputs(eager=True)
    assert sdpa["attention_mask"].shape == eager["attention_mask"].shape == (2, 1, 1, 4)
    assert sdpa["attention_mask"].dtype == torch.bool
    assert sdpa["attention_mask"][:, 0, 0].tolist() == [[True, True, True, False], [True, True, False, False]]
    m = eager["attention_mask"]
    assert m.dtype == torch.float32
    assert m[0, 0, 0, :3].eq(0).all() and m[1, 0, 0, :2].eq(0).all()
    assert m[0, 0, 0, 3] == m[1, 0, 0, 2] == torch.finfo(torch.float32).min
    assert sdpa["input_ids"] is ids


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_4d_mask_gives_the_same_logits_as_the_2d_mask(tmp_path, base_tokenizer, impl):
    from transformers import BertConfig, BertForSequenceClassification
    enc = encode(read_split(_rte(tmp_path, PAIRS + [("short", "tiny")]), "RTE", "train"), base_tokenizer, 64)
    batch = next(Batcher(enc, 8, shuffle=False, pad_to=1).epoch(0))
    assert not batch.attention_mask.bool().all()  # there is padding to mask
    cfg = BertConfig(vocab_size=base_tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    cfg._attn_implementation = impl
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg).eval()
    assert model.config._attn_implementation == impl
    keep = batch.attention_mask.bool()
    with torch.no_grad():
        plain = model(input_ids=batch.input_ids, token_type_ids=batch.token_type_ids,
                      attention_mask=batch.attention_mask, output_hidden_states=True)
        four_d = model(**batch.model_inputs(eager=impl == "eager"), output_hidden_states=True)
        unmasked = model(input_ids=batch.input_ids, token_type_ids=batch.token_type_ids, output_hidden_states=True)
    torch.testing.assert_close(four_d.logits, plain.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(four_d.hidden_states[-1][keep], plain.hidden_states[-1][keep], atol=1e-5, rtol=1e-5)
    # the mask matters for these rows: without it the real tokens also attend to the padding
    assert (unmasked.hidden_states[-1][keep] - plain.hidden_states[-1][keep]).abs().max() > 1e-2
