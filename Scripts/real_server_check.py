"""Mizan against a real llama.cpp-based server (see Scripts/real-server-check)."""

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")
ADMIN = "real-server-check-admin"
PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]
# Gemma's end tokens (<eos> 1, <end_of_turn> 106) made impossible: every generation runs to max_tokens.
LONG = {"max_tokens": 1500, "logit_bias": {"1": -100, "106": -100}}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def request(port, method, path, body=None, token=None, timeout=600):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def wait_until(what, check, timeout=120):
    until = time.time() + timeout
    while time.time() < until:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    sys.exit(f"real-server-check: {what} did not happen within {timeout} s")


def wait_idle(server_pid, port):
    """Until the server answers its model list and uses under 0.1 s of CPU a second for 2 s."""
    wait_until("the server answering between generations", lambda: request(port, "GET", "/v1/models", timeout=5)[0] == 200, 300)
    quiet = 0
    while quiet < 2:
        before = cpu_seconds(server_pid)
        time.sleep(1)
        quiet = quiet + 1 if cpu_seconds(server_pid) - before < 0.1 else 0


def stream_and_leave(port, token, chunks=5):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    body = {"model": "gemma-local", "messages": PROMPT, "stream": True, **LONG}
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request("POST", "/v1/chat/completions", json.dumps(body), headers)
    resp = conn.getresponse()
    assert resp.status == 200, resp.status
    seen = 0
    while seen < chunks:
        line = resp.fp.readline()
        if line.startswith(b"data:"):
            seen += 1
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()


def json_and_give_up(port, token, after=2.0):
    try:
        request(port, "POST", "/v1/chat/completions", {"model": "gemma-local", "messages": PROMPT, **LONG}, token, timeout=after)
    except (socket.timeout, TimeoutError):
        pass


def measure_stream(server_pid, port, token):
    stream_and_leave(port, token)
    start = cpu_seconds(server_pid)
    time.sleep(4)
    return cpu_seconds(server_pid) - start


