"""Reference values for MultiHeadAttention and SeqWeightedAttention.

MultiHeadAttention: torch.nn.MultiheadAttention(batch_first=True) in double with
  in_proj_weight = [Wq^T; Wk^T; Wv^T] (q/k/v_proj_weight = W^T with kdim/vdim), out_proj = Wo^T,
  key_padding_mask from the key lengths, causal attn_mask = triu(ones(Tq, Tk), 1).
  attention_window w (causal sliding window, keys [t - w + 1, t]): one boolean attn_mask (B*H, Tq, Tk) that also
  holds the key padding, True where s >= len_kv, s > t or s < t - w + 1. Padded query rows get no masked key
  there (torch would give NaN rows, whose NaN reaches every gradient; their outputs are discarded anyway).
  Step masks (holes, left padding; the steps_* cases): q_keep and kv_keep (B, T) flags, passed to torch as one
  boolean attn_mask (B*H, Tq, Tk), True where key s is masked (~kv_keep), s > t (causal) or s < t - w + 1; masked
  query rows get no masked key there (their outputs are discarded). Every kept query keeps an allowed key: torch
  gives NaN rows where seqattn gives 0 (tested in test_multi_head_attention_step_masks).
  Explicit attention masks (MultiHeadAttention::set_attention_mask; the attn_* cases): a user mask of shape (Tq, Tk)
  or (B*H, Tq, Tk), boolean (True = not allowed, torch's convention) or additive (float, -inf = not allowed),
  combined with the layer's rules: torch gets one (B*H, Tq, Tk) mask, boolean (user | layer rules) or float (the
  additive values with -inf where the layer rules or the user forbid a key); rows of padded or masked queries get
  no masked key (outputs discarded). Written: attn_blocked (1 = not allowed) and, for additive masks, attn_add
  (the finite values, 0 where blocked).
  add_bias_kv / add_zero_attn (the kv_* cases): torch's own options; bias_k, bias_v drawn here and copied in,
  written as (E,) with their gradients dbias_k, dbias_v; torch pads attn_mask and key_padding_mask with an allowed
  column for each extra key, so every query keeps a key (the asserts on queries without a key are skipped: with
  a key/value length 0 the extra keys are the only ones); attention has Tk + 1 or Tk + 2 columns.
  Separate value input (the vdim_* cases; forward(xq, mq, xk, xv, mkv)): kdim != vdim, key(xkv) and value(xv)
  inputs of the same B and Tk, written as xkv / xv with dxkv / dxv.
Writes inputs, weights, outputs, per-head attention weights (average_attn_weights=False) and the gradients
of L = sum(y * R * valid_query_rows) (torch outputs bo at padded query rows; seqattn outputs 0 there).

SeqWeightedAttention (keras-self-attention): an independent autograd implementation,
  a = softmax_t(x W + b) over the valid steps, y = sum_t a_t x_t.

Run from tests/reference:  /usr/bin/python3 gen_multi_head_attention.py   (Debian's python3-torch)
"""
import torch

import refdata

torch.manual_seed(20240611)
torch.set_default_dtype(torch.float64)


def uniform(*shape, scale=1.0):
    return (torch.rand(*shape) * 2 - 1) * scale


def window_mask(B, H, Tq, Tk, q_lengths, kv_lengths, w, extra=False):
    t = torch.arange(Tq)[:, None]
    s = torch.arange(Tk)[None, :]
    masks = []
    for b in range(B):
        m = (s >= kv_lengths[b]) | (s > t) | (s < t - w + 1)
        m[q_lengths[b]:] = False  # padded queries: outputs discarded
        assert extra or not m[:q_lengths[b]].all(1).any(), "a valid query without a key"
        masks += [m] * H
    return torch.stack(masks)


def step_mask(B, H, Tq, Tk, q_keep, kv_keep, causal, w, extra=False):
    t = torch.arange(Tq)[:, None]
    s = torch.arange(Tk)[None, :]
    masks = []
    for b in range(B):
        m = ~kv_keep[b][None, :].expand(Tq, Tk)
        if causal:
            m = m | (s > t)
        if w is not None:
            m = m | (s < t - w + 1)
        m = m & q_keep[b][:, None]  # masked queries: outputs discarded
        assert extra or not m[q_keep[b]].all(1).any(), "a kept query without a key"
        masks += [m] * H
    return torch.stack(masks)


