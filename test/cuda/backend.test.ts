// The CUDA backend (src/backends/cuda) method by method against the CPU backend, on small odd shapes, strided and
// broadcast views, in float32 / float16 / bfloat16 (and the integer / bool cases each method takes), including the
// combinations the op tables do not reach directly (an output dtype other than the inputs', non-adjacent reduction
// dims, integer reductions through the host, integer ⊕ non-integer scalar comparisons, attention heads wider than
// 160 split on the device); streams and events; uploads and downloads (chunked through the pinned ring, from a memory-mapped
// safetensors file with dtype conversion on the device); errors that name the op, shapes and CUDA's message; and
// initCuda / cudaAvailable / resolveDevice, with "no CUDA" simulated in a subprocess.
//
// Tolerance against the CPU backend: both compute in float32 (the CPU in float64 for reductions and norms) and round
// once, in different orders, so results may differ by the float32 error of the computation plus one rounding of the
// output dtype: |cuda − cpu| ≤ atol·max(1, max|cpu|) + 2 ulp·|cpu|, atol = 1e-5 (f32), 2 ulp of the dtype otherwise.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CudaError } from "../../ffi/cuda/bind.ts";
import { discoverCuda } from "../../ffi/cuda/discover.ts";
import { ATTENTION_PARAMS, AttentionParamsBuffer } from "../../ffi/cuda/kernels.ts";
import type { Backend, BinaryOp, ReduceOp, UnaryOp } from "../../src/backends/backend.ts";
import { cpuBackend } from "../../src/backends/cpu/index.ts";
import { cudaContext } from "../../src/backends/cuda/context.ts";
import { SMALL_UPLOAD_BYTES } from "../../src/backends/cuda/small-uploads.ts";
import { cudaAvailable, cudaBackend, cudaInfo, cudaSynchronize, initCuda } from "../../src/backends/cuda/index.ts";
import { hasBackend } from "../../src/backends/registry.ts";
import { resolveDevice } from "../../src/backends/select.ts";
import { openSafetensors, writeSafetensors } from "../../src/io/safetensors.ts";
import { entryToTensor } from "../../src/io/tensor-io.ts";
import { type DType, isFloat } from "../../src/core/dtype.ts";
import type { Device } from "../../src/core/device.ts";
import { f32ToF16 } from "../../src/core/half.ts";
import { type Tensor, empty, fromRaw, memoryStats, tensor, tidy } from "../../src/tensor/index.ts";
import { randomValues, values } from "../helpers/op-harness.ts";

const HAS_CUDA = hasBackend("cuda");
const FLOATS: DType[] = ["float32", "float16", "bfloat16"];
const ULP: Record<string, number> = { float32: 2 ** -23, float16: 2 ** -10, bfloat16: 2 ** -7 };

/** Same values on both devices: a tensor of `shape` (random in [lo, hi), rounded to dtype). */
function input(dev: Device, shape: number[], dtype: DType, seed: number, lo = -2, hi = 2): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  let v = randomValues(n, isFloat(dtype) ? dtype : "float32", seed, lo, hi);
  if (!isFloat(dtype)) v = v.map((x) => (dtype === "bool" ? (x > 0 ? 1 : 0) : Math.round(x)));
  if (dtype === "int64") return tensor(BigInt64Array.from(v, (x) => BigInt(x)), { shape, device: dev });
  return tensor(v, { shape, dtype, device: dev });
}

/**
 * Run `body` on the CPU and on CUDA (each with its backend) and compare the returned outputs' values. `ulps` widens
 * the rounding allowance; `atol` the float32 one (long dot products).
 */
function agree(label: string, body: (dev: Device, b: Backend) => Tensor | Tensor[], opts: { ulps?: number; atol?: number } = {}): void {
  tidy(() => {
    const ref = [body("cpu", cpuBackend)].flat();
    const got = [body("cuda", cudaBackend)].flat();
    expect(got.length).toBe(ref.length);
    ref.forEach((r, i) => {
      const g = got[i]!;
      expect(g.device).toBe("cuda");
      expect([label, g.dtype, ...g.shape]).toEqual([label, r.dtype, ...r.shape]);
      const a = values(g);
      const e = values(r);
      let scale = 1;
      for (const x of e) if (Number.isFinite(x)) scale = Math.max(scale, Math.abs(x));
      const ulp = ULP[r.dtype] ?? 0;
      const atol = (opts.atol ?? (r.dtype === "float32" ? 1e-5 : 2 * ulp)) * scale;
      const rtol = (opts.ulps ?? 2) * ulp;
      for (let k = 0; k < e.length; k++) {
        const x = a[k]!, y = e[k]!;
        if (Object.is(x, y) || (Number.isNaN(x) && Number.isNaN(y))) continue;
        if (!(Math.abs(x - y) <= atol + rtol * Math.abs(y)))
          throw new Error(`${label}: element ${k} (of ${e.length}) is ${x} on cuda, ${y} on the cpu (atol ${atol}, rtol ${rtol})`);
      }
    });
  });
}

