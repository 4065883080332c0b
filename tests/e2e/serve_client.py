"""The HTTP client of the `uvit serve` API tests (serve_api.py, serve_job_store.py): every request
has a timeout and every wait a bound in count and time. Set `server` before the first request."""
import json
import time
import urllib.error
import urllib.request

server = {"base": "", "key": None}  # the URL, and the API key sent by default (None: none)
failures = []
_SERVER_KEY = object()


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


def request(method, path, body=None, key=_SERVER_KEY, raw=None, timeout=60, content_type="application/json"):
    """(status, JSON or text); `raw` bytes are sent as they are, with `content_type`."""
    key = server["key"] if key is _SERVER_KEY else key
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(server["base"] + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", content_type)
    if key:
        req.add_header("Authorization", "Bearer " + key)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            text = r.read().decode()
            return r.status, (json.loads(text) if r.headers.get_content_type() == "application/json" else text)
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        try:
            return e.code, json.loads(text)
        except ValueError:
            return e.code, text


def wait_until(pred, what, limit_s=30):
    end = time.time() + limit_s
    for _ in range(2000):
        v = pred()
        if v:
            return v
        if time.time() > end:
            break
        time.sleep(0.02)
    check(False, "timed out waiting for " + what)
    return None


def wait_started(limit_s=60):
    """The server answers /health (it loads the model first)."""
    def health():
        try:
            return request("GET", "/health", key=None, timeout=2)
        except OSError:
            return None
    h = wait_until(health, "the server to start", limit_s)
    check(h and h[1] == {"status": "ok"}, f"/health: {h}")
