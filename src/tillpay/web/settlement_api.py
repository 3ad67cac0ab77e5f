"""The merchant's file download API, authenticated with the merchant's gateway keys.

Alipay hands these files out over SFTP (reference §1.14); Tillpay serves them over HTTP instead, signed
the way a MAPI request is signed (this API is Tillpay's own, not Alipay's):

- ``GET /settlement/files?service=tillpay.settlement.files&partner=...&timestamp=...[&settle_date=YYYY-MM-DD]
  &sign_type=...&sign=...`` lists the merchant's files (JSON: name, kind, day, SHA-256, size);
- ``GET /settlement/download?service=tillpay.settlement.download&partner=...&timestamp=...&name=...
  &sign_type=...&sign=...`` returns one.

A test merchant (test credentials, docs/sandbox.md) lists and downloads its test files here, every answer
marked ``X-Tillpay-Mode: test``, and moves its test clock with the same signing:

- ``POST /sandbox/clock?service=tillpay.sandbox.clock&partner=...&timestamp=...[&advance=2h]&sign_type=...
  &sign=...`` moves the clock forward by ``advance`` (``90s``, ``15m``, ``2h``, ``3d``, ``1w``, ``1d12h``)
  and answers the clock (JSON: the merchant's time, what expired, the test settlement); without
  ``advance`` it only answers the clock. A live merchant's partner id is refused (400): live merchants
  always use real time.

``sign`` is MD5 (the merchant's MD5 key appended) or RSA / RSA2 (the merchant's private key) over the
sorted ``k=v&...`` of every other parameter, exactly as for ``/gateway.do``. ``timestamp`` is epoch
milliseconds and must be within ``download_timestamp_tolerance_seconds`` of the server's clock, so a
signed URL that leaks stops working soon. ``service`` names the endpoint and is signed, so a request
signed for one endpoint (or a ``/gateway.do`` request) is refused by the other; a parameter the endpoint
does not define is refused too (docs/security.md).
"""

from __future__ import annotations

from datetime import date

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from tillpay import signing
from tillpay.domain.errors import Code, TillpayError
from tillpay.domain.settlement import sha256_hex
from tillpay.protocols.mapi import signing as mapi_signing
from tillpay.services import sandbox_settlement, settlement, testmode
from tillpay.services.platform import Merchant, Platform

_STATUS = {
    Code.ILLEGAL_ARGUMENT: 400,
    Code.ILLEGAL_SIGN: 401,
    Code.ILLEGAL_SIGN_TYPE: 401,
    Code.HAS_NO_PUBLICKEY: 401,
    Code.ILLEGAL_PARTNER: 401,
    Code.NOT_FOUND: 404,
}


def _error(e: TillpayError) -> Response:
    return JSONResponse({"error": e.code.value, "message": e.detail}, status_code=_STATUS.get(e.code, 500))


FILES, DOWNLOAD = "tillpay.settlement.files", "tillpay.settlement.download"
CLOCK = "tillpay.sandbox.clock"
_COMMON = ("service", "partner", "timestamp", "sign_type", "sign")


async def _authenticate(
    p: Platform, request: Request, service: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> tuple[Merchant, dict[str, str]]:
    pairs = request.query_params.multi_items()
    params = dict(pairs)
    if len(params) != len(pairs):
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "a parameter is given twice")
    for name in params:
        if name not in (*_COMMON, *required, *optional):
            raise TillpayError(Code.ILLEGAL_ARGUMENT, f"parameter {name[:64]!r} is not defined here")
    for name in (*_COMMON, *required):
        if not params.get(name):
            raise TillpayError(Code.ILLEGAL_ARGUMENT, f"the {name} parameter is missing")
    if params["service"] != service:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, f"service must be {service} at this address")
    for name, value in params.items():
        if name != "sign" and signing.ambiguous(name, value):
            raise TillpayError(Code.ILLEGAL_ARGUMENT, f"parameter {name!r}: {signing.AMBIGUOUS_DETAIL}")
    try:
        stamp = int(params["timestamp"])
    except ValueError:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "timestamp is epoch milliseconds") from None
    skew = abs(p.now().timestamp() * 1000 - stamp) / 1000  # float-ok: seconds of clock skew, not money
    if skew > p.settings.download_timestamp_tolerance_seconds:
        raise TillpayError(Code.ILLEGAL_ARGUMENT, "timestamp is too far from the server's clock")
    merchant = await p.merchant_by_partner(params["partner"])
    mapi_signing.verify_request(
        params,
        md5_key=merchant.md5_key,
        public_key_pem=merchant.public_key,
        charset="utf-8",
        previous_md5_keys=merchant.md5_keys(p.now())[1:],
        allowed=merchant.sign_types,
    )
    return merchant, params


async def list_files(request: Request) -> Response:
    """The merchant's settlement and transaction files, optionally of one business day."""
    p: Platform = request.app.state.platform
    try:
        merchant, params = await _authenticate(p, request, FILES, (), ("settle_date",))
        day = None
        if params.get("settle_date"):
            try:
                day = date.fromisoformat(params["settle_date"])
            except ValueError:
                raise TillpayError(Code.ILLEGAL_ARGUMENT, "settle_date is YYYY-MM-DD") from None
        if merchant.is_test:
            run = await sandbox_settlement.run(p, merchant)
            listed = [f.to_json() for f in run.files if day is None or f.settle_date == day]
            return JSONResponse(
                {"partner": merchant.partner_id, "files": listed}, headers=testmode.mode_headers(merchant)
            )
        files = await settlement.list_files(p, day=day, partner_id=merchant.partner_id, merchant_only=True)
    except TillpayError as e:
        return _error(e)
    return JSONResponse({"partner": merchant.partner_id, "files": [f.to_json() for f in files]})


async def download(request: Request) -> Response:
    """One of the merchant's files, with its SHA-256 in a header (and in the listing)."""
    p: Platform = request.app.state.platform
    try:
        merchant, params = await _authenticate(p, request, DOWNLOAD, ("name",))
        if merchant.is_test:
            test_path = sandbox_settlement.file_path(p, merchant, params["name"])
            data = test_path.read_bytes()
            return Response(
                data,
                media_type="text/plain; charset=utf-8",
                headers={
                    "X-Content-SHA256": sha256_hex(data),
                    "Content-Disposition": f'attachment; filename="{test_path.name}"',
                    **testmode.mode_headers(merchant),
                },
            )
        view, path = await settlement.file_for_merchant(p, merchant.partner_id, params["name"])
    except TillpayError as e:
        return _error(e)
    return FileResponse(
        path,
        media_type="text/plain; charset=utf-8",
        filename=path.name,
        headers={"X-Content-SHA256": view.sha256},
    )


async def clock(request: Request) -> Response:
    """A test merchant's test clock: moved forward by ``advance``, then answered (docs/sandbox.md)."""
    p: Platform = request.app.state.platform
    try:
        merchant, params = await _authenticate(p, request, CLOCK, (), ("advance",))
        if params.get("advance"):
            view = await testmode.advance(p, merchant.partner_id, testmode.parse_duration(params["advance"]))
        else:
            view = await testmode.show(p, merchant.partner_id)
    except TillpayError as e:
        return _error(e)
    return JSONResponse(view.to_json(), headers=testmode.mode_headers(merchant))


routes = [
    Route("/settlement/files", list_files, methods=["GET"]),
    Route("/settlement/download", download, methods=["GET"]),
    Route("/sandbox/clock", clock, methods=["POST"]),
]
