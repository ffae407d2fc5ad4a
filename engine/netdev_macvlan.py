"""macvlan devices inside the tree's network namespace, on a device outside it.

Dump: the device's own state (engine/netdev.py), its mode, and as a hint the
name of the device it sits on.  Restore: `--external macvlan[IF]:LINK` names
the host device to sit on (without it, the one of the dump); the macvlan is
created on it straight in the new namespace with its name, MAC, MTU and mode.
A macvlan on a device inside the namespace is refused.
"""
from __future__ import annotations

import logging

from .errors import ImageError, PlanError, UnsupportedError
from .netdev import host_link

log = logging.getLogger("lxc_cr.netdev")

MODES = {"private", "vepa", "bridge", "passthru", "source"}


OTHER_END = "the device it sits on"     # must be outside the namespace (engine/netdev.py refusal)


def dump(msg, link, host) -> None:
    data = link.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
    mode = data.get_attr("IFLA_MACVLAN_MODE") if data is not None else None
    if mode not in MODES:
        raise UnsupportedError(f"macvlan device {msg.name} has mode {mode}, which is not supported")
    msg.macvlan_mode = mode
    lower = host_link(host, link.get_attr("IFLA_LINK"))
    if lower is not None:
        msg.lower_name = lower.get_attr("IFLA_IFNAME")


def validate(link, where: str) -> None:
    if link.macvlan_mode not in MODES:
        raise ImageError(f"{where}: macvlan {link.name} has a bad mode {link.macvlan_mode}")


def create(devs, link, external) -> None:
    lower = external.host if external is not None else link.lower_name
    if not lower:
        raise PlanError(f"macvlan {link.name}: which host device should it sit on? (--external macvlan[{link.name}]:DEV)")
    lower_index = devs.host_index(lower, f"host device {lower} for macvlan {link.name}")
    devs.host.link("add", kind="macvlan", link=lower_index, macvlan_mode=link.macvlan_mode,
                   **devs.common(link))
    inner = devs.inside.link_lookup(ifname=link.name)[0]
    devs.undo_steps.append(lambda: devs.inside.link("del", index=inner))
    log.info("macvlan %s on %s (%s)", link.name, lower, link.macvlan_mode)
