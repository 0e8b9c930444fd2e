"""The dashboard's page shell: the document around a page's body (its header and navigation are built with the
page, bot/dashboard/pages.py), the style sheet (served from the app, `/admin/dashboard.css`), and the security
headers every dashboard response carries. No script anywhere: forms post, links navigate."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from dialogs.pages import dashboard_words

Words = Callable[..., str]  # an English text (dialogs/pages.py lists them) → in the viewer's language

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make a browser send `Origin: null` with our forms
    "Cache-Control": "no-store",
}

STYLE = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#eef0f5;color:#1f2430}
header{background:#1f2a44;color:#fff;padding:10px 16px;display:flex;flex-wrap:wrap;gap:8px 16px;align-items:center}
header .brand{font-weight:700;margin-right:8px}
nav{display:flex;flex-wrap:wrap;gap:4px}
nav a{color:#dfe6f5;text-decoration:none;padding:6px 10px;border-radius:8px}
nav a[aria-current=page]{background:#3a4a70;color:#fff}
header form{margin-left:auto}
header .who{font-size:13px;color:#c3cce0}
main{max-width:1100px;margin:0 auto;padding:16px}
h1{font-size:22px;margin:8px 0 12px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:16px}
section.figure{background:#fff;border-radius:12px;padding:14px 16px;box-shadow:0 1px 3px rgba(16,24,40,.1);
min-width:0}
section.figure.wide{grid-column:1/-1}
section.figure h2{font-size:16px;margin:0 0 8px;display:flex;justify-content:space-between;gap:8px}
section.figure h2 a{font-size:12px;font-weight:400;color:#2f6fde}
.note{color:#596170;font-size:13px;margin:4px 0 8px}
.tiles{display:flex;flex-wrap:wrap;gap:10px}
.tile{flex:1 1 120px;background:#f5f7fb;border-radius:10px;padding:8px 12px}
.tile b{display:block;font-size:22px}
.tile span{font-size:12px;color:#596170}
svg.chart{width:100%;height:auto;display:block}
.table{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e4e7ee;vertical-align:top}
th{color:#596170;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
details summary{cursor:pointer;color:#2f6fde;font-size:13px;margin-top:6px}
form.inline{display:inline}
input,select,button{font:inherit;padding:6px 10px;border-radius:8px;border:1px solid #c3c9d5}
button{background:#2f6fde;color:#fff;border-color:#2f6fde;cursor:pointer}
button.danger{background:#b42318;border-color:#b42318}
header button{background:transparent;border-color:#6f7da0}
.message{background:#fff;border-radius:12px;padding:24px;max-width:560px;margin:10vh auto}
.flash{background:#e8f3ec;border:1px solid #9fd3b0;border-radius:10px;padding:8px 12px;margin-bottom:12px}
.h0{background:#f5f7fb}.h1{background:#dbe6fb}.h2{background:#b6cdf7}.h3{background:#8fb2f2}.h4{background:#5e8fe8;color:#fff}
.h5{background:#2f6fde;color:#fff}
@media (max-width:600px){main{padding:8px}.grid{grid-template-columns:1fr}header{padding:8px}
section.figure{padding:10px}}
"""


def css_response() -> Response:
    return Response(STYLE, media_type="text/css", headers={**HEADERS, "Cache-Control": "max-age=3600"})


def words_for(request: Request) -> tuple[str, Words]:
    """The language of the browser's Accept-Language header that we speak, and the dashboard's words in it."""
    return dashboard_words(request.headers.get("accept-language"))


def document(request: Request, title: str, body: str, *, nav: str = "", status: int = 200,
             headers: dict[str, str] | None = None) -> HTMLResponse:
    language, _w = words_for(request)
    html = (
        f'<!doctype html><html lang="{escape(language)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">'
        f'<title>{escape(title)} · Lessonbot</title><link rel="stylesheet" href="/admin/dashboard.css"></head>'
        f"<body>{nav}<main>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers={**HEADERS, **(headers or {})})


def message_page(request: Request, title: str, text: str, *, status: int) -> HTMLResponse:
    """A page with nothing but a message (signed out, refused, a used link); `title` and `text` in English."""
    _language, w = words_for(request)
    return document(request, w(title), f'<div class="message"><h1>{escape(w(title))}</h1><p>{escape(w(text))}</p>'
                    "</div>", status=status)


def table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{cell:,}</td>' if isinstance(cell, int) and not isinstance(cell, bool)
                         else f"<td>{escape('' if cell is None else str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
