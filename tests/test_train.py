"""Bag datasets, the fit loop (validation-only model selection, checkpoints, seeds), predict."""

import numpy as np
import pandas as pd
import pytest
import torch
from synthetic_mil import synthetic_mil_task

from mattlib import training
from mattlib.models.encoders import make_encoder
from mattlib.models.mil import BagModel, make_pooling
from mattlib.training import BagDataset, FitConfig, collate_bags, load_checkpoint, resolve_device
from mattlib.training import trainer as trainer_module

CLASSES = ["g0", "g1"]


pytestmark = pytest.mark.usefixtures("torch_one_thread")

_OPTIONS = ("progress", "checkpoint_dir", "encode_chunk", "late_val_data", "bag_weights", "class_counts")


def fit(model, train, val, **kw):
    """:func:`mattlib.training.fit` with a FitConfig of ``kw``: no weight decay and no early
    stopping unless given (these tests' baseline), the other keywords as Trainer options."""
    options = {k: kw.pop(k) for k in _OPTIONS if k in kw}
    return training.fit(model, train, val, FitConfig(**{"weight_decay": 0.0, "patience": None, **kw}), **options)


def predict(model, data, **kw):
    return training.predict(model, data, **{"device": "auto", **kw})


def _model(pooling="none", dim=8, seed=0):
    torch.manual_seed(seed)
    return BagModel(
        make_encoder("mlp", input_shape=dim, hidden=(8,), dropout=0.0),
        make_pooling(pooling, in_dim=8, n_classes=2),
    )


def _tracks(n, seed, split, first):
    """Bags of one track (track-level training), two genres."""
    return synthetic_mil_task(
        n_bags=n, n_classes=2, dim=8, min_size=1, max_size=1, seed=seed, split=split, first_track_id=first
    )


def test_bag_dataset_and_collate_from_float16_memmap(tmp_path):
    membership = pd.DataFrame(
        {
            "bag_id": ["a", "a", "a", "b", "c", "c"],
            "track_id": [30, 10, 20, 40, 50, 60],
            "split": ["training"] * 5 + ["test"],
            "bag_genre": ["g1", "g1", "g1", "g0", "g0", "g0"],
        }
    )
    ids = np.array([10, 20, 30, 40, 50, 60])
    mel = np.lib.format.open_memmap(tmp_path / "mel.npy", mode="w+", dtype=np.float16, shape=(6, 4, 5))
    mel[:] = np.arange(6, dtype=np.float16)[:, None, None]
    mel.flush()
    mel = np.load(tmp_path / "mel.npy", mmap_mode="r")
    data = BagDataset(membership, mel, CLASSES, track_index=ids, split="training")
    assert data.bag_ids == ["a", "b", "c"] and list(data.labels) == [1, 0, 0]
    bag_id, x, y = data[0]
    assert bag_id == "a" and y == 1 and x.dtype == torch.float32
    assert x[:, 0, 0].tolist() == [2.0, 0.0, 1.0]  # instance order = membership row order
    batch = collate_bags([data[i] for i in range(3)])
    assert batch.instances.shape == (3, 3, 4, 5)
    assert batch.mask.tolist() == [[True] * 3, [True, False, False], [True, False, False]]
    assert batch.labels.tolist() == [1, 0, 0] and batch.bag_ids == ["a", "b", "c"]
    assert torch.all(batch.instances[1, 1:] == 0)
    assert data.genre_counts.tolist() == [[0, 3], [1, 0], [1, 0]]  # no genre column: the bag's


def test_bag_dataset_validates_inputs():
    m = pd.DataFrame({"bag_id": ["a"], "track_id": [1], "bag_genre": ["rock"]})
    feats = pd.DataFrame(np.zeros((1, 3), np.float32), index=[1])
    with pytest.raises(ValueError, match="not in classes"):
        BagDataset(m, feats, CLASSES)
    with pytest.raises(ValueError, match="no instance row"):
        BagDataset(m.assign(bag_genre="g0", track_id=2), feats, CLASSES)
    with pytest.raises(ValueError, match="track_index"):
        BagDataset(m.assign(bag_genre="g0"), np.zeros((1, 3)), CLASSES)
    two = pd.DataFrame({"bag_id": ["a", "a"], "track_id": [1, 2], "bag_genre": ["g0", "g1"]})
    feats2 = pd.DataFrame(np.zeros((2, 3), np.float32), index=[1, 2])
    with pytest.raises(ValueError, match=r"bag 'a' has several labels in 'bag_genre': \['g0', 'g1'\]"):
        BagDataset(two, feats2, CLASSES)
    with pytest.raises(ValueError, match="bag 'a': track genres not in classes"):
        BagDataset(two.assign(bag_genre="g0", genre=["g0", "rock"]), feats2, CLASSES)


