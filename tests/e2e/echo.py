"""Traffic for the end-to-end suite, run inside the namespaces.

    echo.py server IP PORT               TCP echo server (one thread per client)
    echo.py client IP PORT STATUS SECONDS
        keeps one TCP connection, sends a numbered line every 20 ms and reads
        its echo; writes STATUS (JSON, replaced atomically) every 100 ms:
        sent, echoed, max_gap_ms (the longest time without an echo), errors,
        and the local port (so a test can find the flow in conntrack).
    echo.py connect IP PORT              one fresh connection, one echo; exit 0 if it worked

Everything is bounded: sockets time out after 2 s, the client stops after
SECONDS or when its connection dies (the status says why).
"""

import json
import os
import socket
import sys
import threading
import time


def serve(ip, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(16)

    def handle(c):
        c.settimeout(30)
        try:
            while True:
                data = c.recv(4096)
                if not data:
                    return
                c.sendall(data)
        except OSError:
            return
        finally:
            c.close()

    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def write_status(path, st):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(st, f)
    os.replace(tmp, path)


def client(ip, port, status, seconds):
    st = {"sent": 0, "echoed": 0, "max_gap_ms": 0.0, "errors": [], "local_port": 0,
          "done": False}
    start = time.monotonic()
    try:
        c = socket.create_connection((ip, port), timeout=2)
    except OSError as e:
        st["errors"].append("connect: %s" % e)
        st["done"] = True
        write_status(status, st)
        return 1
    c.settimeout(2)
    st["local_port"] = c.getsockname()[1]
    last_echo = time.monotonic()
    last_write = 0.0
    buf = b""
    try:
        while time.monotonic() - start < seconds:
            line = ("%d\n" % st["sent"]).encode()
            c.sendall(line)
            st["sent"] += 1
            while b"\n" not in buf:
                data = c.recv(4096)
                if not data:
                    raise OSError("connection closed by peer")
                buf += data
            got, buf = buf.split(b"\n", 1)
            if int(got) != st["sent"] - 1:
                raise OSError("echo out of order: %s" % got)
            now = time.monotonic()
            st["max_gap_ms"] = max(st["max_gap_ms"], (now - last_echo) * 1000.0)
            last_echo = now
            st["echoed"] += 1
            if now - last_write > 0.1:
                write_status(status, st)
                last_write = now
            time.sleep(0.02)
    except OSError as e:
        st["errors"].append(str(e))
    st["max_gap_ms"] = max(st["max_gap_ms"], (time.monotonic() - last_echo) * 1000.0)
    st["done"] = True
    write_status(status, st)
    c.close()
    return 0 if not st["errors"] else 1


def connect_once(ip, port):
    try:
        c = socket.create_connection((ip, port), timeout=2)
        c.settimeout(2)
        c.sendall(b"ping\n")
        ok = c.recv(16) == b"ping\n"
        c.close()
        return 0 if ok else 1
    except OSError:
        return 1


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "server":
        serve(sys.argv[2], int(sys.argv[3]))
    elif mode == "client":
        sys.exit(client(sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])))
    elif mode == "connect":
        sys.exit(connect_once(sys.argv[2], int(sys.argv[3])))
    sys.exit(2)
