"""Classification metrics (SPEC §3 stage 4): accuracy, per-class AP, mAP and the confusion matrix.

The classifier's evaluation hook and category merging both score crops with `classification_metrics`;
scikit-learn computes the AP (`average_precision_score`) and the confusion matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix

__all__ = ["classification_metrics", "softmax"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, K) logits, computed stably in float64.

    Example:
        >>> softmax(np.array([[0.0, 0.0], [0.0, np.log(3.0)]])).round(4).tolist()
        [[0.5, 0.5], [0.25, 0.75]]
    """
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def classification_metrics(scores: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, one-vs-rest AP per present class, their mean, and the confusion matrix.

    Args:
        scores: (N, K) class scores (probabilities or logits; argmax is the prediction).
        labels: (N,) true class indices in 0..K-1.
        names: K class names.

    Returns:
        {"acc": float, "map": float (0 with no class present), "ap": {name: AP} for each class with
        at least one sample, "confusion": (K, K) int64 counts (rows true, columns predicted)}.

    Example:
        >>> m = classification_metrics(np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]]), np.array([0, 1, 1]), ["a", "b"])
        >>> round(m["acc"], 4), m["ap"], m["confusion"].tolist()
        (0.6667, {'a': 1.0, 'b': 1.0}, [[1, 0], [1, 1]])
    """
    scores, labels = np.asarray(scores), np.asarray(labels, dtype=np.int64)
    k = len(names)
    if scores.ndim != 2 or scores.shape != (len(labels), k):
        raise ValueError(f"classification_metrics: scores {scores.shape} do not fit {len(labels)} labels x {k} names")
    preds = scores.argmax(axis=1)
    ap = {names[c]: float(average_precision_score(labels == c, scores[:, c])) for c in range(k) if np.any(labels == c)}
    return {
        "acc": float(np.mean(preds == labels)) if len(labels) else 0.0,
        "map": float(np.mean(list(ap.values()))) if ap else 0.0,
        "ap": ap,
        "confusion": confusion_matrix(labels, preds, labels=list(range(k))).astype(np.int64),
    }
