"""Instance encoders: one track (an *instance* of a bag) -> one embedding vector.

Every encoder shares one contract (OpenNRE's split between *encoder* and *bag model*):

* ``Encoder(input_shape=..., **kwargs)`` builds it for one instance shape;
* ``forward(x)`` takes a batch of instances and returns ``(K, out_dim)`` float embeddings;
* ``out_dim`` (int attribute) is the embedding size the bag pooling (``mattlib.models.mil``) reads.

===========  ===================================  ===========================================
name         instance input ``x``                 architecture
===========  ===================================  ===========================================
``mlp``      ``(K, d)`` feature vector            input BatchNorm -> [Linear -> ReLU -> Dropout]*
``crnn``     ``(K, n_mels, frames)`` log-mel      Choi et al. 2017: 4 conv blocks + 2 GRU(32)
``crnn_tf``  ``(K, n_mels, frames)`` log-mel      Wang et al. 2019: 4 conv blocks -> 6x6 grid
                                                  -> eight directional GRU(32) -> dense 64
===========  ===================================  ===========================================

Mel inputs may be ``float16`` (the memmapped cache); they are cast to the encoder's dtype.
Any ``n_mels >= 1`` and ``frames >= 1`` is accepted: pooling windows larger than the remaining
map are padded, and CRNN-TF's fixed 6x6 grid comes from adaptive max pooling, so the paper's
96 x 1360 clips and the demo's short clips (e.g. 96 x 469, 32 x 64) both work.

One module per encoder (:mod:`.mlp`, :mod:`.crnn`, :mod:`.crnn_tf`; shared layers in
:mod:`.layers`), named in :data:`ENCODERS`; this ``__init__`` imports no torch, so the
params-file validator reads the names, and :func:`make_encoder` imports the one it builds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from mattlib.registry import lazy_exports, lookup

if TYPE_CHECKING:
    from torch import nn

__all__ = ["CRNN", "CRNNTF", "ENCODERS", "MLPEncoder", "make_encoder"]

#: Encoder name -> ``"module:class"`` (built with ``input_shape=`` and keyword options).
ENCODERS: dict[str, str] = {
    "mlp": "mattlib.models.encoders.mlp:MLPEncoder",
    "crnn": "mattlib.models.encoders.crnn:CRNN",
    "crnn_tf": "mattlib.models.encoders.crnn_tf:CRNNTF",
}

__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "CRNN": "mattlib.models.encoders.crnn:CRNN",
        "CRNNTF": "mattlib.models.encoders.crnn_tf:CRNNTF",
        "MLPEncoder": "mattlib.models.encoders.mlp:MLPEncoder",
    },
)


def make_encoder(name: str, *, input_shape: Sequence[int] | int, **kwargs) -> nn.Module:
    """Build an instance encoder by name.

    Parameters
    ----------
    name : str
        A key of :data:`ENCODERS` (``mlp``, ``crnn``, ``crnn_tf``).
    input_shape : int or tuple
        ``(d,)`` (or ``d``) for ``mlp``; ``(n_mels, frames)`` for the CRNNs.
    **kwargs
        Passed to the encoder (``hidden``, ``dropout``, ``widths``, ``gru_hidden``, ...).

    Returns
    -------
    torch.nn.Module with an ``out_dim`` attribute.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid names) or a bad shape.
    """
    return lookup(ENCODERS, name, "encoder")(input_shape=input_shape, **kwargs)
