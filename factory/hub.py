"""Publishing: push an exported version to the Hugging Face Hub as one commit, tagged v<N>.

The dataset repo is created if missing (private unless publish.private is false); the export
folder (Parquet shards + the dataset card) goes up in one commit on publish.branch, which also
deletes shards of an older version under sft/, dpo/ and soft_labels/ that this one does not have
(so the card's `sft/*.parquet` globs never pick up stale files); the commit is tagged `v<N>` and
its sha recorded in versions.published_revision. Publishing a version whose tag already exists
with the same files is a no-op. A version with no kept traces, or one that keeps more than
publish.max_shrink fewer than the last published version, is refused unless forced (`--force`):
a broken source or mapping must never replace the data on the Hub with nothing. The token comes
from the environment (publish.token_env, else the user's huggingface_hub login) and is never
printed, stored or written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from factory.config import Config
from factory.errors import HubError  # noqa: F401 - raised here; importable from this module too
from factory.export import export_dir, export_version
from factory.store import Store
from factory.versions import version_row

REPO_TYPE = "dataset"
MANAGED = ("sft/", "dpo/", "soft_labels/")  # folders whose files a version replaces as a whole


@dataclass
class PublishResult:
    version: int
    repo_id: str
    revision: str | None  # the tagged commit; None on a dry run
    tag: str
    url: str
    files: list[str]
    noop: bool = False  # the tag already held these files: nothing was committed
    dry_run: bool = False
    plan_path: Path | None = None  # dry run: <workdir>/publish/v<N>/commit_plan.json
    size_bytes: int = 0
    deleted: list[str] = field(default_factory=list)  # stale shards the commit removed


# -- the size guard: never ship emptiness ---------------------------------------------------------

@dataclass
class SizeCheck:
    """A version's kept traces against the last published version's (publish.max_shrink)."""

    version: int
    kept: int
    baseline: int | None  # the last published version other than this one; None: nothing published yet
    baseline_kept: int | None
    max_shrink: float | None

    @property
    def shrink(self) -> float | None:
        """The share of the baseline's kept traces this version lacks (negative: it grew)."""
        return round(1 - self.kept / self.baseline_kept, 4) if self.baseline_kept else None

    @property
    def empty(self) -> bool:
        return self.kept == 0

    @property
    def too_small(self) -> bool:
        return (self.max_shrink is not None and self.shrink is not None
                and self.shrink > self.max_shrink + 1e-9)

    @property
    def refused(self) -> bool:
        return self.empty or self.too_small

    def reason(self, force_hint: str = "pass --force to publish it anyway") -> str:
        """One line naming the version, its size, the baseline and its size, and how to force it."""
        base = (f"the last published version v{self.baseline} keeps {self.baseline_kept}" if self.baseline is not None
                else "no version is published yet")
        if self.empty:
            what = f"v{self.version} keeps 0 traces ({base})"
        else:
            what = (f"v{self.version} keeps {self.kept} traces, {self.shrink:.0%} fewer than {base} "
                    f"(publish.max_shrink = {self.max_shrink})")
        return f"{what}; check the sources and the funnel, or {force_hint}"


def _kept(store: Store, version: int) -> int:
    return store.scalar("SELECT count(*) FROM kept WHERE version = ?", [version])


def size_check(store: Store, version: int, max_shrink: float | None) -> SizeCheck:
    """`version`'s kept traces against the last published version other than it (publish.max_shrink).
    Not the comparison baseline (factory.versions.baseline_version): this guards what the Hub holds now."""
    baseline = store.scalar("SELECT max(version) FROM versions WHERE published_revision IS NOT NULL AND version <> ?",
                            [version])
    return SizeCheck(version, _kept(store, version), baseline,
                     None if baseline is None else _kept(store, baseline), max_shrink)


# -- publishing --------------------------------------------------------------------------------

def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "<redacted>") if token else text


