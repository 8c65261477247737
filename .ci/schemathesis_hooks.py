"""Loaded by .ci/schemathesis.sh (SCHEMATHESIS_HOOKS) before schemathesis runs.

Python 3.11's ast.parse can raise SystemError("AST constructor recursion depth mismatch")
when it is called deep in a recursion (CPython gh-106905, fixed in later releases). Hypothesis
calls it only to describe a lambda for a strategy's repr, and schemathesis's coverage phase
gets there deep in its schema walk, which ends the operation's tests with a runtime error that
is not the API's. Such a lambda is described as unknown instead; nothing else changes. With a
Hypothesis that no longer has this function, nothing is patched.
"""

import hypothesis.internal.lambda_sources as _sources

_describe = getattr(_sources, "_lambda_description", None)


def _lambda_description(f, *args, **kwargs):
    try:
        return _describe(f, *args, **kwargs)
    except SystemError:
        return "lambda: <unknown>"


if _describe is not None:
    _sources._lambda_description = _lambda_description
