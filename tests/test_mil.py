"""Bag poolings: invariances, masking, MATT's queries and its behaviour on a synthetic MIL task."""

import numpy as np
import pandas as pd
import pytest
import torch
from synthetic_mil import synthetic_mil_task

from mattlib.models.encoders import make_encoder
from mattlib.models.mil import (
    POOLINGS,
    BagModel,
    late_fusion,
    make_pooling,
    masked_softmax,
)
from mattlib.training import BagDataset, FitConfig, fit, predict

D, C = 8, 5


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _pool(name, **kw):
    torch.manual_seed(0)
    if name == "matt" and "score" not in kw:
        kw["score"] = "paper"
    return make_pooling(name, in_dim=D, n_classes=C, **kw).eval()


def _bags(B=4, N=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, D, generator=g)
    sizes = torch.tensor([N, 3, 1, 4][:B])
    mask = torch.arange(N)[None] < sizes[:, None]
    return x, mask


# one entry per call mode: (pooling name, kwargs, whether labels are passed)
MODES = [(n, {}, False) for n in POOLINGS] + [
    ("matt", {}, True),
    ("matt", {"score": "dot"}, False),
    ("matt", {"score": "dot"}, True),
]
IDS = [f"{n}{'-' + kw['score'] if kw else ''}{'-labels' if lab else ''}" for n, kw, lab in MODES]


def _call(pool, x, mask, with_labels):
    labels = torch.arange(x.shape[0]) % C if with_labels else None
    with torch.no_grad():
        return pool(x, mask, labels)


