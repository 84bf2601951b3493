"""Reference values of the losses and their gradients w.r.t. the logits/predictions, from PyTorch.

Writes tests/data/losses.txt (cross entropy, binary cross entropy, MSE, MAE). Run from tests/reference:  python3 gen_losses.py
Masks are lengths (right padding). In the per-step labels written to the file padded steps hold -1 (seqattn
ignores them); PyTorch gets ignore_index=-100 there instead (a separate mechanism from the C++ mask).
"""
import torch
import torch.nn.functional as F

import refdata

torch.manual_seed(1)
out = {}


def valid(B, T, lengths):
    return torch.arange(T).unsqueeze(0).expand(B, T) < torch.tensor(lengths).unsqueeze(1)


def with_grad(x, loss_fn):
    x = x.clone().requires_grad_(True)
    loss = loss_fn(x)
    loss.backward()
    return loss, x.grad


# Cross entropy, one label per sequence: logits (4, 1, 5).
z = torch.randn(4, 1, 5, dtype=torch.float64) * 2.0
labels = torch.tensor([0, 3, 4, 1])
loss, grad = with_grad(z, lambda x: F.cross_entropy(x.reshape(4, 5), labels))
out.update(ce_seq_logits=z, ce_seq_labels=labels, ce_seq_loss=loss.reshape(1), ce_seq_grad=grad)

# Cross entropy, one label per step, masked: logits (4, 3, 5), lengths 3, 1, 0, 2.
lengths = [3, 1, 0, 2]
z = torch.randn(4, 3, 5, dtype=torch.float64) * 2.0
labels = torch.randint(0, 5, (4, 3))
m = valid(4, 3, lengths)
torch_labels = torch.where(m, labels, torch.full_like(labels, -100))
loss, grad = with_grad(z, lambda x: F.cross_entropy(x.reshape(12, 5), torch_labels.reshape(12), ignore_index=-100))
file_labels = torch.where(m, labels, torch.full_like(labels, -1))
out.update(ce_step_logits=z, ce_step_labels=file_labels.reshape(12), ce_step_lengths=torch.tensor(lengths),
           ce_step_loss=loss.reshape(1), ce_step_grad=grad)
acc = (z.argmax(-1) == labels)[m].double().mean()
out.update(ce_step_accuracy=acc.reshape(1))

# Cross entropy with logits of magnitude 1e4 (one per step, no mask): logits (2, 2, 3).
z = torch.tensor([[[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]], [[3e3, 3e3, -1e4], [1e4, 1e4 - 2.0, -1e4]]],
                 dtype=torch.float64)
labels = torch.tensor([1, 1, 0, 1])
loss, grad = with_grad(z, lambda x: F.cross_entropy(x.reshape(4, 3), labels))
out.update(ce_large_logits=z, ce_large_labels=labels, ce_large_loss=loss.reshape(1), ce_large_grad=grad)

# Binary cross entropy on logits, (3, 4, 2), lengths 4, 1, 0 (and unmasked); targets in [0, 1] with exact 0 and 1.
z = torch.randn(3, 4, 2, dtype=torch.float64) * 3.0
y = torch.rand(3, 4, 2, dtype=torch.float64)
y[0, 0, 0], y[0, 1, 1], y[1, 0, 0] = 0.0, 1.0, 1.0
lengths = [4, 1, 0]
m = valid(3, 4, lengths).unsqueeze(-1).expand(3, 4, 2)
loss_all, grad_all = with_grad(z, lambda x: F.binary_cross_entropy_with_logits(x, y))
loss, grad = with_grad(z, lambda x: F.binary_cross_entropy_with_logits(x[m], y[m]))
out.update(bce_logits=z, bce_targets=y, bce_lengths=torch.tensor(lengths), bce_loss_all=loss_all.reshape(1),
           bce_grad_all=grad_all, bce_loss=loss.reshape(1), bce_grad=grad)

# Binary cross entropy with logits of magnitude 1e4: (1, 2, 3).
z = torch.tensor([[[1e4, -1e4, 1e4], [-1e4, 0.0, 2e3]]], dtype=torch.float64)
y = torch.tensor([[[0.0, 1.0, 1.0], [0.25, 0.5, 0.0]]], dtype=torch.float64)
loss, grad = with_grad(z, lambda x: F.binary_cross_entropy_with_logits(x, y))
out.update(bce_large_logits=z, bce_large_targets=y, bce_large_loss=loss.reshape(1), bce_large_grad=grad)

