"""Specification: narla keeps freed tensor memory in the process (glibc), once, unless told not to."""

import platform

import pytest

from narla import allocator


@pytest.fixture
def fresh_state(monkeypatch):
    monkeypatch.setattr(allocator, "_state", {})


def test_unknown_malloc_policy_names_the_variable_and_the_choices(fresh_state, monkeypatch):
    monkeypatch.setenv("NARLA_MALLOC", "jemalloc")
    with pytest.raises(ValueError, match="NARLA_MALLOC: unknown value 'jemalloc'; allowed: hold"):
        allocator.hold_freed_memory()


def test_system_policy_leaves_malloc_alone(fresh_state, monkeypatch):
    monkeypatch.setenv("NARLA_MALLOC", "system")
    assert allocator.hold_freed_memory() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_thresholds_are_set_on_glibc_and_only_once(fresh_state, monkeypatch):
    monkeypatch.delenv("NARLA_MALLOC", raising=False)
    assert allocator.hold_freed_memory() is True
    monkeypatch.setenv("NARLA_MALLOC", "jemalloc")  # not read again: the first answer stands for the process
    assert allocator.hold_freed_memory() is True


def test_every_command_refuses_an_unknown_policy_with_one_message(fresh_state, monkeypatch, capsys):
    from narla.cli import main

    monkeypatch.setenv("NARLA_MALLOC", "bogus")
    assert main(["bench", "--quick"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["narla: error: NARLA_MALLOC: unknown value 'bogus'; allowed: hold (the default), system"]
