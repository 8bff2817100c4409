// Scheduler API tests: construction by name and by config (diffusers' from_config semantics),
// configuration and step-count errors, timestep spacings against NumPy-computed values, the
// pipeline goldens' scheduler replay (real model configs, recorded UNet outputs; batch size,
// shapes, steps and guidance read from each file), add_noise, the LMS quadrature, and memory:
// every scheduler returns CPU live bytes to the start after a loop and dispose(). The API tests
// use SD 1.5's published scheduler_config.json as a fixture (not the golden folder's copy, which
// another golden set may replace).

import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { type Tensor, TorchGenerator, memoryStats, randn, tensor, tidy } from "../../src/tensor/index.ts";
import {
  SCHEDULER_CLASSES,
  SCHEDULER_NAMES,
  type Scheduler,
  SchedulerConfigError,
  schedulerByName,
  schedulerFromConfig,
  torchNoise,
} from "../../src/schedulers/index.ts";
import { integrate } from "../../src/schedulers/lms.ts";
import { LMSDiscreteScheduler } from "../../src/schedulers/lms.ts";
import { solveF32 } from "../../src/schedulers/unipc.ts";
import { goldenCases, goldenTensor, maxError, openGolden } from "../helpers/golden.ts";
import { goldenDir } from "../helpers/paths.ts";

/** runwayml/stable-diffusion-v1-5's scheduler/scheduler_config.json (diffusers 0.31 save). */
const sd15Config: Record<string, unknown> = {
  _class_name: "PNDMScheduler",
  _diffusers_version: "0.31.0",
  beta_end: 0.012,
  beta_schedule: "scaled_linear",
  beta_start: 0.00085,
  clip_sample: false,
  num_train_timesteps: 1000,
  prediction_type: "epsilon",
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  timestep_spacing: "leading",
  trained_betas: null,
};

const SHAPE = [1, 4, 8, 8];

/** A deterministic stand-in for the UNet: 0.1·x + sin(t/100). */
function fakeModel(x: Tensor, t: number): Tensor {
  return tidy(() => x.mul(0.1).add(Math.sin(Math.fround(t) / 100)));
}

/** The README loop; returns the final sample (caller disposes). */
function runLoop(s: Scheduler, steps: number, seed = 0, wrapInTidy = false): Tensor {
  s.setTimesteps(steps);
  const gen = new TorchGenerator(seed);
  const xT = randn(SHAPE, { seed: seed + 1 });
  let x = tidy(() => xT.mul(s.initNoiseSigma));
  xT.dispose();
  for (const t of s.timesteps) {
    const body = () => {
      const mi = s.scaleModelInput(x, t);
      const mo = fakeModel(mi, t);
      mi.dispose();
      const out = s.step(mo, t, x, { generator: gen });
      mo.dispose();
      return out;
    };
    if (wrapInTidy) {
      // A caller's scope frees everything but the next sample: the scheduler's history must survive.
      const next = tidy(() => body().prevSample);
      x.dispose();
      x = next;
    } else {
      const out = body();
      out.predOriginalSample?.dispose();
      out.denoised?.dispose();
      x.dispose();
      x = out.prevSample;
    }
  }
  return x;
}

