"""The official google-genai Python SDK against a running Transit.

Driven by the Rust test `inbound::genai_sdk_*`: Gemini's generateContent
family served by a channel that does not speak it (translated).
"""

import os

import pytest
from google import genai
from google.genai import types

BASE_URL = os.environ["GATEWAY_ROOT_URL"]
KEY = os.environ["GATEWAY_KEY"]
MODEL = os.environ["GATEWAY_MODEL"]
REPLY = os.environ["EXPECTED_REPLY"]


@pytest.fixture(params=["v1beta", "v1"])
def client(request):
    return genai.Client(
        api_key=KEY,
        http_options=types.HttpOptions(base_url=BASE_URL, api_version=request.param),
    )


def test_generate_content(client):
    response = client.models.generate_content(
        model=MODEL,
        contents="Say hello",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=256),
    )
    assert response.text == REPLY
    assert response.usage_metadata.prompt_token_count > 0
    assert response.usage_metadata.candidates_token_count > 0


def test_generate_content_stream(client):
    text = ""
    last = None
    for chunk in client.models.generate_content_stream(model=MODEL, contents="Say hello"):
        text += chunk.text or ""
        last = chunk
    assert text == REPLY
    assert last.usage_metadata.total_token_count > 0


def test_count_tokens(client):
    count = client.models.count_tokens(model=MODEL, contents="Say hello to the whole wide world")
    assert count.total_tokens > 0


def test_bad_key_is_rejected():
    bad = genai.Client(api_key="sk-wrong", http_options=types.HttpOptions(base_url=BASE_URL))
    with pytest.raises(genai.errors.ClientError) as caught:
        bad.models.generate_content(model=MODEL, contents="hi")
    assert caught.value.code == 401
