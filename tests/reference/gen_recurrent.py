"""Reference values of LSTM, GRU and their bidirectional forms, from torch.nn.LSTM / torch.nn.GRU (double).

Writes tests/data/recurrent.txt. Run from tests/reference:  /usr/bin/python3 gen_recurrent.py

Masked batches go through pack_padded_sequence (torch processes each sequence for its own length; the backward
direction of a bidirectional layer reads the valid part reversed) and pad_packed_sequence (zeros at padded
steps). For each case <c> in lstm, gru, bilstm, bigru the file has x (B, T, F), lengths, the torch parameters in
torch's layout (weight_ih_l0 (G*U, F), weight_hh_l0 (G*U, U), bias_ih_l0, bias_hh_l0, and the *_reverse ones for
the bidirectional cases), then for return_sequences=True:  seq.R (B, T, D) random, seq.y (B, T, D) padded
output, seq.dx and seq.d<param> the gradients of sum(y * R); and for return_sequences=False: last.R (B, 1, D),
last.y (B, 1, D) = h_n (the last valid state; for the backward direction, its state after step 0),
last.dx and last.d<param>. D = U, or 2U bidirectional ([forward | backward]).
Gate order: torch LSTM i, f, g, o = Keras i, f, c, o; torch GRU r, z, n, Keras z, r, h (the test permutes).

Keras GRU reset_after=False (no torch module computes it): cases gru_rb and bigru_rb, written directly in Keras'
layout (kernel (F, 3U), recurrent_kernel (U, 3U), bias (3U), gate order z, r, h; *_reverse for the backward
direction), by a plain per-step loop of torch tensor ops over each sequence's valid steps, differentiated by
torch autograd: hh = tanh(x W_h + b_h + (r * h) K_h). Same file entries as the torch cases otherwise
(seq.y / last.y, dx, d<param>).
"""
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import refdata

torch.manual_seed(20261201)
B, T, F, U = 3, 5, 4, 3
LENGTHS = [5, 3, 1]

out = {}
for case in ["lstm", "gru", "bilstm", "bigru"]:
    bi = case.startswith("bi")
    cls = torch.nn.LSTM if "lstm" in case else torch.nn.GRU
    rnn = cls(F, U, batch_first=True, bidirectional=bi).double()
    with torch.no_grad():
        for p in rnn.parameters():
            p.uniform_(-0.6, 0.6)
    x = torch.rand(B, T, F, dtype=torch.float64) * 2 - 1
    out[case + ".x"] = x
    out[case + ".lengths"] = torch.tensor(LENGTHS, dtype=torch.float64)
    for name, p in rnn.named_parameters():
        out[case + "." + name] = p
    D = 2 * U if bi else U
    for mode in ["seq", "last"]:
        xg = x.clone().requires_grad_(True)
        rnn.zero_grad()
        packed = pack_padded_sequence(xg, torch.tensor(LENGTHS), batch_first=True, enforce_sorted=False)
        ys, hn = rnn(packed)
        if mode == "seq":
            y, _ = pad_packed_sequence(ys, batch_first=True, total_length=T)
        else:
            h = hn[0] if cls is torch.nn.LSTM else hn  # (directions, B, U)
            y = torch.cat([h[d] for d in range(h.shape[0])], dim=1).unsqueeze(1)  # (B, 1, D)
        R = torch.rand(y.shape, dtype=torch.float64) * 2 - 1
        (y * R).sum().backward()
        p = case + "." + mode + "."
        out[p + "R"] = R
        out[p + "y"] = y
        out[p + "dx"] = xg.grad.clone()
        for name, prm in rnn.named_parameters():
            out[p + "d" + name] = prm.grad.clone()



def gru_reset_before(xs, W, K, b):
    """xs (L, F) -> (L, U) states of Keras' GRU reset_after=False."""
    U = K.shape[0]
    h = torch.zeros(U, dtype=torch.float64)
    hs = []
    for t in range(xs.shape[0]):
        xw = xs[t] @ W + b
        zr = torch.sigmoid(xw[:2 * U] + h @ K[:, :2 * U])
        z, r = zr[:U], zr[U:]
        hh = torch.tanh(xw[2 * U:] + (r * h) @ K[:, 2 * U:])
        h = z * h + (1 - z) * hh
        hs.append(h)
    return hs


for case in ["gru_rb", "bigru_rb"]:
    bi = case.startswith("bi")
    sfxs = ["", "_reverse"] if bi else [""]
    prm = {}
    for sfx in sfxs:
        prm["kernel" + sfx] = (torch.rand(F, 3 * U, dtype=torch.float64) * 1.2 - 0.6).requires_grad_(True)
        prm["recurrent_kernel" + sfx] = (torch.rand(U, 3 * U, dtype=torch.float64) * 1.2 - 0.6).requires_grad_(True)
        prm["bias" + sfx] = (torch.rand(3 * U, dtype=torch.float64) * 1.2 - 0.6).requires_grad_(True)
    x = torch.rand(B, T, F, dtype=torch.float64) * 2 - 1
    out[case + ".x"] = x
    out[case + ".lengths"] = torch.tensor(LENGTHS, dtype=torch.float64)
    for name, p in prm.items():
        out[case + "." + name] = p
    D = 2 * U if bi else U
    for mode in ["seq", "last"]:
        xg = x.clone().requires_grad_(True)
        for p in prm.values():
            p.grad = None
        rows = []
        for bidx in range(B):
            L = LENGTHS[bidx]
            parts_seq, parts_last = [], []
            for sfx in sfxs:
                xs = xg[bidx, :L] if sfx == "" else torch.flip(xg[bidx, :L], [0])
                hs = gru_reset_before(xs, prm["kernel" + sfx], prm["recurrent_kernel" + sfx], prm["bias" + sfx])
                if sfx:
                    hs = hs[::-1]  # the backward direction's output at step t
                pad = [torch.zeros(U, dtype=torch.float64)] * (T - L)
                parts_seq.append(torch.stack(hs + pad))
                parts_last.append(hs[-1] if sfx == "" else hs[0])
            if mode == "seq":
                rows.append(torch.cat(parts_seq, dim=1))
            else:
                rows.append(torch.cat(parts_last).unsqueeze(0))
        y = torch.stack(rows)
        R = torch.rand(y.shape, dtype=torch.float64) * 2 - 1
        (y * R).sum().backward()
        pre = case + "." + mode + "."
        out[pre + "R"] = R
        out[pre + "y"] = y
        out[pre + "dx"] = xg.grad.clone()
        for name, p in prm.items():
            out[pre + "d" + name] = p.grad.clone()

refdata.write("../data/recurrent.txt", out, __doc__.strip() + "\ntorch " + torch.__version__)