def layer_rules(B, H, Tq, Tk, q_valid, kv_valid, causal, w):
    """(B*H, Tq, Tk) True where the layer's own rules forbid key s for query t; q_valid, kv_valid (B, T) bool."""
    t = torch.arange(Tq)[:, None]
    s = torch.arange(Tk)[None, :]
    masks = []
    for b in range(B):
        m = ~kv_valid[b][None, :].expand(Tq, Tk)
        if causal:
            m = m | (s > t)
        if w is not None:
            m = m | (s < t - w + 1)
        masks += [m] * H
    return torch.stack(masks)


def explicit_mask(B, H, Tq, Tk, q_valid, kv_valid, causal, w, blocked, add, extra=False):
    """The torch attn_mask of a user mask (blocked bool, add float or None; (Tq, Tk) or (B*H, Tq, Tk))."""
    rules = layer_rules(B, H, Tq, Tk, q_valid, kv_valid, causal, w)
    user = blocked.expand(B * H, Tq, Tk) if blocked.dim() == 2 else blocked
    forbidden = rules | user
    q_rows = q_valid.repeat_interleave(H, 0)[:, :, None]  # (B*H, Tq, 1)
    assert extra or not (forbidden.all(2) & q_rows[:, :, 0]).any(), "a valid query without an allowed key"
    forbidden = forbidden & q_rows  # invalid queries: outputs discarded
    if add is None:
        return forbidden
    values = (add.expand(B * H, Tq, Tk) if add.dim() == 2 else add).clone()
    return values.masked_fill(forbidden, float("-inf"))


