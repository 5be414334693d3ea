import copy

import pytest
import torch
from torch import nn

from calibsynth.models import load_model, tiny_model
from calibsynth.prune import (METHODS, InputStats, _walk, block_linears, dsnot, find_blocks,
                              needs_calibration, owl_block_sparsities, prune, prunable_linears, register_method,
                              sparsegpt, sparsity_of, supports_nm, wanda)
from calibsynth.sources import sample_calibration


def outlier_model(arch="llama", seed=0, layers=2):
    "A tiny model whose norm weights vary by channel, so activations have outlier channels like real LLMs."
    model, tok = tiny_model(arch, seed=seed, layers=layers)
    g = torch.Generator().manual_seed(seed + 1)
    for name, p in model.named_parameters():
        if "norm" in name:
            p.data = torch.exp(torch.randn(p.shape, generator=g)) * (1 if arch == "llama" else 0.5)
    return model, tok


@pytest.fixture(scope="module")
def llama():
    return outlier_model("llama")


@pytest.fixture(scope="module")
def calib(llama):
    return sample_calibration("news", llama[1], n_samples=8, seqlen=64, seed=0)


@pytest.fixture(scope="module")
def heldout(llama):
    return sample_calibration("news", llama[1], n_samples=4, seqlen=64, seed=99)


def pruned(model, *args, **kw):
    m = copy.deepcopy(model)
    report = prune(m, *args, progress=False, **kw)
    return m, report


def output_error(dense, sparse, ids):
    with torch.no_grad():
        return (dense(ids).logits - sparse(ids).logits).pow(2).mean().item()


ROW_WISE = [m for m in METHODS if m != "sparsegpt"]  # SparseGPT counts per column block (next test)
NM_CAPABLE = [m for m in METHODS if supports_nm(m)]


@pytest.mark.parametrize("method", ROW_WISE)
def test_exact_sparsity_per_row(llama, calib, method):
    m, rep = pruned(llama[0], calib, method, 0.6)
    for name, lin in prunable_linears(m).items():
        zeros = (lin.weight == 0).sum(1)
        i = int(name.split(".")[2])
        expect = int(lin.in_features * rep.block_target[i])
        assert (zeros == expect).all(), (name, zeros.unique(), expect)
    assert rep.per_linear and len(rep.block_sparsity) == 2


def test_sparsegpt_exact_sparsity_per_column_block(llama, calib):
    m, rep = pruned(llama[0], calib, "sparsegpt", 0.6, blocksize=32)
    for lin in prunable_linears(m).values():
        for start in range(0, lin.in_features, 32):
            block = lin.weight[:, start:start + 32]
            assert (block == 0).sum().item() == int(block.numel() * 0.6)


@pytest.mark.parametrize("method", NM_CAPABLE)
@pytest.mark.parametrize("n,m", [(2, 4), (4, 8)])
def test_nm_groups_are_valid(llama, calib, method, n, m):
    model, rep = pruned(llama[0], calib, method, n / m, pattern=f"{n}:{m}")
    for lin in prunable_linears(model).values():
        groups = (lin.weight == 0).reshape(lin.out_features, -1, m).sum(-1)
        assert (groups == n).all()
    assert rep.sparsity == pytest.approx(n / m)


