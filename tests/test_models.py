"""Model resolution and the options read from a model's config files, on real model files."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from conftest import cli, cli_inproc, make_model_dir

TEXTS = '{"text": "how do I resize images"}\n{"text": "a library for image processing"}\n'


def _vectors(r) -> np.ndarray:
    assert r.code == 0, r.err
    return np.array([rec["embedding"] for rec in r.records()], dtype=np.float32)


@pytest.fixture(scope="module")
def builtin_vectors() -> np.ndarray:
    return _vectors(cli_inproc("embed", input=TEXTS))


def test_local_directory_matches_builtin(tmp_path, builtin_vectors):
    d = make_model_dir(tmp_path / "mini")
    np.testing.assert_array_equal(_vectors(cli_inproc("embed", "-m", str(d), input=TEXTS)), builtin_vectors)


def test_hub_id_served_from_a_local_cache(tmp_path, builtin_vectors):
    make_model_dir(tmp_path / "models" / "acme--mini-onnx")
    env = {"EMBCLI_MODELS_DIR": str(tmp_path / "models")}
    np.testing.assert_array_equal(
        _vectors(cli_inproc("embed", "-m", "acme/mini-onnx", input=TEXTS, env=env)), builtin_vectors
    )
    r = cli_inproc("models", "list", "--json", env=env)
    assert {"name": "acme/mini-onnx", "source": "cache"}.items() <= orjson.loads(r.out)[1].items()
    # EMBCLI_MODEL sets the default.
    env["EMBCLI_MODEL"] = "acme/mini-onnx"
    r = cli_inproc("embed", input=TEXTS, env=env)
    assert "acme/mini-onnx" in r.err


def test_hub_id_offline_says_how_to_get_it(tmp_path):
    r = cli("embed", "-m", "nobody/no-such-model", input=TEXTS, env={"EMBCLI_MODELS_DIR": str(tmp_path)})
    assert r.code == 1 and r.out == b""
    assert "cannot download model 'nobody/no-such-model'" in r.err
    assert "embcli models pull nobody/no-such-model" in r.err and str(tmp_path) in r.err
    assert not any(tmp_path.iterdir()), "a failed download left files behind"


def test_directory_without_onnx_is_refused(tmp_path):
    d = make_model_dir(tmp_path / "m")
    (d / "onnx" / "model.onnx").unlink()
    r = cli_inproc("embed", "-m", str(d), input=TEXTS)
    assert r.code == 4 and "no ONNX graph" in r.err


def test_prompts_from_config_and_flags(tmp_path, builtin_vectors):
    prompts = {"prompts": {"query": "query: ", "passage": "passage: "}, "default_prompt_name": None}
    d = make_model_dir(tmp_path / "e5ish", config_sentence_transformers=prompts)
    named = _vectors(cli_inproc("embed", "-m", str(d), "--prompt-name", "query", input=TEXTS))
    literal = _vectors(cli_inproc("embed", "--prompt", "query: ", input=TEXTS))
    np.testing.assert_array_equal(named, literal)
    assert not np.allclose(named, builtin_vectors, atol=1e-3)
    r = cli_inproc("embed", "-m", str(d), "--prompt-name", "nope", input=TEXTS)
    assert r.code == 2 and "has no prompt named 'nope' (it has: query, passage)" in r.err
    # A default prompt name in the config applies without flags.
    d2 = make_model_dir(tmp_path / "default", config_sentence_transformers={**prompts, "default_prompt_name": "query"})
    np.testing.assert_array_equal(_vectors(cli_inproc("embed", "-m", str(d2), input=TEXTS)), literal)


def test_pooling_and_normalization_from_config_and_flags(tmp_path, builtin_vectors):
    cls = _vectors(cli_inproc("embed", "--pooling", "cls", input=TEXTS))
    assert not np.allclose(cls, builtin_vectors, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(cls, axis=1), 1.0, atol=1e-6)
    pooling = {"word_embedding_dimension": 384, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}
    d = make_model_dir(tmp_path / "cls")
    (d / "1_Pooling" / "config.json").write_bytes(orjson.dumps(pooling))
    np.testing.assert_array_equal(_vectors(cli_inproc("embed", "-m", str(d), input=TEXTS)), cls)
    raw = _vectors(cli_inproc("embed", "--no-normalize", input=TEXTS))
    assert np.linalg.norm(raw, axis=1).min() > 1.5  # MiniLM's mean-pooled norms are ~2-7
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), builtin_vectors, atol=1e-6)
    # A model without a Normalize module is not normalized unless asked.
    d = make_model_dir(tmp_path / "plain")
    (d / "modules.json").unlink()
    np.testing.assert_allclose(_vectors(cli_inproc("embed", "-m", str(d), input=TEXTS)), raw, atol=1e-6)
    np.testing.assert_allclose(
        _vectors(cli_inproc("embed", "-m", str(d), "--normalize", input=TEXTS)), builtin_vectors, atol=1e-6
    )


def test_max_length_from_sentence_bert_config(tmp_path):
    d = make_model_dir(tmp_path / "short", sentence_bert_config={"max_seq_length": 16})
    r = cli_inproc("embed", "-m", str(d), input=orjson.dumps({"text": "word " * 40}) + b"\n")
    assert r.code == 0 and "truncated to 16 tokens" in r.err


def test_models_info():
    r = cli_inproc("models", "info", "--json")
    assert r.code == 0, r.err
    info = orjson.loads(r.out)
    assert info["dimensions"] == 384 and info["max_length"] == 256
    assert info["pooling"] == "mean" and info["normalize"] is True
    # The graph that runs was built from the pinned fp32 weights and is checked against its record.
    assert info["model_id"] == "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
    assert info["sha256"] == info["sha256_pinned"]
    assert info["graph"]["kind"] in ("fp32", "fused", "int8") and "accuracy gate" in info["graph"]["why"]
    assert "CPUExecutionProvider" in info["execution_providers"]
    r = cli_inproc("models", "info")
    assert b"(checked)" in r.out and b"dimensions:   384" in r.out and b"graph kind:" in r.out
    assert cli_inproc("models", "info", "nope").code == 2


def test_models_list():
    r = cli_inproc("models", "list")
    assert r.code == 0 and b"all-MiniLM-L6-v2  builtin" in r.out and b"(default)" in r.out
