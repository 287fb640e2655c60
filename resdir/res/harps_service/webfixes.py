"""Three DaCHS 2.7 web behaviours, corrected in the server.

Neither is reachable from this resource's RD (both are DaCHS's own
renderers, not services of ours), so :func:`install` wraps them; the RD calls
it when loaded, and the server preloads the RD (``[web]preloadRDs``).

1. **/getproduct** (``web.productrender.ProductRenderer.render``) builds the
   product key (``protocols.products.RAccref``) outside any error handling,
   so a missing key or a bad modifier (``?preview=maybe``, ``?scale=abc``)
   raises a ``ValidationError`` that DaCHS renders as HTTP 500; a key that
   is not UTF-8 fails with a ``TypeError``, and one with a NUL character
   reaches PostgreSQL, whose driver refuses it (500 again).  The wrapper
   checks the key first and answers such requests with a plain-text 400
   naming ``accref``; valid keys go through DaCHS's code unchanged.
2. **403 pages of the static renderers** (``web.constantrender.
   StaticRenderer.getChild`` for ``/<rd>/<service>/static/``,
   ``web.ifpages.StaticServer.getChild`` for ``/static/``) refuse paths
   outside the static directory with a message naming the resolved
   filesystem path (``<inputsDir>/harps/web/../q.rd is not located
   below staticData``).  The wrappers keep DaCHS's check and status and
   replace only such messages.

3. **Errors of ``api`` services** (``web.vodal.APIRenderer``, this
   resource's ``decode`` and ``retrieve``): DaCHS answers every failure
   with HTTP 200 and the exception's text, which for an unexpected one
   can hold a server path.  The wrapper keeps the DALI error document but
   sets a status by kind (DALI 1.1 allows any): 400 for bad parameters
   (``ValidationError``), 401/403 for the embargo, 429 when the model
   server is at its upload limit, 503 when no model can answer, and 500
   with a fixed text (the details go to the log) for anything else.

:func:`install` is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harps_service.hardening import wrap_once


def product_key_problem(path: str, request: Any) -> str | None:
    """Why a /getproduct request names no possible product, or None if it may.

    Parameters
    ----------
    path : str
        The URL path below /getproduct (DaCHS's ``pathFromSegments``).
    request : twisted.web.server.Request
        The request (its ``strargs`` carry ``key`` and the modifiers).
    """
    from gavo import base
    from gavo.protocols import products

    try:
        accref = products.RAccref.fromRequest(path, request).accref
    except base.ValidationError as ex:
        if not path.strip("/") and "key" not in request.strargs:
            return "no product key given; product URLs are /getproduct/<accref>"
        return ex.msg
    if not isinstance(accref, str):
        return "the product key is not valid UTF-8"
    if "\x00" in accref:
        return "product keys cannot contain NUL characters"
    return None


def _checked_product_render(original: Callable) -> Callable:
    def render(self, request):  # noqa: ANN001 - DaCHS's signature
        problem = product_key_problem(self.pathFromSegments, request)
        if problem is None:
            return original(self, request)
        request.setResponseCode(400)
        request.setHeader("content-type", "text/plain; charset=utf-8")
        return f"Field accref: {problem}\n".encode()
    return render


def _pathless_forbidden(message: str) -> Callable[[Callable], Callable]:
    from gavo import svcs

    def make(original: Callable) -> Callable:
        def get_child(self, name, request):  # noqa: ANN001 - DaCHS's signature
            try:
                return original(self, name, request)
            except svcs.ForbiddenURI as ex:
                if "/" not in str(ex.msg):
                    raise
                raise svcs.ForbiddenURI(message) from None
        return get_child
    return make


def api_error_status(exc: BaseException) -> tuple[int, str | None]:
    """HTTP status of an ``api`` service's error, and the message (None: DaCHS's own)."""
    from gavo import base, svcs

    from harps_service import modelclient
    if isinstance(exc, base.ValidationError):
        return 400, None
    if isinstance(exc, svcs.Authenticate):
        return 401, None
    if isinstance(exc, svcs.ForbiddenURI):
        return 403, None
    if isinstance(exc, modelclient.ModelBusy):
        return 429, str(exc)
    if isinstance(exc, modelclient.ModelUnavailable):
        return 503, str(exc)
    if isinstance(exc, (base.Error, svcs.Error)):
        return 400, None
    return 500, "internal error of this service (logged); please report it"


def _api_errors(original: Callable) -> Callable:
    def handle(self, failure, request):  # noqa: ANN001 - DaCHS's signature
        from gavo import base, svcs
        status, message = api_error_status(failure.value)
        if isinstance(failure.value, svcs.Authenticate):  # ask for credentials
            request.setHeader("WWW-Authenticate", f'Basic realm="{failure.value.realm}"')
            message = failure.value.hint or "this needs credentials"
        if status == 500:
            base.ui.notifyFailure(failure)
        return self._writeErrorTable(request, message or failure.value, httpStatus=status)
    return handle


def install() -> None:
    """Wrap DaCHS's product renderer and static renderers (see the module doc)."""
    from gavo.web import constantrender, ifpages, productrender
    wrap_once(productrender.ProductRenderer, "render", _checked_product_render)
    wrap_once(constantrender.StaticRenderer, "getChild", _pathless_forbidden(
        "The path you asked for lies outside this service's static data."))
    wrap_once(ifpages.StaticServer, "getChild", _pathless_forbidden(
        "The path you asked for lies outside the published static directories."))
    from gavo.web import vodal
    wrap_once(vodal.APIRenderer, "_handleInputErrors", _api_errors)
