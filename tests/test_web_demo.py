"""The browser demo, end to end: headless Debian chromium runs the ONNX export with onnxruntime-web and must draw
what onnxruntime CPU computes (PSNR >= 40 dB). Needs `.ci/web_demo_setup.sh` (chromium + `npm ci` in web_demo/)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import natural_image, tiny_model
from toolkit.export.base import ExportSpec
from toolkit.fsutil import write_json
from web.coop_server import serve_isolated

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web_demo"
CHROMIUM = os.environ.get("TOOLKIT_CHROMIUM", "/usr/bin/chromium")
RESULTS = REPO / "benchmarks" / "results" / "web_demo.json"
MIN_PSNR_DB = 40.0
IMAGE_HW = (240, 320)  # multiple of every stride and under the page's default max side: the page does not resize


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (install nodejs >= 18, then run .ci/web_demo_setup.sh)")
    return node


def _requirements() -> str:
    node = _node()
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is absent: run .ci/web_demo_setup.sh (apt-get install chromium chromium-driver)")
    for package in ("playwright-core", "onnxruntime-web"):
        if not (WEB / "node_modules" / package).is_dir():
            pytest.skip(f"web_demo/node_modules/{package} is absent: run .ci/web_demo_setup.sh (npm ci in web_demo/)")
    return node


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def to_pixels(values: np.ndarray, contract: dict) -> np.ndarray:
    """The contract's post-processing, as web_demo/src/contract.js does it (round half up, clamp)."""
    lo, hi = contract["output"]["range"]
    return np.clip(np.floor((values - lo) * (255.0 / (hi - lo)) + 0.5), 0, 255).astype(np.uint8)


def _decode(b64: str, h: int, w: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype=np.uint8).reshape(h, w, 4)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    """A built demo site whose models.json lists one tiny exported net (not the shipped styles)."""
    node = _requirements()
    from toolkit.export import artifact_path, export_artifact

    tmp = tmp_path_factory.mktemp("web")
    dest = artifact_path(tmp / "exported", "tiny", "onnx", "fp32")
    export_artifact(tiny_model(), ExportSpec(target="onnx", style="tiny"), dest, check=False)
    out = tmp / "site"
    subprocess.run([node, str(WEB / "scripts" / "build.mjs"), "--exported", str(tmp / "exported"), "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=60)
    return {"node": node, "root": out, "artifact": dest, "tmp": tmp}


def test_models_json_lists_each_exported_onnx_with_its_contract(site):
    listing = json.loads((site["root"] / "models.json").read_text())["models"]
    assert [(m["style"], m["precision"]) for m in listing] == [("tiny", "fp32")]
    m = listing[0]
    assert (site["root"] / m["file"]).read_bytes() == site["artifact"].read_bytes()
    assert m["contract"]["input"]["layout"] == "NCHW" and m["contract"]["input"]["dynamic"] is True
    for asset in ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm"):
        assert (site["root"] / "ort" / asset).stat().st_size > 0  # served locally: the page works offline


def test_models_script_skips_onnx_without_contract(site, tmp_path):
    bare = tmp_path / "exported" / "bare"
    bare.mkdir(parents=True)
    shutil.copy(site["artifact"], bare / "bare.onnx")
    run = subprocess.run([site["node"], str(WEB / "scripts" / "models.mjs"), "--exported", str(tmp_path / "exported"),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "no bare.onnx.contract.json" in run.stderr
    assert json.loads((tmp_path / "out" / "models.json").read_text())["models"] == []


@pytest.mark.slow
def test_browser_output_matches_onnxruntime_cpu(site):
    import onnxruntime as ort
    from PIL import Image

    h, w = IMAGE_HW
    image = (natural_image(h, w, seed=3) * 255).round().astype(np.uint8)
    png = site["tmp"] / "photo.png"
    Image.fromarray(image).save(png)

    with serve_isolated(site["root"]) as url:
        run = subprocess.run([site["node"], str(WEB / "e2e" / "drive.mjs"),
                              json.dumps({"url": url, "image": str(png), "runs": 20, "chromium": CHROMIUM})],
                             capture_output=True, text=True, timeout=180, cwd=WEB)
    assert run.stdout.strip(), f"driver printed nothing; stderr: {run.stderr[-2000:]}"
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["ok"], f"{result['error']}\nbrowser log:\n" + "\n".join(result["logs"])
    assert (result["height"], result["width"]) == (h, w)

    fed = _decode(result["input"], h, w)
    np.testing.assert_array_equal(fed[..., :3], image)  # the page fed the model the exact uploaded pixels
    drawn = _decode(result["output"], h, w)
    assert (drawn[..., 3] == 255).all()

    contract = json.loads((site["root"] / "models.json").read_text())["models"][0]["contract"]
    session = ort.InferenceSession(str(site["artifact"]), providers=["CPUExecutionProvider"])
    x = (image.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    reference = to_pixels(session.run(None, {contract["input"]["name"]: x})[0][0].transpose(1, 2, 0), contract)
    quality = psnr(drawn[..., :3], reference)
    assert quality >= MIN_PSNR_DB, f"browser output PSNR {quality:.1f} dB < {MIN_PSNR_DB} dB vs onnxruntime CPU"
    assert psnr(drawn[..., :3], image) < 30  # it really stylised (the net changes the picture)

    bench = result["bench"]
    assert bench["fps"] > 0 and bench["ms_p50"] <= bench["ms_p90"]
    assert result["env"]["crossOriginIsolated"] is True  # COOP/COEP served: threads are allowed
    write_json(RESULTS, {
        "benchmark": "web_demo", "runtime": "onnxruntime-web (wasm)", "ort_web": bench["ort"],
        "browser": result["env"]["userAgent"], "flags": "headless, --disable-gpu",
        "cross_origin_isolated": bench["crossOriginIsolated"], "threads": bench["threads"],
        "hardware_concurrency": result["env"]["cores"],
        "model": {"net": "tests.conftest.TINY_ARCH (random weights)", "artifact": "onnx fp32 dynamic"},
        "size": [bench["height"], bench["width"]], "runs": bench["runs"], "warmup": bench["warmup"],
        "ms_p50": round(bench["ms_p50"], 3), "ms_p90": round(bench["ms_p90"], 3), "fps": round(bench["fps"], 2),
        "what": "whole frame path: pre-process + session.run + post-process, median of runs after warm-up",
        "psnr_vs_onnxruntime_cpu_db": None if np.isinf(quality) else round(quality, 2),
        "host_load_average_1m": round(os.getloadavg()[0], 2),  # shared 2-core machine: fps falls with the load
    })
