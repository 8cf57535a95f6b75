"""``cogmeta.cli_options.integer``: the argparse type of every count option (the CLI's and the benchmark scripts')."""

from __future__ import annotations

import argparse

import pytest

from cogmeta.cli_options import integer


@pytest.mark.parametrize("text, value", [("8000", 8000), ("8_000", 8000), ("8e3", 8000), (" 3 ", 3), ("0", 0)])
def test_integer_reads_whole_numbers_in_the_forms_people_type(text, value):
    assert integer()(text) == value


@pytest.mark.parametrize("parse, text, message", [
    (integer(), "1.5", "expected a whole number, got '1.5'"),
    (integer(), "many", "expected a whole number, got 'many'"),
    (integer(), "inf", "expected a whole number, got 'inf'"),
    (integer(1), "0", "must be a whole number of at least 1, got '0'"),
    (integer(high=10), "11", "must be a whole number of at most 10, got '11'"),
    (integer(1, 10), "0", "must be a whole number in [1, 10], got '0'"),
])
def test_integer_says_what_was_wrong(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as error:
        parse(text)
    assert str(error.value) == message