/** A fresh contiguous output of the given shape / dtype on `dev`. */
const out = (dev: Device, shape: readonly number[], dtype: DType) => empty(shape, { dtype, device: dev });

const UNARY: UnaryOp[] = ["neg", "exp", "log", "sqrt", "rsqrt", "abs", "sigmoid", "tanh", "silu", "gelu", "gelu_tanh", "quick_gelu", "sin", "cos",
  "relu", "square", "reciprocal", "floor", "ceil", "round", "sign", "clamp"];
const BINARY: BinaryOp[] = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or"];
const BOOL_OUT = new Set<BinaryOp>(["eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or"]);

describe.skipIf(!HAS_CUDA)("CUDA backend vs CPU backend", () => {
  let live0 = 0;
  beforeAll(() => {
    live0 = memoryStats("cuda").live;
  });
  afterAll(() => {
    expect(memoryStats("cuda").live).toBe(live0);
  });

  test("copy: transposed and broadcast views, every dtype conversion (floats round, floats → ints truncate, → bool is ≠ 0)", () => {
    const dtypes: DType[] = ["float32", "float16", "bfloat16", "int32", "int64", "uint8", "bool"];
    for (const from of dtypes)
      for (const to of dtypes)
        agree(`copy ${from} -> ${to}`, (dev, b) => {
          const x = input(dev, [5, 7], from, 3, -40, 250).transpose(0, 1);
          const o = out(dev, [7, 5], to);
          b.copy(x, o);
          return o;
        });
    agree("copy into a strided destination, broadcasting the source", (dev, b) => {
      const o = out(dev, [3, 8], "float16");
      b.fill(o, 0);
      const src = input(dev, [1, 4], "float32", 4).expand([3, 4]);
      b.copy(src, o.narrow(1, 2, 4));
      return o;
    });
  });

  test("fill: strided views; integers truncate, bool takes value ≠ 0 (NaN is true)", () => {
    for (const [dtype, v] of [["float32", 1.3], ["float16", -2.7], ["bfloat16", 1e30], ["int32", 2.7], ["int64", -3.9], ["uint8", 300], ["bool", NaN], ["int32", NaN]] as const)
      agree(`fill ${dtype} ${v}`, (dev, b) => {
        const o = out(dev, [4, 6], dtype);
        b.fill(o, 0);
        b.fill(o.slice(1, 1, 6, 2), v);
        return o;
      });
  });

  for (const dtype of FLOATS)
    test(`unary, every op, ${dtype}, transposed [9, 13] input; float32 math into a ${dtype === "float32" ? "float16" : "float32"} output`, () => {
      for (const op of UNARY) {
        const positive = ["log", "sqrt", "rsqrt", "reciprocal"].includes(op);
        agree(`unary ${op} ${dtype}`, (dev, b) => {
          const x = input(dev, [13, 9], dtype, 10, positive ? 0.1 : -3, 3).transpose(0, 1);
          const o = out(dev, [9, 13], dtype);
          b.unary(op, x, o, -0.5, 0.75);
          return o;
        });
      }
      const other = dtype === "float32" ? "float16" : "float32";
      agree(`unary silu ${dtype} -> ${other}`, (dev, b) => {
        const o = out(dev, [6, 5], other);
        b.unary("silu", input(dev, [6, 5], dtype, 11), o);
        return o;
      });
    });

  test("unary on integers: integer ops keep the dtype; float math gives float32; logical_not gives bool", () => {
    for (const dtype of ["int32", "int64", "uint8"] as DType[]) {
      for (const op of ["neg", "abs", "relu", "square", "sign", "clamp"] as UnaryOp[])
        agree(`unary ${op} ${dtype}`, (dev, b) => {
          const o = out(dev, [4, 9], dtype);
          b.unary(op, input(dev, [4, 9], dtype, 12, -50, 50), o, -7, 20);
          return o;
        });
      for (const op of ["exp", "sigmoid", "sqrt", "clamp"] as UnaryOp[])
        agree(`unary ${op} ${dtype} -> float32`, (dev, b) => {
          const o = out(dev, [4, 9], "float32");
          b.unary(op, input(dev, [4, 9], dtype, 13, 0, 5), o, 0.5, 3.5);
          return o;
        });
    }
    agree("logical_not bool", (dev, b) => {
      const o = out(dev, [17], "bool");
      b.unary("logical_not", input(dev, [17], "bool", 14), o);
      return o;
    });
  });

  for (const dtype of FLOATS)
    test(`binary, every op, ${dtype}: [3,1,7] ⊕ [5,7] broadcast; float32 operands into a ${dtype} output`, () => {
      for (const op of BINARY)
        agree(`binary ${op} ${dtype}`, (dev, b) => {
          const x = input(dev, [3, 1, 7], dtype, 20, op === "pow" ? 0.5 : -2, 2).expand([3, 5, 7]);
          const y = input(dev, [5, 7], dtype, 21, -2, 2).unsqueeze(0).expand([3, 5, 7]);
          const o = out(dev, [3, 5, 7], BOOL_OUT.has(op) ? "bool" : dtype);
          b.binary(op, x, y, o);
          return o;
        });
      agree(`binary div float32 -> ${dtype}`, (dev, b) => {
        const o = out(dev, [4, 6], dtype);
        b.binary("div", input(dev, [4, 6], "float32", 22), input(dev, [4, 6], "float32", 23, 0.5, 3), o);
        return o;
      });
    });

  test("binary on integers and bools: exact; integer div is true division in float32", () => {
    for (const dtype of ["int32", "int64"] as DType[])
      for (const op of ["add", "sub", "mul", "maximum", "minimum", "eq", "lt", "ge", "logical_and"] as BinaryOp[])
        agree(`binary ${op} ${dtype}`, (dev, b) => {
          const o = out(dev, [6, 5], BOOL_OUT.has(op) ? "bool" : dtype);
          b.binary(op, input(dev, [6, 5], dtype, 24, -9, 9), input(dev, [6, 5], dtype, 25, -9, 9), o);
          return o;
        });
    agree("binary div int32 -> float32", (dev, b) => {
      const o = out(dev, [6, 5], "float32");
      b.binary("div", input(dev, [6, 5], "int32", 26, -9, 9), input(dev, [6, 5], "int32", 27, 1, 9), o);
      return o;
    });
    agree("binary logical_or bool", (dev, b) => {
      const o = out(dev, [11], "bool");
      b.binary("logical_or", input(dev, [11], "bool", 28), input(dev, [11], "bool", 29), o);
      return o;
    });
  });

  test("binaryScalar: floats, scalar first, integer tensors with integer / non-integer / infinite scalars", () => {
    for (const dtype of FLOATS)
      for (const op of ["add", "sub", "div", "pow", "maximum", "lt"] as BinaryOp[])
        for (const first of [false, true])
          agree(`scalar ${op} ${dtype} ${first ? "first" : "second"}`, (dev, b) => {
            const o = out(dev, [5, 3], BOOL_OUT.has(op) ? "bool" : dtype);
            b.binaryScalar(op, input(dev, [3, 5], dtype, 30, 0.25, 2).transpose(0, 1), 1.5, o, first);
            return o;
          });
    for (const s of [2, 2.5, -1.5, Infinity, -Infinity, NaN])
      for (const op of ["eq", "ne", "lt", "le", "gt", "ge"] as BinaryOp[])
        for (const first of [false, true])
          agree(`scalar ${op} int32 ${s} ${first ? "first" : "second"}`, (dev, b) => {
            const o = out(dev, [12], "bool");
            b.binaryScalar(op, input(dev, [12], "int32", 31, -4, 4), s, o, first);
            return o;
          });
    agree("scalar mul int64 by 3 (int64)", (dev, b) => {
      const o = out(dev, [12], "int64");
      b.binaryScalar("mul", input(dev, [12], "int64", 32, -1000, 1000), 3, o, false);
      return o;
    });
    agree("scalar mul int32 by 0.5 (float32)", (dev, b) => {
      const o = out(dev, [12], "float32");
      b.binaryScalar("mul", input(dev, [12], "int32", 33, -1000, 1000), 0.5, o, false);
      return o;
    });
  });

  test("where: broadcast condition and operands, every dtype width", () => {
    for (const dtype of ["float32", "bfloat16", "int64", "uint8"] as DType[])
      agree(`where ${dtype}`, (dev, b) => {
        const c = input(dev, [4, 1], "bool", 40).expand([4, 6]);
        const x = input(dev, [4, 6], dtype, 41, -5, 5);
        const y = input(dev, [6], dtype, 42, -5, 5).unsqueeze(0).expand([4, 6]);
        const o = out(dev, [4, 6], dtype);
        b.where(c, x, y, o);
        return o;
      });
  });

  test("reduce: adjacent and non-adjacent dims of strided views, float16 into float32, empty dim lists and reductions", () => {
    const OPS: ReduceOp[] = ["sum", "mean", "max", "min", "argmax", "argmin", "var", "prod"];
    const cases: [number[], number[], boolean][] = [[[3, 5, 7], [2], false], [[3, 5, 7], [1], true], [[3, 5, 7], [0, 2], true], [[3, 5, 7], [0, 1, 2], false],
      [[3, 1, 7], [0, 2], false], [[4, 6], [], false], [[2, 0, 3], [1], false]];
    for (const dtype of FLOATS)
      for (const [shape, dims, transposed] of cases)
        for (const op of OPS) {
          if ((shape.includes(0) || dims.length === 0) && (op === "max" || op === "min" || op.startsWith("arg"))) continue;
          agree(`reduce ${op} ${dtype} [${shape}] over [${dims}]${transposed ? " transposed" : ""}`, (dev, b) => {
            let x = input(dev, transposed ? [shape[2]!, shape[1]!, shape[0]!] : shape, dtype, 50, op === "prod" ? 0.9 : -2, op === "prod" ? 1.1 : 2);
            if (transposed) x = x.permute(2, 1, 0);
            const o = out(dev, shape.map((s, d) => (dims.includes(d) ? 1 : s)), op.startsWith("arg") ? "int64" : dtype);
            b.reduce(op, x, dims, o, 1);
            return o;
          }, { atol: 1e-5 * Math.max(1, shape.reduce((a, c) => a * c, 1)), ulps: 4 });
        }
    agree("reduce var float16 -> float32 (std's path)", (dev, b) => {
      const o = out(dev, [3, 1], "float32");
      b.reduce("var", input(dev, [3, 40], "float16", 51, 100, 101), [1], o, 1);
      return o;
    }, { atol: 1e-4 });
    for (const [dtype, op, odt] of [["int32", "sum", "int64"], ["int64", "max", "int64"], ["bool", "sum", "int64"], ["int32", "mean", "float32"],
      ["int64", "argmax", "int64"], ["uint8", "prod", "int64"]] as [DType, ReduceOp, DType][])
      agree(`reduce ${op} ${dtype} (host) -> ${odt}`, (dev, b) => {
        const o = out(dev, [5, 1], odt);
        b.reduce(op, input(dev, [5, 9], dtype, 52, 0, 4), [1], o, 0);
        return o;
      });
  });

  test("softmax and log-softmax of contiguous and transposed views; an all -inf row is NaN", () => {
    for (const dtype of FLOATS)
      for (const log of [false, true])
        agree(`softmax ${dtype} log=${log}`, (dev, b) => {
          const x = input(dev, [33, 6], dtype, 60, -8, 8);
          b.fill(x.narrow(1, 2, 1), -Infinity);
          const o1 = out(dev, [33, 6], dtype);
          b.softmax(x, o1, log);
          const o2 = out(dev, [6, 33], dtype);
          b.softmax(x.transpose(0, 1), o2, log);
          return [o1, o2];
        });
  });

  test("matmul: transposed operands read in place, broadcast batches (stride 0), views that must be copied, K = 0", () => {
    for (const dtype of FLOATS) {
      const tol = { atol: 1e-5 * 8, ulps: 4 };
      agree(`matmul ${dtype} [3,37,29]@[29,23] (b broadcast)`, (dev, b) => {
        const o = out(dev, [3, 37, 23], dtype);
        b.matmul(input(dev, [3, 37, 29], dtype, 70), input(dev, [29, 23], dtype, 71).unsqueeze(0).expand([3, 29, 23]), o);
        return o;
      }, tol);
      agree(`matmul ${dtype} transposed a and b`, (dev, b) => {
        const o = out(dev, [2, 17, 19], dtype);
        b.matmul(input(dev, [2, 13, 17], dtype, 72).transpose(1, 2), input(dev, [2, 19, 13], dtype, 73).transpose(1, 2), o);
        return o;
      }, tol);
      agree(`matmul ${dtype} [2,3,5,7]@[3,7,4] (a batch-broadcast, merged batch dims)`, (dev, b) => {
        const o = out(dev, [2, 3, 5, 4], dtype);
        b.matmul(input(dev, [2, 3, 5, 7], dtype, 74), input(dev, [3, 7, 4], dtype, 75).unsqueeze(0).expand([2, 3, 7, 4]), o);
        return o;
      }, tol);
      agree(`matmul ${dtype} stepped columns (copied first) and a row vector`, (dev, b) => {
        const o = out(dev, [1, 6], dtype);
        b.matmul(input(dev, [1, 9], dtype, 76), input(dev, [9, 12], dtype, 77).slice(1, 0, 12, 2), o);
        return o;
      }, tol);
    }
    agree("matmul K = 0 gives zeros", (dev, b) => {
      const o = out(dev, [3, 4], "float32");
      b.matmul(out(dev, [3, 0], "float32"), out(dev, [0, 4], "float32"), o);
      return o;
    });
  });

  test("conv2d: padding, stride, dilation, groups, bias, a strided (narrowed) input", () => {
    for (const dtype of FLOATS) {
      const tol = { atol: 1e-5 * 16, ulps: 4 };
      agree(`conv2d ${dtype} 3x3 pad 1 + bias`, (dev, b) => {
        const o = out(dev, [2, 6, 9, 11], dtype);
        b.conv2d(input(dev, [2, 4, 9, 11], dtype, 80), input(dev, [6, 4, 3, 3], dtype, 81), input(dev, [6], dtype, 82), o,
          { stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 });
        return o;
      }, tol);
      agree(`conv2d ${dtype} stride 2, dilation 2x1, 2 groups, narrowed input, no bias`, (dev, b) => {
        const x = input(dev, [1, 4, 13, 12], dtype, 83).narrow(3, 1, 10);
        const o = out(dev, [1, 6, 7, 6], dtype);
        b.conv2d(x, input(dev, [6, 2, 3, 2], dtype, 84), null, o, { stride: [2, 2], padding: [2, 1], dilation: [2, 1], groups: 2 });
        return o;
      }, tol);
    }
  });

  test("attention: f32 / f16 / bf16, float and bool masks of any dtype, causal, Dv ≠ D, heads wider than 160 (split, on the device)", () => {
    for (const dtype of FLOATS) {
      // float16 / bfloat16 run on tensor cores, which round the probabilities P (≤ 1) to the dtype before P·V:
      // ≤ ½ ulp of each weight, so ≤ ½ ulp · max|v| (|v| ≤ 2) on the output beyond the CPU's float32 error
      const tol = dtype === "float32" ? { atol: 2e-5, ulps: 4 } : { atol: 2 * ULP[dtype]!, ulps: 4 };
      agree(`attention ${dtype} B2 H3 Sq37 Sk29 D40 Dv24, permuted projections`, (dev, b) => {
        const q = input(dev, [2, 37, 3, 40], dtype, 90).transpose(1, 2);
        const k = input(dev, [2, 29, 3, 40], dtype, 91).transpose(1, 2);
        const v = input(dev, [2, 29, 3, 24], dtype, 92).transpose(1, 2);
        const o = out(dev, [2, 3, 37, 24], dtype);
        b.attention(q, k, v, o, 40 ** -0.5, null, false);
        return o;
      }, tol);
      for (const mdt of ["float32", "bfloat16", "bool"] as DType[])
        agree(`attention ${dtype} with a ${mdt} mask [2,1,1,Sk] + causal`, (dev, b) => {
          const q = input(dev, [2, 1, 45, 16], dtype, 93);
          const k = input(dev, [2, 1, 40, 16], dtype, 94);
          const m = mdt === "bool" ? input(dev, [2, 1, 1, 40], "bool", 95) : input(dev, [2, 1, 1, 40], mdt, 96, -3, 1);
          const o = out(dev, [2, 1, 45, 16], dtype);
          b.attention(q, k, k, o, 0.3, m.expand([2, 1, 45, 40]), true);
          return o;
        }, tol);
    }
    const tol = { atol: 2e-5, ulps: 4 };
    agree("attention D = Dv = 160 (the widest unsplit head), 70 keys", (dev, b) => {
      const q = input(dev, [1, 2, 33, 160], "float32", 97, -0.5, 0.5);
      const k = input(dev, [1, 2, 70, 160], "float32", 98, -0.5, 0.5);
      const o = out(dev, [1, 2, 33, 160], "float32");
      b.attention(q, k, k, o, 160 ** -0.5, null, false);
      return o;
    }, tol);
    for (const [dtype, D] of [["float32", 200], ["float16", 300]] as const)
      agree(`attention D = ${D} ${dtype} (CUDA-core kernel, column chunks of 128), causal`, (dev, b) => {
        const q = input(dev, [1, 1, 9, D], dtype, 99, -0.5, 0.5);
        const o = out(dev, [1, 1, 9, D], dtype);
        b.attention(q, q, q, o, 0.07, null, true);
        return o;
      }, tol);
  });

  test("groupNorm (+ SiLU, no affine), layerNorm (with / without weight and bias), strided inputs", () => {
    for (const dtype of FLOATS) {
      const tol = { atol: 1e-5 * 4, ulps: 4 };
      for (const silu of [false, true])
        agree(`groupNorm ${dtype} silu=${silu}`, (dev, b) => {
          const x = input(dev, [2, 6, 5, 7], dtype, 100, -3, 5).transpose(2, 3);
          const o = out(dev, [2, 6, 7, 5], dtype);
          b.groupNorm(x, input(dev, [6], dtype, 101, 0.5, 1.5), silu ? null : input(dev, [6], dtype, 102), 3, 1e-5, o, silu);
          return o;
        }, tol);
      for (const affine of [false, true])
        agree(`layerNorm ${dtype} affine=${affine}`, (dev, b) => {
          const o = out(dev, [5, 3, 11], dtype);
          const w = affine ? input(dev, [3, 11], dtype, 104, 0.5, 1.5) : null;
          b.layerNorm(input(dev, [5, 3, 11], dtype, 103, 1, 4), w, affine ? input(dev, [3, 11], dtype, 105) : null, 33, 1e-6, o);
          return o;
        }, tol);
    }
    for (const dtype of ["float16", "int64", "bool"] as DType[])
      agree(`upsampleNearest2d ${dtype} (×2, 7×9, shrink)`, (dev, b) => {
        const x = input(dev, [2, 3, 5, 6], dtype, 106, -9, 9);
        return [[10, 12], [7, 9], [3, 4]].map(([h, w]) => {
          const o = out(dev, [2, 3, h!, w!], dtype);
          b.upsampleNearest2d(x, o);
          return o;
        });
      });
  });

  test("indexSelect, gather, scatterAdd (deterministic; float16 accumulates once; bytes on the host), argsort (stable, NaN last)", () => {
    for (const dtype of ["float32", "bfloat16", "int64", "uint8"] as DType[]) {
      agree(`indexSelect ${dtype} dim 1 of a transposed view (int32 index)`, (dev, b) => {
        const x = input(dev, [9, 4], dtype, 110, -9, 9).transpose(0, 1);
        const i = tensor(Int32Array.from([8, 0, 3, 3, 7]), { device: dev });
        const o = out(dev, [4, 5], dtype);
        b.indexSelect(x, 1, i, o);
        return o;
      });
      agree(`gather ${dtype} dim 0 with an expanded int64 index`, (dev, b) => {
        const x = input(dev, [6, 5], dtype, 111, -9, 9);
        const i = tensor(BigInt64Array.from([5n, 0n, 2n, 2n]), { shape: [4, 1], device: dev }).expand([4, 5]);
        const o = out(dev, [4, 5], dtype);
        b.gather(x, 0, i, o);
        return o;
      });
    }
    for (const dtype of ["float32", "float16", "bfloat16", "int32", "int64", "uint8"] as DType[])
      agree(`scatterAdd ${dtype}: duplicates along dim 1 and dim 0, bit-identical to the CPU (sequential float32 order)`, (dev, b) => {
        const o = input(dev, [3, 5], dtype, 112, 0, 9);
        const i = tensor(Int32Array.from({ length: 3 * 8 }, (_, n) => (n * 7) % 5), { shape: [3, 8], device: dev });
        b.scatterAdd(o, 1, i, input(dev, [3, 8], dtype, 113, -9, 9));
        const o2 = input(dev, [4, 70], dtype, 114, -1, 1);
        const i2 = tensor(Int32Array.from({ length: 40 }, (_, n) => (n * 3) % 4), { shape: [40, 1], device: dev }).expand([40, 70]);
        b.scatterAdd(o2, 0, i2, input(dev, [90, 70], dtype, 115, -1, 1).transpose(0, 1).transpose(0, 1).narrow(0, 5, 40));
        return [o, o2];
      }, { ulps: 0, atol: 0 });
    for (const dtype of ["float32", "float16", "int32", "uint8"] as DType[])
      for (const descending of [false, true])
        agree(`argsort ${dtype} ${descending ? "descending" : "ascending"} with ties${isFloat(dtype) ? " and NaN" : ""}`, (dev, b) => {
          const x = input(dev, [3, 41], dtype, 114, 0, 5);
          if (isFloat(dtype)) b.fill(x.narrow(1, 7, 2), NaN);
          const o = out(dev, [3, 41], "int64");
          b.argsort(x, descending, o);
          return o;
        });
  });

  test("an out-of-range index is an error naming the op, the index and the dim (as on the CPU; on CUDA at the next sync)", () => {
    for (const dev of ["cpu", "cuda"] as const)
      tidy(() => {
        const b = dev === "cpu" ? cpuBackend : cudaBackend;
        // the CPU throws in the op; CUDA raises a device flag the next download reports (deferred-errors.ts)
        const synced = (o: Tensor, run: (o: Tensor) => void) => () => {
          run(o);
          b.toHostBytes(o);
        };
        const x = input(dev, [4, 3], "float32", 120);
        const i = tensor(Int32Array.from([1, 4, 0]), { device: dev });
        expect(synced(out(dev, [3, 3], "float32"), (o) => b.indexSelect(x, 0, i, o))).toThrow("indexSelect: index 4 is out of range for dim 0 of size 4");
        const g = tensor(BigInt64Array.from([0n, -1n]), { shape: [2, 1], device: dev });
        expect(synced(out(dev, [2, 1], "float32"), (o) => b.gather(x, 0, g, o))).toThrow("gather: index -1 is out of range for dim 0 of size 4");
        const src = input(dev, [2, 1], "float16", 121);
        expect(synced(out(dev, [4, 3], "float16"), (o) => b.scatterAdd(o, 0, g, src))).toThrow("scatterAdd: index -1 is out of range");
        expect(b.toHostBytes(x).byteLength).toBe(48); // reported once: the flags are clear again
      });
  });
});

