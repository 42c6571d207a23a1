"""The network modes as data: what the checks of the command line and profiles, planning, seccomp, doctor and
inspect need to know of each mode. What a mode does at run time is net/backend.py's, one Backend class per
mode, and the plan's Network section carries this table's addresses to it. A new mode (pasta, a pod) is one
entry here and one Backend class there; tests/unit/test_netmodes.py holds both ends to that.
"""

from rootsand.config.model import Record


class NetMode(Record):
    FIELDS = {
        "name": "",  # --net NAME, network.mode = NAME
        "own_netns": True,  # a network namespace of its own; else the host's, and no network isolation at all
        "open_sockets": False,  # seccomp lets every socket family through (there is no network to keep apart)
        "publish": False,  # takes --publish and network.publish
        "host_loopback": False,  # takes --allow-host-loopback
        "allowlist": False,  # takes --allow-host and network.allow, deny and header_timeout
        # the program it runs on the host (found with host.find_helper, checked by doctor), in a sandbox of its
        # own where it can be (Network.slirp_sandbox), and the host devices it needs
        "helper": None, "devices": (),
        # the sandbox gets a resolv.conf of its own: the profile's servers or `dns`, then the host's reachable ones
        "resolv_conf": False,
        # inside the sandbox's network namespace, as the helper configures it: checked by setup
        "interface": None, "address": None, "prefix": None, "gateway": None, "dns": None,
        "proxy_port": None,  # the filtering proxy's endpoint on the sandbox's own 127.0.0.1
        # said when a UDP port is published on the host's loopback without --allow-host-loopback
        "loopback_udp_note": None,
    }
    __slots__ = tuple(FIELDS)


# In the order help texts and error messages name them.
MODES = {mode.name: mode for mode in (
    NetMode(name="none"),  # loopback only
    # slirp4netns --configure's defaults (no --cidr): 10.0.2.0/24, the host as .2, its DNS forwarder .3
    NetMode(name="slirp", publish=True, host_loopback=True, helper="slirp4netns", devices=("/dev/net/tun",),
            resolv_conf=True, interface="tap0", address="10.0.2.100", prefix=24, gateway="10.0.2.2",
            dns="10.0.2.3",
            loopback_udp_note="slirp4netns drops a sandbox's UDP replies to the host's loopback unless "
                              "--allow-host-loopback is given (podman#4586): the published UDP port only receives"),
    # squid's port, which tools guess; the proxy answers DNS itself on UDP port 53 of every address
    NetMode(name="proxy", allowlist=True, proxy_port=3128, resolv_conf=True, dns="127.0.0.53"),
    NetMode(name="host", own_netns=False, open_sockets=True),
)}
NET_MODES = tuple(MODES)


def modes_with(feature: str) -> list[str]:
    """The names of the modes where `feature` (a NetMode field) is set."""
    return [name for name, mode in MODES.items() if getattr(mode, feature)]


def one_of(names) -> str:
    """"a, b or c": for messages."""
    *first, last = names
    return f"{', '.join(first)} or {last}" if first else last
