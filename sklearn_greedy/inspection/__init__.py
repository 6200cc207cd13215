"""Probing and plotting fitted estimators: per-layer features, separability probes and
the displays. Private: import the public names from :mod:`sklearn_greedy`.

See ``docs/architecture.md`` for what each module holds.
"""
