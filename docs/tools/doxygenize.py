#!/usr/bin/env python3
"""Turn the plain // comments of a public header into Doxygen comments (the conventions of the API reference).

  - the comment block after `#pragma once` becomes the file documentation: `/// \\file`, then the block (its
    first sentence is the brief);
  - a // block directly before a declaration at namespace or class scope (public or protected, outside any
    detail namespace) becomes ///; a // block followed by a blank line stays // (a section comment);
  - a trailing // comment on a one-line member, variable, option (SEQATTN_ARG) or enumerator becomes ///<;
  - runs of indented lines (aligned tables: "//   name   description") become Markdown fenced blocks,
    /// ```unparsed ... /// ``` (not \\verbatim: doxygen 1.9.4 shows the /// markers inside it); in prose the
    characters Doxygen reads as commands or HTML (\\ @ < #word) are escaped.
Comments inside function bodies, private members and detail namespaces stay //. Lines already in /// are kept,
so running it again changes nothing. It does not write descriptions: ./build.sh docs lists what still lacks one.

By hand, after it (./build.sh docs fails until done): a /// brief before every public class, struct, enum,
function, alias, option and member without one (true and short, no filler); ///@{ ... ///@} around consecutive
members that one comment describes; for a class whose base is in namespace detail, `/// \\extends Layer` (and
`/// \\extends AttentionMap`) in its comment, plus a sentence listing the public members of that base.

Usage: doxygenize.py [--check] FILE...
  rewrites the files in place; --check only lists the files it would change and exits 1 when there is one.
"""
import re
import sys

ACCESS_RE = re.compile(r"^\s*(public|protected|private)\s*:")


def split_comment(line):
    """Returns (code, comment) where comment is the text after a // outside string/char literals (or None).
    Inline /* */ comments are replaced by spaces in code."""
    i, n = 0, len(line)
    out = []
    while i < n:
        c = line[i]
        if c == '"' or c == "'":
            q = c
            j = i + 1
            while j < n and line[j] != q:
                if line[j] == "\\":
                    j += 1
                j += 1
            out.append(line[i:j + 1])
            i = j + 1
            continue
        if line.startswith("//", i):
            return "".join(out), line[i:]
        if line.startswith("/*", i):
            j = line.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(" ")
            i = j
            continue
        out.append(c)
        i += 1
    return "".join(out), None


def strip_template(text):
    t = text.strip()
    while t.startswith("template"):
        k = t.find("<")
        if k < 0:
            return t
        depth = 0
        for j in range(k, len(t)):
            if t[j] == "<":
                depth += 1
            elif t[j] == ">":
                depth -= 1
                if depth == 0:
                    t = t[j + 1:].strip()
                    break
        else:
            return t
    return t


def classify(pending):
    t = strip_template(pending)
    m = re.match(r"(inline\s+)?namespace\s*([\w:]*)", t)
    if m:
        return "ns", m.group(2)
    if re.match(r"enum\b", t):
        return "enum", None
    m = re.match(r"(class|struct|union)\b", t)
    if m and "(" not in t.split(":")[0] and "=" not in t:
        return m.group(1), None
    return "code", None


class Scope:
    def __init__(self, kind, access, hidden):
        self.kind = kind
        self.access = access
        self.hidden = hidden


def escape_prose(text):
    """Escapes \\ @ < # outside `code spans` so Doxygen shows them as written."""
    parts = re.split(r"(`[^`]*`)", text)
    for k in range(0, len(parts), 2):
        p = parts[k]
        p = p.replace("\\", "\\\\").replace("@", "\\@").replace("<", "\\<")
        p = re.sub(r"(^|(?<=[\s(]))#(?=\w)", r"\\#", p)
        parts[k] = p
    return "".join(parts)


def is_table_line(body):
    # body: the comment text after "//"; a table line is indented by two or more spaces after the usual one.
    return body.startswith("   ") or body.startswith("\t")


def doc_block(indent, bodies, file_doc=False):
    """bodies: texts after // of each line. Returns the /// lines."""
    out = []
    if file_doc:
        out.append(indent + "/// \\file")
    in_verb = False
    for b in bodies:
        table = is_table_line(b)
        if table and not in_verb:
            if out and out[-1].strip() not in ("///", "/// \\file"):
                out.append(indent + "///")  # a fenced block starts a paragraph
            out.append(indent + "/// ```unparsed")
            in_verb = True
        elif not table and in_verb and b.strip():
            out.append(indent + "/// ```")
            in_verb = False
        if in_verb:
            out.append((indent + "///" + b).rstrip())
        else:
            text = b[1:] if b.startswith(" ") else b
            out.append((indent + "/// " + escape_prose(text)).rstrip())
    if in_verb:
        out.append(indent + "/// ```")
    return out


