// Scheduler golden tests: every `schedulers/*` entry of the golden index (never a fixed list) is
// rebuilt from its recorded config and run through the recorded loop — x = x_T·init_noise_sigma,
// model_input = scale_model_input(x, t), the recorded model_output, step(...) with the recorded
// noise injected through the NoiseSource — comparing every recorded tensor, end to end. Batch
// size, shapes, step count, timesteps, config and step options all come from the files and their
// metadata, so any golden folder of the same layout (BD_GOLDEN_DIR) is replayed the same way. A
// second replay stacks each case into a batch of 2 copies and checks every copy against diffusers
// and against the single replay.

import { afterAll, describe, expect, test } from "bun:test";
import { type Tensor, cat, memoryStats, tidy } from "../../src/tensor/index.ts";
import { type NoiseSource, type Scheduler, type StepOptions, schedulerFromConfig } from "../../src/schedulers/index.ts";
import { type GoldenEntry, goldenCases, goldenTensor, maxError, openGolden } from "../helpers/golden.ts";

/**
 * Tolerance against diffusers: atol = 2e-6 · max(1, max|ref|). The README measures schedulers
 * alone to ~1e-6 relative (the public set replays bit-exactly today); the factor 2 leaves room for
 * an ulp of different float32 rounding in other sets' configurations, and max(1, ·) keeps the
 * bound meaningful where the reference is near 0 (the last steps, σ → 0).
 */
const REL_TOL = 2e-6;

/** How many copies the batched replay stacks along dim 0 (each must reproduce the single run). */
const BATCH_COPIES = 2;

/** diffusers step() keyword arguments → our StepOptions keys (others cannot be replayed). */
const STEP_KWARGS: Record<string, keyof StepOptions> = {
  eta: "eta",
  s_churn: "sChurn",
  s_tmin: "sTmin",
  s_tmax: "sTmax",
  s_noise: "sNoise",
};

const report: string[] = [];
afterAll(() => {
  if (report.length) console.log(`scheduler golden max errors (atol = ${REL_TOL}·max(1, max|ref|)):\n${report.join("\n")}`);
});

function values(t: Tensor): number[] {
  return Array.from(t.toFloat32Array(), Number);
}

interface CaseMeta {
  className: string;
  config: Record<string, unknown>;
  steps: number;
  stepOptions: StepOptions;
  noiseSteps: number[];
  /** The `stepNN/` groups the file records, in order (their count is the number of step calls). */
  stepPrefixes: string[];
}

function caseMeta(entry: GoldenEntry): CaseMeta {
  const m = entry.meta as Record<string, unknown>;
  const config = (m.scheduler_config ?? m.config) as Record<string, unknown> | undefined;
  if (!config) throw new Error(`${entry.file}: metadata has no config / scheduler_config`);
  const className = (m.class_name ?? m.component ?? config._class_name) as unknown;
  if (typeof className !== "string") throw new Error(`${entry.file}: metadata names no scheduler class`);
  if (typeof m.num_inference_steps !== "number") throw new Error(`${entry.file}: metadata has no num_inference_steps`);
  const stepOptions: Record<string, unknown> = {};
  for (const [key, value] of Object.entries((m.step_kwargs ?? {}) as Record<string, unknown>)) {
    const ours = STEP_KWARGS[key];
    if (!ours) throw new Error(`${entry.file}: step kwarg "${key}" has no StepOptions equivalent; add it to STEP_KWARGS`);
    stepOptions[ours] = value;
  }
  const stepPrefixes = [...new Set(Object.keys(entry.tensors).flatMap((k) => /^(step\d+\/)/.exec(k)?.[1] ?? []))].sort();
  return {
    className,
    config: { ...config, _class_name: className },
    steps: m.num_inference_steps,
    stepOptions: stepOptions as StepOptions,
    noiseSteps: (m.noise_drawn_at_steps ?? []) as number[],
    stepPrefixes,
  };
}

/** One replay of a case: a scheduler fed `copies` stacked copies of the recorded batch. */
interface Lane {
  s: Scheduler;
  copies: number;
  x: Tensor;
}

/**
 * Replay `entry` in lockstep on a single-batch lane and, when copies > 1, on a lane with the
 * batch stacked `copies` times: every block of rows is compared with diffusers, and each block
 * of the stacked lane also with the single lane (elementwise scheduler math should agree bit for
 * bit, but the CPU backend may vectorise a larger tensor differently, so the same REL_TOL bound).
 * Returns the worst relative error and where it occurred.
 */
