"""A tiny real HTTP server that answers from a script, for client tests that need exact bytes.

Each scripted answer is (status, headers, body) or the string "drop" (close the connection after
reading the request, without answering). Received requests are recorded.
"""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ScriptedServer:
    def __init__(self):
        self.answers = []
        self.received = []  # (method, path, headers, body)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server._lock:
                    server.received.append((self.command, self.path, dict(self.headers), body))
                    answer = server.answers.pop(0) if server.answers else (200, {}, b"{}")
                if answer == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                status, headers, payload = answer
                payload = payload.encode() if isinstance(payload, str) else payload
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def answer(self, status, body=b"", headers=None):
        self.answers.append((status, {"Content-Type": "application/json", **(headers or {})}, body))

    def drop(self):
        self.answers.append("drop")

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