# Mean squared error, (3, 4, 2), lengths 2, 4, 1 (and unmasked).
p = torch.randn(3, 4, 2, dtype=torch.float64)
y = torch.randn(3, 4, 2, dtype=torch.float64)
lengths = [2, 4, 1]
m = valid(3, 4, lengths).unsqueeze(-1).expand(3, 4, 2)
loss_all, grad_all = with_grad(p, lambda x: F.mse_loss(x, y))
loss, grad = with_grad(p, lambda x: F.mse_loss(x[m], y[m]))
out.update(mse_pred=p, mse_targets=y, mse_lengths=torch.tensor(lengths), mse_loss_all=loss_all.reshape(1),
           mse_grad_all=grad_all, mse_loss=loss.reshape(1), mse_grad=grad)

# Mean absolute error (F.l1_loss), (3, 4, 2), lengths 3, 1, 4 (and unmasked), with exact ties p == y at valid
# steps: torch's gradient is 0 there (the subgradient of |d| at 0 it picks).
p = torch.randn(3, 4, 2, dtype=torch.float64)
y = torch.randn(3, 4, 2, dtype=torch.float64)
for b, t, f in [(0, 0, 1), (1, 0, 0), (2, 3, 1), (2, 1, 0)]:
    y[b, t, f] = p[b, t, f]
lengths = [3, 1, 4]
m = valid(3, 4, lengths).unsqueeze(-1).expand(3, 4, 2)
loss_all, grad_all = with_grad(p, lambda x: F.l1_loss(x, y))
loss, grad = with_grad(p, lambda x: F.l1_loss(x[m], y[m]))
assert grad_all[0, 0, 1] == 0 and grad[2, 3, 1] == 0, "torch's subgradient of |d| at d = 0"
out.update(mae_pred=p, mae_targets=y, mae_lengths=torch.tensor(lengths), mae_loss_all=loss_all.reshape(1),
           mae_grad_all=grad_all, mae_loss=loss.reshape(1), mae_grad=grad)

# Cross entropy with label smoothing 0.1 and 0.3 (one label per sequence, (4, 1, 5)) and 0.2 with per-step labels
# masked ((4, 3, 5), lengths 3, 1, 0, 2): torch's target (1 - eps) * onehot + eps / C.
z = torch.randn(4, 1, 5, dtype=torch.float64) * 2.0
labels = torch.tensor([1, 4, 0, 2])
for tag, eps in (("01", 0.1), ("03", 0.3)):
    loss, grad = with_grad(z, lambda x: F.cross_entropy(x.reshape(4, 5), labels, label_smoothing=eps))
    out["ce_smooth%s_loss" % tag] = loss.reshape(1)
    out["ce_smooth%s_grad" % tag] = grad
out.update(ce_smooth_logits=z, ce_smooth_labels=labels)
lengths = [3, 1, 0, 2]
z = torch.randn(4, 3, 5, dtype=torch.float64) * 2.0
labels = torch.randint(0, 5, (4, 3))
m = valid(4, 3, lengths)
torch_labels = torch.where(m, labels, torch.full_like(labels, -100))
loss, grad = with_grad(z, lambda x: F.cross_entropy(x.reshape(12, 5), torch_labels.reshape(12), ignore_index=-100,
                                                    label_smoothing=0.2))
out.update(ce_smooth_step_logits=z, ce_smooth_step_labels=torch.where(m, labels, torch.full_like(labels, -1)).reshape(12),
           ce_smooth_step_lengths=torch.tensor(lengths), ce_smooth_step_loss=loss.reshape(1), ce_smooth_step_grad=grad)

refdata.write("../data/losses.txt", out,
              "torch %s: F.cross_entropy (ignore_index for padded steps), F.binary_cross_entropy_with_logits,\n"
              "F.mse_loss (mean over valid elements) and their gradients w.r.t. the logits/predictions\n"
              "generated by tests/reference/gen_losses.py\n"
              "F.l1_loss (mean over valid elements; gradient 0 where prediction == target)\n"
              "F.cross_entropy(label_smoothing=eps)" % torch.__version__)
