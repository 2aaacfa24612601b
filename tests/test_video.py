"""Video: PyAV io, parallel stylisation (order, determinism, Ray), temporal metric and stabiliser, bad inputs."""

from __future__ import annotations

import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")

from conftest import benchmark, natural_image, require_shared, tiny_model  # noqa: E402
from toolkit.errors import UserError  # noqa: E402
from toolkit.video import FrameStylizer, make_payload, probe, read_frames, stylize_video  # noqa: E402
from toolkit.video import temporal  # noqa: E402


def make_clip(path: Path, n: int = 20, w: int = 64, h: int = 48, fps: int = 25, audio: bool = True,
              rotation: int = 0, pts: list[int] | None = None, codec: str = "libx264") -> Path:
    """A moving synthetic clip (optionally odd-sized via mkv/ffv1, VFR via explicit pts) with a 440 Hz tone."""
    c = av.open(str(path), "w")
    s = c.add_stream(codec, rate=fps)
    s.width, s.height, s.pix_fmt = w, h, "yuv420p" if codec == "libx264" else "yuv444p"
    tb = Fraction(1, fps * 100)
    s.codec_context.time_base = tb
    if rotation:
        s.set_display_rotation(rotation)
    a = None
    if audio:
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
    base = (natural_image(h, w + 4 * n, seed=1) * 255).astype(np.uint8)
    for i in range(n):
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[:, 2 * i:2 * i + w]), format="rgb24")
        f.pts, f.time_base = (pts[i] if pts else i * 100), tb
        for p in s.encode(f):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    if audio:
        samples = int(16000 * n / fps)
        wave = (0.3 * np.sin(2 * np.pi * 440 * np.arange(samples) / 16000)).astype(np.float32)[None]
        for k in range(0, samples, 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, k:k + 1024]), format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, k
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)
    c.close()
    return path


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def video_pts(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return [f.pts for f in c.decode(v)], v.time_base


def load_folder(path: Path) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(p)) for p in sorted(path.glob("*.png"))])


@pytest.fixture(scope="module")
def torch_payload():
    return make_payload(tiny_model(), "torch")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


def test_output_keeps_frame_count_fps_duration_rotation_and_audio(tmp_path, torch_payload):
    src = make_clip(tmp_path / "in.mp4", n=24, rotation=90)
    out = tmp_path / "out.mp4"
    stats = stylize_video(src, out, payload=torch_payload, workers=2, progress=False)
    a, b = probe(src), probe(out)
    assert stats["frames"] == 24 == b.frames
    assert b.frame_rate == a.frame_rate == 25
    assert b.duration == pytest.approx(a.duration, abs=0.05)
    assert b.rotation == 90
    assert (b.width, b.height) == (a.width, a.height)
    assert b.has_audio
    assert audio_packets(out) == audio_packets(src)  # copied packet for packet, unchanged
    pin, tb_in = video_pts(src)
    pout, tb_out = video_pts(out)
    assert [float(p * tb_out) for p in pout] == pytest.approx([float(p * tb_in) for p in pin], abs=1e-3)


def test_frames_come_back_in_order_and_match_a_single_session(tmp_path, clip, torch_payload):
    out = tmp_path / "frames"
    stylize_video(clip, out, payload=torch_payload, workers=3, progress=False)
    got = load_folder(out)
    ref = FrameStylizer(torch_payload)
    expected = np.stack([ref(rgb) for _, _, rgb in read_frames(clip)])
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)  # PNG frames are lossless: exact, in order


