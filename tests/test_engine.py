"""The stage training engine shared by the estimators."""

import pytest
import torch
import torch.nn.functional as F

from sklearn_greedy._engine import TrainingConfig, _batches, train_stage


def _data(n=96, seed=0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=gen)
    y = (X[:, 0] + X[:, 1] > 0).long()
    return X, y


def _config(**kwargs):
    return TrainingConfig(**{"max_epochs": 5, "batch_size": 16, "lr": 0.1, **kwargs})


def test_loss_decreases_and_history_is_complete():
    X, y = _data()
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    result = train_stage(
        model,
        X,
        y,
        loss_fn=F.cross_entropy,
        config=_config(max_epochs=10),
        generator=torch.Generator().manual_seed(0),
    )
    losses = [r["train_loss"] for r in result.history]
    assert len(losses) == 10 and losses[-1] < losses[0]
    assert result.history[-1]["train_score"] > 0.8
    assert not model.training


def test_prefix_is_cached_without_augmentation():
    X, y = _data()
    calls = []

    def prefix(batch):
        calls.append(batch.shape[0])
        return batch * 2

    train_stage(
        torch.nn.Linear(4, 2),
        X,
        y,
        loss_fn=F.cross_entropy,
        config=_config(),
        generator=torch.Generator().manual_seed(0),
        prefix=prefix,
        eval_batch_size=1000,
    )
    assert calls == [96]  # once, over the whole data set


def test_prefix_runs_per_batch_with_augmentation():
    X, y = _data()
    calls = []

    def prefix(batch):
        calls.append(batch.shape[0])
        return batch

    train_stage(
        torch.nn.Linear(4, 2),
        X,
        y,
        loss_fn=F.cross_entropy,
        config=_config(max_epochs=2),
        generator=torch.Generator().manual_seed(0),
        prefix=prefix,
        augment=lambda b, g: b + 0.01 * torch.randn(b.shape, generator=g),
    )
    assert len(calls) == 2 * 6 and set(calls) == {16}


def test_keep_best_restores_the_best_epoch():
    X, y = _data()

    def run(max_epochs, keep_best):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        # a learning rate this large makes the loss oscillate: the last epoch is not the best
        config = _config(
            max_epochs=max_epochs, lr=50.0, momentum=0.0, n_iter_no_change=100, keep_best=keep_best
        )
        result = train_stage(
            model,
            X,
            y,
            loss_fn=F.cross_entropy,
            config=config,
            generator=torch.Generator().manual_seed(0),
        )
        return model, result

    model, result = run(8, keep_best=True)
    losses = [r["train_loss"] for r in result.history]
    assert result.best_epoch == 1 + losses.index(min(losses))
    assert result.best_epoch < len(losses)
    # the same run stopped at the best epoch ends with the parameters that were kept
    truncated, _ = run(result.best_epoch, keep_best=False)
    for kept, expected in zip(model.parameters(), truncated.parameters()):
        torch.testing.assert_close(kept, expected, rtol=0, atol=0)


def test_early_stopping_on_validation():
    X, y = _data()
    result = train_stage(
        torch.nn.Linear(4, 2),
        X[:64],
        y[:64],
        loss_fn=F.cross_entropy,
        config=_config(max_epochs=50, n_iter_no_change=2, tol=1.0),
        generator=torch.Generator().manual_seed(0),
        X_val=X[64:],
        y_val=y[64:],
    )
    assert result.stopped_early
    assert len(result.history) == 3
    assert all(r["valid_score"] is not None for r in result.history)


def test_step_schedule():
    X, y = _data()
    result = train_stage(
        torch.nn.Linear(4, 2),
        X,
        y,
        loss_fn=F.cross_entropy,
        config=_config(max_epochs=5, lr=1.0, lr_decay=0.5, lr_step=2),
        generator=torch.Generator().manual_seed(0),
    )
    assert [r["lr"] for r in result.history] == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_adam_and_diverging_loss_is_reported():
    X, y = _data()
    train_stage(
        torch.nn.Linear(4, 2),
        X,
        y,
        loss_fn=F.cross_entropy,
        config=_config(optimizer="adam", lr=0.01),
        generator=torch.Generator().manual_seed(0),
    )
    X_bad = X.clone()
    X_bad[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="training loss became nan"):
        train_stage(
            torch.nn.Linear(4, 2),
            X_bad,
            y,
            loss_fn=F.cross_entropy,
            config=_config(),
            generator=torch.Generator().manual_seed(0),
        )


def test_small_trailing_batch_is_merged():
    def sizes(n):
        gen = torch.Generator().manual_seed(0)
        batches = list(_batches(n, 16, gen, torch.device("cpu")))
        assert torch.equal(torch.sort(torch.cat(batches)).values, torch.arange(n))
        return [len(b) for b in batches]

    assert sizes(33) == [16, 17]
    assert sizes(39) == [16, 23]
    assert sizes(40) == [16, 16, 8]
    assert sizes(5) == [5]
