"""The `uvit serve` page in headless Chromium (tests/e2e/serve_browser.sh): serve_page.py CHROMIUM
SERVER_URL SHOT_DIR [t2i]. Class model: loads with no console errors, adapts to the model, shows a
generated image at its native size, a progress bar that rises (with ETA) and a live preview while a
long job runs, cancel and a generation after it, the download carrying the metadata, a dropped
PNG's parameters read back, and a server error shown in the page. Text-to-image model (t2i): the prompt box instead
of the class picker, a UTF-8 prompt and a negative prompt through to the image, its metadata (iTXt)
read back, no console errors. Screenshots go to SHOT_DIR. Every wait is bounded."""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from cdp import Page  # noqa: E402

chromium, url, shots = sys.argv[1], sys.argv[2], sys.argv[3]
t2i = sys.argv[4:] == ["t2i"]
profile = tempfile.mkdtemp(prefix="uvit_chromium_")
proc = subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                         "--disable-extensions", "--remote-debugging-port=0", f"--user-data-dir={profile}",
                         "--window-size=1100,700", "about:blank"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg)


def drop_first_download(page):
    """Drops the first image's download link (the PNG) on the page; returns the parameters shown."""
    page.js("""(async () => { const a = document.querySelector('#images a');
        const bytes = Uint8Array.from(atob(a.href.split(',')[1]), c => c.charCodeAt(0));
        const dt = new DataTransfer(); dt.items.add(new File([bytes], 'x.png', {type: 'image/png'}));
        document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    })()""")
    return page.wait("document.getElementById('info').textContent", "the dropped PNG's parameters")


def check_t2i(page, model, shots, bad_events):
    """The page with a text-to-image model: a prompt (UTF-8) and a negative prompt in, the image
    at the model's size out, with the prompt in its metadata; no console errors."""
    check(re.match(r"mscoco_uvit_small \(t2i, 256x256, [0-9a-f]{10}\)$", model) is not None, f"model line: {model}")
    check(page.js("document.getElementById('promptrow').hidden === false && document.getElementById('classrow').hidden"),
          "the form does not show the prompt box instead of the class picker")
    prompt = "a red bus on a café street"
    page.js(f"""(() => {{ const s = (id, v) => document.getElementById(id).value = v;
        s('prompt', {json.dumps(prompt)}); s('neg', 'blurry'); s('steps', 3); s('n', 2); s('seed', 5);
        document.getElementById('go').click(); }})()""")
    page.wait("document.getElementById('status').textContent.startsWith('done')", "the t2i images", 240)
    check(page.js("[...document.querySelectorAll('#images img')].map(i => i.naturalWidth + 'x' + i.naturalHeight).join()")
          == "256x256,256x256", "images at 256x256")
    check(page.js("document.querySelector('#images img').alt") == prompt, "image caption is the prompt")
    title = page.js("document.querySelector('#images img').title")
    check(title.startswith(prompt + "\nNegative prompt: blurry\nSteps: 3, ") and "Seed: 5, Index: 0, Size: 256x256" in title,
          f"image parameters: {title[:160]}")
    time.sleep(0.5)  # the bar's CSS transition
    page.screenshot(os.path.join(shots, "serve_page_t2i.png"))
    # The download dropped back on the page: the UTF-8 prompt survives (an iTXt chunk).
    info = drop_first_download(page)
    check(info.startswith(prompt + "\nNegative prompt: blurry\nSteps: 3,"), f"png info: {info[:120]}")
    # An empty prompt is the unconditional context: still an image, not an error.
    page.js("""(() => { document.getElementById('prompt').value = ''; document.getElementById('neg').value = '';
        document.getElementById('n').value = 1; document.getElementById('go').click(); })()""")
    page.wait("document.getElementById('status').textContent.startsWith('done') && "
              "document.querySelectorAll('#images img').length === 1", "an image for the empty prompt", 240)
    bad = bad_events()
    check(not bad, f"console errors: {bad[:3]}")