def test_bag_dataset_groups_interleaved_rows_like_a_groupby():
    """Bags in order of first appearance, tracks in row order, even when a bag's rows are apart."""
    rng = np.random.default_rng(0)
    n = 200
    bag_of_row = rng.integers(0, 40, n)
    genre_of_bag = rng.integers(0, 2, 40)
    membership = pd.DataFrame(
        {
            "bag_id": [f"b{b}" for b in bag_of_row],
            "track_id": 1000 + rng.permutation(n),
            "bag_genre": [CLASSES[genre_of_bag[b]] for b in bag_of_row],
            "genre": [CLASSES[g] for g in rng.integers(0, 2, n)],
        }
    )
    ids = rng.permutation(membership["track_id"].to_numpy())
    for index in (ids, {int(t): i for i, t in enumerate(ids)}):
        data = BagDataset(membership, np.zeros((n, 2), np.float32), CLASSES, track_index=index)
        row_of = {int(t): i for i, t in enumerate(ids)}
        groups = list(membership.groupby("bag_id", sort=False))
        assert data.bag_ids == [b for b, _ in groups]
        for rows, (_, group) in zip(data.rows, groups):
            assert rows.tolist() == [row_of[int(t)] for t in group["track_id"]]
        expected = np.array([[(g["genre"] == c).sum() for c in CLASSES] for _, g in groups])
        np.testing.assert_array_equal(data.genre_counts, expected)
        assert data.labels.tolist() == [CLASSES.index(g["bag_genre"].iloc[0]) for _, g in groups]


def test_model_selection_uses_the_validation_split_only():
    """Validation labels are flipped: the better the model fits, the worse it validates.

    fit must keep the epoch with the best *validation* accuracy (epoch 1 here), even though a
    held-out test split would prefer a later epoch; given clean validation data, it picks late.
    """
    train = BagDataset(*_tracks(200, 0, "training", 0)[:2], CLASSES)
    m_val, f_val, _ = _tracks(100, 1, "validation", 10_000)
    flip = {"g0": "g1", "g1": "g0"}
    flipped = m_val.assign(bag_genre=m_val["bag_genre"].map(flip), genre=m_val["genre"].map(flip))
    val_flipped = BagDataset(flipped, f_val, CLASSES)
    test = BagDataset(*_tracks(100, 2, "test", 20_000)[:2], CLASSES)

    model = _model()
    res = fit(model, train, val_flipped, epochs=6, batch_size=50, lr=3e-3, seed=1, progress=False)
    val_curve = [h["val_accuracy"] for h in res.history]
    assert res.best_epoch == int(np.argmax(val_curve)) + 1
    assert res.best_epoch < 6, f"validation curve {val_curve}"
    # the kept weights are the best epoch's: re-scoring validation reproduces its accuracy
    pred = predict(model, val_flipped, device="cpu")
    assert float((pred.predicted == pred.labels).mean()) == pytest.approx(res.best_val_accuracy)
    selected_test = float((predict(model, test).predicted == test.labels).mean())

    clean = _model()
    res_clean = fit(
        clean, train, BagDataset(m_val, f_val, CLASSES), epochs=6, batch_size=50, lr=3e-3, seed=1, progress=False
    )
    clean_test = float((predict(clean, test).predicted == test.labels).mean())
    assert res_clean.best_epoch > res.best_epoch
    assert clean_test > selected_test, (selected_test, clean_test)


def test_early_stopping_patience():
    train = BagDataset(*_tracks(100, 0, "training", 0)[:2], CLASSES)
    m_val, f_val, _ = _tracks(60, 1, "validation", 10_000)
    flip = {"g0": "g1", "g1": "g0"}
    val = BagDataset(
        m_val.assign(bag_genre=m_val["bag_genre"].map(flip), genre=m_val["genre"].map(flip)), f_val, CLASSES
    )
    res = fit(_model(), train, val, epochs=30, batch_size=20, lr=1e-2, seed=0, patience=2, progress=False)
    assert res.stopped_early and len(res.history) < 30
    assert len(res.history) - res.best_epoch <= 2


