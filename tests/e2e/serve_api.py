"""API checks against a live `uvit serve` (tests/e2e/serve_api.sh): serve_api.py BASE_URL API_KEY.
Every request has a timeout and every loop a bound in count and time."""
import base64
import io
import json
import sys
import threading
import urllib.request

sys.path[:0] = ["tests/e2e/data", "tests/e2e"]
from a1111_infotext import parse_generation_parameters  # noqa: E402
from PIL import Image  # noqa: E402
from serve_client import check, failures, request, server, wait_started, wait_until  # noqa: E402

BASE, KEY = sys.argv[1], sys.argv[2]
server.update(base=BASE, key=KEY)


def png(b64):
    check("\n" not in b64 and "\r" not in b64, "base64 with line breaks")
    return Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))


wait_started()

# The page: one self-contained HTML document.
st, page = request("GET", "/", key=None)
check(st == 200 and page.startswith("<!doctype html>") and "/uvit/v1/jobs" in page and
      "<script src" not in page and 'href="http' not in page and 'src="http' not in page,
      "GET /: not one self-contained page")

# API key: required on the API, not on / and /health.
st, body = request("GET", "/sdapi/v1/samplers", key=None)
check(st == 401 and "API key" in body.get("detail", ""), f"no key: {st} {body}")
st, body = request("GET", "/v1/models", key="wrong")
check(st == 401 and body["error"]["type"] == "invalid_request_error", f"wrong key: {st} {body}")

st, caps = request("GET", "/uvit/v1/capabilities")
m = caps["model"]
check(st == 200 and m["kind"] == "class" and m["resolution"] == 28 and m["num_classes"] == 10 and
      len(m["sha256"]) == 64 and caps["defaults"] == {"sampler": "dpm-solver", "steps": 4, "guidance_w": 2.0},
      f"capabilities: {caps}")
st, cl = request("GET", "/uvit/v1/classes")
check(st == 200 and cl["classes"][7] == {"id": 7, "name": "Sneaker"}, f"classes: {cl}")

# A1111 txt2img: info is a JSON string, images decode, parameters parse, seeds are seed + i.
req = {"prompt": "sneaker", "seed": 5, "batch_size": 2, "steps": 3, "cfg_scale": 1.5, "width": 512,
       "height": 512, "sampler_name": "Euler a", "unknown_field": [1, 2]}
st, r = request("POST", "/sdapi/v1/txt2img", req)
check(st == 200 and isinstance(r.get("info"), str), f"txt2img: {st} {str(r)[:300]}")
info = json.loads(r["info"])
check(info["all_seeds"] == [5, 6] and info["seed"] == 5 and info["width"] == 28 and info["cfg_scale"] == 1.5
      and info["steps"] == 3 and info["sampler_name"] == "euler-maruyama" and info["prompt"] == "Sneaker"
      and info["sd_model_hash"] == m["sha256"][:10], f"info: {info}")
check(any("native size 28x28" in n for n in info["notes"]), f"size note: {info['notes']}")
check(r["parameters"] == req, "parameters is not the request echo")
check(len(r["images"]) == 2, "two images")
imgs = [png(b) for b in r["images"]]
for i, im in enumerate(imgs):
    p = parse_generation_parameters(im.info["parameters"])
    check(im.size == (28, 28) and p["Prompt"] == "Sneaker" and p["Seed"] == str(5 + i) and p["Index"] == "0"
          and p["Steps"] == "3" and p["CFG scale"] == "1.5" and p["Sampler"] == "euler-maruyama"
          and p["Class"] == "7" and p["Model hash"] == m["sha256"][:10], f"image {i}: {p}")
    check(im.info["parameters"] == info["infotexts"][i], "infotexts")
# all_seeds[1] alone regenerates image 1.
st, r1 = request("POST", "/sdapi/v1/txt2img", dict(req, seed=6, batch_size=1))
check(st == 200 and png(r1["images"][0]).tobytes() == imgs[1].tobytes(), "seed 6 alone differs from image 1")

