"Figures: seaborn plots in the project's source colours, error bars over seeds, byte-identical output."
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from calibsynth.plots import ecdf, grouped_bars, mean_sd, save_figure, source_color, violin


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def per_seed_runs(seeds=3):
    "Per-seed rows as the experiment notebooks pass them: one row per (sparsity, source, seed)."
    rng = np.random.default_rng(0)
    rows = [dict(sparsity=sp, source=src, seed=seed, acc=0.6 - sp / 2 + 0.01 * j + 0.02 * rng.normal())
            for sp in [0.5, 0.6, 0.7] for j, src in enumerate(["news", "code", "syn:smollm2-135m:news"])
            for seed in range(seeds)]
    return pd.DataFrame(rows)


def error_bars(ax):
    return [(np.nanmin(line.get_ydata()), np.nanmax(line.get_ydata())) for line in ax.lines
            if np.isfinite(line.get_ydata()).any()]


def test_grouped_bars_draws_mean_and_sd_per_bar_in_source_colours():
    df = per_seed_runs()
    order, hue_order = [0.7, 0.5, 0.6], ["syn:smollm2-135m:news", "news", "code"]
    ax = grouped_bars(df, "sparsity", "acc", ax=plt.figure().gca(), order=order, hue_order=hue_order)
    table = mean_sd(df, ["sparsity", "source"], "acc").set_index(["source", "sparsity"])
    expected = [table.loc[(h, x)] for h in hue_order for x in order]
    heights = [p.get_height() for bars in ax.containers for p in bars]
    np.testing.assert_allclose(heights, [r["mean"] for r in expected])
    np.testing.assert_allclose(error_bars(ax), [(r["mean"] - r["std"], r["mean"] + r["std"]) for r in expected])
    assert [to_hex(bars.patches[0].get_facecolor()) for bars in ax.containers] == \
        [to_hex(source_color(h)) for h in hue_order]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.7", "0.5", "0.6"]
    ax.legend()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["self-generated", "news", "code"]


def test_grouped_bars_one_seed_has_no_error_bars_and_ci_is_seeded():
    assert error_bars(grouped_bars(per_seed_runs(seeds=1), "sparsity", "acc", ax=plt.figure().gca())) == []
    ci = [error_bars(grouped_bars(per_seed_runs(), "sparsity", "acc", errorbar=("ci", 95), ax=plt.figure().gca()))
          for _ in range(2)]
    assert len(ci[0]) == 9 and ci[0] == ci[1]


def test_ecdf_uses_source_colours_and_display_names():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"source": np.repeat(["news", "syn:m:news", "bible"], 20), "score": rng.normal(size=60)})
    ax = ecdf(df, "score", ax=plt.figure().gca())
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["bible", "news", "self-generated"]
    assert [to_hex(h.get_color()) for h in legend.legend_handles] == \
        [to_hex(source_color(s)) for s in ["bible", "news", "syn:m:news"]]
    assert all(line.get_ydata()[-1] == 1.0 for line in ax.lines) and len(ax.lines) == 3


def test_violin_bodies_take_the_source_colour():
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"source": np.repeat(["news", "code"], 20), "score": rng.normal(size=40) + np.repeat([1, 0], 20)})
    ax = violin(df, "score", ax=plt.figure().gca())
    bodies = [c for c in ax.collections if isinstance(c, matplotlib.collections.PolyCollection)]
    assert [to_hex(b.get_facecolor()[0]) for b in bodies] == [to_hex(source_color("news")), to_hex(source_color("code"))]


def test_figures_are_byte_identical(tmp_path):
    "The same data give the same PNG: seeded jitter, seeded bootstrap, no timestamps."
    def draw(path):
        fig, axes = plt.subplots(1, 3)
        df = per_seed_runs()
        grouped_bars(df, "sparsity", "acc", ax=axes[0], errorbar=("ci", 95))
        violin(df, "acc", ax=axes[1])
        ecdf(df, "acc", ax=axes[2])
        return save_figure(fig, path).read_bytes()

    first, second = draw(tmp_path / "a" / "f.png"), draw(tmp_path / "b" / "f.png")
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and first == second