@pytest.mark.parametrize("name,kw,with_labels", MODES, ids=IDS)
def test_permutation_invariance(name, kw, with_labels):
    pool = _pool(name, **kw)
    x, mask = _bags()
    logits, att = _call(pool, x, mask, with_labels)
    # permute the real instances of every bag (padding stays at the end)
    x_p, perms = x.clone(), []
    for b in range(x.shape[0]):
        n = int(mask[b].sum())
        p = torch.randperm(n, generator=torch.Generator().manual_seed(b + 1))
        x_p[b, :n] = x[b, p]
        perms.append(p)
    logits_p, att_p = _call(pool, x_p, mask, with_labels)
    torch.testing.assert_close(logits_p, logits, rtol=1e-5, atol=1e-6)
    for b, p in enumerate(perms):
        n = len(p)
        torch.testing.assert_close(att_p[b, ..., :n], att[b, ..., p], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,kw,with_labels", MODES, ids=IDS)
def test_padding_is_ignored_and_gets_zero_attention(name, kw, with_labels):
    pool = _pool(name, **kw)
    x, mask = _bags()
    logits, att = _call(pool, x, mask, with_labels)
    # three more padded slots full of junk, and junk in the existing padded slots
    junk = 1e3 * torch.randn(x.shape[0], 3, D)
    x_j = torch.cat([x.masked_fill(~mask[..., None], 777.0), junk], dim=1)
    mask_j = torch.cat([mask, torch.zeros(x.shape[0], 3, dtype=torch.bool)], dim=1)
    logits_j, att_j = _call(pool, x_j, mask_j, with_labels)
    torch.testing.assert_close(logits_j, logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(att_j[..., : x.shape[1]], att, rtol=1e-5, atol=1e-6)
    pad = ~mask_j if att_j.dim() == 2 else (~mask_j)[:, None, :].expand_as(att_j)
    assert torch.all(att_j[pad] == 0), "padded instances must get exactly zero attention"


@pytest.mark.parametrize("name,kw,with_labels", MODES, ids=IDS)
def test_attention_sums_to_one_and_empty_bags_are_safe(name, kw, with_labels):
    pool = _pool(name, **kw)
    x, mask = _bags()
    mask[3] = False  # a fully padded row must not produce NaN
    logits, att = _call(pool, x, mask, with_labels)
    assert torch.isfinite(logits).all()
    sums = att.sum(-1)
    torch.testing.assert_close(sums[:3], torch.ones_like(sums[:3]), rtol=1e-5, atol=1e-6)
    assert torch.all(sums[3] == 0)
    expected = (x.shape[0], C, x.shape[1]) if name == "matt" and not with_labels else mask.shape
    assert att.shape == expected


def test_masked_softmax_exact_zeros():
    s = torch.tensor([[1.0, 2.0, 50.0], [0.0, 0.0, 0.0]])
    m = torch.tensor([[True, True, False], [False, False, False]])
    w = masked_softmax(s, m)
    assert w[0, 2] == 0 and torch.all(w[1] == 0)
    torch.testing.assert_close(w[0, :2], torch.softmax(torch.tensor([1.0, 2.0]), 0))


def test_max_pooling_attention_is_fraction_of_won_dims():
    pool = make_pooling("max", in_dim=3, n_classes=2)
    x = torch.tensor([[[5.0, 0.0, 0.0], [0.0, 6.0, 7.0], [9.0, 9.0, 9.0]]])
    mask = torch.tensor([[True, True, False]])
    _, att = pool(x, mask)
    torch.testing.assert_close(att, torch.tensor([[1 / 3, 2 / 3, 0.0]]))


def test_matt_inference_scores_each_genre_with_its_own_query():
    """OpenNRE's selective attention: softmax over genres per query g, then keep p_g[g]."""
    for score in ("paper", "dot"):
        pool = _pool("matt", score=score)
        x, mask = _bags()
        logits, att = _call(pool, x, mask, False)
        for g in range(C):
            with torch.no_grad():
                lg, ag = pool(x, mask, torch.full((4,), g))
            torch.testing.assert_close(logits[:, g], torch.log_softmax(lg, dim=1)[:, g], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(att[:, g], ag, rtol=1e-5, atol=1e-6)


def test_matt_softmax_per_query_differs_from_diagonal_of_logits():
    """Taking the logits' diagonal first (the old rule) predicts another genre on some bags."""
    pool = _pool("matt", score="dot")
    with torch.no_grad():
        pool.classifier.weight.mul_(6.0)  # well-separated logits, as after training
    x = torch.randn(256, 5, D, generator=torch.Generator().manual_seed(1))
    mask = torch.ones(256, 5, dtype=torch.bool)
    log_p, _ = _call(pool, x, mask, False)
    diag_logits = torch.stack([pool(x, mask, torch.full((256,), g))[0][:, g] for g in range(C)], dim=1).detach()
    assert (log_p.argmax(1) != diag_logits.argmax(1)).any()
    assert (log_p <= 0).all()  # log-probabilities: predict() reports exp(logits)


def test_matt_equations_by_hand():
    """Eqs. 1-5 for one bag, computed step by step (b_s inside the tanh)."""
    pool = _pool("matt")
    x, mask = _bags(B=1, N=3)
    y = torch.tensor([2])
    logits, att = pool(x, mask, y)
    w, b = pool.w_s.weight[0], pool.w_s.bias
    e = torch.stack([torch.tanh(w @ torch.cat([x[0, k], pool.queries[2]]) + b)[0] for k in range(3)])
    alpha = torch.softmax(e, 0)
    g = (alpha[:, None] * x[0]).sum(0)
    o = pool.classifier.weight @ g + pool.classifier.bias
    torch.testing.assert_close(att[0], alpha.detach())
    torch.testing.assert_close(logits[0], o.detach())


def test_matt_queries_are_trainable_parameters():
    pool = make_pooling("matt", in_dim=D, n_classes=C)
    assert any(p is pool.queries for p in pool.parameters())
    x, mask = _bags()
    logits, _ = pool(x, mask, torch.tensor([0, 1, 2, 3]))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 3])).backward()
    assert pool.queries.grad is not None and pool.queries.grad[:4].abs().sum() > 0


def test_unknown_pooling_lists_valid_names():
    with pytest.raises(ValueError) as err:
        make_pooling("attention", in_dim=4, n_classes=2)
    for name in ("none", "mean", "max", "matt", "gated"):
        assert name in str(err.value)
    with pytest.raises(ValueError, match="score"):
        make_pooling("matt", in_dim=4, n_classes=2, score="cosine")


