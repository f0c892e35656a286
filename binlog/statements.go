package binlog

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"

	"github.com/go-mysql-org/go-mysql/replication"
)

// Data-changing statements logged as SQL.
//
// A session whose binlog_format is STATEMENT (or MIXED, for a statement
// it deems safe) logs an INSERT, UPDATE, DELETE, REPLACE or LOAD DATA as
// its text, with no rows: a session opened before binlog_format was set
// to ROW keeps its old format, and a tool may set its own. Such a
// statement on a watched table changed users the binlog cannot name, so
// the stream asks for a full sync, as for a TRUNCATE. The statement's
// text is never quoted: it may hold a password hash.

// statementWrite returns the verb and the watched table of a
// data-changing statement that writes one, or "" for the table when the
// statement is not data-changing or writes only unwatched tables. def is
// the statement's default database.
//
// What counts as written: the target of INSERT, REPLACE and LOAD DATA
// (INSERT ... SELECT only reads the tables it selects from); the tables
// an UPDATE names before SET and a DELETE names before WHERE (for a
// multi-table form this includes tables it only reads: a needless full
// sync is safe, a missed write is not); any table a WITH statement names.
func (a *assembler) statementWrite(def string, q []byte) (verb, table string) {
	if w, _ := firstWord(q); w != nil && !eq(w, "INSERT") && !eq(w, "REPLACE") && !eq(w, "UPDATE") &&
		!eq(w, "DELETE") && !eq(w, "LOAD") && !eq(w, "WITH") {
		return "", "" // DDL and the like; a leading comment is looked into below
	}
	l := &lexer{q: q}
	first, ok := l.next()
	if !ok || first.kind != tokWord {
		return "", ""
	}
	verb = strings.ToUpper(first.text)
	var span []token // the tokens naming written tables
	switch verb {
	case "INSERT", "REPLACE":
		t, _ := l.nextSkipping("LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "INTO")
		span = l.chain(t)
	case "UPDATE":
		span = l.until("SET")
	case "DELETE":
		span = l.until("WHERE")
	case "LOAD":
		verb = "LOAD DATA"
		for prev := first; ; {
			t, ok := l.next()
			if !ok {
				break
			}
			if prev == first && t.is("XML") {
				verb = "LOAD XML"
			}
			if prev.is("INTO") && t.is("TABLE") {
				t, _ = l.next()
				span = l.chain(t)
				break
			}
			prev = t
		}
	case "WITH":
		span = l.until("")
	default:
		return "", ""
	}
	return verb, a.watchedIn(span, def)
}

// watchedIn returns the first watched table of this schema that a name
// chain in toks can denote, or "". A chain a.b may be db.table or
// table.column, a.b.c is db.table.column: every reading counts.
func (a *assembler) watchedIn(toks []token, def string) string {
	ours := func(db string) bool { return a.names.equal(db, a.schema) }
	lookup := func(db, table string) string {
		if !ours(db) {
			return ""
		}
		if t := a.tables[a.names.key(table)]; t != nil {
			return t.Name
		}
		return ""
	}
	for i := 0; i < len(toks); i++ {
		if !toks[i].ident() {
			continue
		}
		chain := []string{toks[i].text}
		for i+2 < len(toks) && toks[i+1].text == "." && toks[i+2].ident() {
			chain = append(chain, toks[i+2].text)
			i += 2
		}
		var found string
		switch len(chain) {
		case 1:
			found = lookup(def, chain[0])
		case 2:
			if found = lookup(chain[0], chain[1]); found == "" {
				found = lookup(def, chain[0])
			}
		default:
			found = lookup(chain[len(chain)-3], chain[len(chain)-2])
		}
		if found != "" {
			return found
		}
	}
	return ""
}

// loadQuery returns the default database and the statement text of an
// Execute_load_query event (LOAD DATA in STATEMENT format), which the
// replication library decodes without them. postHeader is the event
// type's post-header length from the format description event, checksum
// whether events end in a CRC32.
func loadQuery(raw []byte, postHeader int, checksum bool) (schema string, query []byte, ok bool) {
	const header = 19
	if checksum {
		if len(raw) < 4 {
			return "", nil, false
		}
		raw = raw[:len(raw)-4]
	}
	// Post-header: thread id 4, exec time 4, db length 1, error code 2,
	// status vars length 2, then file id, start and end of the file
	// name in the query, and the duplicate handling.
	if postHeader < 13 || len(raw) < header+postHeader {
		return "", nil, false
	}
	p := raw[header:]
	dbLen := int(p[8])
	statusLen := int(binary.LittleEndian.Uint16(p[11:13]))
	rest := p[postHeader:]
	if len(rest) < statusLen+dbLen+1 {
		return "", nil, false
	}
	rest = rest[statusLen:]
	return string(rest[:dbLen]), rest[dbLen+1:], true
}

// executeLoadQueryPostHeader is the post-header length of an
// Execute_load_query event when no format description says otherwise.
const executeLoadQueryPostHeader = 26

// postHeaderLen returns the post-header length fde gives event type typ.
func postHeaderLen(fde *replication.FormatDescriptionEvent, typ replication.EventType) int {
	if fde == nil || int(typ) < 1 || int(typ) > len(fde.EventTypeHeaderLengths) {
		return executeLoadQueryPostHeader
	}
	return int(fde.EventTypeHeaderLengths[typ-1])
}

// token is one lexical element of a statement: a bare word, a quoted
// identifier, a possible identifier in double quotes, or a punctuation
// character. String literals, numbers and comments are dropped.
type token struct {
	text string
	kind tokenKind
}

type tokenKind int

const (
	tokWord   tokenKind = iota // bare word: keyword or identifier
	tokQuoted                  // `identifier`
	tokDouble                  // "x": an identifier under ANSI_QUOTES (Drupal's sql_mode), else a string
	tokPunct                   // . , ( ) ; = and the like
)

// ident reports whether the token can be an identifier.
func (t token) ident() bool { return t.kind != tokPunct }

// is reports whether t is the bare keyword kw (upper case).
func (t token) is(kw string) bool { return t.kind == tokWord && strings.EqualFold(t.text, kw) }

// lexer reads a statement a token at a time. Comments are skipped, but
// the body of an executable comment (/*! ... */, /*M! ... */) is read, as
// the server runs it. String literals and numbers are skipped unread.
type lexer struct {
	q []byte
	i int
}

// next returns the next token; ok is false at the end of the statement.
func (l *lexer) next() (t token, ok bool) {
	q := l.q
	for l.i < len(q) {
		i := l.i
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			l.i++
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			j := i + 2
			if j+1 < len(q) && q[j] == 'M' && q[j+1] == '!' {
				j++
			}
			if j < len(q) && q[j] == '!' {
				// Executable comment: skip the marker and version, read
				// the body; its closing */ is skipped below.
				j++
				for j < len(q) && q[j] >= '0' && q[j] <= '9' {
					j++
				}
				l.i = j
				continue
			}
			end := bytes.Index(q[j:], []byte("*/"))
			if end < 0 {
				l.i = len(q)
				return token{}, false
			}
			l.i = j + end + 2
		case c == '*' && i+1 < len(q) && q[i+1] == '/':
			l.i += 2
		case c == '#' || c == '-' && i+2 < len(q) && q[i+1] == '-' && (q[i+2] == ' ' || q[i+2] == '\t' || q[i+2] == '\n'):
			for l.i < len(q) && q[l.i] != '\n' {
				l.i++
			}
		case c == '\'':
			_, l.i = quoted(q, i, false)
		case c == '"' || c == '`':
			text, next := quoted(q, i, true)
			l.i = next
			if c == '`' {
				return token{text, tokQuoted}, true
			}
			return token{text, tokDouble}, true
		case isIdentByte(c):
			j := i
			for j < len(q) && isIdentByte(q[j]) {
				j++
			}
			l.i = j
			if c >= '0' && c <= '9' && allDigits(q[i:j]) {
				continue // a number
			}
			return token{string(q[i:j]), tokWord}, true
		default:
			l.i++
			return token{string(c), tokPunct}, true
		}
	}
	return token{}, false
}