def test_a_frame_of_any_size_is_stylised_as_the_image_path_does_it():
    """The net pads every side itself (its context ring, the bottom / right up to the stride, in its own mode), so
    the video path hands it the frame as it is: a replicated ring padded again by reflection would differ there."""
    import dataclasses

    import torch

    from conftest import TINY_ARCH

    model = tiny_model(dataclasses.replace(TINY_ARCH, context_pad=8, context_mode="replicate")).eval()
    frame = (natural_image(37, 53) * 255).astype(np.uint8)
    with torch.no_grad():
        want = model(torch.from_numpy(frame.astype(np.float32).transpose(2, 0, 1)[None] / 255.0))[0]
    want = (np.clip(want.numpy().transpose(1, 2, 0), 0, 1) * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(FrameStylizer(make_payload(model, "torch"))(frame), want)


@pytest.mark.parametrize("stabilize", [False, True])
def test_one_and_three_workers_give_identical_output(tmp_path, clip, torch_payload, stabilize):
    one, three = tmp_path / "one", tmp_path / "three"
    stylize_video(clip, one, payload=torch_payload, workers=1, stabilize=stabilize, progress=False)
    stylize_video(clip, three, payload=torch_payload, workers=3, stabilize=stabilize, progress=False)
    assert np.array_equal(load_folder(one), load_folder(three))


def test_ray_engine_matches_local(tmp_path, clip, torch_payload):
    ray = pytest.importorskip("ray")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"ray could not start a local instance here: {exc}")
    try:
        local, remote = tmp_path / "local", tmp_path / "ray"
        stylize_video(clip, local, payload=torch_payload, workers=1, stabilize=True, progress=False)
        stylize_video(clip, remote, payload=torch_payload, workers=2, stabilize=True, engine="ray", chunk=4,
                      progress=False)
        assert np.array_equal(load_folder(local), load_folder(remote))
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_onnx_backend_matches_torch_backend(tmp_path, clip, torch_payload):
    onnx_payload = make_payload(tiny_model(), "onnx")
    stylize_video(clip, tmp_path / "onnx", payload=onnx_payload, workers=2, progress=False)
    stylize_video(clip, tmp_path / "torch", payload=torch_payload, workers=1, progress=False)
    diff = np.abs(load_folder(tmp_path / "onnx").astype(int) - load_folder(tmp_path / "torch").astype(int))
    assert diff.max() <= 1


def test_frame_folder_in_video_out_and_size(tmp_path, torch_payload):
    from PIL import Image

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(6):
        Image.fromarray((natural_image(40, 56, seed=i) * 255).astype(np.uint8)).save(frames / f"f{i:03d}.png")
    out = tmp_path / "out.mkv"
    stylize_video(frames, out, payload=torch_payload, workers=2, size=32, progress=False)
    info = probe(out)
    assert (info.width, info.height, info.frame_rate) == (56, 40, 25)
    assert len(list(read_frames(out))) == 6
    capped = stylize_video(frames, tmp_path / "capped.mkv", payload=torch_payload, max_side=48, progress=False)
    full = stylize_video(frames, tmp_path / "full.mkv", payload=torch_payload, max_side=64, progress=False)
    assert (capped["size"], full["size"]) == (48, None)  # frames over the cap run at it, the rest at their own
    assert (probe(tmp_path / "capped.mkv").width, probe(tmp_path / "capped.mkv").height) == (56, 40)
    with pytest.raises(UserError, match="--max-side 8 is too small"):
        stylize_video(frames, tmp_path / "x.mkv", payload=torch_payload, max_side=8, progress=False)


# --- temporal metric, flow, stabiliser -------------------------------------------------------------------------

def shifted_pair(dx: int = 3, dy: int = 2):
    big = natural_image(80, 100, seed=3)
    a = np.ascontiguousarray(big[10:70, 10:90])
    b = np.ascontiguousarray(big[10 - dy:70 - dy, 10 - dx:90 - dx])  # b(x) = a(x - d): content moved by +d
    return a, b


def test_warping_error_is_zero_for_known_motion_and_large_without_it():
    a, b = shifted_pair()
    flow = np.zeros(a.shape[:2] + (2,), np.float32)
    flow[..., 0], flow[..., 1] = 3, 2  # a(x) = b(x + d)
    mask = np.ones(a.shape[:2], bool)
    mask[-3:, :] = mask[:, -4:] = False  # pixels that leave the frame
    assert temporal.warping_error(a, b, flow, mask) < 1e-10
    assert temporal.warping_error(a, b, np.zeros_like(flow), mask) > 1e-3


