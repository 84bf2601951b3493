"""Reference values of SeqSelfAttention, computed independently from the documented equations with torch autograd.

Writes tests/data/seq_self_attention.txt. Run from tests/reference:  python3 gen_seq_self_attention.py

Dense (B, T, T, U) broadcasting, an explicit (B, T, T) mask of allowed keys, softmax over the allowed keys only:
  additive        e[t, s] = Wa . tanh(x_t Wt + x_s Wx + bh) + ba
  multiplicative  e[t, s] = x_t Wa x_s^T + ba
  A = masked softmax(act(e)) (0 at disallowed keys and padded query rows), y = A x
  allowed(t, s): t, s < len_b and  width w, history_only: t-w+1 <= s <= t;  width w: t-w//2 <= s <= t-w//2+w-1;
                 history_only: s <= t;  else every s
  attention penalty = r * sum_b ||(A_b A_b^T - I) restricted to valid rows and columns||_F^2 / B
  weight penalty    = k_l1 sum|W| + k_l2 sum W^2 over Wt, Wx, Wa  +  b_l1 sum|b| + b_l2 sum b^2 over bh, ba
  loss = sum(y * R) + attention penalty + weight penalty; gradients d loss / d(x, Wt, Wx, bh, Wa, ba).

For each configuration cfg<i>: cfg<i>.options = [additive, units, width (0: none), history_only, activation
(0 linear, 1 sigmoid, 2 tanh, 3 relu, 4 gelu), use_additive_bias, use_attention_bias, regularizer weight,
kernel l1, kernel l2, bias l1, bias l2], cfg<i>.lengths, the weights, x, R, y, A, penalty, loss, and d<name>.
"""
import torch

import refdata

torch.manual_seed(20240601)

ACTIVATIONS = [
    lambda z: z,
    torch.sigmoid,
    torch.tanh,
    torch.relu,
    lambda z: torch.nn.functional.gelu(z),  # exact erf form
]

# (additive, units, width, history_only, activation, additive_bias, attention_bias, reg, kl1, kl2, bl1, bl2,
#  B, T, F, lengths)
CONFIGS = [
    (1, 3, 0, 0, 0, 1, 1, 0.0, 0, 0, 0, 0, 2, 7, 4, [7, 7]),          # global, unmasked
    (1, 3, 4, 0, 2, 1, 1, 0.0, 0, 0, 0, 0, 2, 7, 4, [7, 4]),          # even local width, masked, tanh
    (1, 3, 3, 0, 1, 1, 1, 0.2, 0, 0, 0, 0, 3, 7, 4, [5, 7, 0]),       # odd local width, sigmoid, regularizer
    (1, 2, 0, 1, 4, 1, 1, 0.0, 0, 0, 0, 0, 2, 6, 3, [6, 1]),          # history_only, gelu, length 1
    (1, 3, 3, 1, 0, 0, 1, 0.1, 0.01, 0.02, 0.03, 0.04, 2, 7, 4, [6, 7]),  # local history, no bh, L1L2
    (1, 4, 2, 0, 3, 1, 0, 0.0, 0, 0, 0, 0, 2, 6, 4, [6, 3]),          # width 2, relu, no ba
    (0, 0, 0, 0, 0, 0, 1, 0.3, 0, 0, 0, 0, 2, 7, 4, [7, 3]),          # multiplicative global, regularizer
    (0, 0, 5, 1, 2, 0, 0, 0.0, 0.02, 0.01, 0, 0, 2, 7, 4, [7, 5]),    # multiplicative local history, tanh
    (0, 0, 2, 0, 1, 0, 1, 0.1, 0, 0, 0.05, 0.05, 3, 6, 3, [6, 1, 0]),  # multiplicative even width, sigmoid
    (0, 0, 0, 1, 4, 0, 1, 0.0, 0, 0, 0, 0, 2, 6, 4, [4, 6]),          # multiplicative history_only, gelu
]


