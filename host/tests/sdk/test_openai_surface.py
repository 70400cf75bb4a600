"""The official OpenAI Python SDK across the rest of the /v1 surface:
embeddings, images, audio (a real WAV upload, streamed speech),
moderations and the Responses API (plain and streamed, translated to chat).

Driven by the Rust test `surface::the_openai_sdk_covers_the_surface`.
"""

import io
import os
import wave

import openai
import pytest

BASE_URL = os.environ["GATEWAY_BASE_URL"]
KEY = os.environ["GATEWAY_KEY"]
CHAT_MODEL = os.environ["CHAT_MODEL"]
EMBED_MODEL = os.environ["EMBED_MODEL"]
REPLY = os.environ["EXPECTED_REPLY"]
TRANSCRIPT = os.environ["EXPECTED_TRANSCRIPT"]


@pytest.fixture
def client():
    return openai.OpenAI(base_url=BASE_URL, api_key=KEY, max_retries=0)


def small_wav():
    """Half a second of a quiet 440 Hz tone, 8 kHz mono 16-bit."""
    import math

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        frames = bytearray()
        for i in range(4000):
            sample = int(800 * math.sin(2 * math.pi * 440 * i / 8000))
            frames += sample.to_bytes(2, "little", signed=True)
        w.writeframes(bytes(frames))
    return buffer.getvalue()


def test_embeddings(client):
    result = client.embeddings.create(model=EMBED_MODEL, input=["hello", "world"])
    assert len(result.data[0].embedding) == 3
    assert result.usage.prompt_tokens > 0


def test_images_generate(client):
    result = client.images.generate(model="dall-e-3", prompt="A lighthouse at dusk", n=2)
    assert len(result.data) == 2
    assert result.data[0].url.startswith("https://")


def test_audio_transcription(client):
    wav = small_wav()
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    result = client.audio.transcriptions.create(model="whisper-1", file=("hello.wav", wav, "audio/wav"))
    assert result.text == TRANSCRIPT
    text = client.audio.translations.create(model="whisper-1", file=("hello.wav", wav), response_format="text")
    assert TRANSCRIPT in text


def test_audio_speech_streams(client):
    with client.audio.speech.with_streaming_response.create(model="tts-1", voice="alloy", input="Hello there") as response:
        assert response.headers["content-type"] == "audio/mpeg"
        audio = b"".join(response.iter_bytes())
    assert audio.startswith(b"ID3")
    assert len(audio) == 64 * 1024


def test_moderations(client):
    result = client.moderations.create(input=["hello", "world"])
    assert len(result.results) == 2
    assert result.results[0].flagged is False


def test_responses_create(client):
    response = client.responses.create(model=CHAT_MODEL, instructions="Be brief.", input="Say hello")
    assert response.status == "completed"
    assert response.output_text == REPLY
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0


def test_responses_stream(client):
    with client.responses.stream(model=CHAT_MODEL, input=[{"role": "user", "content": "Say hello"}]) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == REPLY
    assert final.output_text == REPLY
    assert final.usage.total_tokens > 0


def test_bad_input_is_a_clear_error(client):
    with pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(model="whisper-1", file=("x.wav", b"not audio at all"))
    with pytest.raises(openai.BadRequestError):
        client.images.generate(model="dall-e-3", prompt="x", n=11)
