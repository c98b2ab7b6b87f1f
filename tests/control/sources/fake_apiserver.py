#!/usr/bin/python3
"""A scripted stand-in for the Kubernetes API server's list and watch.

No API server is packaged in Debian, so the Kubernetes client is tested
against this. It answers exactly in the API server's documented format
(https://kubernetes.io/docs/reference/using-api/api-concepts/): Lists with
metadata.resourceVersion and metadata.continue, watches as a chunked stream
of newline-delimited JSON events, BOOKMARK events, ERROR events carrying a
Status (code 410, reason Expired), and whatever the test scripts beyond that
(a connection dropped mid-stream, a malformed event, an HTTP error).

It is driven by the test over stdin and stdout, one JSON object per line:

  stdin  {"op": "respond", "path": P, "watch": bool, "response": R}
             queue R for the next GET of path P (a watch when ?watch=1)
         {"op": "open", "gate": G}     release streams waiting at gate G
         {"op": "push", "path": P, "events": [E...]}
             change objects while watches run: E... go out as one chunk
             on every watch of P, open now or later, whose request's
             resourceVersion is below an event's (as the API server's
             watch cache replays); see "Pushed events" below
         {"op": "sync"}                nothing: its ACK follows every line
                                       printed before the command was read
         {"op": "quit"}                (EOF on stdin does the same)
  stdout READY <port>                  once listening on 127.0.0.1
         ACK <n>                       after the n-th stdin command
         REQUEST {"path": .., "query": {..}, "watch": bool,
                  "authorization": .., "client_cn": ..}
                                       before each request is answered
         SENT {"path": P, "resourceVersion": RV, "monotonic_ns": T}
                                       a watch wrote pushed events up to RV
                                       to its socket at CLOCK_MONOTONIC T
         MISMATCH <text>               a request failed its "expect", or a
                                       push was refused

A response R is one of
  {"status": 200, "body": {...}}       a JSON body (a List, a Status)
  {"status": 200, "stream": [A...]}    a chunked watch stream, actions A:
      {"events": [E...]}   one chunk: each event as a line ("{...}\\n")
      {"raw": "text"}      one chunk of exactly this text (partial lines,
                           malformed events, several events at once)
      {"gate": "g"}        wait until the test opens gate g
      {"drop": true}       close the connection without the final chunk
      {"end": true}        the final chunk: a clean end (timeoutSeconds)
    A stream whose actions run out stays open, idle, until quit.
  and may carry "expect": {"resourceVersion": "12", ...}: query values the
  request must have, else it is answered 400 and a MISMATCH line printed.
An unscripted list is answered 404 with a Status; an unscripted watch
stays open, idle.

Pushed events: each event's object.metadata.resourceVersion must be a
decimal number above every earlier push's on that path (else the push is
refused with a MISMATCH line). A watch serves them once its scripted
actions have run out (an unscripted watch at once): every pushed event
whose resourceVersion is above the watch request's resourceVersion (all
pushes made after the request when it has none), in push order, one chunk
per push. The thread that reads the push command writes it to every
waiting watch itself, so an event is on the socket as soon as the server
has read the command: no polling, no hand-over to another thread.

Options: --tls-cert FILE --tls-key FILE [--client-ca FILE] serve HTTPS
(requiring a client certificate signed by --client-ca when given). The
process ends on quit, on EOF of stdin (the test is gone) or after
--max-seconds (default 120), whichever comes first.
"""

import argparse
import http.server
import json
import os
import socket
import ssl
import sys
import threading
import time
import urllib.parse

LOCK = threading.Lock()
COND = threading.Condition(LOCK)
SCRIPTS = {}  # (path, watch) -> [response, ...]
PUSHED = {}  # path -> [(last resourceVersion, [(resourceVersion, event), ...]), ...]
STREAMS = {}  # path -> watch streams idle after their script: the stdin reader writes to them
GATES = set()
QUIT = threading.Event()