describe("schedulerByName", () => {
  test("knows exactly the documented names", () => {
    expect([...SCHEDULER_NAMES].sort()).toEqual(["ddim", "dpmpp_2m", "dpmpp_2m_karras", "euler", "euler_a", "lcm", "lms", "pndm", "unipc"]);
  });

  const expectedClass: Record<string, string> = {
    ddim: "DDIMScheduler",
    pndm: "PNDMScheduler",
    lms: "LMSDiscreteScheduler",
    euler: "EulerDiscreteScheduler",
    euler_a: "EulerAncestralDiscreteScheduler",
    dpmpp_2m: "DPMSolverMultistepScheduler",
    dpmpp_2m_karras: "DPMSolverMultistepScheduler",
    unipc: "UniPCMultistepScheduler",
    lcm: "LCMScheduler",
  };

  test.each(SCHEDULER_NAMES.map((n) => [n]))("%s from the SD1.5 config: from_config semantics, a finite 10-step loop", (name) => {
    const s = schedulerByName(name, sd15Config);
    expect(s.className).toBe(expectedClass[name]!);
    // Keys the class knows come from the base config …
    expect(s.config.beta_schedule).toBe("scaled_linear");
    expect(s.config.beta_start).toBe(0.00085);
    expect(s.config.steps_offset).toBe(1);
    expect(s.config.timestep_spacing).toBe("leading");
    // … the rest are the class's defaults, and keys it does not know are dropped.
    if (name === "ddim") expect(s.config.clip_sample).toBe(false);
    if (name === "euler") expect(s.config.interpolation_type).toBe("linear");
    if (name.startsWith("dpmpp")) {
      expect(s.config.algorithm_type).toBe("dpmsolver++");
      expect(s.config.solver_order).toBe(2);
      expect(s.config.use_karras_sigmas).toBe(name === "dpmpp_2m_karras");
    }
    if (name === "lcm") expect(s.config.timestep_scaling).toBe(10);
    if (name !== "pndm") expect("skip_prk_steps" in s.config).toBe(false);
    const x = runLoop(s, 10);
    expect(x.shape).toEqual(SHAPE);
    const v = x.toFloat32Array();
    expect(v.every(Number.isFinite)).toBe(true);
    x.dispose();
    s.dispose();
  });

  test("euler inherits leading spacing from SD1.5's PNDM config (801, 601, …, 1 for 5 steps)", () => {
    const s = schedulerByName("euler", sd15Config);
    s.setTimesteps(5);
    expect(s.timesteps).toEqual([801, 601, 401, 201, 1]);
    s.dispose();
  });

  test("overrides win over the base config", () => {
    const s = schedulerByName("euler", sd15Config, { timestep_spacing: "trailing", prediction_type: "v_prediction" });
    expect(s.config.timestep_spacing).toBe("trailing");
    expect(s.config.prediction_type).toBe("v_prediction");
    s.dispose();
  });

  test("unknown name lists the valid ones", () => {
    expect(() => schedulerByName("heun", sd15Config)).toThrow(/unknown scheduler "heun".*ddim.*dpmpp_2m_karras.*lcm/);
  });

  test("same seed, same samples; a TorchGenerator and torchNoise() draw alike", () => {
    const a = runLoop(schedulerByName("euler_a", sd15Config), 6, 7);
    const b = runLoop(schedulerByName("euler_a", sd15Config), 6, 7);
    expect(a.equals(b)).toBe(true);
    const s = schedulerByName("euler_a", sd15Config);
    s.setTimesteps(4);
    const x = randn(SHAPE, { seed: 3 });
    const t = s.timesteps[0]!;
    const m = fakeModel(x, t);
    const o1 = s.step(m, t, x, { generator: new TorchGenerator(5) });
    s.reset();
    const o2 = s.step(m, t, x, { generator: torchNoise(new TorchGenerator(5)) });
    expect(o1.prevSample.equals(o2.prevSample)).toBe(true);
    for (const t of [a, b, x, m, o1.prevSample, o2.prevSample, o1.predOriginalSample!, o2.predOriginalSample!]) t.dispose();
    s.dispose();
  });
});

describe("schedulerFromConfig", () => {
  test("dispatches on _class_name for every supported class", () => {
    for (const cls of SCHEDULER_CLASSES) {
      const s = schedulerFromConfig({ ...sd15Config, _class_name: cls });
      expect(s.className).toBe(cls);
      s.dispose();
    }
  });

  test("the golden model folders' scheduler configs load as the classes they name", () => {
    const modelsDir = path.join(goldenDir, "models");
    const configs = readdirSync(modelsDir)
      .map((m) => path.join(modelsDir, m, "scheduler/scheduler_config.json"))
      .filter((f) => existsSync(f));
    expect(configs.length).toBeGreaterThan(0);
    for (const file of configs) {
      const cfg = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
      const s = schedulerFromConfig(cfg);
      expect(s.className).toBe(cfg._class_name as string);
      s.dispose();
    }
  });

  const bad: [string, Record<string, unknown>, RegExp][] = [
    ["no class name", { beta_start: 0.1 }, /no _class_name/],
    ["unknown class", { _class_name: "HeunDiscreteScheduler" }, /unsupported scheduler class "HeunDiscreteScheduler"/],
    ["beta_schedule", { _class_name: "DDIMScheduler", beta_schedule: "cosine" }, /beta_schedule="cosine"/],
    ["timestep_spacing", { _class_name: "EulerDiscreteScheduler", timestep_spacing: "uniform" }, /timestep_spacing="uniform"/],
    ["prediction_type", { _class_name: "EulerAncestralDiscreteScheduler", prediction_type: "sample" }, /prediction_type="sample"/],
    ["thresholding", { _class_name: "DDIMScheduler", thresholding: true }, /thresholding=true/],
    ["exponential sigmas", { _class_name: "EulerDiscreteScheduler", use_exponential_sigmas: true }, /use_exponential_sigmas=true/],
    ["algorithm_type", { _class_name: "DPMSolverMultistepScheduler", algorithm_type: "sde-dpmsolver" }, /algorithm_type="sde-dpmsolver"/],
    ["solver_type", { _class_name: "UniPCMultistepScheduler", solver_type: "bh3" }, /solver_type="bh3"/],
    ["timestep_type", { _class_name: "EulerDiscreteScheduler", timestep_type: "continuous" }, /timestep_type="continuous"/],
    ["trained_betas length", { _class_name: "PNDMScheduler", trained_betas: [0.1, 0.2] }, /trained_betas/],
    ["num_train_timesteps", { _class_name: "LCMScheduler", num_train_timesteps: 0.5 }, /num_train_timesteps=0.5/],
    [
      "dpmsolver with zero final sigma",
      { _class_name: "DPMSolverMultistepScheduler", algorithm_type: "dpmsolver" },
      /final_sigmas_type="zero" is not supported for algorithm_type="dpmsolver"/,
    ],
  ];
  test.each(bad)("rejects %s, naming the field and value", (_what, cfg, re) => {
    expect(() => schedulerFromConfig(cfg)).toThrow(re);
    expect(() => schedulerFromConfig(cfg)).toThrow(SchedulerConfigError);
  });
});

