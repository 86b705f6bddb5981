"""The report as a list of blocks (headings, text, tables, figures), rendered to Markdown and to self-contained HTML."""
from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence

FIGURES = "figures"  # the folder of PNGs report.md links to (report.html embeds the same bytes)


class Doc:
    """Headings, paragraphs, bullet lists, tables and figures, in order."""

    def __init__(self) -> None:
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: Iterable[str]) -> None:
        self.blocks.append(("ul", list(items)))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", list(headers), [list(map(str, r)) for r in rows]))

    def figure(self, name: str, data: bytes, caption: str) -> None:
        self.blocks.append(("figure", name, data, caption))

    def figures(self) -> list[tuple[str, bytes]]:
        """(file name, PNG bytes) of every figure."""
        return [(b[1], b[2]) for b in self.blocks if b[0] == "figure"]

    def markdown(self) -> str:
        """The text of report.md."""
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "ul":
                out.append("\n".join(f"- {item}" for item in b[1]))
            elif b[0] == "table":
                def row(cells): return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
                out.append("\n".join([row(b[1]), row(["---"] * len(b[1])), *map(row, b[2])]))
            elif b[0] == "figure":
                out.append(f"![{b[3]}]({FIGURES}/{b[1]})\n\n*{b[3]}*")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        """The text of report.html: one page, figures embedded."""
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
                + self.body() + "\n</body></html>\n")

    def body(self) -> str:
        """The blocks as HTML elements, without a page around them (a notebook shows them inline)."""
        body = []
        for b in self.blocks:
            if b[0] == "h":
                body.append(f"<h{b[1]}>{_inline(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                body.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b[1]) + "</ul>")
            elif b[0] == "table":
                head = "".join(f"<th>{_inline(c)}</th>" for c in b[1])
                rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in b[2])
                body.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
                            "</table></div>")
            elif b[0] == "figure":
                src = "data:image/png;base64," + base64.b64encode(b[2]).decode()
                body.append(f'<figure><img src="{src}" alt="{html.escape(b[3])}">'
                            f"<figcaption>{_inline(b[3])}</figcaption></figure>")
        return "\n".join(body)


# A 1400 px window shows every table whole: at most 9 columns, headers wrap, cells do not
CSS = ("body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1300px;margin:2em auto;"
       "padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}"
       ".scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.85em;margin:1em 0}"
       "th,td{border:1px solid #ccc;padding:.3em .55em;text-align:right;white-space:nowrap}"
       "th{background:#f3f3f3;white-space:normal;vertical-align:bottom}td:nth-child(2),td:last-child{white-space:normal}"
       "td:first-child,th:first-child,td:nth-child(2){text-align:left}"
       "tbody tr:nth-child(even){background:#fafafa}figure{margin:1em 0}img{max-width:100%;height:auto}"
       "figcaption{font-size:.85em;color:#555}code{background:#f3f3f3;padding:0 .25em}")


def _inline(text: str) -> str:
    """HTML of one line of our Markdown subset: `code` and **bold**."""
    out, code = [], False
    for i, part in enumerate(html.escape(text).split("`")):
        if i:
            code = not code
        if code:
            out.append(f"<code>{part}</code>")
        else:
            bold = part.split("**")
            out.append("".join(f"<b>{s}</b>" if j % 2 else s for j, s in enumerate(bold)))
    return "".join(out)