def test_dis_flow_recovers_a_translation_and_masks_occlusions():
    a, b = shifted_pair()
    flow, mask = temporal.flow_with_mask(a, b)
    inner = flow[8:-8, 8:-8]
    assert np.median(inner[..., 0]) == pytest.approx(3, abs=0.3)
    assert np.median(inner[..., 1]) == pytest.approx(2, abs=0.3)
    assert mask.mean() > 0.8
    assert not mask[:, -2:].any()  # right edge points outside b: unreliable


def test_flo_round_trip_and_bad_magic(tmp_path):
    f = np.random.default_rng(0).normal(size=(5, 7, 2)).astype(np.float32)
    temporal.write_flo(tmp_path / "x.flo", f)
    assert np.array_equal(temporal.read_flo(tmp_path / "x.flo"), f)
    (tmp_path / "bad.flo").write_bytes(b"nope" * 10)
    with pytest.raises(UserError, match="Middlebury"):
        temporal.read_flo(tmp_path / "bad.flo")


def test_stabilizer_cuts_flicker_on_moving_noisy_frames():
    rng = np.random.default_rng(0)
    big = natural_image(60, 120, seed=5)
    content = [np.ascontiguousarray(big[:, 2 * i:2 * i + 80]) for i in range(8)]
    styled = [np.clip(c + rng.normal(0, 0.08, c.shape), 0, 1).astype(np.float32) for c in content]
    stab = temporal.Stabilizer(0.6)
    out = []
    for i, s in enumerate(styled):
        flow, mask = temporal.flow_with_mask(content[i], content[i - 1]) if i else (None, None)
        out.append(stab((s * 255).round().astype(np.uint8), flow, mask))

    def err(frames):
        errs = []
        for i in range(1, len(frames)):
            flow, mask = temporal.flow_with_mask(content[i], content[i - 1])
            errs.append(temporal.warping_error(frames[i], frames[i - 1], flow, mask))
        return np.mean(errs)

    assert err(out) < 0.7 * err(styled)


# --- bad input ---------------------------------------------------------------------------------------------------

def test_file_without_video_stream_is_refused(tmp_path, torch_payload):
    c = av.open(str(tmp_path / "tone.m4a"), "w")
    a = c.add_stream("aac", rate=16000)
    af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
    af.sample_rate, af.pts = 16000, 0
    for p in list(a.encode(af)) + list(a.encode()):
        c.mux(p)
    c.close()
    os.rename(tmp_path / "tone.m4a", tmp_path / "tone.mp4")
    with pytest.raises(UserError, match="no video stream"):
        stylize_video(tmp_path / "tone.mp4", tmp_path / "o.mp4", payload=torch_payload, progress=False)
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_truncated_or_corrupt_file_is_refused_and_nothing_written(tmp_path, clip, torch_payload, damage):
    data = clip.read_bytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else os.urandom(4096))
    with pytest.raises(UserError, match="corrupt|truncated"):
        stylize_video(bad, tmp_path / "o.mp4", payload=torch_payload, progress=False)
    assert list(tmp_path.iterdir()) == [bad]  # no output, no temp file left behind


def test_truncated_mkv_that_still_opens_is_refused(tmp_path, torch_payload):
    src = make_clip(tmp_path / "in.mkv", n=60, audio=False)
    data = src.read_bytes()
    bad = tmp_path / "cut.mkv"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(UserError, match="truncated"):
        stylize_video(bad, tmp_path / "o.mkv", payload=torch_payload, progress=False)
    assert not (tmp_path / "o.mkv").exists()


