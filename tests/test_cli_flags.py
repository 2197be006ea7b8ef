"""The ``monai_apps`` command line: boolean flag values as users type them."""

from __future__ import annotations

import pytest

from monai_apps import cli


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["slices", "--allow_empty", "false"], ["slices", "--allow_empty", "False"]),
        (["slices", "--allow_empty", "TRUE"], ["slices", "--allow_empty", "True"]),
        (["bench", "--data_side=false"], ["bench", "--data_side=False"]),
        (
            ["slices", "--normalize", "lung", "--size", "[128,128]"],
            ["slices", "--normalize", "lung", "--size", "[128,128]"],
        ),
        (["generate", "false"], ["generate", "false"]),  # a positional value is left alone
        (["x", "--out=a=b"], ["x", "--out=a=b"]),
    ],
)
def test_normalize_bool_flags(argv, expected):
    assert cli.normalize_bool_flags(argv) == expected


def test_lowercase_false_reaches_the_command_as_false(monkeypatch):
    seen = []

    class Commands:
        def flag(self, allow_empty: bool = True) -> None:
            seen.append(allow_empty)

    monkeypatch.setattr(cli, "Commands", Commands)
    assert cli.main(["flag", "--allow_empty", "false"]) == 0
    assert cli.main(["flag", "--allow_empty=true"]) == 0
    assert seen == [False, True], "fire alone would pass the truthy string 'false'"
