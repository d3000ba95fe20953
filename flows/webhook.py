"""The SendGrid Event Webhook receiver (verify each signed post, spool it, answer 200) and
recoup's own opt-out page (GET /opt-out shows it, POST /opt-out records the request).

It never opens the warehouse (the daily run holds DuckDB's one writer); `recoup events import`
loads the spool later (`flows.lib.email_events.import_spool`). Start it behind a TLS proxy:

    uvicorn --factory flows.webhook:app_from_environment --host 127.0.0.1 --port 8025

and point SendGrid's signed Event Webhook at https://<your host>/sendgrid/events.

Answers: 200 spooled; 400 not a JSON array of objects; 403 signature or timestamp refused;
413 too large; 503 no `email.event_public_key` configured, or the spool cannot be written
(SendGrid retries non-2xx answers for 24 hours). Answers never echo the body, and logs never
hold addresses or bodies.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sendgrid.helpers.eventwebhook import EventWebhook
from starlette.concurrency import run_in_threadpool

from flows.lib.config import Settings, load_settings
from flows.lib.email_events import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EventPayloadError,
    SpooledPost,
    incoming_folder,
    load_verifier,
    parse_event_array,
    signature_is_valid,
    timestamp_problem,
    write_spool_file,
)
from flows.lib.opt_outs import OUTBOX_ID, NotAnOutboxId, opt_out_folder, spool_opt_out

logger = logging.getLogger("recoup.webhook")

EVENTS_PATH = "/sendgrid/events"
NO_KEY_MESSAGE = (
    "recoup refuses Event Webhook posts: email.event_public_key is not set. Turn on the signed "
    "Event Webhook in SendGrid and set RECOUP_EMAIL__EVENT_PUBLIC_KEY to its verification key."
)


def create_app(settings: Settings, *, clock: Callable[[], dt.datetime] | None = None) -> FastAPI:
    """The webhook app for these settings; `clock` (UTC now) stands in for the real time in
    tests of the replay window."""
    email = settings.email
    verifier = load_verifier(email.event_public_key) if email.event_public_key else None
    folder = incoming_folder(settings)
    now = clock or (lambda: dt.datetime.now(dt.UTC))
    if verifier is None:
        logger.warning("email.event_public_key is not set: every event post is refused (503)")

    app = FastAPI(
        title="recoup SendGrid Event Webhook",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.get("/healthz")
    def healthz() -> dict[str, object]:
        return {"status": "ok", "accepting_events": verifier is not None}

    opt_outs = opt_out_folder(settings)
    company = html.escape(settings.company.name)

    @app.get(OPT_OUT_PATH, response_class=HTMLResponse)
    def confirm_opt_out(ref: str = "") -> HTMLResponse:
        # a GET records nothing: mail scanners open every link in a message by themselves
        if not OUTBOX_ID.fullmatch(ref):
            return HTMLResponse(_page(company, NOT_OURS), status_code=400)
        form = OPT_OUT_FORM.format(ref=html.escape(ref), path=OPT_OUT_PATH)
        return HTMLResponse(_page(company, form))

    @app.post(OPT_OUT_PATH, response_class=HTMLResponse)
    async def opt_out(request: Request, ref: str = "") -> HTMLResponse:
        # the page's button posts a form with ref; a mail client's one-click unsubscribe
        # (RFC 8058) posts List-Unsubscribe=One-Click to the link itself, ref in the query
        if not ref:  # a small urlencoded form: read it without a multipart parser
            body = await _read_body(request, 4096) or b""
            ref = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("ref", [""])[0]
        try:
            spool_opt_out(opt_outs, ref, now())
        except NotAnOutboxId:
            return HTMLResponse(_page(company, NOT_OURS), status_code=400)
        except OSError as error:
            logger.error("could not spool an opt-out: %s", error.strerror)
            return HTMLResponse(_page(company, TRY_AGAIN), status_code=503)
        logger.info("spooled an opt-out request")
        return HTMLResponse(_page(company, OPTED_OUT))

    @app.post(EVENTS_PATH)
    async def receive_events(request: Request) -> JSONResponse:
        if verifier is None:
            return _refuse(request, 503, NO_KEY_MESSAGE)
        declared = request.headers.get("content-length")
        if declared is not None and not (declared.isascii() and declared.isdigit()):
            return _refuse(request, 400, "the Content-Length header is not a whole number")
        if declared is not None and int(declared) > email.event_max_body_bytes:
            return _refuse(request, 413, f"posts are limited to {email.event_max_body_bytes} bytes")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        if not signature:
            return _refuse(request, 403, f"the {SIGNATURE_HEADER} header is missing")
        problem = timestamp_problem(
            timestamp, now=now(), max_age_seconds=email.event_max_age_seconds
        )
        if problem:
            return _refuse(request, 403, problem)
        body = await _read_body(request, email.event_max_body_bytes)
        if body is None:
            return _refuse(request, 413, f"posts are limited to {email.event_max_body_bytes} bytes")
        try:
            text = body.decode("utf-8")  # the exact bytes, never re-serialized (B8)
        except UnicodeDecodeError:
            return _refuse(request, 400, "the body is not UTF-8 text")
        return await run_in_threadpool(
            _verify_and_spool, request, verifier, folder, text, signature, timestamp, now()
        )

    return app


OPT_OUT_PATH = "/opt-out"
OPT_OUT_FORM = """
<p>Stop receiving emails from us at the address this message was sent to?<br>
¿Dejar de recibir nuestros correos electrónicos en la dirección a la que se envió este mensaje?</p>
<form method="post" action="{path}">
<input type="hidden" name="ref" value="{ref}">
<button type="submit">Stop emails / Dejar de recibir correos</button>
</form>
"""
OPTED_OUT = """<p>Done: we will not email this address again. Letters and calls about your
account are not affected.<br>Listo: no volveremos a escribir a esta dirección de correo.</p>"""
NOT_OURS = "<p>This link is not valid. / Este enlace no es válido.</p>"
TRY_AGAIN = "<p>Please try again in a few minutes. / Inténtelo de nuevo en unos minutos.</p>"


def _page(company: str, body: str) -> str:
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{company}</title></head>"
        f'<body style="font-family: sans-serif; max-width: 36em; margin: 2em auto;">'
        f"<h1>{company}</h1>{body}</body></html>"
    )


def app_from_environment() -> FastAPI:
    """The app for recoup.yaml and RECOUP_* (what `uvicorn --factory` calls)."""
    return create_app(load_settings())


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The raw body, or None as soon as it grows past `limit` bytes."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _verify_and_spool(
    request: Request,
    verifier: EventWebhook,
    folder: Path,
    text: str,
    signature: str,
    timestamp: str,
    received_at: dt.datetime,
) -> JSONResponse:
    if not signature_is_valid(verifier, text, signature, timestamp):
        return _refuse(request, 403, "the signature does not verify with the configured key")
    try:
        events = parse_event_array(text)
    except EventPayloadError as error:
        return _refuse(request, 400, f"the body must be a JSON array of event objects: {error}")
    if not events:
        return JSONResponse({"status": "ok", "events": 0})
    post = SpooledPost(received_at=received_at, timestamp=timestamp, signature=signature, body=text)
    try:
        path = write_spool_file(folder, post)
    except OSError as error:
        logger.error("could not spool a post of %d events: %s", len(events), error.strerror)
        return JSONResponse(
            {"detail": "recoup could not store the events; SendGrid will retry"}, status_code=503
        )
    size = len(text.encode("utf-8"))
    logger.info("spooled %d events (%d bytes) as %s", len(events), size, path.name)
    return JSONResponse({"status": "spooled", "events": len(events)})


def _refuse(request: Request, status_code: int, detail: str) -> JSONResponse:
    client = request.client.host if request.client else "unknown"
    logger.warning("refused an event post from %s (%d): %s", client, status_code, detail)
    return JSONResponse({"detail": detail}, status_code=status_code)
