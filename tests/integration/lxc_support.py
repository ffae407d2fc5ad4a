"""LXC for the integration tests: the host made ready once per session (packages come from
`make setup`; the lxcbr0 bridge is brought up here), a fresh busybox container per test
(lxc_cr/busybox_ct.py), destroyed afterwards, and `criu` on PATH being our hooks/criu.

End-to-end checkpoints need the engine to handle everything a container holds; until it
does, those tests are skipped with the engine's own words: the blockers `lxc-cr plan --lxc`
lists (the dump's pre-flight), which is a check of the capability, not a switch.
"""
from __future__ import annotations

import subprocess

import pytest
import yaml

from conftest import LXC_CR
from lxc_cr.busybox_ct import Container, CriuOnPath, ensure_bridge, lxc_missing


@pytest.fixture(scope="session")
def lxc_host():
    missing = lxc_missing()
    if missing:
        pytest.fail(f"LXC is not ready on this host: {missing}", pytrace=False)
    ensure_bridge()
    path = CriuOnPath()
    yield path
    path.remove()


def make_container(purpose: str, number: int) -> Container:
    c = Container(purpose, number).create()
    try:
        c.start()
    except Exception:
        c.destroy()
        raise
    return c


def plan_of(c: Container, images) -> dict:
    r = subprocess.run([LXC_CR, "plan", "--lxc", c.name, "-D", images], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)


def checkpointable_plan(c: Container, images) -> dict:
    """The plan, which must list nothing that blocks a checkpoint or its restore."""
    plan = plan_of(c, images)
    blockers = plan["blocking"] + plan["restore_blocking"]
    assert not blockers, "the container cannot be checkpointed: " + "; ".join(blockers)
    return plan