def test_variable_frame_rate_keeps_every_timestamp(tmp_path, torch_payload):
    pts = [0, 100, 150, 400, 450, 500, 900, 1000, 1010, 1200]
    src = make_clip(tmp_path / "vfr.mp4", n=len(pts), pts=pts, audio=False)
    assert probe(src).variable_frame_rate
    out = tmp_path / "out.mp4"
    stylize_video(src, out, payload=torch_payload, workers=2, progress=False)
    pin, tb_in = video_pts(src)
    pout, tb_out = video_pts(out)
    assert [float(p * tb_out) for p in pout] == pytest.approx([float(p * tb_in) for p in pin], abs=1e-3)


def test_odd_dimensions_are_padded_to_even(tmp_path, torch_payload):
    src = make_clip(tmp_path / "odd.mkv", w=63, h=47, n=5, audio=False, codec="ffv1")
    out = tmp_path / "out.mp4"
    stylize_video(src, out, payload=torch_payload, progress=False)
    info = probe(out)
    assert (info.width, info.height) == (64, 48)
    frames = [rgb for _, _, rgb in read_frames(out)]
    assert len(frames) == 5


def test_a_frame_size_change_mid_stream_is_a_clear_error(torch_payload):
    """Frames travel in fixed-size shared-memory slots (and the encoder has one size): a stream that changes size is
    refused with the frame and both sizes named, not garbled."""
    from toolkit.video.stylize import _run_local

    frames = [np.zeros((32, 48, 3), np.uint8), np.zeros((32, 48, 3), np.uint8), np.zeros((48, 64, 3), np.uint8)]
    tasks = iter([((i, f, None), i) for i, f in enumerate(frames)])
    with pytest.raises(UserError, match="frame 2 is 64x48, the first frame is 48x32"):
        list(_run_local(torch_payload, None, 1, 1, tasks))


def test_existing_output_is_refused_unless_overwrite(tmp_path, clip, torch_payload):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"precious")
    with pytest.raises(UserError, match="--overwrite"):
        stylize_video(clip, out, payload=torch_payload, progress=False)
    assert out.read_bytes() == b"precious"
    stylize_video(clip, out, payload=torch_payload, overwrite=True, progress=False)
    assert probe(out).frames == 20


def test_unwritable_output_path_is_refused(tmp_path, clip, torch_payload):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot create output directory"):
        stylize_video(clip, blocker / "out.mp4", payload=torch_payload, progress=False)
    with pytest.raises(UserError, match="must end in"):
        stylize_video(clip, tmp_path / "out.gif", payload=torch_payload, progress=False)


def test_encoder_preset_sets_x264_speed_and_an_unknown_one_is_refused(tmp_path, clip, torch_payload):
    fast = stylize_video(clip, tmp_path / "fast.mp4", payload=torch_payload, progress=False,
                         encoder_preset="ultrafast")
    slow = stylize_video(clip, tmp_path / "slow.mp4", payload=torch_payload, progress=False, encoder_preset="slow")
    assert probe(tmp_path / "fast.mp4").frames == probe(tmp_path / "slow.mp4").frames == fast["frames"] == 20
    # same crf: ultrafast skips the searches that make slow's file smaller
    assert (tmp_path / "fast.mp4").stat().st_size > (tmp_path / "slow.mp4").stat().st_size
    with pytest.raises(UserError, match="did you mean 'veryfast'"):
        stylize_video(clip, tmp_path / "x.mp4", payload=torch_payload, progress=False, encoder_preset="veryfsat")
    assert not (tmp_path / "x.mp4").exists() and slow["frames"] == 20


def test_cli_stylizes_a_video_and_exits_2_on_existing_output(tmp_path, clip, tiny_checkpoint, capsys):
    from toolkit.cli import main

    out = tmp_path / "o.mp4"
    argv = ["stylize", str(clip), "-o", str(out), "--checkpoint", str(tiny_checkpoint), "--backend", "torch",
            "--workers", "2", "--stabilize"]
    assert main(argv) == 0
    assert probe(out).frames == 20
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err


