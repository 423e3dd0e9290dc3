"""Train fraud_mlp: a small MLP scoring card transactions, on a synthetic, seeded data set.

Run from the repository root (needs torch==2.13.0, scikit-learn and onnxruntime, NOT minirt deps):

    python models/train_fraud.py      # about 30 s on 2 CPU cores

The data are made up, but shaped like the real thing: 30,000 transactions with ten named
features (see FEATURES), of which about 3 % are fraud. Fraud is drawn from a logistic model
with interactions a linear model cannot see on its own (night time x foreign, card not present
x high merchant risk, an amount far above the customer's usual, a young account with many
transactions), so the MLP has something to learn. Split 70 / 15 / 15 (train / validation /
test), stratified, seed 0.

The model takes the raw features (float32 [N, 10]) and does its own preprocessing in the
graph: log1p of the three skewed columns, then standardization with the training mean and
std, then Linear(10, 32) -> ReLU -> Linear(32, 16) -> ReLU -> Linear(16, 1) -> Sigmoid.

Writes:
  minirt/data/fraud_mlp.onnx   opset 17: "features" f32 [N, 10] -> "score" f32 [N, 1], P(fraud)
  minirt/data/fraud_mlp.json   feature names and meaning, test accuracy, ROC-AUC, precision /
                               recall / F1 at threshold 0.5, fraud rate, split, versions
  minirt/data/fraud_test.npz   the held-out test set: features f32 [4500, 10], labels i64 [4500]
  minirt/data/digits_test.npz  ALSO the full held-out test split of the bundled digits CNN
                               (images f32 [450, 1, 8, 8] scaled to 0..1, labels i64 [450]),
                               made exactly as models/train_digits_cnn.py splits it, so its
                               accuracy can be measured without scikit-learn (see
                               write_digits_test; it belongs in train_digits_cnn.py in time)
"""
from __future__ import annotations

import datetime
import json
import pathlib

import numpy as np
import sklearn
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import train_test_split
from torch import nn

SEED = 0
N = 30_000
EPOCHS, BATCH, LR = 40, 256, 3e-3
FRAUD_BIAS = -8.9  # sets the fraud rate (about 3 %)
OUT = pathlib.Path(__file__).resolve().parent.parent / "minirt" / "data"

FEATURES = {
    "amount": "transaction amount in USD (log-normal, median about 40)",
    "hour": "local hour of the day, 0..23",
    "merchant_risk": "risk score of the merchant's category, 0..1",
    "distance_km": "distance from the card holder's home, km (log-normal)",
    "is_foreign": "1 if the merchant is abroad",
    "card_present": "1 if the card was physically present (chip / swipe), 0 online or by phone",
    "txn_last_24h": "number of transactions on the card in the previous 24 hours",
    "account_age_days": "age of the account in days",
    "amount_ratio": "amount / the card holder's average amount over the last 90 days",
    "declines_last_7d": "declined attempts on the card in the previous 7 days",
}
LOG_COLUMNS = [0, 3, 8]  # amount, distance_km, amount_ratio: the model takes log1p of these


