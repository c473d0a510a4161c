"""A small Hugging Face Hub-compatible HTTP server for tests: the endpoints `huggingface_hub`
calls to create a repo, commit (preupload, LFS batch + PUT, NDJSON commit), tag, list refs,
trees and commits, read repo info and download files. State is in memory; every call is recorded.

    hub = FakeHub().start()       # or the `fake_hub` fixture (HF_ENDPOINT points at it)
    hub.url                       # http://127.0.0.1:<port>
    hub.calls                     # [Call(method, path, query, token, body), ...] in arrival order
    hub.repos["user/name"]        # FakeRepo: .type, .private, .files (main head), .commits, .tags, .branches
    hub.fail("POST", "/commit/", 403, "no write access")   # the next matching call gets that error
    hub.stop()

Like the real Hub: writes need `Authorization: Bearer <token>` (401 otherwise; `hub.tokens`, when
set, lists the accepted ones); a private repo is invisible (404 RepoNotFound) without a token;
`create_repo` makes an initial commit with `.gitattributes`; the preupload answer says "lfs" for
binary or LFS-pattern files (parquet, safetensors, ...) and "regular" for the rest, and gives the
remote oid of files that already exist, so the client skips unchanged files; a tag that exists
is a 409. Xet storage is not implemented: the fixture sets HF_HUB_DISABLE_XET so the client
takes the LFS batch + PUT path (`hf_xet` would otherwise take over LFS uploads).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote

import pytest

PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_PATTERNS = ("*.parquet", "*.arrow", "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.gguf", "*.onnx",
                "*.npy", "*.npz", "*.zip", "*.gz", "*.tar", "*.zst", "*.h5", "*.msgpack", "*.pkl", "*.model")
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
_REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"
_TYPE = r"(?P<type>model|dataset|space)s"


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Blob:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n".encode()

    @property
    def oid(self) -> str:
        """The git object id the Hub reports: of the content, or of the LFS pointer file."""
        return git_oid(self.pointer if self.lfs else self.data)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else git_oid(self.data)


@dataclass
class FakeCommit:
    oid: str
    parent: str | None
    title: str
    message: str
    tree: dict[str, Blob]
    date: str


@dataclass
class FakeRepo:
    id: str
    type: str
    private: bool
    commits: list[FakeCommit] = field(default_factory=list)  # oldest first
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid
    tags: dict[str, str] = field(default_factory=dict)  # name -> commit oid
    tag_messages: dict[str, str | None] = field(default_factory=dict)

    def resolve(self, revision: str) -> FakeCommit | None:
        oid = self.branches.get(revision) or self.tags.get(revision) or revision
        return next((c for c in self.commits if c.oid == oid), None)

    def files_at(self, revision: str = "main") -> dict[str, bytes]:
        commit = self.resolve(revision)
        return {} if commit is None else {p: b.data for p, b in commit.tree.items()}

    @property
    def files(self) -> dict[str, bytes]:
        """The files at the head of main."""
        return self.files_at("main")

    def commit(self, branch: str, title: str, message: str, tree: dict[str, Blob]) -> FakeCommit:
        parent = self.branches.get(branch)
        seed = json.dumps([parent, title, len(self.commits), sorted((p, b.oid) for p, b in tree.items())])
        c = FakeCommit(hashlib.sha1(seed.encode()).hexdigest(), parent, title, message, tree,
                       time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))
        self.commits.append(c)
        self.branches[branch] = c.oid
        return c


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    token: str | None  # the Bearer token the client sent (None: no Authorization header)
    body: object = None  # parsed JSON / NDJSON lines with file contents replaced by their size

    @property
    def auth(self) -> bool:
        return self.token is not None


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


def _summary(value):
    """A JSON body without file contents: base64 blobs become their length."""
    if isinstance(value, dict):
        return {k: (f"<{len(v)} chars>" if k in ("content", "sample") and isinstance(v, str) else _summary(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_summary(v) for v in value]
    return value


class FakeHub:
    def __init__(self, user: str = "tester", tokens: set[str] | None = None):
        self.user, self.tokens = user, tokens
        self.repos: dict[str, FakeRepo] = {}
        self.calls: list[Call] = []
        self.lfs: dict[str, bytes] = {}  # sha256 -> content uploaded through the LFS PUT
        self.faults: list[tuple[str, str, int, str, int]] = []  # method, path regex, status, message, times
        self.url = ""
        self._server = None
        self._thread: threading.Thread | None = None
        self._routes = [
            ("GET", r"/api/whoami-v2", self._whoami),
            ("POST", r"/api/validate-yaml", self._validate_yaml),
            ("POST", r"/api/repos/create", self._create_repo),
            ("DELETE", r"/api/repos/delete", self._delete_repo),
            ("GET", rf"/api/{_TYPE}/{_REPO}/refs", self._refs),
            ("GET", rf"/api/{_TYPE}/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", self._tree),
            ("GET", rf"/api/{_TYPE}/{_REPO}/commits/(?P<rev>[^/]+)", self._commits),
            ("POST", rf"/api/{_TYPE}/{_REPO}/preupload/(?P<rev>[^/]+)", self._preupload),
            ("POST", rf"/api/{_TYPE}/{_REPO}/commit/(?P<rev>[^/]+)", self._commit),
            ("POST", rf"/api/{_TYPE}/{_REPO}/tag/(?P<rev>[^/]+)", self._create_tag),
            ("DELETE", rf"/api/{_TYPE}/{_REPO}/tag/(?P<tag>[^/]+)", self._delete_tag),
            ("POST", rf"/api/{_TYPE}/{_REPO}/branch/(?P<branch>[^/]+)", self._create_branch),
            ("GET", rf"/api/{_TYPE}/{_REPO}/revision/(?P<rev>[^/]+)", self._info),
            ("GET", rf"/api/{_TYPE}/{_REPO}", self._info),
            ("POST", rf"/(?P<prefix>datasets/|spaces/)?{_REPO}\.git/info/lfs/objects/batch", self._lfs_batch),
            ("POST", rf"/(?P<prefix>datasets/|spaces/)?{_REPO}\.git/info/lfs/objects/verify", self._lfs_verify),
            ("PUT", r"/lfs-upload/(?P<oid>[0-9a-f]{64})", self._lfs_put),
            ("GET", rf"/(?P<prefix>datasets/|spaces/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", self._resolve),
            ("HEAD", rf"/(?P<prefix>datasets/|spaces/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", self._resolve),
        ]

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> FakeHub:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self._asgi, interface="asgi3", log_level="warning", lifespan="off", access_log=False,
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name="fake-hub")
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake hub did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    # -- test helpers -----------------------------------------------------------------------
    def fail(self, method: str, path_regex: str, status: int, message: str, times: int = 1) -> None:
        """The next `times` calls whose path matches get `status` with `{"error": message}`."""
        self.faults.append((method, path_regex, status, message, times))

    def calls_to(self, method: str, path_regex: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and re.search(path_regex, c.path)]

    def commits(self, repo_id: str) -> list[FakeCommit]:
        """Commits made through the API (the initial `.gitattributes` commit of create_repo left out)."""
        return self.repos[repo_id].commits[1:]

    # -- HTTP plumbing ----------------------------------------------------------------------
    async def _asgi(self, scope, receive, send) -> None:
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response

        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        raw = await request.body()
        path = scope.get("raw_path", scope["path"].encode()).decode().split("?", 1)[0]
        auth = request.headers.get("authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        body = None
        if raw and "ndjson" in request.headers.get("content-type", ""):
            body = [json.loads(line) for line in raw.splitlines() if line.strip()]
        elif raw and "json" in request.headers.get("content-type", ""):
            body = json.loads(raw)
        call = Call(request.method, path, dict(request.query_params), token,
                    _summary(body) if body is not None else (f"<{len(raw)} bytes>" if raw else None))
        self.calls.append(call)
        try:
            for i, (method, regex, status, message, times) in enumerate(self.faults):
                if method == request.method and re.search(regex, path):
                    self.faults[i] = (method, regex, status, message, times - 1)
                    if times <= 1:
                        del self.faults[i]
                    raise HubError(status, message)
            for method, regex, handler in self._routes:
                m = re.fullmatch(regex, path)
                if m and method == request.method:
                    params = {k: unquote(v) for k, v in m.groupdict().items() if v is not None}
                    result = handler(call=call, raw=raw, body=body, headers=request.headers, **params)
                    break
            else:
                raise HubError(404, f"no such endpoint: {request.method} {path}")
        except HubError as e:
            headers = {"X-Error-Message": e.message}
            if e.code:
                headers["X-Error-Code"] = e.code
            response = JSONResponse({"error": e.message, **e.extra}, status_code=e.status, headers=headers)
            await response(scope, receive, send)
            return
        if isinstance(result, Response):
            await result(scope, receive, send)
        else:
            await JSONResponse(result)(scope, receive, send)

    # -- helpers ----------------------------------------------------------------------------
    def _authorize(self, call: Call) -> None:
        if call.token is None:
            raise HubError(401, "You must be authenticated to access this resource")
        if self.tokens is not None and call.token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")

    def _repo(self, repo: str, type: str, call: Call) -> FakeRepo:
        r = self.repos.get(repo)
        if r is None or r.type != type or (r.private and call.token is None):
            raise HubError(404, "Repository not found", "RepoNotFound")
        if r.private:
            self._authorize(call)
        return r

    def _commit_of(self, r: FakeRepo, rev: str) -> FakeCommit:
        c = r.resolve(rev)
        if c is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return c

    def _repo_url(self, r: FakeRepo) -> str:
        return f"{self.url}/{PREFIX[r.type]}{r.id}"

    # -- endpoints --------------------------------------------------------------------------
    def _whoami(self, call, **_):
        self._authorize(call)
        return {"type": "user", "name": self.user, "fullname": self.user, "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}}

    def _validate_yaml(self, body, **_):
        import yaml

        content = body.get("content", "")
        match = re.match(r"^---\n(.*?)\n---\n", content, re.DOTALL)
        try:
            meta = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as e:
            raise HubError(400, f"Invalid YAML in README.md metadata: {e}") from None
        for c in (meta or {}).get("configs", []):
            if not isinstance(c, dict) or "config_name" not in c or "data_files" not in c:
                raise HubError(400, f"configs: each entry needs config_name and data_files, got {c!r}")
        return {"errors": [], "warnings": []}

    def _create_repo(self, call, body, **_):
        self._authorize(call)
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or self.user}/{body['name']}"
        if repo_id in self.repos:  # the Hub's 409 carries the existing repo's url (create_repo(exist_ok=True) reads it)
            raise HubError(409, "You already created this repo", url=self._repo_url(self.repos[repo_id]))
        private = body.get("visibility", "private" if body.get("private") else "public") != "public"
        r = self.repos[repo_id] = FakeRepo(repo_id, repo_type, private)
        r.commit("main", "initial commit", "", {".gitattributes": Blob(GITATTRIBUTES, False)})
        return {"url": self._repo_url(r), "name": repo_id, "id": repo_id}

    def _delete_repo(self, call, body, **_):
        self._authorize(call)
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        if self.repos.pop(repo_id, None) is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return {}

    def _info(self, call, repo, type, rev="main", **_):
        r = self._repo(repo, type, call)
        c = self._commit_of(r, rev)
        siblings = [{"rfilename": p, "size": len(b.data), "blobId": b.oid,
                     **({"lfs": {"size": len(b.data), "sha256": b.sha256, "pointerSize": len(b.pointer)}}
                        if b.lfs else {})} for p, b in sorted(c.tree.items())]
        return {"id": r.id, "_id": r.id, "author": r.id.split("/")[0], "sha": c.oid, "private": r.private,
                "gated": False, "disabled": False, "lastModified": c.date, "createdAt": r.commits[0].date,
                "tags": [], "siblings": siblings, "downloads": 0, "likes": 0}

    def _refs(self, call, repo, type, **_):
        r = self._repo(repo, type, call)
        return {"branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": o} for n, o in r.branches.items()],
                "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": o} for n, o in r.tags.items()],
                "converts": [], **({"pullRequests": []} if "include_prs" in call.query else {})}

    def _tree(self, call, repo, type, rev, path="", **_):
        r = self._repo(repo, type, call)
        c = self._commit_of(r, rev)
        recursive = call.query.get("recursive", "false").lower() in ("1", "true")
        base = path.strip("/") + "/" if path else ""
        entries, folders = [], set()
        for p, b in sorted(c.tree.items()):
            if not p.startswith(base):
                continue
            rest = p[len(base):]
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                if recursive or depth == 1:
                    folders.add(base + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entries.append({"type": "file", "oid": b.oid, "size": len(b.data), "path": p,
                                **({"lfs": {"oid": b.sha256, "size": len(b.data), "pointerSize": len(b.pointer)}}
                                   if b.lfs else {})})
        if path and not entries and not folders:
            raise HubError(404, f"{path} does not exist at {rev}", "EntryNotFound")
        dirs = [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}
                for f in sorted(folders)]
        return dirs + entries

    def _commits(self, call, repo, type, rev, **_):
        r = self._repo(repo, type, call)
        c, out = self._commit_of(r, rev), []
        while c is not None:
            out.append({"id": c.oid, "title": c.title, "message": c.message, "date": c.date,
                        "authors": [{"user": self.user}]})
            c = r.resolve(c.parent) if c.parent else None
        return out

    def _preupload(self, call, repo, type, rev, body, **_):
        self._authorize(call)
        r = self._repo(repo, type, call)
        tree = self._commit_of(r, rev).tree
        files = []
        for f in body["files"]:
            sample = base64.b64decode(f["sample"])
            lfs = (any(fnmatch.fnmatch(f["path"].rsplit("/", 1)[-1], p) for p in LFS_PATTERNS)
                   or b"\0" in sample or f["size"] > 10_000_000)
            old = tree.get(f["path"])
            oid = None if old is None else (old.sha256 if old.lfs else git_oid(old.data))
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": oid})
        return {"files": files, "commitOid": r.branches.get(rev)}

    def _lfs_batch(self, call, repo, body, prefix="", **_):
        self._authorize(call)
        type = {"": "model", "datasets/": "dataset", "spaces/": "space"}[prefix]
        r = self._repo(repo, type, call)
        objects = []
        for o in body["objects"]:
            entry = {"oid": o["oid"], "size": o["size"], "authenticated": True}
            if o["oid"] not in self.lfs:
                entry["actions"] = {
                    "upload": {"href": f"{self.url}/lfs-upload/{o['oid']}", "header": {}},
                    "verify": {"href": f"{self.url}/{PREFIX[r.type]}{r.id}.git/info/lfs/objects/verify",
                               "header": {}}}
            objects.append(entry)
        return {"transfer": "basic", "objects": objects}

    def _lfs_put(self, raw, oid, **_):
        from starlette.responses import Response

        if hashlib.sha256(raw).hexdigest() != oid:
            raise HubError(400, "content does not match its sha256")
        self.lfs[oid] = raw
        return Response(status_code=200)

    def _lfs_verify(self, call, body, **_):
        self._authorize(call)
        if body["oid"] not in self.lfs or len(self.lfs[body["oid"]]) != body["size"]:
            raise HubError(404, f"LFS object {body['oid']} not uploaded")
        return {}

    def _commit(self, call, repo, type, rev, body, **_):
        self._authorize(call)
        r = self._repo(repo, type, call)
        if rev not in r.branches:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        header = next(line["value"] for line in body if line["key"] == "header")
        parent = header.get("parentCommit")
        if parent and parent != r.branches[rev]:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        tree = dict(self._commit_of(r, rev).tree)
        for line in body:
            key, value = line["key"], line["value"]
            if key == "file":
                tree[value["path"]] = Blob(base64.b64decode(value["content"]), False)
            elif key == "lfsFile":
                if value["oid"] not in self.lfs:
                    raise HubError(422, f"LFS file {value['path']} ({value['oid']}) was not uploaded")
                tree[value["path"]] = Blob(self.lfs[value["oid"]], True)
            elif key == "deletedFile":
                if tree.pop(value["path"], None) is None:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
            elif key == "deletedFolder":
                folder = value["path"].rstrip("/") + "/"
                tree = {p: b for p, b in tree.items() if not p.startswith(folder)}
        c = r.commit(rev, header["summary"], header.get("description", ""), tree)
        return {"success": True, "commitOid": c.oid, "commitUrl": f"{self._repo_url(r)}/commit/{c.oid}",
                "hookOutput": "", "pullRequestUrl": None}

    def _create_tag(self, call, repo, type, rev, body, **_):
        self._authorize(call)
        r = self._repo(repo, type, call)
        c = self._commit_of(r, rev)
        if body["tag"] in r.tags or body["tag"] in r.branches:
            raise HubError(409, f"Tag {body['tag']} already exists")
        r.tags[body["tag"]] = c.oid
        r.tag_messages[body["tag"]] = body.get("message")
        return {}

    def _delete_tag(self, call, repo, type, tag, **_):
        self._authorize(call)
        r = self._repo(repo, type, call)
        if r.tags.pop(tag, None) is None:
            raise HubError(404, f"Tag {tag} does not exist", "RevisionNotFound")
        return {}

    def _create_branch(self, call, repo, type, branch, body, **_):
        self._authorize(call)
        r = self._repo(repo, type, call)
        if branch in r.branches:
            raise HubError(409, f"Branch {branch} already exists")
        start = (body or {}).get("startingPoint") or "main"
        r.branches[branch] = self._commit_of(r, start).oid
        return {}

    def _resolve(self, call, repo, rev, path, prefix="", **_):
        from starlette.responses import Response

        type = {"": "model", "datasets/": "dataset", "spaces/": "space"}[prefix]
        r = self._repo(repo, type, call)
        c = self._commit_of(r, rev)
        b = c.tree.get(path)
        if b is None:
            raise HubError(404, f"{path} does not exist at {rev}", "EntryNotFound")
        headers = {"X-Repo-Commit": c.oid, "ETag": f'"{b.etag}"', "Content-Length": str(len(b.data))}
        if b.lfs:
            headers.update({"X-Linked-Etag": f'"{b.sha256}"', "X-Linked-Size": str(len(b.data))})
        return Response(b"" if call.method == "HEAD" else b.data, headers=headers,
                        media_type="application/octet-stream")


@pytest.fixture
def fake_hub(tmp_path_factory, monkeypatch):
    """A FakeHub that the real `huggingface_hub` client in this process talks to: HF_ENDPOINT (for
    subprocesses) and the client's constants (read at import) point at it; the token file and the
    download cache are in a temporary folder, so a developer's own login never reaches a test."""
    from huggingface_hub import constants

    hub = FakeHub().start()
    home = tmp_path_factory.mktemp("hf_home")
    for name, value in (("HF_ENDPOINT", hub.url), ("HF_HUB_DISABLE_XET", "1"), ("HF_HOME", str(home))):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for name, value in (("ENDPOINT", hub.url),
                        ("HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"),
                        ("HF_HUB_DISABLE_XET", True), ("HF_HUB_OFFLINE", False),
                        ("HF_TOKEN_PATH", str(home / "token")), ("HF_STORED_TOKENS_PATH", str(home / "stored_tokens")),
                        ("HF_HUB_CACHE", str(home / "hub"))):
        monkeypatch.setattr(constants, name, value)
    yield hub
    hub.stop()