def test_checkpoint_round_trip_weights_only(tmp_path):
    train = BagDataset(*synthetic_mil_task(n_bags=60, n_classes=2, dim=8, seed=0)[:2], CLASSES)
    val = BagDataset(*synthetic_mil_task(n_bags=30, n_classes=2, dim=8, seed=1, first_track_id=5000)[:2], CLASSES)
    model = _model("matt")
    res = fit(model, train, val, epochs=3, batch_size=16, lr=1e-2, seed=0, checkpoint_dir=tmp_path, progress=False)
    ckpt = torch.load(res.checkpoint_path, weights_only=True)
    assert ckpt["epoch"] == res.best_epoch and ckpt["classes"] == CLASSES
    fresh = _model("matt", seed=123)
    load_checkpoint(res.checkpoint_path, fresh)
    a, b = predict(model, val), predict(fresh, val)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)
    for x, y in zip(a.attention, b.attention):
        np.testing.assert_allclose(x, y, rtol=1e-6)


def test_same_seed_same_training():
    train = BagDataset(*synthetic_mil_task(n_bags=40, n_classes=2, dim=8, seed=0)[:2], CLASSES)
    val = BagDataset(*synthetic_mil_task(n_bags=20, n_classes=2, dim=8, seed=1, first_track_id=5000)[:2], CLASSES)
    runs = [
        fit(_model("gated", seed=0), train, val, epochs=2, batch_size=8, lr=1e-2, seed=7, progress=False)
        for _ in range(2)
    ]
    assert [h["train_loss"] for h in runs[0].history] == [h["train_loss"] for h in runs[1].history]
    for k, v in runs[0].best_state.items():
        assert torch.equal(v, runs[1].best_state[k]), k


def test_long_tail_options_change_the_loss():
    m, f, _ = _tracks(60, 0, "training", 0)
    m = m[(m["genre"] == "g1") | (m.index < 12)]  # make g0 rare
    train = BagDataset(m, f, CLASSES)
    losses = {}
    for name, kw in {"plain": {}, "balanced": {"class_weights": "balanced"}, "la": {"logit_adjustment": 1.0}}.items():
        res = fit(_model(), train, train, epochs=1, batch_size=64, lr=1e-3, seed=0, progress=False, **kw)
        losses[name] = res.history[0]["train_loss"]
    assert len(set(losses.values())) == 3, losses
    with pytest.raises(ValueError, match="balanced"):
        fit(_model(), train, train, epochs=1, class_weights="inverse", progress=False)


def test_predict_attention_shapes():
    m, f, _ = synthetic_mil_task(n_bags=10, n_classes=2, dim=8, seed=3)
    data = BagDataset(m, f, CLASSES)
    pred = predict(_model("matt"), data, inference_batch=4, all_attention=True)
    sizes = m.groupby("bag_id", sort=False).size().to_numpy()
    assert pred.scores.shape == (10, 2)
    assert ((pred.scores > 0) & (pred.scores < 1)).all()  # each genre's probability under its query
    np.testing.assert_allclose(predict(_model("mean"), data).scores.sum(1), 1, rtol=1e-6)
    assert [len(a) for a in pred.attention] == list(sizes)
    assert [a.shape for a in pred.attention_all] == [(2, n) for n in sizes]
    for a, full, k in zip(pred.attention, pred.attention_all, pred.predicted):
        np.testing.assert_allclose(a, full[k])
    assert predict(_model("mean"), data, all_attention=True).attention_all is None


def test_device_auto():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("encoder", ["crnn", "crnn_tf"])
def test_mel_bag_model_trains_end_to_end(encoder):
    """A tiny CRNN + MATT on float16 mel bags: one epoch, then predict (shapes, no NaN)."""
    rng = np.random.default_rng(0)
    m, _, _ = synthetic_mil_task(n_bags=12, n_classes=2, dim=1, seed=0)
    mel = rng.normal(size=(len(m), 16, 40)).astype(np.float16)
    data = BagDataset(m, mel, CLASSES, track_index=m["track_id"].to_numpy())
    torch.manual_seed(0)
    enc = make_encoder(encoder, input_shape=(16, 40), widths=(4, 8, 8, 8))
    model = BagModel(enc, make_pooling("matt", in_dim=enc.out_dim, n_classes=2))
    res = fit(model, data, data, epochs=1, batch_size=4, lr=1e-3, seed=0, progress=False)
    assert np.isfinite(res.history[0]["train_loss"])
    pred = predict(model, data, inference_batch=8)
    assert pred.scores.shape == (12, 2) and np.isfinite(pred.scores).all()
    assert pred.to_frame().shape == (12, 2)