# png-info reads the parameters back.
st, pi = request("POST", "/sdapi/v1/png-info", {"image": "data:image/png;base64," + r["images"][0]})
check(st == 200 and pi["info"] == imgs[0].info["parameters"] and pi["parameters"]["Seed"] == "5"
      and "uvit-params" in pi["items"], f"png-info: {pi}")
# A JSON body over 8 KiB sent as `curl -d @req.json` sends it (application/x-www-form-urlencoded) is
# read like any other, up to the server's 8 MB; cpp-httplib 0.11 alone caps such a body at 8192
# bytes (it was a 413).
form = "application/x-www-form-urlencoded"
big = json.dumps({"image": r["images"][0], "padding": "x" * 40000}).encode()
st, pi2 = request("POST", "/sdapi/v1/png-info", raw=big, content_type=form)
check(st == 200 and pi2 == pi, f"png-info, {len(big)} bytes as a form: {st} {str(pi2)[:200]}")
big = json.dumps(dict(req, seed=6, batch_size=1, padding="y" * 300000)).encode()
st, r1f = request("POST", "/sdapi/v1/txt2img", raw=big, content_type=form)
check(st == 200 and r1f["images"] == r1["images"], f"txt2img, {len(big)} bytes as a form: {st} {str(r1f)[:200]}")
st, e = request("POST", "/sdapi/v1/txt2img", raw=b"{" + b" " * (9 << 20) + b"}", content_type=form)
check(st == 413 and "9437186 bytes; at most 8388608" in e["detail"], f"9 MB as a form: {st} {e}")

# OpenAI.
st, o = request("POST", "/v1/images/generations", {"prompt": "bag", "n": 2, "seed": 1, "steps": 2,
                                                    "size": "1024x1024", "model": "dall-e-3"})
check(st == 200 and len(o["data"]) == 2 and o["data"][0]["revised_prompt"] == "Bag" and
      png(o["data"][1]["b64_json"]).size == (28, 28), f"openai: {st} {str(o)[:300]}")
st, mo = request("GET", "/v1/models")
check(st == 200 and mo["data"][0]["id"] == "srv" and mo["object"] == "list", f"models: {mo}")
st, e = request("POST", "/v1/images/generations", {"prompt": "bag", "response_format": "url"})
check(st == 400 and e["error"]["param"] == "response_format" and "b64_json" in e["error"]["message"], f"url: {e}")
st, e = request("POST", "/v1/images/generations", {"n": 1})
check(st == 400 and e["error"]["message"] == "prompt is required", f"no prompt: {e}")

# A1111 lists.
st, s = request("GET", "/sdapi/v1/samplers")
check(st == 200 and {"name": "dpm-solver++2m", "aliases": ["DPM++ 2M", "k_dpmpp_2m"], "options": {}} in s, f"samplers: {s}")
st, sm = request("GET", "/sdapi/v1/sd-models")
check(st == 200 and sm[0]["hash"] == m["sha256"][:10] and sm[0]["filename"] == "nnet_ema.safetensors", f"sd-models: {sm}")
st, op = request("GET", "/sdapi/v1/options")
check(st == 200 and op["sd_model_checkpoint"] == sm[0]["title"], f"options: {op}")
check(request("POST", "/sdapi/v1/options", {"sd_model_checkpoint": sm[0]["title"]})[0] == 200, "options: same model")
st, e = request("POST", "/sdapi/v1/options", {"sd_model_checkpoint": "other.ckpt"})
check(st == 404 and "not loaded" in e["detail"], f"options: other model {e}")

