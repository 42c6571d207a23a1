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
        "package": None,  # the helper's package, where its name differs
        # the sandbox gets a resolv.conf of its own: the profile's servers or `dns`, then the host's reachable ones
        "resolv_conf": False,
        # inside the sandbox's network namespace, as the helper configures it: checked by setup
        "interface": None, "address": None, "prefix": None, "gateway": None, "dns": None,
        "address6": None, "gateway6": None,  # given to a helper that takes them (pasta: else it copies the host's)
        "proxy_port": None,  # the filtering proxy's endpoint on the sandbox's own 127.0.0.1
        "pod": False,  # the sandbox is a pod's member (run --pod NAME)
        # said when a UDP port is published on the host's loopback without --allow-host-loopback
        "loopback_udp_note": None,
        # said when a UDP port is published to another port number inside
        "udp_translation_note": None,
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
    # pasta (passt) with slirp's addresses, so a sandbox sees the same network whichever helper serves it
    NetMode(name="pasta", publish=True, host_loopback=True, helper="pasta", package="passt", devices=("/dev/net/tun",),
            resolv_conf=True, interface="tap0", address="10.0.2.100", prefix=24, gateway="10.0.2.2",
            dns="10.0.2.3", address6="fd00::100", gateway6="fd00::2",
            udp_translation_note="Debian 12's pasta (2023-03) loses the replies to a UDP port published to another "
                                 "port number inside: publish it to the same number (HOST_PORT:HOST_PORT/udp)"),
    # a member of a pod (net/pod.py): eth0 on the pod's bridge, its address given as it joins; the pod's
    # uplink (pasta or slirp4netns) forwards DNS at 10.0.2.3 as theirs does
    NetMode(name="pod", pod=True, resolv_conf=True, interface="eth0", dns="10.0.2.3"),
    # squid's port, which tools guess; the proxy answers DNS itself on UDP port 53 of every address
    NetMode(name="proxy", allowlist=True, proxy_port=3128, resolv_conf=True, dns="127.0.0.53"),
    NetMode(name="host", own_netns=False, open_sockets=True),
)}
NET_MODES = tuple(name for name, mode in MODES.items() if not mode.pod)  # --net's: a pod's is --pod's
# --net auto, network.mode = "auto": the first of these whose helper is installed (pasta is faster), chosen
# when the run is planned (auto_mode)
AUTO = ("pasta", "slirp")
NET_CHOICES = NET_MODES + ("auto",)


def entry(name: str) -> NetMode:
    """The mode `name` as the command line's and profiles' checks see it: `auto`'s choices take the same
    options (publish, allow_host_loopback, dns), so slirp's entry speaks for it."""
    return MODES[AUTO[-1] if name == "auto" else name]


def auto_mode(find_helper) -> str:
    """What `auto` means on this host: pasta where it is installed, else slirp (whose own error says what is
    missing). Both work nested in a sandbox that lets /dev/net/tun through."""
    for name in AUTO:
        if find_helper(MODES[name].helper):
            return name
    return AUTO[-1]


def modes_with(feature: str) -> list[str]:
    """The names of the modes where `feature` (a NetMode field) is set."""
    return [name for name, mode in MODES.items() if getattr(mode, feature)]


def one_of(names) -> str:
    """"a, b or c": for messages."""
    *first, last = names
    return f"{', '.join(first)} or {last}" if first else last