def hub_token(cfg: Config) -> str:
    """The token from publish.token_env, else the user's huggingface_hub login; HubError when neither."""
    from huggingface_hub import get_token

    token = os.environ.get(cfg.publish.token_env) or get_token()
    if not token:
        raise HubError(f"no Hugging Face token: set {cfg.publish.token_env} (publish.token_env) "
                       "or log in with `hf auth login`")
    return token


def one_line(e: BaseException, token: str | None) -> str:
    """The Hub's status and message from a client error (or its cause), on one line, token redacted."""
    from huggingface_hub.errors import HfHubHTTPError

    cause = e
    while cause is not None and not isinstance(cause, HfHubHTTPError):
        cause = cause.__cause__
    if cause is not None and getattr(cause, "response", None) is not None:
        r = cause.response
        message = cause.server_message or str(cause).strip().splitlines()[0]
        text = f"{r.status_code} from {r.request.method} {r.request.url.path}: {message}"
    else:
        text = str(e).strip()
    return _redact(" ".join(text.split()), token)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _same_files(api, repo_id: str, revision: str, folder: Path, files: list[str]) -> bool:
    """Whether `revision` holds exactly these files (the managed ones and the card), byte for byte."""
    from huggingface_hub.hf_api import RepoFile
    from huggingface_hub.utils.sha import git_hash

    remote = {f.path: f for f in api.list_repo_tree(repo_id, repo_type=REPO_TYPE, revision=revision, recursive=True)
              if isinstance(f, RepoFile) and (f.path == "README.md" or f.path.startswith(MANAGED))}
    if set(remote) != set(files):
        return False
    for name in files:
        f = remote[name]
        local = _sha256(folder / name) if f.lfs else git_hash((folder / name).read_bytes())
        if local != (f.lfs.sha256 if f.lfs else f.blob_id):
            return False
    return True


