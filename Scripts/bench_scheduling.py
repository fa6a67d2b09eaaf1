#!/usr/bin/env python3
"""Scripts/bench --only scheduling: the scheduler's figures, each beside its baseline in the same run.

Starts release mizan-mock-provider, mizan-gateway and mizan-agent processes on 127.0.0.1 (mocks with
slots and a service time stand in for GPU servers), measures, stops them, and prints one JSON
figure per line (the format of Scripts/bench's figures.jsonl).

  fairness  2 slots x 200 ms; key A sends 100 at once, 0.5 s later key B sends 10 one after another
            (each when the one before answered): B's p50 latency beside the service time, and B's slowest
            beside the same 10 sent under key A's name (first in, first out: the first waits for the flood).
  priority  2 slots x 200 ms; an interactive key's p99 during a batch key's flood of 200, beside the
            same requests from a standard key (the flood's class).
  spill     local-first, 1 local slot x 1 s, a route answering in 50 ms, spillAfterMs 300, 10 at once:
            the slowest spilled request, beside the route's own time.
  affinity  4 nodes, 40 conversations x 5 turns (8 at a time): the share of later turns on the node
            of the earlier ones and the mean latency (the mocks' prefix cache answers a known prefix
            sooner), beside the same with --affinity-wait-ms 0.
"""
import argparse, concurrent.futures as futures, json, os, re, signal, statistics, subprocess, sys, tempfile, time
import urllib.request, urllib.error

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_processes import *  # noqa: E402,F403 (the processes, requests and figures every part shares)


def flood_then(url, flood_key, flood_count, late_key, late_count, delay, late_headers=None):
    """flood_count requests at once from flood_key; after delay, late_count one after another from late_key."""
    pool = futures.ThreadPoolExecutor(max_workers=flood_count + 2)
    flood = [pool.submit(timed, url, flood_key, chat("m")) for _ in range(flood_count)]
    time.sleep(delay)
    late = []
    for _ in range(late_count):
        status, took, _ = timed(url, late_key, chat("m"), late_headers)
        late.append((status, took))
    errors = sum(1 for f in flood if f.result()[0] != 200) + sum(1 for s, _ in late if s != 200)
    pool.shutdown()
    return [t for _, t in late], errors


def two_slot_gateway(name):
    port = mock(name + "-mock", "--models", "m", "--slots", "2", "--service-ms", "200")
    url = gateway(name)
    agent(url, name + "-node", port, 2, "--models", "m")
    wait_nodes(url, 1)
    return url


