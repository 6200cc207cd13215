"""numpydoc validation of the public API: every public class, function and method."""

import inspect

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")

import sklearn_greedy  # noqa: E402
import sklearn_greedy.datasets  # noqa: E402
import sklearn_greedy.nn  # noqa: E402

# What a reader needs (every parameter documented with a type and a description, a
# return/yield section, a one-line summary, See Also entries explained); the rest of
# numpydoc's checks are style.
ENFORCED = {
    "GL02", "GL03", "PR01", "PR02", "PR03", "PR04", "PR06", "PR07", "PR08", "PR10",
    "RT01", "RT03", "SS01", "SS02", "SS03", "SS04", "SS06", "SA04", "YD01",
}  # fmt: skip
# examples are owed by classes and functions; methods are shown in their class's example
ENFORCED_TOP_LEVEL = ENFORCED | {"EX01"}


def _public_api():
    for module in (sklearn_greedy, sklearn_greedy.datasets, sklearn_greedy.nn):
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            yield f"{module.__name__}.{name}", ENFORCED_TOP_LEVEL
            if inspect.isclass(obj) and obj.__module__.startswith("sklearn_greedy"):
                for attr, member in vars(obj).items():
                    if not attr.startswith("_") and (
                        inspect.isfunction(member) or isinstance(member, classmethod)
                    ):
                        yield f"{module.__name__}.{name}.{attr}", ENFORCED


@pytest.mark.parametrize(
    "name, codes", list(_public_api()), ids=lambda v: v if isinstance(v, str) else "checks"
)
def test_public_docstring_is_complete(name, codes):
    errors = [
        f"{code}: {message}"
        for code, message in numpydoc_validate.validate(name)["errors"]
        if code in codes
    ]
    assert not errors, "\n".join(errors)
