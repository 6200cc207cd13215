"""Mutation check: seed known bugs into the papers' mechanics, one at a time, and show that
the test suite catches each.

Each mutation edits a copy of the package (never this checkout) by exact text
replacement, then runs the tests that guard that mechanism. A mutation is *caught* when
the tests fail; a replacement that no longer matches the source is reported as *stale*
(the code moved: update the mutation), never counted as caught.

Usage::

    python benchmarks/mutation_check.py [--only NAME ...] [--list]

Exit status 0 when every mutation is caught, 1 otherwise; the table goes to stdout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    bug: str
    edits: tuple[tuple[str, str, str], ...]  # (file, old text, new text)
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation(
        "lr-not-applied",
        "the decayed learning rate is recorded in history_ but not given to the optimizer",
        (
            (
                "sklearn_greedy/training/_engine.py",
                'group["lr"] = lr',
                'group["lr"] = self.config.lr',
            ),
        ),
        ("tests/training/test_engine.py", "tests/cnn/test_mechanisms.py"),
    ),
    Mutation(
        "lr-decay-dropped",
        "the estimator does not pass lr_decay to the engine",
        (("sklearn_greedy/cnn/_classifier.py", "lr_decay=self.lr_decay,", "lr_decay=1.0,"),),
        ("tests/cnn/test_mechanisms.py",),
    ),
    Mutation(
        "keep-best-dropped",
        "the estimator passes keep_best=False whatever the parameter says",
        (("sklearn_greedy/cnn/_classifier.py", "keep_best=self.keep_best,", "keep_best=False,"),),
        ("tests/cnn/test_mechanisms.py",),
    ),
    Mutation(
        "keep-best-ignored",
        "the engine never restores the best epoch's parameters",
        (
            (
                "sklearn_greedy/training/_engine.py",
                "self.model.load_state_dict(self._best_state)",
                "pass",
            ),
        ),
        ("tests/training/test_engine.py", "tests/cnn/test_mechanisms.py"),
    ),
    Mutation(
        "head-global-average",
        "the auxiliary head averages globally and tiles the result to 2x2",
        (
            (
                "sklearn_greedy/cnn/_modules.py",
                "self.pool = nn.AdaptiveAvgPool2d(2)",
                "self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Upsample(scale_factor=2))",
            ),
        ),
        ("tests/cnn/test_mechanisms.py",),
    ),
    Mutation(
        "invertible-is-avgpool",
        "the invertible downsampling inside a layer is replaced by average pooling",
        (
            (
                "sklearn_greedy/cnn/_modules.py",
                "super().__init__(PadToEven(), nn.PixelUnshuffle(2))",
                "super().__init__(PadToEven(), nn.AvgPool2d(2), _Repeat4())",
            ),
            (
                "sklearn_greedy/cnn/_modules.py",
                "class InvertibleDownsample(nn.Sequential):",
                "class _Repeat4(nn.Module):\n"
                "    def forward(self, x):\n"
                "        return x.repeat(1, 4, 1, 1)\n\n\n"
                "class InvertibleDownsample(nn.Sequential):",
            ),
        ),
        ("tests/cnn/test_mechanisms.py", "tests/cnn/test_modules.py"),
    ),
    Mutation(
        "frozen-bn-train-mode",
        "a trained layer is left in train mode: the next stages update its BatchNorm statistics",
        (("sklearn_greedy/cnn/_grower.py", "stage.eval().requires_grad_(False)", "stage.train()"),),
        ("tests/cnn/test_mechanisms.py",),
    ),
    Mutation(
        "warm-start-bn-train-mode",
        "a warm-started network is not put back in eval mode",
        (
            (
                "sklearn_greedy/cnn/_network.py",
                "self.model.eval().requires_grad_(False)",
                "self.model.train().requires_grad_(False)",
            ),
        ),
        ("tests/cnn/test_mechanisms.py",),
    ),
    Mutation(
        "ensemble-uniform",
        "the ensemble averages the layers' logits uniformly instead of by 2^j",
        (
            (
                "sklearn_greedy/cnn/_network.py",
                "weights = 2.0 ** torch.arange(1, logits.shape[0] + 1, dtype=logits.dtype)",
                "weights = torch.ones(logits.shape[0], dtype=logits.dtype)",
            ),
        ),
        ("tests/cnn/test_mechanisms.py", "tests/cnn/test_classifier.py"),
    ),
    Mutation(
        "prefix-skips-last-layer",
        "a stage is trained on the input of the previous layer instead of its output",
        (
            (
                "sklearn_greedy/cnn/_network.py",
                "        for layer in self.layers:\n            x = layer(x)\n        return x",
                "        for layer in self.layers[:-1]:\n"
                "            x = layer(x)\n        return x",
            ),
        ),
        ("tests/cnn/test_mechanisms.py",),
    ),
    Mutation(
        "divergence-unchecked",
        "a stage whose weights became NaN or whose loss exploded is returned as fitted",
        (
            (
                "sklearn_greedy/training/_engine.py",
                "        self._check_not_diverged()\n",
                "",
            ),
        ),
        ("tests/training/test_engine.py",),
    ),
    Mutation(
        "trailing-batch-kept",
        "a trailing batch of a few samples is trained on alone (BatchNorm noise)",
        (
            (
                "sklearn_greedy/training/_engine.py",
                "if len(starts) > 1 and n - starts[-1] < batch_size / 2:",
                "if False:",
            ),
        ),
        ("tests/training/test_engine.py",),
    ),
    Mutation(
        "triangular-check-removed",
        "forward substitution accepts an A that is not upper block triangular",
        (
            (
                "sklearn_greedy/implicit/_model.py",
                "if np.any(block[:, : rows.start]) or np.any(",
                "if False and np.any(",
            ),
        ),
        ("tests/implicit/test_sequential.py",),
    ),
    Mutation(
        "fixed-point-not-solved",
        "forward substitution drops the state intercept: its states do not solve x = phi(Ax+Bu+b)",
        (
            (
                "sklearn_greedy/implicit/_model.py",
                "def forward_substitution(",
                "def forward_substitution(*args, state_intercept=None, **kwargs):\n"
                "    return _forward_substitution(*args, **kwargs)\n\n\n"
                "def _forward_substitution(",
            ),
        ),
        ("tests/implicit/test_sequential.py",),
    ),
    Mutation(
        "momentum-not-restarted",
        "the optimizer is not re-created at a learning-rate decay (the reference schedule)",
        (
            (
                "sklearn_greedy/training/_engine.py",
                "        config.restart_on_decay and epoch and lr_at(",
                "        False and lr_at(",
            ),
        ),
        ("tests/training/test_engine.py",),
    ),
    Mutation(
        "alternating-ls-noop",
        "the alternating solver's least-squares step is a no-op: each Adam round starts "
        "from the head it had",
        (
            (
                "sklearn_greedy/implicit/_torch_solvers.py",
                "        C, c = _exact_head(data, W, b, activation, setup.alpha)\n"
                "        with torch.no_grad():",
                "        C, c = module.head()\n        with torch.no_grad():",
            ),
        ),
        ("tests/implicit/test_sequential.py",),
    ),
    Mutation(
        "decoupled-gradient-leaks",
        "decoupled training passes layer j's output on undetached: the losses above send "
        "their gradients into the layers below",
        (("sklearn_greedy/training/_decoupled.py", "xb = h.detach()", "xb = h"),),
        ("tests/training/test_decoupled.py",),
    ),
    Mutation(
        "decoupled-delay-never-freezes",
        "with decoupled_delay, a layer keeps training after its max_epochs instead of "
        "running frozen under the layers still training",
        (
            (
                "sklearn_greedy/training/_decoupled.py",
                "        return range(active[0], active[-1] + 1)",
                "        return range(0, active[-1] + 1)",
            ),
        ),
        ("tests/training/test_decoupled.py",),
    ),
    # issue 27: the newer mechanisms, each pinned by a test of its own
    Mutation(
        "ddp-bn-summed",
        "data-parallel BatchNorm statistics are summed across ranks, not averaged",
        (("sklearn_greedy/training/_distributed.py", "buffer.div_(self.world_size)", "pass"),),
        ("tests/training/test_distributed.py",),
    ),
    Mutation(
        "taylor-unweighted",
        "the Taylor pruning criterion ignores the sample weights the training loss uses",
        (
            (
                "sklearn_greedy/cnn/_compression.py",
                "loss = loss * sample_weight[start : start + batch_size]",
                "loss = loss",
            ),
        ),
        ("tests/cnn/test_compression.py",),
    ),
    Mutation(
        "pruned-bn-first-channels",
        "a pruned BatchNorm keeps the running statistics of its first channels, not the kept",
        (
            (
                "sklearn_greedy/cnn/_compression.py",
                "setattr(bn, name, getattr(bn, name)[idx].clone())",
                "setattr(bn, name, getattr(bn, name)[: idx.numel()].clone())",
            ),
        ),
        ("tests/cnn/test_compression.py",),
    ),
    Mutation(
        "top5-is-top4",
        "the top-k metric counts one class fewer than k",
        (
            (
                "sklearn_greedy/training/_engine.py",
                "top = output.topk(min(k, output.shape[1]), dim=1).indices",
                "top = output.topk(min(k - 1, output.shape[1]), dim=1).indices",
            ),
        ),
        ("tests/training/test_engine.py",),
    ),
    Mutation(
        "well-posed-at-one",
        "a lambda_PF(|A|) of exactly 1 is accepted as well-posed",
        (("sklearn_greedy/implicit/_model.py", "if not value < 1.0:", "if not value <= 1.0:"),),
        ("tests/implicit/test_sequential.py",),
    ),
    Mutation(
        "aux-hidden-linear",
        "the auxiliary classifier's hidden convolutions have no nonlinearity (Eq. 2)",
        (
            (
                "sklearn_greedy/cnn/_modules.py",
                "            layers.append(nn.ReLU())",
                "            layers.append(nn.Identity())",
            ),
        ),
        ("tests/cnn/test_modules.py",),
    ),
    Mutation(
        "batches-unshuffled",
        "training batches are served in the data's order",
        (
            (
                "sklearn_greedy/training/_engine.py",
                "perm = torch.randperm(n, generator=generator, device=device)",
                "perm = torch.arange(n, device=device)",
            ),
        ),
        ("tests/cnn/test_modules.py",),
    ),
    Mutation(
        "decoupled-clock-unshifted",
        "a delayed layer's schedule runs on the global clock, not its own",
        (("sklearn_greedy/training/_decoupled.py", "own = epoch - self.starts[j]", "own = epoch"),),
        ("tests/training/test_decoupled.py",),
    ),
    Mutation(
        "imagenet-final-aux-halved",
        "the ImageNet k=2, 3 preset's final auxiliary width is 1024, not Table 4's 2048",
        (("sklearn_greedy/cnn/_presets.py", "final_aux_width=2048", "final_aux_width=1024"),),
        ("tests/cnn/test_presets.py",),
    ),
    Mutation(
        "checkpoint-checksum-skipped",
        "a checkpoint file is loaded without checking its checksum",
        (
            (
                "sklearn_greedy/training/_checkpoint.py",
                'if hashlib.sha256(header + b"\\n" + body).hexdigest().encode() != digest:',
                "if False:",
            ),
        ),
        ("tests/training/test_checkpoint.py",),
    ),
    Mutation(
        "channels-last-not-transposed",
        "channels-last images are detected but not transposed",
        (
            (
                "sklearn_greedy/_validation.py",
                "X = np.ascontiguousarray(X.transpose(0, 3, 1, 2))",
                "X = np.ascontiguousarray(X)",
            ),
        ),
        ("tests/test_hostile_estimators.py",),
    ),
    # issue 27, continued: the implicit models' choice of blocks, screening and
    # keep-if-better, and what a streamed fit trains on
    Mutation(
        "gcv-block-dof-dropped",
        "the generalised cross-validation counts a block's states but not its hidden "
        "weights' degrees of freedom",
        (
            (
                "sklearn_greedy/implicit/_sequential.py",
                "dof += DOF_FACTOR * (W.shape[0] + growth.dofs[i])",
                "dof += DOF_FACTOR * W.shape[0]",
            ),
        ),
        ("tests/implicit/test_mechanisms.py",),
    ),
    Mutation(
        "gcv-rows-not-weights",
        "under sample weights the generalised cross-validation counts rows, not the weights",
        (
            (
                "sklearn_greedy/implicit/_sequential.py",
                "n = T_tr.shape[0] if w_tr is None else float(w_tr.sum())",
                "n = T_tr.shape[0]",
            ),
        ),
        ("tests/implicit/test_mechanisms.py",),
    ),
    Mutation(
        "blocks-by-training-loss",
        "with validation data the blocks used are chosen by the training loss",
        (
            (
                "sklearn_greedy/implicit/_sequential.py",
                "losses = [self._numpy_loss(growth.output(i, val=True), T_val) for i in range(k)]",
                "losses = [self._numpy_loss(growth.output(i), T_tr, w_tr) for i in range(k)]",
            ),
        ),
        ("tests/implicit/test_mechanisms.py",),
    ),
    Mutation(
        "screening-not-deflated",
        "candidate screening does not deflate after a pick: the next pick copies it",
        (
            (
                "sklearn_greedy/implicit/_solvers.py",
                "        corr -= np.outer(proj, h @ R)\n        norms -= proj**2\n",
                "",
            ),
        ),
        ("tests/implicit/test_mechanisms.py",),
    ),
    Mutation(
        "screening-ignores-states",
        "candidate screening does not deflate against the current states",
        (
            (
                "sklearn_greedy/implicit/_solvers.py",
                "        corr -= QH.T @ (basis.T @ R)\n"
                '        norms -= np.einsum("ij,ij->j", QH, QH)\n',
                "",
            ),
        ),
        ("tests/implicit/test_mechanisms.py",),
    ),
    Mutation(
        "keep-if-better-unweighted",
        "a block is kept or rejected on the unweighted training loss",
        (("sklearn_greedy/implicit/_sequential.py", "w = data.weights", "w = None"),),
        ("tests/implicit/test_mechanisms.py",),
    ),
    Mutation(
        "memmap-rows-in-file-order",
        "a memmap batch is served in file order, not in the order of its indices",
        (
            (
                "sklearn_greedy/training/_streaming.py",
                "batch[torch.from_numpy(order)] = rows",
                "batch[:] = rows",
            ),
        ),
        ("tests/training/test_streaming_mechanisms.py",),
    ),
    Mutation(
        "memmap-subset-unmapped",
        "a memmap's training subset reads the file's first rows, not the subset's",
        (("sklearn_greedy/training/_streaming.py", "idx = self.indices[idx]", "pass"),),
        ("tests/training/test_streaming_mechanisms.py",),
    ),
    Mutation(
        "dataset-batch-sorted",
        "a data set's batch is read in sorted index order, its labels in the batch's",
        (
            (
                "sklearn_greedy/training/_streaming.py",
                "batches = [self.indices[_host_indices(idx)].tolist() for idx in index_batches]",
                "batches = [sorted(self.indices[_host_indices(idx)].tolist()) "
                "for idx in index_batches]",
            ),
        ),
        ("tests/training/test_streaming_mechanisms.py",),
    ),
    Mutation(
        "stream-drops-last-batch",
        "a streamed epoch drops its trailing batch (as a DataLoader with drop_last=True)",
        (
            (
                "sklearn_greedy/training/_engine.py",
                "return zip(index_batches, X.iter_batches(index_batches))",
                "return zip(index_batches[:-1], X.iter_batches(index_batches[:-1]))",
            ),
        ),
        ("tests/training/test_streaming_mechanisms.py",),
    ),
    Mutation(
        "augment-cached-by-layers",
        "with augmentation, the next layer still trains on kept (unaugmented) features",
        (
            (
                "sklearn_greedy/cnn/_grower.py",
                "if self.augment is not None or where is None:",
                "if where is None:",
            ),
        ),
        ("tests/training/test_streaming_mechanisms.py",),
    ),
    Mutation(
        "augment-cached-by-engine",
        "with augmentation, the engine caches the prefix's output and augments the features",
        (
            (
                "sklearn_greedy/training/_engine.py",
                "            if self.augment is None:\n                X = cache_outputs(",
                "            if True:\n                X = cache_outputs(",
            ),
        ),
        ("tests/training/test_streaming_mechanisms.py",),
    ),
    Mutation(
        "alg2-step-12-moves-head",
        "Algorithm 2's step (12) trains C_i with the block's weights (only C_1..C_{i-1} held)",
        (
            (
                "sklearn_greedy/implicit/_torch_solvers.py",
                "heads = (module.head_prev, module.head_new)",
                "heads = (module.head_prev,)",
            ),
        ),
        ("tests/implicit/test_presets.py",),
    ),
    Mutation(
        "paper-head-refitted",
        "refit_head=False is ignored: the head after Adam is always refitted exactly",
        (
            (
                "sklearn_greedy/implicit/_torch_solvers.py",
                "if setup.squared_loss and setup.refit_head:",
                "if setup.squared_loss:",
            ),
        ),
        ("tests/implicit/test_presets.py",),
    ),
    Mutation(
        "paper-best-epoch-kept",
        "n_iter_no_change=None runs every epoch but keeps the best training epoch, not the last",
        (
            (
                "sklearn_greedy/implicit/_sequential.py",
                'stopping["keep_best"] = False',
                'stopping["keep_best"] = True',
            ),
        ),
        ("tests/implicit/test_presets.py",),
    ),
    Mutation(
        "constant-lr-stepped",
        "lr_schedule='constant' still drops the step tenfold after 70% of the epochs",
        (
            (
                "sklearn_greedy/implicit/_sequential.py",
                'if self.lr_schedule == "constant":',
                "if False:",
            ),
        ),
        ("tests/implicit/test_presets.py",),
    ),
)


def _apply(copy_root: Path, mutation: Mutation) -> bool:
    """Edit the copy; False when a replacement does not match exactly once."""
    for file, old, new in mutation.edits:
        path = copy_root / file
        text = path.read_text()
        if text.count(old) != 1:
            return False
        path.write_text(text.replace(old, new))
    return True


def _run(mutation: Mutation, python: str) -> tuple[str, float]:
    with tempfile.TemporaryDirectory(prefix="mutation-") as tmp:
        copy_root = Path(tmp)
        for name in ("sklearn_greedy", "tests", "benchmarks"):
            shutil.copytree(
                ROOT / name, copy_root / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        shutil.copy(ROOT / "pyproject.toml", copy_root / "pyproject.toml")
        if not _apply(copy_root, mutation):
            return "stale", 0.0
        env = dict(os.environ, PYTHONPATH=str(copy_root), PYTHONDONTWRITEBYTECODE="1")
        start = time.perf_counter()
        proc = subprocess.run(
            [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutation.tests],
            cwd=copy_root, env=env, capture_output=True, text=True,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        # exit 1: tests failed (caught); 0: all passed (survived); anything else: broken run
        return {0: "SURVIVED", 1: "caught"}.get(
            proc.returncode, f"error {proc.returncode}"
        ), seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="names of the mutations to run")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = parser.parse_args(argv)
    selected = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list:
        for m in selected:
            print(f"{m.name:<26} {m.bug}")
        return 0
    print(f"{'mutation':<26} {'result':<9} {'s':>6}  bug")
    outcomes = []
    for mutation in selected:
        outcome, seconds = _run(mutation, sys.executable)
        outcomes.append(outcome)
        print(f"{mutation.name:<26} {outcome:<9} {seconds:>6.1f}  {mutation.bug}", flush=True)
    caught = outcomes.count("caught")
    print(f"{caught} of {len(outcomes)} seeded bugs caught")
    return 0 if caught == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
