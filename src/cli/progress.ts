// The CLI's progress display: a `\r`-redrawn bar with steps, it/s and ETA on a TTY, plain lines
// (about every 10 %) otherwise.

/** A progress display on `stream` (stderr by default). */
export function progressReporter(stream: NodeJS.WriteStream = process.stderr) {
  const tty = Boolean(stream.isTTY);
  let first = 0;
  let open = false; // a TTY bar is drawn and not ended with a newline
  return {
    update(step: number, total: number, elapsedMs: number): void {
      if (step === 1) first = elapsedMs; // steady-state rate: from the end of the first step
      const done = step - 1;
      const rate = done > 0 ? (done * 1000) / Math.max(1, elapsedMs - first) : 1000 / Math.max(1, elapsedMs);
      const eta = (total - step) / rate;
      const stats = `${rate.toFixed(2)} it/s, ETA ${formatSeconds(eta)}`;
      if (tty) {
        const width = 30;
        const filled = Math.round((step / total) * width);
        const bar = "=".repeat(Math.max(0, filled - 1)) + (filled > 0 ? (step === total ? "=" : ">") : "") + " ".repeat(width - filled);
        stream.write(`\r  step ${String(step).padStart(String(total).length)}/${total} [${bar}] ${stats}   `);
        open = step !== total;
        if (step === total) stream.write("\n");
      } else if (step === 1 || step === total || Math.floor((step * 10) / total) > Math.floor(((step - 1) * 10) / total))
        stream.write(`step ${step}/${total} (${stats})\n`); // about every 10 %
    },
    /** End a half-drawn bar so that the next message starts on its own line. */
    interrupt(): void {
      if (open) stream.write("\n");
      open = false;
    },
  };
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s`;
  return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
}
