"""The shop's API: / (what it serves), /health, /api/items and /api/info, on port 8000."""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from common import cache, database

EXPECTED_SCHEMA = 2


def health() -> tuple[int, dict]:
    report = {"status": "healthy", "database": "ok", "cache": "ok"}
    try:
        with database() as conn, conn.cursor() as cur:
            cur.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
            version = cur.fetchone()[0]
            if version < EXPECTED_SCHEMA:
                report["database"] = f"schema at {version}, expected {EXPECTED_SCHEMA}"
        conn.close()
    except Exception as exc:  # any failure makes the service degraded
        report["database"] = f"error: {type(exc).__name__}"
    try:
        cache().ping()
    except Exception as exc:
        report["cache"] = f"error: {type(exc).__name__}"
    if report["database"] != "ok" or report["cache"] != "ok":
        report["status"] = "degraded"
        return 503, report
    return 200, report


def items() -> tuple[int, dict]:
    with database() as conn, conn.cursor() as cur:
        cur.execute("SELECT name, price_cents FROM items ORDER BY id")
        rows = [{"name": name, "price_cents": price} for name, price in cur.fetchall()]
    conn.close()
    hits = cache().incr("shop:item-views")
    return 200, {"items": rows, "views": hits}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        routes = {
            "/": lambda: (200, {"service": "shop", "paths": ["/health", "/api/items", "/api/info"]}),
            "/health": health,
            "/api/items": items,
            "/api/info": lambda: (200, {"release": os.environ.get("APP_RELEASE", "dev")}),
        }
        route = routes.get(self.path.split("?")[0])
        if route is None:
            status, body = 404, {"error": "not found"}
        else:
            try:
                status, body = route()
            except Exception as exc:
                status, body = 500, {"error": type(exc).__name__}
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt: str, *args: object) -> None:
        print(f"{self.address_string()} {fmt % args}", flush=True)


def stop(signum: int, frame: object) -> None:
    # As PID 1 the process gets no default SIGTERM handling: without this, every
    # `docker stop` (each redeploy) would wait out its 10 s grace and then kill.
    print("shop api stopping", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, stop)
    print("shop api listening on :8000", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