def reference_wanda(model, calib, sparsity):
    "The paper's loop, written plainly: one sample at a time, hooks summing squared inputs, sort per row."
    model = copy.deepcopy(model)
    prefix, blocks = find_blocks(model)
    inputs, kwargs = [], []

    def grab(mod, args, kw):
        inputs.append(args[0] if args else kw["hidden_states"])
        kwargs.append({k: v for k, v in kw.items() if k != "hidden_states"})
        raise StopIteration

    masks = {}
    for i, block in enumerate(blocks):
        if i == 0:
            h = block.register_forward_pre_hook(grab, with_kwargs=True)
            for row in calib:
                try:
                    model(row[None], use_cache=False)
                except StopIteration:
                    pass
            h.remove()
        # the per-block keyword arguments (position embeddings) are the same for both blocks of a LLaMA
        sq = {n: torch.zeros(l.in_features) for n, l in block_linears(block).items()}
        def accumulate(mod, args, out, n):
            sq[n].add_(args[0].reshape(-1, args[0].shape[-1]).pow(2).sum(0))

        hooks = [l.register_forward_hook(lambda mod, a, o, n=n: accumulate(mod, a, o, n))
                 for n, l in block_linears(block).items()]
        with torch.no_grad():
            for x, kw in zip(inputs, kwargs):
                block(x, **kw)
        for h in hooks:
            h.remove()
        for n, l in block_linears(block).items():
            score = l.weight.abs() * sq[n].sqrt()
            k = int(l.in_features * sparsity)
            idx = torch.sort(score, dim=1, stable=True).indices[:, :k]
            l.weight.data.scatter_(1, idx, 0.0)
            masks[f"{prefix}.{i}.{n}"] = l.weight != 0
        with torch.no_grad():
            inputs = [b if not isinstance(b, tuple) else b[0] for b in (block(x, **kw) for x, kw in zip(inputs, kwargs))]
    return masks


def test_wanda_matches_a_plain_reference(llama, calib):
    m, _ = pruned(llama[0], calib, "wanda", 0.5)
    ref = reference_wanda(llama[0], calib, 0.5)
    for name, lin in prunable_linears(m).items():
        assert torch.equal(lin.weight != 0, ref[name]), name


def test_hessian_is_the_full_symmetric_gram_over_all_batches():
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(2, 50, 800, generator=g).bfloat16() for _ in range(3)]  # wide: several column blocks
    stats = InputStats()
    for b in batches:
        stats.add(b, with_xtx=True)
    x = torch.cat([b.reshape(-1, 800) for b in batches]).double()
    torch.testing.assert_close(stats.hessian.double(), 2 * x.T @ x / 300, rtol=1e-5, atol=1e-5)
    assert torch.equal(stats.hessian, stats.hessian.T)


def reference_sparsegpt(W, H, sparsity, nm, blocksize, percdamp=0.01):
    "SparseGPT for one linear, transcribed plainly from the paper's algorithm (column by column, no stacking)."
    W, H = W.clone(), H.clone()
    cols = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += percdamp * torch.diag(H).mean() * torch.eye(cols)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    keep = torch.ones_like(W, dtype=torch.bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
        d = torch.diag(Hinv1)
        Q1, Err1 = torch.zeros_like(W1), torch.zeros_like(W1)
        keep1 = torch.ones_like(W1, dtype=torch.bool)
        if not nm:  # the floor(rows * block * sparsity) lowest w^2 / d^2 of the block, lower flat index first on ties
            score = (W1.square() / d.square()).flatten()
            keep1.view(-1)[torch.sort(score, stable=True).indices[:int(score.numel() * sparsity)]] = False
        for i in range(i2 - i1):
            if nm and i % nm[1] == 0:
                s = W1[:, i:i + nm[1]].square() / d[i:i + nm[1]].square()
                keep1[:, i:i + nm[1]].scatter_(1, torch.sort(s, dim=1, stable=True).indices[:, :nm[0]], False)
            q = W1[:, i] * keep1[:, i]
            Q1[:, i] = q
            Err1[:, i] = (W1[:, i] - q) / d[i]
            W1[:, i:] -= Err1[:, i:i + 1] @ Hinv1[i:i + 1, i:]
        W[:, i1:i2], keep[:, i1:i2] = Q1, keep1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return keep, W


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_sparsegpt_stacked_matches_a_plain_reference_per_linear(nm):
    "Linears sharing an input (q/k/v) are pruned stacked; each must come out as if pruned alone."
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 96, generator=g) * torch.rand(96, generator=g) * 3
    x[:, 7] = 0  # an input that is never active
    stats = InputStats()
    stats.add(x, with_xtx=True)
    weights = [torch.randn(rows, 96, generator=g) for rows in (96, 32, 32)]
    sparsity = 0.5 if nm else 0.6
    keep, W = sparsegpt(torch.cat(weights), stats, sparsity, nm, [96, 32, 32], blocksize=32)
    for k, w, ref_w in zip(keep.split([96, 32, 32]), W.split([96, 32, 32]), weights):
        ref_keep, ref_W = reference_sparsegpt(ref_w, stats.hessian, sparsity, nm, blocksize=32)
        assert torch.equal(k, ref_keep)
        torch.testing.assert_close(w * k, ref_W * ref_keep, rtol=1e-4, atol=1e-5)
    assert not (W * keep)[:, 7].any()  # the dead input's weights are zeroed
    if nm is None:  # each linear holds exactly its share of zeros in every column block
        for k in keep.split([96, 32, 32]):
            for b in range(0, 96, 32):
                assert (~k[:, b:b + 32]).sum() == int(k.shape[0] * 32 * sparsity)


