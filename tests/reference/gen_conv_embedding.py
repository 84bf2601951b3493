"""Reference values for Conv1D, Embedding, FeatureAttention and TemporalAttention (independent PyTorch code).

Writes tests/data/conv_embedding.txt. Run from tests/reference:  python3 gen_conv_embedding.py
Every case gives the parameters, the output y and, for a fixed random output gradient dy, the gradients of
sum(y * dy): dx and the parameter gradients. Masked batches: lengths are per-sample valid steps.

Conv1D (conv_<case>_*): torch.nn.functional.conv1d on each sample alone (its first L steps), padded
explicitly with F.pad: valid none, causal d*(k-1) on the left, same as TensorFlow (out = ceil(L/s),
total = max((out-1)*s + d*(k-1) + 1 - L, 0), left = total // 2). Output steps past the sample's output length
are 0. W is written in Keras' layout (k, in, filters) flattened to (k*in, filters).
conv_<case>_cfg = [kernel_size, stride, dilation, padding (0 valid, 1 same, 2 causal),
                   activation (0 linear, 1 relu, 2 tanh), use_bias].
Embedding (emb_*): torch.nn.Embedding; emb_plain uses the incoming lengths, emb_mz masks every id 0 too (its
lengths are the extents: 1 + the last kept step)
(1 + index of the last non-zero id before the incoming length). Outputs past the length are 0.
FeatureAttention (fatt_<shared|single>_*): p = softmax(x W + b, -1) at valid steps, a = p or the mean of
p over valid steps, y = x * a.
TemporalAttention (tatt_<shared|single>_*): keras-attention-mechanism's attention_3d_block written with
permutes: padded x zeroed, z = x^T W + b over time with padded steps set to -inf, softmax over time, optional
mean over features, y = x * a.
"""
import math

import torch
import torch.nn.functional as F

import refdata

torch.manual_seed(1)
torch.set_default_dtype(torch.float64)
out = {}


def valid_mask(lengths, T):
    return (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]).to(torch.float64)


# ----------------------------------------------------------------------------- Conv1D
PAD = {"valid": 0, "same": 1, "causal": 2}
ACT = {"linear": (0, lambda z: z), "relu": (1, torch.relu), "tanh": (2, torch.tanh)}
conv_cases = [  # name, kernel, stride, dilation, padding, activation, bias
    ("same_k3", 3, 1, 1, "same", "linear", True),
    ("same_k3_s2", 3, 2, 1, "same", "linear", True),
    ("same_k4_s3", 4, 3, 1, "same", "tanh", True),
    ("same_k2_d3", 2, 1, 3, "same", "linear", False),
    ("causal_k2_d2", 2, 1, 2, "causal", "tanh", True),
    ("causal_k3_s2", 3, 2, 1, "causal", "linear", True),
    ("valid_k3", 3, 1, 1, "valid", "relu", True),
    ("valid_k3_s2_d2", 3, 2, 2, "valid", "linear", False),
]
B, T, C, Fo = 3, 9, 4, 5
lengths = [9, 6, 1]
x = torch.rand(B, T, C) * 2 - 1
out["conv_x"] = x
out["conv_lengths"] = torch.tensor(lengths, dtype=torch.float64)


def out_length(L, k, s, d, padding):
    rf = d * (k - 1) + 1
    if padding == "valid":
        return (L - rf) // s + 1 if L >= rf else 0
    return math.ceil(L / s)


for name, k, s, d, padding, act, bias in conv_cases:
    W = (torch.rand(k, C, Fo) * 2 - 1).requires_grad_(True)  # Keras layout
    b = (torch.rand(Fo) * 2 - 1).requires_grad_(True) if bias else None
    xr = x.clone().requires_grad_(True)
    T_out = out_length(T, k, s, d, padding)
    rows = []
    for bi in range(B):
        L = lengths[bi]
        L_out = out_length(L, k, s, d, padding)
        if L_out == 0:
            rows.append(torch.zeros(T_out, Fo))
            continue
        seq = xr[bi, :L].t().unsqueeze(0)  # (1, C, L)
        rf = d * (k - 1) + 1
        if padding == "valid":
            left = right = 0
        elif padding == "causal":
            left, right = d * (k - 1), 0
        else:
            total = max((L_out - 1) * s + rf - L, 0)
            left, right = total // 2, total - total // 2
        seq = F.pad(seq, (left, right))
        z = F.conv1d(seq, W.permute(2, 1, 0), b, stride=s, dilation=d)[0].t()  # (L_out', Fo)
        z = z[:L_out]
        yb = ACT[act][1](z)
        rows.append(torch.cat([yb, torch.zeros(T_out - L_out, Fo)], 0))
    y = torch.stack(rows)
    dy = torch.rand(B, T_out, Fo) * 2 - 1
    (y * dy).sum().backward()
    p = "conv_" + name + "_"
    out[p + "cfg"] = torch.tensor([k, s, d, PAD[padding], ACT[act][0], int(bias)], dtype=torch.float64)
    out[p + "W"] = W.reshape(k * C, Fo)
    out[p + "b"] = b if bias else torch.zeros(Fo)
    out[p + "y"] = y
    out[p + "dy"] = dy
    out[p + "dx"] = xr.grad
    out[p + "dW"] = W.grad.reshape(k * C, Fo)
    out[p + "db"] = b.grad if bias else torch.zeros(Fo)

