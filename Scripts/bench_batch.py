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

parser = argparse.ArgumentParser()
parser.add_argument("--bin", required=True)
parser.add_argument("--quick", action="store_true")
args = parser.parse_args()
BIN = args.bin
WORK = tempfile.mkdtemp(prefix="mizan-batch-")
PROCS = []
ADMIN = "bench"


def log(message):
    print("bench: batch: " + message, file=sys.stderr, flush=True)


def start(name, argv):
    out = open(os.path.join(WORK, name + ".log"), "w")
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    PROCS.append(proc)
    return proc


def port_of(name, timeout=60):
    path = os.path.join(WORK, name + ".log")
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = open(path).read() if os.path.exists(path) else ""
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
        if match:
            return int(match.group(1))
        time.sleep(0.05)
    raise SystemExit("bench: batch: %s did not start:\n%s" % (name, open(path).read()))


def stop_all():
    for proc in PROCS:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in PROCS:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    PROCS.clear()


def request(url, body=None, token=None, headers=None, timeout=120):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, {}


def mock(name, *flags):
    start(name, [os.path.join(BIN, "mizan-mock-provider"), "--port", "0", *flags])
    return port_of(name)


def gateway(name, *flags):
    start(name, [os.path.join(BIN, "mizan-gateway"), "--port", "0", "--admin-token", ADMIN, "--database-url", "memory:",
                 "--log-level", "notice", *flags])
    return "http://127.0.0.1:%d" % port_of(name)


def key(url, name, *options):
    out = subprocess.run([os.path.join(BIN, "mizan"), "--gateway", url, "--admin-token", ADMIN, "keys", "create", "--name", name,
                          "--json", *options], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["key"]


def agent(url, name, provider_port, concurrency, *flags):
    out = subprocess.run([os.path.join(BIN, "mizan"), "--gateway", url, "--admin-token", ADMIN, "nodes", "create", "--name", name,
                          "--json"], capture_output=True, text=True, check=True).stdout
    token = json.loads(out)["registrationToken"]
    start(name, [os.path.join(BIN, "mizan-agent"), "--gateway", url, "--registration-token", token, "--token-file",
                 os.path.join(WORK, name + ".token"), "--provider", "http://127.0.0.1:%d/v1" % provider_port, "--max-concurrency",
                 str(concurrency), "--heartbeat-interval", "0.5", "--log-level", "warning", *flags])


def wait_nodes(url, count):
    for _ in range(300):
        _, nodes = request(url + "/admin/v1/nodes", token=ADMIN)
        if sum(1 for n in nodes.get("data", []) if n.get("condition") == "healthy") >= count:
            return
        time.sleep(0.1)
    raise SystemExit("bench: batch: fewer than %d healthy nodes" % count)


def chat(model, content="hello there", messages=None):
    return {"model": model, "messages": messages or [{"role": "user", "content": content}]}


def timed(url, token, body, headers=None):
    started = time.monotonic()
    status, answer = request(url + "/v1/chat/completions", body, token, headers)
    return status, time.monotonic() - started, answer


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def figure(group, name, unit, value, baseline, baseline_name, on, op, limit):
    print(json.dumps({"group": group, "figure": name, "unit": unit, "value": value, "baseline": baseline,
                      "baselineName": baseline_name, "targetOn": on, "targetOp": op, "targetLimit": limit}), flush=True)




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
