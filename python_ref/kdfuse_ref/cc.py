"""CC: Correlation Congruence for Knowledge Distillation (Peng et al., ICCV 2019), as RepDistiller's Correlation.

Two versions exist and both are reproduced (`variant`):

- "seed" (default; the seed document's code, RepDistiller's commented-out reimplementation):
  features flattened to N x D, G = f f^T, G = G / G.norm(2) (Frobenius norm of the whole N x N matrix,
  no eps), loss = sum_ij (G_t - G_s)_ij^2 / N^2. Only f_s is meant to receive gradients.
  Quirk: an all-zero f_s (or f_t) gives G.norm(2) = 0 and the loss is NaN (0 / 0); kept.

- "repdistiller" (the code RepDistiller ships in distiller_zoo/CC.py, "emailed by the original author"):
      delta = abs(f_s - f_t); loss = mean((delta[:-1] * delta[1:]).sum(1))
  i.e. the mean over i < N-1 of sum_d delta[i, d] * delta[i+1, d]: products of CONSECUTIVE rows, so the
  value depends on the batch order. In RepDistiller both inputs are trainable embedding outputs
  (the CC embeds of student and teacher), so it is differentiable w.r.t. both.
  Quirks kept: no flattening (for inputs of rank > 2, `.sum(1)` sums dim 1 only and the mean runs over
  the other dims, exactly as the shipped code); N = 1 gives the mean of an empty tensor = NaN;
  d|x|/dx at x = 0 is 0 (torch's abs backward).

The seed returns a tensor of shape (1,) (`.view(-1, 1).sum(0)`) for "seed" and a 0-dim tensor for
"repdistiller". `cc_loss` always returns a 0-dim tensor; the module `Correlation` returns the seed's
shape for each variant.
"""
import torch
import torch.nn as nn

VARIANTS = ("seed", "repdistiller")


def cc_gram(f):
    """G / ||G||_F with G = f f^T, f flattened to N x D (seed variant)."""
    f = f.reshape(f.shape[0], -1)
    g = torch.mm(f, f.t())
    return g / g.norm(2)


def cc_loss(f_s, f_t, variant="seed"):
    """CC loss of student features f_s against teacher features f_t (0-dim tensor)."""
    if variant == "seed":
        bsz = f_s.shape[0]
        if f_t.shape[0] != bsz:
            raise ValueError(f"batch sizes differ: {bsz} vs {f_t.shape[0]}")
        g_diff = cc_gram(f_t) - cc_gram(f_s)
        return (g_diff * g_diff).sum() / (bsz * bsz)
    if variant == "repdistiller":
        delta = torch.abs(f_s - f_t)
        return torch.mean((delta[:-1] * delta[1:]).sum(1))
    raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")


class Correlation(nn.Module):
    """Correlation congruence (the seed's module; `variant="repdistiller"` is RepDistiller's shipped code)."""

    def __init__(self, variant="seed"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        self.variant = variant

    def forward(self, f_s, f_t):
        if self.variant == "repdistiller":
            return cc_loss(f_s, f_t, "repdistiller")
        return self.similarity_loss(f_s, f_t)

    def similarity_loss(self, f_s, f_t):
        return cc_loss(f_s, f_t, "seed").view(1)
