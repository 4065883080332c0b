"""The job store bounded in bytes (docs/serve.md, "Memory over time") against a live `uvit serve
--job-store-mb 0.015` with a tiny class model (tests/e2e/serve_api.sh): serve_job_store.py BASE_URL.
Finished jobs are dropped oldest first once their images pass the limit, long before the 64-job
count; the newest is kept whatever its size, until a newer one finishes."""
import base64
import sys

sys.path.insert(0, "tests/e2e")
from serve_client import check, failures, request, server, wait_started, wait_until  # noqa: E402

server["base"] = sys.argv[1]
LIMIT = int(0.015 * 1048576)
wait_started()
st, caps = request("GET", "/uvit/v1/capabilities")
check(st == 200 and caps["limits"]["job_store_bytes"] == LIMIT, f"capabilities: {caps.get('limits')}")


def run_job(n):
    """A finished job's id and a lower bound of what the store holds for it (its PNGs and
    infotexts; the store also counts each image's JSON record)."""
    st, j = request("POST", "/uvit/v1/jobs", {"class": "Bag", "steps": 1, "n": n})
    check(st == 202, f"submit: {st} {j}")
    done = wait_until(lambda: (lambda x: x if x[1].get("status") == "completed" else None)(
        request("GET", j["poll_url"])), f"job {j.get('id')}", 120)
    if not done:
        return j.get("id"), 0
    images = done[1]["result"]["images"]
    check(len(images) == n, f"{j['id']}: {len(images)} images")
    return j["id"], sum(len(base64.b64decode(im["b64_json"])) + len(im["parameters"]) for im in images)


def kept(ids):
    return [i for i in ids if request("GET", "/uvit/v1/jobs/" + i)[0] == 200]


# Twelve jobs of 4 images (a third of the limit each, or more): the newest few stay, in order.
jobs = [run_job(4) for _ in range(12)]
ids = [i for i, _ in jobs]
size = dict(jobs)
k = kept(ids)
print(f"kept {len(k)} of 12 jobs; PNGs and infotexts {[size[i] for i in ids]} bytes")
check(k and k == ids[len(ids) - len(k):], f"not the newest jobs: {k}")
check(1 <= len(k) < 12, f"{len(k)} of 12 jobs kept under {LIMIT} bytes")
check(sum(size[i] for i in k) <= LIMIT, f"kept {sum(size[i] for i in k)} bytes > {LIMIT}")
older = ids[len(ids) - len(k) - 1]  # the last one dropped: with it the store was over the limit
check(2 * sum(size[i] for i in k + [older]) > LIMIT, f"dropped too early: {k}, then {older}")
st, e = request("GET", "/uvit/v1/jobs/" + ids[0])
check(st == 404 and "unknown or expired" in e["error"]["message"], f"the oldest: {st} {e}")

# A job larger than the limit alone stays while it is the newest (its client is reading it), the
# others go; the next job that finishes drops it.
big, big_size = run_job(16)
check(big_size > LIMIT, f"the 16-image job is {big_size} bytes, not over {LIMIT}")
st, j = request("GET", "/uvit/v1/jobs/" + big)
check(st == 200 and len(j["result"]["images"]) == 16, f"the newest, over the limit: {st}")
check(kept(ids) == [], f"older jobs kept beside one over the limit: {kept(ids)}")
small, _ = run_job(1)
check(kept([big, small]) == [small], f"after a newer job: {kept([big, small])}")

print(f"serve_job_store: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
