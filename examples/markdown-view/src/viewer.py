# The MarkdownView viewer: serves each markdown file in a directory as HTML.
# Usage: python3 -c "$VIEWER" DIR PORT
# Files are read on every request, so an updated ConfigMap volume shows at once.
import html, os, re, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT, PORT = sys.argv[1], int(sys.argv[2])


def inline(text):
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"\*([^*]+)\*", r"<em>\1</em>", text)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', text)


def render(markdown):
    out, para, items, code = [], [], [], None

    def flush():
        if para:
            out.append("<p>" + inline(" ".join(para)) + "</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join("<li>" + inline(i) + "</li>" for i in items) + "</ul>")
            items.clear()

    for line in markdown.splitlines():
        if code is not None:
            if line.startswith("```"):
                out.append("<pre><code>" + html.escape("\n".join(code)) + "</code></pre>")
                code = None
            else:
                code.append(line)
            continue
        heading = re.match(r"(#{1,6})\s+(.*)", line)
        item = re.match(r"\s*[-*+]\s+(.*)", line)
        if line.startswith("```"):
            flush()
            code = []
        elif heading:
            flush()
            level = len(heading.group(1))
            out.append("<h%d>%s</h%d>" % (level, inline(heading.group(2).strip()), level))
        elif item:
            if para:
                flush()
            items.append(item.group(1))
        elif not line.strip():
            flush()
        else:
            if items:
                flush()
            para.append(line.strip())
    if code is not None:
        out.append("<pre><code>" + html.escape("\n".join(code)) + "</code></pre>")
    flush()
    return "\n".join(out)


def page(title, body):
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>%s</title></head>\n'
        "<body>\n%s\n</body></html>\n" % (html.escape(title), body)
    )


class Viewer(BaseHTTPRequestHandler):
    def do_GET(self):
        names = sorted(n for n in os.listdir(ROOT) if not n.startswith("."))
        name = self.path.split("?", 1)[0].lstrip("/")
        if name == "healthz":
            return self.reply(200, "text/plain; charset=utf-8", "ok\n")
        if name in ("", "index.html"):
            links = "".join('<li><a href="/%s">%s</a></li>' % (n, html.escape(n)) for n in names)
            return self.reply(200, "text/html; charset=utf-8", page("MarkdownView", "<ul>%s</ul>" % links))
        if name not in names:
            return self.reply(404, "text/plain; charset=utf-8", "no such markdown: %s\n" % name)
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            body = render(f.read())
        self.reply(200, "text/html; charset=utf-8", page(name, body))

    def reply(self, code, content_type, text):
        data = text.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


print("serving %s on :%d" % (ROOT, PORT), flush=True)
ThreadingHTTPServer(("", PORT), Viewer).serve_forever()
