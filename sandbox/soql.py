"""A small, honest SOQL subset for the sandbox.

Grammar (keywords case-insensitive):

    SELECT field [, field]* FROM sObject
      [WHERE cond]  [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST] [, ...]]  [LIMIT n]  [OFFSET n]
    cond  := term (OR term)*          term := atom (AND atom)*
    atom  := '(' cond ')' | NOT atom | field op literal | field [NOT] IN (literal, ...) | field [NOT] LIKE 'pattern'
    op    := = != <> < <= > >=
    field := Name | Relationship.Name (one parent level, e.g. Account.Name, Owner.Name)
    literal := 'text' | number | TRUE | FALSE | NULL | YYYY-MM-DD | YYYY-MM-DDThh:mm:ss(.sss)(Z|+hh:mm)

Anything else (aggregates, sub-queries, GROUP BY, date functions, bind variables) is answered with
MALFORMED_QUERY, the same error code Salesforce uses, so callers learn at once that the sandbox does not
understand it rather than getting silently wrong rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sandbox.store import SandboxStore, compare_values

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
      | (?P<date>\d{4}-\d{2}-\d{2})
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op><=|>=|!=|<>|=|<|>)
      | (?P<punct>[(),])
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
      | (?P<bad>\S)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC", "NULLS",
             "FIRST", "LAST", "LIMIT", "OFFSET", "TRUE", "FALSE", "NULL"}
_UNSUPPORTED = {"GROUP", "HAVING", "COUNT", "TYPEOF", "WITH", "FOR", "USING", "INCLUDES", "EXCLUDES", "SUM", "MAX",
                "MIN", "AVG", "FORMAT", "TOLABEL", "CONVERTCURRENCY"}


class SoqlError(ValueError):
    """A query the sandbox refuses: error code (MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE) and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Tok:
    kind: str
    text: str
    pos: int


@dataclass
class Query:
    """A parsed query."""

    fields: list[str]
    sobject: str
    where: Callable[[dict[str, Any]], bool] | None = None
    order: list[tuple[str, bool, bool]] = field(default_factory=list)  # (field, descending, nulls_last)
    limit: int | None = None
    offset: int = 0


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        kind = m.lastgroup or "bad"
        value = m.group(kind)
        start = m.start(kind)
        if kind == "bad":
            if value == ":":
                raise SoqlError("MALFORMED_QUERY", "unexpected token: ':' (bind variables are not supported)")
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{value}'")
        if kind == "ident" and value.upper() in _KEYWORDS:
            kind = "kw"
        toks.append(_Tok(kind, value, start))
    return toks


