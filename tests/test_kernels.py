"The Triton kernels against their torch references, bit for bit, in Triton's CPU interpreter."
import pytest
import torch
from hypothesis import given, settings, strategies as st

from calibsynth import kernels as K

pytestmark = pytest.mark.skipif(not (K.HAS_TRITON and K.triton_interpreted()),
                                reason="needs triton with TRITON_INTERPRET=1 (set in conftest)")


def scores(draw, rows, cols, kind):
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    if kind == "ties":  # few distinct values: many ties, negatives and zeros, -0.0 too
        x = torch.randint(-3, 4, (rows, cols), generator=g).float()
        x[x == 0] = -0.0
        return x
    if kind == "equal":
        return torch.full((rows, cols), 0.25)
    return torch.randn(rows, cols, generator=g) * 10.0 ** torch.randint(-3, 4, (1,), generator=g).item()


@st.composite
def row_case(draw):
    rows, cols = draw(st.integers(1, 6)), draw(st.integers(1, 300))
    kind = draw(st.sampled_from(["random", "ties", "equal"]))
    return scores(draw, rows, cols, kind), draw(st.floats(0, 0.999))


@st.composite
def nm_case(draw):
    n, m = draw(st.sampled_from([(1, 2), (2, 4), (4, 8), (1, 4), (3, 8), (2, 3), (5, 7)]))
    rows, groups = draw(st.integers(1, 6)), draw(st.integers(1, 40))
    kind = draw(st.sampled_from(["random", "ties", "equal"]))
    return scores(draw, rows, groups * m, kind), n, m


@settings(max_examples=30, deadline=None)
@given(row_case())
def test_row_selection_matches_reference(case):
    x, sparsity = case
    got = K.row_prune_mask(x, sparsity, backend="triton")
    assert torch.equal(got, K.row_prune_mask(x, sparsity, backend="torch"))
    assert ((~got).sum(1) == int(x.shape[1] * sparsity)).all()


@settings(max_examples=30, deadline=None)
@given(nm_case())
def test_nm_matches_reference(case):
    x, n, m = case
    got = K.nm_mask(x, n, m, backend="triton")
    assert torch.equal(got, K.nm_mask(x, n, m, backend="torch"))
    assert ((~got).reshape(x.shape[0], -1, m).sum(-1) == n).all()


@pytest.mark.parametrize("cols,sparsity", [(150, 0.5), (129, 0.9), (200, 0.01)])
def test_row_selection_across_tiles(monkeypatch, cols, sparsity):
    "Rows longer than one tile take the streaming path; force it with a small tile."
    monkeypatch.setattr(K, "_MAX_TILE", 32)
    x = torch.randint(-5, 5, (4, cols)).float()
    assert torch.equal(K.row_prune_mask(x, sparsity, backend="triton"), K.row_prune_mask(x, sparsity, backend="torch"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("nm", [None, (2, 4), (4, 8)])
def test_fused_wanda_matches_reference(dtype, nm):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(9, 64, generator=g).to(dtype)
    norms = torch.rand(64, generator=g) * 100
    got = K.wanda_mask(w, norms, 0.5 if nm else 0.6, nm, backend="triton")
    ref = K.wanda_mask(w, norms, 0.5 if nm else 0.6, nm, backend="torch")
    assert torch.equal(got, ref)
    plain = w.float().abs() * norms.sqrt()
    assert torch.equal(ref, K.nm_mask_torch(plain, *nm) if nm else K.row_prune_mask_torch(plain, 0.6))


def test_outlier_reductions_match_reference():
    g = torch.Generator().manual_seed(2)
    ws = [torch.randn(8, 96, generator=g) * torch.rand(96, generator=g) ** 4, torch.randn(5, 96, generator=g)]
    sc = [torch.rand(96, generator=g) * 10, torch.rand(96, generator=g)]
    for w, s in zip(ws, sc):
        torch.testing.assert_close(K.score_sum_triton(w, s), K.score_sum_torch(w, s), rtol=1e-6, atol=1e-6)
        for thr in [0.0, 0.5, 3.0]:
            assert K.count_above_triton(w, thr, s) == K.count_above_torch(w, thr, s)
    assert K.outlier_ratio(ws, sc, 5.0, "triton") == pytest.approx(K.outlier_ratio(ws, sc, 5.0, "torch"))
    flat = torch.cat([(w.abs() * s).flatten() for w, s in zip(ws, sc)])
    assert K.outlier_ratio(ws, sc, 5.0, "torch") == pytest.approx((flat > 5 * flat.mean()).float().mean().item())


def test_auto_backend_is_torch_on_cpu_and_bad_backends_are_named():
    x = torch.randn(2, 8)
    assert K.pick_backend("auto", x) == "torch"
    with pytest.raises(ValueError, match="cuda-graphs"):
        K.row_prune_mask(x, 0.5, backend="cuda-graphs")


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_bad_arguments_fail_alike(backend):
    with pytest.raises(ValueError, match="sparsity"):
        K.row_prune_mask(torch.randn(2, 8), 1.0, backend=backend)
    with pytest.raises(ValueError, match="2:3"):
        K.nm_mask(torch.randn(2, 8), 2, 3, backend=backend)
    with pytest.raises(ValueError, match="2-D"):
        K.row_prune_mask(torch.randn(8), 0.5, backend=backend)


def test_gpu_benchmark_script_runs_on_the_interpreter(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_kernels.py"
    out = tmp_path / "k.json"
    subprocess.run([sys.executable, str(script), "--small", "--out", str(out)], check=True, capture_output=True,
                   env={**__import__("os").environ, "TRITON_INTERPRET": "1"}, timeout=600)
    report = json.loads(out.read_text())
    assert report["kernels"] and all(all(r["bit_identical"].values()) for r in report["kernels"])


def test_without_triton_the_torch_backend_still_works():
    "Triton is optional: without it the module imports, 'auto' is torch and 'triton' is refused by name."
    import subprocess
    import sys

    code = """
import sys
sys.modules["triton"] = None  # as if triton were not installed
import torch
from calibsynth import kernels as K
assert not K.HAS_TRITON
x = torch.tensor([[3., 1., 2., 1.]])
assert K.row_prune_mask(x, 0.5).tolist() == [[True, False, True, False]]
assert K.nm_mask(x, 1, 2, backend="torch").tolist() == [[True, False, True, False]]
try:
    K.row_prune_mask(x, 0.5, backend="triton")
except ValueError as e:
    assert "pip install triton" in str(e), e
else:
    raise AssertionError("backend='triton' accepted without triton")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