# --- temporal training loss -------------------------------------------------------------------------------------

def test_temporal_loss_is_zero_for_a_motion_equivariant_net_and_positive_otherwise():
    import torch

    from toolkit.losses.temporal import TemporalLoss

    x = torch.from_numpy(natural_image(32, 32, seed=2).transpose(2, 0, 1)).unsqueeze(0).repeat(2, 1, 1, 1)
    loss = TemporalLoss(seed=0, noise_std=0.02)
    identity = loss(lambda t: t, x, x, step=3)
    assert float(identity["temporal_warp"]) < 1e-10            # identity commutes with any warp
    assert float(identity["temporal_noise"]) == pytest.approx(0.02 ** 2, rel=0.3)  # it passes noise through
    net = tiny_model()
    with torch.no_grad():
        per_frame = loss(net, x, net(x), step=3)
    assert float(per_frame["temporal_warp"]) > 1e-6


def test_temporal_loss_samples_deterministically_per_step_and_has_gradients():
    import torch

    from toolkit.losses.temporal import TemporalLoss

    loss = TemporalLoss(seed=5)
    assert torch.equal(loss.random_affine(3, loss.generator(7)), loss.random_affine(3, loss.generator(7)))
    assert not torch.equal(loss.random_affine(3, loss.generator(7)), loss.random_affine(3, loss.generator(8)))
    net = tiny_model().train()
    x = torch.rand(2, 3, 32, 32)
    out = loss(net, x, net(x), step=0)
    out["temporal"].backward()
    assert sum(float(p.grad.abs().sum()) for p in net.parameters() if p.grad is not None) > 0


@pytest.mark.filterwarnings("ignore:using a random-weight VGG")
def test_train_with_temporal_weight_logs_the_term(tmp_path, image_dir):
    import json

    from PIL import Image

    from toolkit.config import LossConfig, TrainConfig
    from toolkit.train import train

    Image.fromarray((natural_image(48, 48, seed=9) * 255).astype(np.uint8)).save(tmp_path / "style.png")
    loss = LossConfig(loss_net="random", style_layers=("relu1_1",), content_layers=("relu1_1",), temporal_weight=10.0)
    cfg = TrainConfig(name="t", style_image=str(tmp_path / "style.png"), content_dir=str(image_dir), arch="tiny",
                      steps=3, size=32, style_size=48, batch=2, workers=0, sample_every=0, checkpoint_every=3,
                      loss=loss)
    final = train(cfg, out_root=tmp_path / "runs", progress=False)
    history = json.loads(final.with_suffix(".json").read_text())["history"]
    assert len(history) == 3 and all(h["temporal"] > 0 for h in history)
    assert all(h["total"] >= 10.0 * h["temporal"] for h in history)


