"""dshub's tests: one folder per library package; helpers in tests.support."""
import pytest

pytest.register_assert_rewrite("tests.support")  # their asserts report values, as the tests' own do
