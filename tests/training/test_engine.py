"""The stage training engine shared by the estimators."""

import pytest
import torch
import torch.nn.functional as F

from sklearn_greedy.training._engine import (
    StageData,
    StageTrainer,
    TrainingConfig,
    TrainingDivergedError,
    batch_slices,
    train_stage,
)


def _data(n=96, seed=0, **kwargs):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=gen)
    y = (X[:, 0] + X[:, 1] > 0).long()
    return StageData(X, y, **kwargs)


def _config(**kwargs):
    return TrainingConfig(**{"max_epochs": 5, "batch_size": 16, "lr": 0.1, **kwargs})


def _train(model, data, **kwargs):
    kwargs.setdefault("config", _config())
    return train_stage(
        model, data, loss_fn=F.cross_entropy, generator=torch.Generator().manual_seed(0), **kwargs
    )


def test_loss_decreases_and_history_is_complete():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    result = _train(model, _data(), config=_config(max_epochs=10))
    losses = [r["train_loss"] for r in result.history]
    assert len(losses) == 10 and losses[-1] < losses[0]
    assert result.loss_curve == losses and result.n_iter == 10
    assert result.history[-1]["train_score"] > 0.8
    assert not model.training


def test_prefix_is_cached_without_augmentation():
    calls = []

    def prefix(batch):
        calls.append(batch.shape[0])
        return batch * 2

    data = _data()
    X_before = data.X.clone()
    _train(torch.nn.Linear(4, 2), data, config=_config(eval_batch_size=1000), prefix=prefix)
    assert calls == [96]  # once, over the whole data set
    torch.testing.assert_close(data.X, X_before, rtol=0, atol=0)  # caller's data untouched


def test_prefix_runs_per_batch_with_augmentation():
    calls = []

    def prefix(batch):
        calls.append(batch.shape[0])
        return batch

    _train(
        torch.nn.Linear(4, 2),
        _data(),
        config=_config(max_epochs=2),
        prefix=prefix,
        augment=lambda b, g: b + 0.01 * torch.randn(b.shape, generator=g),
    )
    # every training batch, then one check of the kept model on the data
    assert calls == [16] * (2 * 6) + [96]


def test_keep_best_restores_the_best_epoch():
    def run(max_epochs, keep_best):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        # a learning rate this large makes the loss oscillate: the last epoch is not the best
        config = _config(
            max_epochs=max_epochs, lr=50.0, momentum=0.0, n_iter_no_change=100, keep_best=keep_best
        )
        return model, _train(model, _data(), config=config)

    model, result = run(8, keep_best=True)
    losses = [r["train_loss"] for r in result.history]
    assert result.best_epoch == 1 + losses.index(min(losses))
    assert result.best_epoch < len(losses)
    # the same run stopped at the best epoch ends with the parameters that were kept
    truncated, _ = run(result.best_epoch, keep_best=False)
    for kept, expected in zip(model.parameters(), truncated.parameters()):
        torch.testing.assert_close(kept, expected, rtol=0, atol=0)


def test_early_stopping_on_validation():
    full = _data()
    data = StageData(full.X[:64], full.y[:64], full.X[64:], full.y[64:])
    result = _train(
        torch.nn.Linear(4, 2), data, config=_config(max_epochs=50, n_iter_no_change=2, tol=1.0)
    )
    assert result.stopped_early
    assert len(result.history) == 3
    assert all(r["valid_score"] is not None for r in result.history)


def test_step_schedule_is_applied_to_the_optimizer(monkeypatch):
    """The learning rate the optimizer uses, not only the one recorded, follows the schedule."""
    seen = []
    step = StageTrainer.train_step

    def spy(self, idx, xb):
        seen.append(self.optimizer.param_groups[0]["lr"])
        return step(self, idx, xb)

    monkeypatch.setattr(StageTrainer, "train_step", spy)
    result = _train(torch.nn.Linear(4, 2), _data(), config=_config(lr=1.0, lr_decay=0.5, lr_step=2))
    assert [r["lr"] for r in result.history] == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert seen == [lr for lr in [1.0, 1.0, 0.5, 0.5, 0.25] for _ in range(6)]