def publish_version(cfg: Config, version: int | None = None, dry_run: bool = False,
                    console: Console | None = None, force: bool = False) -> PublishResult:
    """Push the export of `version` (default: the latest) to publish.repo_id; see the module docstring.
    HubError when the version is empty or shrank by more than publish.max_shrink, unless `force`."""
    console = console or Console(stderr=True)
    repo_id = cfg.publish.repo_id
    if not repo_id:
        raise HubError("publish.repo_id is not set (e.g. --set publish.repo_id=your-name/your-dataset)")
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise HubError(f"publish.repo_id: {str(e).splitlines()[0]}") from None
    if not cfg.store_path.exists():
        raise HubError(f"{cfg.store_path}: no store yet (run `factory build dataset` first)")
    with Store(cfg.store_path) as store:
        try:
            version, (counts, recorded) = version_row(store, version, "counts, published_revision")
        except LookupError as e:
            raise HubError(str(e)) from None
        counts = json.loads(counts)
        # a version already published is only ever a no-op again; anything else is checked for size
        sized = size_check(store, version, cfg.publish.max_shrink)
    if recorded is None and sized.refused:
        if not force:
            raise HubError(f"refusing to publish: {sized.reason()}")
        console.print(f"[yellow]--force:[/] publishing {sized.reason().split(';')[0]}", highlight=False)
    folder = export_dir(cfg, version)
    if not (folder / "README.md").is_file():  # not exported yet: export it (what a user would do next)
        console.print(f"version {version} is not exported yet: exporting it to {folder}", highlight=False)
        export_version(cfg, version)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    tag = f"v{version}"
    title = (f"factory {tag}: {counts.get('kept', 0)} traces from {counts.get('seeds', 0)} seeds "
             f"({counts.get('verified', 0)} verified)")
    size = sum((folder / f).stat().st_size for f in files)

    if dry_run:
        from huggingface_hub import constants

        out = cfg.path(cfg.workdir) / "publish" / tag
        if out.exists():
            shutil.rmtree(out)
        for name in files:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(folder / name, out / name)
        plan = {"repo_id": repo_id, "repo_type": REPO_TYPE, "private": cfg.publish.private,
                "branch": cfg.publish.branch, "commit_message": title, "tag": tag,
                "operations": [{"op": "add", "path": f, "size": (folder / f).stat().st_size,
                                "sha256": _sha256(folder / f)} for f in files],
                "deletes": f"files under {', '.join(MANAGED)} on {cfg.publish.branch} that are not listed above "
                           "(known only when the Hub is asked)"}
        plan_path = out / "commit_plan.json"
        plan_path.write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8")
        return PublishResult(version, repo_id, None, tag, f"{constants.ENDPOINT}/datasets/{repo_id}", files,
                             dry_run=True, plan_path=plan_path, size_bytes=size)

    import httpx2
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.hf_api import RepoFile

    token = hub_token(cfg)
    api = HfApi(token=token, library_name="factory")
    noop, deleted = False, []
    try:
        console.print(f"publish {tag} -> {repo_id} ({'private' if cfg.publish.private else 'public'}, "
                      f"branch {cfg.publish.branch}): {len(files)} files, {_size(size)}", highlight=False)
        url = str(api.create_repo(repo_id, repo_type=REPO_TYPE, private=cfg.publish.private, exist_ok=True))
        if cfg.publish.branch != "main":
            api.create_branch(repo_id, repo_type=REPO_TYPE, branch=cfg.publish.branch, exist_ok=True)
        tags = {t.name: t.target_commit for t in api.list_repo_refs(repo_id, repo_type=REPO_TYPE).tags}
        if tag in tags:
            if recorded is None and not _same_files(api, repo_id, tags[tag], folder, files):
                raise HubError(f"{repo_id}: tag {tag} already exists at {tags[tag][:12]} with other files; a published "
                               f"version never changes (delete the tag on the Hub to publish this export as {tag})")
            revision, noop = tags[tag], True
        else:
            head = [f.path for f in api.list_repo_tree(repo_id, repo_type=REPO_TYPE, revision=cfg.publish.branch,
                                                       recursive=True) if isinstance(f, RepoFile)]
            deleted = sorted(p for p in head if p.startswith(MANAGED) and p not in files)
            ops = ([CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(folder / f)) for f in files]
                   + [CommitOperationDelete(path_in_repo=p) for p in deleted])
            console.print(f"one commit: {len(files)} files" + (f", {len(deleted)} stale removed" if deleted else ""),
                          highlight=False)
            commit = api.create_commit(repo_id, ops, commit_message=title, repo_type=REPO_TYPE,
                                       revision=cfg.publish.branch,
                                       commit_description=f"Dataset version {version} built by factory.")
            revision = commit.oid
            api.create_tag(repo_id, tag=tag, tag_message=title, revision=revision, repo_type=REPO_TYPE)
    except HubError:
        raise
    except (HfHubHTTPError, httpx2.HTTPError, ValueError, RuntimeError) as e:
        raise HubError(f"publishing {tag} to {repo_id} failed: {one_line(e, token)}") from None
    with Store(cfg.store_path) as store:
        store.sql("UPDATE versions SET published_revision = ? WHERE version = ?", [revision, version])
    return PublishResult(version, repo_id, revision, tag, url, files, noop=noop, size_bytes=size, deleted=deleted)


def print_publish(result: PublishResult, console: Console) -> None:
    where = f"{result.url}/tree/{result.tag}"
    if result.dry_run:
        console.print(f"dry run: {result.tag} -> {result.repo_id}: {len(result.files)} files, "
                      f"{_size(result.size_bytes)} would go up in one commit, tagged {result.tag}; nothing "
                      f"uploaded.\nfiles and commit plan -> {result.plan_path.parent}", highlight=False)
    elif result.noop:
        console.print(f"{result.tag} is already published: {where} (commit {result.revision[:12]}); nothing to do",
                      highlight=False)
    else:
        console.print(f"published {result.tag}: {where} (commit {result.revision[:12]}, {len(result.files)} files, "
                      f"{_size(result.size_bytes)}" + (f", {len(result.deleted)} stale files removed"
                                                              if result.deleted else "") + ")", highlight=False)
