"""Drives a running Mizan gateway's other endpoints with the official `openai` and `anthropic`
Python SDKs: embeddings, legacy completions (JSON and stream), Responses (create, a streamed
create and `responses.stream`), Anthropic Messages (`messages.create`, `messages.stream`) and
audio transcriptions (a multipart form; JSON and text), with their errors.

Run by the end-to-end tests (EndpointsProcessTests.swift) with MIZAN_BASE_URL, MIZAN_API_KEY and
MIZAN_MODELS (comma-separated; each is checked in turn) set, against a mock provider answering
MIZAN_TOKENS words; exits non-zero with a message on the first mismatch.
"""
import os
import sys

import anthropic
import openai

gateway = os.environ["MIZAN_BASE_URL"]
key = os.environ["MIZAN_API_KEY"]
models = os.environ["MIZAN_MODELS"].split(",")
tokens = int(os.environ.get("MIZAN_TOKENS", "4"))
client = openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0, timeout=30)
claude = anthropic.Anthropic(base_url=gateway, api_key=key, max_retries=0, timeout=30)


def check(condition, message):
    if not condition:
        print("endpoints sdk check failed: " + message, file=sys.stderr)
        sys.exit(1)


def run(model):
    # Embeddings: one string, then several (the SDK asks for base64 and decodes it).
    one = client.embeddings.create(model=model, input="the quick brown fox")
    check(len(one.data) == 1 and len(one.data[0].embedding) == 8, "one embedding: %r" % one.data)
    check(one.usage.prompt_tokens > 0, "embedding usage: %r" % one.usage)
    many = client.embeddings.create(model=model, input=["a", "b c", "d e f"])
    check([item.index for item in many.data] == [0, 1, 2], "three embeddings: %r" % many.data)
    check(many.data[0].embedding != many.data[1].embedding, "different inputs, different vectors")
    floats = client.embeddings.create(model=model, input="x", encoding_format="float")
    check(len(floats.data[0].embedding) == 8, "float embedding: %r" % floats.data)

    # Legacy completions, JSON and streamed (with a usage chunk).
    completion = client.completions.create(model=model, prompt="say four words", max_tokens=tokens)
    check(len(completion.choices[0].text.split()) == tokens, "completion text: %r" % completion.choices[0].text)
    check(completion.usage.completion_tokens == tokens, "completion usage: %r" % completion.usage)
    chunks = list(client.completions.create(
        model=model, prompt="say four words", max_tokens=tokens, stream=True, stream_options={"include_usage": True}))
    text = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    check(len(text.split()) == tokens, "streamed completion: %r" % text)
    check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == tokens, "completion stream usage missing")

    # Responses: JSON, a streamed create (named events in order), and the SDK's stream helper.
    response = client.responses.create(model=model, input="say four words")
    check(len(response.output_text.split()) == tokens, "response text: %r" % response.output_text)
    check(response.usage.output_tokens == tokens, "response usage: %r" % response.usage)
    events = list(client.responses.create(model=model, input="say four words", stream=True))
    types = [event.type for event in events]
    check(types[0] == "response.created" and types[-1] == "response.completed", "response events: %r" % types)
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    check(len(deltas.split()) == tokens, "response deltas: %r" % deltas)
    check(events[-1].response.usage.output_tokens == tokens, "response.completed usage: %r" % events[-1].response.usage)
    with client.responses.stream(model=model, input="say four words") as stream:
        streamed = "".join(event.delta for event in stream if event.type == "response.output_text.delta")
        final = stream.get_final_response()
    check(final.output_text == streamed and len(streamed.split()) == tokens, "responses.stream: %r / %r" % (streamed, final.output_text))

    # Anthropic Messages: JSON and streamed, with its usage, through x-api-key.
    message = claude.messages.create(model=model, max_tokens=tokens, messages=[{"role": "user", "content": "say four words"}])
    check(message.type == "message" and len(message.content[0].text.split()) == tokens, "message: %r" % message.content)
    check(message.usage.output_tokens == tokens and message.usage.input_tokens > 0, "message usage: %r" % message.usage)
    with claude.messages.stream(model=model, max_tokens=tokens, messages=[{"role": "user", "content": "say four words"}]) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    check(len(streamed.split()) == tokens and final.content[0].text == streamed, "messages.stream: %r" % streamed)
    check(final.usage.output_tokens == tokens, "streamed message usage: %r" % final.usage)

    # Audio transcriptions: a multipart form the SDK writes (the file and the model), answered as
    # JSON with usage, or as plain text when asked.
    audio = b"RIFF" + bytes(range(256)) * 8
    transcription = client.audio.transcriptions.create(model=model, file=("hello.wav", audio, "audio/wav"))
    check(len(transcription.text.split()) == tokens, "transcription: %r" % transcription)
    as_text = client.audio.transcriptions.create(model=model, file=("hello.wav", audio, "audio/wav"), response_format="text")
    check(isinstance(as_text, str) and len(as_text.split()) == tokens, "text transcription: %r" % as_text)

    # Errors: each endpoint's own shape, as each SDK maps it.
    try:
        claude.messages.create(model="no-such-model", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
        check(False, "an unknown model was accepted on /v1/messages")
    except anthropic.NotFoundError as error:
        check(error.body["type"] == "error" and error.body["error"]["type"] == "not_found_error", "anthropic error: %r" % error.body)
    try:
        anthropic.Anthropic(base_url=gateway, api_key="mzn_sk_not_a_key", max_retries=0).messages.create(
            model=model, max_tokens=4, messages=[{"role": "user", "content": "hi"}])
        check(False, "a bad key was accepted on /v1/messages")
    except anthropic.AuthenticationError:
        pass
    try:
        client.embeddings.create(model="no-such-model", input="x")
        check(False, "an unknown model was accepted on /v1/embeddings")
    except openai.NotFoundError as error:
        check(error.body["code"] == "model_not_found", "openai error: %r" % error.body)
    try:
        client.responses.create(model=model, input="x", extra_body={"stream": "yes"})
        check(False, "a stream that is not a boolean was accepted")
    except openai.BadRequestError:
        pass


for model in models:
    run(model)
print("endpoints sdk check passed")
