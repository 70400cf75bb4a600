"""The official OpenAI Python SDK against a running Transit.

Driven by the Rust test `sdk::openai_python_sdk`, which starts the gateway
and a mock upstream and passes their coordinates in the environment.
"""

import os

import openai
import pytest

BASE_URL = os.environ["GATEWAY_BASE_URL"]
KEY = os.environ["GATEWAY_KEY"]
MODEL = os.environ["GATEWAY_MODEL"]
REPLY = os.environ["EXPECTED_REPLY"]
PROMPT_TOKENS = int(os.environ["EXPECTED_PROMPT_TOKENS"])
COMPLETION_TOKENS = int(os.environ["EXPECTED_COMPLETION_TOKENS"])


@pytest.fixture
def client():
    return openai.OpenAI(base_url=BASE_URL, api_key=KEY, max_retries=0)


def test_models_list(client):
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids


def test_chat_completion(client):
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello"}],
    )
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.completion_tokens == COMPLETION_TOKENS


def test_chat_completion_stream(client):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = ""
    usage = None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == REPLY
    assert usage is not None
    assert usage.completion_tokens == COMPLETION_TOKENS


def test_stream_without_usage_option(client):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello"}],
        stream=True,
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert all(c.usage is None for c in chunks)


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.code == "model_not_found"


def test_bad_key_is_an_authentication_error():
    bad = openai.OpenAI(base_url=BASE_URL, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])


def test_missing_messages_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=[])
    assert err.value.status_code == 400
