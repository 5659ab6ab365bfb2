#!/usr/bin/env python3
"""Drives the web page (examples/web/, served by scripts/web.sh) in headless Chromium
through chromedriver's WebDriver protocol: loads MODEL (a GGUF, or "tiny" for the
page's random tiny model), trains STEPS steps on the built-in task, asks both models one
question, and saves a screenshot. Fails when a step fails, the loss does not fall, the
block-norm heatmap holds no norms, or the screenshot is blank.

Usage: web_page_check.py URL MODEL STEPS SCREENSHOT.png [SEQ [LR]]
"""
import base64
import json
import subprocess
import sys
import time
import urllib.request

url, model, steps, shot = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
seq = sys.argv[5] if len(sys.argv) > 5 else "48"
lr = sys.argv[6] if len(sys.argv) > 6 else "0.01"
port = 9517
driver = subprocess.Popen(["/usr/bin/chromedriver", f"--port={port}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def call(method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)["value"]


def wait_for(what, check, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = check()
        if v:
            return v
        time.sleep(1)
    raise SystemExit(f"timed out waiting for {what}: status {text('status')!r}")


s = None
try:
    for _ in range(50):
        try:
            call("GET", "/status")
            break
        except OSError:
            time.sleep(0.2)
    args = ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--window-size=1100,1000"]
    sid = call("POST", "/session", {"capabilities": {"alwaysMatch": {
        "goog:chromeOptions": {"args": args}}}})["sessionId"]
    s = f"/session/{sid}"

    def el(id_):
        found = call("POST", f"{s}/element", {"using": "css selector", "value": f"#{id_}"})
        return next(iter(found.values()))

    def text(id_):
        return call("GET", f"{s}/element/{el(id_)}/text")

    def click(id_):
        call("POST", f"{s}/element/{el(id_)}/click", {})

    def typed(id_, value):
        call("POST", f"{s}/element/{el(id_)}/clear", {})
        call("POST", f"{s}/element/{el(id_)}/value", {"text": str(value)})

    call("POST", f"{s}/url", {"url": url})
    wait_for("the page", lambda: "Choose" in text("status") or "no WebGPU" in text("status"), 60)
    if model == "tiny":
        click("tiny")
    else:
        call("POST", f"{s}/element/{el('model')}/value", {"text": model})
        click("load")
    t0 = time.time()
    wait_for("the model", lambda: "layers" in text("status") or "failed" in text("status"), 600)
    print(f"load: {text('status')} ({time.time() - t0:.1f} s)")
    if "failed" in text("status"):
        raise SystemExit(1)
    typed("steps", steps)
    typed("seq", seq)
    typed("lr", lr)
    click("train")
    t0 = time.time()
    wait_for("training", lambda: "trained" in text("status") or "failed" in text("status"),
             1800)
    print(f"train: {text('status')}; {text('stepinfo')} ({time.time() - t0:.1f} s)")
    if "failed" in text("status") or "trained 0" in text("status"):
        raise SystemExit(1)
    losses = call("POST", f"{s}/execute/sync", {"script": "return window.bohaLosses", "args": []})
    print(f"losses: {[round(x, 4) for x in losses]}")
    if len(losses) != steps or not losses[-1] < losses[0]:
        raise SystemExit("the loss did not fall")
    # The heatmap: one finite norm per block, not all zero once B has moved.
    heat = call("POST", f"{s}/execute/sync", {"script": "return window.bohaHeat", "args": []})
    print(f"heatmap ({text('heatinfo')}): {[f'{x:.3g}' for x in heat or []]}")
    if not heat or int(len(heat) ** 0.5) ** 2 != len(heat) or not any(x > 0 for x in heat):
        raise SystemExit(f"the heatmap holds no block norms: {heat}")
    click("ask")
    wait_for("the answers", lambda: text("adapted") not in ("", "…") or "failed" in text("status"), 600)
    print(f"base: {text('base')!r}\nadapted: {text('adapted')!r}")
    png = base64.b64decode(call("GET", f"{s}/screenshot"))
    open(shot, "wb").write(png)
    # Not blank: a plain page compresses to almost nothing.
    if len(png) < 20000:
        raise SystemExit(f"screenshot {shot} looks blank ({len(png)} bytes)")
    print(f"screenshot {shot} ({len(png)} bytes)")
finally:
    # Close the browser even after a failure, so no Chromium outlives the check.
    try:
        call("DELETE", s)
    except Exception:
        pass
    driver.terminate()
