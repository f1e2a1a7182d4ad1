"""POST /v1/embeddings (SPEC endpoints): to OpenAI-kind providers byte for byte,
to Gemini converted both ways (batchEmbedContents), usage filled."""

import mock_upstream as mu
import openai
import pytest
from harness import Gateway, MockUpstream
from helpers import openai_client


def test_embeddings_to_openai_provider_pass_through(gateway: Gateway, upstream: MockUpstream):
    """An OpenAI embeddings request reaches an openai provider untouched but for the model."""
    r = openai_client(gateway).embeddings.create(model="openai/text-embedding-3-small", input=["alpha", "beta"])
    assert [d.index for d in r.data] == [0, 1]
    assert r.data[0].embedding == mu.embedding_for("alpha")
    rec = upstream.last()
    assert rec.path == "/v1/embeddings"
    assert rec.json()["model"] == "text-embedding-3-small"
    assert rec.json()["input"] == ["alpha", "beta"]
    assert r.usage.prompt_tokens > 0


def test_embeddings_to_gemini_provider_converted_both_ways(gateway: Gateway, upstream: MockUpstream):
    """OpenAI embeddings → Gemini batchEmbedContents (one request per input, model path),
    and the answer back in OpenAI's list shape with usage filled."""
    r = openai_client(gateway).embeddings.create(model="gemini/text-embedding-004", input=["one", "two", "three"])
    rec = upstream.last()
    assert rec.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    sent = rec.json()
    assert [q["content"]["parts"][0]["text"] for q in sent["requests"]] == ["one", "two", "three"]
    assert all(q["model"] == "models/text-embedding-004" for q in sent["requests"])
    assert rec.header("x-goog-api-key"), "the Gemini credential must be injected"
    assert [d.index for d in r.data] == [0, 1, 2]
    assert [d.embedding for d in r.data] == [mu.embedding_for(t) for t in ("one", "two", "three")]
    assert r.usage.prompt_tokens >= 3 and r.usage.total_tokens == r.usage.prompt_tokens


def test_embeddings_token_ids_to_gemini_are_a_clear_400(gateway: Gateway):
    """Token-id input cannot be expressed for Gemini: 400 naming `input`, in OpenAI's format."""
    with pytest.raises(openai.BadRequestError) as e:
        openai_client(gateway).embeddings.create(model="gemini/text-embedding-004", input=[[1, 2, 3]])
    assert "input" in str(e.value)
