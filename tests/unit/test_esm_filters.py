"""FilterCriteria: EventBridge pattern matching as Lambda applies it to SQS records."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from lambdalet.events.esm_poller import filter_view
from lambdalet.events.filters import (MAX_FILTERS, compile_filter_criteria, compile_pattern, matches,
                                      matches_any)
from lambdalet.models.errors import InvalidParameterValueException


def m(pattern: dict, event) -> bool:
    compile_pattern(json.dumps(pattern))          # every pattern used here is valid
    return matches(pattern, event)


# ---------------------------------------------------------------------------------------- values

def test_exact_values_are_typed():
    assert m({"a": ["x"]}, {"a": "x"})
    assert not m({"a": ["x"]}, {"a": "X"})
    assert m({"a": [5]}, {"a": 5.0})                 # numbers compare numerically
    assert not m({"a": [5]}, {"a": "5"})             # a string is not a number
    assert not m({"a": ["5"]}, {"a": 5})
    assert m({"a": [None]}, {"a": None})
    assert not m({"a": [None]}, {})                   # null is not missing
    assert m({"a": [True]}, {"a": True})
    assert not m({"a": [True]}, {"a": 1})
    assert m({"a": [""]}, {"a": ""})
    assert m({"a": ["x", "y"]}, {"a": "y"})           # OR within a key


def test_and_across_keys_and_nesting():
    p = {"a": ["1"], "b": {"c": [2]}}
    assert m(p, {"a": "1", "b": {"c": 2}, "extra": 0})
    assert not m(p, {"a": "1", "b": {"c": 3}})
    assert not m(p, {"a": "1"})
    assert not m(p, {"a": "1", "b": 2})               # a scalar where an object is expected


def test_event_arrays_match_any_element():
    assert m({"a": ["x"]}, {"a": ["w", "x"]})
    assert not m({"a": ["x"]}, {"a": []})
    assert m({"a": {"b": [1]}}, {"a": [{"b": 0}, {"b": 1}]})
    # both conditions must hold in the same element
    assert not m({"a": {"b": [1], "c": [2]}}, {"a": [{"b": 1}, {"c": 2}]})
    assert m({"a": {"b": [1], "c": [2]}}, {"a": [{"b": 1}, {"b": 1, "c": 2}]})


def test_empty_pattern_matches_everything():
    assert m({}, {"anything": 1})


# ---------------------------------------------------------------------------------------- operators

def test_prefix_suffix_and_ignore_case():
    assert m({"a": [{"prefix": "ab"}]}, {"a": "abc"})
    assert not m({"a": [{"prefix": "ab"}]}, {"a": "xabc"})
    assert not m({"a": [{"prefix": "1"}]}, {"a": 12})
    assert m({"a": [{"suffix": ".png"}]}, {"a": "x.png"})
    assert not m({"a": [{"suffix": ".png"}]}, {"a": "x.PNG"})
    assert m({"a": [{"suffix": {"equals-ignore-case": ".png"}}]}, {"a": "x.PNG"})
    assert m({"a": [{"prefix": {"equals-ignore-case": "AB"}}]}, {"a": "abc"})
    assert m({"a": [{"equals-ignore-case": "HeLLo"}]}, {"a": "hello"})
    assert not m({"a": [{"equals-ignore-case": "HeLLo"}]}, {"a": "hello!"})


def test_wildcard():
    p = {"a": [{"wildcard": "dir/*.png"}]}
    assert m(p, {"a": "dir/x.png"})
    assert m(p, {"a": "dir/a/b.png"})
    assert not m(p, {"a": "other/x.png"})
    assert m({"a": [{"wildcard": "a\\*b"}]}, {"a": "a*b"})
    assert not m({"a": [{"wildcard": "a\\*b"}]}, {"a": "axb"})
    assert m({"a": [{"wildcard": "*"}]}, {"a": ""})


def test_anything_but():
    assert m({"a": [{"anything-but": ["x", "y"]}]}, {"a": "z"})
    assert not m({"a": [{"anything-but": ["x", "y"]}]}, {"a": "x"})
    assert m({"a": [{"anything-but": "x"}]}, {"a": "z"})
    assert not m({"a": [{"anything-but": [5]}]}, {"a": 5.0})
    assert m({"a": [{"anything-but": [5]}]}, {"a": 6})
    assert not m({"a": [{"anything-but": "x"}]}, {})                # the field must exist
    assert m({"a": [{"anything-but": {"prefix": "in"}}]}, {"a": "out"})
    assert not m({"a": [{"anything-but": {"prefix": "in"}}]}, {"a": "inside"})
    assert not m({"a": [{"anything-but": {"suffix": "x"}}]}, {"a": "box"})
    assert not m({"a": [{"anything-but": {"equals-ignore-case": ["A", "b"]}}]}, {"a": "B"})
    assert m({"a": [{"anything-but": {"equals-ignore-case": "A"}}]}, {"a": "c"})
    assert not m({"a": [{"anything-but": {"wildcard": "*.tmp"}}]}, {"a": "x.tmp"})


def test_numeric():
    p = {"n": [{"numeric": [">", 0, "<=", 5]}]}
    assert m(p, {"n": 5})
    assert m(p, {"n": 0.5})
    assert not m(p, {"n": 0})
    assert not m(p, {"n": 6})
    assert not m(p, {"n": "3"})                       # strings are not numbers
    assert not m(p, {"n": True})
    assert m({"n": [{"numeric": ["=", 3]}]}, {"n": 3.0})
    assert m({"n": [{"numeric": [">=", -1]}]}, {"n": -1})


def test_exists():
    assert m({"a": [{"exists": True}]}, {"a": None})
    assert not m({"a": [{"exists": True}]}, {})
    assert m({"a": [{"exists": False}]}, {})
    assert not m({"a": [{"exists": False}]}, {"a": 1})
    assert m({"a": {"b": [{"exists": False}]}}, {})           # missing parent: missing child
    assert m({"a": {"b": [{"exists": False}]}}, {"a": {"c": 1}})
    assert not m({"a": [{"exists": True}]}, {"a": {"b": 1}})   # objects are not leaves
    assert not m({"a": [{"exists": True}]}, {"a": []})


def test_cidr():
    assert m({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.0.7"})
    assert not m({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "10.0.1.7"})
    assert not m({"ip": [{"cidr": "10.0.0.0/24"}]}, {"ip": "not-an-ip"})
    assert m({"ip": [{"cidr": "2001:db8::/32"}]}, {"ip": "2001:db8::1"})


def test_or():
    p = {"$or": [{"a": [1]}, {"b": [2]}], "c": ["k"]}
    assert m(p, {"a": 1, "c": "k"})
    assert m(p, {"b": 2, "c": "k"})
    assert not m(p, {"b": 3, "c": "k"})
    assert not m(p, {"a": 1})


# ---------------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("pattern", [
    "not json", "[]", '"x"', '{"a": "x"}', '{"a": []}', '{"a": [{"nope": 1}]}', '{"a": [{"prefix": 1}]}',
    '{"a": [{"prefix": "a", "suffix": "b"}]}', '{"a": [{"numeric": [">"]}]}', '{"a": [{"numeric": ["!", 1]}]}',
    '{"a": [{"numeric": [">", 5, "<", 1]}]}', '{"a": [{"numeric": [">", 1, ">", 2]}]}',
    '{"a": [{"numeric": [">", "1"]}]}', '{"a": [{"exists": "yes"}]}', '{"a": [{"wildcard": "a**b"}]}',
    '{"a": [{"cidr": "banana"}]}', '{"$or": [{"a": [1]}]}', '{"$or": {"a": [1]}}', '{"a": {}}',
    '{"a": [{"anything-but": []}]}', '{"a": [{"anything-but": {"numeric": [">", 1]}}]}', '{"a": [[1]]}',
])
def test_invalid_patterns_are_refused(pattern):
    with pytest.raises(InvalidParameterValueException) as ei:
        compile_filter_criteria({"Filters": [{"Pattern": pattern}]})
    assert "Invalid filter pattern definition." in ei.value.message


def test_criteria_limits():
    assert compile_filter_criteria(None) == []
    assert compile_filter_criteria({}) == []
    assert compile_filter_criteria({"Filters": []}) == []
    with pytest.raises(InvalidParameterValueException):
        compile_filter_criteria({"Filters": [{"Pattern": '{"a": [1]}'}] * (MAX_FILTERS + 1)})
    with pytest.raises(InvalidParameterValueException):
        compile_filter_criteria({"Filters": [{"Pattern": json.dumps({"a": ["x" * 5000]})}]})
    with pytest.raises(InvalidParameterValueException):
        compile_filter_criteria({"Filters": [{}]})


def test_any_filter_keeps_the_record():
    filters = compile_filter_criteria({"Filters": [{"Pattern": '{"body": {"k": [1]}}'},
                                                   {"Pattern": '{"body": {"k": [2]}}'}]})
    assert matches_any(filters, {"body": {"k": 2}})
    assert not matches_any(filters, {"body": {"k": 3}})
    assert matches_any([], {"anything": True})


# ---------------------------------------------------------------------------------------- SQS records

def test_sqs_body_is_parsed_when_json():
    record = {"body": '{"kind": "order", "total": 12.5}', "attributes": {"ApproximateReceiveCount": "1"},
              "messageAttributes": {"team": {"stringValue": "blue", "dataType": "String"}}}
    view = filter_view(record)
    assert m({"body": {"kind": ["order"], "total": [{"numeric": [">", 10]}]}}, view)
    assert m({"attributes": {"ApproximateReceiveCount": ["1"]}}, view)
    assert m({"messageAttributes": {"team": {"stringValue": ["blue"]}}}, view)
    assert record["body"].startswith("{")          # the record itself is untouched


def test_plain_text_body():
    view = filter_view({"body": "hello world"})
    assert m({"body": [{"prefix": "hello"}]}, view)
    assert not m({"body": {"kind": ["order"]}}, view)      # a JSON pattern never matches plain text


# ---------------------------------------------------------------------------------------- properties

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=8))
_keys = st.text(min_size=1, max_size=4).filter(lambda k: k != "$or")   # "$or" is the patterns' operator, not a field


@given(st.dictionaries(_keys, _scalars, max_size=5))
def test_an_event_matches_its_own_exact_pattern(event):
    pattern = {k: [v] for k, v in event.items()}
    assert m(pattern, event)


@given(st.dictionaries(_keys, _scalars, max_size=5), _keys)
def test_exists_false_and_true_are_complements(event, key):
    assert m({key: [{"exists": True}]}, event) != m({key: [{"exists": False}]}, event)
