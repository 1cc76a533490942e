#!/usr/bin/env python3
"""bench/link-gso.py IFNAME SIZE: sets a link's IPv4 GSO and GRO limits
(IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE, Linux 6.3+) in the caller's
network namespace, as Wharf does for its veth ends and bridges.

Debian 12's iproute2 (6.1) cannot set them (`gso_ipv4_max_size` came with
iproute2 6.3), so bench/network.sh uses this to give its reference veth pair
the same limits. Python's standard library only: one RTM_SETLINK request.
"""
import socket
import struct
import sys

RTM_SETLINK = 19
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR = 2
IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE = 63, 64


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: link-gso.py IFNAME SIZE")
    name, size = sys.argv[1], int(sys.argv[2])
    index = socket.if_nametoindex(name)
    attrs = b"".join(struct.pack("=HHI", 8, kind, size)
                     for kind in (IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE))
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, 0, 0) + attrs
    header = struct.pack("=IHHII", 16 + len(body), RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.send(header + body)
        reply = sock.recv(65536)
    _, kind, _, _, _ = struct.unpack_from("=IHHII", reply)
    error = struct.unpack_from("=i", reply, 16)[0] if kind == NLMSG_ERROR else 0
    if error:
        sys.exit(f"link-gso.py: set {name}: {socket.errno.errorcode.get(-error, -error)}")


if __name__ == "__main__":
    main()
