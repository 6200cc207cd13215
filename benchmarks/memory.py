"""Training memory of greedy vs end-to-end training of the same network (Sec. 4.3).

For the paper's k=1 CIFAR-10 network (J=5, downsampling at j=2,3, no BN) at batch 256,
it reports the peak memory of one training step (forward, backward, SGD step with
momentum) of each greedy stage and of the whole network trained end to end, resident
data excluded; then the largest first-layer width M each way can train within a memory
budget ("larger models than end-to-end on the same hardware").

On CUDA the figures are measured (``torch.cuda.max_memory_allocated`` around one step,
minus what was allocated before it). Elsewhere they are counted on torch's meta device,
which computes shapes without arithmetic: parameters, gradients and momentum of the
trainable part, plus every activation that the trainable part's modules produce (kept
for backward), plus the frozen prefix's output; an estimate, labelled as such.

Usage::

    python benchmarks/memory.py [--batch-size 256] [--budget-gib 16] [--device auto]
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from _common import describe, pick_device

if TYPE_CHECKING:
    import torch
    from torch import nn

# torch and the package are imported where they are used, so that --help answers at once


def build(width: int, n_classes: int = 10):
    from sklearn_greedy import cifar10_params
    from sklearn_greedy.nn import AuxiliaryClassifier, GreedyLayer, layer_plan

    params = cifar10_params(1)
    plan = layer_plan(3, params["n_layers"], width, "invertible", params["downsample_at"])
    layers = [GreedyLayer(s.in_channels, s.out_channels, s.downsample, False) for s in plan]
    heads = [AuxiliaryClassifier(s.out_channels, n_classes, 1, s.aux_width, False) for s in plan]
    return layers, heads


def counted_bytes(frozen: list, trainable: nn.Module, x: torch.Tensor) -> int:
    """Meta-device count: trainable state x3 (weights, grads, momentum) + activations."""
    import torch

    state = 3 * sum(p.numel() * p.element_size() for p in trainable.parameters())
    with torch.no_grad():
        for layer in frozen:
            x = layer(x)
    # tensor -> bytes, holding references so that no id is reused while counting
    outputs = {id(x): (x, x.numel() * x.element_size())}

    def keep(module, args, out):
        # every module's output (a GreedyLayer's is its ReLU's), by tensor identity: an
        # Identity's or a Sequential's output is a tensor already counted
        outputs[id(out)] = (out, out.numel() * out.element_size())

    handles = [m.register_forward_hook(keep) for m in trainable.modules()]
    try:
        trainable(x)
    finally:
        for h in handles:
            h.remove()
    return state + sum(size for _, size in outputs.values())


def measured_bytes(frozen: list, trainable: nn.Module, x: torch.Tensor) -> int:
    """CUDA: peak allocated during one SGD step, minus what was there before."""
    import torch
    import torch.nn.functional as F

    device = x.device
    opt = torch.optim.SGD(trainable.parameters(), lr=0.01, momentum=0.9)
    y = torch.zeros(x.shape[0], dtype=torch.long, device=device)
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(2):  # the second step holds the momentum buffers
        with torch.no_grad():
            h = x
            for layer in frozen:
                h = layer(h)
        loss = F.cross_entropy(trainable(h), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def peaks(width: int, batch_size: int, device: torch.device) -> tuple[int, int]:
    """(greedy peak over stages, end-to-end peak) in bytes."""
    import torch
    from torch import nn

    meta = device.type != "cuda"
    where = torch.device("meta") if meta else device
    measure = counted_bytes if meta else measured_bytes
    with where:  # built in place: no CPU initialisation of multi-GB weights
        layers, heads = build(width)
    x = torch.empty(batch_size, 3, 32, 32, device=where)
    greedy = max(
        measure(layers[:j], nn.Sequential(layers[j], heads[j]), x) for j in range(len(layers))
    )
    end_to_end = measure([], nn.Sequential(*layers, heads[-1]), x)
    if not meta:
        torch.cuda.empty_cache()
    return greedy, end_to_end


def largest_width(budget: int, batch_size: int, device, which: int, hi: int = 4096) -> int:
    """Largest M (a multiple of 8) whose peak fits the budget, by bisection."""
    import torch

    lo = 0
    while hi - lo > 8:
        mid = (lo + hi) // 16 * 8
        try:
            fits = peaks(mid, batch_size, device)[which] <= budget
        except torch.OutOfMemoryError:
            fits = False
        lo, hi = (mid, hi) if fits else (lo, mid)
    return lo


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--batch-size", type=int, default=256, help="images of a training step (default 256)"
    )
    parser.add_argument("--width", type=int, default=256, help="M of the k=1 network (default 256)")
    parser.add_argument(
        "--budget-gib", type=float, default=16.0,
        help="memory budget of the largest-width search, in GiB (default 16)",
    )  # fmt: skip
    parser.add_argument(
        "--device", default="auto",
        help="torch device; auto: CUDA when present, else counted on the meta device",
    )  # fmt: skip
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    how = "measured on CUDA" if device.type == "cuda" else "counted on the meta device"
    print(describe(device))
    print(f"k=1 CIFAR-10 network, batch {args.batch_size}, memory {how}")
    greedy, e2e = peaks(args.width, args.batch_size, device)
    print(f"{'M':>6} {'greedy peak MiB':>16} {'end-to-end MiB':>15} {'ratio':>7}")
    print(f"{args.width:>6} {greedy / 2**20:>16.0f} {e2e / 2**20:>15.0f} {e2e / greedy:>6.2f}x")
    budget = int(args.budget_gib * 2**30)
    widths = [largest_width(budget, args.batch_size, device, which) for which in (0, 1)]
    print(f"largest M within {args.budget_gib:g} GiB: greedy {widths[0]}, end-to-end {widths[1]}")


if __name__ == "__main__":
    main()
