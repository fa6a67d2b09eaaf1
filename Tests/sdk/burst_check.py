"""Parallel bursts of one API key through Mizan with the official `openai` Python SDK.

Run by the end-to-end tests (KeyBurstProcessTests.swift). Arguments: a JSON object with
"targets" (gateway base URLs, requests spread over them in turn), "key", "model", "requests"
(how many at once) and "stream" (a boolean). Prints one JSON line: how many were answered, the
tokens they used (each answer's usage), and the statuses of the refused ones.
"""
import json
import sys
import threading

import openai

spec = json.loads(sys.argv[1])
clients = [openai.OpenAI(base_url=url + "/v1", api_key=spec["key"], max_retries=0, timeout=60) for url in spec["targets"]]
messages = [{"role": "user", "content": "say a few words about the sea"}]
lock = threading.Lock()
result = {"answered": 0, "tokens": 0, "refused": {}}
start = threading.Barrier(spec["requests"])


def one(index):
    client = clients[index % len(clients)]
    start.wait()
    try:
        if spec["stream"]:
            usage = None
            for chunk in client.chat.completions.create(
                    model=spec["model"], messages=messages, stream=True, stream_options={"include_usage": True}):
                if chunk.usage is not None:
                    usage = chunk.usage
            tokens = usage.total_tokens if usage else 0
        else:
            completion = client.chat.completions.create(model=spec["model"], messages=messages)
            tokens = completion.usage.total_tokens if completion.usage else 0
        with lock:
            result["answered"] += 1
            result["tokens"] += tokens
    except openai.APIStatusError as error:
        with lock:
            key = "%d %s" % (error.status_code, getattr(error, "code", None) or "")
            result["refused"][key] = result["refused"].get(key, 0) + 1


threads = [threading.Thread(target=one, args=(index,)) for index in range(spec["requests"])]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(result))