# Bad input: 4xx with a readable message, never a crash.
bad = [("POST", "/sdapi/v1/txt2img", b"{not json", 400, "not valid JSON"),
       ("POST", "/sdapi/v1/txt2img", b"[1, 2]", 400, "JSON object"),
       ("POST", "/sdapi/v1/txt2img", {"prompt": "bag", "steps": "many"}, 422, "steps must be an integer"),
       ("POST", "/sdapi/v1/txt2img", {"prompt": "bag", "steps": 2.5}, 422, "steps must be an integer"),
       ("POST", "/sdapi/v1/txt2img", {"prompt": "snaeker"}, 422, "did you mean: Sneaker"),
       ("POST", "/sdapi/v1/txt2img", {"prompt": ""}, 422, "must name a class"),
       ("POST", "/sdapi/v1/txt2img", {"prompt": "bag", "sampler_name": "LMS"}, 422, "unknown sampler"),
       ("POST", "/sdapi/v1/txt2img", {"prompt": "bag", "batch_size": 9, "n_iter": 2}, 422, "at most 16"),
       ("POST", "/sdapi/v1/txt2img", {"prompt": "bag", "cfg_scale": 0.5}, 422, "cfg_scale must be in [1, 100], got 0.5"),
       ("POST", "/sdapi/v1/txt2img", {"prompt": "bag", "seed": "x"}, 422, "seed must be an integer"),
       # The sampler options (tests/capi/sampling_parity.sh has their values on a flow preset).
       ("POST", "/sdapi/v1/txt2img", {"prompt": "bag", "shift": 2}, 422, "shift applies to flow presets only"),
       ("POST", "/uvit/v1/jobs", {"class": 1, "skip_cache": 2}, 422, "has no Skip-Cache"),
       ("POST", "/sdapi/v1/png-info", {"image": "!!!"}, 422, "not base64"),
       ("POST", "/sdapi/v1/png-info", {"image": base64.b64encode(b"GIF89a").decode()}, 422, "not a PNG"),
       ("POST", "/sdapi/v1/txt2img", b"{" + b" " * (9 << 20) + b"}", 413, "too large"),
       ("GET", "/uvit/v1/jobs/job-999999", None, 404, "no job"),
       ("GET", "/no/such/endpoint", None, 404, "no endpoint")]
for method, path, body, want, needle in bad:
    raw = body if isinstance(body, bytes) else None
    st, e = request(method, path, None if raw is not None else body, raw=raw)
    text = json.dumps(e)
    check(st == want and needle in text, f"{method} {path} {str(body)[:60]}: {st} {text[:200]}")

# SSE: progress events, then done with the images.
# 400 steps: a 4-step job of this tiny model could finish before the 202 is written (seen: status
# "completed" in the answer), leaving no progress to stream.
st, j = request("POST", "/uvit/v1/jobs", {"class": 3, "n": 2, "steps": 400, "seed": 9})
check(st == 202 and j["status"] in ("queued", "generating") and j["seed"] == 9, f"job: {st} {j}")
sse = urllib.request.Request(BASE + j["events_url"], headers={"Authorization": "Bearer " + KEY})
events, done = [], {}
with urllib.request.urlopen(sse, timeout=60) as stream:
    for _ in range(10000):
        line = stream.readline().decode()
        if not line:
            break
        if line.startswith("event: "):
            events.append(line[7:].strip())
        if line.startswith("data: ") and events and events[-1] == "done":
            done = json.loads(line[6:])
            break
check(events and events[-1] == "done" and "progress" in events, f"events: {events}")
check(len(done["result"]["images"]) == 2 and done["result"]["images"][1]["sample_index"] == 1 and
      done["progress"]["fraction"] == 1.0, f"done event: {str(done)[:300]}")
st, j2 = request("GET", j["poll_url"])
check(st == 200 and j2["status"] == "completed" and png(j2["result"]["images"][0]["b64_json"]).size == (28, 28),
      f"poll: {str(j2)[:200]}")

# A full queue: one job runs, one waits (--queue 1), the next gets 429. Progress moves while it runs.
long_job = {"class": "coat", "n": 16, "steps": 1000, "sampler": "euler-maruyama", "seed": 1}
st, a = request("POST", "/uvit/v1/jobs", long_job)
check(st == 202, f"long job: {st} {a}")
wait_until(lambda: request("GET", a["poll_url"])[1]["status"] == "generating", "the long job to start")
st, b = request("POST", "/uvit/v1/jobs", long_job)
check(st == 202 and b["status"] == "queued" and b["queue_position"] == 0, f"queued job: {st} {b}")
st, c = request("POST", "/sdapi/v1/txt2img", {"prompt": "coat"})
check(st == 429 and "queue is full" in c["detail"], f"full queue: {st} {c}")
st, c = request("POST", "/v1/images/generations", {"prompt": "coat"})
check(st == 429 and c["error"]["type"] == "rate_limit_error", f"full queue (OpenAI): {st} {c}")
pr = wait_until(lambda: (lambda p: p if p["state"]["sampling_step"] > 0 else None)(request("GET", "/sdapi/v1/progress")[1]),
                "progress to move")
