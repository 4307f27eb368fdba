"""Bag pooling: padded bags of instance embeddings -> genre logits (+ attention).

One interface for every pooling (torchmil style)::

    logits, attention = pooling(instances, mask, labels=None)

* ``instances`` : ``(B, N, D)`` float -- embeddings of the bag's instances (tracks), padded to
  the largest bag ``N`` of the batch;
* ``mask`` : ``(B, N)`` bool -- ``True`` for real instances, ``False`` for padding;
* ``labels`` : ``(B,)`` long or ``None`` -- only MATT uses it (the training query);
* ``logits`` : ``(B, C)`` -- unnormalised genre scores;
* ``attention`` : ``(B, N)`` weights over the bag (zero on padding, summing to one over real
  instances; an all-padding row gets all zeros), or ``(B, C, N)`` for MATT at inference (one
  distribution per genre query).

Poolings (see :func:`make_pooling`): ``none`` (instance level), ``mean``, ``max`` (the paper's
"MIL" rows), ``matt`` (the paper's eqs. 1-5) and ``gated`` (Ilse et al. 2018, beyond the paper).

:class:`BagModel` joins an encoder (``mattlib.models.encoders``) and a pooling; the bag-free
control, :func:`late_fusion`, lives in the torch-free :mod:`mattlib.models.fusion`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from mattlib.models.fusion import late_fusion

__all__ = [
    "POOLINGS",
    "BagModel",
    "BagPooling",
    "GatedAttentionPooling",
    "InstancePooling",
    "MATTPooling",
    "MaxPooling",
    "MeanPooling",
    "late_fusion",
    "make_pooling",
    "masked_softmax",
    "synthetic_mil_task",
]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis restricted to ``mask``.

    Parameters
    ----------
    scores : (..., N) float
    mask : (..., N) bool, broadcastable to ``scores``

    Returns
    -------
    (..., N) float: exactly zero where ``mask`` is False, summing to one over each row with at
    least one True; a row with no True gets all zeros (not NaN).
    """
    mask = mask.expand_as(scores)
    filled = scores.float().masked_fill(~mask, float("-inf"))
    empty = ~mask.any(dim=-1, keepdim=True)
    filled = filled.masked_fill(empty, 0.0)  # avoid softmax over all -inf (NaN)
    weights = torch.softmax(filled, dim=-1).masked_fill(~mask, 0.0)
    return weights.to(scores.dtype)


def _check_bags(instances: torch.Tensor, mask: torch.Tensor, in_dim: int) -> None:
    if instances.dim() != 3:
        raise ValueError(f"instances must be (B, N, D), got shape {tuple(instances.shape)}")
    if instances.shape[2] != in_dim:
        raise ValueError(f"instances have D={instances.shape[2]}, pooling expects in_dim={in_dim}")
    if mask.shape != instances.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a bool (B, N) = {tuple(instances.shape[:2])} tensor, got {mask.dtype} {tuple(mask.shape)}"
        )


def _uniform(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    m = mask.to(dtype)
    return m / m.sum(dim=1, keepdim=True).clamp_min(1.0)


class BagPooling(nn.Module):
    """Base class: ``forward(instances (B,N,D), mask (B,N), labels=None) -> (logits (B,C), attention)``.

    Subclasses set ``in_dim`` and ``n_classes``; one whose inference logits are already
    log-probabilities sets ``inference_log_probs = True`` (scores are then ``exp(logits)``,
    not a softmax).
    """

    in_dim: int
    n_classes: int
    inference_log_probs = False

    def __init__(self, *, in_dim: int, n_classes: int) -> None:
        super().__init__()
        if in_dim < 1 or n_classes < 1:
            raise ValueError(f"in_dim and n_classes must be positive, got {in_dim}, {n_classes}")
        self.in_dim = int(in_dim)
        self.n_classes = int(n_classes)


class _PooledLinear(BagPooling):
    """A pooling followed by dropout and one linear genre classifier ``M g + d``."""

    def __init__(self, *, in_dim: int, n_classes: int, dropout: float = 0.0) -> None:
        super().__init__(in_dim=in_dim, n_classes=n_classes)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_dim, n_classes)


