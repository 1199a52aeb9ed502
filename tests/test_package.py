"""The package's docstring example runs, and its exports resolve."""

import doctest

import relational_rnn


def test_package_docstring_example():
    result = doctest.testmod(relational_rnn)
    assert result.attempted > 0 and result.failed == 0


def test_every_export_resolves():
    for name in relational_rnn.__all__:
        assert getattr(relational_rnn, name) is not None
    assert set(relational_rnn.__all__) <= set(dir(relational_rnn))
