"""A1111 and OpenAI requests with a prompt against `uvit serve` with a text-to-image model
(tests/e2e/serve_api.sh): serve_api_t2i.py BASE_URL. The prompt is CLIP text: it reaches the image's
metadata, a negative prompt is used (not ignored), a size other than native is generated at native
size and reported, and the same request is reproducible. Every request has a timeout."""
import base64
import io
import json
import sys
import urllib.request

sys.path.insert(0, "tests/e2e/data")
from a1111_infotext import parse_generation_parameters  # noqa: E402
from PIL import Image  # noqa: E402

BASE = sys.argv[1]
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


def post(path, body):
    req = urllib.request.Request(BASE + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=240) as r:
        return json.loads(r.read().decode())


prompt = "a red bus on a café street"
# A1111: prompt + negative prompt, A1111's default 512x512 (not the model's 256x256), seed 5.
body = {"prompt": prompt, "negative_prompt": "blurry", "steps": 3, "cfg_scale": 2, "seed": 5,
        "batch_size": 1, "width": 512, "height": 512, "sampler_name": "DPM++ 2M"}
a = post("/sdapi/v1/txt2img", body)
check(isinstance(a["info"], str), "info is not a string")
info = json.loads(a["info"])
check(info["prompt"] == prompt and info["all_prompts"] == [prompt], f"info prompt: {info['prompt']!r}")
check(info["negative_prompt"] == "blurry" and (info["width"], info["height"]) == (256, 256), f"info: {info}")
check(not any("ignored" in n and "negative" in n for n in info.get("notes", [])), f"notes: {info.get('notes')}")
im = Image.open(io.BytesIO(base64.b64decode(a["images"][0], validate=True)))
check(im.size == (256, 256) and im.mode == "RGB", f"image {im.size} {im.mode}")
p = parse_generation_parameters(im.info["parameters"])
check(p["Prompt"] == prompt and p["Negative prompt"] == "blurry", f"parameters: {p}")
check(p["Sampler"] == "dpm-solver++2m" and p["Steps"] == "3" and p["Seed"] == "5", f"parameters: {p}")
# The same request again: the same pixels; without the negative prompt: other pixels.
again = Image.open(io.BytesIO(base64.b64decode(post("/sdapi/v1/txt2img", body)["images"][0])))
check(again.tobytes() == im.tobytes(), "the same A1111 request gave other pixels")
body.pop("negative_prompt")
plain = Image.open(io.BytesIO(base64.b64decode(post("/sdapi/v1/txt2img", body)["images"][0])))
check(plain.tobytes() != im.tobytes(), "the negative prompt changed nothing")

# OpenAI: the prompt, b64_json; revised_prompt is the prompt as used.
o = post("/v1/images/generations", {"prompt": prompt, "n": 1, "size": "1024x1024",
                                     "response_format": "b64_json", "seed": 5, "steps": 3})
check(len(o["data"]) == 1 and o["data"][0]["revised_prompt"] == prompt, f"OpenAI data: {str(o)[:200]}")
oi = Image.open(io.BytesIO(base64.b64decode(o["data"][0]["b64_json"], validate=True)))
check(oi.size == (256, 256), f"OpenAI image {oi.size}")
check(parse_generation_parameters(oi.info["parameters"])["Prompt"] == prompt, "OpenAI image metadata")
print(f"serve_api_t2i: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