def convert(lines):
    out = []
    stack = [Scope("file", "public", False)]
    pending = ""
    i = 0
    n = len(lines)
    # 1. the file block
    if lines and lines[0].strip() == "#pragma once":
        out.append(lines[0])
        i = 1
        bodies = []
        while i < n and lines[i].lstrip().startswith("//") and not lines[i].lstrip().startswith("///"):
            bodies.append(lines[i].lstrip()[2:])
            i += 1
        if bodies:
            out.extend(doc_block("", bodies, file_doc=True))

    def scope_ok():
        top = stack[-1]
        if top.hidden:
            return False
        if top.kind in ("file", "ns", "enum"):
            return True
        if top.kind in ("class", "struct", "union"):
            return top.access in ("public", "protected")
        return False

    while i < n:
        line = lines[i]
        stripped = line.strip()
        # A block of full-line comments
        if stripped.startswith("//") and not stripped.startswith("///"):
            j = i
            while j < n and lines[j].strip().startswith("//") and not lines[j].strip().startswith("///"):
                j += 1
            nxt = lines[j].strip() if j < n else ""
            convertible = (scope_ok() and pending.strip() == "" and nxt != ""
                           and (not nxt.startswith("#") or nxt.startswith("#define"))
                           and not nxt.startswith("}") and not ACCESS_RE.match(nxt)
                           and not nxt.startswith("namespace") and not nxt.startswith("static_assert")
                           and not nxt.startswith("using namespace"))
            if convertible:
                indent = line[: len(line) - len(line.lstrip())]
                bodies = [lines[k].strip()[2:] for k in range(i, j)]
                out.extend(doc_block(indent, bodies))
            else:
                out.extend(lines[i:j])
            i = j
            continue

        if stripped.startswith("#"):  # preprocessor: skip the directive and its continuation lines
            while i < n and lines[i].rstrip().endswith("\\"):
                out.append(lines[i])
                i += 1
            if i < n:
                out.append(lines[i])
                i += 1
            continue
        code, comment = split_comment(line)
        start_ok = scope_ok() and pending.strip() == ""
        start_kind = stack[-1].kind
        start_depth = len(stack)
        # access labels
        m = ACCESS_RE.match(code)
        if m and stack[-1].kind in ("class", "struct", "union"):
            stack[-1].access = m.group(1)
            code_rest = code[m.end():]
        else:
            code_rest = code
        for c in code_rest:
            if c == "{":
                kind, name = classify(pending)
                parent = stack[-1]
                hidden = parent.hidden or (parent.kind in ("class", "struct", "union")
                                           and parent.access == "private") or parent.kind == "code"
                if kind == "ns" and name and (name == "detail" or name.endswith("::detail")):
                    hidden = True
                if kind == "code":
                    hidden = True
                access = "private" if kind == "class" else "public"
                stack.append(Scope(kind, access, hidden))
                pending = ""
            elif c == "}":
                if len(stack) > 1:
                    stack.pop()
                pending = ""
            elif c == ";":
                pending = ""
            else:
                pending += c
        if pending.strip().startswith("#"):
            pending = ""  # preprocessor line
        if comment is not None and not comment.startswith("///") and code.strip():
            body = comment[2:]
            cs = code.rstrip()
            ends = (len(stack) == start_depth and pending.strip() == ""
                    and (cs.endswith(";") or cs.endswith("}") or cs.endswith("};")))
            if start_kind == "enum":
                ends = start_ok and len(stack) == start_depth
            elif cs.lstrip().startswith("SEQATTN_ARG(") and cs.endswith(")"):
                ends = True
                pending = ""
            if start_ok and ends and not ACCESS_RE.match(code):
                text = body[1:] if body.startswith(" ") else body
                out.append(code.rstrip() + "  ///< " + escape_prose(text).rstrip())
                i += 1
                continue
        if stripped.startswith("SEQATTN_ARG(") and code.rstrip().endswith(")"):
            pending = ""
        out.append(line)
        i += 1
    return out


def main(argv):
    args = argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    check = args[0] == "--check"
    if check:
        args = args[1:]
    changed = []
    for path in args:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        new = "\n".join(convert(text.split("\n")))
        if new != text:
            changed.append(path)
            if not check:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(new)
    for path in changed:
        print(("would convert " if check else "converted ") + path)
    return 1 if check and changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
