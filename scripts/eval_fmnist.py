#!/usr/bin/python3
"""Quantitative check of class-conditional Fashion-MNIST samples (e.g. from `uvit sample --classes all`).

Trains (once, cached) a small CNN classifier on the Fashion-MNIST train set and reports, for a samples
file (uint8 [N,28,28,1] or [N,28,28]):
  * accuracy of the classifier against the requested class (overall and per class);
  * FD_cls: Frechet distance between Gaussians fitted to the classifier's penultimate features of the
    samples and of the 10k real test images (FID-like, but in a Fashion-MNIST feature space);
  * the same figures for real images (test accuracy, FD of N and 5000 real train images) and for two
    trivial baselines (per-class mean image, uniform noise) to give the scale.

JSON goes to stdout (and --json-out), the human-readable table and training log to stderr.
Run with /usr/bin/python3 (needs torch + numpy; scipy optional).
"""
import argparse
import gzip
import hashlib
import inspect
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_DIR = "/usr/share/datasets/fashion-mnist"
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SEED = 0
EPOCHS = 2
BATCH = 128
LR = 2e-3


class Classifier(nn.Module):
    """Two strided conv layers + a 128-d penultimate layer (the FD feature space) + a linear head.
    Strided convs instead of conv+pool keep 2 epochs of training to about a minute on 2 busy cores."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, stride=2, padding=2)  # 28 -> 14
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)  # 14 -> 7
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def features(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x):
        return self.fc2(self.features(x))


def fail(msg):
    print(f"eval_fmnist: {msg}", file=sys.stderr)
    sys.exit(2)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def read_idx(path, kind):
    """Reads a gzipped IDX file: kind 'images' -> uint8 [n,28,28], 'labels' -> uint8 [n]."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        fail(f"{path}: cannot read: {e}")
    magic = int.from_bytes(raw[0:4], "big")
    n = int.from_bytes(raw[4:8], "big")
    if kind == "images":
        if magic != 2051:
            fail(f"{path}: bad IDX magic {magic}, expected 2051")
        rows, cols = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
        data = np.frombuffer(raw, np.uint8, offset=16)
        if data.size != n * rows * cols:
            fail(f"{path}: truncated: header says {n * rows * cols} bytes of data, file has {data.size}")
        return data.reshape(n, rows, cols)
    if magic != 2049:
        fail(f"{path}: bad IDX magic {magic}, expected 2049")
    data = np.frombuffer(raw, np.uint8, offset=8)
    if data.size != n:
        fail(f"{path}: truncated: header says {n} labels, file has {data.size}")
    return data


def load_split(split):
    x = read_idx(os.path.join(DATA_DIR, f"{split}-images-idx3-ubyte.gz"), "images")
    y = read_idx(os.path.join(DATA_DIR, f"{split}-labels-idx1-ubyte.gz"), "labels")
    if len(x) != len(y):
        fail(f"{split}: {len(x)} images but {len(y)} labels")
    return x, y.astype(np.int64)


def to_tensor(u8):
    """uint8 [n,28,28] -> float [n,1,28,28] in [0,1] (pixel/255, no other normalisation)."""
    return torch.from_numpy(u8.astype(np.float32) / 255.0).unsqueeze(1)


def model_key():
    # Retrain whenever the model definition or the training recipe changes.
    src = inspect.getsource(Classifier) + inspect.getsource(train) + repr((SEED, EPOCHS, BATCH, LR))
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def train(xtr, ytr):
    torch.manual_seed(SEED)
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = to_tensor(xtr), torch.from_numpy(ytr)
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    for epoch in range(EPOCHS):
        t0 = time.time()
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), BATCH):
            idx = perm[i:i + BATCH]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        log(f"train epoch {epoch + 1}/{EPOCHS}: loss {total / len(x):.4f} ({time.time() - t0:.0f}s)")
    model.eval()
    return model


def get_model(cache, xtr, ytr):
    key = model_key()
    model = Classifier()
    if os.path.exists(cache):
        try:
            blob = torch.load(cache, map_location="cpu")
            if isinstance(blob, dict) and blob.get("key") == key:
                model.load_state_dict(blob["state_dict"])
                model.eval()
                log(f"classifier: loaded {cache} (key {key})")
                return model, key
            log(f"classifier: {cache} has a different key, retraining")
        except Exception as e:  # a corrupt cache is just retrained
            log(f"classifier: {cache}: unreadable ({e}), retraining")
    log("classifier: training on the train set (60k images)")
    model = train(xtr, ytr)
    os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
    tmp = f"{cache}.tmp{os.getpid()}"
    torch.save({"key": key, "state_dict": model.state_dict()}, tmp)
    os.replace(tmp, cache)
    log(f"classifier: saved {cache}")
    return model, key