def test_killed_training_resumes_where_it_stopped(tmp_path, monkeypatch):
    train = BagDataset(*synthetic_mil_task(n_bags=40, n_classes=2, dim=8, seed=0)[:2], CLASSES)
    val = BagDataset(*synthetic_mil_task(n_bags=20, n_classes=2, dim=8, seed=1, first_track_id=5000)[:2], CLASSES)
    settings = dict(epochs=4, batch_size=8, lr=1e-2, seed=7, progress=False)
    whole = fit(_model("gated", seed=0), train, val, **settings)

    real_eval, calls = trainer_module.validation_scores, {"n": 0}

    def dies_in_epoch_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the process is killed during epoch 3
        return real_eval(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "validation_scores", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        fit(_model("gated", seed=0), train, val, checkpoint_dir=tmp_path, **settings)
    assert (tmp_path / "last.pt").exists()
    monkeypatch.setattr(trainer_module, "validation_scores", real_eval)

    # a fresh process: a new model object, the same call
    resumed = fit(_model("gated", seed=99), train, val, checkpoint_dir=tmp_path, **settings)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in whole.history]
    for k, v in whole.best_state.items():
        assert torch.equal(v, resumed.best_state[k]), k
    assert not (tmp_path / "last.pt").exists()  # finished: nothing left to resume

    # a corrupt resume point is reported and ignored
    (tmp_path / "last.pt").write_bytes(b"broken")
    with pytest.warns(UserWarning, match="unreadable"):
        fit(_model("gated", seed=0), train, val, checkpoint_dir=tmp_path, **settings)


def test_selection_scores_whole_validation_bags_at_track_level():
    """A mixed validation album (4 tracks g1, 1 track g0) counts as 5 tracks, not as one bag."""
    train = BagDataset(*synthetic_mil_task(n_bags=40, n_classes=2, dim=8, seed=0)[:2], CLASSES)
    m_val, f_val, _ = synthetic_mil_task(
        n_bags=12, n_classes=2, dim=8, min_size=5, max_size=5, seed=1, split="validation", first_track_id=5000
    )
    first_bag = m_val["bag_id"] == m_val["bag_id"].iloc[0]
    m_val.loc[first_bag.to_numpy().nonzero()[0][:1], "genre"] = "g1" if m_val["bag_genre"].iloc[0] == "g0" else "g0"
    val = BagDataset(m_val, f_val, CLASSES)
    model = _model("mean")
    res = fit(model, train, val, epochs=2, batch_size=8, lr=1e-2, seed=0, progress=False)
    pred = predict(model, val)
    y_track = m_val.set_index("bag_id")["genre"].map({"g0": 0, "g1": 1})
    pred_track = pd.Series(pred.predicted, index=pred.bag_ids).loc[y_track.index]
    track_accuracy = float((pred_track.to_numpy() == y_track.to_numpy()).mean())
    assert res.best_val_accuracy == pytest.approx(track_accuracy)
    assert track_accuracy != pytest.approx(float((pred.predicted == pred.labels).mean()))


def test_chunked_encoding_predicts_whole_bags_as_in_one_piece():
    """encode_chunk bounds memory; every track still counts and the prediction is unchanged."""
    m, f, _ = synthetic_mil_task(n_bags=6, n_classes=2, dim=8, min_size=9, max_size=13, seed=4)
    data = BagDataset(m, f, CLASSES)
    for pooling in ("matt", "mean", "gated"):
        model = _model(pooling)
        whole = predict(model, data, all_attention=pooling == "matt")
        chunked = predict(model, data, encode_chunk=4, all_attention=pooling == "matt")
        # float32 matmuls over 4 vs 13 rows may take other kernels: ~1e-7 relative apart
        np.testing.assert_allclose(chunked.scores, whole.scores, rtol=1e-5, atol=1e-6)
        assert [len(a) for a in chunked.attention] == m.groupby("bag_id", sort=False).size().tolist()


