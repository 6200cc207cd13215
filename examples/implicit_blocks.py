"""A sequential implicit model, block by block
===========================================

A ``SequentialImplicitRegressor`` fitted block by block on the 1-D interpolation task of
Gautam et al. (Sec. V-A), with the fit of the first blocks drawn over the data and each
block's training curve.

The target is ``5 cos(pi u) exp(-|u| / 2)`` on ``[-5, 5]`` with noise. Each block adds
states to the implicit model ``x = phi(A x + B u), y = C x + D u`` (``A`` strictly upper
block triangular) and is then frozen; ``staged_predict`` gives the model's prediction after
each block, and the end-to-end implicit baseline is fitted beside it for comparison.

Usage::

    python examples/implicit_blocks.py [--n-blocks 10] [--output blocks.png]
"""

from __future__ import annotations

import argparse


def main(argv=None):
    # the paragraph under the title (sphinx-gallery runs the script with an empty __doc__)
    parser = argparse.ArgumentParser(description=(__doc__ or "\n\n").split("\n\n")[1])
    parser.add_argument("--n-blocks", type=int, default=10, help="blocks of states (default 10)")
    parser.add_argument(
        "--block-size", type=int, default=3, help="states in each block (default 3)"
    )
    parser.add_argument("--output", help="where to save the figure (default: not saved)")
    args = parser.parse_args(argv)
    # imported after the arguments are read, so that --help answers at once
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.metrics import mean_squared_error

    from sklearn_greedy import (
        EndToEndImplicitRegressor,
        LayerwiseTrainingDisplay,
        SequentialImplicitRegressor,
    )

    rng = np.random.RandomState(0)
    u = rng.uniform(-5, 5, (500, 1))
    target = lambda v: 5 * np.cos(np.pi * v) * np.exp(-np.abs(v) / 2)  # noqa: E731
    y = target(u[:, 0]) + 0.1 * rng.randn(len(u))
    u_test = np.linspace(-5, 5, 400)[:, None]
    y_test = target(u_test[:, 0])

    n_states = args.n_blocks * args.block_size
    reg = SequentialImplicitRegressor(
        n_states=n_states, n_blocks=args.n_blocks, select_blocks=False, random_state=0
    ).fit(u, y)
    baseline = EndToEndImplicitRegressor(n_states=n_states, random_state=0).fit(u, y)

    staged = list(reg.staged_predict(u_test))
    print(f"A: {reg.A_.shape}, blocks of {reg.block_sizes_}, lambda_PF(|A|) = {reg.pf_eigenvalue_}")
    print("blocks  test RMSE")
    for j, prediction in enumerate(staged, start=1):
        print(f"{j:>6}  {mean_squared_error(y_test, prediction) ** 0.5:>9.4f}")
    rmse = mean_squared_error(y_test, baseline.predict(u_test)) ** 0.5
    print(f"end-to-end implicit baseline ({n_states} states): test RMSE {rmse:.4f}")

    fig, (ax_fit, ax_train) = plt.subplots(1, 2, figsize=(11, 4))
    ax_fit.scatter(u[:, 0], y, s=4, color="0.7", label="training data")
    for j in sorted({1, 2, len(staged) // 2, len(staged)}):
        ax_fit.plot(u_test[:, 0], staged[j - 1], label=f"after block {j}")
    ax_fit.set_xlabel("u")
    ax_fit.set_ylabel("y")
    ax_fit.set_title("the sequential model, block by block")
    ax_fit.legend(fontsize="small")
    LayerwiseTrainingDisplay.from_estimator(reg, ax=ax_train)
    fig.tight_layout()
    if args.output:
        fig.savefig(args.output, dpi=120)
        print(f"saved {args.output}")
    return reg


if __name__ == "__main__":
    main()