@torch.no_grad()
def run_model(model, u8):
    """Returns (predicted labels [n], penultimate features float64 [n,128])."""
    preds, feats = [], []
    for i in range(0, len(u8), 1000):
        f = model.features(to_tensor(u8[i:i + 1000]))
        preds.append(model.fc2(f).argmax(1).numpy())
        feats.append(f.double().numpy())
    return np.concatenate(preds), np.concatenate(feats)


def gaussian(feats):
    return feats.mean(0), np.cov(feats, rowvar=False)


def trace_sqrt_product(s1, s2, method):
    """tr(sqrtm(s1 @ s2)) for symmetric PSD s1, s2."""
    if method == "scipy.linalg.sqrtm":
        import scipy.linalg
        covmean = scipy.linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():  # singular product: offset the diagonals as in FID code
            off = np.eye(len(s1)) * 1e-6
            covmean = scipy.linalg.sqrtm((s1 + off) @ (s2 + off))
        return float(np.real(np.trace(covmean)))
    # sqrt(s1) s2 sqrt(s1) is similar to s1 s2 and symmetric PSD, so its eigenvalues are real.
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    ev = np.linalg.eigvalsh(r @ s2 @ r)
    return float(np.sqrt(np.clip(ev, 0, None)).sum())


def frechet(g1, g2, method):
    (m1, s1), (m2, s2) = g1, g2
    d = m1 - m2
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt_product(s1, s2, method))


def sqrtm_method(choice):
    if choice == "eigh":
        return "eigh (symmetric sqrt(S1) S2 sqrt(S1))"
    try:
        import scipy.linalg  # noqa: F401
        return "scipy.linalg.sqrtm"
    except ImportError:
        if choice == "scipy":
            fail("--sqrtm scipy: scipy is not installed (apt-get install -y python3-scipy)")
        return "eigh (symmetric sqrt(S1) S2 sqrt(S1))"


def accuracy_block(pred, labels):
    per = {}
    for c in range(10):
        m = labels == c
        if m.any():
            per[CLASS_NAMES[c]] = float((pred[m] == c).mean())
    return {"n": int(len(labels)), "accuracy": float((pred == labels).mean()), "per_class_accuracy": per}


def load_samples(path):
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        fail(f"{path}: cannot load as .npy: {e}")
    if a.dtype != np.uint8:
        fail(f"{path}: dtype {a.dtype}, expected uint8")
    if a.ndim == 4 and a.shape[3] == 1:
        a = a[..., 0]
    if a.ndim != 3 or a.shape[1:] != (28, 28) or a.shape[0] < 2:
        fail(f"{path}: shape {list(a.shape)}, expected [N,28,28,1] or [N,28,28] with N >= 2")
    return np.ascontiguousarray(a)


def load_labels(spec, n):
    if spec == "mod10":
        return np.arange(n) % 10
    try:
        lab = np.load(spec, allow_pickle=False)
    except (OSError, ValueError) as e:
        fail(f"{spec}: cannot load labels as .npy: {e}")
    if not np.issubdtype(lab.dtype, np.integer):
        fail(f"{spec}: labels dtype {lab.dtype}, expected an integer type")
    lab = lab.reshape(-1).astype(np.int64)
    if len(lab) != n:
        fail(f"{spec}: {len(lab)} labels for {n} samples")
    if lab.min() < 0 or lab.max() > 9:
        fail(f"{spec}: labels must be in 0..9, found {lab.min()}..{lab.max()}")
    return lab


def pick_by_labels(xs, ys, labels, rng):
    """Random images of xs (without replacement within a class) whose classes match `labels`."""
    out = np.empty((len(labels), 28, 28), np.uint8)
    for c in range(10):
        where = np.nonzero(labels == c)[0]
        if len(where):
            pool = np.nonzero(ys == c)[0]
            out[where] = xs[rng.choice(pool, len(where), replace=len(where) > len(pool))]
    return out


def evaluate(model, name, u8, labels, test_g, method):
    pred, feats = run_model(model, u8)
    r = accuracy_block(pred, labels)
    r["fd_cls"] = frechet(gaussian(feats), test_g, method)
    r["name"] = name
    return r


