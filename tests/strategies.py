"""Hypothesis strategies: JSON bodies as text, so that what Python's json never writes
(1e400, lone surrogate escapes, 5,000 levels of nesting) is generated too."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from mirror.payload import API_COLUMNS

NUMBERS = st.one_of(
    st.integers().map(str),
    st.integers(min_value=-(10**400), max_value=10**400).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e400", "-1e400", "1e-400", "1E308", "-0.0", "2e-5", "9" * 5000]),
)
STRINGS = st.one_of(
    st.text().map(lambda s: json.dumps(s, ensure_ascii=False)),
    st.text().map(json.dumps),  # \u escapes, surrogate pairs included
    st.sampled_from(['"a\\ud800b"', '"\\udfff"', '"\\ud83d\\ude00"', '"\\u0000"', '"\\ud83d"']),
)
KEYS = st.one_of(st.sampled_from([*API_COLUMNS, "metadata", "image_id"]), st.text()).map(json.dumps)
JSON_VALUES = st.recursive(
    st.one_of(NUMBERS, STRINGS, st.sampled_from(["true", "false", "null"])),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(st.tuples(KEYS | STRINGS, inner), max_size=4).map(
            lambda pairs: "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"
        ),
    ),
    max_leaves=12,
)
DEEP = st.integers(min_value=1, max_value=5000).map(lambda n: "[" * n + "]" * n)
BODIES = st.one_of(
    st.lists(st.tuples(KEYS, JSON_VALUES | DEEP), max_size=8).map(
        lambda pairs: "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"
    ),
    JSON_VALUES,
)