class _Parser:
    def __init__(self, text: str, store: SandboxStore) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.store = store
        self.sobject = ""

    def error(self, message: str) -> SoqlError:
        tok = self.peek()
        near = tok.text if tok else "end of query"
        col = (tok.pos + 1) if tok else len(self.text) + 1
        return SoqlError("MALFORMED_QUERY", f"\n{self.text}\n{' ' * (col - 1)}^\nERROR at Row:1:Column:{col}\n"
                         f"{message} near '{near}'")

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def kw(self, word: str) -> bool:
        tok = self.peek()
        if tok and tok.kind == "kw" and tok.text.upper() == word:
            self.i += 1
            return True
        return False

    def expect_kw(self, word: str) -> None:
        if not self.kw(word):
            raise self.error(f"expecting '{word}'")

    def punct(self, char: str) -> bool:
        tok = self.peek()
        if tok and tok.kind == "punct" and tok.text == char:
            self.i += 1
            return True
        return False

    def ident(self) -> str:
        tok = self.peek()
        if tok is None or tok.kind != "ident":
            raise self.error("expecting a field name")
        if tok.text.upper() in _UNSUPPORTED:
            raise self.error(f"'{tok.text}' is not supported by the sandbox SOQL subset")
        self.i += 1
        return tok.text

    # ----------------------------------------------------------------- grammar
    def parse(self) -> Query:
        self.expect_kw("SELECT")
        raw_fields = [self.ident()]
        if self.punct("("):
            raise self.error("functions and sub-queries are not supported by the sandbox SOQL subset")
        while self.punct(","):
            if self.punct("("):
                raise self.error("sub-queries are not supported by the sandbox SOQL subset")
            raw_fields.append(self.ident())
        self.expect_kw("FROM")
        tok = self.peek()
        if tok is not None and tok.kind == "ident" and tok.text.upper() == "GROUP":
            self.i += 1  # the Group sObject (queues): GROUP is a keyword only in GROUP BY
            obj_name = tok.text
        else:
            obj_name = self.ident()
        sobject = self.store.sf_sobject(obj_name)
        if sobject is None:
            raise SoqlError("INVALID_TYPE", f"\n{self.text}\n^\nERROR at Row:1:Column:1\nsObject type '{obj_name}' is "
                            "not supported. If you are attempting to use a custom object, be sure to append the '__c' "
                            "after the entity name.")
        self.sobject = sobject
        fields = [self.resolve(f) for f in raw_fields]
        q = Query(fields=fields, sobject=sobject)
        if self.kw("WHERE"):
            q.where = self.cond()
        if self.kw("ORDER"):
            self.expect_kw("BY")
            while True:
                name = self.resolve(self.ident())
                desc = False
                if self.kw("DESC"):
                    desc = True
                else:
                    self.kw("ASC")
                nulls_last = desc
                if self.kw("NULLS"):
                    if self.kw("LAST"):
                        nulls_last = True
                    else:
                        self.expect_kw("FIRST")
                        nulls_last = False
                q.order.append((name, desc, nulls_last))
                if not self.punct(","):
                    break
        if self.kw("LIMIT"):
            q.limit = self.integer()
        if self.kw("OFFSET"):
            q.offset = self.integer()
            if q.offset > 2000:
                raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000")
        if self.peek() is not None:
            raise self.error("unexpected token")
        return q

    def integer(self) -> int:
        tok = self.peek()
        if tok is None or tok.kind != "number" or "." in tok.text or tok.text.startswith("-"):
            raise self.error("expecting a non-negative integer")
        self.i += 1
        return int(tok.text)

    def resolve(self, name: str) -> str:
        """Return the canonical field path, or raise INVALID_FIELD like Salesforce."""
        parts = name.split(".")
        if len(parts) > 2:
            raise self.error("only one relationship level is supported by the sandbox SOQL subset")
        if len(parts) == 2:
            rel, child = parts
            for fdef in self.store.sf_fields[self.sobject].values():
                if (fdef.get("relationshipName") or "").lower() == rel.lower() and fdef["referenceTo"]:
                    # A polymorphic relationship (a Lead's Owner: Group or User) takes the fields its targets have.
                    cdef = next((c for t in fdef["referenceTo"] if (c := self.store.sf_field(t, child)) is not None),
                                None)
                    if cdef is None:
                        break
                    return f"{fdef['relationshipName']}.{cdef['name']}"
            raise SoqlError("INVALID_FIELD", f"\n{self.text}\n^\nERROR at Row:1:Column:1\nNo such column '{name}' on "
                            f"entity '{self.sobject}'. If you are attempting to use a custom field, be sure to append "
                            "the '__c' after the custom field name. Please reference your WSDL or the describe call "
                            "for the appropriate names.")
        fdef = self.store.sf_field(self.sobject, name)
        if fdef is None:
            raise SoqlError("INVALID_FIELD", f"\n{self.text}\n^\nERROR at Row:1:Column:1\nNo such column '{name}' on "
                            f"entity '{self.sobject}'. If you are attempting to use a custom field, be sure to append "
                            "the '__c' after the custom field name. Please reference your WSDL or the describe call "
                            "for the appropriate names.")
        return fdef["name"]

    def cond(self) -> Callable[[dict[str, Any]], bool]:
        terms = [self.term()]
        while self.kw("OR"):
            terms.append(self.term())
        return terms[0] if len(terms) == 1 else (lambda r, ts=terms: any(t(r) for t in ts))

    def term(self) -> Callable[[dict[str, Any]], bool]:
        atoms = [self.atom()]
        while self.kw("AND"):
            atoms.append(self.atom())
        return atoms[0] if len(atoms) == 1 else (lambda r, xs=atoms: all(a(r) for a in xs))

    def atom(self) -> Callable[[dict[str, Any]], bool]:
        if self.punct("("):
            inner = self.cond()
            if not self.punct(")"):
                raise self.error("expecting ')'")
            return inner
        if self.kw("NOT"):
            inner = self.atom()
            return lambda r: not inner(r)
        name = self.resolve(self.ident())
        negate = self.kw("NOT")
        if self.kw("IN"):
            if not self.punct("("):
                raise self.error("expecting '('")
            tok = self.peek()
            if tok is not None and tok.kind == "kw" and tok.text.upper() == "SELECT":
                raise self.error("semi-join sub-queries are not supported by the sandbox SOQL subset")
            values = [self.literal()]
            while self.punct(","):
                values.append(self.literal())
            if not self.punct(")"):
                raise self.error("expecting ')'")
            keys = {_cmp_key(v) for v in values}
            return lambda r: (_cmp_key(_value(r, name)) in keys) != negate
        if self.kw("LIKE"):
            tok = self.peek()
            if tok is None or tok.kind != "string":
                raise self.error("LIKE needs a quoted pattern")
            pattern = self.literal()
            regex = re.compile(
                "^" + "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in str(pattern)) + "$",
                re.IGNORECASE | re.DOTALL,
            )
            return lambda r: (_value(r, name) is not None and bool(regex.match(str(_value(r, name))))) != negate
        if negate:
            raise self.error("expecting IN or LIKE after NOT")
        tok = self.peek()
        if tok is None or tok.kind != "op":
            raise self.error("expecting an operator")
        self.i += 1
        op = "!=" if tok.text == "<>" else tok.text
        right = self.literal()
        rkey = _cmp_key(right)
        return lambda r: compare_values(op, _cmp_key(_value(r, name)), rkey)

    def literal(self) -> Any:
        tok = self.peek()
        if tok is None:
            raise self.error("expecting a value")
        self.i += 1
        if tok.kind == "string":
            return re.sub(r"\\(.)", r"\1", tok.text[1:-1])
        if tok.kind == "number":
            return float(tok.text) if "." in tok.text else int(tok.text)
        if tok.kind == "date":
            return date.fromisoformat(tok.text)
        if tok.kind == "datetime":
            return datetime.fromisoformat(tok.text.replace("Z", "+00:00"))
        if tok.kind == "kw" and tok.text.upper() in ("TRUE", "FALSE", "NULL"):
            return {"TRUE": True, "FALSE": False, "NULL": None}[tok.text.upper()]
        self.i -= 1
        raise self.error("expecting a value")