def test_owl_average_is_the_target_and_blocks_differ():
    model, tok = outlier_model("llama", layers=4, seed=3)
    calib = sample_calibration("bible", tok, 8, 64, seed=0)
    m, rep = pruned(model, calib, "owl", 0.6)
    assert len(set(round(t, 6) for t in rep.block_target)) > 1
    assert max(rep.block_target) - min(rep.block_target) == pytest.approx(0.16, abs=1e-9)
    assert sum(rep.block_target) / 4 == pytest.approx(0.6, abs=1e-12)
    assert rep.sparsity == pytest.approx(0.6, abs=0.01)


def test_owl_weights_blocks_by_size():
    s = owl_block_sparsities([0.1, 0.2, 0.3], [3, 1, 1], 0.5)
    assert (3 * s[0] + s[1] + s[2]) / 5 == pytest.approx(0.5) and s[0] > s[1] > s[2]


def test_calibrated_methods_reconstruct_better_than_magnitude(llama, calib, heldout):
    dense = llama[0]
    err = {meth: output_error(dense, pruned(dense, calib, meth, 0.6)[0], heldout)
           for meth in ["magnitude", "wanda", "sparsegpt", "dsnot"]}
    assert err["wanda"] < err["magnitude"] and err["sparsegpt"] < err["magnitude"], err
    assert err["dsnot"] <= err["wanda"] * 1.01, err


def test_dsnot_shrinks_the_expected_reconstruction_error():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(16, 64, generator=g)
    st = InputStats()
    st.add(torch.randn(512, 64, generator=g) * torch.rand(64, generator=g) * 3 + torch.randn(64, generator=g), False)
    keep_w, _ = wanda(W, st, 0.5, None, [16])
    keep_d, _ = dsnot(W, st, 0.5, None, [16], update_threshold=0.0)
    err = lambda keep: ((W * st.mean) * ~keep).sum(1).abs()
    assert (err(keep_d) <= err(keep_w) + 1e-6).all() and err(keep_d).sum() < err(keep_w).sum()
    assert ((~keep_d).sum(1) == 32).all() and not torch.equal(keep_d, keep_w)


def test_same_calibration_same_masks(llama, calib):
    a, _ = pruned(llama[0], calib, "sparsegpt", 0.5)
    b, _ = pruned(llama[0], calib, "sparsegpt", 0.5)
    for (n, la), lb in zip(prunable_linears(a).items(), prunable_linears(b).values()):
        assert torch.equal(la.weight, lb.weight), n


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_engine_propagation_matches_the_model(arch):
    "With nothing pruned, the block-by-block pass reproduces the model's own hidden states (per-block kwargs)."
    model, tok = outlier_model(arch, layers=3)
    ids = sample_calibration("bible", tok, 4, 48, seed=0)
    _, blocks = find_blocks(model)
    outs = {}
    hooks = [b.register_forward_hook(lambda mod, a, o, i=i: outs.__setitem__(i, o[0] if isinstance(o, tuple) else o))
             for i, b in enumerate(blocks)]
    with torch.no_grad():
        model(ids, use_cache=False)
    for h in hooks:
        h.remove()
    _, hidden = _walk(model, ids, 2, torch.device("cpu"), False, torch.float32, False, lambda *a: False, "", False,
                      need_gather_outputs=True)
    torch.testing.assert_close(torch.cat(hidden), outs[len(blocks) - 1])