// nextSkipping returns the next token that is not one of the keywords
// kws.
func (l *lexer) nextSkipping(kws ...string) (token, bool) {
	for {
		t, ok := l.next()
		if !ok || !slices.ContainsFunc(kws, t.is) {
			return t, ok
		}
	}
}

// chain returns the name chain (a, a.b, a.b.c) starting with t.
func (l *lexer) chain(t token) []token {
	if !t.ident() || t.text == "" {
		return nil
	}
	out := []token{t}
	for {
		save := l.i
		dot, ok := l.next()
		if !ok || dot.kind != tokPunct || dot.text != "." {
			l.i = save
			return out
		}
		name, ok := l.next()
		if !ok || !name.ident() {
			l.i = save
			return out
		}
		out = append(out, dot, name)
	}
}

// until returns the tokens up to the first keyword kw outside
// parentheses, or to the end ("" reads to the end).
func (l *lexer) until(kw string) []token {
	var out []token
	depth := 0
	for {
		t, ok := l.next()
		if !ok {
			return out
		}
		switch {
		case t.kind == tokPunct && t.text == "(":
			depth++
		case t.kind == tokPunct && t.text == ")":
			depth--
		case depth == 0 && kw != "" && t.is(kw):
			return out
		}
		out = append(out, t)
	}
}

// quoted reads the quoted token starting at q[i] (its quote character
// doubled inside stands for itself; outside backquotes a backslash
// escapes the next byte) and returns its content, when keep, and the
// index after it.
func quoted(q []byte, i int, keep bool) (string, int) {
	quote := q[i]
	var b strings.Builder
	for j := i + 1; j < len(q); j++ {
		switch {
		case q[j] == '\\' && quote != '`' && j+1 < len(q):
			j++
			if keep {
				b.WriteByte(q[j])
			}
		case q[j] == quote && j+1 < len(q) && q[j+1] == quote:
			j++
			if keep {
				b.WriteByte(quote)
			}
		case q[j] == quote:
			return b.String(), j + 1
		default:
			if keep {
				b.WriteByte(q[j])
			}
		}
	}
	return b.String(), len(q)
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
