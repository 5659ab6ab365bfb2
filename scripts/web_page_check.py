#!/usr/bin/env python3
"""Drives the web page (examples/web/, served by scripts/web.sh) in headless Chromium
through chromedriver's WebDriver protocol: loads MODEL (a GGUF, a Hugging Face
checkpoint's directory, or "tiny" for the page's random tiny model), trains STEPS steps on the built-in task, asks both models one
question, and saves a screenshot. Fails when a step fails, the loss does not fall, the
block-norm heatmap holds no norms, or the screenshot is blank.

With --record FILE it also writes the run as a JSON record (the benchmarks' envelope:
device, browser, commit, date, command; then load time, seconds per step, losses, block
norms and both answers), the source of the figures the README gives for the page.

Usage: web_page_check.py [--record FILE] URL MODEL STEPS SCREENSHOT.png [SEQ [LR]]
"""
import base64
import json
import os
import subprocess
import sys
import time
import urllib.request

argv = sys.argv[1:]
record = None
if argv[:1] == ["--record"]:
    record, argv = argv[1], argv[2:]
url, model, steps, shot = argv[0], argv[1], int(argv[2]), argv[3]
seq = argv[4] if len(argv) > 4 else "48"
lr = argv[5] if len(argv) > 5 else "0.01"
command = " ".join(["scripts/web_page_check.py"] + sys.argv[1:])
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

    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_1m = round(os.getloadavg()[0], 2)
    call("POST", f"{s}/url", {"url": url})
    wait_for("the page", lambda: "Choose" in text("status") or "no WebGPU" in text("status"), 60)
    if model == "tiny":
        click("tiny")
    else:
        # A directory is a Hugging Face checkpoint: all its files go to the one input.
        paths = ([os.path.join(model, f) for f in sorted(os.listdir(model))]
                 if os.path.isdir(model) else [model])
        call("POST", f"{s}/element/{el('model')}/value", {"text": "\n".join(paths)})
        click("load")
    t0 = time.time()
    wait_for("the model", lambda: "layers" in text("status") or "failed" in text("status"), 600)
    load_s = time.time() - t0
    loaded = text("status")
    print(f"load: {loaded} ({load_s:.1f} s)")
    if "failed" in text("status"):
        raise SystemExit(1)
    typed("steps", steps)
    typed("seq", seq)
    typed("lr", lr)
    click("train")
    t0 = time.time()
    wait_for("training", lambda: "trained" in text("status") or "failed" in text("status"),
             1800)
    train_s = time.time() - t0
    print(f"train: {text('status')}; {text('stepinfo')} ({train_s:.1f} s)")
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
    if record:
        def out(cmd):
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        dirty = "-dirty" if out(["git", "status", "--porcelain", "--untracked-files=no"]) else ""
        adapter = json.loads(call("POST", f"{s}/execute/sync", {
            "script": "return app_adapter_info()", "args": []}))
        browser = out(["/usr/bin/chromium", "--version"])
        rec = {
            # The benchmarks' envelope (src/bench/record.rs), read by `boha report`.
            "record": {
                "command": command,
                "date": date,
                "commit": out(["git", "rev-parse", "--short", "HEAD"]) + dirty,
                "device": {
                    "name": adapter["name"] or "unnamed by the browser",
                    "backend": adapter["backend"],
                    "device_type": adapter["device_type"],
                },
                "driver": {
                    "name": adapter["driver"] or browser,
                    "info": adapter["driver_info"] or "headless, --enable-unsafe-webgpu",
                },
                "host_load": {"load_1m": load_1m, "cpus": os.cpu_count()},
            },
            "model": loaded.split(":", 1)[0],
            "steps": steps,
            "tokens_per_row": int(seq),
            "lr": float(lr),
            "load_s": round(load_s, 2),
            "train_s": round(train_s, 2),
            "losses": losses,
            "block_norms_layer0_q": heat,
            "answers": {"base": text("base"), "adapted": text("adapted")},
        }
        with open(record, "w") as f:
            json.dump(rec, f, indent=2)
            f.write("\n")
        print(f"record {record}")
finally:
    # Close the browser even after a failure, so no Chromium outlives the check.
    try:
        call("DELETE", s)
    except Exception:
        pass
    driver.terminate()