# The row a predicate sees: the record plus its resolved parents under "Rel.Field" keys.
def _value(row: dict[str, Any], name: str) -> Any:
    return row.get(name)


def _cmp_key(value: Any) -> Any:
    """Normalise values so ids, dates and numbers compare the way Salesforce compares them."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).timestamp()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})", text):
        fixed = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text.replace("Z", "+00:00"))
        return datetime.fromisoformat(fixed).timestamp()
    if len(text) == 15 and text.isalnum() and text[:3].isalnum():
        from sandbox.ids import sf_id18

        try:
            return sf_id18(text).lower()
        except ValueError:
            pass
    return text.lower()


def parse(text: str, store: SandboxStore) -> Query:
    """Parse SOQL text against the store's schema; raises SoqlError."""
    if not text or not text.strip():
        raise SoqlError("MALFORMED_QUERY", "unexpected token: <EOF>")
    return _Parser(text.strip(), store).parse()


def execute(query: Query, store: SandboxStore, version: str) -> list[dict[str, Any]]:
    """Run a parsed query and return records in the REST shape (with attributes and nested parents)."""
    with store.lock:
        rows = []
        rels = {f.split(".")[0] for f in query.fields + [o[0] for o in query.order] if "." in f}
        rel_defs = {fdef["relationshipName"]: fdef for fdef in store.sf_fields[query.sobject].values()
                    if fdef.get("relationshipName") in rels}
        for rec in store.sf_records[query.sobject].values():
            row = dict(rec)
            for rel, fdef in rel_defs.items():
                parent_id = rec.get(fdef["name"]) or ""
                # A polymorphic reference names its target by the id's key prefix (00G a Group, 005 a User).
                parent_type = next((t for t in fdef["referenceTo"] if parent_id in store.sf_records.get(t, {})),
                                   fdef["referenceTo"][0])
                parent = store.sf_records.get(parent_type, {}).get(parent_id)
                for fname in [f for f in query.fields + [o[0] for o in query.order] if f.startswith(rel + ".")]:
                    row[fname] = parent.get(fname.split(".", 1)[1]) if parent else None
                row["__parent__" + rel] = (parent_type, parent["Id"]) if parent else None
            rows.append(row)
    if query.where is not None:
        rows = [r for r in rows if query.where(r)]
    for name, desc, nulls_last in reversed(query.order):
        present = [r for r in rows if r.get(name) is not None]
        missing = [r for r in rows if r.get(name) is None]
        present.sort(key=lambda r: _cmp_key(r[name]), reverse=desc)
        rows = present + missing if nulls_last else missing + present
    rows = rows[query.offset:]
    if query.limit is not None:
        rows = rows[: query.limit]
    base = f"/services/data/v{version}/sobjects"
    out = []
    for row in rows:
        item: dict[str, Any] = {"attributes": {"type": query.sobject, "url": f"{base}/{query.sobject}/{row['Id']}"}}
        for fname in query.fields:
            if "." in fname:
                rel, child = fname.split(".", 1)
                ref = row.get("__parent__" + rel)
                if ref is None:
                    item[rel] = None
                    continue
                nested = item.get(rel) or {"attributes": {"type": ref[0], "url": f"{base}/{ref[0]}/{ref[1]}"}}
                nested[child] = row.get(fname)
                item[rel] = nested
            else:
                item[fname] = row.get(fname)
        out.append(item)
    return out
