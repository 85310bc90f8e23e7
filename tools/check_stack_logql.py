#!/usr/bin/env python3
"""A LogQL parser for the offline checks (tools/check_stack.py logs and dashboards).

No Loki can run here (no Debian, PyPI or npm package ships Loki or its parser, and Loki's Go
module is AGPL), so the dashboard's and Alloy's queries are checked by this parser of the LogQL
that they use: stream selectors with their matchers (regexes compiled), line filters, the parser
stages (json, logfmt, regexp, pattern, unpack), line_format, label_format, drop, keep, unwrap,
label filters, range aggregations (unwrap required where Loki requires it, refused where Loki
refuses it), vector aggregations with by/without and binary operators. Anything else is an error
naming the position, as Loki would refuse it. It also evaluates a selector with line filters
on a labelled line (`matches`), which is how Alloy's stage.match picks lines.
"""

import re

LINE_OPS = ("|=", "!=", "|~", "!~", "|>", "!>")
CMP_OPS = ("==", "!=", "=~", "!~", ">=", "<=", ">", "<", "=")
BIN_OPS = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, ">": 3, "<": 3, ">=": 3, "<=": 3,
           "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "^": 6}
VECTOR_OPS = {"sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "sort", "sort_desc"}
# Range aggregations over log lines (no unwrap allowed) and over unwrapped values (required).
LINE_RANGE_OPS = {"count_over_time", "bytes_rate", "bytes_over_time", "absent_over_time"}
UNWRAP_RANGE_OPS = {"sum_over_time", "avg_over_time", "max_over_time", "min_over_time", "first_over_time",
                    "last_over_time", "stdvar_over_time", "stddev_over_time", "quantile_over_time", "rate_counter"}
EITHER_RANGE_OPS = {"rate"}
PARSERS = {"json", "logfmt", "regexp", "pattern", "unpack"}
STAGES = PARSERS | {"line_format", "label_format", "drop", "keep", "unwrap", "decolorize"}
DURATION = r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h|d|w|y))+"
BYTES = r"\d+(?:\.\d+)?(?:[KkMmGgTtPp]i?[Bb]|[Bb])"

TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)
  | (?P<dur>""" + DURATION + r""")(?![\w.])
  | (?P<bytes>""" + BYTES + r""")(?![\w.])
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![\w])
  | (?P<flag>--[a-z-]+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\|=|!=|\|~|!~|\|>|!>|=~|==|>=|<=|[|{}()\[\],=<>+\-*/%^])
