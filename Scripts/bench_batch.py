#!/usr/bin/env python3
"""Scripts/bench --only batch: a batch's throughput and its cost to interactive traffic, each beside
its baseline in the same run.

Starts release mizan-mock-provider, mizan-gateway and mizan-agent processes on 127.0.0.1 (a mock
with 8 slots and a 100 ms service time stands in for a GPU server behind one node), measures,
stops them, and prints one JSON figure per line (the format of Scripts/bench's figures.jsonl).

  throughput   N chat lines as one batch on the idle node (upload, create, poll to completed): lines
               per second, beside the same N requests sent by 32 clients straight through the gateway.
  interactive  one client's requests one after another while a batch fills the node: their p99
               latency, beside the same requests on the idle node (live traffic keeps one slot
               free, --live-headroom, for --live-window after it; 2 s here).
"""
import argparse, concurrent.futures as futures, json, os, re, signal, statistics, subprocess, sys, tempfile, time
import urllib.request, urllib.error

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_processes import *  # noqa: E402,F403 (the processes, requests and figures every part shares)


def upload(url, token, lines):
    boundary = "mizan-bench-boundary"
    content = "".join(json.dumps(line) + "\n" for line in lines)
    data = ("--%s\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
            "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\r\n%s\r\n--%s--\r\n"
            % (boundary, boundary, content, boundary)).encode()
    req = urllib.request.Request(url + "/v1/files", data=data, method="POST")
    req.add_header("Content-Type", "multipart/form-data; boundary=" + boundary)
    req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req, timeout=120) as answer:
        return json.loads(answer.read())["id"]


def run_batch(url, token, count, tag):
    lines = [{"custom_id": "%s-%d" % (tag, i), "method": "POST", "url": "/v1/chat/completions", "body": chat("m", "line %d" % i)}
             for i in range(count)]
    file_id = upload(url, token, lines)
    started = time.monotonic()
    status, batch = request(url + "/v1/batches", {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                                  "completion_window": "24h"}, token)
    if status != 200:
        raise SystemExit("bench: batch: create failed: %s %s" % (status, batch))
    return batch["id"], started


def wait_batch(url, token, batch_id, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        _, batch = request(url + "/v1/batches/" + batch_id, token=token)
        if batch.get("status") in ("completed", "failed", "expired", "cancelled"):
            return batch
        time.sleep(0.05)
    raise SystemExit("bench: batch: %s did not end" % batch_id)


try:
    count = 200 if args.quick else 800
    service = 0.1
    port = mock("mock", "--models", "m", "--slots", "8", "--service-ms", str(int(service * 1000)))
    # Live traffic keeps a slot of the node free for --live-window after it; a short window here so
    # that the batch's throughput is measured on an idle node (what batches are for).
    live_window = 2.0
    url = gateway("gw", "--live-window", str(live_window))
    token = key(url, "bench")
    agent(url, "node", port, 8, "--models", "m")
    wait_nodes(url, 1)
    # Warm up the path.
    for _ in range(8):
        timed(url, token, chat("m"))

    log("throughput: %d requests from 32 clients" % count)
    started = time.monotonic()
    with futures.ThreadPoolExecutor(max_workers=32) as pool:
        direct = list(pool.map(lambda i: timed(url, token, chat("m", "line %d" % i)), range(count)))
    by_hand = count / (time.monotonic() - started)
    errors = sum(1 for r in direct if r[0] != 200)

    time.sleep(live_window + 0.5)
    log("throughput: %d lines as a batch" % count)
    batch_id, started = run_batch(url, token, count, "t")
    batch = wait_batch(url, token, batch_id)
    as_batch = count / (time.monotonic() - started)
    counts = batch.get("request_counts") or {}
    errors += (counts.get("total", 0) - counts.get("completed", 0)) + (batch.get("status") != "completed")
    log("throughput: %.1f lines/s as a batch, %.1f by hand" % (as_batch, by_hand))
    figure("batch", "lines per second through a batch (1 node, 8 slots x 100 ms)", "lines/s", as_batch, by_hand,
           "the same requests from 32 clients through the gateway", "ratio", ">=", 0.9)

    log("interactive: idle")
    samples = 30 if args.quick else 100
    idle = [timed(url, token, chat("m"))[1] for _ in range(samples)]
    log("interactive: while a batch runs")
    batch_id, _ = run_batch(url, token, count * 4, "i")
    time.sleep(1.0)
    busy = []
    for _ in range(samples):
        status, took, _ = timed(url, token, chat("m"))
        errors += status != 200
        busy.append(took)
    _, batch = request(url + "/v1/batches/" + batch_id, token=token)
    log("interactive: the batch was %s with %s" % (batch.get("status"), batch.get("request_counts")))
    request(url + "/v1/batches/%s/cancel" % batch_id, {}, token)
    wait_batch(url, token, batch_id)
    figure("batch", "interactive p99 while a batch fills the node", "ms", pct(busy, 0.99) * 1000, pct(idle, 0.99) * 1000,
           "the same requests on the idle node", "ratio", "<=", 1.5)
    figure("batch", "errors in the batch runs", "", errors, 0, "none", "value", "<", 0.5)
finally:
    stop_all()
