"""The operations parsers over arbitrary text (hypothesis): each returns a value inside its range or
raises ValueError naming the option, never anything else; and the values people type parse right."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from diskguard.ops import parse
from hypothesis import given, settings
from hypothesis import strategies as st

PARSERS: dict[str, Callable[[str, str], object]] = {
    'threshold': parse.threshold,
    'percentage': parse.percentage,
    'size': parse.size,
    'duration': parse.duration,
    'count': parse.count,
    'listen_address': parse.listen_address,
    'budget': parse.budget,
}

# Text near the accepted forms, plus anything at all.
NEARLY = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda n, u: f'{n}{u}',
        st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True)),
        st.sampled_from(['', '%', 's', 'm', 'h', 'd', 'y', 'GiB', 'MB', 'T', 'KiB', ' %', 'e3']),
    ),
    st.builds(
        lambda h, p: f'{h}:{p}',
        st.sampled_from(['127.0.0.1', '[::1]', 'localhost', '', '::1']),
        st.integers(-5, 70000),
    ),
    st.builds(
        lambda g, s: f'{g}={s}', st.sampled_from(['/workspace/*', '', ' ', '/a=b']), st.text(max_size=10)
    ),
)


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(sorted(PARSERS)), text=NEARLY)
def test_parsers_return_a_valid_value_or_a_named_value_error(name: str, text: str) -> None:
    try:
        value = PARSERS[name]('--opt', text)
    except ValueError as err:
        assert str(err).startswith('--opt='), err
        assert '\n' not in str(err).replace(repr(text), '')
        return
    if name == 'threshold':
        assert isinstance(value, parse.Threshold)
        assert (value.fraction is None) != (value.free_bytes is None)
        assert value.fraction is None or 0 < value.fraction <= 1
        assert value.free_bytes is None or value.free_bytes >= 0
    elif name == 'percentage':
        assert isinstance(value, float) and 0 < value <= 1
    elif name == 'size':
        assert isinstance(value, int) and value >= 1
    elif name == 'duration':
        assert isinstance(value, float) and math.isfinite(value) and 0.1 <= value <= parse.MAX_SECONDS
    elif name == 'count':
        assert isinstance(value, int) and 1 <= value <= 1_000_000
    elif name == 'listen_address':
        assert isinstance(value, tuple) and 0 <= value[1] <= 65535 and value[0]
    else:
        assert isinstance(value, tuple) and value[0] and value[1] >= 1


@given(seconds=st.integers(1, 365 * 24), unit=st.sampled_from([('s', 1), ('m', 60), ('h', 3600)]))
def test_durations_people_type(seconds: int, unit: tuple[str, int]) -> None:
    total = seconds * unit[1]
    if total <= parse.MAX_SECONDS:
        assert parse.duration('--interval', f'{seconds}{unit[0]}') == total


@pytest.mark.parametrize(
    ('text', 'expected'),
    [
        ('85%', parse.Threshold(fraction=0.85)),
        (' 100 % ', parse.Threshold(fraction=1.0)),
        ('20GiB', parse.Threshold(free_bytes=20 * 1024**3)),
        ('500MB', parse.Threshold(free_bytes=500 * 1000**2)),
        ('0B', parse.Threshold(free_bytes=0)),
    ],
)
def test_thresholds_people_type(text: str, expected: parse.Threshold) -> None:
    assert parse.threshold('-w', text) == expected


@pytest.mark.parametrize('text', ['85', '0%', '100.1%', 'nan%', 'inf%', '-1%', '%', '', '20 GiBs', '1e3%'])
def test_thresholds_refused(text: str) -> None:
    with pytest.raises(ValueError, match='^-w='):
        parse.threshold('-w', text)


def test_listen_addresses() -> None:
    assert parse.listen_address('--listen', '127.0.0.1:9101') == ('127.0.0.1', 9101)
    assert parse.listen_address('--listen', '[::1]:0') == ('::1', 0)
    for bad in ['9101', ':9101', '127.0.0.1:', '127.0.0.1:65536', '[::1]', 'a b:1']:
        with pytest.raises(ValueError, match='^--listen='):
            parse.listen_address('--listen', bad)


def test_budgets() -> None:
    assert parse.budget('--budget', '/workspace/team-a/*=2TiB') == ('/workspace/team-a/*', 2 * 1024**4)
    assert parse.budget('--budget', '/odd=name=1GiB') == ('/odd=name', 1024**3)
