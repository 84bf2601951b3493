"""Reference values for ScaledDotProductAttention and ResidualScaledDotProductAttention
(include/seqattn/layers/scaled_dot_product_attention.hpp), computed by PyTorch's own fused scaled dot-product
attention in double: torch 2's F.scaled_dot_product_attention, whose torch 1.13 form (Debian's python3-torch) is
F._scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, need_attn_weights, is_causal) -> (y, weights).
  Masks: a float attn_mask (added to the scaled scores) with -inf where key j is masked (kv_keep) or, with
  history_only, j > i (is_causal=True when nothing else is masked). Rows of masked queries (q_keep) get no
  masked key (torch would give NaN rows; their outputs are excluded from the loss), and every kept query keeps
  an allowed key (torch gives NaN where seqattn gives 0; tested in the C++ test).
  RealFormer (residual_* cases): attn_mask = prev + that -inf mask; the pre-softmax scores
  z = q k^T / sqrt(d_k) + prev (torch does not return them) are written where allowed (0 elsewhere).
Loss L = sum(y * R * q_keep) [+ sum(z * Rz * allowed)]; written: inputs, keep flags, y, attention (weights),
dq, dk, dv (self-attention cases: dx = dq + dk + dv through q = k = v = x) and dprev.
Run with Debian's /usr/bin/python3 (torch 1.13):
    cd tests/reference && /usr/bin/python3 gen_scaled_dot_product_attention.py
"""
import math

import torch
import torch.nn.functional as F

import refdata

torch.manual_seed(20261222)


def uniform(*shape):
    return torch.rand(*shape, dtype=torch.float64) * 2 - 1


def sdpa(q, k, v, mask, causal):
    """torch's fused attention: (y, weights)."""
    if hasattr(F, "scaled_dot_product_attention"):  # torch 2: outputs only; weights from the same formula
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if causal:
            s = s.masked_fill(torch.ones(s.shape[-2:], dtype=torch.bool).triu(1), float("-inf"))
        return y, torch.softmax(s if mask is None else s + mask, dim=-1)
    return F._scaled_dot_product_attention(q, k, v, mask, 0.0, True, causal)


def case(prefix, B, Tq, Tk, Dk, Dv, history, q_keep, kv_keep, cross, residual):
    if not cross:
        x = uniform(B, Tq, Dk).requires_grad_(True)
        q = k = v = x
    else:
        q = uniform(B, Tq, Dk).requires_grad_(True)
        k = uniform(B, Tk, Dk).requires_grad_(True)
        v = uniform(B, Tk, Dv).requires_grad_(True)
    qk = torch.tensor(q_keep, dtype=torch.bool)
    kk = torch.tensor(kv_keep, dtype=torch.bool)
    allowed = qk[:, :, None] & kk[:, None, :]
    if history:
        allowed = allowed & ~torch.ones(Tq, Tk, dtype=torch.bool).triu(1)
    for b in range(B):
        for i in range(Tq):
            assert not q_keep[b][i] or allowed[b, i].any(), "a kept query without an allowed key"
    # masked query rows: every key allowed there (no NaN; excluded from the loss)
    blocked = ~(allowed | ~qk[:, :, None])
    everything_kept = bool(qk.all() and kk.all())
    mask, causal = None, False
    if history and everything_kept and not residual:
        causal = True  # torch's is_causal
    elif blocked.any() or residual:
        mask = torch.zeros(B, Tq, Tk, dtype=torch.float64).masked_fill(blocked, float("-inf"))
    prev = None
    if residual:
        prev = uniform(B, Tq, Tk).requires_grad_(True)
        mask = prev + mask
    y, weights = sdpa(q, k, v, mask, causal)
    R = uniform(B, Tq, Dv)
    loss = (y * R * qk[:, :, None]).sum()
    out = {"q_keep": qk.double(), "kv_keep": kk.double(), "R": R}
    if residual:
        z = q @ k.transpose(1, 2) / math.sqrt(Dk) + prev
        Rz = uniform(B, Tq, Tk)
        live = allowed & qk[:, :, None]
        loss = loss + (z * Rz * live).sum()
        out.update({"prev": prev, "Rz": Rz, "scores": (z * live).detach()})
    loss.backward()
    live_rows = qk[:, :, None].double()
    out.update({"y": y * live_rows, "attention": weights * live_rows})
    if cross:
        out.update({"q": q, "k": k, "v": v, "dq": q.grad, "dk": k.grad, "dv": v.grad})
    else:
        out.update({"x": x, "dx": x.grad})
    if residual:
        out["dprev"] = prev.grad
    return {prefix + "." + name: value for name, value in out.items()}


if __name__ == "__main__":
    tensors = {}
    all5 = [[1] * 5] * 3
    lengths = [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    holes = [[1, 0, 1, 1, 0], [0, 1, 1, 0, 1], [1, 1, 0, 1, 1]]
    q_holes = [[1, 1, 0, 1], [0, 1, 1, 1], [1, 0, 1, 1]]
    kv_holes = [[1, 0, 1, 1, 0, 1], [1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 1]]
    tensors.update(case("self", 3, 5, 5, 4, 4, False, all5, all5, False, False))
    tensors.update(case("self_history", 3, 5, 5, 4, 4, True, all5, all5, False, False))
    tensors.update(case("self_lengths", 3, 5, 5, 4, 4, False, lengths, lengths, False, False))
    tensors.update(case("self_history_steps", 3, 5, 5, 4, 4, True, holes, holes, False, False))
    tensors.update(case("cross_steps", 3, 4, 6, 4, 3, False, q_holes, kv_holes, True, False))
    tensors.update(case("cross_history_steps", 3, 4, 6, 4, 3, True, q_holes, kv_holes, True, False))
    tensors.update(case("residual_self_history_lengths", 3, 5, 5, 4, 4, True, lengths, lengths, False, True))
    tensors.update(case("residual_cross_steps", 3, 4, 6, 4, 3, False, q_holes, kv_holes, True, True))
    tensors.update(case("residual_cross_history_steps", 3, 4, 6, 4, 3, True, q_holes, kv_holes, True, True))
    refdata.write("../data/scaled_dot_product_attention.txt", tensors,
                  "torch %s fused scaled dot-product attention (F._scaled_dot_product_attention / "
                  "F.scaled_dot_product_attention), double; see gen_scaled_dot_product_attention.py" % torch.__version__)