check(pr and 0 < pr["progress"] <= 1 and pr["state"]["sampling_steps"] == 1000 and pr["eta_relative"] >= 0, f"progress: {pr}")
# The live preview (A1111's current_image): the running job's x0 as a base64 PNG of the model's
# size; skip_current_image=true leaves it out.
cur = pr and pr.get("current_image")
check(isinstance(cur, str) and png(cur).size == (28, 28), f"current_image: {str(cur)[:80]}")
st, sk = request("GET", "/sdapi/v1/progress?skip_current_image=true")
check(st == 200 and sk["state"]["sampling_step"] > 0 and sk["current_image"] is None, f"skip_current_image: {str(sk)[:200]}")
st, ja = request("GET", a["poll_url"])
check(st == 200 and ja["status"] == "generating" and isinstance(ja.get("preview"), str) and png(ja["preview"]).size == (28, 28), f"job preview: {str(ja)[:200]}")
st, x = request("POST", f"/uvit/v1/jobs/{b['id']}/cancel", {})
check(st == 202 and x["status"] == "cancelled", f"cancel queued: {st} {x}")
st, x = request("POST", f"/uvit/v1/jobs/{a['id']}/cancel", {})
check(st == 202, f"cancel running: {st} {x}")
wait_until(lambda: request("GET", a["poll_url"])[1]["status"] == "cancelled", "the running job to stop")
st, x = request("POST", f"/uvit/v1/jobs/{a['id']}/cancel", {})
check(st == 409, f"cancel a finished job: {st}")
st, idle = request("GET", "/sdapi/v1/progress")
check(idle["progress"] == 0 and idle["state"]["job_count"] == 0 and idle["current_image"] is None, f"idle progress: {idle}")

# A1111 interrupt: the waiting txt2img returns what it has, marked interrupted; the server goes on.
result = {}
t = threading.Thread(target=lambda: result.update(r=request("POST", "/sdapi/v1/txt2img",
                                                            {"prompt": "coat", "steps": 1000, "sampler_name": "Euler a",
                                                             "batch_size": 16})))
t.start()
wait_until(lambda: request("GET", "/sdapi/v1/progress")[1]["state"]["sampling_step"] > 0, "txt2img to start")
check(request("POST", "/sdapi/v1/interrupt", {})[0] == 200, "interrupt")
t.join(60)
st, ri = result.get("r", (0, {}))
check(st == 200 and json.loads(ri["info"])["interrupted"] is True and len(ri["images"]) < 16, f"interrupted: {st} {str(ri)[:200]}")
st, r2 = request("POST", "/sdapi/v1/txt2img", dict(req, seed=6, batch_size=1))
check(st == 200 and png(r2["images"][0]).tobytes() == imgs[1].tobytes(), "after interrupt: not usable or not reproducible")

# The store keeps the 64 newest finished jobs (docs/serve.md, "Memory over time"), a job cancelled
# while queued among them: b (above) was kept for ever, one job a cancel, in a server that runs for
# days. 64 more jobs retire it.
for i in range(64):
    st, _ = request("POST", "/sdapi/v1/txt2img", {"prompt": "coat", "steps": 1, "seed": i})
    check(st == 200, f"txt2img {i}: {st}")
st, x = request("GET", b["poll_url"])
check(st == 404 and "unknown or expired" in x["error"]["message"], f"a job cancelled while queued, 64 jobs later: {st} {x}")
st, x = request("POST", "/uvit/v1/jobs", {"class": "coat", "steps": 1})
check(st == 202 and wait_until(lambda: request("GET", x["poll_url"])[1]["status"] == "completed", "the newest job"),
      f"the newest job: {st} {x}")

print(f"serve_api: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
