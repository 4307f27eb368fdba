"""Encoders: output sizes on the paper's 96 x 1360 input and on short demo clips, registry."""

import pytest
import torch

from mattlib.models.encoders import CRNN, CRNNTF, ENCODERS, MLPEncoder, make_encoder
from mattlib.models.encoders.crnn_tf import _direction_orders

TINY = (4, 8, 8, 8)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize("d", [7, 140, 518])
def test_mlp_out_dim(d):
    enc = make_encoder("mlp", input_shape=(d,), hidden=(64, 16), dropout=0.1)
    assert isinstance(enc, MLPEncoder)
    assert enc.out_dim == 16
    assert enc(torch.randn(5, d)).shape == (5, 16)
    assert make_encoder("mlp", input_shape=d, hidden=()).out_dim == d


def test_mlp_single_instance_in_training_mode():
    enc = make_encoder("mlp", input_shape=10, hidden=(8,)).train()
    out = enc(torch.randn(1, 10))  # plain BatchNorm1d would refuse a batch of one
    assert out.shape == (1, 8) and torch.isfinite(out).all()


@pytest.mark.parametrize("name,cls,out", [("crnn", CRNN, 32), ("crnn_tf", CRNNTF, 64)])
@pytest.mark.parametrize("shape", [(96, 1360), (96, 469), (32, 64), (16, 20)])
def test_crnn_out_dim(name, cls, out, shape):
    torch.manual_seed(0)
    enc = make_encoder(name, input_shape=shape, widths=TINY)
    assert isinstance(enc, cls) and enc.out_dim == out
    x = torch.randn(2, *shape).to(torch.float16)  # the mel cache is float16
    y = enc(x)
    assert y.shape == (2, out) and y.dtype == torch.float32 and torch.isfinite(y).all()


def test_conv_maps_at_paper_size():
    """Choi's CRNN leaves 1 x 15 (mel x time) on 96 x 1360; CRNN-TF's pools give 6 x 6."""
    x = torch.randn(1, 1, 96, 1360)
    crnn = CRNN(input_shape=(96, 1360), widths=TINY).eval()
    assert crnn.blocks(x).shape[-2:] == (1, 15)
    tf = CRNNTF(input_shape=(96, 1360), widths=TINY).eval()
    assert tf.blocks(x).shape[-2:] == (6, 6)


def test_crnn_tf_reads_eight_distinct_directions():
    orders = _direction_orders(6, 6)
    assert orders.shape == (8, 36)
    for o in orders:
        assert sorted(o.tolist()) == list(range(36))
    assert len({tuple(o.tolist()) for o in orders}) == 8
    assert len(CRNNTF(input_shape=(96, 1360), widths=TINY).grus) == 8


def test_widths_are_parameters():
    enc = make_encoder("crnn", input_shape=(32, 64), widths=(3, 5, 6, 7), gru_hidden=9)
    assert [b.conv.out_channels for b in enc.blocks] == [3, 5, 6, 7]
    assert enc.out_dim == 9


def test_unknown_encoder_lists_valid_names():
    with pytest.raises(ValueError) as err:
        make_encoder("resnet", input_shape=(10,))
    for name in ENCODERS:
        assert name in str(err.value)


@pytest.mark.parametrize(
    "name,shape,kw",
    [
        ("mlp", (3, 4), {"hidden": (8,)}),
        ("crnn", (96,), {"widths": TINY}),
        ("crnn_tf", (0, 10), {"widths": TINY}),
        ("crnn", (96, 100), {"widths": (1, 2)}),
    ],
)
def test_bad_configuration_raises(name, shape, kw):
    with pytest.raises(ValueError):
        make_encoder(name, input_shape=shape, **kw)


def test_wrong_input_rank_raises():
    with pytest.raises(ValueError, match="n_mels"):
        make_encoder("crnn", input_shape=(16, 20), widths=TINY)(torch.randn(2, 16))
