"""A fake Kaggle API for the tests: a small HTTP server on a loopback port.

It speaks what the kaggle CLI's client library (kagglesdk) sends: `POST /api/v1/<Service>/<Method>` with a
JSON body in camelCase and HTTP Basic credentials, answered with JSON (errors as `{"code": N, "message": ...}`,
as Kaggle answers them). The CLI is pointed at it with `KAGGLE_API_ENVIRONMENT=LOCALHOST` (it then calls
`http://localhost/api/v1/...`) and `HTTP_PROXY=http://127.0.0.1:<port>`, so the server receives proxy-style
requests whose path is the whole URL. URLs it hands out (uploads, downloads) are `http://localhost/...` too.

Everything it receives is kept in `requests` and `uploads`; `fail()` switches a method to an HTTP error.
A kernel's runs go through the states `queue_statuses()` lists, one a status call; the submissions it accepted
are listed back (`ListSubmissions`) with the public score `score_submissions()` gives them; a pushed kernel is
pulled back (`GetKernel`) with the machine it asked for, or the one `run_on()` says Kaggle chose.
"""

import base64
import datetime as dt
import email.utils
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

KERNELS = "kernels.KernelsApiService"
COMPETITIONS = "competitions.CompetitionApiService"

# What Kaggle says for each failure the tests switch on (messages as the real API words them).
ERROR_MESSAGES = {
    401: "Unauthenticated",
    403: "You must accept this competition's rules before you'll be able to submit.",
    404: "NotFound",
    409: "Conflict",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


@dataclass
class Received:
    """One request the server received.

    Attributes:
        method: `PUT`, `GET` or the API method's name (e.g. `SaveKernel`).
        service: the API service (e.g. `kernels.KernelsApiService`); None for uploads and downloads.
        body: the JSON body of an API call.
        authorized: whether it carried the expected credentials.
    """

    method: str
    service: str | None
    body: dict = field(default_factory=dict)
    authorized: bool = False


class FakeKaggle:
    """The fake API's state and switches.

    Args:
        username: the account the credentials belong to.
        key: the API key the credentials must carry.
    """

    def __init__(self, username: str, key: str):
        self.username = username
        self.key = key
        self.requests: list[Received] = []
        self.uploads: dict[str, bytes] = {}
        self.downloads: dict[str, bytes] = {}
        self.failures: dict[str, int] = {}
        self.kernel_status = "COMPLETE"
        self.kernel_failure_message: str | None = None
        self.kernel_outputs: dict[str, bytes] = {}
        # Per kernel slug, for several kernels at once (folds run as separate kernels): the status of its latest
        # run and its output files by relative path (sub-folders included); others get the values above.
        self.kernel_statuses: dict[str, str] = {}
        self.kernel_outputs_by_slug: dict[str, dict[str, bytes]] = {}
        self.kernel_log = '[{"stream_name":"stdout","time":1.0,"data":"done\\n"}]'
        self.push_error: str | None = None
        self.versions: dict[str, int] = {}
        # Per kernel slug (None: every kernel), the states its next status calls answer, the last one staying.
        self.status_queues: dict[str | None, list[str]] = {}
        self.pushed: dict[str, dict] = {}
        self.machine_ran: str | None = None
        self.submissions: list[dict] = []
        self.public_score: str | None = None
        self._upload_names: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- switches and queries -----------------------------------------------------------------------

    def fail(self, method: str, status: int) -> None:
        """Answers every later call of `method` (or `"*"` for all) with HTTP `status`."""
        self.failures[method] = status

    def queue_statuses(self, *statuses: str, slug: str | None = None, failure_message: str | None = None) -> None:
        """Makes the next status calls (of kernel `slug`, or of every kernel) answer `statuses` in turn, e.g.
        `"QUEUED", "RUNNING", "COMPLETE"`; the last one stays. `failure_message` comes with an `ERROR`."""
        self.status_queues[slug] = list(statuses)
        self.kernel_failure_message = failure_message

    def score_submissions(self, public_score: str | None) -> None:
        """Scores every submission Kaggle accepted (and later ones) with `public_score`, e.g. `"0.99128"`."""
        self.public_score = public_score
        for entry in self.submissions:
            entry.update(status="COMPLETE", publicScore=public_score)

    def run_on(self, machine_shape: str | None) -> None:
        """Makes Kaggle keep every pushed kernel on `machine_shape`, whatever it asked for (None: what it asked)."""
        self.machine_ran = machine_shape

    def received(self, method: str) -> list[dict]:
        """Returns the JSON bodies of the calls of `method`, oldest first."""
        return [request.body for request in self.requests if request.method == method]

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    # --- life cycle ---------------------------------------------------------------------------------

    def start(self) -> "FakeKaggle":
        fake = self

        class Handler(_Handler):
            state = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval: `stop()` waits for the loop to notice, once per test.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-kaggle", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)

    # --- the API ------------------------------------------------------------------------------------

    def _record(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)

    def _failure(self, method: str) -> int | None:
        return self.failures.get(method, self.failures.get("*"))

    def answer(self, service: str, method: str, body: dict) -> tuple[int, dict, dict]:
        """Returns `(status, JSON answer, extra headers)` for one API call."""
        if service == KERNELS and method == "SaveKernel":
            slug = body.get("slug", "")
            with self._lock:
                self.versions[slug] = self.versions.get(slug, 0) + 1
                version = self.versions[slug]
                self.pushed[slug] = body
            if self.push_error:
                return 200, {"error": self.push_error}, {}
            return 200, {
                "ref": f"/code/{slug}",
                "url": f"https://www.kaggle.com/code/{slug}",
                "versionNumber": version,
                "kernelId": 4242,
            }, {}
        if service == KERNELS and method == "GetKernelSessionStatus":
            slug = body.get("kernelSlug")
            with self._lock:
                queue = self.status_queues.get(slug, self.status_queues.get(None))
                status = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else \
                    self.kernel_statuses.get(slug, self.kernel_status)
            answer = {"status": status}
            if self.kernel_failure_message and (not queue or status == "ERROR"):
                answer["failureMessage"] = self.kernel_failure_message
            return 200, answer, {}
        if service == KERNELS and method == "GetKernel":
            return self._kernel(f"{body.get('userName')}/{body.get('kernelSlug')}")
        if service == KERNELS and method == "ListKernelSessionOutput":
            slug = body.get("kernelSlug")
            if slug in self.kernel_outputs_by_slug:
                files = [{"fileName": name, "url": f"http://localhost/files/output/{slug}/{name}"}
                         for name in sorted(self.kernel_outputs_by_slug[slug])]
                return 200, {"files": files, "log": self.kernel_log}, {}
            files = [{"fileName": name, "url": f"http://localhost/files/output/{name}"}
                     for name in sorted(self.kernel_outputs)]
            return 200, {"files": files, "log": self.kernel_log}, {}
        if service == COMPETITIONS and method == "StartSubmissionUpload":
            with self._lock:
                token = f"blob-{len(self._upload_names) + 1}"
                self._upload_names[token] = body.get("fileName")
            return 200, {"token": token, "createUrl": f"http://localhost/upload/{token}"}, {}
        if service == COMPETITIONS and method == "CreateSubmission":
            token = body.get("blobFileTokens")
            if token not in self.uploads:
                return 400, {"code": 400, "message": "Unknown blob token"}, {}
            with self._lock:
                ref = 31337 + len(self.submissions)
                self.submissions.append({
                    "ref": ref, "fileName": self._upload_names.get(token),
                    "date": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="milliseconds")
                    + "Z", "description": body.get("submissionDescription"),
                    "status": "COMPLETE" if self.public_score else "PENDING", "publicScore": self.public_score,
                })
            return 200, {"message": "Successfully submitted to Digit Recognizer", "ref": ref}, {}
        if service == COMPETITIONS and method == "ListSubmissions":
            # Newest first, as Kaggle lists them.
            return 200, {"submissions": [dict(entry) for entry in reversed(self.submissions)]}, {}
        if service == COMPETITIONS and method == "GetSubmissionLimits":
            return 200, {"numToday": 1, "numTotal": 1, "numAllowedNow": 4}, {}
        if service == COMPETITIONS and method == "DownloadDataFiles":
            name = f"{body.get('competitionName')}.zip"
            if name not in self.downloads:
                return 404, {"code": 404, "message": "NotFound"}, {}
            return 302, {}, {"Location": f"http://localhost/files/{name}"}
        return 404, {"code": 404, "message": "NotFound"}, {}

    def _kernel(self, ref: str) -> tuple[int, dict, dict]:
        """`GetKernel` (what `kaggle kernels pull` asks): the pushed source and its metadata, as Kaggle keeps it."""
        pushed = self.pushed.get(ref)
        if pushed is None:
            return 404, {"code": 404, "message": "NotFound"}, {}
        owner, _, slug = ref.partition("/")
        metadata = {
            "id": 4242, "ref": ref, "title": pushed.get("newTitle"), "author": owner, "slug": slug,
            "language": pushed.get("language"), "kernelType": pushed.get("kernelType"),
            "isPrivate": pushed.get("isPrivate"), "enableGpu": pushed.get("enableGpu"),
            "enableTpu": pushed.get("enableTpu"), "enableInternet": pushed.get("enableInternet"),
            "competitionDataSources": pushed.get("competitionDataSources", []),
            "currentVersionNumber": self.versions.get(ref),
        }
        shape = self.machine_ran or pushed.get("machineShape")
        if shape:
            metadata["machineShape"] = shape
        blob = {"source": pushed.get("text"), "language": pushed.get("language"),
                "kernelType": pushed.get("kernelType"), "slug": slug}
        return 200, {"metadata": metadata, "blob": blob}, {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: FakeKaggle

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def _path(self) -> str:
        return urlsplit(self.path).path

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _authorized(self) -> bool:
        expected = base64.b64encode(f"{self.state.username}:{self.state.key}".encode()).decode()
        return self.headers.get("Authorization") == f"Basic {expected}"

    def _send(self, status: int, content: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(content)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(content)

    def _send_json(self, status: int, answer: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(answer).encode(), "application/json", headers)

    def _send_error(self, status: int) -> None:
        headers = {"Retry-After": "0"} if status == 429 else None
        self._send_json(status, {"code": status, "message": ERROR_MESSAGES.get(status, "Error")}, headers)

    def do_POST(self):
        parts = self._path().strip("/").split("/")
        raw = self._body()
        if len(parts) != 4 or parts[:2] != ["api", "v1"]:
            self._send_json(404, {"code": 404, "message": "NotFound"})
            return
        service, method = parts[2], parts[3]
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send_json(400, {"code": 400, "message": "Bad JSON"})
            return
        authorized = self._authorized()
        self.state._record(Received(method=method, service=service, body=body, authorized=authorized))
        if not authorized:
            self._send_error(401)
            return
        failure = self.state._failure(method)
        if failure is not None:
            self._send_error(failure)
            return
        status, answer, headers = self.state.answer(service, method, body)
        self._send_json(status, answer, headers)

    def do_PUT(self):
        path = self._path()
        content = self._body()
        self.state._record(Received(method="PUT", service=None, body={"path": path}))
        failure = self.state._failure("PUT")
        if failure is not None:
            self._send_error(failure)
            return
        if not path.startswith("/upload/"):
            self._send_error(404)
            return
        with self.state._lock:
            self.state.uploads[path.rsplit("/", 1)[-1]] = content
        self._send_json(200, {})

    def do_GET(self):
        path = self._path()
        self.state._record(Received(method="GET", service=None, body={"path": path}))
        failure = self.state._failure("GET")
        if failure is not None:
            self._send_error(failure)
            return
        slug, _, name = path.removeprefix("/files/output/").partition("/")
        if path.startswith("/files/output/") and slug in self.state.kernel_outputs_by_slug:
            content = self.state.kernel_outputs_by_slug[slug].get(name)
        elif path.startswith("/files/output/"):
            content = self.state.kernel_outputs.get(path.rsplit("/", 1)[-1])
        elif path.startswith("/files/"):
            content = self.state.downloads.get(path.rsplit("/", 1)[-1])
        else:
            content = None
        if content is None:
            self._send_error(404)
            return
        modified = email.utils.formatdate(time.time() - 60, usegmt=True)
        self._send(200, content, "application/octet-stream", {"Last-Modified": modified})