def test_a_resume_point_of_other_settings_or_architecture_is_not_used(tmp_path, monkeypatch, capsys):
    train = BagDataset(*synthetic_mil_task(n_bags=40, n_classes=2, dim=8, seed=0)[:2], CLASSES)
    val = BagDataset(*synthetic_mil_task(n_bags=20, n_classes=2, dim=8, seed=1, first_track_id=5000)[:2], CLASSES)
    settings = dict(batch_size=8, lr=1e-2, seed=7, progress=False)
    real_eval = trainer_module.validation_scores

    def killed_after_epoch_2():
        calls = {"n": 0}

        def evaluate(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
            return real_eval(*args, **kwargs)

        monkeypatch.setattr(trainer_module, "validation_scores", evaluate)
        with pytest.raises(KeyboardInterrupt):
            fit(_model("gated"), train, val, checkpoint_dir=tmp_path, epochs=600, **settings)
        monkeypatch.setattr(trainer_module, "validation_scores", real_eval)
        assert (tmp_path / "last.pt").exists()

    # fewer epochs: a fresh run of exactly those epochs, said in one line
    killed_after_epoch_2()
    capsys.readouterr()
    short = fit(_model("gated"), train, val, checkpoint_dir=tmp_path, epochs=2, **settings)
    assert [h["epoch"] for h in short.history] == [1, 2]
    err = capsys.readouterr().err.strip()
    assert "epochs changed" in err and "training from scratch" in err and "\n" not in err

    # another architecture (wider hidden layer) trains from scratch instead of failing to load
    killed_after_epoch_2()
    torch.manual_seed(0)
    wider = BagModel(
        make_encoder("mlp", input_shape=8, hidden=(16,), dropout=0.0), make_pooling("gated", in_dim=16, n_classes=2)
    )
    res = fit(wider, train, val, checkpoint_dir=tmp_path, epochs=2, **settings)
    assert [h["epoch"] for h in res.history] == [1, 2]
    assert "architecture" in capsys.readouterr().err


def test_late_fusion_control_is_selected_on_late_fused_validation_accuracy():
    """The late state is the epoch whose track probabilities, averaged over each validation album,
    score best on the album's tracks; re-scoring it reproduces that accuracy."""
    from mattlib.models.fusion import late_fusion

    train = BagDataset(*_tracks(200, 0, "training", 0)[:2], CLASSES)
    m_val, f_val, _ = synthetic_mil_task(
        n_bags=20, n_classes=2, dim=8, min_size=2, max_size=6, seed=1, split="validation", first_track_id=5000
    )
    albums = BagDataset(m_val, f_val, CLASSES)
    singles = BagDataset(m_val.assign(bag_id=m_val["track_id"].astype(str)), f_val, CLASSES)
    model = _model()
    res = fit(model, train, singles, epochs=5, batch_size=32, lr=3e-3, seed=0, late_val_data=albums, progress=False)
    curve = [h["val_late_accuracy"] for h in res.history]
    assert res.late_epoch == int(np.argmax(curve)) + 1 and res.late_val_accuracy == max(curve)
    model.load_state_dict(res.late_state)
    probs = predict(model, singles).scores
    fused = late_fusion(pd.DataFrame(probs, index=m_val["track_id"].to_numpy()), m_val, classes=CLASSES)
    pred = fused.idxmax(axis=1).loc[m_val["bag_id"]].to_numpy()
    assert float((pred == m_val["genre"].to_numpy()).mean()) == pytest.approx(res.late_val_accuracy)


def test_bag_weights_and_class_counts_change_the_loss():
    m, f, _ = _tracks(60, 0, "training", 0)
    train = BagDataset(m, f, CLASSES)
    plain = fit(_model(), train, train, epochs=1, batch_size=64, seed=0, progress=False)
    ones = fit(_model(), train, train, epochs=1, batch_size=64, seed=0, progress=False,
               bag_weights=dict.fromkeys(train.bag_ids, 1.0))  # fmt: skip
    assert ones.history[0]["train_loss"] == pytest.approx(plain.history[0]["train_loss"], rel=1e-5)
    skewed = dict(zip(train.bag_ids, np.where(train.labels == 0, 5.0, 1.0)))
    weighted = fit(_model(), train, train, epochs=1, batch_size=64, seed=0, progress=False, bag_weights=skewed)
    assert weighted.history[0]["train_loss"] != pytest.approx(plain.history[0]["train_loss"], rel=1e-3)
    la = {c: fit(_model(), train, train, epochs=1, batch_size=64, seed=0, progress=False, logit_adjustment=1.0,
                 class_counts=c).history[0]["train_loss"] for c in ((1.0, 1.0), (1.0, 9.0))}  # fmt: skip
    assert la[(1.0, 1.0)] != pytest.approx(la[(1.0, 9.0)], rel=1e-3)
    with pytest.raises(ValueError, match=r"class_counts has shape \(3,\), expected \(2,\)"):
        fit(_model(), train, train, epochs=1, class_counts=(1, 2, 3), progress=False)