function replay(entry: GoldenEntry, copies: number): { worst: number; where: string } {
  const meta = caseMeta(entry);
  const f = openGolden(entry.file);
  const has = (name: string) => f.has(name);
  const load = (name: string) => goldenTensor(f, name);
  const T = meta.config.num_train_timesteps;
  if (typeof T !== "number") throw new Error(`${entry.file}: config has no num_train_timesteps`);
  let worst = 0;
  let worstWhere = "";
  const check = (name: string, actual: ArrayLike<number>, ref: ArrayLike<number>, scale?: number, tracked = true) => {
    const { maxAbs, maxRef } = maxError(actual, ref);
    const bound = Math.max(1, scale ?? maxRef);
    if (tracked && maxAbs / bound > worst) {
      worst = maxAbs / bound;
      worstWhere = name;
    }
    if (!(maxAbs <= REL_TOL * bound)) throw new Error(`${entry.file} ${name}: max |diff| ${maxAbs} > ${REL_TOL * bound} (max |ref| ${maxRef})`);
  };
  /** Each of the `copies` blocks of rows of `actual` against `ref` (and against `single`, the single-batch result). */
  const compareBlocks = (name: string, actual: Tensor, ref: Tensor, copies: number, single?: Tensor) => {
    const batch = ref.shape[0]!;
    expect(actual.shape).toEqual([copies * batch, ...ref.shape.slice(1)]);
    for (let k = 0; k < copies; k++) {
      const block = actual.narrow(0, k * batch, batch);
      try {
        const label = copies === 1 ? name : `${name} rows ${k * batch}..${(k + 1) * batch - 1} of ${copies * batch}`;
        check(label, block.toFloat32Array(), ref.toFloat32Array());
        if (single) check(`${label} vs the single-batch replay`, block.toFloat32Array(), single.toFloat32Array(), undefined, false);
      } finally {
        block.dispose();
      }
    }
  };
  /** `t` stacked `copies` times along dim 0 (a new tensor; `t` is left to the caller). */
  const stacked = (t: Tensor, n: number) => (n === 1 ? t.reshape(t.shape) : cat(Array<Tensor>(n).fill(t), 0));

  const makeScheduler = () => {
    const s = schedulerFromConfig(meta.config);
    expect(s.className).toBe(meta.className);
    s.setTimesteps(meta.steps);
    return s;
  };
  const s = makeScheduler();

  // Schedule: integer timesteps exactly (they are rounded from a float64 grid: any difference is a
  // real error); float32 timesteps (fractional with Karras σ's) to REL_TOL relative to
  // num_train_timesteps, their scale; σ's, ᾱ and init noise sigma to REL_TOL.
  const tsRef = load("timesteps");
  const tsRefVals = values(tsRef);
  const intTimesteps = tsRef.dtype === "int64";
  tsRef.dispose();
  expect(s.timesteps.length).toBe(tsRefVals.length);
  expect(meta.stepPrefixes.length).toBe(tsRefVals.length);
  if (intTimesteps) expect(s.timesteps).toEqual(tsRefVals);
  else check("timesteps", s.timesteps, tsRefVals, T);
  if (has("sigmas")) {
    const sig = load("sigmas");
    check("sigmas", s.sigmas!, values(sig));
    sig.dispose();
  }
  const ac = load("alphas_cumprod");
  check("alphas_cumprod", s.alphasCumprod, values(ac));
  ac.dispose();
  const ins = load("init_noise_sigma");
  check("init_noise_sigma", [s.initNoiseSigma], values(ins));
  ins.dispose();
  // The recorded noise draws and the metadata's list agree (so the draw count below is meaningful).
  expect(meta.stepPrefixes.flatMap((p, i) => (has(`${p}noise`) ? [i] : []))).toEqual(meta.noiseSteps);

  const before = memoryStats("cpu").live;
  const xT = load("x_T");
  const lanes: Lane[] = [1, ...(copies > 1 ? [copies] : [])].map((n, i) => {
    const sched = i === 0 ? s : makeScheduler();
    const xs = stacked(xT, n);
    const x = tidy(() => xs.mul(sched.initNoiseSigma));
    xs.dispose();
    return { s: sched, copies: n, x };
  });
  xT.dispose();
  const latents0 = load("latents_0");
  for (const lane of lanes) compareBlocks("latents_0", lane.x, latents0, lane.copies, lane.copies === 1 ? undefined : lanes[0]!.x);
  latents0.dispose();

  meta.stepPrefixes.forEach((p, i) => {
    const t = s.timesteps[i]!;
    const tRef = load(`${p}t`);
    if (intTimesteps) expect(t).toBe(values(tRef)[0]!);
    else check(`${p}t`, [t], values(tRef), T);
    tRef.dispose();
    const modelOutput = load(`${p}model_output`);
    const refs = new Map<string, Tensor>();
    const ref = (name: string) => {
      if (!refs.has(name)) refs.set(name, load(name));
      return refs.get(name)!;
    };
    const singles = new Map<string, Tensor>();
    for (const lane of lanes) {
      const single = (name: string) => (lane.copies === 1 ? undefined : singles.get(name));
      const keepSingle = (name: string, v: Tensor) => {
        if (lane.copies === 1) singles.set(name, v.reshape(v.shape));
      };
      const modelInput = lane.s.scaleModelInput(lane.x, t);
      compareBlocks(`${p}model_input`, modelInput, ref(`${p}model_input`), lane.copies, single(`${p}model_input`));
      keepSingle(`${p}model_input`, modelInput);
      if (lane.copies === 1) {
        // The recording's fake model, 0.1·model_input + sin(float32(t)/100): a check of the data
        // (not of the scheduler, so untracked); the replay feeds the recorded output itself.
        const fake = tidy(() => modelInput.mul(0.1).add(Math.sin(Math.fround(t) / 100)));
        check(`${p}model_output (formula)`, fake.toFloat32Array(), modelOutput.toFloat32Array(), undefined, false);
        fake.dispose();
      }
      modelInput.dispose();

      // Inject the recorded noise (stacked like the batch); a draw where none was recorded, or
      // none where one was, fails.
      const noiseName = `${p}noise`;
      let drawn = 0;
      const generator: NoiseSource = (shape) => {
        if (!has(noiseName)) throw new Error(`${entry.file}: step ${i} drew noise but diffusers did not`);
        drawn++;
        const n = load(noiseName);
        const out = stacked(n, lane.copies);
        n.dispose();
        expect([...out.shape]).toEqual([...shape]);
        return out;
      };
      const mo = stacked(modelOutput, lane.copies);
      const out = lane.s.step(mo, t, lane.x, { ...meta.stepOptions, generator });
      mo.dispose();
      expect(drawn).toBe(meta.noiseSteps.includes(i) ? 1 : 0);

      compareBlocks(`${p}prev_sample`, out.prevSample, ref(`${p}prev_sample`), lane.copies, single(`${p}prev_sample`));
      keepSingle(`${p}prev_sample`, out.prevSample);
      for (const [field, value] of [
        ["pred_original_sample", out.predOriginalSample],
        ["denoised", out.denoised],
      ] as const) {
        if (!has(`${p}${field}`)) continue; // diffusers' output has no such field for this class
        expect(value).toBeDefined();
        compareBlocks(`${p}${field}`, value!, ref(`${p}${field}`), lane.copies, single(`${p}${field}`));
        keepSingle(`${p}${field}`, value!);
      }
      out.predOriginalSample?.dispose();
      out.denoised?.dispose();
      lane.x.dispose();
      lane.x = out.prevSample;
    }
    for (const v of [...refs.values(), ...singles.values()]) v.dispose();
    modelOutput.dispose();
  });
  const final = load("final");
  for (const lane of lanes) compareBlocks("final", lane.x, final, lane.copies, lane.copies === 1 ? undefined : lanes[0]!.x);
  final.dispose();
  for (const lane of lanes) {
    lane.x.dispose();
    lane.s.dispose();
  }
  expect(memoryStats("cpu").live).toBe(before);
  return { worst, where: worstWhere };
}

const cases = goldenCases("schedulers");

test("the golden index lists scheduler cases", () => {
  expect(cases.length).toBeGreaterThan(0);
});

describe.each(cases.map((c) => [c.file, c] as const))("%s", (_file, entry) => {
  test("matches diffusers step by step", () => {
    const { worst, where } = replay(entry, 1);
    const meta = caseMeta(entry);
    report.push(`  ${entry.file.padEnd(42)} ${meta.className.padEnd(32)} ${worst === 0 ? "bit-exact" : `max err ${worst.toExponential(2)}·max(1,|ref|) at ${where}`}`);
  });

  test(`a batch of ${BATCH_COPIES} stacked copies: every copy matches diffusers and the single-batch replay`, () => {
    replay(entry, BATCH_COPIES);
  });
});