try:
    service = 0.2
    log("fairness")
    url = two_slot_gateway("fair")
    a, b = key(url, "key-a"), key(url, "key-b")
    fair, errors_fair = flood_then(url, a, 100, b, 10, 0.5)
    fifo, errors_fifo = flood_then(url, a, 100, a, 10, 0.5)
    # B sends each request when the one before has answered; under FIFO the first waits behind the
    # whole flood, and the others find an empty queue.
    figure("scheduling", "another key behind a flood of 100: p50 latency", "ms", statistics.median(fair) * 1000,
           service * 1000, "one service time", "value", "<=", 2 * service * 1000)
    figure("scheduling", "another key behind a flood of 100: slowest of 10", "ms", max(fair) * 1000, max(fifo) * 1000,
           "the same requests under the flooding key (FIFO)", "ratio", "<", 0.1)
    stop_all()

    log("priority")
    url = two_slot_gateway("prio")
    batch, interactive, standard = key(url, "nightly", "--priority", "batch"), key(url, "dev", "--priority", "interactive"), key(url, "std")
    urgent, errors_prio = flood_then(url, batch, 200, interactive, 20, 0.5)
    plain, _ = flood_then(url, standard, 200, standard, 20, 0.5)
    figure("scheduling", "interactive behind a batch flood of 200: p99 latency", "ms", pct(urgent, 0.99) * 1000,
           pct(plain, 0.99) * 1000, "the same requests in the flood's class", "value", "<=", (service + service) * 1000)
    stop_all()

    log("spill")
    local = mock("spill-local", "--models", "m", "--slots", "1", "--service-ms", "1000")
    cloud = mock("spill-cloud", "--models", "cloud-m", "--latency-ms", "50")
    routes = os.path.join(WORK, "routes.json")
    json.dump({"models": [{"model": "m", "placement": "local-first", "spillAfterMs": 300}],
               "routes": [{"model": "m", "baseURL": "http://127.0.0.1:%d/v1" % cloud, "upstreamModel": "cloud-m"}]}, open(routes, "w"))
    url = gateway("spill", "--routes", routes)
    token = key(url, "spill")
    agent(url, "spill-node", local, 1, "--models", "m")
    wait_nodes(url, 1)
    route_alone = [timed("http://127.0.0.1:%d" % cloud, None, chat("cloud-m"))[1] for _ in range(5)]
    with futures.ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda _: timed(url, token, chat("m")), range(10)))
    served = [r[2].get("model") for r in results]
    spilled = [r[1] for r in results if r[2].get("model") == "cloud-m"]
    errors_spill = sum(1 for r in results if r[0] != 200)
    log("spill: %d local, %d by the route" % (served.count("m"), served.count("cloud-m")))
    figure("scheduling", "local-first: requests spilled to the route (of 10, 1 local slot)", "", len(spilled), 9,
           "the 9 a busy slot cannot take", "value", ">=", 9)
    figure("scheduling", "local-first: the slowest spilled request", "ms", max(spilled or [99]) * 1000,
           statistics.median(route_alone) * 1000, "the route alone", "value", "<=", 300 + statistics.median(route_alone) * 1000 + 100)
    stop_all()

    log("affinity")
    conversations, turns = (16, 4) if args.quick else (40, 5)

    def affinity_run(name, *flags):
        url = gateway(name, *flags)
        token = key(url, name)
        for index in range(4):
            port = mock("%s-mock%d" % (name, index), "--models", "box-%d" % index, "--prefix-cache", "--latency-ms", "100",
                        "--cached-prefill-ms", "10", "--tokens", "8")
            agent(url, "%s-node%d" % (name, index), port, 4, "--model", "chat=box-%d" % index)
        wait_nodes(url, 4)

        def conversation(number):
            messages = [{"role": "system", "content": "You are assistant %d." % number}]
            home, same, later, took, errors = None, 0, 0, [], 0
            for turn in range(turns):
                messages.append({"role": "user", "content": "turn %d of conversation %d" % (turn, number)})
                status, seconds, answer = timed(url, token, chat("chat", messages=messages))
                errors += status != 200
                node = answer.get("model")
                if home is None:
                    home = node
                else:
                    later += 1
                    same += node == home
                    took.append(seconds)
                reply = ((answer.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
                messages.append({"role": "assistant", "content": reply})
            return same, later, took, errors

        with futures.ThreadPoolExecutor(max_workers=8) as pool:
            runs = list(pool.map(conversation, range(conversations)))
        stop_all()
        same = sum(r[0] for r in runs)
        later = sum(r[1] for r in runs)
        took = [t for r in runs for t in r[2]]
        return same / later, statistics.mean(took), sum(r[3] for r in runs)

    kept, mean_with, errors_aff = affinity_run("aff")
    fifo_kept, mean_without, _ = affinity_run("noaff", "--affinity-wait-ms", "0")
    figure("scheduling", "affinity: later turns on the node of the earlier ones", "share", kept, fifo_kept,
           "the same with --affinity-wait-ms 0", "value", ">=", 0.9)
    figure("scheduling", "affinity: mean latency of later turns (prefix cache)", "ms", mean_with * 1000, mean_without * 1000,
           "the same with --affinity-wait-ms 0", "ratio", "<", 1.0)
    figure("scheduling", "errors in the scheduling runs", "", errors_fair + errors_fifo + errors_prio + errors_spill + errors_aff, 0,
           "none", "value", "<", 0.5)
finally:
    stop_all()
