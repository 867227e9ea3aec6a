"""The benchmark's SAM precision case (bench/__main__.py): float32, the authors' precision and
the tab's default, against the "Reduced precision" option's autocast, by their loss after N
steps. It runs on a GPU (`python -m bench --device cuda --only sam`); here its rows are
checked on the CPU's bfloat16 autocast with a tiny generator and a few steps."""
from __future__ import annotations

import json

import pytest
import torch

from bench import __main__ as bench
from core import inversion as S
from core.lpips import get_lpips
from core.models.stylegan2 import StyleGAN2Generator

SAM_CONFIG = {"size": 256, "style_dim": 32, "n_mlp": 2, "channel_multiplier": 2, "channel_max": 8}


@pytest.mark.slow  # CI runs it
def test_sam_precision_rows_compare_the_loss_after_n_steps_to_float32():
    torch.manual_seed(3)
    G = StyleGAN2Generator(**SAM_CONFIG).eval().requires_grad_(False)
    masks = S.feature_masks(torch.arange(256)[:, None].expand(256, 256) * len(S.SPACES) // 256, G)
    target = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    lp = get_lpips("alex")
    cpu = torch.device("cpu")
    rows = list(bench.sam_precision_runs(G, target, masks, lp, 2, torch.bfloat16, cpu))
    assert [(r[0], r[1]) for r in rows] == [("sam-256 inversion, 2 steps (loss)", "float32"),
                                            ("sam-256 inversion, 2 steps (loss)", "bfloat16")]
    full, half = rows[0][-1], rows[1][-1]
    alone = S.Inversion(G, target, masks, G.w_plus(G.mean_w()), lp, steps=2)  # float32, as the tab
    while not alone.done:
        alone.step()
    assert full["loss"] == round(alone.history[-1][0], 5) and full["steps"] == 2
    assert "loss_vs_float32" not in full
    assert half["loss_vs_float32"] == pytest.approx(half["loss"] / full["loss"], rel=1e-3)
    assert 0.8 < half["loss_vs_float32"] < 1.25 and 0.8 < half["loss_float32_render_vs_float32"] < 1.25


def test_bench_rows_carry_a_cases_extra_columns(monkeypatch, tmp_path, capsys):
    def case(device, runs):
        yield "timing only", "float32", 1.0, 0.5, float("nan")
        yield "with a loss", "bfloat16", 2.0, 1.5, 10.0, {"loss": 0.25, "loss_vs_float32": 1.01}
    monkeypatch.setitem(bench.CASES, "fake", case)
    out = tmp_path / "rows.json"
    assert bench.main(["--device", "cpu", "--only", "fake", "--runs", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert "loss" not in rows[0] and rows[1]["loss"] == 0.25 and rows[1]["loss_vs_float32"] == 1.01
    assert "loss 0.25, loss_vs_float32 1.01" in capsys.readouterr().out