def make_transactions(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n synthetic transactions (float32 [n, 10], columns as FEATURES) and fraud labels (0/1)."""
    avg_amount = rng.lognormal(3.6, 0.6, n)  # each customer's usual spend
    amount_ratio = rng.lognormal(0.0, 0.5, n)
    amount = avg_amount * amount_ratio
    hour = rng.choice(24, n, p=_hour_weights())
    merchant_risk = rng.beta(2, 6, n)
    is_foreign = (rng.random(n) < 0.06).astype(float)
    distance = rng.lognormal(2.0, 1.0, n) + is_foreign * rng.lognormal(6.5, 0.7, n)
    card_present = (rng.random(n) < 0.65).astype(float)
    txn_24h = rng.poisson(2.5, n).astype(float)
    account_age = rng.gamma(2.0, 400.0, n).round()
    declines = rng.poisson(0.15, n).astype(float)

    night = ((hour < 6) | (hour >= 23)).astype(float)
    risk = (
        1.1 * np.log(amount_ratio).clip(0, None) ** 1.5  # much more than usual
        + 2.2 * merchant_risk * (1 - card_present)  # risky merchant, card not present
        + 1.4 * night * is_foreign
        + 0.5 * night
        + 0.9 * is_foreign
        + 0.8 * (account_age < 60) * (txn_24h >= 5)  # new account on a spree
        + 0.25 * np.minimum(txn_24h, 10)
        + 0.9 * np.minimum(declines, 3)
        - 0.6 * card_present
        + 0.15 * np.log1p(distance) * (1 - card_present)
    )
    logit = FRAUD_BIAS + 2.5 * risk
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    x = np.stack([amount.round(2), hour, merchant_risk, distance, is_foreign, card_present, txn_24h,
                  account_age, amount_ratio, declines], axis=1).astype(np.float32)
    return x, y


def _hour_weights() -> np.ndarray:
    """Few transactions at night, a peak at midday and in the evening."""
    h = np.arange(24)
    w = 0.2 + np.exp(-((h - 13) ** 2) / 18) + 0.8 * np.exp(-((h - 19) ** 2) / 8)
    return w / w.sum()


class FraudMLP(nn.Module):
    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        log_mask = np.zeros(len(FEATURES), np.float32)
        log_mask[LOG_COLUMNS] = 1
        self.register_buffer("log_mask", torch.from_numpy(log_mask))
        self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
        self.register_buffer("std", torch.from_numpy(std.astype(np.float32)))
        self.net = nn.Sequential(nn.Linear(len(FEATURES), 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                                 nn.Linear(16, 1))

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.where(self.log_mask > 0, torch.log1p(x.clamp(min=0)), x)  # skewed columns -> log1p
        return (x - self.mean) / self.std  # [N, 10] standardized with the training statistics

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(x))  # [N, 1]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(features))  # [N, 1]: P(fraud)


def main() -> None:
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    rng = np.random.default_rng(SEED)
    x, y = make_transactions(N, rng)
    x_tr, x_rest, y_tr, y_rest = train_test_split(x, y, test_size=0.3, random_state=SEED, stratify=y)
    x_va, x_te, y_va, y_te = train_test_split(x_rest, y_rest, test_size=0.5, random_state=SEED, stratify=y_rest)
    print(f"{N} transactions, fraud rate {y.mean():.4f}; train {len(y_tr)}, val {len(y_va)}, test {len(y_te)}")

    xt_log = np.where(np.isin(np.arange(x.shape[1]), LOG_COLUMNS), np.log1p(x_tr.clip(0)), x_tr)
    model = FraudMLP(xt_log.mean(0), xt_log.std(0) + 1e-6)
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr).float()[:, None]
    gen = torch.Generator().manual_seed(SEED)
    best = (-1.0, None)
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            loss = loss_fn(model.logit(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val_auc = roc_auc_score(y_va, model(torch.from_numpy(x_va)).numpy()[:, 0])
        if val_auc > best[0]:  # keep the epoch with the best validation ROC-AUC
            best = (val_auc, {k: v.clone() for k, v in model.state_dict().items()}, epoch + 1)
        if epoch % 10 == 9:
            print(f"epoch {epoch + 1:2d}  val ROC-AUC {val_auc:.4f}")
    model.load_state_dict(best[1])
    model.eval()
    print(f"kept epoch {best[2]} (val ROC-AUC {best[0]:.4f})")

    OUT.mkdir(parents=True, exist_ok=True)
    onnx_path = OUT / "fraud_mlp.onnx"
    torch.onnx.export(model, (torch.from_numpy(x_te[:2]),), str(onnx_path), input_names=["features"],
                      output_names=["score"], dynamic_axes={"features": {0: "N"}, "score": {0: "N"}},
                      opset_version=17, dynamo=False)

    # the metrics are those of the exported file, run in onnxruntime (and checked against torch)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    score = sess.run(None, {"features": x_te})[0][:, 0]
    with torch.no_grad():
        np.testing.assert_allclose(score, model(torch.from_numpy(x_te)).numpy()[:, 0], rtol=1e-5, atol=1e-6)
    pred = (score >= 0.5).astype(np.int64)
    metrics = {
        "test_accuracy": round(float(accuracy_score(y_te, pred)), 4),
        "test_roc_auc": round(float(roc_auc_score(y_te, score)), 4),
        "test_precision_at_0.5": round(float(precision_score(y_te, pred, zero_division=0)), 4),
        "test_recall_at_0.5": round(float(recall_score(y_te, pred)), 4),
        "test_f1_at_0.5": round(float(f1_score(y_te, pred)), 4),
        "test_predicted_fraud_at_0.5": int(pred.sum()),
        "test_fraud_cases": int(y_te.sum()),
        "accuracy_of_always_legit": round(float(1 - y_te.mean()), 4),
        "val_roc_auc": round(float(best[0]), 4),
    }
    print(json.dumps(metrics, indent=1))

    meta = {
        "model": "fraud_mlp.onnx",
        "task": "score card transactions: probability that a transaction is fraud (synthetic data)",
        "input": {"name": "features", "shape": ["N", len(FEATURES)], "dtype": "float32",
                  "scaling": "raw feature values; the graph takes log1p of amount, distance_km and "
                             "amount_ratio and standardizes with the training mean/std itself"},
        "output": {"name": "score", "shape": ["N", 1], "dtype": "float32", "meaning": "P(fraud)"},
        "features": list(FEATURES),
        "feature_descriptions": FEATURES,
        "threshold": 0.5,
        **metrics,
        "fraud_rate": round(float(y.mean()), 4),
        "test_size": int(len(y_te)),
        "train_size": int(len(y_tr)),
        "val_size": int(len(y_va)),
        "split": "train_test_split 70/30 then 15/15, stratified, random_state=seed",
        "data": "synthetic: make_transactions(30000, numpy.random.default_rng(seed)) in the script",
        "epochs": EPOCHS,
        "kept_epoch": best[2],
        "seed": SEED,
        "opset": 17,
        "versions": {"torch": torch.__version__, "sklearn": sklearn.__version__, "numpy": np.__version__},
        "date": datetime.date.today().isoformat(),
        "script": "models/train_fraud.py",
    }
    (OUT / "fraud_mlp.json").write_text(json.dumps(meta, indent=1) + "\n")
    np.savez_compressed(OUT / "fraud_test.npz", features=x_te, labels=y_te)
    print(f"wrote {onnx_path}, fraud_mlp.json, fraud_test.npz ({len(y_te)} transactions)")
    write_digits_test()


def write_digits_test() -> None:
    """The digits CNN's whole held-out split, as models/train_digits_cnn.py makes it (seed 0)."""
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]  # [1797, 1, 8, 8], pixels / 16
    y = digits.target.astype(np.int64)
    _, x_te, _, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    np.savez_compressed(OUT / "digits_test.npz", images=x_te, labels=y_te)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(OUT / "digits_cnn.onnx"), providers=["CPUExecutionProvider"])
    acc = float((sess.run(None, {"image": x_te})[0].argmax(1) == y_te).mean())
    recorded = json.loads((OUT / "digits_cnn.json").read_text())["test_accuracy"]
    print(f"wrote digits_test.npz ({len(y_te)} images); digits_cnn.onnx accuracy on it {acc:.4f} "
          f"(digits_cnn.json records {recorded})")
    assert round(acc, 4) == recorded, "the split differs from the one train_digits_cnn.py used"


if __name__ == "__main__":
    main()
