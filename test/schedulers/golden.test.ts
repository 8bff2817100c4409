// Scheduler golden tests: every `schedulers/*` entry of the golden index (never a fixed list) is
// rebuilt from its recorded config and run through the recorded loop — x = x_T·init_noise_sigma,
// model_input = scale_model_input(x, t), the recorded model_output, step(...) with the recorded
// noise injected through the NoiseSource — comparing every recorded tensor, end to end.

import { afterAll, describe, expect, test } from "bun:test";
import { type Tensor, memoryStats, tidy } from "../../src/tensor/index.ts";
import { type NoiseSource, type Scheduler, schedulerFromConfig } from "../../src/schedulers/index.ts";
import { type GoldenEntry, goldenCases, goldenTensor, maxError, openGolden } from "../helpers/golden.ts";

/** ~1e-6 relative: atol = 2e-6 · max(1, max|ref|) (README: schedulers alone match to ~1e-6). */
const REL_TOL = 2e-6;

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
  stepKwargs: Record<string, unknown>;
  noiseSteps: number[];
}

function caseMeta(entry: GoldenEntry): CaseMeta {
  const m = entry.meta as Record<string, unknown>;
  const config = (m.scheduler_config ?? m.config) as Record<string, unknown>;
  const className = (m.class_name ?? m.component ?? config._class_name) as string;
  return {
    className,
    config: { ...config, _class_name: className },
    steps: m.num_inference_steps as number,
    stepKwargs: (m.step_kwargs ?? {}) as Record<string, unknown>,
    noiseSteps: (m.noise_drawn_at_steps ?? []) as number[],
  };
}

const cases = goldenCases("schedulers");

test("the golden index lists scheduler cases", () => {
  expect(cases.length).toBeGreaterThan(0);
});

describe.each(cases.map((c) => [c.file, c] as const))("%s", (_file, entry) => {
  test("matches diffusers step by step", () => {
    const meta = caseMeta(entry);
    const f = openGolden(entry.file);
    const has = (name: string) => f.has(name);
    const load = (name: string) => goldenTensor(f, name);
    let worst = 0;
    let worstWhere = "";
    const check = (name: string, actual: ArrayLike<number>, ref: ArrayLike<number>, scale?: number, tracked = true) => {
      const { maxAbs, maxRef } = maxError(actual, ref);
      const atol = REL_TOL * Math.max(1, scale ?? maxRef);
      const rel = maxAbs / Math.max(1, scale ?? maxRef);
      if (tracked && rel > worst) {
        worst = rel;
        worstWhere = name;
      }
      if (!(maxAbs <= atol)) throw new Error(`${entry.file} ${name}: max |diff| ${maxAbs} > ${atol} (max |ref| ${maxRef})`);
    };
    const compareTensor = (name: string, actual: Tensor) => {
      const ref = load(name);
      try {
        expect(actual.shape).toEqual(ref.shape);
        check(name, actual.toFloat32Array(), ref.toFloat32Array());
      } finally {
        ref.dispose();
      }
    };

    const s: Scheduler = schedulerFromConfig(meta.config);
    expect(s.className).toBe(meta.className);
    s.setTimesteps(meta.steps);

    // Schedule: timesteps (integers exact; float timesteps to float32 tolerance), σ's, ᾱ, init σ.
    const tsRef = load("timesteps");
    const tsRefVals = values(tsRef);
    const intTimesteps = tsRef.dtype === "int64";
    tsRef.dispose();
    if (intTimesteps) expect(s.timesteps).toEqual(tsRefVals);
    else check("timesteps", s.timesteps, tsRefVals);
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

    const before = memoryStats("cpu").live;
    const xT = load("x_T");
    let x = tidy(() => xT.mul(s.initNoiseSigma));
    xT.dispose();
    compareTensor("latents_0", x);

    for (let i = 0; i < s.timesteps.length; i++) {
      const p = `step${String(i).padStart(2, "0")}/`;
      const t = s.timesteps[i]!;
      const tRef = load(`${p}t`);
      if (intTimesteps) expect(t).toBe(values(tRef)[0]!);
      else check(`${p}t`, [t], values(tRef), 1000);
      tRef.dispose();

      const modelInput = s.scaleModelInput(x, t);
      compareTensor(`${p}model_input`, modelInput);
      // The fake model of the recording: 0.1·model_input + sin(float32(t)/100); use the recorded output.
      const modelOutput = load(`${p}model_output`);
      const fake = tidy(() => modelInput.mul(0.1).add(Math.sin(Math.fround(t) / 100)));
      check(`${p}model_output (formula)`, fake.toFloat32Array(), modelOutput.toFloat32Array(), undefined, false);
      fake.dispose();
      modelInput.dispose();

      // Inject the recorded noise; a draw where none was recorded (or none where one was) fails.
      const noiseName = `${p}noise`;
      let drawn = 0;
      const generator: NoiseSource = (shape) => {
        if (!has(noiseName)) throw new Error(`${entry.file}: step ${i} drew noise but diffusers did not`);
        drawn++;
        const n = load(noiseName);
        expect([...n.shape]).toEqual([...shape]);
        return n;
      };
      const eta = meta.stepKwargs.eta as number | undefined;
      const out = s.step(modelOutput, t, x, { generator, eta });
      expect(drawn).toBe(meta.noiseSteps.includes(i) ? 1 : 0);
      modelOutput.dispose();

      compareTensor(`${p}prev_sample`, out.prevSample);
      if (has(`${p}pred_original_sample`)) {
        expect(out.predOriginalSample).toBeDefined();
        compareTensor(`${p}pred_original_sample`, out.predOriginalSample!);
      }
      if (has(`${p}denoised`)) {
        expect(out.denoised).toBeDefined();
        compareTensor(`${p}denoised`, out.denoised!);
      }
      out.predOriginalSample?.dispose();
      out.denoised?.dispose();
      x.dispose();
      x = out.prevSample;
    }
    compareTensor("final", x);
    x.dispose();
    s.dispose();
    expect(memoryStats("cpu").live).toBe(before);
    report.push(`  ${entry.file.padEnd(42)} ${meta.className.padEnd(32)} ${worst === 0 ? "bit-exact" : `max err ${worst.toExponential(2)}·max(1,|ref|) at ${worstWhere}`}`);
  });
});
