"""The official Anthropic Python SDK against a running Transit.

Driven by the Rust test `inbound::anthropic_sdk_*`, once against a Claude
channel (passed through) and once against an OpenAI channel (translated).
"""

import os

import anthropic
import pytest

BASE_URL = os.environ["GATEWAY_ROOT_URL"]
KEY = os.environ["GATEWAY_KEY"]
MODEL = os.environ["GATEWAY_MODEL"]
REPLY = os.environ["EXPECTED_REPLY"]
# "claude": the channel answers tool calls when told to (tool_choice any).
CHANNEL = os.environ["CHANNEL_KIND"]


@pytest.fixture
def client():
    return anthropic.Anthropic(base_url=BASE_URL, api_key=KEY, max_retries=0)


def test_messages_create(client):
    message = client.messages.create(
        model=MODEL,
        max_tokens=256,
        system="Be brief.",
        messages=[{"role": "user", "content": "Say hello"}],
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == REPLY
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0


def test_messages_stream(client):
    with client.messages.stream(
        model=MODEL,
        max_tokens=256,
        messages=[{"role": "user", "content": "Say hello"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REPLY
    assert final.content[0].text == REPLY
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_tools(client):
    tools = [
        {
            "name": "get_weather",
            "description": "The weather in a city",
            "input_schema": {
                "type": "object",
                "properties": {"location": {"type": "string"}},
                "required": ["location"],
            },
        }
    ]
    message = client.messages.create(
        model=MODEL,
        max_tokens=256,
        tools=tools,
        tool_choice={"type": "any"} if CHANNEL == "claude" else {"type": "auto"},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    if CHANNEL == "claude":
        assert message.stop_reason == "tool_use"
        block = message.content[0]
        assert block.type == "tool_use"
        assert block.name == "get_weather"
        assert block.input == {"location": "Paris"}
    else:
        assert message.content[0].text == REPLY


def test_count_tokens(client):
    count = client.messages.count_tokens(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hello to the whole wide world"}],
    )
    assert count.input_tokens > 0


def test_errors_are_anthropic_shaped(client):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=16, messages=[])
    assert caught.value.body["type"] == "error"
    bad = anthropic.Anthropic(base_url=BASE_URL, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