def mha_case(prefix, B, Tq, Tk, D, Dk, H, q_lengths, kv_lengths, causal, bias, cross, window=None, q_keep=None,
             kv_keep=None, user_mask=None, add_bias_kv=False, add_zero_attn=False, Dv=None):
    """user_mask: (blocked bool tensor, additive float tensor or None), shape (Tq, Tk) or (B*H, Tq, Tk)."""
    E = D
    Wq, Wk, Wv, Wo = uniform(D, E, scale=0.5), uniform(Dk, E, scale=0.5), uniform(Dk, E, scale=0.5), uniform(E, D, scale=0.5)
    bq, bk, bv, bo = uniform(E, scale=0.5), uniform(E, scale=0.5), uniform(E, scale=0.5), uniform(D, scale=0.5)
    xq = uniform(B, Tq, D).requires_grad_(True)
    xkv = uniform(B, Tk, Dk).requires_grad_(True) if cross else xq
    R = uniform(B, Tq, D)
    if Dv is not None:  # separate value input: its own Wv and xv, drawn after the rest
        Wv = uniform(Dv, E, scale=0.5)
        xv = uniform(B, Tk, Dv).requires_grad_(True)
    else:
        Dv, xv = Dk, xkv

    extra = add_bias_kv or add_zero_attn
    if add_bias_kv:
        bias_k, bias_v = uniform(E, scale=0.5), uniform(E, scale=0.5)
    mha = torch.nn.MultiheadAttention(E, H, bias=bias, batch_first=True, kdim=Dk, vdim=Dv, add_bias_kv=add_bias_kv,
                                      add_zero_attn=add_zero_attn)
    with torch.no_grad():
        if add_bias_kv:
            mha.bias_k.copy_(bias_k.reshape(1, 1, E))
            mha.bias_v.copy_(bias_v.reshape(1, 1, E))
        if Dk == E and Dv == E:
            mha.in_proj_weight.copy_(torch.cat([Wq.T, Wk.T, Wv.T], 0))
        else:
            mha.q_proj_weight.copy_(Wq.T)
            mha.k_proj_weight.copy_(Wk.T)
            mha.v_proj_weight.copy_(Wv.T)
        mha.out_proj.weight.copy_(Wo.T)
        if bias:
            mha.in_proj_bias.copy_(torch.cat([bq, bk, bv]))
            mha.out_proj.bias.copy_(bo)

    key_padding_mask = None if kv_lengths is None else torch.arange(Tk)[None, :] >= torch.tensor(kv_lengths)[:, None]
    attn_mask = torch.triu(torch.ones(Tq, Tk, dtype=torch.bool), 1) if causal else None
    if window is not None:
        assert causal
    if q_keep is not None:
        q_keep = torch.tensor(q_keep, dtype=torch.bool)
        kv_keep = torch.tensor(kv_keep, dtype=torch.bool) if cross else q_keep
        attn_mask = step_mask(B, H, Tq, Tk, q_keep, kv_keep, causal, window, extra)
        key_padding_mask = None
    elif window is not None:
        attn_mask = window_mask(B, H, Tq, Tk, q_lengths, kv_lengths, window, extra)
        key_padding_mask = None
    if user_mask is not None:
        if q_keep is not None:
            q_valid, kv_valid = q_keep, kv_keep
        else:
            q_valid = torch.arange(Tq)[None, :] < torch.tensor(q_lengths)[:, None]
            kv_valid = torch.arange(Tk)[None, :] < torch.tensor(kv_lengths)[:, None]
        attn_mask = explicit_mask(B, H, Tq, Tk, q_valid, kv_valid, causal, window, *user_mask, extra=extra)
        key_padding_mask = None
    y, attn = mha(xq, xkv, xv, key_padding_mask=key_padding_mask, attn_mask=attn_mask, need_weights=True,
                  average_attn_weights=False)
    if q_keep is not None:
        valid_q = q_keep.to(y.dtype)[:, :, None]
    else:
        valid_q = (torch.arange(Tq)[None, :] < torch.tensor(q_lengths)[:, None]).to(y.dtype)[:, :, None]
    (y * R * valid_q).sum().backward()

    out = {"x": xq, "R": R}
    if q_keep is not None:
        out.update(q_keep=q_keep.to(torch.float64), kv_keep=kv_keep.to(torch.float64))
    else:
        out.update(q_lengths=torch.tensor(q_lengths, dtype=torch.float64),
                   kv_lengths=torch.tensor(kv_lengths, dtype=torch.float64))
    out.update({"Wq": Wq, "Wk": Wk, "Wv": Wv, "Wo": Wo, "y": y * valid_q, "attention": attn, "dx": xq.grad})
    if user_mask is not None:
        out["attn_blocked"] = user_mask[0].to(torch.float64)
        if user_mask[1] is not None:
            out["attn_add"] = user_mask[1].masked_fill(user_mask[0], 0.0)
    if cross:
        out["xkv"] = xkv
        out["dxkv"] = xkv.grad
    if xv is not xkv:
        out["xv"] = xv
        out["dxv"] = xv.grad
    if Dk == E and Dv == E:
        g = mha.in_proj_weight.grad
        out.update(dWq=g[:E].T, dWk=g[E:2 * E].T, dWv=g[2 * E:].T)
    else:
        out.update(dWq=mha.q_proj_weight.grad.T, dWk=mha.k_proj_weight.grad.T, dWv=mha.v_proj_weight.grad.T)
    out["dWo"] = mha.out_proj.weight.grad.T
    if bias:
        gb = mha.in_proj_bias.grad
        out.update(bq=bq, bk=bk, bv=bv, bo=bo, dbq=gb[:E], dbk=gb[E:2 * E], dbv=gb[2 * E:], dbo=mha.out_proj.bias.grad)
    if add_bias_kv:
        out.update(bias_k=bias_k, bias_v=bias_v, dbias_k=mha.bias_k.grad.reshape(E), dbias_v=mha.bias_v.grad.reshape(E))
    return {prefix + "." + k: v for k, v in out.items()}