try:
    port = None
    end = time.time() + 60
    for _ in range(10000):  # "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..."
        line = proc.stderr.readline()
        m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
        if m:
            port = int(m.group(1))
            break
        if not line or time.time() > end:
            break
    assert port, "chromium did not start its DevTools endpoint"
    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
    page = Page(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
    for d in ("Page.enable", "Runtime.enable", "Log.enable"):
        page.call(d)
    page.call("Page.navigate", url=url)
    page.wait("document.readyState === 'complete' && !document.getElementById('model').textContent.startsWith('loading')",
              "the page to load")
    model = page.js("document.getElementById('model').textContent")
    bad_events = lambda: [e for e in page.events if e.get("method") == "Runtime.exceptionThrown" or
                          (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error") or
                          (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    if t2i:
        check_t2i(page, model, shots, bad_events)
        raise SystemExit(1 if failures else 0)
    check(model.startswith("srv (class, 28x28, "), f"model line: {model}")
    check(page.js("document.getElementById('classrow').hidden === false && document.getElementById('promptrow').hidden"),
          "the form does not show the class picker")
    # The class names arrive after the capabilities; wait for them before touching the form.
    page.wait("document.querySelectorAll('#classes option').length === 10", "the 10 class names")

    def generate(cls, steps, n):
        page.js(f"""(() => {{ const s = (id, v) => document.getElementById(id).value = v;
            s('cls', {json.dumps(cls)}); s('steps', {steps}); s('n', {n}); s('seed', 5);
            document.getElementById('go').click(); }})()""")

    # A short generation: the image shows at the model's size.
    generate("Sneaker", 4, 2)
    page.wait("document.getElementById('status').textContent.startsWith('done')", "the first images")
    check(page.js("[...document.querySelectorAll('#images img')].map(i => i.naturalWidth + 'x' + i.naturalHeight).join()")
          == "28x28,28x28", "images at 28x28")
    check(page.js("document.querySelector('#images img').alt") == "Sneaker", "image caption")
    check(page.js("parseFloat(document.getElementById('fill').style.width)") == 100, "bar at 100 % when done")
    time.sleep(0.5)  # the bar's CSS transition
    page.screenshot(os.path.join(shots, "serve_page.png"))

    # The download is the PNG with its parameters chunk.
    meta = page.js("""(() => { const a = document.querySelector('#images a');
        return a.download + '|' + atob(a.href.split(',')[1]).includes('tEXtparameters\\u0000Sneaker\\nSteps: 4,'); })()""")
    check(meta == "uvit-5-0.png|true", f"download: {meta}")

    # Drop that PNG on the page: its parameters come back through /sdapi/v1/png-info.
    info = drop_first_download(page)
    check(info.startswith("Sneaker\nSteps: 4, Sampler: dpm-solver, CFG scale: 2, UViT scale: 1, Seed: 5, Index: 0, Size: 28x28"),
          f"png info: {info[:120]}")

    # A long job: the bar rises with an ETA while it runs; Cancel stops it.
    generate("Coat", 1000, 16)
    widths = []
    end = time.time() + 60
    for _ in range(3000):
        st = page.js("[parseFloat(document.getElementById('fill').style.width) || 0, document.getElementById('status').textContent]")
        w = st[0]
        if st[1].startswith("step") and w > 0:
            widths.append(w)
        if len(widths) >= 5 and widths[-1] > widths[0] or time.time() > end:
            break
        time.sleep(0.05)
    check(len(widths) >= 2 and widths == sorted(widths) and widths[-1] > widths[0], f"bar widths: {widths[:10]}")
    check("ETA" in page.js("document.getElementById('status').textContent"), "no ETA while running")
    # The live preview of the first image (the job's `preview`, a 28x28 PNG) shows while it runs.
    try:
        page.wait("(() => { const p = document.getElementById('preview'); return !!p && "
                  "p.src.startsWith('data:image/png;base64,') && p.complete && p.naturalWidth === 28; })()",
                  "a live preview", limit_s=20)
    except TimeoutError:
        check(False, "no live preview while running")
    page.screenshot(os.path.join(shots, "serve_page_progress.png"))
    page.js("document.getElementById('cancel').click()")
    page.wait("document.getElementById('status').textContent === 'cancelled'", "cancel")
    check(page.js("document.getElementById('go').disabled === false"), "Generate stays disabled after cancel")

    # The server goes on after the cancel.
    generate("Bag", 4, 1)
    page.wait("document.getElementById('status').textContent.startsWith('done')", "a generation after cancel")
    check(page.js("document.querySelector('#images img').alt") == "Bag", "image after cancel")

    # No console errors or exceptions so far.
    bad = bad_events()
    check(not bad, f"console errors: {bad[:3]}")

    # A server error shows in the page.
    generate("zebra", 4, 1)
    err = page.wait("document.getElementById('error').textContent", "the error message")
    check("'zebra' is not a class of" in err, f"error text: {err}")
    # A long message wraps inside the form: the images stay beside it.
    check(page.js("document.getElementById('form').getBoundingClientRect().right < document.getElementById('images').getBoundingClientRect().left"),
          "the error message pushed the images below the form")
    time.sleep(0.5)  # the bar's CSS transition back to 0
    page.screenshot(os.path.join(shots, "serve_page_error.png"))
finally:
    proc.kill()
    proc.wait(10)
    print(f"serve_page: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