def table(rows):
    lines = [f"{'set':<34} {'N':>6} {'acc':>7} {'FD_cls':>10}"]
    for r in rows:
        fd = f"{r['fd_cls']:10.3f}" if r.get("fd_cls") is not None else f"{'-':>10}"
        lines.append(f"{r['name']:<34} {r['n']:>6} {r['accuracy']:7.4f} {fd}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", help="uint8 .npy [N,28,28,1] or [N,28,28]")
    ap.add_argument("--labels", default="mod10", help='"mod10" (label of sample i is i mod 10) or an integer .npy')
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/uvit/fmnist_classifier.pt"))
    ap.add_argument("--json-out", help="also write the JSON report here")
    ap.add_argument("--sqrtm", choices=["auto", "scipy", "eigh"], default="auto",
                    help="matrix square root for FD: scipy.linalg.sqrtm if installed (auto), or eigh")
    ap.add_argument("--no-reference", action="store_true", help="skip the real-image and baseline figures")
    ap.add_argument("--make-test-samples", metavar="FILE",
                    help="write the first --n test images arranged so image i has class i mod 10 (for validation) and exit")
    ap.add_argument("--n", type=int, default=1000, help="count for --make-test-samples")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(SEED)

    xte, yte = load_split("t10k")
    if args.make_test_samples:
        if args.n < 1 or args.n > 10000:
            fail(f"--n {args.n}: must be in 1..10000")
        labels = np.arange(args.n) % 10
        out = np.empty((args.n, 28, 28, 1), np.uint8)
        for c in range(10):
            where = np.nonzero(labels == c)[0]
            out[where, :, :, 0] = xte[np.nonzero(yte == c)[0][:len(where)]]
        tmp = f"{args.make_test_samples}.tmp{os.getpid()}.npy"
        np.save(tmp, out)
        os.replace(tmp, args.make_test_samples)
        log(f"wrote {args.make_test_samples}: {args.n} test images, class of image i = i mod 10")
        return
    if not args.samples:
        fail("--samples FILE.npy is required")
    samples = load_samples(args.samples)
    labels = load_labels(args.labels, len(samples))
    n = len(samples)

    xtr, ytr = load_split("train")
    model, key = get_model(args.cache, xtr, ytr)
    method = sqrtm_method(args.sqrtm)
    test_pred, test_feats = run_model(model, xte)
    test_g = gaussian(test_feats)

    report = {
        "samples": args.samples,
        "labels": args.labels,
        "classifier": {"cache": args.cache, "key": key, "epochs": EPOCHS, "feature_dim": int(test_feats.shape[1])},
        "fd_reference_set": "Fashion-MNIST test (10000 images)",
        "sqrtm_method": method,
        "samples_result": evaluate(model, "samples", samples, labels, test_g, method),
    }
    rows = [report["samples_result"]]
    if not args.no_reference:
        def rng(k):  # one generator per reference, so each draw is the same whatever N is
            return np.random.default_rng([SEED, k])

        test_acc = accuracy_block(test_pred, yte)
        test_acc["name"], test_acc["fd_cls"] = "real test (classifier accuracy)", None
        real_n = evaluate(model, f"real train, N={n}, same labels", pick_by_labels(xtr, ytr, labels, rng(1)),
                          labels, test_g, method)
        idx5k = rng(2).choice(len(xtr), 5000, replace=False)
        real_5k = evaluate(model, "real train, random 5000", xtr[idx5k], ytr[idx5k], test_g, method)
        means = np.stack([xtr[ytr == c].mean(0) for c in range(10)]).round().astype(np.uint8)
        mean_b = evaluate(model, f"baseline class-mean image, N={n}", means[labels], labels, test_g, method)
        noise = rng(3).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        noise_b = evaluate(model, f"baseline uniform noise, N={n}", noise, labels, test_g, method)
        report["reference"] = {"real_test": test_acc, "real_train_same_n": real_n, "real_train_5000": real_5k,
                               "baseline_class_mean": mean_b, "baseline_uniform_noise": noise_b}
        rows += [test_acc, real_n, real_5k, mean_b, noise_b]

    log(table(rows))
    log(f"FD_cls: Frechet distance of 128-d classifier features vs the 10k test set; sqrtm: {method}")
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        tmp = f"{args.json_out}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, args.json_out)


if __name__ == "__main__":
    main()
