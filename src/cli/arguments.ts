// Argument parsers shared by the CLI's commands (commander coercions): each throws an InvalidArgumentError
// that names what was expected, which commander prints with the option's name.

import { InvalidArgumentError } from "commander";

export function positiveInt(what: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer for ${what}`);
    return n;
  };
}

export function multipleOf8(v: string): number {
  const n = positiveInt("the size")(v);
  if (n % 8 !== 0) throw new InvalidArgumentError(`must be a multiple of 8 (try ${Math.max(8, Math.round(n / 8) * 8)})`);
  return n;
}

export function finite(v: string): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n)) throw new InvalidArgumentError("expected a number");
  return n;
}
