"""tests/capi/sampling_parity.sh: sampling_parity.py UVIT CONFIG WEIGHTS TMP [SERVER_URL].
Class 3, seed 5, one image per case: `uvit sample` (.npy), the C API (TMP/capi/CASE.raw, written
by capi_options) and the server (PNG) must agree byte for byte; every option must change the
image (but guidance channels "all", the flow DiT's only channel); bad values get 422 naming the
field. Every request has a timeout and every loop a bound."""
import base64
import io
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
from PIL import Image

UVIT, CONFIG, WEIGHTS, TMP = sys.argv[1:5]
URL = sys.argv[5] if len(sys.argv) > 5 else ""
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


# case: (uvit sample flags, C API file, request fields; None: not a server field)
CASES = {
    "default": ([], {}),
    "shift": (["--shift", "2"], {"shift": 2}),
    "cfg_interval": (["--cfg-interval", "0.5"], {"cfg_interval": 0.5}),
    "cfg_interval0": (["--cfg-interval", "0"], {"cfg_interval": 0}),
    "cfg_power": (["--cfg-power", "2"], {"cfg_power": 2}),
    "dopri5": (["--sampler", "dopri5", "--atol", "1e-4", "--rtol", "1e-2"],
               {"sampler": "dopri5", "atol": 1e-4, "rtol": 1e-2}),
    "cfg_scale": (["--cfg-scale", "0.3"], {"uvit_scale": 0.3}),  # U-ViT's s: native only
    "guidance_channels": (["--guidance-channels", "all"], {"guidance_channels": "all"}),
    "zero_init_steps": (["--zero-init-steps", "2"], {"zero_init_steps": 2}),
}

cli = {}
for name, (flags, _) in CASES.items():
    out = f"{TMP}/cli/{name}.npy"
    subprocess.run([UVIT, "sample", "--config", CONFIG, "--weights", WEIGHTS, "--n", "1", "--class", "3",
                    "--seed", "5", "-q", "--npy", out] + flags, check=True, timeout=300)
    cli[name] = np.load(out)[0].tobytes()  # uint8 [H, W, C]
    check(len(cli[name]) == 28 * 28, f"{name}: {len(cli[name])} bytes")

for name in list(CASES) + ["old_struct"]:
    with open(f"{TMP}/capi/{name}.raw", "rb") as f:
        capi = f.read()
    want = cli["default" if name == "old_struct" else name]
    check(capi == want, f"{name}: the C API's image differs from uvit sample's")
for name in CASES:
    same = cli[name] == cli["default"]
    check(same == (name in ("default", "guidance_channels")), f"{name}: the option {'was ignored' if same else 'changed the image'}")


def request(path, body, timeout=300):
    req = urllib.request.Request(URL + path, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def get(path):
    with urllib.request.urlopen(URL + path, timeout=60) as r:
        return json.loads(r.read().decode())


def pixels(b64):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64)))).reshape(28, 28, 1).tobytes()


if URL:
    for _ in range(600):  # the server loads in well under a minute
        try:
            get("/uvit/v1/capabilities")
            break
        except OSError:
            time.sleep(0.1)
    for name, (_, fields) in CASES.items():
        # Native jobs (polled), then OpenAI's and A1111's synchronous requests for every field
        # they share (U-ViT's s has a native field only: A1111's cfg_scale is w).
        st, job = request("/uvit/v1/jobs", dict(fields, **{"class": 3, "seed": 5, "n": 1}))
        check(st == 202, f"{name}: native submit {st} {job}")
        for _ in range(3000):
            j = get(f"/uvit/v1/jobs/{job.get('id')}")
            if j["status"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.02)
        check(j["status"] == "completed", f"{name}: native job {j.get('status')} {j.get('error')}")
        if j["status"] == "completed":
            check(pixels(j["result"]["images"][0]["b64_json"]) == cli[name], f"{name}: native image differs")
        if "uvit_scale" in fields:
            continue
        st, r = request("/v1/images/generations", dict(fields, prompt="3", seed=5, n=1))
        check(st == 200 and pixels(r["data"][0]["b64_json"]) == cli[name], f"{name}: OpenAI {st}")
        a1111 = dict(fields, prompt="3", seed=5)
        if "sampler" in a1111:
            a1111["sampler_name"] = a1111.pop("sampler")
        st, r = request("/sdapi/v1/txt2img", a1111)
        check(st == 200 and pixels(r["images"][0]) == cli[name], f"{name}: A1111 {st}")

    bad = [({"shift": 0}, "shift must be > 0"),
           ({"shift": "2"}, "shift must be a number"),
           ({"cfg_interval": 1.5}, "cfg_interval must be in [0, 1]"),
           ({"cfg_interval": -1}, "cfg_interval must be in [0, 1]"),
           ({"cfg_power": -1}, "cfg_power must be in [0, 1000]"),
           ({"atol": -1e-4}, "atol must be > 0, got -0.0001"),
           ({"rtol": 0}, "rtol must be > 0"),
           ({"guidance_channels": 2}, "guidance channels 2 exceed the 1 output channels"),
           ({"guidance_channels": "some"}, "guidance_channels must be \"all\" or an integer >= 1"),
           ({"guidance_channels": 1.5}, "guidance_channels must be \"all\" or an integer >= 1"),
           ({"skip_cache": 0}, "skip_cache must be in [1, "),
           ({"zero_init_steps": -2}, "zero_init_steps must be in [0, 1000]"),
           ({"skip_cache": 3}, "has no Skip-Cache"),
           ({"uvit_scale": 0.3, "guidance_w": 2}, "guidance_w or uvit_scale, not both"),
           ({"uvit_scale": -1}, "uvit_scale must be in [0, 99]"),
           ({"zero_init_steps": 1.5}, "zero_init_steps must be an integer"),
           ({"guidance_w": 0.5}, "guidance_w must be in [1, 100], got 0.5"),
           ({"sampler": "LMS"}, "sampler: sampler 'lms' is not a flow sampler")]
    for fields, needle in bad:
        st, e = request("/uvit/v1/jobs", dict(fields, **{"class": 3}))
        msg = e.get("error", {}).get("message", "")
        check(st == 422 and needle in msg, f"{fields}: {st} {msg!r}, want 422 with {needle!r}")
    st, e = request("/v1/images/generations", {"prompt": "3", "atol": "x"})
    check(st == 422 and e["error"]["param"] == "atol" and "atol must be a number" in e["error"]["message"],
          f"OpenAI bad atol: {st} {e}")

print("sampling_parity:", "FAILED" if failures else "all checks passed",
      f"({len(CASES)} cases{', server too' if URL else ''})")
sys.exit(1 if failures else 0)