describe("setTimesteps step counts (BaseScheduler.checkInferenceSteps)", () => {
  const T = sd15Config.num_train_timesteps as number;
  /** Classes whose diffusers set_timesteps rejects more steps than num_train_timesteps (PNDM: ours too). */
  const bounded = new Set(["DDIMScheduler", "PNDMScheduler", "LCMScheduler"]);
  test.each(SCHEDULER_CLASSES.map((c) => [c]))("%s: rejects non-integers and too few steps, naming the value and the fix", (cls) => {
    const s = schedulerFromConfig({ ...sd15Config, _class_name: cls });
    const min = cls === "PNDMScheduler" ? 2 : 1;
    expect(() => s.setTimesteps(min - 1)).toThrow(new RegExp(`^${cls}: numInferenceSteps=${min - 1} must be .*; use at least ${min} step`));
    expect(() => s.setTimesteps(2.5)).toThrow(new RegExp(`^${cls}: numInferenceSteps=2\\.5 must be .*; round it to a whole number, e\\.g\\. 3$`));
    expect(() => s.setTimesteps(Number.NaN)).toThrow(new RegExp(`^${cls}: numInferenceSteps=NaN must be .*; pass a whole number of denoising steps`));
    if (bounded.has(cls)) {
      expect(() => s.setTimesteps(T + 1)).toThrow(
        new RegExp(`^${cls}: numInferenceSteps=${T + 1} must be an integer from ${min} to num_train_timesteps \\(${T}\\); use at most ${T} steps$`),
      );
    } else {
      // diffusers does not bound these classes' step counts.
      s.setTimesteps(T + 1);
      expect(s.timesteps.length).toBe(T + 1);
    }
    s.setTimesteps(min);
    expect(s.timesteps.length).toBeGreaterThanOrEqual(min);
    s.dispose();
  });
});

