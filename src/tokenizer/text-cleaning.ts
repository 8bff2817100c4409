// Text clean-up that runs before CLIP's pre-tokenisation regex:
//   cleanClipText      — openai/CLIP's `whitespace_clean(basic_clean(text)).lower()`: a deterministic subset
//                        of ftfy.fix_text, HTML unescaping twice, whitespace collapse, strip, lowercase;
//   cleanBasicText     — what transformers' slow CLIPTokenizer does when ftfy is not installed
//                        (BasicTokenizer: drop control characters, space out CJK ideographs, NFC, lowercase);
//   htmlUnescape       — Python's html.unescape rules (numeric references, named entities with the legacy
//                        no-semicolon forms), with a table of the common named entities.

// ---------------------------------------------------------------------------------------------------------
// HTML entities

/** Names of U+00A0..U+00FF in order; all of them are also recognised without the trailing ';'. */
const LATIN1_NAMES = (
  "nbsp iexcl cent pound curren yen brvbar sect uml copy ordf laquo not shy reg macr deg plusmn sup2 sup3 " +
  "acute micro para middot cedil sup1 ordm raquo frac14 frac12 frac34 iquest Agrave Aacute Acirc Atilde Auml " +
  "Aring AElig Ccedil Egrave Eacute Ecirc Euml Igrave Iacute Icirc Iuml ETH Ntilde Ograve Oacute Ocirc Otilde " +
  "Ouml times Oslash Ugrave Uacute Ucirc Uuml Yacute THORN szlig agrave aacute acirc atilde auml aring aelig " +
  "ccedil egrave eacute ecirc euml igrave iacute icirc iuml eth ntilde ograve oacute ocirc otilde ouml divide " +
  "oslash ugrave uacute ucirc uuml yacute thorn yuml"
).split(" ");

/** Greek letters from U+0391 and U+03B1 ("-": U+03A2 is unassigned). */
const GREEK_UPPER =
  "Alpha Beta Gamma Delta Epsilon Zeta Eta Theta Iota Kappa Lambda Mu Nu Xi Omicron Pi Rho - Sigma Tau Upsilon Phi Chi Psi Omega";
const GREEK_LOWER =
  "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigmaf sigma tau upsilon phi chi psi omega";

/** Other common named entities (HTML5 names, valid only with ';'), as name -> code point(s). */
const COMMON_ENTITIES: Record<string, number> = {
  apos: 0x27, Tab: 0x09, NewLine: 0x0a, excl: 0x21, num: 0x23, dollar: 0x24, percnt: 0x25, lpar: 0x28,
  rpar: 0x29, ast: 0x2a, plus: 0x2b, comma: 0x2c, period: 0x2e, sol: 0x2f, colon: 0x3a, semi: 0x3b,
  equals: 0x3d, quest: 0x3f, commat: 0x40, lsqb: 0x5b, lbrack: 0x5b, bsol: 0x5c, rsqb: 0x5d, rbrack: 0x5d,
  Hat: 0x5e, lowbar: 0x5f, grave: 0x60, lcub: 0x7b, lbrace: 0x7b, verbar: 0x7c, vert: 0x7c, rcub: 0x7d,
  rbrace: 0x7d, OElig: 0x152, oelig: 0x153, Scaron: 0x160, scaron: 0x161, Yuml: 0x178, fnof: 0x192,
  circ: 0x2c6, tilde: 0x2dc, ensp: 0x2002, emsp: 0x2003, thinsp: 0x2009, zwnj: 0x200c, zwj: 0x200d,
  lrm: 0x200e, rlm: 0x200f, ndash: 0x2013, mdash: 0x2014, lsquo: 0x2018, rsquo: 0x2019, sbquo: 0x201a,
  ldquo: 0x201c, rdquo: 0x201d, bdquo: 0x201e, dagger: 0x2020, Dagger: 0x2021, bull: 0x2022,
  hellip: 0x2026, permil: 0x2030, prime: 0x2032, Prime: 0x2033, lsaquo: 0x2039, rsaquo: 0x203a,
  oline: 0x203e, frasl: 0x2044, euro: 0x20ac, trade: 0x2122, TRADE: 0x2122, larr: 0x2190, uarr: 0x2191,
  rarr: 0x2192, darr: 0x2193, harr: 0x2194, lArr: 0x21d0, uArr: 0x21d1, rArr: 0x21d2, dArr: 0x21d3,
  hArr: 0x21d4, forall: 0x2200, part: 0x2202, exist: 0x2203, empty: 0x2205, nabla: 0x2207, isin: 0x2208,
  ni: 0x220b, prod: 0x220f, sum: 0x2211, minus: 0x2212, lowast: 0x2217, radic: 0x221a,
  prop: 0x221d, infin: 0x221e, ang: 0x2220, and: 0x2227, or: 0x2228, cap: 0x2229, cup: 0x222a, int: 0x222b,
  there4: 0x2234, sim: 0x223c, cong: 0x2245, asymp: 0x2248, ne: 0x2260, equiv: 0x2261, le: 0x2264,
  ge: 0x2265, sub: 0x2282, sup: 0x2283, nsub: 0x2284, sube: 0x2286, supe: 0x2287, oplus: 0x2295,
  otimes: 0x2297, perp: 0x22a5, sdot: 0x22c5, lceil: 0x2308, rceil: 0x2309, lfloor: 0x230a,
  rfloor: 0x230b, loz: 0x25ca, spades: 0x2660, clubs: 0x2663, hearts: 0x2665, diams: 0x2666,
  star: 0x2606, starf: 0x2605, check: 0x2713, cross: 0x2717, sharp: 0x266f, flat: 0x266d, natural: 0x266e,
  female: 0x2640, male: 0x2642, phone: 0x260e, thetasym: 0x3d1, upsih: 0x3d2, piv: 0x3d6,
  weierp: 0x2118, image: 0x2111, real: 0x211c, alefsym: 0x2135, crarr: 0x21b5,
};

