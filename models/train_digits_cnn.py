"""Train the demo model bundled with minirt: a small CNN on scikit-learn's 8x8 digits.

Run from the repository root (needs torch==2.13.0 and scikit-learn, NOT minirt deps):

    python models/train_digits_cnn.py

Writes:
  minirt/data/digits_cnn.onnx    the trained model, opset 17, input "image" [N,1,8,8] float32
                                 (pixels scaled to 0..1), output "logits" [N,10]
  minirt/data/digits_cnn.json    metadata: test accuracy, class names, scaling, seed, versions, date
  minirt/data/digits_sample.npz  a few test images and labels, so the demo needs no sklearn
"""
from __future__ import annotations

import datetime
import json
import pathlib

import numpy as np
import sklearn
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

SEED = 0
EPOCHS = 30
BATCH = 64
PIXEL_MAX = 16.0  # load_digits pixels are integers 0..16; the model sees x / 16
OUT = pathlib.Path(__file__).resolve().parent.parent / "minirt" / "data"


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),   # [N,1,8,8] -> [N,8,8,8]
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),  # -> [N,16,8,8]
            nn.ReLU(),
            nn.MaxPool2d(2),                 # -> [N,16,4,4]
            nn.Flatten(),                    # -> [N,256]
        )
        self.classifier = nn.Linear(16 * 4 * 4, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(image))


def main() -> None:
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.set_num_threads(2)

    digits = load_digits()
    x = (digits.images.astype(np.float32) / PIXEL_MAX)[:, None, :, :]  # [1797,1,8,8]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=SEED, stratify=y)

    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), BATCH):
            idx = perm[i : i + BATCH]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if epoch % 5 == 4 or epoch == EPOCHS - 1:
            print(f"epoch {epoch + 1:2d}  train loss {total / len(xt):.4f}")

    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_te)).argmax(1).numpy()
    acc = float((pred == y_te).mean())
    print(f"test accuracy {acc:.4f} on {len(y_te)} images")

    OUT.mkdir(parents=True, exist_ok=True)
    onnx_path = OUT / "digits_cnn.onnx"
    torch.onnx.export(
        model,
        (torch.from_numpy(x_te[:1]),),
        str(onnx_path),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )

    meta = {
        "model": "digits_cnn.onnx",
        "task": "classify 8x8 grayscale handwritten digits (sklearn.datasets.load_digits)",
        "input": {"name": "image", "shape": ["N", 1, 8, 8], "dtype": "float32",
                  "scaling": f"pixel / {PIXEL_MAX:g} (raw pixels are integers 0..16, model sees 0..1)"},
        "output": {"name": "logits", "shape": ["N", 10], "dtype": "float32"},
        "class_names": [str(i) for i in range(10)],
        "test_accuracy": round(acc, 4),
        "test_size": int(len(y_te)),
        "train_size": int(len(y_tr)),
        "split": "sklearn train_test_split(test_size=0.25, stratify=y, random_state=seed)",
        "epochs": EPOCHS,
        "seed": SEED,
        "opset": 17,
        "versions": {"torch": torch.__version__, "sklearn": sklearn.__version__,
                     "numpy": np.__version__},
        "date": datetime.date.today().isoformat(),
        "script": "models/train_digits_cnn.py",
    }
    (OUT / "digits_cnn.json").write_text(json.dumps(meta, indent=2) + "\n")

    # Two test images of each class, in a fixed order.
    rng = np.random.default_rng(SEED)
    pick = np.concatenate([rng.choice(np.flatnonzero(y_te == c), 2, replace=False) for c in range(10)])
    np.savez_compressed(OUT / "digits_sample.npz", images=x_te[pick], labels=y_te[pick])
    print(f"wrote {onnx_path}, digits_cnn.json, digits_sample.npz ({len(pick)} samples)")


if __name__ == "__main__":
    main()