describe("timestep spacings match NumPy", () => {
  const cfg = (cls: string, extra: Record<string, unknown> = {}) => ({ ...sd15Config, _class_name: cls, ...extra });
  const cases: [string, Record<string, unknown>, number, number[]][] = [
    ["DDIM linspace (half-to-even rounding)", cfg("DDIMScheduler", { timestep_spacing: "linspace" }), 7, [999, 832, 666, 500, 333, 166, 0]],
    ["DDIM trailing", cfg("DDIMScheduler", { timestep_spacing: "trailing" }), 7, [999, 856, 713, 570, 428, 285, 142]],
    ["DDIM leading", cfg("DDIMScheduler"), 7, [853, 711, 569, 427, 285, 143, 1]],
    ["DPM linspace", cfg("DPMSolverMultistepScheduler", { timestep_spacing: "linspace" }), 7, [999, 856, 714, 571, 428, 285, 143]],
    ["DPM leading", cfg("DPMSolverMultistepScheduler"), 7, [876, 751, 626, 501, 376, 251, 126]],
    ["Euler linspace (fractional)", cfg("EulerDiscreteScheduler", { timestep_spacing: "linspace" }), 7, [999, 832.5, 666, 499.5, 333, 166.5, 0]],
    [
      "DPM linspace 25",
      cfg("UniPCMultistepScheduler", { timestep_spacing: "linspace" }),
      25,
      [999, 959, 919, 879, 839, 799, 759, 719, 679, 639, 599, 559, 519, 480, 440, 400, 360, 320, 280, 240, 200, 160, 120, 80, 40],
    ],
    ["PNDM PLMS (second step repeated)", cfg("PNDMScheduler"), 5, [801, 601, 601, 401, 201, 1]],
    ["LCM", cfg("LCMScheduler"), 4, [999, 759, 499, 259]],
  ];
  test.each(cases)("%s", (_name, config, n, expected) => {
    const s = schedulerFromConfig(config);
    s.setTimesteps(n);
    expect(s.timesteps).toEqual(expected);
    s.dispose();
  });

  test("Euler σ at fractional timesteps = np.interp of the float32 training σ", () => {
    const s = schedulerFromConfig(cfg("EulerDiscreteScheduler", { timestep_spacing: "linspace" }));
    s.setTimesteps(7);
    // np.interp(np.linspace(0, 999, 7, dtype=float32)[::-1], arange(1000), σ_train).astype(float32)
    const ref = [14.614645004272461, 5.948917865753174, 2.9183082580566406, 1.6155833005905151, 0.9323583245277405, 0.4935535192489624, 0.029167532920837402, 0];
    expect(s.sigmas).toEqual(ref);
    expect(s.initNoiseSigma).toBe(14.614645004272461);
    s.dispose();
  });

  test("Karras σ (ρ = 7) and their fractional timesteps", () => {
    const s = schedulerFromConfig(cfg("LMSDiscreteScheduler", { timestep_spacing: "linspace", use_karras_sigmas: true }));
    s.setTimesteps(7);
    const sig = [14.614645004272461, 7.094419479370117, 3.1686108112335205, 1.274105191230774, 0.44692087173461914, 0.13030871748924255, 0.029167532920837402, 0];
    expect(s.sigmas).toEqual(sig);
    const ts = [999, 868.4156494140625, 687.1532592773438, 427.4897766113281, 145.93902587890625, 17.858497619628906, 0];
    const { maxAbs } = maxError(s.timesteps, ts);
    expect(maxAbs).toBeLessThan(1e-4);
    s.dispose();
  });
});

/**
 * Tolerance of the pipeline-golden replay: atol = 2e-6 · max(1, max|ref|), as for the scheduler
 * goldens (README: schedulers alone match diffusers to ~1e-6 relative; the replay feeds the
 * recorded UNet outputs, so only scheduler and guidance arithmetic contribute).
 */
const PIPELINE_REL_TOL = 2e-6;

