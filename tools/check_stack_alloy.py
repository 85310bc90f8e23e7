#!/usr/bin/env python3
"""A parser of Grafana Alloy's configuration syntax, for the offline checks (check_stack.py logs).

Alloy itself cannot run here (no Debian, PyPI or npm package ships it or its parser; its image
cannot be pulled), so compose/alloy/config.alloy is read by this parser of the syntax as Alloy
documents it: blocks (`name.parts "label" { ... }`), attributes (`key = expression`), strings
with Go escapes and raw backtick strings, numbers, booleans, null, lists, objects, references
(`loki.write.local.receiver`), function calls (`sys.env("X")`), unary and binary operators,
`//` and `/* */` comments. The result is a tree of plain values that the checks walk:
Block(name, label, attrs, blocks) with attrs holding ("str", s), ("num", x), ("bool", b),
("null",), ("ref", "a.b.c"), ("call", "sys.env", [args]), ("list", [..]), ("obj", {k: v}) or
("op", op, [operands]). A syntax error raises AlloyError with the line.
"""

import json
import re
from dataclasses import dataclass, field

TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[{}\[\]().,=<>+\-*/%^!])
""", re.X | re.S)


class AlloyError(ValueError):
    pass


@dataclass
class Block:
    name: str
    label: str | None
    line: int
    attrs: dict = field(default_factory=dict)
    blocks: list = field(default_factory=list)

    def children(self, name):
        return [b for b in self.blocks if b.name == name]


def tokenize(text):
    out, pos = [], 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            line = text.count("\n", 0, pos) + 1
            raise AlloyError(f"line {line}: unexpected {text[pos:pos + 12]!r}")
        if m.lastgroup not in ("ws", "comment"):
            out.append((m.lastgroup, m.group(), text.count("\n", 0, pos) + 1))
        pos = m.end()
    out.append(("end", "", text.count("\n") + 1))
    return out


def decode_string(tok):
    kind, s, line = tok
    if kind == "raw":
        return s[1:-1]
    try:
        return json.loads(s)  # Go's escapes that Alloy accepts are JSON's, \u included
    except json.JSONDecodeError as e:
        raise AlloyError(f"line {line}: bad string {s}: {e}") from e


BINARY = {"||": 1, "&&": 2, "==": 3, "!=": 3, "<": 3, ">": 3, "<=": 3, ">=": 3,
          "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "^": 6}


class Parser:
    def __init__(self, text):
        self.toks = tokenize(text)
        self.i = 0

    def peek(self, k=0):
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self, kind=None, value=None):
        t = self.peek()
        if (kind and t[0] != kind) or (value is not None and t[1] != value):
            raise AlloyError(f"line {t[2]}: expected {value or kind!r}, got {t[1] or 'the end'!r}")
        self.i += 1
        return t

    def body(self, closing):
        attrs, blocks = {}, []
        while not (self.peek()[0] == "op" and self.peek()[1] == closing) and self.peek()[0] != "end":
            name = self.take("ident")
            if self.peek()[1] == "=":
                self.i += 1
                if name[1] in attrs:
                    raise AlloyError(f"line {name[2]}: attribute {name[1]} set twice")
                attrs[name[1]] = self.expr(0)
                continue
            parts = [name[1]]
            while self.peek()[1] == ".":
                self.i += 1
                parts.append(self.take("ident")[1])
            label = None
            if self.peek()[0] in ("str", "raw"):
                label = decode_string(self.take())
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", label):
                    raise AlloyError(f"line {name[2]}: block label {label!r} is not an identifier")
            self.take("op", "{")
            a, b = self.body("}")
            self.take("op", "}")
            blocks.append(Block(".".join(parts), label, name[2], a, b))
        return attrs, blocks

    def expr(self, min_prec):
        left = self.unary()
        while True:
            t = self.peek()
            if t[0] != "op" or t[1] not in BINARY or BINARY[t[1]] < min_prec:
                return left
            self.i += 1
            right = self.expr(BINARY[t[1]] + (0 if t[1] == "^" else 1))
            left = ("op", t[1], [left, right])

    def unary(self):
        t = self.peek()
        if t[0] == "op" and t[1] in ("!", "-"):
            self.i += 1
            return ("op", t[1], [self.unary()])
        return self.postfix(self.primary())

    def primary(self):
        t = self.peek()
        if t[0] in ("str", "raw"):
            self.i += 1
            return ("str", decode_string(t))
        if t[0] == "num":
            self.i += 1
            return ("num", float(t[1]))
        if t[0] == "ident":
            self.i += 1
            if t[1] in ("true", "false"):
                return ("bool", t[1] == "true")
            if t[1] == "null":
                return ("null",)
            return ("ref", t[1])
        if t[1] == "(":
            self.i += 1
            e = self.expr(0)
            self.take("op", ")")
            return e
        if t[1] == "[":
            self.i += 1
            items = []
            while self.peek()[1] != "]":
                items.append(self.expr(0))
                if self.peek()[1] != "]":
                    self.take("op", ",")
            self.take("op", "]")
            return ("list", items)
        if t[1] == "{":
            self.i += 1
            obj = {}
            while self.peek()[1] != "}":
                k = self.take()
                if k[0] in ("str", "raw"):
                    key = decode_string(k)
                elif k[0] == "ident":
                    key = k[1]
                else:
                    raise AlloyError(f"line {k[2]}: object key expected, got {k[1]!r}")
                if key in obj:
                    raise AlloyError(f"line {k[2]}: key {key} twice")
                self.take("op", "=")
                obj[key] = self.expr(0)
                if self.peek()[1] != "}":
                    self.take("op", ",")
            self.take("op", "}")
            return ("obj", obj)
        raise AlloyError(f"line {t[2]}: unexpected {t[1] or 'end'!r}")

    def postfix(self, node):
        while True:
            t = self.peek()
            if t[1] == "." and node[0] == "ref":
                self.i += 1
                node = ("ref", node[1] + "." + self.take("ident")[1])
            elif t[1] == "(" and node[0] == "ref":
                self.i += 1
                args = []
                while self.peek()[1] != ")":
                    args.append(self.expr(0))
                    if self.peek()[1] != ")":
                        self.take("op", ",")
                self.take("op", ")")
                node = ("call", node[1], args)
            elif t[1] == "[":
                self.i += 1
                idx = self.expr(0)
                self.take("op", "]")
                node = ("op", "index", [node, idx])
            else:
                return node


def parse(text):
    """The top-level blocks (components) of an Alloy configuration."""
    p = Parser(text)
    attrs, blocks = p.body(None)
    if p.peek()[0] != "end":
        raise AlloyError(f"line {p.peek()[2]}: unexpected {p.peek()[1]!r}")
    if attrs:
        raise AlloyError(f"attributes outside a block: {sorted(attrs)}")
    return blocks


def walk(node):
    """Every expression node under an attribute value."""
    yield node
    if node[0] == "list":
        for n in node[1]:
            yield from walk(n)
    elif node[0] == "obj":
        for n in node[1].values():
            yield from walk(n)
    elif node[0] in ("call", "op"):
        for n in node[2]:
            yield from walk(n)


def all_blocks(block):
    yield block
    for b in block.blocks:
        yield from all_blocks(b)
