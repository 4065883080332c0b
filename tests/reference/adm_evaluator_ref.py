"""numpy reimplementation of the ADM evaluator's Inception Score and precision/recall, written from
the algorithm of openai/guided-diffusion evaluations/evaluator.py (docs/evaluation.md "The ADM
evaluator"): ManifoldEstimator with row/column batches, np.partition radii (k = 3, the row holds
the point itself), DistanceBlock's squared distances first in float16 (fp16 inputs, each op rounded
to fp16, products accumulated in float32), again in float32 for a block with a non-finite value.
"""
import numpy as np


def distance_block(u, v):
    """max(|u|^2 - 2 u.v + |v|^2, 0) as the evaluator's TF graph computes it."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _distance_block(u, v)


def _distance_block(u, v):
    f16, f32 = np.float16, np.float32
    uh, vh = u.astype(f16), v.astype(f16)
    # tf.square in fp16 (exact products rounded to fp16), reduce_sum accumulated wide, rounded.
    nu = (uh.astype(f32) ** 2).astype(f16).astype(np.float64).sum(1).astype(f16)
    nv = (vh.astype(f32) ** 2).astype(f16).astype(np.float64).sum(1).astype(f16)
    mm = (uh.astype(np.float64) @ vh.astype(np.float64).T).astype(f32).astype(f16)
    d = np.maximum((nu[:, None] - f16(2) * mm) + nv[None, :], f16(0))
    if np.isfinite(d).all():
        return d.astype(f32)
    u32, v32 = u.astype(f32), v.astype(f32)
    nu = (u32.astype(np.float64) ** 2).sum(1).astype(f32)
    nv = (v32.astype(np.float64) ** 2).sum(1).astype(f32)
    mm = (u32.astype(np.float64) @ v32.astype(np.float64).T).astype(f32)
    return np.maximum((nu[:, None] - f32(2) * mm) + nv[None, :], f32(0))


def manifold_radii(features, k=3, row_batch=10000, col_batch=10000):
    n = len(features)
    radii = np.zeros([n], dtype=np.float32)
    dist = np.zeros([row_batch, n], dtype=np.float32)
    seq = np.arange(k + 1)
    for b1 in range(0, n, row_batch):
        e1 = min(b1 + row_batch, n)
        for b2 in range(0, n, col_batch):
            e2 = min(b2 + col_batch, n)
            dist[0:e1 - b1, b2:e2] = distance_block(features[b1:e1], features[b2:e2])
        radii[b1:e1] = np.partition(dist[0:e1 - b1, :], seq, axis=1)[:, k]
    return radii


def precision_recall(real, fake, k=3, row_batch=10000, col_batch=10000):
    r1 = manifold_radii(real, k, row_batch, col_batch)
    r2 = manifold_radii(fake, k, row_batch, col_batch)
    s1 = np.zeros([len(real)], dtype=bool)
    s2 = np.zeros([len(fake)], dtype=bool)
    for b1 in range(0, len(real), row_batch):
        for b2 in range(0, len(fake), col_batch):
            d = distance_block(real[b1:b1 + row_batch], fake[b2:b2 + col_batch])
            s1[b1:b1 + row_batch] |= (d <= r2[None, b2:b2 + col_batch]).any(1)
            s2[b2:b2 + col_batch] |= (d <= r1[b1:b1 + row_batch, None]).any(0)
    return float(s2.mean()), float(s1.mean())


def inception_score(logits, split_size=5000):
    """Splits of split_size consecutive samples, mean of exp(mean KL) (computed in float64)."""
    x = logits.astype(np.float64)
    x = x - x.max(1, keepdims=True)
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    scores = []
    for i in range(0, len(p), split_size):
        part = p[i:i + split_size]
        kl = part * (np.log(part) - np.log(part.mean(0, keepdims=True)))
        scores.append(np.exp(kl.sum(1).mean()))
    return float(np.mean(scores))
