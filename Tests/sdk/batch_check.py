"""The Files and Batch APIs and background responses through Mizan, driven by the official
openai SDK as a client would drive OpenAI: upload, create, poll, download; background
responses polled, streamed, resumed and cancelled; another key sees none of it.

Environment: MIZAN_BASE_URL, MIZAN_API_KEY, MIZAN_OTHER_KEY, MIZAN_CHAT_MODEL,
MIZAN_EMBED_MODEL, MIZAN_SLOW_MODEL (a model whose answers take seconds, for the cancel).
"""
import io
import json
import os
import sys
import time

import openai

base = os.environ["MIZAN_BASE_URL"] + "/v1"
client = openai.OpenAI(base_url=base, api_key=os.environ["MIZAN_API_KEY"], max_retries=0, timeout=60)
other = openai.OpenAI(base_url=base, api_key=os.environ["MIZAN_OTHER_KEY"], max_retries=0, timeout=60)
chat_model = os.environ["MIZAN_CHAT_MODEL"]
embed_model = os.environ["MIZAN_EMBED_MODEL"]
slow_model = os.environ["MIZAN_SLOW_MODEL"]


def check(condition, message):
    if not condition:
        print("FAILED: " + message, flush=True)
        sys.exit(1)


def run_batch(endpoint, lines, deadline=180):
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    uploaded = client.files.create(file=("input.jsonl", io.BytesIO(data)), purpose="batch")
    check(uploaded.purpose == "batch" and uploaded.id.startswith("file-"), f"upload: {uploaded}")
    check(client.files.retrieve(uploaded.id).filename == "input.jsonl", "file retrieved by id")
    check(any(f.id == uploaded.id for f in client.files.list()), "file listed")
    check(client.files.content(uploaded.id).text.count("\n") == len(lines), "input downloaded line for line")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h", metadata={"suite": "e2e"}
    )
    check(batch.status in ("validating", "in_progress"), f"new batch status {batch.status}")
    check(batch.metadata == {"suite": "e2e"}, "metadata kept")
    started = time.time()
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        check(time.time() - started < deadline, f"batch {batch.id} still {batch.status} after {deadline} s: {batch.request_counts}")
        time.sleep(0.5)
        batch = client.batches.retrieve(batch.id)
    check(batch.status == "completed", f"batch ended {batch.status}: {batch}")
    check(batch.request_counts.total == len(lines), f"counts {batch.request_counts}")
    check(batch.request_counts.completed == len(lines) and batch.request_counts.failed == 0, f"counts {batch.request_counts}")
    check(batch.error_file_id is None, "no error file")
    check(any(b.id == batch.id for b in client.batches.list(limit=100)), "batch listed")
    output = client.files.content(batch.output_file_id).text
    results = [json.loads(line) for line in output.splitlines() if line.strip()]
    ids = [result["custom_id"] for result in results]
    check(sorted(ids) == sorted(line["custom_id"] for line in lines), "every custom_id exactly once")
    check(len(set(ids)) == len(ids), "no custom_id twice")
    for result in results:
        check(result["error"] is None and result["response"]["status_code"] == 200, f"line answered: {result}")
        check(result["id"].startswith("batch_req_") and result["response"]["request_id"], "line ids")
    return uploaded, batch, results


# 200 chat lines.
chat_lines = [
    {
        "custom_id": f"chat-{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": chat_model, "messages": [{"role": "user", "content": f"question {i}"}]},
    }
    for i in range(200)
]
uploaded, batch, results = run_batch("/v1/chat/completions", chat_lines)
for result in results:
    content = result["response"]["body"]["choices"][0]["message"]["content"]
    check(isinstance(content, str) and content, f"an answer for {result['custom_id']}")
print(f"chat batch: {len(results)} lines, served by {getattr(batch, 'mizan_served', None)}", flush=True)

# 50 embedding lines.
embed_lines = [
    {"custom_id": f"emb-{i}", "method": "POST", "url": "/v1/embeddings", "body": {"model": embed_model, "input": f"text {i}"}}
    for i in range(50)
]
_, embed_batch, embed_results = run_batch("/v1/embeddings", embed_lines)
for result in embed_results:
    vector = result["response"]["body"]["data"][0]["embedding"]
    check(isinstance(vector, list) and len(vector) > 0, "an embedding per line")
print(f"embeddings batch: {len(embed_results)} lines", flush=True)

# A malformed file is refused with its line.
bad = b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"x"}}\n{not json}\n'
try:
    client.files.create(file=("bad.jsonl", io.BytesIO(bad)), purpose="batch")
    check(False, "a malformed file was taken")
except openai.BadRequestError as error:
    check("Line 2" in str(error), f"the bad line named: {error}")

# Background responses: one polled to completed, one streamed and resumed, one cancelled.
queued = client.responses.create(model=chat_model, input="hello in the background", background=True)
check(queued.status == "queued" and queued.id.startswith("resp_"), f"queued at once: {queued.status}")
started = time.time()
done = queued
while done.status in ("queued", "in_progress"):
    check(time.time() - started < 60, f"background response still {done.status}")
    time.sleep(0.2)
    done = client.responses.retrieve(queued.id)
check(done.status == "completed", f"background response ended {done.status}: {done.error}")
check(done.output_text, "the background response has its text")

events = list(client.responses.create(model=chat_model, input="stream me", background=True, stream=True))
types = [event.type for event in events]
check(types[0] == "response.created" and types[-1] == "response.completed", f"stream events {types}")
numbers = [event.sequence_number for event in events]
check(numbers == list(range(len(events))), f"numbered events {numbers}")
response_id = events[0].response.id
resumed = list(client.responses.retrieve(response_id, stream=True, starting_after=1))
check([event.sequence_number for event in resumed] == numbers[2:], "a resumed stream starts after the number given")
check(resumed[-1].type == "response.completed", "the resumed stream ends completed")

slow = client.responses.create(model=slow_model, input="take your time", background=True)
cancelled = client.responses.cancel(slow.id)
check(cancelled.status == "cancelled", f"cancelled: {cancelled.status}")
time.sleep(1)
check(client.responses.retrieve(slow.id).status == "cancelled", "stays cancelled")

# Another key sees none of it.
for attempt in (
    lambda: other.files.retrieve(uploaded.id),
    lambda: other.files.content(batch.output_file_id),
    lambda: other.batches.retrieve(batch.id),
    lambda: other.responses.retrieve(queued.id),
    lambda: other.batches.cancel(batch.id),
):
    try:
        attempt()
        check(False, "another key saw a file, batch or response")
    except openai.NotFoundError:
        pass
check(all(f.id != uploaded.id for f in other.files.list()), "another key's list lacks the file")
check(all(b.id != batch.id for b in other.batches.list()), "another key's list lacks the batch")

# Deleting the input of an ended batch.
check(client.files.delete(uploaded.id).deleted, "file deleted")
try:
    client.files.retrieve(uploaded.id)
    check(False, "a deleted file is still there")
except openai.NotFoundError:
    pass
print("batch sdk check passed", flush=True)