# ----------------------------------------------------------------------------- Embedding
vocab, dim = 7, 3
ids = torch.tensor([[1, 0, 3, 0, 0, 0], [6, 6, 2, 5, 0, 1], [0, 0, 0, 0, 0, 0], [4, 0, 0, 2, 0, 0]])
emb_lengths = [6, 5, 6, 1]
emb = torch.nn.Embedding(vocab, dim)
out["emb_ids"] = ids.to(torch.float64)
out["emb_lengths"] = torch.tensor(emb_lengths, dtype=torch.float64)
out["emb_E"] = emb.weight
mz_lengths = []
for bi, L in enumerate(emb_lengths):
    nz = [t for t in range(L) if ids[bi, t] != 0]
    mz_lengths.append(nz[-1] + 1 if nz else 0)
for tag, lens in (("plain", emb_lengths), ("mz", mz_lengths)):
    emb.zero_grad()
    keep = valid_mask(emb_lengths, ids.shape[1])  # the incoming mask; mask_zero also masks every id 0 (Keras)
    if tag == "mz":
        keep = keep * (ids != 0).to(torch.float64)
    y = emb(ids) * keep[..., None]
    dy = torch.rand(*y.shape) * 2 - 1
    (y * dy).sum().backward()
    out["emb_%s_lengths" % tag] = torch.tensor(lens, dtype=torch.float64)
    out["emb_%s_y" % tag] = y
    out["emb_%s_dy" % tag] = dy
    out["emb_%s_dE" % tag] = emb.weight.grad.clone()

# ----------------------------------------------------------------------------- FeatureAttention
B, T, Fe = 3, 5, 4
att_lengths = [5, 3, 1]
for tag in ("single", "shared"):
    x = (torch.rand(B, T, Fe) * 2 - 1).requires_grad_(True)
    W = (torch.rand(Fe, Fe) * 2 - 1).requires_grad_(True)
    b = (torch.rand(Fe) * 2 - 1).requires_grad_(True)
    v = valid_mask(att_lengths, T)[..., None]
    p = torch.softmax(x @ W + b, -1) * v
    if tag == "shared":
        a = (p.sum(1, keepdim=True) / torch.tensor(att_lengths, dtype=torch.float64)[:, None, None]) * v
    else:
        a = p
    y = x * a
    dy = torch.rand(B, T, Fe) * 2 - 1
    (y * dy).sum().backward()
    pre = "fatt_%s_" % tag
    out[pre + "lengths"] = torch.tensor(att_lengths, dtype=torch.float64)
    for key, value in (("x", x), ("W", W), ("b", b), ("y", y), ("a", a), ("dy", dy), ("dx", x.grad),
                       ("dW", W.grad), ("db", b.grad)):
        out[pre + key] = value

# ----------------------------------------------------------------------------- TemporalAttention
B, T0, Fe = 3, 6, 4
att_lengths = [6, 4, 1]
for tag in ("single", "shared"):
    x = (torch.rand(B, T0, Fe) * 2 - 1).requires_grad_(True)
    W = (torch.rand(T0, T0) * 2 - 1).requires_grad_(True)
    b = (torch.rand(T0) * 2 - 1).requires_grad_(True)
    v = valid_mask(att_lengths, T0)  # (B, T0)
    a = (x * v[..., None]).permute(0, 2, 1)  # Permute((2, 1)): (B, F, T0)
    z = a @ W + b  # Dense(T0) over the time axis
    z = z.masked_fill(v[:, None, :] == 0, float("-inf"))
    p = torch.softmax(z, -1)
    if tag == "shared":
        p = p.mean(1, keepdim=True).expand(B, Fe, T0)  # SINGLE_ATTENTION_VECTOR: mean over features
    a_probs = p.permute(0, 2, 1)  # Permute back: (B, T0, F)
    y = x * a_probs
    dy = torch.rand(B, T0, Fe) * 2 - 1
    (y * dy).sum().backward()
    pre = "tatt_%s_" % tag
    out[pre + "lengths"] = torch.tensor(att_lengths, dtype=torch.float64)
    for key, value in (("x", x), ("W", W), ("b", b), ("y", y), ("a", a_probs), ("dy", dy), ("dx", x.grad),
                       ("dW", W.grad), ("db", b.grad)):
        out[pre + key] = value

refdata.write("../data/conv_embedding.txt", out,
              "torch %s: Conv1D, Embedding, FeatureAttention, TemporalAttention references\n"
              "generated by tests/reference/gen_conv_embedding.py" % torch.__version__)
