"""What Scripts/bench's Python parts share: their arguments (--bin, --quick), the release processes
they start on 127.0.0.1 (mock providers, a gateway, agents) and stop, requests, percentiles and
the figures they print (the format of Scripts/bench's figures.jsonl). Each part imports it whole.
"""
import argparse, json, os, re, signal, subprocess, sys, tempfile, time
import urllib.request, urllib.error

parser = argparse.ArgumentParser()
parser.add_argument("--bin", required=True)
parser.add_argument("--quick", action="store_true")
args = parser.parse_args()
BIN = args.bin
PART = os.path.basename(sys.argv[0])[len("bench_"):-len(".py")]
WORK = tempfile.mkdtemp(prefix="mizan-%s-" % PART)
PROCS = []
ADMIN = "bench"


def log(message):
    print("bench: %s: " % PART + message, file=sys.stderr, flush=True)


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
    raise SystemExit("bench: " + PART + ": %s did not start:\n%s" % (name, open(path).read()))


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
    raise SystemExit("bench: " + PART + ": fewer than %d healthy nodes" % count)


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