class _CountingEncoder(torch.nn.Module):
    out_dim = D

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(D, D)
        self.seen = 0

    def forward(self, x):
        self.seen += x.shape[0]
        return self.lin(x)


def test_bag_model_encodes_only_real_instances():
    enc = _CountingEncoder()
    model = BagModel(enc, _pool("matt")).eval()
    x, mask = _bags()
    x_nan = x.masked_fill(~mask[..., None], float("nan"))  # padding would poison any sum
    logits, att = model(x_nan, mask)
    assert enc.seen == int(mask.sum())
    assert torch.isfinite(logits).all() and torch.isfinite(att).all()
    with pytest.raises(ValueError, match="in_dim"):
        BagModel(enc, make_pooling("mean", in_dim=D + 1, n_classes=C))


def test_late_fusion_averages_track_probabilities():
    membership = pd.DataFrame({"bag_id": ["a", "a", "b", "a"], "track_id": [1, 2, 3, 4]})
    probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.1, 0.9]])
    fused = late_fusion(probs, membership, classes=["x", "y"])
    assert list(fused.index) == ["a", "b"] and list(fused.columns) == ["x", "y"]
    np.testing.assert_allclose(fused.loc["a"], [0.5, 0.5])
    np.testing.assert_allclose(fused.loc["b"], [0.2, 0.8])
    by_id = pd.DataFrame(probs[::-1], index=[4, 3, 2, 1], columns=["x", "y"])
    np.testing.assert_allclose(late_fusion(by_id, membership).to_numpy(), fused.to_numpy())
    with pytest.raises(ValueError):
        late_fusion(probs[:2], membership)


def test_matt_learns_the_key_instance_on_a_synthetic_mil_task():
    """One instance per bag carries the genre (4 genres), 1-5 noise instances around it."""
    classes = [f"g{i}" for i in range(4)]
    parts = {
        s: synthetic_mil_task(n_bags=n, n_classes=4, dim=16, split=s, seed=i, first_track_id=10_000 * i)
        for i, (s, n) in enumerate([("training", 500), ("validation", 150), ("test", 200)])
    }
    data = {s: BagDataset(m, f, classes) for s, (m, f, _) in parts.items()}
    torch.manual_seed(0)
    model = BagModel(
        make_encoder("mlp", input_shape=16, hidden=(32,), dropout=0.0),
        make_pooling("matt", in_dim=32, n_classes=4),
    )
    q0 = model.pooling.queries.detach().clone()
    config = FitConfig(epochs=15, batch_size=32, lr=3e-3, seed=0, weight_decay=0.0, patience=None)
    result = fit(model, data["training"], data["validation"], config, progress=False)
    assert not torch.equal(q0, model.pooling.queries.detach().cpu()), "queries did not change in training"

    pred = predict(model, data["test"], device="cpu", all_attention=True)
    accuracy = float((pred.predicted == pred.labels).mean())
    m_test, _, key = parts["test"]
    key_pos = {
        b: int(np.flatnonzero(k)[0]) for b, k in pd.Series(key, index=m_test.bag_id).groupby(level=0, sort=False)
    }
    hits = [int(np.argmax(a)) == key_pos[b] for b, a in zip(pred.bag_ids, pred.attention)]
    mean_size = m_test.groupby("bag_id").size().mean()
    key_rate = float(np.mean(hits))
    print(
        f"\nsynthetic MIL (MATT, test, {len(hits)} bags, mean size {mean_size:.2f}): "
        f"bag accuracy {accuracy:.3f}, key instance most attended in {key_rate:.3f} of bags "
        f"(chance {float(np.mean(1 / m_test.groupby('bag_id').size())):.3f}); "
        f"best epoch {result.best_epoch}, val acc {result.best_val_accuracy:.3f}"
    )
    assert accuracy >= 0.9, f"MATT bag accuracy {accuracy:.3f} < 0.9"
    assert key_rate >= 0.8, f"key instance most attended in only {key_rate:.3f} of bags"
    assert pred.attention_all is not None and pred.attention_all[0].shape[0] == 4