/**
 * Every HTML5 name that starts with a legacy name, so that "&gtdot;" is never read as "&gt" + "dot;".
 * Format: name:hex[+hex].
 */
const PREFIXED_ENTITIES =
  "centerdot:b7 copysr:2117 divideontimes:22c7 gtcc:2aa7 gtcir:2a7a gtdot:22d7 gtlPar:2995 gtquest:2a7c " +
  "gtrapprox:2a86 gtrarr:2978 gtrdot:22d7 gtreqless:22db gtreqqless:2a8c gtrless:2277 gtrsim:2273 ltcc:2aa6 " +
  "ltcir:2a79 ltdot:22d6 lthree:22cb ltimes:22c9 ltlarr:2976 ltquest:2a7b ltrPar:2996 ltri:25c3 ltrie:22b4 " +
  "ltrif:25c2 notin:2209 notinE:22f9+338 notindot:22f5+338 notinva:2209 notinvb:22f7 notinvc:22f6 notni:220c " +
  "notniva:220c notnivb:22fe notnivc:22fd parallel:2225 timesb:22a0 timesbar:2a31 timesd:2a30";

/** name -> replacement text, for names valid with ';'. */
const NAMED = new Map<string, string>();
/** names that are also recognised without ';' (the legacy HTML 4 Latin-1 set plus amp/lt/gt/quot). */
const LEGACY = new Set<string>();

(function buildEntityTables(): void {
  LATIN1_NAMES.forEach((name, i) => {
    NAMED.set(name, String.fromCharCode(0xa0 + i));
    LEGACY.add(name);
  });
  const basic: Array<[string, string]> = [["amp", "&"], ["lt", "<"], ["gt", ">"], ["quot", '"']];
  for (const [name, ch] of basic) {
    for (const n of [name, name.toUpperCase()]) {
      NAMED.set(n, ch);
      LEGACY.add(n);
    }
  }
  for (const n of ["COPY", "REG"]) {
    NAMED.set(n, NAMED.get(n.toLowerCase())!);
    LEGACY.add(n);
  }
  GREEK_UPPER.split(" ").forEach((n, i) => n !== "-" && NAMED.set(n, String.fromCharCode(0x391 + i)));
  GREEK_LOWER.split(" ").forEach((n, i) => NAMED.set(n, String.fromCharCode(0x3b1 + i)));
  for (const entry of PREFIXED_ENTITIES.split(" ")) {
    const [name, hex] = entry.split(":");
    NAMED.set(name, String.fromCodePoint(...hex.split("+").map((h) => parseInt(h, 16))));
  }
  for (const [name, cp] of Object.entries(COMMON_ENTITIES)) {
    NAMED.set(name, String.fromCodePoint(cp));
  }
})();