def measure_json(server_pid, port, token):
    sent = time.time()
    json_and_give_up(port, token)
    time.sleep(max(0, sent + 6 - time.time()))
    start = cpu_seconds(server_pid)
    time.sleep(4)
    return cpu_seconds(server_pid) - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--bin", required=True)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="mizan-real-server-")
    children = []

    def start(name, argv, env=None):
        log = open(os.path.join(work, name + ".log"), "w")
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        children.append(child)
        return child

    try:
        server_port, gateway_port = free_port(), free_port()
        server = start("server", [args.python, "-m", "llama_cpp.server", "--model", args.model, "--model_alias", "gemma-local",
                                  "--n_threads", "2", "--chat_format", "gemma", "--host", "127.0.0.1", "--port", str(server_port)])
        wait_until("the server listening", lambda: request(server_port, "GET", "/v1/models", timeout=5)[0] == 200)
        start("gateway", [f"{args.bin}/mizan-gateway", "--port", str(gateway_port), "--database-url", "memory:", "--admin-token", ADMIN])
        wait_until("the gateway listening", lambda: request(gateway_port, "GET", "/healthz", timeout=5)[0] == 200)
        status, data = request(gateway_port, "POST", "/admin/v1/nodes", {"name": "llama"}, ADMIN)
        registration = json.loads(data)["registrationToken"]
        status, data = request(gateway_port, "POST", "/admin/v1/keys", {"name": "check"}, ADMIN)
        key = json.loads(data)["key"]
        agent = start("agent", [f"{args.bin}/mizan-agent", "--gateway", f"http://127.0.0.1:{gateway_port}",
                                "--token-file", os.path.join(work, "node.token"), "--provider", f"http://127.0.0.1:{server_port}/v1",
                                "--max-concurrency", "1", "--name", "llama"], env={"MIZAN_REGISTRATION_TOKEN": registration})
        wait_until("the agent serving gemma-local",
                   lambda: b"gemma-local" in request(gateway_port, "GET", "/v1/models", token=key, timeout=5)[1])
        results = {}

        for label, port, token in [("straight", server_port, None), ("through Mizan", gateway_port, key)]:
            wait_idle(server.pid, server_port)
            results[f"stream, {label}"] = measure_stream(server.pid, port, token)
            wait_idle(server.pid, server_port)
            results[f"JSON, {label}"] = measure_json(server.pid, port, token)

        # A second request during a long generation is served after it, not refused.
        wait_idle(server.pid, server_port)
        long_answer = {}

        def long_stream():
            started = time.time()
            status, data = request(gateway_port, "POST", "/v1/chat/completions",
                                   {"model": "gemma-local", "messages": PROMPT, "stream": True, **LONG}, key)
            long_answer.update(status=status, seconds=time.time() - started, events=data.count(b"data:"))

        first = threading.Thread(target=long_stream)
        first.start()
        time.sleep(15)
        conditions = set()
        watching = True

        def watch():
            while watching:
                status, data = request(gateway_port, "GET", "/admin/v1/nodes", token=ADMIN, timeout=10)
                conditions.update(node["condition"] for node in json.loads(data)["data"])
                time.sleep(1)

        watcher = threading.Thread(target=watch)
        watcher.start()
        second_sent = time.time()
        second_status, second_body = request(gateway_port, "POST", "/v1/chat/completions",
                                             {"model": "gemma-local", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 16}, key)
        second_seconds = time.time() - second_sent
        first.join()
        watching = False
        watcher.join()

        # A JSON answer folded from the server's stream beside the server's own JSON answer.
        wait_idle(server.pid, server_port)
        fold_body = {"model": "gemma-local", "messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 24,
                     "temperature": 0, "seed": 7}
        _, direct = request(server_port, "POST", "/v1/chat/completions", fold_body)
        _, again = request(server_port, "POST", "/v1/chat/completions", fold_body)
        _, folded = request(gateway_port, "POST", "/v1/chat/completions", fold_body, key)
        direct, again, folded = json.loads(direct), json.loads(again), json.loads(folded)
        deterministic = direct["choices"][0]["message"]["content"] == again["choices"][0]["message"]["content"]
        # Does the server report usage in a stream when asked (stream_options.include_usage)?
        _, streamed = request(server_port, "POST", "/v1/chat/completions",
                              {**fold_body, "stream": True, "stream_options": {"include_usage": True}})
        streams_usage = b'"usage": {' in streamed or b'"usage":{' in streamed
        fields = {
            "object": (direct["object"], folded["object"]),
            "model": (direct["model"], folded["model"]),
            "choices[0].message.role": (direct["choices"][0]["message"]["role"], folded["choices"][0]["message"]["role"]),
            "choices[0].message.content": (direct["choices"][0]["message"]["content"], folded["choices"][0]["message"]["content"]),
            "choices[0].finish_reason": (direct["choices"][0]["finish_reason"], folded["choices"][0]["finish_reason"]),
            "usage.prompt_tokens": (direct["usage"]["prompt_tokens"], folded.get("usage", {}).get("prompt_tokens")),
            "usage.completion_tokens": (direct["usage"]["completion_tokens"], folded.get("usage", {}).get("completion_tokens")),
        }

        print("\nThe server's CPU after its client left (seconds of CPU):")
        for name, seconds in results.items():
            window = "4 s after leaving" if name.startswith("stream") else "6-10 s after sending, gave up at 2 s"
            print(f"  {name:28} {seconds:5.2f}  ({window})")
        print("\nA second request during a long generation:")
        print(f"  the long stream: HTTP {long_answer.get('status')}, {long_answer.get('events')} events in {long_answer.get('seconds', 0):.1f} s")
        print(f"  the second request: HTTP {second_status} after {second_seconds:.1f} s; node conditions seen meanwhile: {sorted(conditions)}")
        print("\nA JSON answer folded from the server's stream (server's own JSON | folded):")
        same = True
        for field, (a, b) in fields.items():
            # The server's own answers differ between two calls when it is not deterministic:
            # then the content is compared by its form (a string) only.
            equal = a == b or (field.endswith("content") and not deterministic and isinstance(a, str) and isinstance(b, str))
            # A server that streams no usage leaves the folded answer with Mizan's estimate.
            equal = equal or (field.startswith("usage.") and not streams_usage and isinstance(b, int) and b > 0)
            same = same and equal
            verdict = "same" if a == b else ("estimated" if field.startswith("usage.") and equal else ("same form" if equal else "DIFFERENT"))
            print(f"  {field:28} {verdict}: {json.dumps(a)[:50]} | {json.dumps(b)[:50]}")
        print(f"  (the server's own JSON answer was {'the same' if deterministic else 'different'} when asked twice; "
              f"its streams {'report' if streams_usage else 'do not report'} usage, so the folded usage is "
              f"{'the server' + chr(39) + 's' if streams_usage else 'an estimate'})")
        print(f"  keys: server {sorted(direct)} | folded {sorted(folded)}")
        unhealthy = "unhealthy" in open(os.path.join(work, "agent.log")).read()
        print(f"\nThe agent's log says unhealthy: {unhealthy}; logs in {work}")
        ok = second_status == 200 and long_answer.get("status") == 200 and conditions == {"healthy"} and same
        print("real-server-check:", "passed" if ok else "FAILED")
        sys.exit(0 if ok else 1)
    finally:
        for child in reversed(children):
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


if __name__ == "__main__":
    main()
