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
         {"op": "quit"}                (EOF on stdin does the same)
  stdout READY <port>                  once listening on 127.0.0.1
         ACK <n>                       after the n-th stdin command
         REQUEST {"path": .., "query": {..}, "watch": bool,
                  "authorization": .., "client_cn": ..}
                                       before each request is answered
         MISMATCH <text>               a request failed its "expect"

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
import urllib.parse

LOCK = threading.Lock()
COND = threading.Condition(LOCK)
SCRIPTS = {}  # (path, watch) -> [response, ...]
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
        if response is None:
            if watch:
                self.start_stream(200)
                QUIT.wait()
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
        QUIT.wait()
        self.close_connection = True

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


def read_commands():
    count = 0
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        command = json.loads(line)
        op = command["op"]
        with COND:
            if op == "respond":
                SCRIPTS.setdefault((command["path"], bool(command.get("watch"))), []).append(
                    command["response"])
            elif op == "open":
                GATES.add(command["gate"])
                COND.notify_all()
        count += 1
        emit("ACK %d" % count)
        if op == "quit":
            break
    QUIT.set()
    with COND:
        COND.notify_all()


def main():
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
