#!/usr/bin/env python3
"""A minimal Cobalt webhook receiver: hands each delivery to the database.

    PGHOST=... PGPORT=... PGDATABASE=app python3 examples/webhook_receiver.py --port 8080

Cobalt POSTs each event here with headers cobalt-verification (hex
HMAC-SHA256 of the body) and webhook-id.  The receiver passes the exact body
bytes, the signature and the id to cobalt_ingest_webhook(), which verifies
the signature, records the event and settles the job, and answers 200 once
the database has it (Cobalt retries once on a 5xx).  The body travels to
psql as a variable, never spliced into SQL text.

Python standard library and the psql client only; a production receiver
would use a connection pool instead of one psql per delivery.
"""
import argparse
import http.server
import subprocess
import sys

SQL = "SELECT cobalt_ingest_webhook(:'body', :'signature', NULLIF(:'webhook_id', ''));\n"


class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8")
        signature = self.headers.get("cobalt-verification", "")
        webhook_id = self.headers.get("webhook-id", "")
        result = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-v", "body=" + body, "-v", "signature=" + signature,
             "-v", "webhook_id=" + webhook_id],
            input=SQL, capture_output=True, text=True, timeout=5)
        if result.returncode == 0:
            status, answer = 200, b"ok\n"
        elif "signature does not match" in result.stderr:
            status, answer = 401, b"bad signature\n"
        else:
            status, answer = 500, b"could not record the event\n"
            sys.stderr.write(result.stderr)
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, fmt, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer((args.host, args.port), Receiver)
    server.serve_forever()


if __name__ == "__main__":
    main()
