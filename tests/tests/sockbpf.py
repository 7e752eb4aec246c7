# Socket probes for tests/tests/shared_net.rs: one action per run, one line of output,
# "ok ADDRESS" or "err ERRNO-NAME".
import ctypes
import errno
import os
import socket
import struct
import sys


def fam(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def receive(s, n):
    s.settimeout(2)
    got = []
    for _ in range(n):
        try:
            got.append(s.recv(64).decode())
        except socket.timeout:
            got.append("timeout")
            break
    return ",".join(got)


def run(action, args):
    if action == "bind":
        # bind ADDR [PORT]: where the socket ended up (getsockname).
        addr, port = args[0], int(args[1]) if len(args) > 1 else 0
        s = socket.socket(fam(addr), socket.SOCK_STREAM)
        s.bind((addr, port))
        return s.getsockname()[0]
    if action == "listen-connect":
        # listen-connect ADDR PORT: listens, connects to it, reports the peer's view.
        addr, port = args[0], int(args[1])
        l = socket.socket(fam(addr), socket.SOCK_STREAM)
        l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        l.bind((addr, port))
        l.listen()
        c = socket.create_connection((addr, port), timeout=5)
        a, _ = l.accept()
        return "%s %s" % (c.getpeername()[0], a.getpeername()[0])
    if action == "serve":
        # serve ADDR PORT N: listens (ADDR "-": without a bind), says "ready PORT" at once,
        # then accepts N connections (3 s each at most) and reports the address each one
        # came in on (getsockname of the accepted socket), comma-separated.
        addr, port, n = args[0], int(args[1]), int(args[2])
        l = socket.socket(socket.AF_INET6 if addr == "-6" or ":" in addr else socket.AF_INET,
                          socket.SOCK_STREAM)
        if addr not in ("-", "-6"):
            l.bind((addr, port))
        l.listen()
        print("ready", l.getsockname()[1], flush=True)
        l.settimeout(3)
        got = []
        for _ in range(n):
            try:
                a, _ = l.accept()
                got.append(a.getsockname()[0])
            except socket.timeout:
                got.append("timeout")
        return ",".join(got)
    if action == "abstract-connect":
        # abstract-connect NAME [dgram]: connect (stream) or sendto (datagram) an abstract name.
        if len(args) > 1 and args[1] == "dgram":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.sendto(b"x", "\0" + args[0])
            return "sent"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect("\0" + args[0])
        return "connected"
    if action == "abstract-self":
        # A guest's own abstract socket, bound and reached by itself.
        l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        l.bind("\0" + args[0])
        l.listen()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect("\0" + args[0])
        return "connected"
    if action == "unshare-abstract":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        return run("abstract-self", args)
    if action == "unix-path":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(args[0])
        return "connected"
    if action == "connect":
        addr, port = args[0], int(args[1])
        c = socket.create_connection((addr, port), timeout=5)
        return c.getsockname()[0]
    if action == "sendto":
        # sendto ADDR PORT: an unbound UDP datagram; the receiver reports its source.
        s = socket.socket(fam(args[0]), socket.SOCK_DGRAM)
        s.sendto(b"x", (args[0], int(args[1])))
        return "sent"
    if action == "udp-serve":
        # udp-serve ADDR PORT N [reuse]: a UDP socket bound to ADDR:PORT (SO_REUSEPORT with
        # "reuse"); says "ready PORT", then receives up to N datagrams (2 s each at most) and
        # reports where it was bound and their payloads, comma-separated.
        addr, port, n = args[0], int(args[1]), int(args[2])
        s = socket.socket(fam(addr), socket.SOCK_DGRAM)
        if len(args) > 3 and args[3] == "reuse":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((addr, port))
        print("ready", s.getsockname()[1], flush=True)
        return "%s %s" % (s.getsockname()[0], receive(s, n))
    if action == "udp-unbound":
        # udp-unbound ADDR PORT N: an unbound UDP socket sends to ADDR:PORT, says "ready" and
        # its (ephemeral) port, then receives up to N datagrams as udp-serve does.
        s = socket.socket(fam(args[0]), socket.SOCK_DGRAM)
        s.sendto(b"hello", (args[0], int(args[1])))
        print("ready", s.getsockname()[1], flush=True)
        return receive(s, int(args[2]))
    if action == "unshare-udp-self":
        # A network namespace made inside the cgroup, its loopback up: a UDP socket there
        # receives what it sends itself on 127.0.0.1 (the ingress filter leaves it alone).
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        import fcntl
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        ifr = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, ifr))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP
        s.bind(("127.0.0.1", 0))
        s.sendto(b"self", s.getsockname())
        return receive(s, 1)
    if action == "ping-socket":
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
        return "made"
    if action == "unshare-bind":
        # A network namespace made inside the cgroup: the programs leave it alone.
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "unshare")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[0]
    if action == "detach":
        # detach CGROUP_DIR: BPF_PROG_DETACH of bind4 (attach type 8) with no program,
        # BPF_PROG_QUERY; both must fail for a process without capabilities.
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(args[0], os.O_RDONLY | os.O_DIRECTORY)
        out = []
        for cmd, attr in [
            (9, struct.pack("IIII", fd, 0, 8, 0) + bytes(128)),
            (16, struct.pack("IIIIQI", fd, 8, 0, 0, 0, 0) + bytes(112)),
        ]:
            buf = ctypes.create_string_buffer(attr, 144)
            rc = libc.syscall(321, cmd, buf, 144)
            out.append("ok" if rc == 0 else errno.errorcode[ctypes.get_errno()])
        return " ".join(out)
    raise SystemExit("unknown action " + action)


try:
    print("ok", run(sys.argv[1], sys.argv[2:]))
except OSError as e:
    print("err", errno.errorcode.get(e.errno, str(e.errno)))
