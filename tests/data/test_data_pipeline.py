"""Grain pipeline: schema, determinism, exact resume (plain state and through Orbax), host sharding."""

import numpy as np
import pytest

from rlp_jax.data import DataConfig, make_iterator, prepare
from rlp_jax.data.builtin import arithmetic_documents
from rlp_jax.data.sp_train import train_sentencepiece
from rlp_jax.data.tfds_io import read_texts
from rlp_jax.errors import UserError
from rlp_jax.tokenizer import load_tokenizer

N_DOCS = 120


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A tiny prepared dataset of numbered one-problem documents and a tokenizer for it."""
    root = tmp_path_factory.mktemp("pipeline")
    lines = [f"Document {i}. {d.text}" for i, d in enumerate(arithmetic_documents(N_DOCS, seed=3, problems_per_doc=1))]
    (root / "docs.jsonl").write_text("\n".join(f'{{"text": {__import__("json").dumps(t)}}}' for t in lines) + "\n")
    prepare("tiny", [str(root / "docs.jsonl")], str(root / "data"), validation_fraction=0.0)
    tok = train_sentencepiece(lines, str(root / "tok"), vocab_size=340)
    return {"data": str(root / "data"), "tokenizer": tok, "texts": lines}


def config(corpus, **kw):
    base = dict(data=corpus["data"], tokenizer=corpus["tokenizer"], seq_len=64, batch_size=4, seed=7)
    return DataConfig(**(base | kw))


def take(it, n):
    return [next(it) for _ in range(n)]


def assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b):
        assert a.keys() == b.keys() == {"tokens", "segment_ids", "positions"}
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("packing", ["concat", "pack"])
def test_batch_schema_segments_and_positions(corpus, packing):
    batch = next(make_iterator(config(corpus, packing=packing), 0, 1))
    for key in ("tokens", "segment_ids", "positions"):
        assert batch[key].shape == (4, 64) and batch[key].dtype == np.int32
    seg, pos, tokens = batch["segment_ids"], batch["positions"], batch["tokens"]
    assert np.all(tokens[seg == 0] == 0)  # padding uses the reserved pad id 0
    for b in range(4):
        expected, count = np.zeros(64, np.int32), 0
        for t in range(64):  # positions restart at 0 at every new segment (and window start)
            count = 0 if t == 0 or seg[b, t] != seg[b, t - 1] else count + 1
            expected[t] = count if seg[b, t] > 0 else 0
        np.testing.assert_array_equal(pos[b][seg[b] > 0], expected[seg[b] > 0])
        real = seg[b][seg[b] > 0]
        assert real[0] == 1 and np.all(np.diff(real) >= 0) and np.all(np.diff(real) <= 1)


def test_concat_keeps_every_token_in_order(corpus):
    cfg = config(corpus, shuffle=False, num_epochs=1, batch_size=1, prefetch=0)
    tok = load_tokenizer(corpus["tokenizer"])
    stream = np.concatenate([b["tokens"][0][b["segment_ids"][0] > 0] for b in make_iterator(cfg, 0, 1)])
    texts = read_texts(corpus["data"])
    expected = np.concatenate([[tok.bos_id] + tok.encode(t) + [tok.eos_id] for t in texts])
    np.testing.assert_array_equal(stream, expected)


def test_same_seed_same_batches_other_seed_differs(corpus):
    a = take(make_iterator(config(corpus), 0, 1), 6)
    b = take(make_iterator(config(corpus), 0, 1), 6)
    c = take(make_iterator(config(corpus, seed=8), 0, 1), 6)
    assert_same(a, b)
    assert not all(np.array_equal(x["tokens"], y["tokens"]) for x, y in zip(a, c))


@pytest.mark.parametrize("packing,k", [("concat", 3), ("pack", 5), ("concat", 80)])
def test_restore_after_k_batches_continues_exactly(corpus, packing, k):
    # k=80 (20k tokens, about 1.3 epochs) crosses an epoch boundary (the shuffle is re-seeded per epoch).
    cfg = config(corpus, packing=packing)
    full = take(make_iterator(cfg, 0, 1), k + 6)
    it = make_iterator(cfg, 0, 1)
    assert_same(take(it, k), full[:k])
    state = it.get_state()
    take(it, 2)  # the original iterator moves on; the saved state must not
    resumed = make_iterator(cfg, 0, 1)
    resumed.set_state(state)
    assert_same(take(resumed, 6), full[k:])


def test_resume_through_orbax_checkpoint_manager(corpus, tmp_path):
    grain = pytest.importorskip("grain")
    ocp = pytest.importorskip("orbax.checkpoint")
    cfg = config(corpus)
    full = take(make_iterator(cfg, 0, 1), 7)
    it = make_iterator(cfg, 0, 1)
    take(it, 4)
    handlers = {"state": ocp.StandardCheckpointHandler(), "iter": grain.checkpoint.CheckpointHandler()}
    with ocp.CheckpointManager(tmp_path / "ckpt", item_names=("state", "iter"), item_handlers=handlers) as mgr:
        mgr.save(4, args=ocp.args.Composite(state=ocp.args.StandardSave({"step": np.int32(4)}),
                                            iter=grain.checkpoint.CheckpointSave(it)))
        mgr.wait_until_finished()
    fresh = make_iterator(cfg, 0, 1)
    with ocp.CheckpointManager(tmp_path / "ckpt", item_names=("state", "iter"), item_handlers=handlers) as mgr:
        assert mgr.latest_step() == 4
        restored = mgr.restore(4, args=ocp.args.Composite(state=ocp.args.StandardRestore(),
                                                          iter=grain.checkpoint.CheckpointRestore(fresh)))
    assert int(restored.state["step"]) == 4
    assert_same(take(fresh, 3), full[4:])


def test_two_hosts_get_disjoint_shards_covering_the_data(corpus):
    tok = load_tokenizer(corpus["tokenizer"])
    seen = []
    for host in (0, 1):
        cfg = config(corpus, packing="pack", seq_len=256, batch_size=2, num_epochs=1)  # global: 1 per host
        docs = []
        for batch in make_iterator(cfg, host, 2):
            seg, tokens = batch["segment_ids"][0], batch["tokens"][0]
            for s in range(1, seg.max() + 1):
                ids = tokens[seg == s].tolist()
                assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id  # whole documents
                docs.append(tok.decode(ids[1:-1]))
        seen.append(docs)
    assert abs(len(seen[0]) - len(seen[1])) <= 1
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(corpus["texts"])


def test_tokenizer_larger_than_model_embedding_is_rejected(corpus):
    with pytest.raises(UserError, match=r"tokenizer vocabulary \(340\) is larger than the model's embedding \(300"):
        make_iterator(config(corpus, model_vocab_size=300), 0, 1)
    next(make_iterator(config(corpus, model_vocab_size=340), 0, 1))


def test_short_documents_are_skipped(corpus):
    # min_doc_tokens above every document's length: nothing left, the iterator ends at once.
    cfg = config(corpus, min_doc_tokens=10_000, num_epochs=1)
    assert list(make_iterator(cfg, 0, 1)) == []


def test_bad_config_and_missing_data_are_user_errors(corpus, tmp_path):
    with pytest.raises(UserError, match="packing"):
        make_iterator(config(corpus, packing="zip"), 0, 1)
    with pytest.raises(UserError, match="data dir not found"):
        make_iterator(config(corpus, data=str(tmp_path / "nope")), 0, 1)
    with pytest.raises(UserError, match="no split 'validation'"):
        make_iterator(config(corpus, split="validation"), 0, 1)
    with pytest.raises(UserError, match="process index 2"):
        make_iterator(config(corpus), 2, 2)
