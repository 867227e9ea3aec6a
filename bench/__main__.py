"""Latency of each tab's operation, cold start and peak memory: `python -m bench`.

    python -m bench [--device cuda|cpu] [--runs N] [--only NAME,...] [--json OUT]
                    [--compare OFFICIAL.json]

Models use random weights with the published configurations: timing does not depend on
weight values, and no download is needed. Case names match the authors' benchmark
(`official_bench.py`), so `--compare` its JSON output to print the speed-up per case.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.device import inference_dtype  # noqa: E402
from core.models.stylegan2 import StyleGAN2Generator  # noqa: E402

Row = dict


def timed(fn: Callable[[], object], device: torch.device, runs: int, warmup: int = 1) -> tuple[float, float]:
    """(median, min) milliseconds over `runs` calls after `warmup` calls."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), min(times)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def stylegan2_cases(device: torch.device, runs: int) -> Iterator[tuple[str, str, float, float, float]]:
    dtype = inference_dtype(device)
    for size in (256, 512, 1024):
        reset_peak(device)
        G = StyleGAN2Generator(size).to(device, dtype).eval().requires_grad_(False)
        w = torch.randn(1, G.n_latent, 512, device=device, dtype=dtype)
        with torch.inference_mode():
            med, lo = timed(lambda: G.synthesis(w), device, runs)
        yield f"stylegan2-{size} synthesis (w+ -> image)", str(dtype).replace("torch.", ""), med, lo, peak_memory_mb(device)
        if size in (256, 1024):  # one optimiser step of an inversion, always float32
            G = G.float()
            wp = torch.randn(1, G.n_latent, 512, device=device, requires_grad=True)

            def step():
                G.synthesis(wp).square().mean().backward()
            med, lo = timed(step, device, max(1, runs // 2))
            yield f"stylegan2-{size} inversion step (fwd+bwd)", "float32", med, lo, peak_memory_mb(device)
        del G


def panda_cases(device: torch.device, runs: int) -> Iterator[tuple[str, str, float, float, float]]:
    """PandA at FFHQ-1024 layer 5 (16x16, the published [512, 8] set): the tab's default
    compute (the authors' 1000 HOSVD samples, then Algorithm 1 full gradient: `fit`), the
    authors' stochastic loop (1000 of their 10,000 one-sample steps), and one edit."""
    from demos.panda import engine, factors, solver

    dtype = inference_dtype(device)
    reset_peak(device)
    G = StyleGAN2Generator(1024).to(device, dtype).eval().requires_grad_(False)
    n, chunk = 1000, 50 if device.type == "cuda" else 10
    out = {}

    def factorize():
        out["Z"] = factors.collect_features(G, 5, n, chunk=chunk)
        out["AP"] = solver.fit(out["Z"], 512, 8)
    med, lo = timed(factorize, device, 1, warmup=0)
    yield f"panda ffhq-1024 l5 compute ({n} samples, fit)", str(dtype).replace("torch.", ""), med, lo, peak_memory_mb(device)
    Z = out.pop("Z")
    A0 = factors.appearances_from_scatter(torch.einsum("ncs,nds->cd", Z, Z).double() / n, 512).to(device)
    del Z
    P0 = factors.init_parts(256, 8).to(device)
    steps = 1000
    med, lo = timed(lambda: factors.algorithm1(factors.stream_features(G, 5, factors.sample_draws(range(steps)), chunk=chunk),
                                               A0, P0, factors.AUTHORS_LR), device, 1, warmup=0)
    yield f"panda ffhq-1024 l5 stochastic loop ({steps} steps)", str(dtype).replace("torch.", ""), med, lo, peak_memory_mb(device)
    A, P = out["AP"]
    fs = engine.FactorSet("bench", 5, A, P)
    w = torch.randn(1, G.n_latent, 512, device=device, dtype=dtype)
    term = [engine.EditTerm((3,), 6, 30.0)]
    med, lo = timed(lambda: engine.edit(G, w, fs, term), device, runs)
    yield "panda ffhq-1024 l5 edit (original + edited)", str(dtype).replace("torch.", ""), med, lo, peak_memory_mb(device)


def stylemap_cases(device: torch.device, runs: int) -> Iterator[tuple[str, str, float, float, float]]:
    """StyleMapGAN per tab mode at 256 px (the released 8x8 models; names match the authors'
    benchmark) and 1024 px (the light FFHQ 16x16 model): one encoder pass over [original,
    reference(s)] + one generator pass, as the tab runs them."""
    from core.models.stylemapgan import StyleMapGAN, build_stylemapgan
    from demos.stylemap import engine

    dtype = inference_dtype(device)
    configs = {256: dict(size=256, mapping_layer_num=8, latent_channel_size=64, latent_spatial_size=8,
                         lr_mul=0.01, channel_multiplier=2),
               1024: dict(size=1024, mapping_layer_num=8, latent_channel_size=64, latent_spatial_size=16,
                          lr_mul=0.01, channel_multiplier=2, small_generator=True)}
    d = str(dtype).replace("torch.", "")
    for size, config in configs.items():
        reset_peak(device)
        model = StyleMapGAN(*build_stylemapgan(config)).to(device, dtype).eval().requires_grad_(False)
        gen = torch.Generator().manual_seed(0)
        imgs = (torch.rand(2, 3, size, size, generator=gen) * 2 - 1).to(device)
        mask = torch.zeros(1, 1, size, size, device=device)
        mask[..., size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
        tag = f"stylemap-{size}"
        med, lo = timed(lambda: engine.sample(model, [0], 1.0), device, runs)
        yield f"{tag} random image", d, med, lo, peak_memory_mb(device)
        med, lo = timed(lambda: engine.local_edit(model, imgs[:1], imgs[1:], mask, "w_plus"), device, runs)
        yield f"{tag} local edit (E x2 + w+ blend + G)", d, med, lo, peak_memory_mb(device)
        med, lo = timed(lambda: engine.reconstruct(model, imgs[:1], with_lpips=False), device, runs)
        yield f"{tag} reconstruction (E + G)", d, med, lo, peak_memory_mb(device)
        for steps in (2, 16):
            reset_peak(device)
            med, lo = timed(lambda: engine.transplant(model, imgs[:1], imgs[1:], mask, [(0, 0)], steps),
                            device, max(1, runs // (4 if steps > 2 and device.type == "cpu" else 1)))
            yield f"{tag} demo transplant, {steps} step(s)", d, med, lo, peak_memory_mb(device)
        reset_peak(device)
        med, lo = timed(lambda: engine.interpolate(model, imgs[:1], imgs[1:], 8), device,
                        max(1, runs // (4 if device.type == "cpu" else 1)))
        yield f"{tag} w interpolation, 8 frames (E x2 + G x8)", d, med, lo, peak_memory_mb(device)
        s = config["latent_spatial_size"]
        boxes = [((s // 2, s // 4), (s // 4, s // 4), s // 4, s // 2)]
        med, lo = timed(lambda: engine.transplant_grid(model, imgs[:1], imgs[1:], boxes), device, runs)
        yield f"{tag} grid transplant in w (E x2 + G)", d, med, lo, peak_memory_mb(device)
        direction = torch.randn(1, 64, s, s)
        direction /= direction.norm()
        med, lo = timed(lambda: engine.manipulate(model, imgs[:1], direction, [0, 10, 20], mask),
                        device, max(1, runs // (4 if device.type == "cpu" else 1)))
        yield f"{tag} semantic edit, 3 strengths global + local (E + G x6)", d, med, lo, peak_memory_mb(device)
        del model


def collage_cases(device: torch.device, runs: int) -> Iterator[tuple[str, str, float, float, float]]:
    """Collage compose per domain (StyleGAN2 church 256, car 512, FFHQ 1024; ProGAN church /
    living room 256, CelebA-HQ 1024): one regressor pass over the collage + mask and one
    generator pass, as the tab runs them."""
    from core.models.regressor import MaskedRegressor
    from demos.collage import engine, finetune, refine

    dtype = inference_dtype(device)
    d = str(dtype).replace("torch.", "")
    for size in (256, 512, 1024):
        reset_peak(device)
        G = StyleGAN2Generator(size).to(device, dtype).eval().requires_grad_(False)
        E = MaskedRegressor(34, G.n_latent).to(device, dtype).eval().requires_grad_(False)
        x = torch.rand(1, 3, size, size, device=device) * 2 - 1
        mask = engine.random_hints(size, seed=0).to(device)
        med, lo = timed(lambda: engine.regenerate(E, G, x, mask), device, runs)
        yield f"collage-{size} compose (regressor + G)", d, med, lo, peak_memory_mb(device)
        if size == 256:  # the optimisers, float32: one Enc+LBFGS iteration, one fine-tuning step
            os.environ.setdefault("SPATIAL_GAN_LPIPS_RANDOM", "1")  # timing does not depend on weights
            G32, E32 = G.float(), E.float()
            reset_peak(device)
            med, lo = timed(lambda: refine.refine(E32, G32, x.float(), mask.float(), 1), device,
                            max(1, runs // 2))
            yield "collage-256 Enc+LBFGS iteration (line search included)", "float32", med, lo, \
                peak_memory_mb(device)
            reset_peak(device)
            med, lo = timed(lambda: finetune.finetune(E32, G32, x.float(), 1), device, max(1, runs // 2))
            yield "collage-256 regressor fine-tuning step", "float32", med, lo, peak_memory_mb(device)
        del G, E
    from core.models.proggan import ProGANGenerator

    for size in (256, 1024):  # ProGAN domains: ResNet-18 regressor -> z -> ProGAN
        reset_peak(device)
        G = ProGANGenerator(size).to(device, dtype).eval().requires_grad_(False)
        E = MaskedRegressor(18, 1, family="proggan").to(device, dtype).eval().requires_grad_(False)
        x = torch.rand(1, 3, size, size, device=device) * 2 - 1
        mask = engine.random_hints(size, seed=0).to(device)
        med, lo = timed(lambda: engine.regenerate(E, G, x, mask), device, runs)
        yield f"collage-proggan-{size} compose (regressor + G)", d, med, lo, peak_memory_mb(device)
        del G, E


def ncollage_cases(device: torch.device, runs: int) -> Iterator[tuple[str, str, float, float, float]]:
    """Neural Collage on BigGAN-deep 128/256/512 (published configs): a plain image (the
    authors' case: z, one-hot class 207, truncation 0.4), a label collage (before + edit in
    one batch) and a feature blend (base + blended + one reference)."""
    from core.models.biggan import PUBLISHED_CONFIGS, BigGANDeep
    from demos.ncollage import blend, engine

    dtype = inference_dtype(device)
    d = str(dtype).replace("torch.", "")
    for res in (128, 256, 512):
        reset_peak(device)
        G = BigGANDeep(**PUBLISHED_CONFIGS[f"biggan-deep-{res}"]).to(device, dtype).eval().requires_grad_(False)
        G.refold_spectral_norm()
        pic = engine.picture_from_seed(G, 0, 207, 0.4)
        med, lo = timed(lambda: engine.render(G, [pic], 0.4), device, runs)
        yield f"biggan-deep-{res} image", d, med, lo, peak_memory_mb(device)
        region = torch.zeros(1, 1, res, res)
        region[..., : res // 2, :] = 1
        points = engine.layer_preset(G, "all")
        med, lo = timed(lambda: engine.label_collage(G, pic, region, [281], [1.0], 0.4, points),
                        device, runs)
        yield f"biggan-deep-{res} label collage (before + edit)", d, med, lo, peak_memory_mb(device)
        ref = engine.picture_from_seed(G, 1, 207, 0.4)
        med, lo = timed(lambda: blend.feature_blend(G, pic, [ref], region, [(0, 0)], [0, 1], 0.4),
                        device, runs)
        yield f"biggan-deep-{res} feature blend (3 streams)", d, med, lo, peak_memory_mb(device)
        del G


def sam_precision_runs(G: StyleGAN2Generator, target: torch.Tensor, masks: dict, lpips_model,
                       steps: int, reduced: torch.dtype | None, device: torch.device
                       ) -> Iterator[tuple[str, str, float, float, float, dict]]:
    """The same inversion (same generator, target, masks and start) for `steps` steps of the
    paper's schedule in float32 (the authors' precision, the tab's default) and, when
    `reduced` is a dtype, under its autocast (the tab's "Reduced precision" option): each
    timed, with its loss after the last step and the loss of its final codes rendered in
    float32, both also as a ratio to the float32 run's."""
    from core import inversion as S

    base: dict[str, float] = {}
    for autocast in dict.fromkeys((None, reduced)):
        reset_peak(device)
        run = S.Inversion(G, target, masks, G.w_plus(G.mean_w()), lpips_model, steps=steps,
                          autocast=autocast)

        def full_run() -> None:
            while not run.done:
                run.step()
        med, lo = timed(full_run, device, 1, warmup=0)
        with torch.no_grad():  # the final codes as the tab shows them: rendered in float32
            run.autocast = None
            rendered = float(sum(run.losses(run.render()).values())[0])
            run.autocast = autocast
        extra = {"steps": steps, "loss": round(run.history[-1][0], 5),
                 "loss_float32_render": round(rendered, 5)}
        if autocast is None:
            base = dict(extra)
        else:
            extra["loss_vs_float32"] = round(extra["loss"] / base["loss"], 4)
            extra["loss_float32_render_vs_float32"] = round(rendered / base["loss_float32_render"], 4)
        yield (f"sam-{G.size} inversion, {steps} steps (loss)", str(autocast or torch.float32).replace("torch.", ""),
               med, lo, peak_memory_mb(device), extra)


def sam_cases(device: torch.device, runs: int) -> Iterator[tuple]:
    """One SAM optimiser step (W+ and four masked residuals, every loss term, LPIPS-VGG at
    256 px; float32 as the authors and the tab's default, and on a GPU also the tab's
    "Reduced precision" bfloat16 generator pass), on a GPU the paper's whole 1001-step
    schedule in both, with the loss after the last step compared to float32's (skipped on a
    CPU), and one edit pass. The authors' code takes 6.4 s per step at 256 px and 23 s at
    1024 px on this 2-core CPU (measured for the SAM issue)."""
    from core.lpips import get_lpips
    from core import inversion as S

    os.environ.setdefault("SPATIAL_GAN_LPIPS_RANDOM", "1")  # timing does not depend on weights
    reduced = S.optimisation_dtype(device, reduced=True)  # the tab's option; None on a CPU
    for size in (256, 1024):
        reset_peak(device)
        G = StyleGAN2Generator(size).to(device).eval().requires_grad_(False)
        layer_map = torch.arange(256)[:, None].expand(256, 256) * len(S.SPACES) // 256
        masks = S.feature_masks(layer_map, G)  # five horizontal bands, one per space
        target = torch.rand(1, 3, 256, 256, device=device) * 2 - 1

        def inversion(steps: int, autocast: torch.dtype | None) -> S.Inversion:
            return S.Inversion(G, target, masks, G.w_plus(G.mean_w()), get_lpips("vgg", device),
                               steps=steps, autocast=autocast)
        for autocast in dict.fromkeys((None, reduced)):
            run = inversion(10 ** 6, autocast)
            med, lo = timed(run.step, device, max(1, runs // 2))
            dtype = str(autocast or torch.float32).replace("torch.", "")
            yield f"sam-{size} inversion step (all terms)", dtype, med, lo, peak_memory_mb(device)
        if device.type == "cuda":  # what a user waits for, and what reduced precision costs in loss
            yield from sam_precision_runs(G, target, masks, get_lpips("vgg", device), S.STEPS,
                                          reduced, device)
        codes = run.codes()
        _, feats = S.inverted_features(G, codes)
        d = torch.randn(1, G.n_latent, 512)
        med, lo = timed(lambda: S.edit(G, codes, feats, d, 1.0), device, runs)
        yield f"sam-{size} edit (one pass)", "float32", med, lo, peak_memory_mb(device)
        del G, run


def photo_cases(device: torch.device, runs: int) -> Iterator[tuple[str, str, float, float, float]]:
    """A 12 MP phone photo with one face (scikit-image's astronaut, enlarged): what a photo
    upload costs before and after the model (CPU work, whatever the device); then face
    detection in a 24 MP and a 50 MP group photo (`group_photo`; the 50 MP one timed once)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    from core import faces

    big = Image.fromarray(data.astronaut()).resize((3000, 3000), Image.Resampling.BILINEAR)
    photo = Image.new("RGB", (4000, 3000), (120, 120, 120))
    photo.paste(big, (500, 0))
    found = faces.detect(photo)  # loads dlib's models once
    med, lo = timed(lambda: faces.detect(photo), device, runs)
    yield "photo 12 MP: detect faces + 68 landmarks", "-", med, lo, peak_memory_mb(device)
    med, lo = timed(lambda: faces.align(photo, found[0], "ffhq", 1024), device, runs)
    yield "photo 12 MP: FFHQ alignment to 1024 px", "-", med, lo, peak_memory_mb(device)
    aligned = faces.align(photo, found[0], "ffhq", 1024)
    edited = np.asarray(aligned.image)
    med, lo = timed(lambda: faces.paste_back(photo, aligned, edited), device, runs)
    yield "photo 12 MP: paste-back of a 1024 px edit", "-", med, lo, peak_memory_mb(device)
    for (w, h, rows, per_row), n in (((6000, 4000, 3, 6), runs), ((8660, 5773, 4, 8), 1)):
        group, placed = group_photo(w, h, rows, per_row)
        out = {}
        med, lo = timed(lambda: out.update(found=faces.detect(group)), device, n, warmup=0)
        mp = round(w * h / 1e6)
        yield (f"photo {mp} MP group: detect {len(placed)} faces", "-", med, lo, peak_memory_mb(device),
               {"faces_placed": len(placed), "faces_found": len(out["found"]),
                "smallest_face_px": min(placed)})


def group_photo(width: int, height: int, rows: int, per_row: int, seed: int = 0):
    """A group photo stand-in (no people photos ship offline): scikit-image's textures tiled
    over the whole picture (nothing flat to skip), and the astronaut's head in rows, its face
    44 to 400 px wide (every third 44-70 px). -> (photo, the face widths placed)."""
    import numpy as np
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    textures = [Image.fromarray(getattr(data, name)()).convert("RGB")
                for name in ("grass", "gravel", "brick", "coffee", "rocket", "chelsea", "camera")]
    photo = Image.new("RGB", (width, height))
    i = 0
    for y in range(0, height, 512):
        x = 0
        while x < width:
            t = textures[i % len(textures)]
            k = rng.uniform(1.0, 2.5)
            t = t.resize((round(t.width * k), round(t.height * k)), Image.Resampling.BILINEAR)
            photo.paste(t, (x, y))
            x, i = x + t.width, i + 1
    head = Image.fromarray(data.astronaut()).crop((110, 10, 330, 250))  # her face: 90 px wide
    placed = []
    for r in range(rows):
        for c in range(per_row):
            face = rng.uniform(44, 400) if (r + c) % 3 else rng.uniform(44, 70)
            k = face / 90
            img = head.resize((round(220 * k), round(240 * k)), Image.Resampling.LANCZOS)
            cx = (c + 0.5 + rng.uniform(-0.15, 0.15)) * width / per_row
            cy = (r + 0.5 + rng.uniform(-0.15, 0.15)) * height / rows
            photo.paste(img, (round(cx - img.width / 2), round(cy - img.height / 2)))
            placed.append(round(face))
    return photo, placed


COLD_START = """
import json, time
t0 = time.perf_counter(); import gradio, torch
t1 = time.perf_counter(); import app
t2 = time.perf_counter(); app.build_app(device=%r)
t3 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1, t3 - t2]))
"""


def cold_start_cases(device: torch.device, runs: int) -> Iterator[tuple[str, str, float, float, float]]:
    """A fresh interpreter, as a user starting the app: the libraries' import (gradio, torch),
    the app's own import, and build_app() (every tab laid out, no model loaded)."""
    parts = []
    for _ in range(max(1, min(runs, 5))):
        out = subprocess.run([sys.executable, "-c", COLD_START % device.type], cwd=ROOT, check=True,
                             capture_output=True, text=True,
                             env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
        parts.append([1000 * t for t in json.loads(out.stdout.strip().splitlines()[-1])])
    names = ["app cold start: import gradio + torch", "app cold start: import app",
             "app cold start: build_app()"]
    for name, times in zip(names, zip(*parts)):
        yield name, "-", statistics.median(times), min(times), float("nan")


CASES = {"stylegan2": stylegan2_cases, "collage": collage_cases, "stylemap": stylemap_cases,
         "panda": panda_cases, "ncollage": ncollage_cases, "sam": sam_cases,
         "photo": photo_cases, "coldstart": cold_start_cases}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per case (default 20 on CUDA, 3 on CPU)")
    ap.add_argument("--only", default=",".join(CASES), help=f"comma list of {sorted(CASES)}")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    ap.add_argument("--compare", type=Path, help="JSON rows from the authors' official_bench.py")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    runs = args.runs or (20 if device.type == "cuda" else 3)
    official = {}
    if args.compare:
        official = {(r["case"], r["device"]): r["median_ms"] for r in json.loads(args.compare.read_text())}
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"torch {torch.__version__}, {gpu}, device {device.type}, median of {runs}")
    print(f"{'case':44s} {'dtype':8s} {'median ms':>10s} {'min ms':>9s} {'peak MB':>8s}"
          + (f" {'official ms':>12s} {'speed-up':>8s}" if official else ""))
    rows: list[Row] = []
    for key in args.only.split(","):
        for name, dtype, med, lo, mem, *extra in CASES[key](device, runs):
            row = {"case": name, "device": device.type, "dtype": dtype, "median_ms": round(med, 2),
                   "min_ms": round(lo, 2), "peak_mb": None if mem != mem else round(mem, 1)}
            line = f"{name:44s} {dtype:8s} {med:10.1f} {lo:9.1f} {mem:8.0f}"
            for more in extra:  # e.g. a loss after N steps (sam_precision_runs)
                row.update(more)
                line += "  " + ", ".join(f"{k} {v}" for k, v in more.items())
            ref = official.get((name, device.type))
            if ref:
                row.update(official_ms=ref, speedup=round(ref / med, 2))
                line += f" {ref:12.1f} {ref / med:7.2f}x"
            rows.append(row)
            print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