class MeanPooling(_PooledLinear):
    """Mean pooling: ``g = (1/n) sum_k s_k``, ``logits = M g + d``; attention uniform ``1/n``.

    We take this to be the paper's "MIL" baseline: the paper builds on OpenNRE's multi-instance
    framework, whose non-attentive bag aggregator is "average" (the mean of the instance
    representations, then one classifier), and it describes MIL as pooling the bag without
    attention; max pooling (:class:`MaxPooling`) is reported beside it as the other reading.
    """

    def forward(
        self, instances: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """See the module docstring; returns ``(B, C)`` logits and ``(B, N)`` uniform attention."""
        _check_bags(instances, mask, self.in_dim)
        att = _uniform(mask, instances.dtype)
        bag = torch.einsum("bn,bnd->bd", att, instances)
        return self.classifier(self.drop(bag)), att


class InstancePooling(MeanPooling):
    """Instance-level model (``none``): classify every instance, average the logits over the bag.

    ``logits = (1/n) sum_k (W s_k + b) = W ((1/n) sum_k s_k) + b``: with a linear classifier the
    mean of the instance logits *is* the logits of the mean embedding, so this is
    :class:`MeanPooling` under its track-level name; for a bag of one track it is a plain
    track-level classifier. ``attention`` is uniform ``1/n`` over real instances.
    """


class MaxPooling(_PooledLinear):
    """Max pooling: ``g_j = max_k s_kj`` per feature dim ``j``; ``logits = M g + d``.

    ``attention[b, k]`` is the fraction of the D feature dims that instance k wins (holds the
    maximum of), so it sums to one over the bag and is zero on padding. An all-padding bag
    gives ``g = 0`` and zero attention.
    """

    def forward(
        self, instances: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """See the module docstring; returns ``(B, C)`` logits and ``(B, N)`` win fractions."""
        _check_bags(instances, mask, self.in_dim)
        filled = instances.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        bag, winner = filled.max(dim=1)  # (B, D), (B, D)
        has_any = mask.any(dim=1)
        bag = torch.where(has_any.unsqueeze(-1), bag, torch.zeros_like(bag))
        wins = F.one_hot(winner, instances.shape[1]).to(instances.dtype).mean(dim=1)  # (B, N)
        att = wins * has_any.unsqueeze(-1).to(wins.dtype)
        return self.classifier(self.drop(bag)), att


class MATTPooling(BagPooling):
    """MATT: multiple-instance attention with one trainable query per genre (paper eqs. 1-5).

    For a bag of instance embeddings ``s_1..s_n`` (``D``-dim) and the query ``q_g`` of genre g::

        e_k      = tanh(w_s . [s_k ; q_g] + b_s)                       (eq. 1, score)
        alpha_k  = exp(e_k) / sum_j exp(e_j)      over real instances  (eq. 2)
        g_g      = sum_k alpha_k s_k                                   (eq. 3, bag vector)
        o        = M g_g + d                                           (eq. 4, genre scores)
        p(. | S) = softmax(o)                                          (eq. 5)

    ``w_s`` is a ``2D`` row vector (``nn.Linear(2D, 1)``), ``M`` is ``C x D`` and ``d`` is ``C``.

    * **Training** (``labels`` given): the bag is attended with its label's query,
      ``logits = M g_{y} + d`` (B, C) and ``attention`` is ``(B, N)``.
    * **Inference** (``labels=None``): every genre's query attends (OpenNRE's selective
      attention); the bag vector ``g_g`` of query g is scored by the output layer over all
      genres, ``p_g = softmax(M g_g + d)``, and genre g keeps its own probability
      ``p_g[g]`` (softmax per query, then the diagonal). The returned ``logits`` are
      ``log p_g[g]`` (``B, C``; :attr:`inference_log_probs` tells :func:`mattlib.training.train.predict`
      to report ``exp(logits)``, which need not sum to one over genres); ``attention`` is
      ``(B, C, N)``. Vectorised over genres (no Python loop).

    Differences from the paper, on purpose:

    * The queries ``q_g`` are ``nn.Parameter`` (xavier-uniform), so they are trained; the
      authors' code did not register them as parameters.
    * With the paper's score the query enters only as ``w_q . q_g``, one offset inside the
      tanh: every genre ranks a bag's tracks in the same order (only how peaked the weights
      are differs). The study runs ``score='dot'`` beside it ("MATT (bilinear)") to see
      whether genre-specific attention matters.
    * The paper prints ``e_k = tanh(W_s [s_k; q_g]) + b_s``. A bias added *outside* the tanh is
      the same for all instances of the bag, and softmax is shift-invariant, so it would be a
      no-op; we put ``b_s`` inside the tanh (``score='paper'``), where it sets the tanh's
      operating point. ``score='dot'`` offers OpenNRE's bilinear score
      ``e_k = s_k . (A q_g)`` instead (an option beyond the paper).

    Parameters
    ----------
    in_dim : int
        Embedding size D.
    n_classes : int
        Number of genres C (= number of queries).
    score : {'paper', 'dot'}, default 'paper'
    dropout : float, default 0.0
        Dropout on the bag vector before ``M``.
    """

    #: At inference the logits are log-probabilities of each genre under its own query.
    inference_log_probs = True

    def __init__(self, *, in_dim: int, n_classes: int, score: str = "paper", dropout: float = 0.0) -> None:
        super().__init__(in_dim=in_dim, n_classes=n_classes)
        if score not in ("paper", "dot"):
            raise ValueError(f"matt: unknown score {score!r}; valid: 'paper', 'dot'")
        self.score = score
        self.queries = nn.Parameter(torch.empty(n_classes, in_dim))
        nn.init.xavier_uniform_(self.queries)
        if score == "paper":
            self.w_s = nn.Linear(2 * in_dim, 1)  # w_s . [s; q] + b_s
        else:
            self.bilinear = nn.Linear(in_dim, in_dim, bias=False)  # A
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_dim, n_classes)  # M, d

    def _scores(self, instances: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Scores ``e`` of shape (B, Q, N) for queries (B or 1, Q, D)."""
        if self.score == "paper":
            w = self.w_s.weight[0]  # (2D,)
            w_inst, w_query = w[: self.in_dim], w[self.in_dim :]
            a_inst = instances @ w_inst  # (B, N)
            a_query = queries @ w_query  # (B or 1, Q)
            return torch.tanh(a_inst.unsqueeze(1) + a_query.unsqueeze(-1) + self.w_s.bias)
        keys = self.bilinear(queries)  # (B or 1, Q, D)
        return torch.einsum("bnd,bqd->bqn", instances, keys.expand(instances.shape[0], -1, -1))

    def forward(
        self, instances: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool padded bags.

        Parameters
        ----------
        instances : (B, N, D) float
        mask : (B, N) bool
        labels : (B,) long or None
            Given: attend with each bag's label query (training). None: all queries.

        Returns
        -------
        logits : (B, C)
        attention : (B, N) with labels, (B, C, N) without.
        """
        _check_bags(instances, mask, self.in_dim)
        if labels is not None:
            if labels.shape != instances.shape[:1]:
                raise ValueError(f"labels must be (B,) = ({instances.shape[0]},), got {tuple(labels.shape)}")
            q = self.queries[labels].unsqueeze(1).to(instances.dtype)  # (B, 1, D)
            att = masked_softmax(self._scores(instances, q), mask.unsqueeze(1))[:, 0]  # (B, N)
            bag = torch.einsum("bn,bnd->bd", att, instances)
            return self.classifier(self.drop(bag)), att
        q = self.queries.unsqueeze(0).to(instances.dtype)  # (1, C, D)
        att = masked_softmax(self._scores(instances, q), mask.unsqueeze(1))  # (B, C, N)
        bags = self.drop(torch.einsum("bcn,bnd->bcd", att, instances))  # (B, C, D)
        per_query = torch.log_softmax(self.classifier(bags).float(), dim=-1)  # (B, C query, C genre)
        return torch.diagonal(per_query, dim1=1, dim2=2).to(instances.dtype), att


class GatedAttentionPooling(BagPooling):
    """Gated attention pooling (Ilse, Tomczak & Welling 2018), an option beyond the paper.

    ``a_k = w . (tanh(V s_k) * sigmoid(U s_k))``, ``alpha = softmax_k(a)`` over real instances,
    ``g = sum_k alpha_k s_k``, ``logits = M g + d``. One attention for all genres (no query);
    ``attention`` is ``(B, N)``.

    Parameters
    ----------
    in_dim, n_classes : int
    hidden : int, default 128
        Size L of the attention's hidden layer.
    dropout : float, default 0.0
    """

    def __init__(self, *, in_dim: int, n_classes: int, hidden: int = 128, dropout: float = 0.0) -> None:
        super().__init__(in_dim=in_dim, n_classes=n_classes)
        self.V = nn.Linear(in_dim, hidden)
        self.U = nn.Linear(in_dim, hidden)
        self.w = nn.Linear(hidden, 1)
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(in_dim, n_classes)

    def forward(
        self, instances: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """See the module docstring; returns ``(B, C)`` logits and ``(B, N)`` attention."""
        _check_bags(instances, mask, self.in_dim)
        a = self.w(torch.tanh(self.V(instances)) * torch.sigmoid(self.U(instances)))[..., 0]
        att = masked_softmax(a, mask)
        bag = torch.einsum("bn,bnd->bd", att.to(instances.dtype), instances)
        return self.classifier(self.drop(bag)), att


POOLINGS: dict[str, type[BagPooling]] = {
    "none": InstancePooling,
    "mean": MeanPooling,
    "max": MaxPooling,
    "matt": MATTPooling,
    "gated": GatedAttentionPooling,
}


def make_pooling(name: str, *, in_dim: int, n_classes: int, **kwargs) -> BagPooling:
    """Build a bag pooling by name.

    Parameters
    ----------
    name : {'none', 'mean', 'max', 'matt', 'gated'}
    in_dim : int
        Instance embedding size D (the encoder's ``out_dim``).
    n_classes : int
        Number of genres C.
    **kwargs
        Passed on (``dropout``; ``score`` for matt; ``hidden`` for gated).

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid names).
    """
    if name not in POOLINGS:
        raise ValueError(f"unknown pooling {name!r}; valid names: {', '.join(POOLINGS)}")
    return POOLINGS[name](in_dim=in_dim, n_classes=n_classes, **kwargs)


class BagModel(nn.Module):
    """Encoder + bag pooling over padded bags (OpenNRE's "bag model").

    Parameters
    ----------
    encoder : nn.Module with ``out_dim``
        Maps ``(K, *instance_shape)`` to ``(K, D)``.
    pooling : BagPooling
        With ``in_dim == encoder.out_dim``.

    ``forward(instances (B, N, *instance_shape), mask (B, N) bool, labels=None)`` encodes only
    the real (masked-in) instances, scatters the embeddings back into a zero-padded
    ``(B, N, D)`` tensor and pools it; returns ``(logits (B, C), attention)`` as the pooling.
    """

    def __init__(self, encoder: nn.Module, pooling: BagPooling) -> None:
        super().__init__()
        out_dim = getattr(encoder, "out_dim", None)
        if out_dim is None:
            raise ValueError("encoder must have an out_dim attribute")
        if int(out_dim) != pooling.in_dim:
            raise ValueError(f"encoder.out_dim={out_dim} but pooling.in_dim={pooling.in_dim}")
        self.encoder = encoder
        self.pooling = pooling

    @property
    def n_classes(self) -> int:
        """Number of genres C."""
        return self.pooling.n_classes

    def forward(
        self,
        instances: torch.Tensor,
        mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        encode_chunk: int | None = None,
    ):
        """Encode and pool a padded batch of bags (see the class docstring).

        ``encode_chunk``: encode at most this many instances at once (eval mode: the same
        embeddings as in one piece), then pool every instance of the bag together.
        """
        if instances.dim() < 3:
            raise ValueError(f"instances must be (B, N, ...), got shape {tuple(instances.shape)}")
        if mask.shape != instances.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a bool tensor of shape {tuple(instances.shape[:2])}, "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )
        real = instances[mask]  # (K, ...), K = number of real instances
        if encode_chunk and len(real) > encode_chunk:
            z = torch.cat([self.encoder(part) for part in torch.split(real, encode_chunk)])
        else:
            z = self.encoder(real)  # (K, D)
        emb = z.new_zeros(*mask.shape, z.shape[-1])
        emb[mask] = z
        return self.pooling(emb, mask, labels)


def synthetic_mil_task(
    *,
    n_bags: int,
    n_classes: int = 4,
    dim: int = 16,
    min_size: int = 2,
    max_size: int = 6,
    signal: float = 4.0,
    split: str = "training",
    seed: int = 0,
    first_track_id: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """A synthetic multiple-instance task for sanity checks (tests, demos).

    Each bag has ``min_size..max_size`` instances; exactly one (the *key* instance, at a random
    position) carries the bag's genre: ``x = signal * p_g + 0.5 * noise`` with ``p_g`` a fixed
    random unit vector per genre (the same for every seed); the others are pure ``N(0, I)``
    noise. A good attention puts its largest weight on the key instance.

    Returns
    -------
    membership : DataFrame
        In ``mattlib.data.bags``' format (``bag_id``, ``track_id``, ``split``, ``genre``,
        ``bag_genre``, ``album_id``, ``artist_id``, ``bag_size``); genres are ``'g0'...``.
    features : DataFrame (n_tracks, dim) float32, indexed by ``track_id``.
    key : ndarray (n_tracks,) bool
        True for key instances (row-aligned with ``membership``).
    """
    if n_bags < 1 or n_classes < 2 or dim < 1 or not 1 <= min_size <= max_size:
        raise ValueError("need n_bags >= 1, n_classes >= 2, dim >= 1, 1 <= min_size <= max_size")
    protos = np.random.default_rng(12345).normal(size=(n_classes, dim))
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    rows, feats, key = [], [], []
    tid = first_track_id
    for b in range(n_bags):
        g = int(rng.integers(n_classes))
        n = int(rng.integers(min_size, max_size + 1))
        k = int(rng.integers(n))
        for i in range(n):
            x = rng.normal(size=dim)
            if i == k:
                x = 0.5 * x + signal * protos[g]
            feats.append(x)
            key.append(i == k)
            rows.append(
                {
                    "bag_id": f"{split}-{seed}-{b}",
                    "track_id": tid,
                    "split": split,
                    "genre": f"g{g}",
                    "bag_genre": f"g{g}",
                    "album_id": b,
                    "artist_id": b,
                    "bag_size": n,
                }
            )
            tid += 1
    membership = pd.DataFrame(rows)
    features = pd.DataFrame(
        np.asarray(feats, dtype=np.float32), index=pd.Index(membership["track_id"], name="track_id")
    )
    return membership, features, np.asarray(key)
