// JSON as Python's json module writes it: bare NaN, Infinity and -Infinity are allowed.
// Configs and golden metadata written by Python may contain them.

const SENTINEL = "@@bd-python-nonfinite@@:";

/** Parse JSON that may contain bare NaN / Infinity / -Infinity (outside strings) as numbers. */
export function parsePythonJson(text: string): unknown {
  const quoted = text.replace(/"(?:[^"\\]|\\.)*"|-?Infinity|NaN/g, (m) => (m.startsWith('"') ? m : `"${SENTINEL}${m}"`));
  return JSON.parse(quoted, (_key, value) => {
    if (typeof value === "string" && value.startsWith(SENTINEL)) {
      const v = value.slice(SENTINEL.length);
      return v === "NaN" ? NaN : v === "Infinity" ? Infinity : -Infinity;
    }
    return value;
  });
}