@pytest.mark.slow
def test_memory_stays_flat_on_a_two_minute_clip(tmp_path, torch_payload):
    """1800 frames of 160x120 (~100 MB of RGB each way): parent RSS must not grow with the clip's length."""
    import threading

    src = make_clip(tmp_path / "long.mp4", n=1800, w=160, h=120, fps=15, audio=True)

    def rss_mb() -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        pytest.skip("no /proc/self/status here")

    samples, done = [], threading.Event()

    def sample():
        while not done.is_set():
            samples.append(rss_mb())
            done.wait(0.1)

    t = threading.Thread(target=sample)
    t.start()
    try:
        stats = stylize_video(src, tmp_path / "out.mp4", payload=torch_payload, workers=2, progress=False)
    finally:
        done.set()
        t.join()
    assert stats["frames"] == 1800
    assert probe(tmp_path / "out.mp4").duration == pytest.approx(120, abs=0.2)
    settled = samples[len(samples) // 4]
    assert max(samples[len(samples) // 4:]) - settled < 30, (settled, max(samples))


def _panning_sintel(root: Path) -> Path:
    """A Sintel-layout sequence whose content moves 2 px right per frame, with its exact flow and occlusions."""
    from PIL import Image

    seq = root / "pan"
    (seq / "gt" / "occlusions").mkdir(parents=True)
    big = natural_image(60, 100, seed=4)
    for i in range(1, 5):
        Image.fromarray((big[:, 20 - 2 * i:84 - 2 * i] * 255).astype(np.uint8)).save(seq / f"frame_{i:04d}.png")
    flow = np.zeros((60, 64, 2), np.float32)
    flow[..., 0] = 2.0  # frame2(x) = frame3(x + 2)
    temporal.write_flo(seq / "gt" / "frame_0002.flo", flow)
    occ = np.zeros((60, 64), np.uint8)
    occ[:, -2:] = 255  # what enters at the right edge has no source
    Image.fromarray(occ).save(seq / "gt" / "occlusions" / "frame_0002.png")
    return root


def test_eval_video_reports_warping_errors_with_ground_truth_flow(tmp_path, tiny_checkpoint):
    import json

    from PIL import Image

    from toolkit.cli import main

    out = tmp_path / "report"
    assert main(["eval-video", "--checkpoint", str(tiny_checkpoint), "--sintel", str(_panning_sintel(tmp_path / "s")),
                 "--clips", "-o", str(out)]) == 0
    report = json.loads((out / "video_eval.json").read_text())
    row = report["rows"][0]
    assert row["content"] < 1e-8
    assert row["tiny per-frame"] > 0 and row["tiny per-frame + stabilize"] >= 0
    assert "| sintel/pan |" in (out / "video_eval.md").read_text()
    assert Image.open(out / "video_strip.png").size[1] == 3 * 60  # content, per-frame, stabilised rows
    assert "pass --style-image" in (out / "video_eval.md").read_text()  # tiny has no style image on record


def test_eval_video_reports_the_style_loss_change_of_stabilising(tmp_path, tiny_checkpoint):
    import json

    from PIL import Image

    from toolkit.cli import main

    require_shared("weights", "vgg19_normalised_to_relu3_1.safetensors")
    style = tmp_path / "style.png"
    Image.fromarray((natural_image(64, 64, seed=9)[..., ::-1] * 255).astype(np.uint8)).save(style)
    out = tmp_path / "report"
    assert main(["eval-video", "--checkpoint", str(tiny_checkpoint), "--sintel", str(_panning_sintel(tmp_path / "s")),
                 "--clips", "--style-image", str(style), "-o", str(out)]) == 0
    row = json.loads((out / "video_eval.json").read_text())["rows"][0]
    losses = row["style_loss"]
    assert set(losses) == {"tiny per-frame", "tiny per-frame + stabilize"}
    assert all(v > 0 for v in losses.values())
    change = row["style_change_vs_per_frame"]["tiny per-frame + stabilize"]
    assert change == pytest.approx(losses["tiny per-frame + stabilize"] / losses["tiny per-frame"] - 1)
    summary = json.loads((out / "video_eval.json").read_text())["summary"]["tiny per-frame + stabilize"]
    assert summary["style_change"] == pytest.approx(change)  # one source: the mean is that row
    assert summary["goal_met"] == (summary["warp_cut"] >= 0.3 and change <= 0.1)
    assert "change: tiny per-frame + stabilize" in (out / "video_eval.md").read_text()


def test_eval_video_compares_another_model_against_per_frame(tmp_path, tiny_checkpoint):
    import json
    import shutil

    from toolkit.cli import main

    twin = tmp_path / "twin.safetensors"  # the same weights under another name: nothing steadier, nothing lost
    shutil.copy(tiny_checkpoint, twin)
    shutil.copy(tiny_checkpoint.with_suffix(".json"), twin.with_suffix(".json"))
    out = tmp_path / "report"
    assert main(["eval-video", "--checkpoint", str(tiny_checkpoint), "--compare", str(twin), "--sintel",
                 str(_panning_sintel(tmp_path / "s")), "--clips", "-o", str(out)]) == 0
    report = json.loads((out / "video_eval.json").read_text())
    assert report["rows"][0]["warp_cut_vs_per_frame"]["twin per-frame"] == pytest.approx(0.0, abs=1e-9)
    assert report["summary"]["twin per-frame"]["goal_met"] is False
    assert "| twin per-frame | 0% | - | not met |" in (out / "video_eval.md").read_text()


def test_eval_video_refuses_a_missing_style_image(tmp_path, tiny_checkpoint, capsys):
    from toolkit.cli import main

    assert main(["eval-video", "--checkpoint", str(tiny_checkpoint), "--sintel", str(_panning_sintel(tmp_path / "s")),
                 "--clips", "--style-image", str(tmp_path / "nope.png"), "-o", str(tmp_path / "r")]) == 2
    assert "--style-image" in capsys.readouterr().err


def test_eval_video_strip_is_capped_in_width(tmp_path, tiny_checkpoint, monkeypatch):
    from PIL import Image

    import toolkit.video.evaluate as evaluate
    from toolkit.cli import main

    monkeypatch.setattr(evaluate, "STRIP_MAX_WIDTH", 128)  # the 4-frame strip of 64-px frames is 256 wide
    out = tmp_path / "report"
    assert main(["eval-video", "--checkpoint", str(tiny_checkpoint), "--sintel", str(_panning_sintel(tmp_path / "s")),
                 "--clips", "-o", str(out)]) == 0
    assert Image.open(out / "video_strip.png").size == (128, 90)  # 256x180 halved


WORKER_SCRIPT = """
import itertools, sys
import numpy as np

if __name__ == "__main__":
    sys.path.insert(0, sys.argv[1])
    from conftest import tiny_model
    from toolkit.video.stylize import _run_local, make_payload

    frame = np.zeros((32, 32, 3), np.uint8)
    tasks = (((i, frame, None), i) for i in itertools.count())  # endless: still running when killed
    for n, _ in enumerate(_run_local(make_payload(tiny_model(), "torch", "tiny"), None, 2, 1, tasks)):
        if n == 5:
            print("running", flush=True)
"""


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_video_workers_die_with_a_sigkilled_parent(tmp_path):
    import signal
    import subprocess
    import time

    script = tmp_path / "video_run.py"
    script.write_text(WORKER_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(Path(__file__).parent)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=Path(__file__).parent.parent)
    try:
        assert proc.stdout.readline().strip() == "running"
        helpers = _descendants(proc.pid)  # the forkserver, 2 workers, the resource tracker
        assert len(helpers) >= 3
    finally:
        proc.send_signal(signal.SIGKILL)   # no cleanup runs in the parent
        proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(map(_running, helpers)):
        time.sleep(0.1)
    left = [p for p in helpers if _running(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"processes outlived their parent: {left}"


def test_the_quality_benchmark_measures_your_own_pictures_images_folders_and_frames_spread_over_a_clip(tmp_path):
    from PIL import Image

    quality = benchmark("quality")
    Image.fromarray((natural_image(30, 41, seed=2) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not a picture")
    make_clip(tmp_path / "clip.mp4", n=12, audio=False)
    single = tmp_path / "b.png"
    Image.fromarray((natural_image(48, 64, seed=3) * 255).astype(np.uint8)).save(single)
    got = quality.photos(40, [tmp_path, single], frames_per_video=3)
    assert [name for name, _ in got] == ["a.png", "b.png", "clip.mp4#0", "clip.mp4#4", "clip.mp4#8", "b.png"]
    for _, rgb in got:
        assert rgb.dtype == np.float32 and 0 <= rgb.min() and rgb.max() <= 1
        assert max(rgb.shape[:2]) <= 40 and rgb.shape[0] % 4 == 0 and rgb.shape[1] % 4 == 0
    assert quality.main(["--photos", str(tmp_path / "missing")]) == 2
