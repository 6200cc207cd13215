"""The greedy layerwise CNN (Belilovsky, Eickenberg and Oyallon, ICML 2019). Private:
import the public names from :mod:`sklearn_greedy` and :mod:`sklearn_greedy.nn`.

See ``docs/architecture.md`` for what each module holds.
"""
