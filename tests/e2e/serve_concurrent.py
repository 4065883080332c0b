"""Concurrent clients against a live `uvit serve` (tests/e2e/serve_concurrent.sh): serve_concurrent.py
BASE_URL. Six clients generate at once through every generating route (A1111, OpenAI, jobs polled
and streamed), two more read progress, capabilities and PNG info meanwhile, and one queues a long
job and cancels it: every answer must be the one a lone client gets (the same images for the same
seed, no 5xx, no 429 below the queue's size). Its purpose is ThreadSanitizer (docs/fuzzing.md):
the HTTP threads, the job thread and the job store all busy at once. Every request has a timeout
and every loop a bound."""
import base64
import io
import json
import sys
import threading
import urllib.request

sys.path[:0] = ["tests/e2e"]
from PIL import Image  # noqa: E402
from serve_client import check, failures, request, server, wait_started, wait_until  # noqa: E402

BASE = sys.argv[1]
server.update(base=BASE, key=None)
CLIENTS, ROUNDS = 6, 2
lock = threading.Lock()


def pixels(b64):
    return Image.open(io.BytesIO(base64.b64decode(b64))).tobytes()


def a1111(seed):
    st, r = request("POST", "/sdapi/v1/txt2img", {"prompt": "coat", "seed": seed, "steps": 2}, timeout=300)
    return st, pixels(r["images"][0]) if st == 200 else r


def openai(seed):
    st, r = request("POST", "/v1/images/generations", {"prompt": "bag", "n": 1, "seed": seed, "steps": 2},
                    timeout=300)
    return st, pixels(r["data"][0]["b64_json"]) if st == 200 else r


def job_polled(seed):
    st, j = request("POST", "/uvit/v1/jobs", {"class": "sneaker", "steps": 2, "seed": seed})
    if st != 202:
        return st, j
    done = wait_until(lambda: (lambda r: r if r[1].get("status") in ("completed", "failed", "cancelled") else None)(
        request("GET", j["poll_url"])), f"job {j['id']}", limit_s=300)
    if not done or done[1]["status"] != "completed":
        return 0, done
    return 200, pixels(done[1]["result"]["images"][0]["b64_json"])


def job_streamed(seed):
    st, j = request("POST", "/uvit/v1/jobs", {"class": "shirt", "steps": 2, "seed": seed})
    if st != 202:
        return st, j
    with urllib.request.urlopen(BASE + j["events_url"], timeout=300) as stream:
        last = None
        for _ in range(10000):
            line = stream.readline().decode()
            if not line:
                break
            if line.startswith("event: "):
                last = line[7:].strip()
            if line.startswith("data: ") and last == "done":
                d = json.loads(line[6:])
                return 200, pixels(d["result"]["images"][0]["b64_json"])
    return 0, f"no done event for {j['id']}"


ROUTES = {"a1111": a1111, "openai": openai, "job_polled": job_polled, "job_streamed": job_streamed}

wait_started()
# What a lone client gets.
ref = {}
for name, fn in ROUTES.items():
    for seed in range(CLIENTS):
        st, img = fn(seed)
        check(st == 200, f"{name} seed {seed} alone: {st} {str(img)[:200]}")
        ref[name, seed] = img
st, one = request("POST", "/sdapi/v1/txt2img", {"prompt": "coat", "seed": 0, "steps": 2})
st, info_ref = request("POST", "/sdapi/v1/png-info", {"image": one["images"][0]})
check(st == 200 and info_ref["parameters"]["Seed"] == "0", f"png-info alone: {st} {info_ref}")

answers = {"generated": 0, "read": 0}
stop = threading.Event()


def client(c):
    for r in range(ROUNDS):
        for name, fn in ROUTES.items():
            seed = (c + r) % CLIENTS
            st, img = fn(seed)
            check(st == 200 and img == ref[name, seed], f"client {c} round {r} {name} seed {seed}: {st} "
                  f"{'other pixels' if st == 200 else str(img)[:200]}")
            with lock:
                answers["generated"] += 1


def reader():
    for _ in range(100000):
        if stop.is_set():
            break
        for method, path, body in (("GET", "/sdapi/v1/progress", None), ("GET", "/uvit/v1/capabilities", None),
                                   ("GET", "/health", None), ("POST", "/sdapi/v1/png-info", {"image": one["images"][0]}),
                                   ("GET", "/sdapi/v1/progress?skip_current_image=true", None)):
            st, r = request(method, path, body)
            check(st == 200, f"{method} {path} while generating: {st} {str(r)[:200]}")
            if path == "/sdapi/v1/png-info":
                check(r == info_ref, f"png-info while generating: {str(r)[:200]}")
            with lock:
                answers["read"] += 1


def canceller():
    for _ in range(3):
        st, j = request("POST", "/uvit/v1/jobs", {"class": "coat", "n": 4, "steps": 500, "seed": 1})
        check(st == 202, f"long job: {st} {j}")
        if st != 202:
            return
        st, x = request("POST", f"/uvit/v1/jobs/{j['id']}/cancel", {})
        check(st == 202, f"cancel {j['id']}: {st} {x}")
        wait_until(lambda: request("GET", j["poll_url"])[1]["status"] == "cancelled", f"{j['id']} to stop", 300)


threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
readers = [threading.Thread(target=reader) for _ in range(2)] + [threading.Thread(target=canceller)]
for t in threads + readers:
    t.start()
for t in threads:
    t.join(900)
stop.set()
for t in readers:
    t.join(300)
check(not any(t.is_alive() for t in threads + readers), "a client did not finish in time")
check(answers["generated"] == CLIENTS * ROUNDS * len(ROUTES), f"generated answers: {answers}")
st, idle = request("GET", "/sdapi/v1/progress")
check(st == 200 and idle["state"]["job_count"] == 0, f"idle at the end: {idle}")
print(f"serve_concurrent: {answers['generated']} generations and {answers['read']} reads by "
      f"{len(threads) + len(readers)} clients at once; {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