def test_gemma3_prunes(calib):
    model, tok = outlier_model("gemma3", layers=2)
    ids = sample_calibration("news", tok, 4, 64, seed=0)
    for method in METHODS:
        m, rep = pruned(model, ids, method, 0.5)
        assert rep.sparsity == pytest.approx(0.5, abs=0.01)
        with torch.no_grad():
            assert torch.isfinite(m(ids).logits).all()


def test_bf16_forwards_keep_masks_close(llama, calib):
    a, _ = pruned(llama[0], calib, "wanda", 0.5)
    b, rep = pruned(llama[0], calib, "wanda", 0.5, forward_dtype="bfloat16")
    diff = sum(((la.weight == 0) != (lb.weight == 0)).sum().item()
               for la, lb in zip(prunable_linears(a).values(), prunable_linears(b).values()))
    total = sum(l.weight.numel() for l in prunable_linears(a).values())
    assert rep.forward_dtype == "bfloat16" and diff / total < 0.02


def test_save_and_reload_keeps_the_zeros(tmp_path, llama, calib):
    m, rep = pruned(llama[0], calib, "wanda", 0.6)
    m.save_pretrained(tmp_path)
    llama[1].save_pretrained(tmp_path)
    back, _ = load_model(str(tmp_path), device="cpu")
    assert sparsity_of(back) == pytest.approx(rep.sparsity)
    for la, lb in zip(prunable_linears(m).values(), prunable_linears(back).values()):
        assert torch.equal(la.weight, lb.weight)


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(method="prune-all"), ValueError, "prune-all"),
    (dict(sparsity=1.0), ValueError, "sparsity"),
    (dict(sparsity=-0.1), ValueError, "sparsity"),
    (dict(sparsity="0.5"), ValueError, "sparsity"),
    (dict(pattern="4:2", sparsity=0.5), ValueError, "4:2"),
    (dict(pattern="3:5", sparsity=0.6), ValueError, "M=5 does not divide"),
    (dict(pattern="2:4", sparsity=0.6), ValueError, "exactly 0.5"),
    (dict(pattern="dense"), ValueError, "dense"),
    (dict(method="owl", pattern="2:4", sparsity=0.5), ValueError, "allocation 'owl'"),
    (dict(method="sparsegpt", allocation="owl", pattern="2:4", sparsity=0.5), ValueError, "allocation 'owl'"),
    (dict(method="magnitude", percdmp=0.5, blocksizee=3), ValueError, r"\['blocksizee', 'percdmp'\]"),
    (dict(method="sparsegpt", percdmp=0.5), ValueError, "percdamp"),  # the message lists the valid options
    (dict(allocation="fair"), ValueError, "fair"),
    (dict(method="owl", allocation="uniform"), ValueError, "alias"),
    (dict(method="magnitude", allocation="owl", calib_ids=None), TypeError, "LongTensor"),
    (dict(calib_ids=torch.empty(0, 8, dtype=torch.long)), ValueError, "non-empty"),
    (dict(calib_ids=torch.rand(2, 8)), TypeError, "integer"),
    (dict(calib_ids=[[1, 2, 3]]), TypeError, "LongTensor"),
    (dict(calib_ids=torch.full((2, 8), 10_000)), ValueError, "vocabulary"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(forward_dtype="float16"), ValueError, "forward_dtype"),
])
def test_bad_input_is_named_and_the_model_is_untouched(llama, calib, kwargs, err, match):
    model = copy.deepcopy(llama[0])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = dict(calib_ids=calib, method="wanda", sparsity=0.5) | kwargs
    with pytest.raises(err, match=match):
        prune(model, progress=False, **args)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_model_without_blocks_is_refused():
    with pytest.raises(ValueError, match="ModuleList"):
        find_blocks(nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4)))


