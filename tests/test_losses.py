"""clip_loss / multi_text_loss against a naive per-sample loop and a closed-form gradient, in float64."""
import math

import pytest
import torch
import torch.nn.functional as F

from laclip_lite.losses import ClipLoss, clip_loss, multi_text_loss

ATOL = 1e-10


def _features(n, d, k=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    shape = (n, d) if k is None else (n, k, d)
    txt = F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)
    return img.requires_grad_(), txt.requires_grad_(), torch.tensor(7.5, dtype=torch.float64, requires_grad=True)


def naive_clip_loss(img, txt, scale):
    """Per-sample loop with an explicit, max-shifted log-sum-exp over each row and each column."""
    n = img.shape[0]
    z = [[scale * sum(img[i, c] * txt[j, c] for c in range(img.shape[1])) for j in range(n)] for i in range(n)]

    def lse(values):
        m = max(float(v.detach()) for v in values)
        return m + torch.log(sum(torch.exp(v - m) for v in values))

    rows = sum(lse([z[i][j] for j in range(n)]) - z[i][i] for i in range(n)) / n
    cols = sum(lse([z[i][j] for i in range(n)]) - z[j][j] for j in range(n)) / n
    return (rows + cols) / 2


def naive_multi_text_loss(img, txt, scale):
    return sum(naive_clip_loss(img, txt[:, k], scale) for k in range(txt.shape[1])) / txt.shape[1]


def closed_form_clip(img, txt, scale):
    """Value and gradients in closed form. With z = s X T^T, P = row softmax, Q = column softmax:
    L = 1/(2N) [sum_i (lse_j z_ij - z_ii) + sum_j (lse_i z_ij - z_jj)],
    G = dL/dz = ((P - I) + (Q - I)) / (2N); dL/dX = s G T, dL/dT = s G^T X, dL/ds = <G, X T^T>."""
    X, T, s = img.detach(), txt.detach(), scale.detach()
    n = X.shape[0]
    sim = X @ T.T
    z = s * sim
    value = (torch.logsumexp(z, 1).sum() + torch.logsumexp(z, 0).sum() - 2 * z.diag().sum()) / (2 * n)
    eye = torch.eye(n, dtype=z.dtype)
    G = ((torch.softmax(z, 1) - eye) + (torch.softmax(z, 0) - eye)) / (2 * n)
    return value, s * G @ T, s * G.T @ X, (G * sim).sum()


def _grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


def test_clip_loss_matches_naive_loop_and_closed_form():
    img, txt, s = _features(5, 4)
    loss = clip_loss(img, txt, s)
    g = _grads(loss, img, txt, s)
    ref = naive_clip_loss(img, txt, s)
    g_ref = _grads(ref, img, txt, s)
    value, gx, gt, gs = closed_form_clip(img, txt, s)
    assert abs(loss.item() - ref.item()) < ATOL and abs(loss.item() - value.item()) < ATOL
    for a, b, c in zip(g, g_ref, (gx, gt, gs)):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
        torch.testing.assert_close(a, c, atol=ATOL, rtol=0)


def test_multi_text_loss_matches_naive_loop_and_closed_form():
    img, txt, s = _features(4, 3, k=3, seed=1)
    loss = multi_text_loss(img, txt, s)
    g = _grads(loss, img, txt, s)
    ref = naive_multi_text_loss(img, txt, s)
    g_ref = _grads(ref, img, txt, s)
    assert abs(loss.item() - ref.item()) < ATOL
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    # closed form: the mean over k of the per-k closed forms
    parts = [closed_form_clip(img, txt[:, k], s) for k in range(3)]
    assert abs(loss.item() - sum(p[0] for p in parts).item() / 3) < ATOL
    torch.testing.assert_close(g[0], sum(p[1] for p in parts) / 3, atol=ATOL, rtol=0)
    torch.testing.assert_close(g[1], torch.stack([p[2] for p in parts], 1) / 3, atol=ATOL, rtol=0)
    torch.testing.assert_close(g[2], sum(p[3] for p in parts) / 3, atol=ATOL, rtol=0)


def test_multi_text_with_one_text_is_clip_loss():
    img, txt, s = _features(6, 8, k=1, seed=2)
    assert abs(multi_text_loss(img, txt, s).item() - clip_loss(img, txt[:, 0], s).item()) < ATOL


def test_multi_text_differs_from_pooling_the_texts():
    """Not the CLIP loss on the mean text: each text is contrasted with the same-k texts of the batch."""
    img, txt, s = _features(6, 8, k=3, seed=3)
    mean_txt = F.normalize(txt.mean(1), dim=-1)
    assert abs(multi_text_loss(img, txt, s).item() - clip_loss(img, mean_txt, s).item()) > 1e-3


def test_permutation_invariance():
    img, txt, s = _features(7, 5, k=3, seed=4)
    perm, kperm = torch.randperm(7), torch.tensor([2, 0, 1])
    assert abs(clip_loss(img, txt[:, 0], s).item() - clip_loss(img[perm], txt[perm, 0], s).item()) < ATOL
    assert abs(multi_text_loss(img, txt, s).item() - multi_text_loss(img[perm], txt[perm][:, kperm], s).item()) < ATOL
    # swapping the roles of images and texts leaves the symmetric loss unchanged
    assert abs(clip_loss(img, txt[:, 0], s).item() - clip_loss(txt[:, 0], img, s).item()) < ATOL


def test_aligned_features_and_uniform_limit():
    x = torch.eye(4, 8, dtype=torch.float64)                        # orthonormal, perfectly aligned pairs
    assert clip_loss(x, x, torch.tensor(100.0, dtype=torch.float64)).item() < 1e-30
    assert multi_text_loss(x, x[:, None].expand(4, 3, 8), torch.tensor(100.0, dtype=torch.float64)).item() < 1e-30
    # scale 0: every logit is 0, both softmaxes are uniform, the loss is ln N
    img, txt, _ = _features(9, 4, seed=5)
    assert abs(clip_loss(img, txt, torch.tensor(0.0, dtype=torch.float64)).item() - math.log(9)) < ATOL


def test_clip_loss_module_single_process_and_errors():
    img, txt, s = _features(5, 4, k=2, seed=6)
    assert ClipLoss()(img, txt[:, 0], s).item() == clip_loss(img, txt[:, 0], s).item()
    assert ClipLoss(multi_text=True)(img, txt, s).item() == multi_text_loss(img, txt, s).item()
    with pytest.raises(ValueError, match=r"clip_loss: expected .* got \(5, 4\) and \(5, 2, 4\)"):
        clip_loss(img, txt, s)
    with pytest.raises(ValueError, match="multi_text_loss"):
        multi_text_loss(img, txt[:, 0], s)