describe("pipeline goldens: scheduler replay with the recorded UNet outputs", () => {
  const pipelines = goldenCases("pipeline").filter((e) => (e.meta as Record<string, unknown>).scheduler_config);
  test("the golden index lists pipeline cases with a scheduler config", () => {
    expect(pipelines.length).toBeGreaterThan(0);
  });
  test.each(pipelines.map((e) => [e.file, e] as const))("%s", (_file, entry) => {
    const meta = entry.meta as Record<string, unknown>;
    if (typeof meta.guidance_rescale === "number" && meta.guidance_rescale !== 0)
      throw new Error(`${entry.file}: guidance_rescale=${meta.guidance_rescale} is not reproduced by this replay (plain CFG only)`);
    const f = openGolden(entry.file);
    const load = (n: string) => goldenTensor(f, n);
    const s = schedulerFromConfig({ ...(meta.scheduler_config as Record<string, unknown>), _class_name: meta.scheduler });
    s.setTimesteps(meta.num_inference_steps as number);
    const g = meta.guidance_scale as number;
    const stepOptions = typeof meta.eta === "number" ? { eta: meta.eta } : {};
    // The schedule the pipeline ran: exact (integers, or float32 values computed the same way).
    const tsRef = load("timesteps");
    expect(s.timesteps).toEqual(Array.from(tsRef.toFloat32Array(), Number));
    tsRef.dispose();
    const ins = load("init_noise_sigma");
    expect(s.initNoiseSigma).toBe(ins.toFloat32Array()[0]!);
    ins.dispose();
    const before = memoryStats("cpu").live;
    const lin = load("latents_in");
    const batch = lin.shape[0]!; // the pipeline's batch (prompts × images per prompt), from the file
    let x = lin.mul(s.initNoiseSigma);
    lin.dispose();
    let worst = 0;
    const cmp = (a: Tensor, name: string) => {
      const ref = load(name);
      expect(a.shape).toEqual(ref.shape);
      const { maxAbs, maxRef } = maxError(a.toFloat32Array(), ref.toFloat32Array());
      ref.dispose();
      worst = Math.max(worst, maxAbs / Math.max(1, maxRef));
      expect(maxAbs).toBeLessThanOrEqual(PIPELINE_REL_TOL * Math.max(1, maxRef));
    };
    s.timesteps.forEach((t, i) => {
      const p = `step${String(i).padStart(2, "0")}/`;
      // unet_timestep: 0-d, or one entry per UNet row; every entry is this step's t.
      const ts = load(`${p}unet_timestep`);
      for (const v of ts.toFloat32Array()) expect(v).toBe(Math.fround(t));
      ts.dispose();
      const mi = s.scaleModelInput(x, t);
      // The CFG UNet input is [negative…, positive…] = the scaled latents twice: both halves must
      // equal our model input exactly (one IEEE division per element, no reduction or FMA).
      const sample = load(`${p}unet_sample`);
      expect(sample.shape).toEqual([2 * batch, ...mi.shape.slice(1)]);
      for (const half of [0, 1]) {
        const rows = sample.narrow(0, half * batch, batch);
        expect(maxError(mi.toFloat32Array(), rows.toFloat32Array()).maxAbs).toBe(0);
        rows.dispose();
      }
      sample.dispose();
      mi.dispose();
      // Classifier-free guidance on the recorded batched UNet output: u + g·(c − u).
      const out = load(`${p}unet_out`);
      expect(out.shape[0]).toBe(2 * batch);
      const noisePred = tidy(() => {
        const u = out.narrow(0, 0, batch);
        const c = out.narrow(0, batch, batch);
        return u.add(c.sub(u).mul(g));
      });
      out.dispose();
      const r = s.step(noisePred, t, x, stepOptions);
      noisePred.dispose();
      r.predOriginalSample?.dispose();
      r.denoised?.dispose();
      x.dispose();
      x = r.prevSample;
      cmp(x, `${p}latents`);
    });
    cmp(x, "final_latents");
    x.dispose();
    s.dispose();
    expect(memoryStats("cpu").live).toBe(before);
    console.log(`  ${entry.file}: ${meta.scheduler} batch ${batch}, max err ${worst === 0 ? "0 (bit-exact)" : worst.toExponential(2)}`);
  });
});

describe("addNoise", () => {
  test("DDIM family: √ᾱ_t x_0 + √(1 − ᾱ_t) ε per batch item", () => {
    const s = schedulerFromConfig({ ...sd15Config, _class_name: "DDIMScheduler" });
    const x0 = randn([2, 4, 2, 2], { seed: 1 });
    const eps = randn([2, 4, 2, 2], { seed: 2 });
    const noisy = s.addNoise(x0, eps, [999, 10]);
    const a = s.alphasCumprod;
    const xv = x0.toFloat32Array();
    const ev = eps.toFloat32Array();
    const nv = noisy.toFloat32Array();
    for (let i = 0; i < nv.length; i++) {
      const ac = a[i < 16 ? 999 : 10]!;
      const want = Math.fround(Math.fround(xv[i]! * Math.fround(Math.sqrt(ac))) + Math.fround(ev[i]! * Math.fround(Math.sqrt(Math.fround(1 - ac)))));
      expect(nv[i]).toBe(want);
    }
    for (const t of [x0, eps, noisy]) t.dispose();
    s.dispose();
  });

  test("σ schedulers: x_0 + σ ε, and the begin index once set (img2img)", () => {
    const s = schedulerFromConfig({ ...sd15Config, _class_name: "EulerDiscreteScheduler" });
    s.setTimesteps(5);
    const x0 = randn([1, 4, 2, 2], { seed: 1 });
    const eps = randn([1, 4, 2, 2], { seed: 2 });
    const noisy = s.addNoise(x0, eps, [s.timesteps[2]!]);
    const sigma = s.sigmas![2]!;
    const want = tidy(() => x0.add(eps.mul(sigma)));
    expect(noisy.equals(want)).toBe(true);
    s.setBeginIndex(3);
    const tsTensor = tensor([s.timesteps[0]!]);
    const noisy2 = s.addNoise(x0, eps, tsTensor);
    tsTensor.dispose();
    const want2 = tidy(() => x0.add(eps.mul(s.sigmas![3]!)));
    expect(noisy2.equals(want2)).toBe(true);
    for (const t of [x0, eps, noisy, want, noisy2, want2]) t.dispose();
    s.dispose();
  });

  test("DPM-Solver / UniPC: α_t x_0 + σ_t ε", () => {
    for (const cls of ["DPMSolverMultistepScheduler", "UniPCMultistepScheduler"]) {
      const s = schedulerFromConfig({ ...sd15Config, _class_name: cls });
      s.setTimesteps(5);
      const x0 = tensor([[1, 2]]);
      const eps = tensor([[3, 4]]);
      const noisyT = s.addNoise(x0, eps, [s.timesteps[1]!]);
      const noisy = noisyT.toFloat32Array();
      noisyT.dispose();
      const sig = s.sigmas![1]!;
      const alpha = Math.fround(1 / Math.fround(Math.sqrt(Math.fround(Math.fround(sig * sig) + 1))));
      const sigmaT = Math.fround(sig * alpha);
      expect(noisy[0]).toBe(Math.fround(alpha + Math.fround(3 * sigmaT)));
      x0.dispose();
      eps.dispose();
      s.dispose();
    }
  });
});