def allowed_mask(B, T, lengths, width, history_only):
    m = torch.zeros(B, T, T, dtype=torch.bool)
    for b in range(B):
        n = lengths[b]
        for t in range(n):
            for s in range(n):
                if width > 0:
                    ok = (t - width + 1 <= s <= t) if history_only else (t - width // 2 <= s <= t - width // 2 + width - 1)
                else:
                    ok = s <= t if history_only else True
                m[b, t, s] = ok
    return m


def run(cfg):
    (additive, U, width, history_only, act, use_bh, use_ba, reg, kl1, kl2, bl1, bl2, B, T, F, lengths) = cfg
    dt = torch.float64
    x = torch.rand(B, T, F, dtype=dt) * 2 - 1
    R = torch.rand(B, T, F, dtype=dt) * 2 - 1
    p = {}
    if additive:
        p["Wt"] = torch.randn(F, U, dtype=dt) * 0.7
        p["Wx"] = torch.randn(F, U, dtype=dt) * 0.7
        if use_bh:
            p["bh"] = torch.randn(U, dtype=dt) * 0.3
        p["Wa"] = torch.randn(U, 1, dtype=dt) * 0.8
    else:
        p["Wa"] = torch.randn(F, F, dtype=dt) * 0.6
    if use_ba:
        p["ba"] = torch.randn(1, dtype=dt) * 0.5
    for v in p.values():
        v.requires_grad_(True)
    x.requires_grad_(True)

    if additive:
        q = x @ p["Wt"] + (p["bh"] if use_bh else 0)                       # (B, T, U)
        k = x @ p["Wx"]                                                      # (B, T, U)
        h = torch.tanh(q[:, :, None, :] + k[:, None, :, :])                  # (B, T, T, U)
        e = (h @ p["Wa"])[..., 0]                                            # (B, T, T)
    else:
        e = x @ p["Wa"] @ x.transpose(1, 2)                                  # (B, T, T)
    if use_ba:
        e = e + p["ba"]
    z = ACTIVATIONS[act](e)
    allowed = allowed_mask(B, T, lengths, width, history_only)
    m = torch.where(allowed, z, torch.full_like(z, -1e300)).max(dim=-1, keepdim=True).values.detach()
    ex = torch.where(allowed, torch.exp(torch.where(allowed, z - m, torch.zeros_like(z))), torch.zeros_like(z))
    den = ex.sum(dim=-1, keepdim=True)
    A = ex / torch.where(den > 0, den, torch.ones_like(den))
    y = A @ x

    valid = torch.zeros(B, T, dtype=dt)
    for b in range(B):
        valid[b, :lengths[b]] = 1
    vv = valid[:, :, None] * valid[:, None, :]
    G = A @ A.transpose(1, 2) - torch.eye(T, dtype=dt)[None] * vv
    penalty = reg * ((G * vv) ** 2).sum() / B
    weight_penalty = torch.zeros((), dtype=dt)
    for name, v in p.items():
        l1, l2 = (kl1, kl2) if name.startswith("W") else (bl1, bl2)
        weight_penalty = weight_penalty + l1 * v.abs().sum() + l2 * (v ** 2).sum()
    loss = (y * R).sum() + penalty + weight_penalty
    loss.backward()

    out = {"options": [additive, U, width, history_only, act, use_bh, use_ba, reg, kl1, kl2, bl1, bl2],
           "lengths": lengths, "x": x, "R": R}
    out.update(p)
    out.update({"y": y, "A": A, "penalty": penalty.reshape(1), "loss": loss.reshape(1), "dx": x.grad})
    for name, v in p.items():
        out["d" + name] = v.grad
    return out


tensors = {}
for i, cfg in enumerate(CONFIGS):
    for name, value in run(cfg).items():
        tensors["cfg%d.%s" % (i, name)] = value

refdata.write("../data/seq_self_attention.txt", tensors,
              "torch %s: SeqSelfAttention reference (dense autograd) for %d configurations\n"
              "generated by tests/reference/gen_seq_self_attention.py" % (torch.__version__, len(CONFIGS)))