describe.skipIf(!HAS_CUDA)("CUDA errors, streams, transfers", () => {
  test("a failed launch names the launcher, CUDA's error, the op and its operands' dtypes and shapes", () => {
    tidy(() => {
      const x = empty([2, 6, 5], { device: "cuda", dtype: "bfloat16" });
      let err: unknown;
      try {
        cudaBackend.groupNorm(x, null, null, 4, 1e-5, empty([2, 6, 5], { device: "cuda", dtype: "bfloat16" }), false); // 6 channels, 4 groups
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CudaError);
      expect((err as Error).message).toBe(
        "bdk_group_norm_bf16 failed: cudaErrorInvalidValue (1): invalid argument [groupNorm (4 groups): bfloat16[2, 6, 5], bfloat16[2, 6, 5]]",
      );
    });
  });

  test("AttentionParams: the TypeScript layout is the kernel's", () => {
    const c = cudaContext();
    expect(c.k.bdk_attention_params_layout!()).toBe(
      [ATTENTION_PARAMS.bytes, ATTENTION_PARAMS.B, ATTENTION_PARAMS.qStride, ATTENTION_PARAMS.kStride, ATTENTION_PARAMS.vStride,
        ATTENTION_PARAMS.mStride, ATTENTION_PARAMS.scale, ATTENTION_PARAMS.causal, ATTENTION_PARAMS.maskType].join(","),
    );
    const p = new AttentionParamsBuffer().set([1, 2, 3, 4, 5, 6], [7, 8, 9, 10], [0, 0, 0, 2 ** 40], [1, 1, 1, 1], [0, 0, 0, 0], 0.5, true, 4);
    const v = new DataView(p.buffer);
    expect([v.getBigInt64(ATTENTION_PARAMS.B + 40, true), v.getBigInt64(ATTENTION_PARAMS.kStride + 24, true), v.getFloat32(ATTENTION_PARAMS.scale, true),
      v.getInt32(ATTENTION_PARAMS.causal, true), v.getInt32(ATTENTION_PARAMS.maskType, true)]).toEqual([6n, 2n ** 40n, 0.5, 1, 4]);
  });

  test("streams and events: large uploads run on the copy stream and the compute stream waits for them; small ones on compute", () => {
    const c = cudaContext();
    expect(c.streams.compute).not.toBe(c.streams.copy);
    let rec0 = c.streams.recorded;
    tidy(() => {
      const big = tensor(new Float32Array(SMALL_UPLOAD_BYTES / 4 + 1), { device: "cuda" }); // copy waits for compute, then compute for copy
      expect(c.streams.recorded - rec0).toBe(3); // compute→copy event, one chunk event, copy→compute event
      rec0 = c.streams.recorded;
      const small0 = c.staging.small.stats.uploads;
      const t = tensor(Float32Array.from({ length: 100 }, (_, i) => i), { device: "cuda" }); // on the compute stream itself
      expect(c.streams.recorded - rec0).toBe(1); // the event that guards its arena bytes
      expect(c.staging.small.stats.uploads - small0).toBe(1);
      expect(values(big.add(1))[0]).toBe(1);
      const y = t.mul(2); // a kernel on the compute stream after the upload
      expect(values(y)[99]).toBe(198); // the download waits for compute (event) and syncs the copy stream
      cudaSynchronize();
    });
    // elapsed time needs timing events, both completed, and b ordered after a: streams run asynchronously, so the
    // copy stream waits for compute before b (without the wait b may complete first and the difference be negative)
    const a = c.streams.createEvent(true);
    const b = c.streams.createEvent(true);
    c.streams.record(a, c.stream);
    c.streams.wait(c.streams.copy, c.stream);
    c.streams.record(b, c.streams.copy);
    c.streams.eventSynchronize(b);
    const ms = new Float32Array(1);
    c.libs.check(c.rt.cudaEventElapsedTime(ms, a, b), "cudaEventElapsedTime");
    expect(ms[0]).toBeGreaterThanOrEqual(0);
    for (const e of [a, b]) c.libs.check(c.rt.cudaEventDestroy(e), "cudaEventDestroy");
  });

  test("uploads and downloads: every dtype round trips bit-exactly; large tensors are chunked through the pinned ring", () => {
    const c = cudaContext();
    tidy(() => {
      for (const [dtype, data] of [
        ["float32", Float32Array.from([1.5, -0, NaN, Infinity, 3e-45])],
        ["float16", Uint16Array.from([0x3c00, 0x7e00, 0x8001, 0xfbff])],
        ["int64", BigInt64Array.from([-(2n ** 62n), 5n, 2n ** 53n + 1n])],
        ["bool", Uint8Array.from([1, 0, 1])],
      ] as const) {
        const t = fromRaw(new Uint8Array(data.buffer), [data.length], dtype, "cuda");
        const raw = t.toRawArray();
        expect(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength)).toEqual(new Uint8Array(data.buffer)); // bits, NaN and -0 included
      }
      const n = 5 * 2 ** 20 + 7; // 20 MiB + 28 B of float32: 3 chunks of 8 MiB each way
      const big = Float32Array.from({ length: n }, (_, i) => (i * 7919) % 65536);
      const before = { ...c.staging.stats };
      const t = tensor(big, { device: "cuda" });
      expect(c.staging.stats.chunks - before.chunks).toBe(Math.ceil((4 * n) / c.staging.slotBytes));
      const back = t.toTypedArray() as Float32Array;
      expect(c.staging.stats.downloadBytes - before.downloadBytes).toBe(4 * n);
      expect(back.length).toBe(n);
      let same = true;
      for (let i = 0; i < n; i += 1) if (back[i] !== big[i]) same = false;
      expect(same).toBe(true);
      expect(t.narrow(0, n - 3, 3).toArray()).toEqual(Array.from(big.subarray(n - 3)));
    });
  });

  test("from a memory-mapped safetensors file straight to the device, converting dtype there", async () => {
    const dir = mkdtempSync(join(tmpdir(), "bd-cuda-st-"));
    try {
      const w = Float32Array.from({ length: 3 * 257 }, (_, i) => Math.sin(i) * 10);
      await writeSafetensors(join(dir, "w.safetensors"), { w: { dtype: "F32", shape: [3, 257], data: w } });
      const f = openSafetensors(join(dir, "w.safetensors"));
      const c = cudaContext();
      const before = c.staging.stats.uploadBytes;
      tidy(() => {
        const t = entryToTensor(f.get("w"), { device: "cuda", dtype: "float16" });
        expect([t.device, t.dtype, ...t.shape]).toEqual(["cuda", "float16", 3, 257]);
        expect(c.staging.stats.uploadBytes - before).toBe(w.byteLength); // the float32 bytes went up once, converted on the device
        expect(Array.from(t.toRawArray() as Uint16Array)).toEqual(Array.from(w, (x) => f32ToF16(x)));
        const b = entryToTensor(f.get("w"), { device: "cuda", dtype: "bfloat16" }).to({ device: "cpu", dtype: "float32" });
        expect(values(b).every((x, i) => Math.abs(x - w[i]!) <= 2 ** -8 * Math.abs(w[i]!))).toBe(true);
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("initCuda, cudaAvailable, resolveDevice", () => {
  test.skipIf(!HAS_CUDA)("initCuda is idempotent; asking for another device is an error", () => {
    const info = cudaInfo()!;
    expect(initCuda({ emulate: info.emulated, device: info.device })).toBe(info);
    expect(() => initCuda({ emulate: info.emulated, device: info.device + 1 })).toThrow(/one CUDA device per process/);
    expect(cudaAvailable()).toEqual({ ok: true });
    expect(resolveDevice("cuda")).toBe("cuda");
    expect(resolveDevice("auto")).toBe("cuda");
    expect(resolveDevice("cuda:0")).toBe("cuda");
    expect(resolveDevice("cpu")).toBe("cpu");
    expect(() => resolveDevice("tpu" as "cpu")).toThrow(/unknown device "tpu"/);
  });

  // "No CUDA" is simulated by an environment that points every search at an empty folder; where the libraries
  // are installed system-wide (ldconfig cache, /usr/local/cuda, ...) discovery still finds them, and then the
  // simulation is impossible: an explicit skip, decided before the test runs.
  const empty = mkdtempSync(join(tmpdir(), "bd-no-cuda-"));
  afterAll(() => rmSync(empty, { recursive: true, force: true }));
  const bareEnv = { PATH: process.env.PATH, HOME: empty, BD_CUDA_LIB_DIR: empty, BD_KERNELS_LIB: join(empty, "none.so") };
  const stillFound = Object.values(discoverCuda({ env: bareEnv, emulate: false }).libraries).every((l) => l.path !== null);
  test.skipIf(stillFound)(
    `without CUDA libraries: cudaAvailable says why, "cuda" throws a clear error, "auto" falls back with one notice${stillFound ? " (skipped: every CUDA library is installed system-wide, so \"no CUDA\" cannot be simulated)" : ""}`,
    () => {
      const script = `
        import { cudaAvailable } from "./src/backends/cuda/index.ts";
        import { resolveDevice } from "./src/backends/select.ts";
        const notices = [];
        const out = { available: cudaAvailable() };
        try { resolveDevice("cuda"); } catch (e) { out.cudaError = e.message; }
        out.auto = [resolveDevice("auto", { notice: (m) => notices.push(m) }), resolveDevice("auto", { notice: (m) => notices.push(m) })];
        out.notices = notices;
        console.log(JSON.stringify(out));`;
      const r = Bun.spawnSync([process.execPath, "-e", script], {
        cwd: join(import.meta.dir, "../.."),
        env: bareEnv,
        stdout: "pipe",
        stderr: "pipe",
      });
      expect(r.exitCode, r.stderr.toString()).toBe(0);
      const res = JSON.parse(r.stdout.toString()) as { available: { ok: boolean; reason?: string }; cudaError?: string; auto: string[]; notices: string[] };
      expect(res.available.ok).toBe(false);
      expect(res.available.reason).toContain("not found");
      expect(res.cudaError).toStartWith('device "cuda" is not available: ');
      expect(res.cudaError).toContain(`BD_CUDA_LIB_DIR: ${empty}`); // where it looked
      expect(res.cudaError).toMatch(/To fix: (install|build)/); // what to do
      expect(res.auto).toEqual(["cpu", "cpu"]);
      expect(res.notices.length).toBe(1);
      expect(res.notices[0]).toMatch(/^\[bun-diffusion\] device "auto": CUDA is not available \(.+not found.*\); running on the CPU$/);
    },
  );
});