describe("numerics", () => {
  test("Gauss–Kronrod integration: exact on cubics, adaptive to 1e-10 on smooth functions", () => {
    expect(integrate((x) => 3 * x * x * x - x + 2, -1.5, 2.5, 1e-12)).toBeCloseTo(3 * (2.5 ** 4 - 1.5 ** 4) / 4 - (2.5 ** 2 - 1.5 ** 2) / 2 + 8, 12);
    expect(Math.abs(integrate(Math.sin, 0, Math.PI, 1e-12) - 2)).toBeLessThan(1e-10);
    expect(Math.abs(integrate((x) => 1 / (1 + 25 * x * x), -1, 1, 1e-11, 0) - (2 / 5) * Math.atan(5))).toBeLessThan(1e-10);
    // Reversed limits (σ decreases along the schedule).
    expect(integrate((x) => x, 2, 0)).toBeCloseTo(-2, 14);
  });

  test("LMS coefficients of one step sum to σ_{i+1} − σ_i (the Lagrange basis sums to 1)", () => {
    const s = new LMSDiscreteScheduler(sd15Config);
    s.setTimesteps(10);
    for (let i = 3; i < 9; i++) {
      const sum = [0, 1, 2, 3].reduce((acc, j) => acc + s.lmsCoefficient(4, i, j), 0);
      expect(Math.abs(sum - (s.sigmas[i + 1]! - s.sigmas[i]!))).toBeLessThan(1e-5 * Math.abs(s.sigmas[i]!));
    }
  });

  test("the float32 LU solve agrees with a float64 solve", () => {
    const A = [
      [1, 1, 1],
      [-1.2, 0.7, 1],
      [1.44, 0.49, 1],
    ];
    const b = [0.5, 0.2, 0.9];
    const x = solveF32(A, b);
    for (let r = 0; r < 3; r++) {
      const lhs = A[r]!.reduce((acc, v, c) => acc + v * x[c]!, 0);
      expect(Math.abs(lhs - b[r]!)).toBeLessThan(1e-6);
    }
  });
});

describe("memory", () => {
  const setups: [string, Record<string, unknown>][] = [
    ...SCHEDULER_NAMES.map((n) => [n, {}] as [string, Record<string, unknown>]),
    ["pndm (full F-PNDM)", { skip_prk_steps: false }],
    ["dpmpp_2m (as 3rd-order SDE)", { solver_order: 3, algorithm_type: "sde-dpmsolver++" }],
    ["unipc order 3", { solver_order: 3 }],
  ];
  test.each(setups)("%s: CPU live bytes return to the start after a 10-step loop and dispose()", (label, overrides) => {
    const name = label.split(" ")[0]!;
    const before = memoryStats("cpu").live;
    for (const wrap of [false, true]) {
      const s = schedulerByName(name, sd15Config, overrides);
      const x = runLoop(s, 10, 1, wrap);
      expect(x.toFloat32Array().every(Number.isFinite)).toBe(true);
      x.dispose();
      s.dispose();
    }
    expect(memoryStats("cpu").live).toBe(before);
  });

  test("reset() frees the history; the scheduler runs again from the start", () => {
    const s = schedulerByName("dpmpp_2m", sd15Config);
    const a = runLoop(s, 6, 3);
    s.reset();
    const b = runLoop(s, 6, 3);
    expect(a.equals(b)).toBe(true);
    a.dispose();
    b.dispose();
    s.dispose();
  });
});