def emit(line):
    with LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def status_body(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the test reads stdout
        pass

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def chunk(self, data):
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        watch = query.get("watch") in ("1", "true")
        client_cn = None
        if isinstance(self.connection, ssl.SSLSocket):
            cert = self.connection.getpeercert()
            if cert:
                for rdn in cert.get("subject", ()):
                    for key, value in rdn:
                        if key == "commonName":
                            client_cn = value
        emit("REQUEST " + json.dumps({"path": url.path, "query": query, "watch": watch,
                                      "authorization": self.headers.get("Authorization"),
                                      "client_cn": client_cn}))
        with LOCK:
            queue = SCRIPTS.get((url.path, watch), [])
            response = queue.pop(0) if queue else None
            rv = query.get("resourceVersion", "")
            pushed = PUSHED.get(url.path, [])
            since = int(rv) if rv.isdigit() else (pushed[-1][0] if pushed else -1)
        if response is None:
            if watch:
                self.start_stream(200)
                self.serve_pushed(url.path, since)
                self.close_connection = True
                return
            self.send_json(404, status_body(404, "NotFound", "no scripted response for " + url.path))
            return
        for key, want in response.get("expect", {}).items():
            if query.get(key) != want:
                text = "%s %s: expected %s=%r, got %r" % (url.path, "watch" if watch else "list",
                                                         key, want, query.get(key))
                emit("MISMATCH " + text)
                self.send_json(400, status_body(400, "BadRequest", "fake apiserver: " + text))
                return
        status = response.get("status", 200)
        if "stream" not in response:
            self.send_json(status, response.get("body", {}))
            return
        self.start_stream(status)
        for action in response["stream"]:
            if "events" in action:
                self.chunk(b"".join(json.dumps(e).encode() + b"\n" for e in action["events"]))
            elif "raw" in action:
                self.chunk(action["raw"].encode())
            elif "gate" in action:
                with COND:
                    COND.wait_for(lambda: action["gate"] in GATES or QUIT.is_set())
                if QUIT.is_set():
                    break
            elif action.get("drop"):
                # No terminating chunk: the client sees the stream cut.
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            elif action.get("end"):
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                return
        self.serve_pushed(url.path, since)
        self.close_connection = True

    def serve_pushed(self, path, since):
        """Writes the events pushed on `path` above resourceVersion `since`
        so far, then registers the stream so that the stdin reader writes
        later pushes to it itself (one thread wake-up less per event), and
        idles until quit or until a write to it fails."""
        stream = {"handler": self, "since": since, "dead": threading.Event()}
        with COND:
            sent = [self.write_batch(stream, b) for b in PUSHED.get(path, [])]
            if not stream["dead"].is_set():
                STREAMS.setdefault(path, []).append(stream)
        emit_sent(path, sent)
        while not QUIT.is_set() and not stream["dead"].is_set():
            stream["dead"].wait(0.5)
        with COND:
            if stream in STREAMS.get(path, []):
                STREAMS[path].remove(stream)

    def write_batch(self, stream, batch):
        """Writes the events of one push above the stream's resourceVersion
        as one chunk (LOCK held); returns (last resourceVersion, monotonic
        ns) when it wrote, else None."""
        last, events = batch
        if last <= stream["since"] or stream["dead"].is_set():
            return None
        try:
            self.chunk(b"".join(json.dumps(e).encode() + b"\n"
                                for v, e in events if v > stream["since"]))
        except OSError:
            stream["dead"].set()
            return None
        return (last, time.monotonic_ns())

    def start_stream(self, status):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    tls = None

    def finish_request(self, request, client_address):
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as e:
                emit("TLS_REFUSED " + json.dumps(str(e)))
                return
        self.RequestHandlerClass(request, client_address, self)

    def handle_error(self, request, client_address):
        pass  # a client that went away mid-stream is not news


def emit_sent(path, sent):
    for done in sent:
        if done is not None:
            emit("SENT " + json.dumps({"path": path, "resourceVersion": str(done[0]),
                                       "monotonic_ns": done[1]}))


def push(path, events):
    """Appends a batch to PUSHED[path] and writes it to the watches of path
    that are waiting for pushes (LOCK held); returns (why it was refused or
    None, what was sent for emit_sent)."""
    log = PUSHED.setdefault(path, [])
    last = log[-1][0] if log else -1
    batch = []
    for i, e in enumerate(events):
        try:
            rv = e["object"]["metadata"]["resourceVersion"]
        except (KeyError, TypeError):
            return "events[%d]: no object.metadata.resourceVersion" % i, []
        if not isinstance(rv, str) or not rv.isdigit() or int(rv) <= last:
            return "events[%d]: resourceVersion %r is not a number above %d" % (i, rv, last), []
        last = int(rv)
        batch.append((last, e))
    if not batch:
        return None, []
    log.append((last, batch))
    return None, [st["handler"].write_batch(st, (last, batch)) for st in STREAMS.get(path, [])]


def read_commands():
    count = 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        command = json.loads(line)
        op = command["op"]
        refused, sent = None, []
        with COND:
            if op == "respond":
                SCRIPTS.setdefault((command["path"], bool(command.get("watch"))), []).append(
                    command["response"])
            elif op == "open":
                GATES.add(command["gate"])
                COND.notify_all()
            elif op == "push":
                refused, sent = push(command["path"], command["events"])
        # emit takes LOCK, which COND holds above.
        if op == "push":
            emit_sent(command["path"], sent)
        if refused:
            emit("MISMATCH push on %s: %s" % (command["path"], refused))
        count += 1
        emit("ACK %d" % count)
        if op == "quit":
            break
    QUIT.set()
    with COND:
        COND.notify_all()


def main():
    # Python hands the GIL between threads every 5 ms by default: a push
    # waking a stream thread could wait that long behind the stdin reader.
    # 0.2 ms keeps the server's own share of a pushed event small (see
    # bench/app/source_to_dataplane_bench.cc, which measures it).
    sys.setswitchinterval(0.0002)
    parser = argparse.ArgumentParser()
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--client-ca")
    parser.add_argument("--max-seconds", type=float, default=120)
    args = parser.parse_args()

    server = Server(("127.0.0.1", 0), Handler)
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            context.load_verify_locations(args.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        server.tls = context
    threading.Thread(target=server.serve_forever, daemon=True).start()
    emit("READY %d" % server.server_address[1])
    reader = threading.Thread(target=read_commands, daemon=True)
    reader.start()
    QUIT.wait(args.max_seconds)
    QUIT.set()
    with COND:
        COND.notify_all()
    os._exit(0)  # streams still open die with the process


if __name__ == "__main__":
    main()
