"""MATT (``matt``): multiple-instance attention with one query per genre (the paper's eqs. 1-5)."""

from __future__ import annotations

import torch
from torch import nn

from mattlib.models.mil.base import BagPooling, check_bags, masked_softmax

__all__ = ["MATTPooling"]


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
      ``log p_g[g]`` (``B, C``; :attr:`inference_log_probs` tells :func:`mattlib.training.predict`
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
        check_bags(instances, mask, self.in_dim)
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
