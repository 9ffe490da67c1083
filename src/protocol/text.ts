// The one sanitiser for text that reaches a terminal. Whatever the server (or
// a man in the middle, or the caller of an agent) says may try to rewrite the
// owner's screen: escape sequences (C0/C1 controls), a newline inside a field
// that forges an extra line ("Audit clean"), bidirectional overrides that make
// text read differently from its bytes, zero-width characters that hide in a
// name. Every such character becomes "?" (threat 10).

// Other (controls, format characters incl. bidi and zero-width, surrogates, private
// use, unassigned) and the line and paragraph separators.
const UNSAFE = /[\p{C}\p{Zl}\p{Zp}]/gu;
const UNSAFE_BUT_LINES = /(?![\n\t])[\p{C}\p{Zl}\p{Zp}]/gu;
// What JSON.stringify leaves raw that a terminal may still obey or hide.
const JSON_UNSAFE = /[\u007f-\u009f\p{Cf}\u2028\u2029]/gu;

/** A one-line field: no newline, tab or any other control or invisible character. */
export function cleanLine(s: string, max?: number): string {
  const t = s.replace(UNSAFE, '?');
  return max !== undefined && t.length > max ? t.slice(0, max - 1) + '…' : t;
}

/** Text of several lines: newlines and tabs kept, everything else as cleanLine. */
export function cleanText(s: string): string {
  return s.replace(UNSAFE_BUT_LINES, '?');
}

/** JSON for a terminal: C0 is escaped by JSON itself; DEL, C1, format characters and separators are escaped too. */
export function jsonForTerminal(value: unknown, space?: number): string {
  const esc = (c: string): string => [...Array(c.length).keys()].map((i) => `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`).join('');
  return JSON.stringify(value, null, space).replace(JSON_UNSAFE, esc);
}