def swa_case(prefix, B, T, F, lengths, bias):
    x = uniform(B, T, F).requires_grad_(True)
    W = uniform(F, 1).requires_grad_(True)
    b = uniform(1).requires_grad_(True)
    R = uniform(B, 1, F)
    logits = (x @ W)[:, :, 0] + (b if bias else 0)
    valid = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    a = torch.softmax(logits.masked_fill(~valid, float("-inf")), dim=1)
    y = (a[:, :, None] * x).sum(1, keepdim=True)
    (y * R).sum().backward()
    out = {"x": x, "lengths": torch.tensor(lengths, dtype=torch.float64), "W": W, "R": R, "y": y, "attention": a,
           "dx": x.grad, "dW": W.grad}
    if bias:
        out.update(b=b, db=b.grad)
    return {prefix + "." + k: v for k, v in out.items()}


if __name__ == "__main__":
    tensors = {}
    tensors.update(mha_case("self", 3, 5, 5, 8, 8, 2, [5, 3, 1], [5, 3, 1], causal=False, bias=True, cross=False))
    tensors.update(mha_case("causal", 2, 6, 6, 6, 6, 3, [6, 4], [6, 4], causal=True, bias=True, cross=False))
    tensors.update(mha_case("nobias", 2, 4, 4, 8, 8, 4, [4, 4], [4, 4], causal=False, bias=False, cross=False))
    tensors.update(mha_case("cross", 2, 4, 6, 8, 5, 2, [4, 2], [6, 3], causal=False, bias=True, cross=True))
    tensors.update(mha_case("cross_causal", 2, 5, 3, 4, 6, 2, [5, 4], [3, 2], causal=True, bias=True, cross=True))
    with torch.random.fork_rng():  # their own seed: the random stream of the cases below stays as it was
        torch.manual_seed(20261207)
        tensors.update(mha_case("window", 3, 7, 7, 8, 8, 2, [7, 5, 2], [7, 5, 2], causal=True, bias=True,
                                cross=False, window=3))
        tensors.update(mha_case("window_one", 2, 5, 5, 6, 6, 3, [5, 3], [5, 3], causal=True, bias=True, cross=False,
                                window=1))
        tensors.update(mha_case("window_nobias", 2, 9, 9, 8, 8, 4, [9, 6], [9, 6], causal=True, bias=False,
                                cross=False, window=4))
        tensors.update(mha_case("cross_window", 2, 6, 5, 4, 6, 2, [6, 4], [5, 3], causal=True, bias=True,
                                cross=True, window=2))
    with torch.random.fork_rng():  # step masks: holes and left padding
        torch.manual_seed(20261206)
        q6 = [[1, 0, 1, 1, 0, 1], [0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]
        tensors.update(mha_case("steps", 3, 6, 6, 8, 8, 2, None, None, causal=False, bias=True, cross=False,
                                q_keep=q6))
        tensors.update(mha_case("steps_causal", 3, 6, 6, 6, 6, 3, None, None, causal=True, bias=True, cross=False,
                                q_keep=q6))
        tensors.update(mha_case("steps_window", 3, 6, 6, 8, 8, 2, None, None, causal=True, bias=False, cross=False,
                                window=2, q_keep=q6))
        tensors.update(mha_case("steps_cross", 2, 4, 7, 8, 5, 2, None, None, causal=False, bias=True, cross=True,
                                q_keep=[[1, 0, 1, 1], [0, 1, 1, 0]], kv_keep=[[0, 1, 0, 1, 1, 0, 1], [0, 0, 1, 1, 0, 1, 0]]))
        tensors.update(mha_case("steps_cross_causal", 2, 5, 4, 4, 6, 2, None, None, causal=True, bias=True, cross=True,
                                q_keep=[[0, 1, 1, 0, 1], [1, 1, 0, 1, 1]], kv_keep=[[0, 1, 0, 1], [1, 0, 1, 1]]))
    with torch.random.fork_rng():  # explicit attention masks (set_attention_mask)
        torch.manual_seed(20261208)

        def sparse(*shape, p=0.3):
            m = torch.rand(*shape) < p
            m[..., 0] = False  # key 0: every valid query keeps an allowed key
            return m

        tensors.update(mha_case("attn_bool", 2, 5, 5, 6, 6, 2, [5, 4], [5, 4], causal=True, bias=True, cross=False,
                                user_mask=(sparse(5, 5), None)))
        tensors.update(mha_case("attn_add_heads", 2, 5, 5, 8, 8, 2, [5, 3], [5, 3], causal=False, bias=True,
                                cross=False, user_mask=(sparse(4, 5, 5), uniform(4, 5, 5, scale=2.0))))
        near = sparse(4, 6, 5, p=0.4)
        for t in range(6):  # keys t - 1 and t stay allowed: every valid query keeps a key of its window
            near[:, t, max(0, min(t, 4) - 1):min(t, 4) + 1] = False
        tensors.update(mha_case("attn_cross_window", 2, 6, 5, 4, 6, 2, [6, 4], [5, 3], causal=True, bias=True,
                                cross=True, window=2, user_mask=(near, None)))
        tensors.update(mha_case("attn_steps_add", 3, 6, 6, 8, 8, 2, None, None, causal=False, bias=False,
                                cross=False, q_keep=[[1, 0, 1, 1, 0, 1], [0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]],
                                user_mask=(torch.zeros(6, 6, dtype=torch.bool), uniform(6, 6, scale=3.0))))
    with torch.random.fork_rng():  # add_bias_kv, add_zero_attn
        torch.manual_seed(20261209)
        tensors.update(mha_case("kv_bias", 3, 5, 5, 8, 8, 2, [5, 3, 1], [5, 3, 1], causal=False, bias=True,
                                cross=False, add_bias_kv=True))
        tensors.update(mha_case("kv_zero_causal", 2, 6, 6, 6, 6, 3, [6, 4], [6, 4], causal=True, bias=True,
                                cross=False, add_zero_attn=True))
        tensors.update(mha_case("kv_both_cross", 2, 4, 6, 8, 5, 2, [4, 3], [6, 0], causal=False, bias=True,
                                cross=True, add_bias_kv=True, add_zero_attn=True))
        tensors.update(mha_case("kv_both_window", 2, 7, 7, 8, 8, 2, [7, 5], [7, 5], causal=True, bias=False,
                                cross=False, window=2, add_bias_kv=True, add_zero_attn=True))
        tensors.update(mha_case("kv_both_steps", 2, 4, 7, 8, 5, 2, None, None, causal=True, bias=True, cross=True,
                                q_keep=[[1, 0, 1, 1], [0, 1, 1, 0]], kv_keep=[[0, 0, 0, 1, 1, 0, 1], [0, 0, 1, 1, 0, 1, 0]],
                                add_bias_kv=True, add_zero_attn=True))
        tensors.update(mha_case("kv_bias_attn", 2, 5, 5, 6, 6, 2, [5, 4], [5, 4], causal=True, bias=True,
                                cross=False, user_mask=(torch.rand(4, 5, 5) < 0.5, uniform(4, 5, 5, scale=2.0)),
                                add_bias_kv=True))
    with torch.random.fork_rng():  # separate key and value inputs, kdim != vdim
        torch.manual_seed(20261210)
        tensors.update(mha_case("vdim_cross", 2, 4, 6, 8, 5, 2, [4, 2], [6, 3], causal=False, bias=True, cross=True,
                                Dv=3))
        tensors.update(mha_case("vdim_steps_causal", 2, 5, 4, 4, 6, 2, None, None, causal=True, bias=True, cross=True,
                                q_keep=[[0, 1, 1, 0, 1], [1, 1, 0, 1, 1]], kv_keep=[[1, 1, 0, 1], [1, 0, 1, 1]], Dv=7,
                                add_zero_attn=True))
    refdata.write("../data/multi_head_attention.txt", tensors,
                  "torch %s nn.MultiheadAttention(batch_first=True), double; see gen_multi_head_attention.py"
                  % torch.__version__)

    tensors = {}
    tensors.update(swa_case("masked", 3, 5, 4, [5, 2, 1], bias=True))
    tensors.update(swa_case("nobias", 2, 4, 3, [4, 4], bias=False))
    refdata.write("../data/seq_weighted_attention.txt", tensors,
                  "torch %s autograd SeqWeightedAttention, double; see gen_multi_head_attention.py" % torch.__version__)
