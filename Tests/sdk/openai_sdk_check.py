"""Drives a running Mizan gateway with the official `openai` Python SDK.

Run by the end-to-end tests (OpenAISDKTests.swift) with MIZAN_BASE_URL, MIZAN_API_KEY and
MIZAN_MODEL set; exits non-zero with a message on the first mismatch.
"""
import os
import sys

import openai

base_url = os.environ["MIZAN_BASE_URL"] + "/v1"
model = os.environ["MIZAN_MODEL"]
client = openai.OpenAI(base_url=base_url, api_key=os.environ["MIZAN_API_KEY"], max_retries=0, timeout=30)
messages = [{"role": "user", "content": "say four words"}]


def check(condition, message):
    if not condition:
        print("openai sdk check failed: " + message, file=sys.stderr)
        sys.exit(1)


completion = client.chat.completions.create(model=model, messages=messages, temperature=0.2)
check(bool(completion.choices[0].message.content), "non-stream answer has no content")
check(completion.usage is not None and completion.usage.completion_tokens == 4, "non-stream usage: %r" % completion.usage)

chunks = list(client.chat.completions.create(
    model=model, messages=messages, stream=True, stream_options={"include_usage": True}))
text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
check(len(text.split()) == 4, "streamed text: %r" % text)
check(chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4, "stream usage chunk missing")

models = [m.id for m in client.models.list().data]
check(model in models, "models list: %r" % models)

try:
    client.chat.completions.create(model="no-such-model", messages=messages)
    check(False, "an unknown model was accepted")
except openai.NotFoundError:
    pass

bad = openai.OpenAI(base_url=base_url, api_key="mzn_sk_not_a_key", max_retries=0, timeout=30)
try:
    bad.chat.completions.create(model=model, messages=messages)
    check(False, "a bad key was accepted")
except openai.AuthenticationError:
    pass

print("openai sdk check passed")
