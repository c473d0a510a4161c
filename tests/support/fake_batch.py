"""A fake OpenAI Batch API on 127.0.0.1, for the real `openai` SDK (tests and benchmarks/batch.py).

    POST /v1/files                    multipart upload (purpose=batch): a file object
    GET  /v1/files/{id}               the file object
    GET  /v1/files/{id}/content       its bytes (input, output or error JSONL)
    POST /v1/batches                  create from an uploaded file: status `validating`
    GET  /v1/batches/{id}             retrieve: each call moves a batch on by one step
    POST /v1/batches/{id}/cancel      `cancelling`, then `cancelled` on the next retrieve
    GET  /v1/batches?limit=&after=    list, newest first, paginated

A batch spends `steps` retrieves in each of validating -> in_progress -> finalizing (steps=0:
done on the first retrieve), then ends as `fates[k]` (k: the order batches were created in;
default `completed`):
  completed  every line answered in the output file, except those `request_error(custom_id, body)`
             fails: they go to the error file (a 4xx/5xx `response`, or an `error` object, in turn)
  expired    the first `keep` fraction answered, the rest in the error file as `batch_expired`
  failed     no files; `errors.data` says why (validation failed)
  cancelled  the first `keep` fraction answered, the rest in no file
`answer(body)` gives the assistant message of a line (default: `answer to <prompt[:40]>`).
`created` lists every batch's custom_ids in creation order, so tests can check none was sent twice.

In a thread:      srv = FakeBatchAPI(steps=1).start(); srv.base_url; ...; srv.stop()
As a subprocess:  python tests/support/fake_batch.py --port 0   (prints `READY <port>`)
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

STAGES = ("validating", "in_progress", "finalizing")


def default_answer(body: dict) -> dict:
    prompt = str(body["messages"][-1].get("content") or "")
    return {"role": "assistant", "content": f"answer to {prompt[:40]}"}


class FakeBatchAPI:
    def __init__(self, steps: int = 1, fates: list[str] | None = None, keep: float = 0.5,
                 request_error: Callable[[str, dict], bool] | None = None,
                 answer: Callable[[dict], dict] = default_answer, usage_tokens: int = 12):
        self.steps, self.fates, self.keep = steps, list(fates or []), keep
        self.request_error, self.answer, self.usage_tokens = request_error, answer, usage_tokens
        self.files: dict[str, dict] = {}  # id -> {"meta": file object, "data": bytes}
        self.batches: dict[str, dict] = {}  # id -> {"obj": batch object, "left": [stages], "fate": str}
        self.order: list[str] = []  # batch ids in creation order
        self.created: list[list[str]] = []  # custom_ids of each batch, in creation order
        self.retrieves = 0
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self, port: int = 0) -> FakeBatchAPI:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                api._handle(self, "GET")

            def do_POST(self):
                api._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def set(self, **settings) -> None:
        """Change steps, fates, keep, request_error or answer between runs."""
        with self.lock:
            for k, v in settings.items():
                setattr(self, k, list(v) if k == "fates" else v)
            if "steps" in settings:  # batches in flight move on at the new pace too
                for b in self.batches.values():
                    b["left"] = b["left"][len(b["left"]) - min(len(b["left"]), 3 * self.steps):]

    # -- HTTP ---------------------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        parts = [p for p in url.path.split("/") if p][1:]  # drop "v1"
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            with self.lock:
                status, payload = self._route(method, parts, parse_qs(url.query), raw, h.headers)
        except Exception as e:  # noqa: BLE001 - a fake: answer 500 with the reason
            status, payload = 500, {"error": {"message": f"{type(e).__name__}: {e}", "type": "server_error"}}
        if isinstance(payload, bytes):
            body, ctype = payload, "application/octet-stream"
        else:
            body, ctype = json.dumps(payload).encode(), "application/json"
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def _route(self, method, parts, query, raw, headers):
        if parts[:1] == ["files"]:
            if method == "POST" and len(parts) == 1:
                return 200, self._upload(raw, headers.get("Content-Type", ""))
            f = self.files.get(parts[1]) if len(parts) > 1 else None
            if f is None:
                return 404, {"error": {"message": "no such file", "type": "invalid_request_error"}}
            return 200, (f["data"] if parts[2:] == ["content"] else f["meta"])
        if parts[:1] == ["batches"]:
            if method == "POST" and len(parts) == 1:
                return self._create(json.loads(raw))
            if method == "GET" and len(parts) == 1:
                return 200, self._list(int(query.get("limit", ["20"])[0]), (query.get("after") or [None])[0])
            b = self.batches.get(parts[1])
            if b is None:
                return 404, {"error": {"message": "no such batch", "type": "invalid_request_error"}}
            if method == "POST" and parts[2:] == ["cancel"]:
                if b["obj"]["status"] not in ("completed", "failed", "expired", "cancelled"):
                    b["obj"]["status"], b["left"], b["fate"] = "cancelling", [], "cancelled"
                    b["obj"]["cancelling_at"] = int(time.time())
                return 200, b["obj"]
            self.retrieves += 1
            self._advance(b)
            return 200, b["obj"]
        return 404, {"error": {"message": f"no route {method} /{'/'.join(parts)}"}}

    def _new_file(self, data: bytes, filename: str, purpose: str) -> dict:
        fid = "file-" + uuid.uuid4().hex[:24]
        meta = {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed"}
        self.files[fid] = {"meta": meta, "data": data}
        return meta

    def _upload(self, raw: bytes, ctype: str) -> dict:
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
        fields, data, filename = {}, b"", "upload.jsonl"
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                data = part.get_payload(decode=True) or b""
                filename = part.get_filename() or filename
            else:
                fields[name] = part.get_content().strip()
        return self._new_file(data, filename, fields.get("purpose", "batch"))

    def _create(self, req: dict):
        f = self.files.get(req.get("input_file_id"))
        if f is None:
            return 400, {"error": {"message": "input_file_id not found", "type": "invalid_request_error"}}
        bid = "batch_" + uuid.uuid4().hex[:24]
        lines = [json.loads(x) for x in f["data"].splitlines() if x.strip()]
        fate = self.fates[len(self.order)] if len(self.order) < len(self.fates) else "completed"
        now = int(time.time())
        obj = {"id": bid, "object": "batch", "endpoint": req["endpoint"], "errors": None,
               "input_file_id": f["meta"]["id"], "completion_window": req.get("completion_window", "24h"),
               "status": "validating", "output_file_id": None, "error_file_id": None, "created_at": now,
               "expires_at": now + 86400, "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
               "metadata": req.get("metadata")}
        self.batches[bid] = {"obj": obj, "lines": lines, "fate": fate,
                             "left": [s for s in STAGES for _ in range(self.steps)][1:]}
        self.order.append(bid)
        self.created.append([line["custom_id"] for line in lines])
        return 200, obj

    def _list(self, limit: int, after: str | None) -> dict:
        ids = list(reversed(self.order))
        if after in ids:
            ids = ids[ids.index(after) + 1:]
        page = ids[:limit]
        return {"object": "list", "data": [self.batches[i]["obj"] for i in page],
                "first_id": page[0] if page else None, "last_id": page[-1] if page else None,
                "has_more": len(ids) > limit}

    # -- a batch moves on -----------------------------------------------------------------------------------
    def _advance(self, b: dict) -> None:
        obj = b["obj"]
        if obj["status"] in ("completed", "failed", "expired", "cancelled"):
            return
        if b["left"]:
            obj["status"] = b["left"].pop(0)
            return
        self._finish(b)

    def _completion(self, line: dict) -> dict:
        body = line["body"]
        message = self.answer(body)
        prompt_chars = sum(len(str(m.get("content") or "")) for m in body["messages"])
        usage = {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": self.usage_tokens,
                 "total_tokens": prompt_chars // 4 + 1 + self.usage_tokens}
        if message.get("reasoning_tokens") is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": message.pop("reasoning_tokens")}
        return {"id": "chatcmpl-" + uuid.uuid4().hex[:12], "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model"), "usage": usage,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}]}

    def _finish(self, b: dict) -> None:
        obj, fate, lines = b["obj"], b["fate"], b["lines"]
        now = int(time.time())
        if fate == "failed":
            obj["status"], obj["failed_at"] = "failed", now
            obj["errors"] = {"object": "list", "data": [
                {"code": "invalid_request", "message": "the fake failed this batch at validation", "line": 1,
                 "param": None}]}
            return
        answered = lines if fate == "completed" else lines[: int(len(lines) * self.keep)]
        out, err = [], []
        for k, line in enumerate(answered):
            cid = line["custom_id"]
            if self.request_error and self.request_error(cid, line["body"]):
                if len(err) % 2 == 0:
                    err.append({"id": "batch_req_" + uuid.uuid4().hex[:12], "custom_id": cid,
                                "response": {"status_code": 500, "request_id": "r",
                                             "body": {"error": {"message": "the fake failed this request",
                                                                "type": "server_error"}}}, "error": None})
                else:
                    err.append({"id": "batch_req_" + uuid.uuid4().hex[:12], "custom_id": cid, "response": None,
                                "error": {"code": "server_error", "message": "the fake failed this request"}})
                continue
            out.append({"id": "batch_req_" + uuid.uuid4().hex[:12], "custom_id": cid,
                        "response": {"status_code": 200, "request_id": "r", "body": self._completion(line)},
                        "error": None})
        if fate == "expired":
            err.extend({"id": "batch_req_" + uuid.uuid4().hex[:12], "custom_id": line["custom_id"], "response": None,
                        "error": {"code": "batch_expired", "message": "This request could not be executed before "
                                  "the completion window expired."}} for line in lines[len(answered):])
        for name, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                data = "".join(json.dumps(r) + "\n" for r in rows).encode()
                obj[name] = self._new_file(data, f"{obj['id']}_{name}.jsonl", "batch_output")["id"]
        obj["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(err)}
        obj["status"] = fate
        obj[f"{fate}_at"] = now


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--steps", type=int, default=0)
    args = ap.parse_args()
    srv = FakeBatchAPI(steps=args.steps).start(args.port)
    print(f"READY {srv.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    sys.exit(main())
