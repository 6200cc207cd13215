"""The training machinery every estimator shares: the stage engine, decoupled and
data-parallel training, launching on several devices, streaming, augmentation,
checkpoints and the torch runtime of a fit. Private.

See ``docs/architecture.md`` for what each module holds.
"""