def test_owl_is_an_allocation_for_every_scoring_method(llama, calib):
    "allocation='owl' works with SparseGPT: non-uniform block targets averaging the target, achieved as asked."
    model, tok = outlier_model("llama", layers=4, seed=3)
    ids = sample_calibration("bible", tok, 8, 64, seed=0)
    m, rep = pruned(model, ids, "sparsegpt", 0.6, allocation="owl")
    assert rep.allocation == "owl" and max(rep.block_target) - min(rep.block_target) > 0.1
    assert sum(rep.block_target) / 4 == pytest.approx(0.6, abs=1e-12)
    assert rep.block_sparsity == pytest.approx(rep.block_target, abs=0.01)
    # the alias 'owl' is Wanda with the OWL allocation: the same masks
    a, rep_a = pruned(model, ids, "owl", 0.6)
    b, rep_b = pruned(model, ids, "wanda", 0.6, allocation="owl")
    assert rep_a.block_target == rep_b.block_target
    assert all(torch.equal(x.weight, y.weight) for x, y in zip(prunable_linears(a).values(), prunable_linears(b).values()))
    # magnitude with OWL reads calibration data for the ratios only, and gets the same block targets
    c, rep_c = pruned(model, ids, "magnitude", 0.6, allocation="owl")
    assert needs_calibration("magnitude", "owl") and rep_c.block_target == rep_a.block_target


def test_options_reach_the_method(llama, calib):
    a, _ = pruned(llama[0], calib, "sparsegpt", 0.6, blocksize=32)
    b, _ = pruned(llama[0], calib, "sparsegpt", 0.6, blocksize=32, percdamp=0.5)
    assert any(not torch.equal(x.weight, y.weight) for x, y in zip(prunable_linears(a).values(), prunable_linears(b).values()))
    r1, _ = pruned(llama[0], None, "random", 0.5)
    r2, _ = pruned(llama[0], None, "random", 0.5, seed=1)
    assert any(not torch.equal(x.weight, y.weight) for x, y in zip(prunable_linears(r1).values(), prunable_linears(r2).values()))


def test_a_registered_method_is_usable_at_once(llama, calib):
    "One function and one registration: the engine runs it with the statistics it declared, options checked."
    seen = {}

    @register_method("test_inverse_norm", statistics="gram")
    def inverse_norm(weight, stats, sparsity, nm, segments, *, power: float = 1.0):
        seen["xtx"] = stats.xtx is not None
        scores = weight.abs() / stats.norms_sq.sqrt().clamp_min(1e-6).pow(power)
        from calibsynth.prune import select
        return select(scores, sparsity, nm), None

    try:
        m, rep = pruned(llama[0], calib, "test_inverse_norm", 0.5, power=2.0)
        assert seen["xtx"] and rep.sparsity == pytest.approx(0.5, abs=0.02) and rep.options == {"power": 2.0}
        with pytest.raises(ValueError, match="powr"):
            pruned(llama[0], calib, "test_inverse_norm", 0.5, powr=2.0)
    finally:
        del METHODS["test_inverse_norm"]


def test_bf16_model_prunes_with_float32_forwards(llama, calib):
    "A model loaded in bf16 (as on a GPU) prunes whatever the forward dtype; the weights stay bf16."
    model = copy.deepcopy(llama[0]).to(torch.bfloat16)
    for dtype in ("float32", "bfloat16"):
        m, rep = pruned(model, calib, "sparsegpt", 0.5, forward_dtype=dtype)
        assert rep.sparsity == pytest.approx(0.5, abs=0.01)
        assert all(l.weight.dtype == torch.bfloat16 for l in prunable_linears(m).values())