/** Windows-1252 meanings of 0x80..0x9F (undefined bytes keep their C1 code point), as browsers do. */
const CP1252_C1: readonly number[] = [
  0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021, 0x2c6, 0x2030, 0x160, 0x2039, 0x152, 0x8d,
  0x17d, 0x8f, 0x90, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x2dc, 0x2122, 0x161, 0x203a,
  0x153, 0x9d, 0x17e, 0x178,
];

function isNoncharacterOrControl(cp: number): boolean {
  return (
    (cp >= 0x1 && cp <= 0x8) || cp === 0xb || (cp >= 0xe && cp <= 0x1f) || (cp >= 0x7f && cp <= 0x9f) ||
    (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe
  );
}

/** Python's html.unescape treatment of one numeric character reference. */
function numericReference(cp: number): string {
  if (cp === 0) return "\ufffd";
  if (cp === 0x0d) return "\r";
  if (cp >= 0x80 && cp <= 0x9f) return String.fromCharCode(CP1252_C1[cp - 0x80]);
  if ((cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff || !Number.isFinite(cp)) return "\ufffd";
  if (isNoncharacterOrControl(cp)) return "";
  return String.fromCodePoint(cp);
}

/** Python's html.unescape treatment of a named reference `s` (the text after '&', maybe ending in ';'). */
function namedReference(s: string): string {
  if (s.endsWith(";")) {
    const v = NAMED.get(s.slice(0, -1));
    if (v !== undefined) return v;
  } else if (LEGACY.has(s)) {
    return NAMED.get(s)!;
  }
  // The longest legacy name that prefixes s wins ("&ampx" -> "&x", "&notit;" -> "¬it;").
  for (let x = s.length - 1; x > 1; x--) {
    const prefix = s.slice(0, x);
    if (LEGACY.has(prefix)) return NAMED.get(prefix)! + s.slice(x);
  }
  return "&" + s;
}

const CHARREF_RE = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/g;

/**
 * Replaces HTML character references the way Python's `html.unescape` does: `&#233;`, `&#xE9;` (the ';'
 * optional; 0x80..0x9F read as Windows-1252; invalid code points -> U+FFFD or removed), named entities
 * such as `&amp;`, `&eacute;`, `&hellip;` (a table of the common ones), and the legacy names that work
 * without ';' (`&amp`, `&copy`). Unknown names are left as they are.
 */
export function htmlUnescape(text: string): string {
  if (!text.includes("&")) return text;
  return text.replace(CHARREF_RE, (_m, s: string) => {
    if (s[0] !== "#") return namedReference(s);
    const hex = s[1] === "x" || s[1] === "X";
    const digits = s.slice(hex ? 2 : 1).replace(/;$/, "");
    return numericReference(parseInt(digits, hex ? 16 : 10));
  });
}

// ---------------------------------------------------------------------------------------------------------
// ftfy subset

const ANSI_ESCAPE_RE = /\x1b\[[0-9;]*[A-Za-z]/g;
const C1_RE = /[\x80-\x9f]/g;
const FTFY_ENTITY_RE = /&#?[0-9A-Za-z]{1,24};/g;
const LIGATURES: Record<string, string> = {
  "\u0132": "IJ", "\u0133": "ij", "\u0149": "\u02bcn", "\u01c4": "D\u017d", "\u01c5": "D\u017e",
  "\u01c6": "d\u017e", "\u01c7": "LJ", "\u01c8": "Lj", "\u01c9": "lj", "\u01ca": "NJ", "\u01cb": "Nj",
  "\u01cc": "nj", "\u01f1": "DZ", "\u01f2": "Dz", "\u01f3": "dz", "\ufb00": "ff", "\ufb01": "fi",
  "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "\u017ft", "\ufb06": "st",
};
const LIGATURE_RE = new RegExp(`[${Object.keys(LIGATURES).join("")}]`, "g");
const WIDTH_RE = /[\u3000\uff01-\uffef]/g;
const SINGLE_QUOTE_RE = /[\u02bc\u2018-\u201b]/g;
const DOUBLE_QUOTE_RE = /[\u201c-\u201f]/g;
const CONTROL_RE =
  /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc\u{1d173}-\u{1d17a}\u{e0000}-\u{e007f}]/gu;

/**
 * The deterministic part of `ftfy.fix_text` (defaults), which openai/CLIP runs first: remove terminal
 * escapes; C1 controls as Windows-1252; HTML entities `&...;` unless the text contains '<'; Latin
 * ligatures apart; full-width/half-width forms to standard width (U+3000 to a space); curly quotes
 * straightened; lone surrogates to U+FFFD; stray control characters (not tab/newline) removed; NFC.
 * Repeated until nothing changes, as ftfy does. Mojibake detection and repair is not attempted.
 */
export function fixTextLite(text: string): string {
  const unescape = !text.includes("<");
  for (let round = 0; round < 8; round++) {
    const before = text;
    text = text.replace(ANSI_ESCAPE_RE, "");
    text = text.replace(C1_RE, (c) => String.fromCharCode(CP1252_C1[c.charCodeAt(0) - 0x80]));
    if (unescape && text.includes("&")) {
      text = text.replace(FTFY_ENTITY_RE, (e) => {
        const u = htmlUnescape(e);
        return u.includes(";") ? e : u; // a name this table does not know stays as written
      });
    }
    text = text.replace(LIGATURE_RE, (c) => LIGATURES[c]);
    text = text.replace(WIDTH_RE, (c) => (c === "\u3000" ? " " : c.normalize("NFKC")));
    text = text.replace(SINGLE_QUOTE_RE, "'").replace(DOUBLE_QUOTE_RE, '"');
    text = text.toWellFormed();
    text = text.replace(CONTROL_RE, "");
    text = text.normalize("NFC");
    if (text === before) break;
  }
  return text;
}

// ---------------------------------------------------------------------------------------------------------
// Whitespace and the two clean-up modes

/** Unicode White_Space, which is what `\s` means in the `regex` module openai/CLIP uses (JS `\s` differs). */
export const WHITESPACE_CLASS = "\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const WHITESPACE_RUN_RE = new RegExp(`[${WHITESPACE_CLASS}]+`, "g");
const EDGE_WHITESPACE_RE = new RegExp(`^[${WHITESPACE_CLASS}]+|[${WHITESPACE_CLASS}]+$`, "g");

/** Collapses every run of whitespace to one space and strips both ends (CLIP's `whitespace_clean`). */
export function whitespaceClean(text: string): string {
  return text.replace(WHITESPACE_RUN_RE, " ").replace(EDGE_WHITESPACE_RE, "");
}

/** openai/CLIP: `whitespace_clean(basic_clean(text)).lower()` with `basic_clean` = ftfy + unescape twice. */
export function cleanClipText(text: string): string {
  text = fixTextLite(text);
  text = htmlUnescape(htmlUnescape(text));
  return whitespaceClean(text).toLowerCase();
}

const BASIC_DROP_RE = /[\0\ufffd]|(?![\t\n\r])\p{C}/gu; // NUL, U+FFFD, control/format/unassigned chars
const BASIC_SPACE_RE = /[\t\n\r\p{Zs}]/gu;
const CJK_RE =
  /[\u4e00-\u9fff\u3400-\u4dbf\uf900-\ufaff\u{20000}-\u{2a6df}\u{2a700}-\u{2b73f}\u{2b740}-\u{2b81f}\u{2b820}-\u{2ceaf}\u{2f800}-\u{2fa1f}]/gu;

/**
 * transformers' CLIPTokenizer without ftfy (`BasicTokenizer(strip_accents=False, do_split_on_punc=False)`):
 * drop NUL, U+FFFD and control characters; whitespace to spaces; a space either side of every CJK
 * ideograph (so each becomes its own word); NFC; split on whitespace, lowercase, join with single spaces.
 * No HTML unescaping and no ftfy fixes — this is the behaviour of a diffusers install without ftfy.
 */
export function cleanBasicText(text: string): string {
  text = text.replace(BASIC_DROP_RE, "").replace(BASIC_SPACE_RE, " ");
  text = text.replace(CJK_RE, (c) => ` ${c} `).normalize("NFC");
  return whitespaceClean(text).toLowerCase();
}