def test_restart_on_decay_rebuilds_the_optimizer(monkeypatch):
    optimizers = []
    fit = StageTrainer.run_epoch

    def spy(self, epoch):
        record = fit(self, epoch)
        optimizers.append(id(self.optimizer))
        return record

    monkeypatch.setattr(StageTrainer, "run_epoch", spy)
    config = _config(max_epochs=4, lr_decay=0.5, lr_step=2, restart_on_decay=True)
    _train(torch.nn.Linear(4, 2), _data(), config=config)
    assert optimizers[0] == optimizers[1] != optimizers[2] == optimizers[3]


def test_sample_weights_weigh_the_loss():
    data = _data()
    weights = torch.zeros(96)
    weights[:48] = 1.0
    torch.manual_seed(0)
    weighted = torch.nn.Linear(4, 2)
    torch.manual_seed(0)
    subset = torch.nn.Linear(4, 2)
    gen = torch.Generator().manual_seed(0)
    # a full batch: the weighted run sees all rows but only the first half counts
    config = _config(batch_size=96, max_epochs=3, momentum=0.0)
    train_stage(weighted, StageData(data.X, data.y, sample_weight=weights),
                loss_fn=F.cross_entropy, config=config, generator=gen)  # fmt: skip
    train_stage(subset, StageData(data.X[:48], data.y[:48]), loss_fn=F.cross_entropy,
                config=config, generator=torch.Generator().manual_seed(0))  # fmt: skip
    for a, b in zip(weighted.parameters(), subset.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adam_trains_and_nan_input_is_reported():
    result = _train(torch.nn.Linear(4, 2), _data(), config=_config(optimizer="adam", lr=0.01))
    assert result.history[-1]["train_score"] > 0.7
    bad = _data()
    bad.X[0, 0] = float("nan")
    with pytest.raises(TrainingDivergedError, match="diverged at epoch 1"):
        _train(torch.nn.Linear(4, 2), bad)


@pytest.mark.parametrize("lr", [1e30, 1e6])
def test_divergence_never_returns_a_broken_model(lr):
    """A step can make the weights NaN after a finite loss, or blow the loss up a
    millionfold while staying finite: both are errors, not a fitted model."""
    data = StageData(torch.randn(16, 4) * 100, torch.arange(16) % 2)
    with pytest.raises(ValueError, match="diverged.*Lower lr"):
        _train(torch.nn.Linear(4, 2), data, config=_config(lr=lr, max_epochs=3, batch_size=16))


def test_small_trailing_batch_is_merged():
    def sizes(n):
        gen = torch.Generator().manual_seed(0)
        batches = list(batch_slices(n, 16, gen, torch.device("cpu")))
        assert torch.equal(torch.sort(torch.cat(batches)).values, torch.arange(n))
        return [len(b) for b in batches]

    assert sizes(33) == [16, 17]
    assert sizes(39) == [16, 23]
    assert sizes(40) == [16, 16, 8]
    assert sizes(5) == [5]


def test_top_5_counts_a_class_ranked_fifth_and_not_one_ranked_sixth():
    from sklearn_greedy.training._engine import top_k_sum

    # rows ranked 0 > 1 > ... > 9; the target is ranked 1st, 4th, 5th, 6th and 10th
    scores = torch.arange(10.0, 0.0, -1.0).repeat(5, 1)
    target = torch.tensor([0, 3, 4, 5, 9])
    # an independent count: is the target among the 5 largest scores?
    ranks = (scores > scores.gather(1, target[:, None])).sum(1)
    assert ranks.tolist() == [0, 3, 4, 5, 9]
    assert int(top_k_sum(scores, target, 5)) == int((ranks < 5).sum()) == 3
    assert int(top_k_sum(scores, target, 4)) == 2  # top-4 and top-5 differ here
