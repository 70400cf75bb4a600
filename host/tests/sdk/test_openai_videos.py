"""The official OpenAI Python SDK's videos API against a running Transit.

Driven by the Rust test `tasks::the_openai_sdk_creates_polls_and_downloads_a_video`,
which starts the gateway and an OpenAI videos mock and passes their
coordinates in the environment.
"""

import os
import warnings

import openai
import pytest

BASE_URL = os.environ["GATEWAY_BASE_URL"]
KEY = os.environ["GATEWAY_KEY"]
MODEL = os.environ["GATEWAY_MODEL"]

# The SDK marks the videos API deprecated; the calls still have to work.
warnings.filterwarnings("ignore", category=DeprecationWarning)


@pytest.fixture
def client():
    return openai.OpenAI(base_url=BASE_URL, api_key=KEY, max_retries=0)


def test_create_poll_download(client):
    video = client.videos.create(model=MODEL, prompt="A cat playing the piano", seconds="8", size="1280x720")
    assert video.object == "video"
    assert video.status == "queued"
    assert video.seconds == "8"

    video = client.videos.poll(video.id, poll_interval_ms=50)
    assert video.status == "completed"
    assert video.progress == 100

    content = client.videos.download_content(video.id)
    assert content.read().startswith(b"MP4-BYTES-")

    assert video.id in [v.id for v in client.videos.list()]


def test_other_keys_cannot_see_the_video(client):
    video = client.videos.create(model=MODEL, prompt="A quiet harbour", seconds="4")
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve("task_" + "0" * 32)
    stranger = openai.OpenAI(base_url=BASE_URL, api_key="sk-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.videos.retrieve(video.id)


def test_bad_request_is_an_openai_error(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.videos.create(model=MODEL, prompt="", seconds="4")
    assert caught.value.body["param"] == "prompt"
