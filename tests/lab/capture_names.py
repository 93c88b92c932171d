"""Runs on a lab host (its python3, as root) to look at the overlay's traffic on the wire.

argv: SECONDS NEEDLE... For SECONDS, reads every packet the host's interfaces see (a raw
AF_PACKET socket) and, in the UDP payload of VXLAN packets (port 4789: the swarm overlay
between hosts, unencrypted in the lab), counts each NEEDLE's occurrences. Prints one JSON
object: ``{"packets": N, "counts": {needle: n}}``.

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


def vxlan_payload(frame: bytes) -> bytes | None:
    if len(frame) < 42 or frame[12:14] != b"\x08\x00":  # IPv4 only
        return None
    ip = frame[14:]
    header = (ip[0] & 0x0F) * 4
    if ip[9] != socket.IPPROTO_UDP:
        return None
    src, dst = struct.unpack("!HH", ip[header : header + 4])
    if VXLAN_PORT not in (src, dst):
        return None
    return ip[header + 8 :]


def main(seconds: float, needles: list[str]) -> None:
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
        payload = vxlan_payload(frame)
        if payload is None:
            continue
        packets += 1
        for needle in needles:
            counts[needle] += payload.count(needle.encode())
    print(json.dumps({"packets": packets, "counts": counts}))


if __name__ == "__main__":
    main(float(sys.argv[1]), sys.argv[2:])