""", re.X)


class LogQLError(ValueError):
    pass


def tokenize(q):
    out, pos = [], 0
    while pos < len(q):
        m = TOKEN.match(q, pos)
        if not m:
            raise LogQLError(f"unexpected {q[pos:pos + 12]!r} at {pos}")
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group(), pos))
        pos = m.end()
    out.append(("end", "", len(q)))
    return out


def unquote(tok):
    s = tok[1]
    if s.startswith("`"):
        return s[1:-1]
    try:
        return bytes(s[1:-1], "utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8")
    except UnicodeError as e:
        raise LogQLError(f"bad string {s} at {tok[2]}: {e}") from e


class Parser:
    def __init__(self, q):
        self.q = q
        self.toks = tokenize(q)
        self.i = 0
        self.selectors = []   # every stream selector: [(label, op, value)]
        self.stages = []      # every pipeline stage: (name, details)

    # -- helpers
    def peek(self, k=0):
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self, kind=None, value=None):
        t = self.peek()
        if (kind and t[0] != kind) or (value is not None and t[1] != value):
            want = value if value is not None else kind
            raise LogQLError(f"expected {want!r}, got {t[1] or 'the end'!r} at {t[2]}")
        self.i += 1
        return t

    def at(self, value, kind=None):
        t = self.peek()
        return t[1] == value and (kind is None or t[0] == kind)

    # -- queries
    def query(self):
        node = self.expr(0)
        if self.peek()[0] != "end":
            t = self.peek()
            raise LogQLError(f"unexpected {t[1]!r} at {t[2]}")
        return node

    def expr(self, min_prec):
        """Precedence climbing; ^ binds right."""
        left = self.unary()
        while True:
            t = self.peek()
            op = t[1]
            if t[0] not in ("op", "ident") or op not in BIN_OPS or BIN_OPS[op] < min_prec:
                return left
            self.i += 1
            if self.at("bool", "ident"):
                self.i += 1
            if self.peek()[1] in ("on", "ignoring"):
                self.i += 1
                self.labels_list()
                if self.peek()[1] in ("group_left", "group_right"):
                    self.i += 1
                    if self.at("("):
                        self.labels_list()
            right = self.expr(BIN_OPS[op] if op == "^" else BIN_OPS[op] + 1)
            if left[0] == "log" or right[0] == "log":
                raise LogQLError(f"{op!r} between a log query and a value at {t[2]}")
            left = ("binop", op, left, right)

    def unary(self):
        if self.at("-", "op"):
            self.i += 1
            return ("neg", self.unary())
        return self.primary()

    def primary(self):
        t = self.peek()
        if t[0] == "num":
            self.i += 1
            return ("num", float(t[1]))
        if t[1] == "(" and t[0] == "op":
            self.i += 1
            node = self.expr(0)
            self.take("op", ")")
            return node
        if t[1] == "{":
            sel = self.selector()
            pipe = self.pipeline()
            return ("log", sel, pipe)
        if t[0] == "ident" and t[1] in VECTOR_OPS:
            return self.vector_agg()
        if t[0] == "ident" and t[1] in LINE_RANGE_OPS | UNWRAP_RANGE_OPS | EITHER_RANGE_OPS:
            return self.range_agg()
        if t[0] == "ident" and t[1] == "vector":
            self.i += 1
            self.take("op", "(")
            self.take("num")
            self.take("op", ")")
            return ("num", 0.0)
        raise LogQLError(f"unexpected {t[1] or 'end'!r} at {t[2]}")

    def labels_list(self):
        self.take("op", "(")
        names = []
        while not self.at(")"):
            names.append(self.take("ident")[1])
            if not self.at(")"):
                self.take("op", ",")
        self.take("op", ")")
        return names

    def vector_agg(self):
        op = self.take("ident")
        if self.peek()[1] in ("by", "without"):
            self.i += 1
            self.labels_list()
        self.take("op", "(")
        if op[1] in ("topk", "bottomk"):
            self.take("num")
            self.take("op", ",")
        inner = self.expr(0)
        if inner[0] == "log":
            raise LogQLError(f"{op[1]}() of a log query (needs a range aggregation) at {op[2]}")
        self.take("op", ")")
        if self.peek()[1] in ("by", "without"):
            self.i += 1
            self.labels_list()
        return ("vector", op[1], inner)

    def range_agg(self):
        op = self.take("ident")
        self.take("op", "(")
        if op[1] == "quantile_over_time":
            self.take("num")
            self.take("op", ",")
        sel = self.selector()
        pipe = self.pipeline()
        self.range()
        pipe += self.pipeline()  # the range may also stand before the pipeline
        self.take("op", ")")
        if self.peek()[1] in ("by", "without"):
            self.i += 1
            self.labels_list()
        unwraps = [s for s in pipe if s[0] == "unwrap"]
        if op[1] in UNWRAP_RANGE_OPS and not unwraps:
            raise LogQLError(f"{op[1]}() needs an unwrap stage at {op[2]}")
        if op[1] in LINE_RANGE_OPS and unwraps:
            raise LogQLError(f"{op[1]}() does not take an unwrap stage at {op[2]}")
        if len(unwraps) > 1:
            raise LogQLError(f"more than one unwrap at {op[2]}")
        if unwraps and pipe[-1][0] not in ("unwrap", "filter"):
            raise LogQLError(f"only label filters may follow unwrap at {op[2]}")
        return ("range", op[1], sel, pipe)

    def range(self):
        self.take("op", "[")
        self.take("dur")
        self.take("op", "]")
        if self.at("offset", "ident"):
            self.i += 1
            self.take("dur")

    def selector(self):
        start = self.take("op", "{")
        matchers = []
        while not self.at("}"):
            name = self.take("ident")[1]
            op = self.take("op")
            if op[1] not in ("=", "!=", "=~", "!~"):
                raise LogQLError(f"matcher operator {op[1]!r} at {op[2]}")
            value = unquote(self.take("str"))
            if op[1] in ("=~", "!~"):
                compile_regex(value, op[2])
            matchers.append((name, op[1], value))
            if not self.at("}"):
                self.take("op", ",")
        self.take("op", "}")
        if not any(not matcher_matches(m, "") for m in matchers):
            raise LogQLError(f"the selector at {start[2]} needs a matcher that does not match the empty value")
        self.selectors.append(matchers)
        return matchers

    def pipeline(self):
        stages = []
        while True:
            t = self.peek()
            if t[0] == "op" and t[1] in LINE_OPS:
                self.i += 1
                values = [unquote(self.take("str"))]
                while self.at("or", "ident"):
                    self.i += 1
                    values.append(unquote(self.take("str")))
                if t[1] in ("|~", "!~"):
                    for v in values:
                        compile_regex(v, t[2])
                stages.append(("line", t[1], values))
            elif t[0] == "op" and t[1] == "|":
                self.i += 1
                stages.append(self.stage())
            else:
                break
        self.stages += stages
        return stages

    def stage(self):
        t = self.peek()
        if t[0] != "ident":
            raise LogQLError(f"a stage name after '|' expected, got {t[1]!r} at {t[2]}")
        name = t[1]
        nxt = self.peek(1)
        if name in STAGES and not (nxt[0] == "op" and nxt[1] in CMP_OPS and name not in ("json", "logfmt", "unwrap")):
            self.i += 1
            if name in ("regexp", "pattern", "line_format"):
                value = unquote(self.take("str"))
                if name == "regexp":
                    compile_regex(value, t[2])
                    if not re.search(r"\(\?P<\w+>", value):
                        raise LogQLError(f"regexp stage without a named group at {t[2]}")
                return (name, value)
            if name in ("json", "logfmt"):
                while self.peek()[0] == "flag":
                    flag = self.take("flag")[1]
                    if name != "logfmt" or flag not in ("--strict", "--keep-empty"):
                        raise LogQLError(f"unknown flag {flag} at {t[2]}")
                params = []
                while self.peek()[0] == "ident" and not self.peek()[1] in ("or", "and"):
                    label = self.take("ident")[1]
                    if self.at("=", "op"):
                        self.i += 1
                        unquote(self.take("str"))
                    params.append(label)
                    if not self.at(","):
                        break
                    self.i += 1
                return (name, params)
            if name == "label_format":
                pairs = []
                while True:
                    dst = self.take("ident")[1]
                    self.take("op", "=")
                    src = self.peek()
                    if src[0] == "str":
                        unquote(src)
                    elif src[0] != "ident":
                        raise LogQLError(f"label_format value at {src[2]}")
                    self.i += 1
                    pairs.append(dst)
                    if not self.at(","):
                        return (name, pairs)
                    self.i += 1
            if name in ("drop", "keep"):
                labels = []
                while True:
                    labels.append(self.take("ident")[1])
                    if self.peek()[1] in ("=", "=~", "!=", "!~"):
                        self.i += 1
                        unquote(self.take("str"))
                    if not self.at(","):
                        return (name, labels)
                    self.i += 1
            if name == "unwrap":
                label = self.take("ident")[1]
                if label in ("duration", "duration_seconds", "bytes") and self.at("("):
                    self.i += 1
                    label = self.take("ident")[1]
                    self.take("op", ")")
                return ("unwrap", label)
            return (name, None)
        if not (nxt[0] == "op" and nxt[1] in CMP_OPS):
            raise LogQLError(f"unknown stage {name!r} at {t[2]}")
        return ("filter", self.label_filter())

    def label_filter(self):
        terms = [self.label_filter_term()]
        while self.peek()[1] in ("and", "or", ",") and self.peek()[0] in ("ident", "op"):
            self.i += 1
            terms.append(self.label_filter_term())
        return terms

    def label_filter_term(self):
        if self.at("(", "op"):
            self.i += 1
            inner = self.label_filter()
            self.take("op", ")")
            return inner
        name = self.take("ident")
        op = self.take("op")
        if op[1] not in CMP_OPS:
            raise LogQLError(f"label filter operator {op[1]!r} at {op[2]}")
        value = self.peek()
        if value[0] == "str":
            if op[1] in (">", "<", ">=", "<="):
                raise LogQLError(f"{op[1]} on a string at {value[2]}")
            v = unquote(value)
            if op[1] in ("=~", "!~"):
                compile_regex(v, value[2])
        elif value[0] in ("num", "dur", "bytes"):
            if op[1] in ("=~", "!~"):
                raise LogQLError(f"{op[1]} on a number at {value[2]}")
        else:
            raise LogQLError(f"label filter value expected at {value[2]}, got {value[1]!r}")
        self.i += 1
        return (name[1], op[1], value[1])


def compile_regex(value, pos):
    try:
        re.compile(value)
    except re.error as e:
        raise LogQLError(f"regex {value!r} at {pos}: {e}") from e


def matcher_matches(matcher, value):
    name, op, want = matcher
    if op == "=":
        return value == want
    if op == "!=":
        return value != want
    hit = re.fullmatch(want, value) is not None
    return hit if op == "=~" else not hit


def parse(q):
    """Parses a query; returns (the tree, the parser: .selectors, .stages). Raises LogQLError."""
    p = Parser(q)
    return p.query(), p


def matches(q, labels, line):
    """Whether a stream selector with line filters (Alloy's stage.match selector) keeps a line."""
    tree, _ = parse(q)
    if tree[0] != "log":
        raise LogQLError("not a log query")
    _, sel, pipe = tree
    if not all(matcher_matches(m, labels.get(m[0], "")) for m in sel):
        return False
    for stage in pipe:
        if stage[0] != "line":
            raise LogQLError(f"stage {stage[0]} is not a line filter")
        op, values = stage[1], stage[2]
        if op == "|=":
            ok = any(v in line for v in values)
        elif op == "!=":
            ok = not any(v in line for v in values)
        elif op == "|~":
            ok = any(re.search(v, line) for v in values)
        elif op == "!~":
            ok = not any(re.search(v, line) for v in values)
        else:
            raise LogQLError(f"line filter {op} is not evaluated here")
        if not ok:
            return False
    return True
