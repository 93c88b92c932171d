"""Runs on a lab host (its python3, as root) to look at the overlay's traffic on the wire.

argv: SECONDS MODE NEEDLE... For SECONDS, reads every packet the host's interfaces see (a
raw AF_PACKET socket) and counts each NEEDLE's occurrences in the payload of the packets of
MODE: ``vxlan``, the UDP payload of VXLAN packets (port 4789: the swarm overlay between
hosts, unencrypted in the lab); ``dist``, the TCP payload to or from ports 9100-9199 (host
mode's distribution ports). Prints one JSON object: ``{"packets": N, "counts": {needle:
n}}``.

Distribution traffic in cleartext carries node names (``app@10.234.0.7``) in its
handshake and in every message that names a node; over TLS it carries none.
"""

import json
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
VXLAN_PORT = 4789


DIST_PORTS = range(9100, 9200)


def payload(frame: bytes, mode: str) -> bytes | None:
    if len(frame) < 42 or frame[12:14] != b"\x08\x00":  # IPv4 only
        return None
    ip = frame[14:]
    header = (ip[0] & 0x0F) * 4
    src, dst = struct.unpack("!HH", ip[header : header + 4])
    if mode == "vxlan" and ip[9] == socket.IPPROTO_UDP and VXLAN_PORT in (src, dst):
        return ip[header + 8 :]
    if mode == "dist" and ip[9] == socket.IPPROTO_TCP and (src in DIST_PORTS or dst in DIST_PORTS):
        return ip[header + (ip[header + 12] >> 4) * 4 :]
    return None


def main(seconds: float, mode: str, needles: list[str]) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(ETH_P_ALL))
    sock.settimeout(0.5)
    counts = dict.fromkeys(needles, 0)
    packets = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frame, address = sock.recvfrom(65535)
        except TimeoutError:
            continue
        if address[2] == socket.PACKET_OUTGOING:
            continue  # each packet once: as it arrives
        data = payload(frame, mode)
        if data is None:
            continue
        packets += 1
        for needle in needles:
            counts[needle] += data.count(needle.encode())
    print(json.dumps({"packets": packets, "counts": counts}))


if __name__ == "__main__":
    main(float(sys.argv[1]), sys.argv[2], sys.argv[3:])
