"""Metrics against values computed by hand."""
import pytest
import torch

from mnistbench.metrics import classification_report, time_to_accuracy


def test_report_matches_hand_computed():
    preds = torch.tensor([0, 1, 1, 2, 2, 2])
    target = torch.tensor([0, 1, 2, 2, 2, 0])
    r = classification_report(preds, target, num_classes=3)
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["confusion_matrix"] == [[1, 0, 1], [0, 1, 0], [0, 1, 2]]
    # class 0: P=1/1, R=1/2 -> F1 2/3; class 1: P=1/2, R=1 -> 2/3; class 2: P=2/3, R=2/3 -> 2/3
    assert [c["precision"] for c in r["per_class"]] == pytest.approx([1.0, 0.5, 2 / 3])
    assert [c["recall"] for c in r["per_class"]] == pytest.approx([0.5, 1.0, 2 / 3])
    assert r["macro_f1"] == pytest.approx(2 / 3)
    assert [c["support"] for c in r["per_class"]] == [2, 1, 3]


def test_macro_f1_differs_from_accuracy_on_imbalance():
    # 9 of class 0 right, the single class-1 sample wrong: accuracy 0.9, F1 = (2*0.9/1.9 + 0) / 2
    preds = torch.zeros(10, dtype=torch.long)
    target = torch.tensor([0] * 9 + [1])
    r = classification_report(preds, target, num_classes=2)
    assert r["accuracy"] == pytest.approx(0.9)
    assert r["macro_f1"] == pytest.approx((2 * 0.9 * 1.0 / 1.9) / 2)


def test_time_to_accuracy_first_crossing_or_none():
    hist = [{"val_accuracy": 0.97, "train_seconds": 1.0}, {"val_accuracy": 0.985, "train_seconds": 2.0},
            {"val_accuracy": 0.992, "train_seconds": 3.0}, {"val_accuracy": 0.991, "train_seconds": 4.0}]
    assert time_to_accuracy(hist) == {"0.98": 2.0, "0.99": 3.0, "0.995": None}
