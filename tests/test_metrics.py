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


@pytest.mark.parametrize("num_classes, seed", [(10, 0), (11, 1), (3, 2)])
def test_report_agrees_with_torchmetrics(num_classes, seed):
    """The same numbers as torchmetrics' multiclass metrics, including classes absent from the targets (the
    detector's "none" column) or never predicted. Tolerance: both are ratios of counts below 2^24, computed in
    float64 here and float32 there: one float32 rounding each, so 1e-6 relative."""
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_confusion_matrix,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, num_classes - 1, (5000,), generator=g)  # the last class never a target
    preds = torch.where(torch.rand(5000, generator=g) < 0.8, target, torch.randint(0, num_classes, (5000,),
                                                                                  generator=g))
    preds[preds == 1] = 2  # class 1 never predicted
    r = classification_report(preds, target, num_classes=num_classes)
    kw = {"num_classes": num_classes, "average": None, "zero_division": 0}
    assert r["confusion_matrix"] == multiclass_confusion_matrix(preds, target, num_classes=num_classes).tolist()
    for key, fn in (("precision", multiclass_precision), ("recall", multiclass_recall), ("f1", multiclass_f1_score)):
        assert [c[key] for c in r["per_class"]] == pytest.approx(fn(preds, target, **kw).tolist(), rel=1e-6)
    assert r["accuracy"] == pytest.approx(float(multiclass_accuracy(preds, target, num_classes=num_classes,
                                                                    average="micro")), rel=1e-6)
    assert r["macro_f1"] == pytest.approx(float(multiclass_f1_score(preds, target, num_classes=num_classes,
                                                                    average="macro", zero_division=0)), rel=1e-6)
